"""The user's own code under LlamaIndex's `@dispatcher.span`: methods and plain functions are
`custom` spans, each its own, with what runs inside them nested under them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import posthog_llm
import pytest

pytest.importorskip("llama_index.core")

from llama_index.core.instrumentation import get_dispatcher  # noqa: E402
from llama_index.core.llms import MockLLM  # noqa: E402

from .fakes import events  # noqa: E402

dispatcher = get_dispatcher(__name__)
llm = MockLLM(max_tokens=3)


def by_event(evts: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e["properties"] for e in evts if e["event"] == name]


class Pipe:
    @dispatcher.span
    def retrieve_docs(self, q: str) -> list[str]:
        return [f"doc about {q}"]

    @dispatcher.span
    def answer(self, q: str, docs: list[str]) -> str:
        return llm.complete(q + str(docs)).text

    @dispatcher.span
    def run(self, q: str) -> str:
        docs = self.retrieve_docs(q)
        return self.answer(q, docs)


def test_nested_methods_of_one_instance_are_each_a_span(handler, client, sink):
    Pipe().run("hedgehogs")
    evts = events(client, sink)
    (trace,) = by_event(evts, "$ai_trace")
    assert trace["$ai_span_name"] == "Pipe.run"
    spans = {s["$ai_span_name"]: s for s in by_event(evts, "$ai_span")}
    assert set(spans) == {"Pipe.retrieve_docs", "Pipe.answer"}
    assert {s["$ai_span_type"] for s in spans.values()} == {"custom"}
    assert spans["Pipe.retrieve_docs"]["$ai_parent_id"] == trace["$ai_trace_id"]
    assert spans["Pipe.retrieve_docs"]["$ai_output_state"] == ["doc about hedgehogs"]
    assert spans["Pipe.answer"]["$ai_parent_id"] == trace["$ai_trace_id"]
    (gen,) = by_event(evts, "$ai_generation")
    assert gen["$ai_parent_id"] == spans["Pipe.answer"]["$ai_span_id"]
    assert handler.pending()["traces"] == 0


def test_a_plain_function_of_the_users_is_the_trace_and_nested_ones_its_spans(
    handler, client, sink
):
    @dispatcher.span
    def inner(q: str) -> str:
        return llm.complete(q).text

    @dispatcher.span
    def outer(q: str) -> str:
        return inner(q)

    assert outer("hi") == llm.complete("hi").text
    evts = events(client, sink)
    traces = by_event(evts, "$ai_trace")
    (trace,) = [t for t in traces if t["$ai_span_name"].endswith("outer")]
    # Named by qualified name, without `<locals>`.
    assert trace["$ai_span_name"] == (
        "test_a_plain_function_of_the_users_is_the_trace_and_nested_ones_its_spans.outer"
    )
    assert trace["$ai_input_state"] == {"q": "hi"}
    (span,) = [s for s in by_event(evts, "$ai_span") if s["$ai_trace_id"] == trace["$ai_trace_id"]]
    assert span["$ai_span_name"].endswith(".inner") and span["$ai_span_type"] == "custom"
    assert span["$ai_parent_id"] == trace["$ai_trace_id"]
    (gen,) = [
        g for g in by_event(evts, "$ai_generation") if g["$ai_trace_id"] == trace["$ai_trace_id"]
    ]
    assert gen["$ai_parent_id"] == span["$ai_span_id"]


@pytest.fixture
def default_client(client: Any) -> Iterator[Any]:
    posthog_llm.set_client(client)
    yield client
    posthog_llm.set_client(None)


def test_work_of_another_integration_inside_a_users_function_joins_its_trace(
    handler, default_client, client, sink
):
    @dispatcher.span
    async def handle_request(q: str) -> str:
        with posthog_llm.span("mine"):
            return q.upper()

    assert asyncio.run(handle_request("owls")) == "OWLS"
    evts = events(client, sink)
    (trace,) = by_event(evts, "$ai_trace")
    assert trace["$ai_span_name"].endswith("handle_request")
    assert trace["$ai_output_state"] == "OWLS"
    (mine,) = by_event(evts, "$ai_span")
    assert mine["$ai_span_name"] == "mine"
    assert mine["$ai_trace_id"] == trace["$ai_trace_id"]
    assert mine["$ai_parent_id"] == trace["$ai_trace_id"]


def test_llama_index_own_functions_stay_walked_through(handler, client, sink):
    from llama_index.core.async_utils import run_jobs

    async def job() -> str:
        return llm.complete("inside a job").text

    @dispatcher.span
    def outer() -> list[str]:
        return asyncio.run(run_jobs([job()], workers=1))

    outer()
    evts = events(client, sink)
    names = [e["properties"].get("$ai_span_name") for e in evts]
    assert not any("run_jobs" in str(name) for name in names)
    (trace,) = by_event(evts, "$ai_trace")
    (gen,) = by_event(evts, "$ai_generation")
    assert gen["$ai_parent_id"] == trace["$ai_trace_id"]


def test_a_context_opened_inside_a_step_applies_to_the_llamaindex_work_in_it(handler, client, sink):
    # A step marks one call private and names its user: that call's generation is the user's
    # and keeps no content, as a span in the same block; the step and the trace are not.
    @dispatcher.span
    def step(q: str) -> str:
        with posthog_llm.context(
            privacy_mode=True, distinct_id="patient-7", properties={"ward": "B"}
        ):
            with posthog_llm.span("own", client=client):
                pass
            return llm.complete(f"diagnosis for SSN {q}").text

    with posthog_llm.context(distinct_id="doctor-1"):
        step("123-45-6789")
    evts = events(client, sink)
    (generation,) = [e for e in evts if e["event"] == "$ai_generation"]
    (own,) = [e for e in evts if e["properties"].get("$ai_span_name") == "own"]
    (trace,) = [e for e in evts if e["event"] == "$ai_trace"]
    for event in (generation, own):
        assert event["distinct_id"] == "patient-7"
        assert event["properties"]["ward"] == "B"
    assert "123-45-6789" not in str(generation["properties"])
    assert trace["distinct_id"] == "doctor-1" and "ward" not in trace["properties"]
    assert trace["properties"]["$ai_input_state"] == {"q": "123-45-6789"}
