"""Work from elsewhere inside a LlamaIndex span joins it as a child: the trace opens one
observation, and nested work finds the span it runs in only when it asks."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("llama_index.core")

import posthog_llm  # noqa: E402
from llama_index.core import Settings  # noqa: E402
from llama_index.core.base.llms.types import CompletionResponse  # noqa: E402
from llama_index.core.llms.callbacks import llm_completion_callback  # noqa: E402
from llama_index.core.tools import FunctionTool  # noqa: E402

from .fakes import ANSWER, UsageLLM, events  # noqa: E402


class InstrumentedLLM(UsageLLM):
    """An LLM whose call runs the user's own instrumented code (a provider SDK call would)."""

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        with posthog_llm.span("inside_llm"):
            pass
        return CompletionResponse(text=ANSWER)


def by_event(evts: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e["properties"] for e in evts if e["event"] == name]


@pytest.fixture
def default_client(client: Any) -> Any:
    posthog_llm.set_client(client)
    return client


def test_user_span_inside_an_llm_call_is_a_child_of_its_generation(
    index, handler, default_client, sink
):
    Settings.llm = InstrumentedLLM()
    assert str(index.as_query_engine().query("cats?")) == ANSWER
    evts = events(default_client, sink)
    (trace,) = by_event(evts, "$ai_trace")
    (gen,) = by_event(evts, "$ai_generation")
    (inside,) = [s for s in by_event(evts, "$ai_span") if s["$ai_span_name"] == "inside_llm"]
    assert inside["$ai_trace_id"] == trace["$ai_trace_id"] == gen["$ai_trace_id"]
    assert inside["$ai_parent_id"] == gen["$ai_span_id"]


def test_user_span_inside_a_tool_is_its_child_and_work_after_it_is_not(
    settings, handler, default_client, sink
):
    def shout(text: str) -> str:
        with posthog_llm.span("inside_tool"):
            return text.upper()

    tool = FunctionTool.from_defaults(fn=shout, name="shout")
    with posthog_llm.span("request"):
        assert tool.call(text="owls").raw_output == "OWLS"
        with posthog_llm.span("after_tool"):
            pass
    evts = events(default_client, sink)
    spans = {s["$ai_span_name"]: s for s in by_event(evts, "$ai_span")}
    (request,) = by_event(evts, "$ai_trace")
    assert request["$ai_span_name"] == "request"
    tool_span = spans["shout"]  # the tool's own name
    assert tool_span["$ai_parent_id"] == request["$ai_trace_id"]
    assert spans["inside_tool"]["$ai_parent_id"] == tool_span["$ai_span_id"]
    # Once the tool has returned, the user's code is no longer inside any LlamaIndex span.
    assert spans["after_tool"]["$ai_parent_id"] == request["$ai_trace_id"]
    assert handler.pending()["traces"] == 0


def test_llm_call_inside_a_user_span_inside_a_tool_is_the_user_spans_child(
    settings, handler, default_client, sink
):
    def answer(text: str) -> str:
        with posthog_llm.span("rerank_and_answer"):
            inside = Settings.llm.complete(text).text
        after = Settings.llm.complete(text).text  # the user span has ended: the tool's child
        return inside + after

    tool = FunctionTool.from_defaults(fn=answer, name="answer")
    assert tool.call(text="owls").raw_output == ANSWER + ANSWER
    evts = events(default_client, sink)
    (trace,) = by_event(evts, "$ai_trace")
    assert trace["$ai_span_name"] == "answer"  # the tool's own name
    (user,) = by_event(evts, "$ai_span")
    assert user["$ai_span_name"] == "rerank_and_answer"
    assert user["$ai_parent_id"] == trace["$ai_trace_id"]
    inside, after = by_event(evts, "$ai_generation")
    assert inside["$ai_parent_id"] == user["$ai_span_id"]
    assert after["$ai_parent_id"] == trace["$ai_trace_id"]
    assert handler.pending()["traces"] == 0


def test_llama_index_steps_inside_a_user_span_inside_a_users_method_nest_under_it(
    index, handler, default_client, sink
):
    from llama_index.core.instrumentation import get_dispatcher

    dispatcher = get_dispatcher("tests.llama_index.nesting")
    engine = index.as_query_engine()

    class Pipeline:
        @dispatcher.span
        def run(self, question: str) -> str:
            with posthog_llm.span("prepare_and_query"):
                return str(engine.query(question))

    assert Pipeline().run("cats?") == ANSWER
    evts = events(default_client, sink)
    (trace,) = by_event(evts, "$ai_trace")
    assert trace["$ai_span_name"] == "Pipeline.run"
    spans = {s["$ai_span_name"]: s for s in by_event(evts, "$ai_span")}
    user = spans["prepare_and_query"]
    assert user["$ai_parent_id"] == trace["$ai_trace_id"]
    query = spans["RetrieverQueryEngine.query"]
    assert query["$ai_parent_id"] == user["$ai_span_id"]
    # Below the query, its own steps are its children as always.
    synthesize = next(s for s in spans.values() if s.get("$ai_span_type") == "synthesize")
    assert synthesize["$ai_parent_id"] == query["$ai_span_id"]
    (gen,) = by_event(evts, "$ai_generation")
    assert gen["$ai_parent_id"] == synthesize["$ai_span_id"]


def test_user_spans_alternating_with_llama_index_spans_each_nest_in_the_nearest(
    settings, handler, default_client, sink
):
    # step (tool) -> user span -> tool -> user span -> LLM call: each piece's parent is the
    # piece it runs in, whichever side opened it.
    def inner(text: str) -> str:
        with posthog_llm.span("inner_user"):
            return Settings.llm.complete(text).text

    inner_tool = FunctionTool.from_defaults(fn=inner, name="inner_tool")

    def outer(text: str) -> str:
        with posthog_llm.span("outer_user"):
            return inner_tool.call(text=text).raw_output

    outer_tool = FunctionTool.from_defaults(fn=outer, name="outer_tool")
    assert outer_tool.call(text="owls").raw_output == ANSWER
    evts = events(default_client, sink)
    (trace,) = by_event(evts, "$ai_trace")
    assert trace["$ai_span_name"] == "outer_tool"
    spans = {s["$ai_span_name"]: s for s in by_event(evts, "$ai_span")}
    assert spans["outer_user"]["$ai_parent_id"] == trace["$ai_trace_id"]
    assert spans["inner_tool"]["$ai_parent_id"] == spans["outer_user"]["$ai_span_id"]
    assert spans["inner_user"]["$ai_parent_id"] == spans["inner_tool"]["$ai_span_id"]
    (gen,) = by_event(evts, "$ai_generation")
    assert gen["$ai_parent_id"] == spans["inner_user"]["$ai_span_id"]
    assert {e["properties"]["$ai_trace_id"] for e in evts} == {trace["$ai_trace_id"]}
    assert handler.pending()["traces"] == 0
