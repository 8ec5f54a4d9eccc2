"""Who a trace belongs to (handler < context < run metadata), and what privacy mode removes."""

from __future__ import annotations

import pytest

pytest.importorskip("langchain_core")

import posthog_llm  # noqa: E402
from posthog_llm import Client, InMemoryDestination  # noqa: E402
from posthog_llm.integrations.langchain import PostHogCallbackHandler  # noqa: E402

from tests.integrations.langchain.fakes import StatusError, chain, model  # noqa: E402

CONTENT = ("$ai_input", "$ai_output_choices", "$ai_input_state", "$ai_output_state")


def test_handler_options_apply_to_every_event(client, events):
    handler = PostHogCallbackHandler(
        client,
        distinct_id="user_1",
        trace_id="trace-abc",
        session_id="session-9",
        properties={"plan": "pro"},
        groups={"company": "acme"},
    )
    chain().invoke({"question": "q"}, config={"callbacks": [handler]})

    sent = events()
    assert len(sent) == 4
    for event in sent:
        props = event["properties"]
        assert event["distinct_id"] == "user_1"
        assert "$process_person_profile" not in props
        assert props["$ai_trace_id"] == "trace-abc"
        assert props["$ai_session_id"] == "session-9"
        assert props["plan"] == "pro"
        assert props["$groups"] == {"company": "acme"}
    # Direct children of the root point at the trace id the user chose.
    children = [e for e in sent if e["event"] != "$ai_trace"]
    assert {e["properties"]["$ai_parent_id"] for e in children} == {"trace-abc"}


def test_run_metadata_overrides_context_which_overrides_the_handler(client, events):
    handler = PostHogCallbackHandler(
        client, distinct_id="handler-user", properties={"a": "handler", "b": "handler"}
    )
    metadata = {
        "posthog_distinct_id": "run-user",
        "posthog_trace_id": "run-trace",
        "posthog_session_id": "run-session",
        "posthog_properties": {"a": "run"},
        "posthog_groups": {"team": "owls"},
    }
    with posthog_llm.context(distinct_id="context-user", properties={"b": "context", "c": 1}):
        chain().invoke({"question": "q"}, config={"callbacks": [handler], "metadata": metadata})
        chain().invoke({"question": "q"}, config={"callbacks": [handler]})

    sent = events()
    with_metadata = [e for e in sent if e["properties"]["$ai_trace_id"] == "run-trace"]
    assert len(with_metadata) == 4
    for event in with_metadata:
        assert event["distinct_id"] == "run-user"
        assert event["properties"]["$ai_session_id"] == "run-session"
        assert (event["properties"]["a"], event["properties"]["b"]) == ("run", "context")
        assert event["properties"]["$groups"] == {"team": "owls"}
    others = [e for e in sent if e["properties"]["$ai_trace_id"] != "run-trace"]
    assert len(others) == 4
    assert {e["distinct_id"] for e in others} == {"context-user"}
    assert {(e["properties"]["a"], e["properties"]["b"]) for e in others} == {
        ("handler", "context")
    }


def test_an_empty_distinct_id_makes_the_trace_personless_not_refused(posthog_server):
    # `distinct_id=user.id or ""` for a logged-out user: PostHog refuses a whole batch over one
    # empty id (the loopback server too), so such a trace is sent personless.
    posthog_server.rejects = lambda e: not e["distinct_id"]
    client = Client(api_key="phc_test", host=posthog_server.host, flush_interval=30)
    blank = PostHogCallbackHandler(client, distinct_id="")
    chain().invoke({"question": "q"}, config={"callbacks": [blank]})
    known = PostHogCallbackHandler(client, distinct_id="user_1")
    metadata = {"posthog_distinct_id": " "}  # does not override the handler's real id
    chain().invoke({"question": "q"}, config={"callbacks": [known], "metadata": metadata})
    with posthog_llm.context(distinct_id=""):
        chain().invoke({"question": "q"}, config={"callbacks": [PostHogCallbackHandler(client)]})
    assert client.flush(5) is True

    traces: dict[str, list] = {}
    for event in posthog_server.events:
        traces.setdefault(event["properties"]["$ai_trace_id"], []).append(event)
    owners = []
    for trace_id, sent in traces.items():
        (owner,) = {e["distinct_id"] for e in sent}
        personless = all(e["properties"].get("$process_person_profile") is False for e in sent)
        owners.append("anonymous" if owner == trace_id and personless else owner)
        assert len(sent) == 4
    assert sorted(owners) == ["anonymous", "anonymous", "user_1"]
    client.shutdown(1)


def test_properties_of_a_single_step(handler, events):
    step = model().with_config(metadata={"posthog_properties": {"step": "answer"}})
    chain(step).invoke({"question": "q"}, config={"callbacks": [handler]})

    sent = events()
    (generation,) = [e for e in sent if e["event"] == "$ai_generation"]
    assert generation["properties"]["step"] == "answer"
    assert all("step" not in e["properties"] for e in sent if e["event"] != "$ai_generation")


