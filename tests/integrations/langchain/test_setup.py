"""Ways in: the global handler, a posthog-python client, the import guard; never a raise."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading

import pytest

pytest.importorskip("langchain_core")

from posthog_llm import Client, InMemoryDestination  # noqa: E402
from posthog_llm.integrations.langchain import (  # noqa: E402
    PostHogCallbackHandler,
    get_global_handler,
    remove_global_handler,
    set_global_handler,
)

from tests.integrations.langchain.fakes import (  # noqa: E402
    assert_well_formed,
    by_trace,
    chain,
    model,
)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def test_global_handler_captures_runs_in_threads_and_tasks(client, events):
    runnable = chain()
    # The chain is built before the handler is set, and the thread starts with a fresh context.
    handler = set_global_handler(client, distinct_id="global-user")
    assert get_global_handler() is handler

    runnable.invoke({"question": "main thread"})
    thread = threading.Thread(target=runnable.invoke, args=({"question": "other thread"},))
    thread.start()
    thread.join()

    async def in_task() -> None:
        await asyncio.create_task(runnable.ainvoke({"question": "asyncio task"}))

    asyncio.run(in_task())

    sent = events()
    traces = by_trace(sent)
    assert len(traces) == 3
    questions = sorted(
        e["properties"]["$ai_input_state"]["question"] for e in sent if e["event"] == "$ai_trace"
    )
    assert questions == ["asyncio task", "main thread", "other thread"]
    assert {e["distinct_id"] for e in sent} == {"global-user"}
    assert all(len(trace) == 4 for trace in traces.values())

    remove_global_handler()
    assert get_global_handler() is None
    runnable.invoke({"question": "after removal"})
    assert len(events()) == 12


def test_explicit_handler_and_global_handler_do_not_double_events(client, events):
    set_global_handler(client)
    explicit = PostHogCallbackHandler(client, distinct_id="explicit")
    chain().invoke({"question": "q"}, config={"callbacks": [explicit]})

    sent = events()
    assert len(sent) == 4
    assert {e["distinct_id"] for e in sent} == {"explicit"}


@pytest.mark.parametrize("outer", ["global", "at invoke"])
def test_a_handler_given_to_a_model_at_construction_does_not_double_its_generation(
    client, events, outer
):
    # A model factory attaches a handler; the chain runs with another one. Both see the model's
    # run: one of them reports it.
    llm = model(callbacks=[PostHogCallbackHandler(client, distinct_id="model-factory")])
    config = {}
    if outer == "global":
        set_global_handler(client)
    else:
        config = {"callbacks": [PostHogCallbackHandler(client)]}
    chain(llm).invoke({"question": "q"}, config=config)
    llm.invoke("alone")  # on its own, the model's handler reports it

    sent = events()
    generations = [e for e in sent if e["event"] == "$ai_generation"]
    assert len(generations) == 2
    assert len({g["properties"]["$ai_span_id"] for g in generations}) == 2
    traces = by_trace(sent)
    assert len(traces) == 2
    chain_trace = next(t for t in traces.values() if any(e["event"] == "$ai_trace" for e in t))
    assert len(chain_trace) == 4
    assert_well_formed(chain_trace)


def test_a_handler_for_another_client_given_at_construction_still_gets_its_generation(
    client, events
):
    # The chain reports to one client; the model's own handler to another: each client gets
    # the model's generation (the rule above holds for handlers sending to the same client).
    other_sink = InMemoryDestination()
    other = Client(destination=other_sink, flush_interval=0.05)
    try:
        llm = model(callbacks=[PostHogCallbackHandler(other)])
        chain(llm).invoke({"question": "q"}, config={"callbacks": [PostHogCallbackHandler(client)]})
        assert other.flush(5)
        assert [e["event"] for e in other_sink.events] == ["$ai_generation"]
        sent = events()
        assert sorted(e["event"] for e in sent) == [
            "$ai_generation",
            "$ai_span",
            "$ai_span",
            "$ai_trace",
        ]
        (theirs,) = other_sink.events
        (ours,) = [e for e in sent if e["event"] == "$ai_generation"]
        assert theirs["properties"]["$ai_model"] == ours["properties"]["$ai_model"]
    finally:
        other.shutdown(2)


def test_set_global_handler_replaces_the_previous_one(events):
    first_sink, second_sink = InMemoryDestination(), InMemoryDestination()
    first = Client(destination=first_sink, flush_interval=0.05)
    second = Client(destination=second_sink, flush_interval=0.05)
    try:
        set_global_handler(first)
        set_global_handler(second)
        chain().invoke({"question": "q"})
        assert first.flush(5) and second.flush(5)
        assert first_sink.events == []
        assert len(second_sink.events) == 4
    finally:
        first.shutdown(5)
        second.shutdown(5)


def test_posthog_python_client_delivers_to_a_posthog_server(posthog_server):
    posthog = pytest.importorskip("posthog")
    ph = posthog.Posthog("phc_test", host=posthog_server.host, sync_mode=False)
    try:
        handler = PostHogCallbackHandler(ph, distinct_id="user_7", properties={"plan": "pro"})
        assert chain().invoke({"question": "q"}, config={"callbacks": [handler]})
        ph.flush()
        received = posthog_server.wait_for(4)
    finally:
        ph.shutdown()

    assert sorted(e["event"] for e in received) == [
        "$ai_generation",
        "$ai_span",
        "$ai_span",
        "$ai_trace",
    ]
    assert {e["distinct_id"] for e in received} == {"user_7"}
    (generation,) = [e["properties"] for e in received if e["event"] == "$ai_generation"]
    assert generation["$ai_input"][1] == {"role": "user", "content": "q"}
    assert generation["$ai_input_tokens"] == 25
    assert generation["plan"] == "pro"
    assert {e["api_key"] for e in received} == {"phc_test"}


def test_our_client_delivers_to_a_posthog_server(posthog_server):
    client = Client(api_key="phc_ours", host=posthog_server.host, flush_interval=0.05)
    try:
        handler = PostHogCallbackHandler(client)
        chain().invoke({"question": "q"}, config={"callbacks": [handler]})
        assert client.flush(10)
    finally:
        client.shutdown(5)
    received = posthog_server.wait_for(4)
    assert len(received) == 4
    assert_well_formed(received)


def test_default_client_is_used_without_a_client(monkeypatch, posthog_server):
    monkeypatch.setenv("POSTHOG_API_KEY", "phc_env")
    monkeypatch.setenv("POSTHOG_HOST", posthog_server.host)
    handler = PostHogCallbackHandler()
    chain().invoke({"question": "q"}, config={"callbacks": [handler]})
    import posthog_llm

    assert posthog_llm.get_client().flush(10)
    assert len(posthog_server.wait_for(4)) == 4


@pytest.mark.allow_internal_errors
def test_a_broken_client_never_reaches_the_user():
    class Broken:
        def capture(self, *args, **kwargs):
            raise RuntimeError("client exploded")

    handler = PostHogCallbackHandler(Broken())
    assert chain().invoke({"question": "q"}, config={"callbacks": [handler]}) == "Owls eat mice."
    assert len(handler._runs) == 0


def test_hooks_never_raise_on_odd_arguments(handler, events):
    import uuid

    run = uuid.uuid4()
    handler.on_chain_start(None, object(), run_id=run, metadata={"posthog_properties": 5})
    handler.on_chain_end(object(), run_id=run)
    handler.on_llm_end(None, run_id=uuid.uuid4())  # unknown run
    handler.on_llm_new_token("x", run_id=uuid.uuid4())
    handler.on_chain_error(ValueError("x"), run_id=uuid.uuid4())
    assert [e["event"] for e in events()] == ["$ai_trace"]


def test_client_argument_is_checked():
    with pytest.raises(TypeError, match="capture"):
        PostHogCallbackHandler(object())


def test_missing_langchain_core_says_which_extra_to_install():
    code = (
        "import sys; sys.modules['langchain_core'] = None\n"
        "try:\n"
        "    import posthog_llm.integrations.langchain\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert "pip install 'posthog-llm[langchain]'" in out.stdout, out.stderr


@pytest.mark.allow_internal_errors
def test_a_fact_that_cannot_be_read_is_left_out_not_the_event(
    handler, events, monkeypatch, _fail_on_swallowed_internal_errors
):
    from posthog_llm.integrations.langchain import _builders

    def broken(*args):
        raise RuntimeError("unexpected message shape")

    monkeypatch.setattr(_builders, "messages_to_dicts", broken)
    chain().invoke({"question": "q"}, config={"callbacks": [handler]})

    (generation,) = events("$ai_generation")
    assert "$ai_input" not in generation["properties"]
    assert generation["properties"]["$ai_output_choices"][0]["content"] == "Owls eat mice."
    assert generation["properties"]["$ai_input_tokens"] == 25
    assert any("unexpected message shape" in str(e) for e in _fail_on_swallowed_internal_errors)
