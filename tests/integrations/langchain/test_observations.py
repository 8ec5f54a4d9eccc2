"""Observations of LangChain runs: opened by roots, made on demand for the steps inside them.

Work nested in a step (a user span here; a provider call or another framework's step alike)
must join that step as its child, however deep the step is and wherever it runs.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

pytest.importorskip("langchain_core")

import posthog_llm  # noqa: E402
from langchain_core.runnables import RunnableLambda  # noqa: E402
from posthog_llm.instrumentation import current_observation  # noqa: E402


@pytest.fixture(autouse=True)
def _spans_to_the_test_client(client: Any) -> None:
    posthog_llm.set_client(client)  # `posthog_llm.span` sends to the default client


def _span_parent(events: Any, name: str) -> tuple[Any, dict[str, Any]]:
    spans = {e["properties"]["$ai_span_name"]: e["properties"] for e in events("$ai_span")}
    return spans[name].get("$ai_parent_id"), spans


def test_work_nested_in_a_deep_step_joins_that_step(handler: Any, events: Any) -> None:
    def leaf(x: int) -> int:
        with posthog_llm.span("mine"):
            return x + 1

    inner = RunnableLambda(leaf).with_config(run_name="leaf")
    middle = RunnableLambda(lambda x: inner.invoke(x)).with_config(run_name="middle")
    outer = RunnableLambda(lambda x: middle.invoke(x)).with_config(run_name="outer")
    assert outer.invoke(1, config={"callbacks": [handler]}) == 2

    parent, spans = _span_parent(events, "mine")
    assert parent == spans["leaf"]["$ai_span_id"]
    assert spans["leaf"]["$ai_parent_id"] == spans["middle"]["$ai_span_id"]
    assert current_observation() is None  # nothing stays open after the chain


def test_a_step_run_in_a_thread_without_the_callers_context_keeps_its_children(
    handler: Any, events: Any
) -> None:
    inner = RunnableLambda(lambda x: _in_span(x)).with_config(run_name="threaded")

    def step(x: int, config: Any) -> int:
        result: list[int] = []
        # A plain thread does not copy the context: the root's observation is not visible
        # there, so the step started in it opens its own.
        worker = threading.Thread(target=lambda: result.append(inner.invoke(x, config=config)))
        worker.start()
        worker.join()
        return result[0]

    RunnableLambda(step).with_config(run_name="outer").invoke(1, config={"callbacks": [handler]})

    parent, spans = _span_parent(events, "mine")
    assert parent == spans["threaded"]["$ai_span_id"]
    assert spans["threaded"]["$ai_trace_id"] == spans["mine"]["$ai_trace_id"]


def _in_span(x: int) -> int:
    with posthog_llm.span("mine"):
        return x + 1


def test_steps_that_nothing_asks_about_get_no_observation(handler: Any) -> None:
    seen: list[Any] = []

    def look(x: int) -> int:
        (trace,) = {id(entry): entry for entry in handler._runs._live.values()}.values()
        seen.append((trace.root_obs, dict(trace.observations or {})))
        return x

    chain = RunnableLambda(lambda x: x).with_config(run_name="a") | RunnableLambda(look)
    chain.invoke(1, config={"callbacks": [handler]})
    ((root, steps),) = seen
    # The root has one (it is what nested work finds first); the first step never had
    # anything nested in it, so none was made for it (nor for the step running now).
    assert root is not None
    assert steps == {}
    assert len(handler._runs._live) == 0


def test_a_span_opened_after_a_first_step_still_parents_the_next_one(
    handler: Any, events: Any
) -> None:
    first = RunnableLambda(lambda x: x).with_config(run_name="first")
    second = RunnableLambda(lambda x: x).with_config(run_name="second")

    def step(x: int) -> int:
        first.invoke(x)  # started without asking who runs here: nothing was nested yet
        with posthog_llm.span("mine"):
            return int(second.invoke(x))

    RunnableLambda(step).with_config(run_name="outer").invoke(1, config={"callbacks": [handler]})

    parent, spans = _span_parent(events, "second")
    assert parent == spans["mine"]["$ai_span_id"]
    trace_id = spans["first"]["$ai_trace_id"]
    assert spans["first"]["$ai_parent_id"] == trace_id  # a direct child of the root
    assert spans["mine"]["$ai_parent_id"] == trace_id
