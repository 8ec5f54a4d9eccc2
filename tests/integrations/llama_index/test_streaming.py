"""Streamed queries and chats: the lazily run LLM call stays in its query's trace."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core import Settings  # noqa: E402
from posthog_llm import Client, EventStore, InMemoryDestination  # noqa: E402

from .fakes import ANSWER, SERVED_MODEL, events  # noqa: E402


def by_event(evts, name):
    return [e["properties"] for e in evts if e["event"] == name]


def wait_for(client, sink, name, count=1, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = by_event(events(client, sink), name)
        if len(found) >= count:
            return found
        time.sleep(0.02)
    raise AssertionError(f"{name} not sent within {timeout}s")


def test_streaming_query_keeps_the_lazy_generation_in_its_trace(index, handler, client, sink):
    response = index.as_query_engine(streaming=True).query("How long do cats sleep?")
    # The LLM has not run yet: the trace waits for the stream.
    before = events(client, sink)
    assert by_event(before, "$ai_trace") == []
    assert by_event(before, "$ai_generation") == []

    text = "".join(response.response_gen)
    assert text == ANSWER

    evts = events(client, sink)
    (trace,) = by_event(evts, "$ai_trace")
    (gen,) = by_event(evts, "$ai_generation")
    synthesize = next(s for s in by_event(evts, "$ai_span") if s["$ai_span_type"] == "synthesize")
    assert gen["$ai_trace_id"] == trace["$ai_trace_id"]
    assert gen["$ai_parent_id"] == synthesize["$ai_span_id"]
    assert gen["$ai_stream"] is True
    assert gen["$ai_time_to_first_token"] <= gen["$ai_latency"]
    assert gen["$ai_output_choices"][0]["content"] == ANSWER
    assert gen["$ai_input_tokens"] > 0 and gen["$ai_output_tokens"] == 4
    assert gen["$ai_model"] == SERVED_MODEL
    assert gen["$ai_model_parameters"]["stream"] is True
    assert trace["$ai_output_state"] == ANSWER
    assert trace["$ai_input_state"] == "How long do cats sleep?"
    assert handler.pending() == {"spans": 0, "traces": 0, "generations": 0, "streams": 0}


async def test_async_streaming_query(index, handler, client, sink):
    response = await index.as_query_engine(streaming=True).aquery("How long do cats sleep?")
    chunks = [c async for c in response.async_response_gen()]
    assert "".join(chunks) == ANSWER
    evts = events(client, sink)
    (trace,) = by_event(evts, "$ai_trace")
    (gen,) = by_event(evts, "$ai_generation")
    assert trace["$ai_span_name"] == "RetrieverQueryEngine.aquery"
    assert gen["$ai_trace_id"] == trace["$ai_trace_id"]
    assert gen["$ai_stream"] is True
    assert trace["$ai_output_state"] == ANSWER


def test_abandoned_stream_is_sent_after_the_timeout(index, handler, client, sink):
    handler.stream_timeout = 0.2
    response = index.as_query_engine(streaming=True).query("never read")
    (trace,) = wait_for(client, sink, "$ai_trace")
    assert trace["$ai_input_state"] == "never read"
    assert "$ai_output_state" not in trace
    assert handler.pending()["traces"] == 0
    del response


def test_partly_read_stream_is_evicted_with_its_partial_generation(index, handler, client, sink):
    handler.stream_timeout = 0.2
    response = index.as_query_engine(streaming=True).query("read a bit")
    stream = response.response_gen
    first = next(stream)
    assert first == "Cats"
    (gen,) = wait_for(client, sink, "$ai_generation")
    (trace,) = wait_for(client, sink, "$ai_trace")
    assert gen["$ai_trace_id"] == trace["$ai_trace_id"]
    assert gen["$ai_stream"] is True
    assert gen["$ai_output_choices"][0]["content"] == "Cats"
    assert handler.pending() == {"spans": 0, "traces": 0, "generations": 0, "streams": 0}
    stream.close()


def test_error_in_the_middle_of_a_stream_marks_generation_and_propagates(
    index, handler, client, sink
):
    boom = ConnectionError("stream cut")
    Settings.llm.fail_mid_stream = boom
    response = index.as_query_engine(streaming=True).query("cats?")
    read = ""
    with pytest.raises(ConnectionError) as raised:
        for text in response.response_gen:
            read += text
    assert raised.value is boom
    (gen,) = wait_for(client, sink, "$ai_generation")
    assert gen["$ai_is_error"] is True
    assert gen["$ai_error"] == "ConnectionError: stream cut"
    # What the caller read before the cut is the call's output, as for an abandoned stream.
    assert read
    assert gen["$ai_output_choices"] == [{"role": "assistant", "content": read}]
    (trace,) = wait_for(client, sink, "$ai_trace")
    assert gen["$ai_trace_id"] == trace["$ai_trace_id"]
    # LlamaIndex ended the query's spans before the stream was read: they failed all the same.
    (synthesize,) = [
        s for s in by_event(events(client, sink), "$ai_span") if s["$ai_span_type"] == "synthesize"
    ]
    for failed in (synthesize, trace):
        assert failed["$ai_is_error"] is True
        assert failed["$ai_error"] == "ConnectionError: stream cut"
    (retrieve,) = [
        s for s in by_event(events(client, sink), "$ai_span") if s["$ai_span_type"] == "retrieve"
    ]
    assert "$ai_is_error" not in retrieve  # not an ancestor of the call


# (A chat engine's writer thread lets the error escape the thread too: LlamaIndex's own way.)
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
@pytest.mark.parametrize("chat", [False, True])
def test_a_streamed_call_that_fails_at_its_start_marks_its_query_too(
    index, handler, client, sink, chat
):
    boom = ConnectionError("refused")
    Settings.llm.fail_with = boom
    with pytest.raises(ConnectionError) as raised:
        if chat:
            response = index.as_chat_engine(chat_mode="condense_plus_context").stream_chat("q")
        else:
            response = index.as_query_engine(streaming=True).query("cats?")
        for _ in response.response_gen:
            pass
    assert raised.value is boom
    (trace,) = wait_for(client, sink, "$ai_trace")
    (gen,) = by_event(events(client, sink), "$ai_generation")
    assert gen["$ai_is_error"] is True and trace["$ai_is_error"] is True
    assert trace["$ai_error"] == "ConnectionError: refused"


def test_streaming_chat_engine_waits_for_its_writer_thread(index, handler, client, sink):
    engine = index.as_chat_engine(chat_mode="condense_plus_context")
    response = engine.stream_chat("Tell me about cats")
    assert "".join(response.response_gen) == ANSWER
    (trace,) = wait_for(client, sink, "$ai_trace")
    evts = events(client, sink)
    (gen,) = by_event(evts, "$ai_generation")
    assert trace["$ai_span_name"] == "CondensePlusContextChatEngine.stream_chat"
    assert gen["$ai_trace_id"] == trace["$ai_trace_id"]
    assert gen["$ai_stream"] is True
    assert trace["$ai_output_state"] == ANSWER
    assert trace["$ai_input_state"] == "Tell me about cats"
    # The chat's writer thread reads the synthesizer's generator: the generation hangs from the
    # synthesize span, as in a streamed query, not from the root.
    (synthesize,) = [s for s in by_event(evts, "$ai_span") if "synthesize" in s["$ai_span_name"]]
    assert gen["$ai_parent_id"] == synthesize["$ai_span_id"]


async def test_async_streaming_chat_engine(index, handler, client, sink):
    engine = index.as_chat_engine(chat_mode="condense_plus_context")
    response = await engine.astream_chat("Tell me about cats")
    chunks = [c async for c in response.async_response_gen()]
    assert "".join(chunks) == ANSWER
    (trace,) = wait_for(client, sink, "$ai_trace")
    evts = events(client, sink)
    (gen,) = by_event(evts, "$ai_generation")
    assert gen["$ai_trace_id"] == trace["$ai_trace_id"]
    (synthesize,) = [s for s in by_event(evts, "$ai_span") if "synthesize" in s["$ai_span_name"]]
    assert gen["$ai_parent_id"] == synthesize["$ai_span_id"]
    assert trace["$ai_output_state"] == ANSWER


def test_stream_the_caller_stopped_reading_is_sent_when_the_client_shuts_down(
    index, handler, client, sink
):
    response = index.as_query_engine(streaming=True).query("read a bit")
    for token in response.response_gen:
        assert token == "Cats"
        break  # the user stopped the answer: nothing will read the rest
    assert handler.pending()["traces"] == 1
    assert client.shutdown(timeout=5) is True
    assert handler.pending() == {"spans": 0, "traces": 0, "generations": 0, "streams": 0}
    (trace,) = by_event(sink.events, "$ai_trace")
    (gen,) = by_event(sink.events, "$ai_generation")
    assert gen["$ai_trace_id"] == trace["$ai_trace_id"]
    assert gen["$ai_output_choices"][0]["content"] == "Cats"  # what was read: partial
    assert trace["$ai_output_state"] == "Cats"
    assert {s["$ai_span_type"] for s in by_event(sink.events, "$ai_span")} == {
        "retrieve",
        "synthesize",
    }


def test_shutting_down_another_client_leaves_the_stream_open(index, handler, client, sink):
    other = Client(destination=InMemoryDestination())
    response = index.as_query_engine(streaming=True).query("read it all")
    first = next(response.response_gen)
    other.shutdown(timeout=5)
    assert handler.pending()["traces"] == 1
    assert first + "".join(response.response_gen) == ANSWER
    (trace,) = wait_for(client, sink, "$ai_trace")
    assert trace["$ai_output_state"] == ANSWER


def test_stream_the_caller_stopped_reading_is_sent_at_process_exit(tmp_path):
    db = tmp_path / "events.db"
    code = f"""
        import posthog_llm
        from llama_index.core import Document, Settings, VectorStoreIndex
        from llama_index.core.embeddings import MockEmbedding
        from llama_index.core.llms import MockLLM
        from posthog_llm.integrations import llama_index as posthog_li

        Settings.llm = MockLLM(max_tokens=8)
        Settings.embed_model = MockEmbedding(embed_dim=8)
        index = VectorStoreIndex.from_documents([Document(text="Owls hunt at night.")])
        posthog_li.set_global_handler(posthog_llm.Client(db={str(db)!r}))
        response = index.as_query_engine(streaming=True).query("What do owls do?")
        for token in response.response_gen:
            break
        # no flush, no shutdown: the process just ends
        """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    store = EventStore(str(db))
    names = sorted(e["event"] for e in store.events())
    assert names == ["$ai_embedding", "$ai_generation", "$ai_span", "$ai_span", "$ai_trace"]