def _assert_private(sent: list[dict]) -> None:
    assert len(sent) == 4
    for event in sent:
        for key in CONTENT:
            assert key not in event["properties"]
    (generation,) = [e["properties"] for e in sent if e["event"] == "$ai_generation"]
    assert (generation["$ai_input_tokens"], generation["$ai_output_tokens"]) == (25, 10)
    assert generation["$ai_model"] == "gpt-4o-mini"
    assert generation["$ai_latency"] > 0
    assert "secret question" not in str(sent)


def test_privacy_mode_on_the_handler(client, events):
    handler = PostHogCallbackHandler(client, privacy_mode=True)
    chain().invoke({"question": "secret question"}, config={"callbacks": [handler]})
    _assert_private(events())


def test_privacy_mode_on_the_client():
    sink = InMemoryDestination()
    client = Client(destination=sink, privacy_mode=True, flush_interval=0.05)
    try:
        handler = PostHogCallbackHandler(client)
        chain().invoke({"question": "secret question"}, config={"callbacks": [handler]})
        assert client.flush(10)
        _assert_private(sink.events)
    finally:
        client.shutdown(5)


def test_privacy_mode_from_context(handler, events):
    with posthog_llm.context(privacy_mode=True):
        chain().invoke({"question": "secret question"}, config={"callbacks": [handler]})
    _assert_private(events())


def test_privacy_mode_from_metadata(handler, events):
    chain().invoke(
        {"question": "secret question"},
        config={"callbacks": [handler], "metadata": {"posthog_privacy_mode": True}},
    )
    _assert_private(events())


@pytest.mark.parametrize("where", ["handler", "context"])
def test_run_metadata_cannot_switch_privacy_off(client, events, where):
    # As per call with the provider drop-ins: per run, privacy is switched on, never off.
    handler = PostHogCallbackHandler(client, privacy_mode=where == "handler")
    config = {"callbacks": [handler], "metadata": {"posthog_privacy_mode": False}}
    with posthog_llm.context(privacy_mode=True if where == "context" else None):
        chain().invoke({"question": "secret question"}, config=config)
    _assert_private(events())


def test_a_context_that_says_false_does_not_switch_the_handlers_privacy_off(client, events):
    # A per-user opt-out flag passed through `context` (False for users who did not opt out)
    # must not undo privacy the handler was made with.
    handler = PostHogCallbackHandler(client, privacy_mode=True)
    with posthog_llm.context(privacy_mode=False):
        chain().invoke({"question": "secret question"}, config={"callbacks": [handler]})
    _assert_private(events())


def test_privacy_mode_keeps_only_the_error_class(client, events):
    handler = PostHogCallbackHandler(client, privacy_mode=True)
    llm = model(error=StatusError("the prompt was: secret question", 400))
    with pytest.raises(StatusError):
        chain(llm).invoke({"question": "secret question"}, config={"callbacks": [handler]})

    sent = events()
    (generation,) = [e["properties"] for e in sent if e["event"] == "$ai_generation"]
    assert generation["$ai_error"] == "StatusError"
    assert generation["$ai_http_status"] == 400
    assert "secret question" not in str(sent)


def test_privacy_mode_for_a_single_step(handler, events):
    step = model().with_config(metadata={"posthog_privacy_mode": True})
    chain(step).invoke({"question": "visible question"}, config={"callbacks": [handler]})

    sent = events()
    (generation,) = [e["properties"] for e in sent if e["event"] == "$ai_generation"]
    assert "$ai_input" not in generation and "$ai_output_choices" not in generation
    assert generation["$ai_input_tokens"] == 25
    (trace,) = [e["properties"] for e in sent if e["event"] == "$ai_trace"]
    assert trace["$ai_input_state"] == {"question": "visible question"}


def test_a_context_opened_inside_a_step_applies_to_the_runs_started_in_it(handler, events):
    # A node marks one model call private and names its user: the call's generation is that
    # user's and keeps no content, as a span in the same block does; the rest of the trace is not.
    from langchain_core.runnables import RunnableLambda

    def node(question: str) -> str:
        with posthog_llm.context(
            privacy_mode=True, distinct_id="user_42", properties={"step": "pii"}
        ):
            with posthog_llm.span("own"):
                pass
            return model().invoke(f"SECRET {question}").content

    RunnableLambda(node).invoke("prompt", config={"callbacks": [handler]})
    sent = events()
    by_event = {e["event"]: e for e in sent if e["event"] != "$ai_span"}
    generation, trace = by_event["$ai_generation"], by_event["$ai_trace"]
    own = [e for e in sent if e["properties"].get("$ai_span_name") == "own"][0]
    for event in (generation, own):
        assert event["distinct_id"] == "user_42"
        assert event["properties"]["step"] == "pii"
        assert "$process_person_profile" not in event["properties"]
    assert "SECRET" not in str(generation["properties"])
    assert generation["properties"]["$ai_input_tokens"] == 25
    assert trace["distinct_id"] != "user_42" and "step" not in trace["properties"]
    assert trace["properties"]["$ai_input_state"] == "prompt"


