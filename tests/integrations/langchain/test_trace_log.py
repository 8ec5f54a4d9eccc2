"""A trace's log is handed over once none of its runs is open: what ended always gets out.

The hooks append to one log per trace and the worker replays it. These tests cover the ways a
log leaves other than "the root ended last": a step that ends after its root, a root that is
evicted before it ends, a trace long enough to hand over in parts, and a builder that fails.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

pytest.importorskip("langchain_core")

from posthog_llm.integrations.langchain import _handler  # noqa: E402


def _start(handler: Any, run: uuid.UUID, parent: uuid.UUID | None, name: str) -> None:
    handler.on_chain_start(None, {"in": name}, run_id=run, parent_run_id=parent, name=name)


def _by_name(sent: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["properties"].get("$ai_span_name"): e["properties"] for e in sent}


def test_a_step_that_ends_after_its_root_is_sent_with_the_trace(handler, events):
    root, step = uuid.uuid4(), uuid.uuid4()
    _start(handler, root, None, "Root")
    _start(handler, step, root, "Background")
    handler.on_chain_end({"out": 1}, run_id=root)
    assert events() == []  # a step of the trace is still running: nothing is handed over yet
    handler.on_chain_end({"out": 2}, run_id=step)

    sent = _by_name(events())
    assert set(sent) == {"Root", "Background"}
    assert sent["Background"]["$ai_parent_id"] == sent["Root"]["$ai_trace_id"] == str(root)
    assert sent["Background"]["$ai_output_state"] == {"out": 2}
    assert len(handler._runs) == 0


def test_an_evicted_root_is_sent_with_the_steps_that_ended(handler, events):
    handler.max_runs = 2
    root, step, other = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    _start(handler, root, None, "Root")
    _start(handler, step, root, "Step")
    handler.on_chain_end({}, run_id=step)
    _start(handler, other, None, "Other")
    _start(handler, uuid.uuid4(), other, "Pushes the root out")  # the root never ends

    sent = events()
    assert [(e["event"], e["properties"].get("$ai_span_name")) for e in sent] == [
        ("$ai_span", "Step"),
        ("$ai_trace", "Root"),  # as it is: no output, not an error; no orphan step
    ]
    step_props, root_props = (e["properties"] for e in sent)
    assert step_props["$ai_trace_id"] == root_props["$ai_trace_id"] == str(root)
    assert step_props["$ai_parent_id"] == str(root)
    assert "$ai_output_state" not in root_props and "$ai_is_error" not in root_props
    assert handler._runs.get(root) is None


def test_runs_evicted_for_their_age_send_their_trace_root(handler, events):
    root, step = uuid.uuid4(), uuid.uuid4()
    _start(handler, root, None, "Root")
    _start(handler, step, root, "Step")  # neither ever ends
    handler.max_run_age = 0.0
    for _ in range(64):  # eviction looks at ages every 64 starts
        run = uuid.uuid4()
        _start(handler, run, None, "Later")
        handler.on_chain_end({}, run_id=run)

    assert handler._runs.get(root) is None and handler._runs.get(step) is None
    sent = [e for e in events() if e["properties"]["$ai_trace_id"] == str(root)]
    assert sorted((e["event"], e["properties"]["$ai_span_name"]) for e in sent) == [
        ("$ai_span", "Step"),
        ("$ai_trace", "Root"),
    ]


def test_a_long_trace_hands_over_what_ended_in_parts(handler, events, monkeypatch):
    monkeypatch.setattr(_handler, "_SPILL_AT", 60)
    root, parent = uuid.uuid4(), uuid.uuid4()
    _start(handler, root, None, "Root")
    _start(handler, parent, root, "Parent")
    children = [uuid.uuid4() for _ in range(20)]
    for i, child in enumerate(children):
        _start(handler, child, parent, f"Child {i}")
        handler.on_chain_end({"i": i}, run_id=child)

    early = _by_name(events())
    # Sent while the trace is still running; the open runs' starts stay for the next part.
    assert "Child 0" in early and "Root" not in early and "Parent" not in early
    assert all(name.startswith("Child") for name in early)
    assert len(handler._runs.get(root).log) < 60 + 11 + 6

    handler.on_chain_end({}, run_id=parent)
    handler.on_chain_end({}, run_id=root)
    sent = _by_name(events())
    assert len(sent) == 22  # every child once, the parent and the root
    for i in range(20):
        child = sent[f"Child {i}"]
        assert child["$ai_parent_id"] == sent["Parent"]["$ai_span_id"] == str(parent)
        assert child["$ai_output_state"] == {"i": i}
    assert sent["Parent"]["$ai_parent_id"] == str(root)
    assert sent["Root"]["$ai_trace_id"] == str(root)


@pytest.mark.allow_internal_errors
def test_a_builder_that_fails_costs_its_own_event_only(handler, events, monkeypatch):
    def broken(*args: Any) -> dict[str, Any]:
        raise RuntimeError("builder bug")

    monkeypatch.setattr(
        _handler, "_BUILDERS", (_handler.trace_builder, broken, _handler.generation_builder)
    )
    root, step = uuid.uuid4(), uuid.uuid4()
    _start(handler, root, None, "Root")
    _start(handler, step, root, "Step")
    handler.on_chain_end({}, run_id=step)
    handler.on_chain_end({"answer": 42}, run_id=root)

    (trace,) = events()
    assert trace["event"] == "$ai_trace"
    assert trace["properties"]["$ai_output_state"] == {"answer": 42}


def test_a_step_with_its_own_properties_keeps_them_in_the_shared_hand_over(handler, events):
    root, step = uuid.uuid4(), uuid.uuid4()
    handler.on_chain_start(
        None, {}, run_id=root, name="Root", metadata={"posthog_properties": {"team": "a"}}
    )
    handler.on_chain_start(
        None,
        {},
        run_id=step,
        parent_run_id=root,
        name="Step",
        metadata={"posthog_properties": {"team": "b", "step": True}},
    )
    handler.on_chain_end({}, run_id=step)
    handler.on_chain_end({}, run_id=root)

    sent = _by_name(events())
    assert sent["Step"]["team"] == "b" and sent["Step"]["step"] is True
    assert sent["Root"]["team"] == "a" and "step" not in sent["Root"]


def test_each_event_keeps_the_time_its_run_ended(handler, events):
    from datetime import datetime

    root, step = uuid.uuid4(), uuid.uuid4()
    _start(handler, root, None, "Root")
    _start(handler, step, root, "Step")
    handler.on_chain_end({}, run_id=step)
    time.sleep(0.3)
    handler.on_chain_end({}, run_id=root)

    sent = {e["properties"].get("$ai_span_name"): e for e in events()}
    ended = {name: datetime.fromisoformat(e["timestamp"]) for name, e in sent.items()}
    gap = (ended["Root"] - ended["Step"]).total_seconds()
    assert 0.25 <= gap < 5  # the step's event is not stamped with its trace's hand-over time
