"""`force_flush` inside a request (a serverless handler flushing before it returns, a notebook
cell) sends what has ended so far; the rest of the trace, its root among it, follows when the
root ends, as one trace."""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator
from typing import Any

import posthog_llm
import pytest
from opentelemetry import trace

from .conftest import hex_ids, messages

CHAT = {
    "gen_ai.operation.name": "chat",
    "gen_ai.request.model": "gpt-4o",
    "gen_ai.provider.name": "openai",
    "gen_ai.usage.input_tokens": 3,
    "gen_ai.input.messages": messages(("user", "Tell me about owls")),
}
TOOL = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "lookup"}


def test_the_root_of_a_trace_flushed_before_it_ended_is_its_trace_event(
    provider: Any, tracer: Any, events: Any
) -> None:
    with tracer.start_as_current_span("POST /chat") as request:
        with tracer.start_as_current_span("chat gpt-4o", attributes=CHAT):
            pass
        provider.force_flush()
        assert events("$ai_trace") == []  # the root is still open
        with tracer.start_as_current_span("db query"):
            pass
    trace_hex, _ = hex_ids(request)

    (trace,) = events("$ai_trace")
    assert trace["properties"]["$ai_trace_id"] == trace_hex
    assert trace["properties"]["$ai_span_name"] == "POST /chat"
    (generation,) = events("$ai_generation")
    # Sent before the root ended, it names the trace as its parent, as the root's children do.
    assert generation["properties"]["$ai_parent_id"] == trace_hex
    assert events("$ai_span") == []  # the DB query sits under no AI span


def test_work_after_the_flush_and_the_spans_around_what_was_sent_complete_the_trace(
    provider: Any, tracer: Any, events: Any
) -> None:
    with tracer.start_as_current_span("POST /chat"):
        with tracer.start_as_current_span("answer") as answer:
            with tracer.start_as_current_span("chat gpt-4o", attributes=CHAT):
                pass
            provider.force_flush()
        with tracer.start_as_current_span("audit"):  # no AI below it: not sent
            with tracer.start_as_current_span("db query"):
                pass
            provider.force_flush()
        with tracer.start_as_current_span("execute_tool lookup", attributes=TOOL):
            pass
    trace_hex, answer_hex = hex_ids(answer)

    (generation,) = events("$ai_generation")
    assert generation["properties"]["$ai_parent_id"] == answer_hex
    steps = {e["properties"]["$ai_span_name"]: e["properties"] for e in events("$ai_span")}
    assert set(steps) == {"answer", "lookup"}
    assert steps["answer"]["$ai_span_id"] == answer_hex
    assert steps["answer"]["$ai_parent_id"] == trace_hex
    assert steps["lookup"]["$ai_parent_id"] == trace_hex
    assert len(events("$ai_trace")) == 1
    assert {e["properties"]["$ai_trace_id"] for e in events()} == {trace_hex}


def test_the_rest_of_a_flushed_trace_keeps_its_identity_and_privacy(
    provider: Any, tracer: Any, events: Any
) -> None:
    with posthog_llm.context(distinct_id="alice", session_id="s-1"):
        with tracer.start_as_current_span("POST /chat", attributes={"posthog.privacy_mode": True}):
            with tracer.start_as_current_span("chat gpt-4o", attributes=CHAT):
                pass
            provider.force_flush()
    with posthog_llm.context(distinct_id="bob"):
        provider.force_flush()  # the root ended outside alice's context

    sent = events()
    assert {e["event"] for e in sent} == {"$ai_generation", "$ai_trace"}
    assert {e["distinct_id"] for e in sent} == {"alice"}
    assert {e["properties"]["$ai_session_id"] for e in sent} == {"s-1"}
    (generation,) = events("$ai_generation")
    assert "$ai_input" not in generation["properties"]  # the root asked for privacy
    assert generation["properties"]["$ai_input_tokens"] == 3