def test_a_context_inside_a_step_keeps_the_runs_metadata_on_top_and_brings_its_groups(
    handler, events
):
    from langchain_core.runnables import RunnableLambda

    def node(question: str) -> str:
        with posthog_llm.context(properties={"step": "answer"}):
            model().invoke(question)
        with posthog_llm.context(distinct_id="inner", groups={"company": "inner-co"}):
            return model().invoke(question).content

    metadata = {"posthog_distinct_id": "run-user", "posthog_session_id": "run-session"}
    with posthog_llm.context(
        distinct_id="outer", session_id="outer-session", groups={"company": "outer-co"}
    ):
        RunnableLambda(node).invoke("q", config={"callbacks": [handler], "metadata": metadata})
    sent = events()
    first, second = [e for e in sent if e["event"] == "$ai_generation"]
    (trace,) = [e for e in sent if e["event"] == "$ai_trace"]
    # A context that only adds a property: the run's metadata still says who it is for.
    assert first["distinct_id"] == trace["distinct_id"] == "run-user"
    assert first["properties"]["$ai_session_id"] == "run-session"
    assert first["properties"]["step"] == "answer"
    # One that names a user and groups: both, on the step's events.
    assert second["properties"]["$groups"] == {"company": "inner-co"}
    assert trace["properties"]["$groups"] == {"company": "outer-co"}


def test_run_metadata_of_the_wrong_type_is_left_out_and_the_run_still_reported(handler, events):
    metadata = {
        "posthog_distinct_id": ["not", "an", "id"],
        "posthog_session_id": "run-session",
        "posthog_groups": {"team": None},
    }
    chain().invoke({"question": "q"}, config={"callbacks": [handler], "metadata": metadata})
    sent = events()
    assert len(sent) == 4
    trace_id = sent[0]["properties"]["$ai_trace_id"]
    assert {e["distinct_id"] for e in sent} == {trace_id}  # personless: the id was left out
    assert {e["properties"]["$ai_session_id"] for e in sent} == {"run-session"}
    assert all("$groups" not in e["properties"] for e in sent)


def test_a_handler_on_a_default_client_the_environment_cannot_build_calls_through(
    monkeypatch, caplog
):
    # Its hooks raised into LangChain, which logged a warning per hook and per run.
    import logging

    monkeypatch.setenv("POSTHOG_HOST", "https://eu.i.posthog.com")  # a remote host, no key
    handler = PostHogCallbackHandler()
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            assert chain().invoke({"question": "q"}, config={"callbacks": [handler]})
    assert not [r for r in caplog.records if "Error in PostHogCallbackHandler" in r.getMessage()]
    said = [r for r in caplog.records if "cannot be built from the environment" in r.getMessage()]
    assert len(said) == 1


def test_a_handler_without_a_client_inside_a_span_given_one_sends_through_it(client, sink):
    # The chain's events went to the default client, its enclosing span's to `client`.
    default_sink = InMemoryDestination()
    default = Client(destination=default_sink, flush_interval=0.05)
    posthog_llm.set_client(default)
    try:
        with posthog_llm.span("request", client=client) as request:
            chain().invoke({"question": "q"}, config={"callbacks": [PostHogCallbackHandler()]})
        assert client.flush(10) and default.flush(10)
        assert default_sink.events == []
        assert len(sink.events) == 5
        assert {e["properties"]["$ai_trace_id"] for e in sink.events} == {request.trace_id}
    finally:
        default.shutdown(5)


def test_work_nested_in_a_chain_sends_through_the_handlers_client(client, sink):
    # An observed function inside a step went to the default client, with the chain's trace id.
    from langchain_core.runnables import RunnableLambda

    default_sink = InMemoryDestination()
    default = Client(destination=default_sink, flush_interval=0.05)
    posthog_llm.set_client(default)

    @posthog_llm.observe
    def fun_fact(text: str) -> str:
        return text.upper()

    try:
        runnable = chain() | RunnableLambda(fun_fact)
        runnable.invoke({"question": "q"}, config={"callbacks": [PostHogCallbackHandler(client)]})
        assert client.flush(10) and default.flush(10)
        assert default_sink.events == []
        observed = [e for e in sink.events if "fun_fact" in e["properties"]["$ai_span_name"]]
        assert len(observed) == 2  # the step, and the observed function inside it
        assert len({e["properties"]["$ai_trace_id"] for e in sink.events}) == 1
    finally:
        default.shutdown(5)
