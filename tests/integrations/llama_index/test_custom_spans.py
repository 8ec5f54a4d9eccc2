"""The user's own code under LlamaIndex's `@dispatcher.span`: methods and plain functions are
`custom` spans, each its own, with what runs inside them nested under them."""

from __future__ import annotations

from typing import Any

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