def test_work_that_joins_after_the_flush_keeps_the_requests_identity_and_privacy(
    client: Any, provider: Any, tracer: Any, events: Any
) -> None:
    pytest.importorskip("openai")
    from posthog_llm.integrations.openai import OpenAI
    from posthog_llm.local.openai_standin import OpenAIStandIn

    with OpenAIStandIn() as server:
        openai_client = OpenAI(
            api_key="sk-test", base_url=server.base_url, max_retries=0, posthog_client=client
        )

        def ask() -> None:
            openai_client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "secret owls"}]
            )

        with posthog_llm.context(distinct_id="alice", session_id="s-1", privacy_mode=True):
            request = tracer.start_span("GET /chat")
        with trace.use_span(request, end_on_exit=True):
            ask()
            provider.force_flush()
            with tracer.start_as_current_span("step"):
                ask()
    trace_hex, _ = hex_ids(request)
    generations = events("$ai_generation")
    assert len(generations) == 2
    for generation in generations:
        assert generation["distinct_id"] == "alice"
        assert generation["properties"]["$ai_session_id"] == "s-1"
        assert generation["properties"]["$ai_trace_id"] == trace_hex
        assert "$ai_input" not in generation["properties"]


def test_privacy_a_span_asked_for_before_the_flush_holds_for_the_rest(
    provider: Any, tracer: Any, events: Any
) -> None:
    with tracer.start_as_current_span("POST /chat"):
        with tracer.start_as_current_span("handler", attributes={"posthog.privacy_mode": True}):
            with tracer.start_as_current_span("chat 1", attributes=CHAT):
                pass
        provider.force_flush()
        with tracer.start_as_current_span("chat 2", attributes=CHAT):
            pass
    generations = events("$ai_generation")
    assert [g["properties"]["$ai_span_name"] for g in generations] == ["chat 1", "chat 2"]
    assert all("$ai_input" not in g["properties"] for g in generations)
    assert all(g["properties"]["$ai_input_tokens"] == 3 for g in generations)


def test_a_manual_event_in_a_request_span_takes_the_requests_identity(
    client: Any, tracer: Any, events: Any
) -> None:
    with posthog_llm.context(distinct_id="alice", session_id="s-1", groups={"company": "acme"}):
        request = tracer.start_span("GET /chat")
    with trace.use_span(request, end_on_exit=True):  # outside the context it started in
        client.capture("$ai_generation", properties={"$ai_model": "m", "$ai_input_tokens": 1})
    trace_hex, _ = hex_ids(request)
    (generation,) = events("$ai_generation")
    assert generation["distinct_id"] == "alice"
    assert generation["properties"]["$ai_trace_id"] == trace_hex
    assert generation["properties"]["$ai_session_id"] == "s-1"
    assert generation["properties"]["$groups"] == {"company": "acme"}
    assert len(events("$ai_trace")) == 1


def chain_with_a_finished_call(
    provider: Any, tracer: Any, names: list[str], flush: bool
) -> list[Any]:
    """Open spans, each inside the one before, with a chat call under the last that has ended;
    flushed then when `flush`."""
    spans: list[Any] = []
    for name in names:
        parent = trace.set_span_in_context(spans[-1]) if spans else None
        spans.append(tracer.start_span(name, context=parent))
    tracer.start_span("chat", context=trace.set_span_in_context(spans[-1]), attributes=CHAT).end()
    if flush:
        provider.force_flush()
    return spans


