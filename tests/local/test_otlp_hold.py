"""The collector's hold on AI traces whose root has not come: bounded, oldest out first."""

from __future__ import annotations

import time

import pytest
from posthog_llm.local._otlp_hold import HeldTraces
from posthog_llm.local.server import ServeError, start_server


def hold(held: HeldTraces, trace_id: str, records: list, authorization: str = "") -> list:
    """Add spans that do not end the trace; the traces that had to make room."""
    released, pushed = held.merge(trace_id, records, authorization, keep=lambda rs: True)
    assert released is None
    return pushed


def release(held: HeldTraces, trace_id: str) -> list:
    """What is held of a trace, taken out (as when its root comes)."""
    released, _ = held.merge(trace_id, [], "", keep=lambda rs: False)
    return released


def test_a_held_trace_is_due_after_its_last_span_and_taken_once():
    held = HeldTraces(hold_seconds=0.05)
    hold(held, "a", [1, 2], "auth-a")
    hold(held, "b", [3], "auth-b")
    assert held.due() == []  # both just came
    hold(held, "a", [4], "auth-a")  # a new span of "a": its hold starts again
    time.sleep(0.06)
    assert [trace for trace, _, _ in held.due()] == ["b", "a"]  # by last arrival
    assert held.due() == [] and len(held) == 0
    hold(held, "c", [5])
    assert release(held, "c") == [5] and release(held, "c") == []


def test_over_the_bound_the_trace_held_longest_makes_room():
    held = HeldTraces(hold_seconds=60, max_spans=3)
    assert hold(held, "a", [1, 2], "x") == []
    assert hold(held, "b", [3, 4], "y") == [("a", [1, 2], "x")]
    assert [trace for trace, _, _ in held.due(everything=True)] == ["b"]
    assert hold(held, "c", [1, 2, 3, 4], "z") == [("c", [1, 2, 3, 4], "z")]  # alone over it


def test_merge_adds_to_what_is_held_and_releases_it_whole():
    held = HeldTraces(hold_seconds=60)
    waiting = lambda records: "root" not in records  # noqa: E731
    assert held.merge("t", ["a"], "", waiting) == (None, [])
    assert held.merge("t", ["b"], "", waiting) == (None, [])  # both kept, neither replaced
    assert held.merge("t", ["root"], "", waiting) == (["a", "b", "root"], [])
    assert len(held) == 0


@pytest.mark.parametrize("bad", [-1, "10", None, True])
def test_the_hold_must_be_a_number_of_seconds(tmp_path, bad):
    with pytest.raises(ServeError, match="otlp_hold_seconds"):
        start_server(str(tmp_path / "e.db"), otlp_hold_seconds=bad)


def test_the_hold_is_bounded_in_bytes_too():
    held = HeldTraces(hold_seconds=60, max_bytes=1_000, weigh=len)
    assert hold(held, "a", ["x" * 600]) == []
    assert hold(held, "b", ["y" * 600]) == [("a", ["x" * 600], "")]  # 1,200 bytes: a goes
    assert hold(held, "c", ["z" * 2_000]) == [("b", ["y" * 600], ""), ("c", ["z" * 2_000], "")]
    assert len(held) == 0


def test_plain_traffic_never_pushes_a_held_ai_trace_out():
    # A held AI trace waits for its root (which carries the user); meanwhile a service with no
    # AI work sends thousands of rootless spans (its requests carry an upstream traceparent).
    pytest.importorskip("opentelemetry.exporter.otlp.proto.common")
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context
    from posthog_llm.local._otlp import otlp_events
    from posthog_llm.local._otlp_hold import record_weight

    held = HeldTraces(hold_seconds=3600, max_spans=1_000, weigh=record_weight)
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("t")

    def export() -> list:
        events = otlp_events(encode_spans(memory.get_finished_spans()), held)
        memory.clear()
        return events

    root = tracer.start_span("POST /ask", attributes={"posthog.distinct_id": "user-1"})
    tracer.start_span(
        "chat",
        context=set_span_in_context(root),
        attributes={"gen_ai.operation.name": "chat", "gen_ai.request.model": "m"},
    ).end()
    assert export() == [] and len(held) == 1
    for i in range(300):  # 1,800 spans, over the hold's bound
        upstream = SpanContext(
            trace_id=10_000 + i, span_id=1 + i, is_remote=True, trace_flags=TraceFlags(1)
        )
        with tracer.start_as_current_span(
            "GET /health", context=set_span_in_context(NonRecordingSpan(upstream))
        ):
            for _ in range(5):
                tracer.start_span("SELECT 1").end()
        assert export() == []
    root.end()
    events = export()
    assert sorted(e["event"] for e in events) == ["$ai_generation", "$ai_trace"]
    assert {e["distinct_id"] for e in events} == {"user-1"}
