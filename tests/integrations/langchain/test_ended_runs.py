"""Children that start after their parent ended: the memory of ended runs keeps no run id object.

The run map remembers an ended run by its key alone when the span its children use follows
from it (the root: the trace id; a visible run: its own id), and keeps the pair otherwise (a
hidden run: its parent's span; a run id that is not a UUID). Every case must give the late
child the same `$ai_parent_id` and trace as a child that started in time.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

pytest.importorskip("langchain_core")


def _late_child(handler: Any, parent: Any, name: str) -> None:
    child = uuid.uuid4()
    handler.on_chain_start(None, {"n": 1}, run_id=child, parent_run_id=parent, name=name)
    handler.on_chain_end({"n": 2}, run_id=child)


def _by_name(sent: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["properties"]["$ai_span_name"]: e["properties"] for e in sent}


def test_a_late_child_of_the_root_joins_its_trace(handler, events):
    root = uuid.uuid4()
    handler.on_chain_start(None, {}, run_id=root, name="Root")
    handler.on_chain_end({}, run_id=root)
    _late_child(handler, root, "Late")

    sent = _by_name(events())
    assert sent["Late"]["$ai_trace_id"] == sent["Root"]["$ai_trace_id"] == str(root)
    assert sent["Late"]["$ai_parent_id"] == str(root)


def test_a_late_child_of_a_visible_step_is_parented_to_that_step(handler, events):
    root, step = uuid.uuid4(), uuid.uuid4()
    handler.on_chain_start(None, {}, run_id=root, name="Root", metadata={"posthog_trace_id": "t-1"})
    handler.on_chain_start(None, {}, run_id=step, parent_run_id=root, name="Step")
    handler.on_chain_end({}, run_id=step)
    _late_child(handler, step, "Late")
    handler.on_chain_end({}, run_id=root)

    sent = _by_name(events())
    assert sent["Late"]["$ai_trace_id"] == "t-1"
    assert sent["Late"]["$ai_parent_id"] == sent["Step"]["$ai_span_id"] == str(step)
    assert sent["Step"]["$ai_parent_id"] == "t-1"


def test_a_late_child_of_a_hidden_step_attaches_above_it(handler, events):
    root, step, hidden = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    handler.on_chain_start(None, {}, run_id=root, name="Root")
    handler.on_chain_start(None, {}, run_id=step, parent_run_id=root, name="Step")
    handler.on_chain_start(
        None, {}, run_id=hidden, parent_run_id=step, tags=["langsmith:hidden"], name="Branch"
    )
    handler.on_chain_end({}, run_id=hidden)
    _late_child(handler, hidden, "Late")
    handler.on_chain_end({}, run_id=step)
    handler.on_chain_end({}, run_id=root)

    sent = _by_name(events())
    assert "Branch" not in sent
    assert sent["Late"]["$ai_parent_id"] == str(step)
    assert sent["Late"]["$ai_trace_id"] == str(root)


def test_run_ids_that_are_not_uuids_are_remembered_as_given(handler, events):
    handler.on_chain_start(None, {}, run_id="root-1", name="Root")
    handler.on_chain_start(None, {}, run_id="step-1", parent_run_id="root-1", name="Step")
    handler.on_chain_end({}, run_id="step-1")
    handler.on_chain_start(None, {}, run_id="late-1", parent_run_id="step-1", name="Late")
    handler.on_chain_end({}, run_id="late-1")
    handler.on_chain_end({}, run_id="root-1")

    sent = _by_name(events())
    assert sent["Step"]["$ai_span_id"] == "step-1"
    assert sent["Late"]["$ai_parent_id"] == "step-1"
    assert sent["Late"]["$ai_span_id"] == "late-1"
    assert sent["Root"]["$ai_trace_id"] == "root-1"


def test_a_model_called_alone_keeps_its_run_id_as_span_id(handler, events):
    run = uuid.uuid4()
    handler.on_llm_start({}, ["hi"], run_id=run)
    handler.on_llm_end(_llm_result("hello"), run_id=run)

    (generation,) = events("$ai_generation")
    assert generation["properties"]["$ai_span_id"] == str(run)
    assert generation["properties"]["$ai_trace_id"] == str(run)


def test_an_evicted_roots_trace_is_built_and_then_stops_collecting_texts(handler, events):
    handler.max_runs = 1
    root, other = uuid.uuid4(), uuid.uuid4()
    handler.on_chain_start(None, {}, run_id=root, name="Root")
    trace = handler._runs.get(root)  # a live run's entry is its trace
    assert trace.sent_whole is not None and not trace.sent_whole  # collecting, none yet
    handler.on_chain_start(None, {}, run_id=other, name="Other")  # evicts the root
    assert handler._runs.get(root) is None
    (sent,) = events("$ai_trace")  # the evicted root is sent as it is
    assert sent["properties"]["$ai_span_name"] == "Root"
    assert trace.sent_whole is None  # its own event was built


def _llm_result(text: str) -> Any:
    from langchain_core.outputs import Generation, LLMResult

    return LLMResult(generations=[[Generation(text=text)]])