@pytest.mark.parametrize("flush", [False, True])
def test_a_span_that_outlives_its_root_is_sent_when_work_sent_names_it(
    provider: Any, tracer: Any, events: Any, flush: bool
) -> None:
    # A handler returns (its root ends) while the span around a finished call is still open
    # (a streamed response): the call names that span as its parent, so it is sent too.
    root, answer = chain_with_a_finished_call(provider, tracer, ["POST /chat", "answer"], flush)
    root.end()
    with tracer.start_as_current_span("db query", context=trace.set_span_in_context(answer)):
        pass  # no AI below it: not sent
    answer.end()
    trace_hex, answer_hex = hex_ids(answer)
    (generation,) = events("$ai_generation")
    assert generation["properties"]["$ai_parent_id"] == answer_hex
    (step,) = events("$ai_span")
    assert step["properties"]["$ai_span_id"] == answer_hex
    assert step["properties"]["$ai_parent_id"] == trace_hex
    assert len(events("$ai_trace")) == 1


@pytest.mark.parametrize("flush", [False, True])
def test_spans_that_outlive_their_root_may_end_in_any_order(
    provider: Any, tracer: Any, events: Any, flush: bool
) -> None:
    root, stream, reader = chain_with_a_finished_call(
        provider, tracer, ["POST /chat", "stream", "reader"], flush
    )
    root.end()
    stream.end()  # before its child: nothing names it yet
    reader.end()
    trace_hex, stream_hex = hex_ids(stream)
    _, reader_hex = hex_ids(reader)
    steps = {e["properties"]["$ai_span_name"]: e["properties"] for e in events("$ai_span")}
    assert steps["reader"]["$ai_parent_id"] == stream_hex
    assert steps["stream"]["$ai_parent_id"] == trace_hex
    assert events("$ai_generation")[0]["properties"]["$ai_parent_id"] == reader_hex
    assert len(events("$ai_trace")) == 1


def test_work_in_a_span_that_outlived_its_root_joins_the_sent_trace(
    client: Any, tracer: Any, events: Any
) -> None:
    with posthog_llm.context(distinct_id="alice", privacy_mode=True):
        root = tracer.start_span("POST /chat")
    stream = tracer.start_span("stream", context=trace.set_span_in_context(root))
    with trace.use_span(root):
        with tracer.start_as_current_span("chat", attributes=CHAT):
            pass
    root.end()  # the handler returned; the streamed answer is still being written
    with trace.use_span(stream, end_on_exit=True):
        client.capture("$ai_generation", properties={"$ai_input": "secret", "$ai_model": "m"})
    trace_hex, stream_hex = hex_ids(stream)
    late = [e for e in events("$ai_generation") if e["properties"].get("$ai_model") == "m"]
    (generation,) = late
    assert generation["properties"]["$ai_trace_id"] == trace_hex
    assert generation["properties"]["$ai_parent_id"] == stream_hex
    assert generation["distinct_id"] == "alice"
    assert "$ai_input" not in generation["properties"]
    (step,) = events("$ai_span")
    assert step["properties"]["$ai_span_id"] == stream_hex
    assert len(events("$ai_trace")) == 1


@pytest.mark.parametrize("flush", [False, True])
def test_a_flush_does_not_change_whom_later_work_belongs_to(
    client: Any, provider: Any, tracer: Any, events: Any, flush: bool
) -> None:
    request = tracer.start_span("GET /chat")  # no identity where the request started
    with trace.use_span(request, end_on_exit=True):
        with posthog_llm.context(distinct_id="alice"):
            client.capture("$ai_generation", properties={"$ai_model": "first"})
        if flush:
            provider.force_flush()
        client.capture("$ai_generation", properties={"$ai_model": "second"})
    trace_hex, _ = hex_ids(request)
    by_model = {e["properties"]["$ai_model"]: e for e in events("$ai_generation")}
    assert by_model["first"]["distinct_id"] == "alice"
    assert by_model["second"]["distinct_id"] == trace_hex  # personless, its own context's


