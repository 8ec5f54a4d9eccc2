"""A query engine over a VectorStoreIndex: one trace, the recognisable steps, one generation."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core import Settings  # noqa: E402
from llama_index.core.llms import ChatMessage  # noqa: E402

from .fakes import ANSWER, SERVED_MODEL, ChatUsageLLM, events, props  # noqa: E402


def by_event(evts, name):
    return [e["properties"] for e in evts if e["event"] == name]


def test_query_sends_one_trace_with_its_steps(index, documents, handler, client, sink):
    response = index.as_query_engine().query("How long do cats sleep?")
    assert str(response) == ANSWER

    evts = events(client, sink)
    (trace,) = by_event(evts, "$ai_trace")
    spans = by_event(evts, "$ai_span")
    (generation,) = by_event(evts, "$ai_generation")
    (embedding,) = by_event(evts, "$ai_embedding")

    trace_id = trace["$ai_trace_id"]
    assert trace["$ai_span_name"] == "RetrieverQueryEngine.query"
    assert trace["$ai_input_state"] == "How long do cats sleep?"
    assert trace["$ai_output_state"] == ANSWER
    assert trace["$ai_framework"] == "llama-index"
    assert "$ai_parent_id" not in trace
    assert trace["$ai_latency"] > 0

    # Internal noise (_query, nested get_response, split_text ...) is filtered out.
    assert sorted(s["$ai_span_name"] for s in spans) == [
        "CompactAndRefine.synthesize",
        "VectorIndexRetriever.retrieve",
    ]
    assert len(evts) <= 10
    for p in [*spans, generation, embedding]:
        assert p["$ai_trace_id"] == trace_id
        assert p["$ai_framework"] == "llama-index"
    retrieve = next(s for s in spans if s["$ai_span_type"] == "retrieve")
    synthesize = next(s for s in spans if s["$ai_span_type"] == "synthesize")
    assert retrieve["$ai_parent_id"] == trace_id
    assert synthesize["$ai_parent_id"] == trace_id
    assert retrieve["$ai_input_state"] == "How long do cats sleep?"
    known = {d.text for d in documents}
    assert len(retrieve["$ai_output_state"]) == 2  # similarity_top_k
    assert all(node["text"] in known for node in retrieve["$ai_output_state"])
    assert all("score" in node for node in retrieve["$ai_output_state"])
    assert synthesize["$ai_output_state"] == ANSWER
    assert embedding["$ai_parent_id"] == retrieve["$ai_span_id"]
    assert generation["$ai_parent_id"] == synthesize["$ai_span_id"]
    # Every event of an anonymous trace shares one personless distinct id.
    assert {e["distinct_id"] for e in evts} == {trace_id}
    assert all(e["properties"]["$process_person_profile"] is False for e in evts)


def test_generation_carries_model_usage_parameters_and_content(
    index, documents, handler, client, sink
):
    index.as_query_engine().query("How long do cats sleep?")
    (gen,) = props(client, sink, "$ai_generation")

    assert gen["$ai_model"] == SERVED_MODEL  # the served model from the raw response
    assert gen["$ai_provider"] == "mock"
    assert gen["$ai_span_name"] == "UsageLLM.complete"
    assert gen["$ai_input_tokens"] > 10
    assert gen["$ai_output_tokens"] == 4
    assert gen["$ai_cache_read_input_tokens"] == 2
    assert gen["$ai_reasoning_tokens"] == 1
    assert gen["$ai_stop_reason"] == "stop"
    assert gen["$ai_stream"] is False
    assert gen["$ai_http_status"] == 200
    assert 0 < gen["$ai_latency"] < 5
    assert gen["$ai_model_parameters"]["temperature"] == 0.25
    (message,) = gen["$ai_input"]
    assert message["role"] == "user"
    assert sum(d.text in message["content"] for d in documents) == 2  # the retrieved context
    assert "How long do cats sleep?" in message["content"]
    assert gen["$ai_output_choices"] == [{"role": "assistant", "content": ANSWER}]


def test_api_key_never_leaves_the_process(index, handler, client, sink):
    index.as_query_engine().query("How long do cats sleep?")
    payload = json.dumps(events(client, sink))
    assert "sk-test-secret-key" not in payload
    assert "api_key" not in payload


def test_embedding_event_has_model_count_inputs_and_latency(index, handler, client, sink):
    index.as_retriever().retrieve("parrots")
    evts = events(client, sink)
    (emb,) = by_event(evts, "$ai_embedding")
    assert emb["$ai_model"] == "MockEmbedding"
    assert emb["$ai_provider"] == "mock"
    assert emb["$ai_embedding_input_count"] == 1
    assert emb["$ai_input"] == ["parrots"]
    assert emb["$ai_latency"] >= 0
    # A bare retrieve is a root operation of its own.
    (trace,) = by_event(evts, "$ai_trace")
    assert trace["$ai_span_name"] == "VectorIndexRetriever.retrieve"
    assert emb["$ai_parent_id"] == trace["$ai_trace_id"]


def test_index_build_is_a_trace_with_its_batch_embedding(
    settings, documents, handler, client, sink
):
    from llama_index.core import VectorStoreIndex

    VectorStoreIndex.from_documents(documents)
    evts = events(client, sink)
    (trace,) = by_event(evts, "$ai_trace")
    (emb,) = by_event(evts, "$ai_embedding")
    assert trace["$ai_span_name"] == "VectorStoreIndex.from_documents"
    assert emb["$ai_trace_id"] == trace["$ai_trace_id"]
    assert emb["$ai_parent_id"] == trace["$ai_trace_id"]
    assert emb["$ai_span_id"] != trace["$ai_trace_id"]
    assert emb["$ai_embedding_input_count"] == len(documents)
    assert trace["$ai_input_state"] == {"texts": len(documents)}


def test_custom_llm_chat_calling_complete_is_one_generation(settings, handler, client, sink):
    # CustomLLM.chat() runs complete() inside: two nested LLM spans, one user-visible call.
    reply = Settings.llm.chat([ChatMessage(role="user", content="hi there")])
    assert reply.message.content == ANSWER
    evts = events(client, sink)
    (gen,) = by_event(evts, "$ai_generation")
    assert gen["$ai_span_name"] == "UsageLLM.chat"
    assert gen["$ai_input"] == [{"role": "user", "content": "hi there"}]
    assert gen["$ai_output_choices"] == [{"role": "assistant", "content": ANSWER}]
    assert gen["$ai_output_tokens"] == 4  # folded in from the inner complete()
    assert gen["$ai_model"] == SERVED_MODEL
    # A bare LLM call is its own trace, like a direct SDK call: no $ai_trace wrapper.
    assert by_event(evts, "$ai_trace") == []
    assert "$ai_parent_id" not in gen


async def test_async_custom_llm_stream_chat_is_one_generation(settings, handler, client, sink):
    # astream_chat() runs stream_chat() lazily from inside the generator it returned, which
    # runs stream_complete(): three LLM spans and three Start/End pairs for one call.
    stream = await Settings.llm.astream_chat([ChatMessage(role="user", content="hi")])
    chunks = [c.delta async for c in stream]
    assert "".join(chunks) == ANSWER
    (gen,) = props(client, sink, "$ai_generation")
    assert gen["$ai_span_name"] == "UsageLLM.astream_chat"
    assert gen["$ai_stream"] is True
    assert gen["$ai_time_to_first_token"] >= 0
    assert gen["$ai_output_choices"][0]["content"] == ANSWER
    assert gen["$ai_input_tokens"] > 0


def test_usage_as_object_with_anthropic_cache_fields(settings, handler, client, sink):
    llm = ChatUsageLLM()
    llm.chat(
        [ChatMessage(role="system", content="be brief"), ChatMessage(role="user", content="hi")]
    )
    (gen,) = props(client, sink, "$ai_generation")
    assert gen["$ai_model"] == "claude-mock"
    assert gen["$ai_input_tokens"] == 21
    assert gen["$ai_output_tokens"] == 3
    assert gen["$ai_cache_read_input_tokens"] == 5
    assert gen["$ai_cache_creation_input_tokens"] == 7
    assert gen["$ai_stop_reason"] == "end_turn"
    assert gen["$ai_input"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
    ]


def test_query_engine_built_before_registration_is_captured(index, client, sink):
    from posthog_llm.integrations import llama_index as posthog_li

    engine = index.as_query_engine()  # engine, index and Settings all exist already
    posthog_li.set_global_handler(client)
    try:
        engine.query("cats?")
    finally:
        posthog_li.remove_global_handler()
    evts = events(client, sink)
    assert len(by_event(evts, "$ai_trace")) == 1
    assert len(by_event(evts, "$ai_generation")) == 1


def test_each_event_carries_the_time_its_step_ended(index, documents, handler, client, sink):
    import time
    from datetime import datetime

    started = time.time()
    index.as_query_engine().query("How long do cats sleep?")
    finished = time.time()

    evts = events(client, sink)
    at = {
        (e["event"], e["properties"].get("$ai_span_name")): datetime.fromisoformat(
            e["timestamp"]
        ).timestamp()
        for e in evts
    }
    (trace_at,) = (t for (event, _), t in at.items() if event == "$ai_trace")
    retrieve_at = at[("$ai_span", "VectorIndexRetriever.retrieve")]
    (generation_at,) = (t for (event, _), t in at.items() if event == "$ai_generation")
    # In the order the steps ended (retrieval, the LLM call, the query), within the call.
    assert started - 0.001 <= retrieve_at < generation_at < trace_at <= finished + 0.001
