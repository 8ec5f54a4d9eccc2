"""`force_flush` inside a request (a serverless handler flushing before it returns, a notebook
cell) sends what has ended so far; the rest of the trace, its root among it, follows when the
root ends, as one trace."""

from __future__ import annotations

from typing import Any

import posthog_llm

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