def test_the_newest_plain_spans_are_held_for_work_that_names_them_later(
    provider: Any, tracer: Any, events: Any
) -> None:
    root, stream, reader = chain_with_a_finished_call(
        provider, tracer, ["POST /chat", "stream", "reader"], flush=False
    )
    root.end()
    for _ in range(100):  # a span per chunk written, none of them a parent of anything
        tracer.start_span("write chunk", context=trace.set_span_in_context(stream)).end()
    stream.end()
    for _ in range(40):  # more of them after it: it is still held
        tracer.start_span("send", context=trace.set_span_in_context(reader)).end()
    reader.end()
    names = sorted(e["properties"]["$ai_span_name"] for e in events("$ai_span"))
    assert names == ["reader", "stream"]


@pytest.mark.parametrize("flushes", [1, 2])
def test_a_flush_while_a_call_is_open_leaves_whom_the_trace_belongs_to(
    client: Any, provider: Any, tracer: Any, events: Any, flushes: int
) -> None:
    request = tracer.start_span("GET /chat")  # no identity where the request started
    with trace.use_span(request, end_on_exit=True):
        chat = tracer.start_span("chat", attributes=CHAT)
        provider.force_flush()  # nothing to send yet: the call is still open
        with posthog_llm.context(distinct_id="alice"):
            client.capture("$ai_generation", properties={"$ai_model": "m"})
        if flushes == 2:
            provider.force_flush()
        chat.end()
    sent = events()
    assert {e["event"] for e in sent} == {"$ai_generation", "$ai_trace"}
    assert {e["distinct_id"] for e in sent} == {"alice"}  # as without the flush


