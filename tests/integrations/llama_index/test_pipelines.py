"""Rerankers and sub-question engines: the steps people recognise, nested where they ran."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core.postprocessor.types import BaseNodePostprocessor  # noqa: E402
from llama_index.core.question_gen.types import BaseQuestionGenerator, SubQuestion  # noqa: E402
from llama_index.core.schema import NodeWithScore  # noqa: E402

from .fakes import ANSWER, events  # noqa: E402


def by_event(evts, name):
    return [e["properties"] for e in evts if e["event"] == name]


class ShortestFirstRerank(BaseNodePostprocessor):
    """Scores nodes by brevity: a reranker that needs no model."""

    def _postprocess_nodes(self, nodes: list[NodeWithScore], query_bundle: Any = None) -> list:
        ranked = [NodeWithScore(node=n.node, score=1.0 / len(n.node.get_content())) for n in nodes]
        return sorted(ranked, key=lambda n: -n.score)[:1]


class FixedQuestions(BaseQuestionGenerator):
    """Splits every query into one sub-question per tool, without an LLM."""

    def _get_prompts(self) -> dict:
        return {}

    def _update_prompts(self, prompts: dict) -> None:
        pass

    def generate(self, tools: Any, query: Any) -> list[SubQuestion]:
        return [
            SubQuestion(sub_question=f"{t.name}: {query.query_str}", tool_name=t.name)
            for t in tools
        ]

    async def agenerate(self, tools: Any, query: Any) -> list[SubQuestion]:
        return self.generate(tools, query)


def test_reranker_is_a_step_with_its_scores(index, handler, client, sink):
    engine = index.as_query_engine(similarity_top_k=3, node_postprocessors=[ShortestFirstRerank()])
    assert str(engine.query("which animal?")) == ANSWER
    evts = events(client, sink)
    spans = {s["$ai_span_type"]: s for s in by_event(evts, "$ai_span")}
    assert set(spans) == {"retrieve", "rerank", "synthesize"}
    rerank = spans["rerank"]
    assert rerank["$ai_span_name"] == "ShortestFirstRerank.postprocess_nodes"
    assert rerank["$ai_input_state"] == {"query": "which animal?", "nodes": 3}
    (best,) = rerank["$ai_output_state"]
    assert best["text"] == "Parrots can learn many words."
    assert best["score"] == pytest.approx(1 / len("Parrots can learn many words."))
    # The retrieval step kept its own scores, captured before the reranker ran.
    assert len(spans["retrieve"]["$ai_output_state"]) == 3
    assert all(n["score"] != best["score"] for n in spans["retrieve"]["$ai_output_state"])


@pytest.mark.parametrize("use_async", [False, True])
def test_sub_question_engine_nests_sub_queries(index, handler, client, sink, use_async):
    from llama_index.core.query_engine import SubQuestionQueryEngine
    from llama_index.core.tools import QueryEngineTool

    tools = [
        QueryEngineTool.from_defaults(index.as_query_engine(), name="cats", description="cats"),
        QueryEngineTool.from_defaults(index.as_query_engine(), name="dogs", description="dogs"),
    ]
    engine = SubQuestionQueryEngine.from_defaults(
        query_engine_tools=tools, question_gen=FixedQuestions(), use_async=use_async
    )
    assert str(engine.query("compare pets")) == ANSWER

    evts = events(client, sink)
    (trace,) = by_event(evts, "$ai_trace")
    trace_id = trace["$ai_trace_id"]
    assert trace["$ai_span_name"] == "SubQuestionQueryEngine.query"
    assert all(e["properties"]["$ai_trace_id"] == trace_id for e in evts)
    spans = by_event(evts, "$ai_span")
    (questions,) = [s for s in spans if s["$ai_span_type"] == "sub_question"]
    assert questions["$ai_parent_id"] == trace_id
    assert questions["$ai_output_state"] == [
        {"sub_question": "cats: compare pets", "tool_name": "cats"},
        {"sub_question": "dogs: compare pets", "tool_name": "dogs"},
    ]
    sub_queries = [s for s in spans if s["$ai_span_type"] == "query"]
    assert sorted(s["$ai_input_state"] for s in sub_queries) == [
        "cats: compare pets",
        "dogs: compare pets",
    ]
    assert all(s["$ai_parent_id"] == trace_id for s in sub_queries)
    # Two sub-answers and the final synthesis: three generations, each under its own step.
    gens = by_event(evts, "$ai_generation")
    assert len(gens) == 3
    span_ids = {s["$ai_span_id"] for s in spans}
    assert all(g["$ai_parent_id"] in span_ids for g in gens)


def test_ingestion_pipeline_is_a_trace_with_its_embeddings(
    settings, documents, handler, client, sink
):
    from llama_index.core.embeddings import MockEmbedding
    from llama_index.core.ingestion import IngestionPipeline
    from llama_index.core.node_parser import SentenceSplitter

    pipeline = IngestionPipeline(
        transformations=[
            SentenceSplitter(chunk_size=64, chunk_overlap=0),
            MockEmbedding(embed_dim=8),
        ]
    )
    nodes = pipeline.run(documents=documents)
    assert len(nodes) == len(documents)
    evts = events(client, sink)
    (trace,) = by_event(evts, "$ai_trace")
    assert trace["$ai_span_name"] == "IngestionPipeline.run"
    embeddings = by_event(evts, "$ai_embedding")
    assert sum(e["$ai_embedding_input_count"] for e in embeddings) == len(documents)
    assert all(e["$ai_trace_id"] == trace["$ai_trace_id"] for e in embeddings)
    assert all(e["$ai_parent_id"] == trace["$ai_trace_id"] for e in embeddings)
    # Like an index build, the trace says how much went in and came out, not every document
    # and vector again.
    assert trace["$ai_input_state"] == {"documents": len(documents)}
    assert trace["$ai_output_state"] == {"nodes": len(nodes)}


@pytest.mark.parametrize("run", ["sync", "async"])
def test_a_batch_larger_than_the_models_batch_size_is_one_event_per_call(
    settings, handler, client, sink, run
):
    # Seven texts, two per call: four embedding calls inside one batch span (gathered when
    # async), each its own event with its own id, and every text counted once.
    import asyncio

    from llama_index.core.embeddings import MockEmbedding

    model = MockEmbedding(embed_dim=8, embed_batch_size=2)
    texts = [f"text {i}" for i in range(7)]
    if run == "sync":
        vectors = model.get_text_embedding_batch(texts)
    else:
        vectors = asyncio.run(model.aget_text_embedding_batch(texts))
    assert len(vectors) == 7
    embeddings = by_event(events(client, sink), "$ai_embedding")
    assert len(embeddings) == 4
    assert len({e["$ai_span_id"] for e in embeddings}) == 4
    assert sorted(e["$ai_embedding_input_count"] for e in embeddings) == [1, 2, 2, 2]
    assert len({e["$ai_trace_id"] for e in embeddings}) == 1
