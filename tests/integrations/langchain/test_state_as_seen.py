"""A step's recorded state is the state as the step saw it, not as the caller changed it later.

Events are built on the worker after the trace ends; what a hook keeps by reference shows every
change made after the step: a list the caller appends to, an `AddableDict` a streamed step hands
over, AgentExecutor's `intermediate_steps` extended in place between two planning steps.
"""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("langchain_core")

from langchain_core.runnables import RunnableLambda, RunnablePassthrough  # noqa: E402


def _spans(events: Any, name: str) -> list[dict[str, Any]]:
    return [e["properties"] for e in events("$ai_span") if e["properties"]["$ai_span_name"] == name]


def test_a_streamed_steps_state_is_kept_as_it_was_when_the_stream_ended(handler, events):
    # Streamed, `RunnablePassthrough.assign` hands over an `AddableDict` (a dict subclass).
    items = ["x"]
    chain = RunnablePassthrough.assign(n=lambda d: len(d["items"])) | RunnableLambda(
        lambda d: d["n"], name="read n"
    )
    assert list(chain.stream({"items": items}, config={"callbacks": [handler]})) == [1]
    items.append("appended after the stream ended")

    (assign,) = _spans(events, "RunnableAssign<n>")
    assert assign["$ai_input_state"] == {"items": ["x"]}
    assert assign["$ai_output_state"] == {"items": ["x"], "n": 1}
    (step,) = _spans(events, "read n")
    assert step["$ai_input_state"] == {"items": ["x"], "n": 1}
    (trace,) = events("$ai_trace")
    assert trace["properties"]["$ai_input_state"] == {"items": ["x"]}


def test_a_list_nested_in_the_input_is_kept_as_it_was_at_the_call(handler, events):
    history = ["q1"]
    answer = RunnableLambda(lambda d: len(d["conv"]["history"])).invoke(
        {"conv": {"history": history}}, config={"callbacks": [handler]}
    )
    assert answer == 1
    history.append("appended after invoke returned")

    (trace,) = events("$ai_trace")
    assert trace["properties"]["$ai_input_state"] == {"conv": {"history": ["q1"]}}


def test_each_planning_step_shows_only_the_steps_taken_before_it(handler, events):
    # AgentExecutor's loop: the same `intermediate_steps` list is handed to every (streamed)
    # planning step and extended in place after each tool step.
    planner = RunnablePassthrough.assign(
        seen=lambda d: len(d["intermediate_steps"])
    ) | RunnableLambda(lambda d: f"plan after {d['seen']} steps", name="plan")

    def executor(question: str) -> int:
        intermediate_steps: list[tuple[str, str]] = []
        for turn in range(2):
            for _ in planner.stream({"input": question, "intermediate_steps": intermediate_steps}):
                pass
            intermediate_steps.append(("add(1, 2)", f"result {turn}"))
        return len(intermediate_steps)

    assert (
        RunnableLambda(executor, name="executor").invoke(
            "what is 1+2", config={"callbacks": [handler]}
        )
        == 2
    )

    plans = sorted(_spans(events, "plan"), key=lambda p: p["$ai_input_state"]["seen"])
    assert [p["$ai_input_state"]["seen"] for p in plans] == [0, 1]
    first, second = plans
    assert first["$ai_input_state"]["intermediate_steps"] == []
    assert second["$ai_input_state"]["intermediate_steps"] == [["add(1, 2)", "result 0"]]
    assigns = sorted(
        _spans(events, "RunnableAssign<seen>"), key=lambda p: p["$ai_output_state"]["seen"]
    )
    assert [a["$ai_output_state"]["intermediate_steps"] for a in assigns] == [
        [],
        [["add(1, 2)", "result 0"]],
    ]