@contextlib.contextmanager
def switching_often() -> Iterator[None]:
    """Threads hand the GIL over as often as possible (races show up within a few hundred
    tries)."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(interval)


def together(*ends: Any) -> None:
    """Call `ends` on as many threads at the same moment."""
    barrier = threading.Barrier(len(ends))

    def run(end: Any) -> None:
        barrier.wait()
        end()

    threads = [threading.Thread(target=run, args=(end,)) for end in ends]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_spans_of_a_trace_that_outlived_its_root_may_end_on_several_threads(
    provider: Any, tracer: Any, events: Any
) -> None:
    with switching_often():
        for _ in range(300):
            root = tracer.start_span("root")
            around = tracer.start_span("around", context=trace.set_span_in_context(root))
            a = tracer.start_span("a", context=trace.set_span_in_context(around), attributes=CHAT)
            b = tracer.start_span("b", context=trace.set_span_in_context(root), attributes=CHAT)
            root.end()
            together(a.end, b.end, around.end)
    sent = events()
    assert len([e for e in sent if e["event"] == "$ai_trace"]) == 300  # one per trace
    ids = {e["properties"].get("$ai_span_id") for e in sent} | {
        e["properties"]["$ai_trace_id"] for e in sent
    }
    assert all(e["properties"].get("$ai_parent_id") in ids | {None} for e in sent)
    assert len([e for e in sent if e["event"] == "$ai_generation"]) == 600


def test_privacy_asked_by_a_span_that_starts_after_the_root_ended_holds(
    provider: Any, tracer: Any, events: Any
) -> None:
    root, stream = chain_with_a_finished_call(provider, tracer, ["POST /chat", "stream"], False)
    root.end()
    private = tracer.start_span(
        "private step",
        context=trace.set_span_in_context(stream),
        attributes={"posthog.privacy_mode": True},
    )
    tracer.start_span("chat 2", context=trace.set_span_in_context(private), attributes=CHAT).end()
    private.end()
    stream.end()
    generations = {e["properties"]["$ai_span_name"]: e for e in events("$ai_generation")}
    assert "$ai_input" not in generations["chat 2"]["properties"]


def test_a_span_ending_on_a_thread_already_inside_the_processor_does_not_deadlock(
    provider: Any, tracer: Any, events: Any
) -> None:
    # A garbage collection inside one of the processor's locked sections may finish an
    # abandoned generator whose `finally` ends a span: `on_end` then runs on that same thread.
    import threading

    (processor,) = provider._active_span_processor._span_processors
    root, stream = chain_with_a_finished_call(provider, tracer, ["POST /chat", "stream"], False)
    root.end()
    late = tracer.start_span("chat 2", context=trace.set_span_in_context(stream), attributes=CHAT)

    def end_inside() -> None:
        with processor._lock:
            late.end()
            stream.end()

    worker = threading.Thread(target=end_inside, daemon=True)
    worker.start()
    worker.join(10)
    assert not worker.is_alive()
    assert len(events("$ai_generation")) == 2


@pytest.mark.parametrize("flush", [False, True])
def test_a_root_and_its_last_call_ending_together_on_two_threads_send_the_whole_trace(
    provider: Any, tracer: Any, events: Any, flush: bool
) -> None:
    # (With `flush`, a third thread flushes at the same moment, as a serverless handler does.)
    with switching_often():
        for _ in range(300):
            root = tracer.start_span("root")
            chat = tracer.start_span(
                "chat", context=trace.set_span_in_context(root), attributes=CHAT
            )
            together(root.end, chat.end, *([provider.force_flush] if flush else []))
    sent = events()
    assert len([e for e in sent if e["event"] == "$ai_generation"]) == 300
    assert len([e for e in sent if e["event"] == "$ai_trace"]) == 300  # one per trace
    ids = {e["properties"]["$ai_trace_id"] for e in sent}
    assert all(e["properties"].get("$ai_parent_id") in ids | {None} for e in sent)


AGENT = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "a"}


def _steps_and_calls(tracer: Any, steps: int, flush: Any = None) -> dict[str, str]:
    """An agent (the root) running `steps` plain steps, each around a model call; `flush` is
    called after the first. The span id of each step and call by name."""
    ids: dict[str, str] = {}
    with tracer.start_as_current_span("invoke_agent a", attributes=AGENT):
        for i in range(steps):
            with tracer.start_as_current_span(f"step{i}") as step:
                with tracer.start_as_current_span(f"chat{i}", attributes=CHAT) as chat:
                    pass
            ids[f"step{i}"], ids[f"chat{i}"] = hex_ids(step)[1], hex_ids(chat)[1]
            if flush is not None and i == 0:
                flush()
    return ids


def _parents(events: Any) -> dict[str, str]:
    found = events("$ai_span") + events("$ai_generation")
    return {e["properties"]["$ai_span_name"]: e["properties"]["$ai_parent_id"] for e in found}


def test_steps_between_an_open_ai_root_and_a_call_are_sent_with_a_flushed_part(
    provider: Any, tracer: Any, events: Any
) -> None:
    ids = _steps_and_calls(tracer, 2, provider.force_flush)
    (trace,) = events("$ai_trace")
    trace_hex = trace["properties"]["$ai_trace_id"]
    # As when the trace is sent whole: each step under the trace, each call under its step.
    assert _parents(events) == {
        "step0": trace_hex,
        "step1": trace_hex,
        "chat0": ids["step0"],
        "chat1": ids["step1"],
    }


def test_steps_of_a_trace_past_the_span_limit_keep_their_place(
    provider: Any, tracer: Any, events: Any, monkeypatch: Any
) -> None:
    from posthog_llm.integrations.otel import _processor

    monkeypatch.setattr(_processor, "MAX_SPANS_PER_TRACE", 4)  # sent in parts of 4 spans
    ids = _steps_and_calls(tracer, 5)
    parents = _parents(events)
    assert sorted(parents) == sorted(ids)
    assert all(parents[f"chat{i}"] == ids[f"step{i}"] for i in range(5))


def test_a_plain_root_flushed_early_sends_no_step_it_would_not_send_whole(
    provider: Any, tracer: Any, events: Any
) -> None:
    with tracer.start_as_current_span("POST /chat"):
        with tracer.start_as_current_span("step0"):
            with tracer.start_as_current_span("chat gpt-4o", attributes=CHAT):
                pass
        provider.force_flush()
    assert events("$ai_span") == []  # no AI span above the step
    assert len(events("$ai_generation")) == 1
