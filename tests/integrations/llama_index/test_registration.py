"""set_global_handler / remove_global_handler, identity defaults, privacy, clients, import guard."""

from __future__ import annotations

import importlib
import json
import sys

import pytest

pytest.importorskip("llama_index.core")

import posthog_llm  # noqa: E402
from llama_index.core import Settings, VectorStoreIndex  # noqa: E402
from llama_index.core.embeddings import MockEmbedding  # noqa: E402
from llama_index.core.instrumentation import get_dispatcher  # noqa: E402
from posthog_llm import Client  # noqa: E402
from posthog_llm.integrations import llama_index as posthog_li  # noqa: E402

from .fakes import ANSWER, UsageLLM, events  # noqa: E402


def by_event(evts, name):
    return [e["properties"] for e in evts if e["event"] == name]


def ours(handlers):
    return [h for h in handlers if type(h).__name__.startswith("_") and hasattr(h, "handler")]


def test_registered_before_settings_and_index_exist(documents, client, sink):
    saved = (Settings._llm, Settings._embed_model)
    handler = posthog_li.set_global_handler(client)
    try:
        Settings.llm = UsageLLM()
        Settings.embed_model = MockEmbedding(embed_dim=8)
        index = VectorStoreIndex.from_documents(documents)
        assert str(index.as_query_engine().query("cats?")) == ANSWER
    finally:
        posthog_li.remove_global_handler()
        Settings._llm, Settings._embed_model = saved
    assert isinstance(handler, posthog_li.PostHogLlamaIndexHandler)
    evts = events(client, sink)
    names = [t["$ai_span_name"] for t in by_event(evts, "$ai_trace")]
    assert names == ["VectorStoreIndex.from_documents", "RetrieverQueryEngine.query"]
    assert len(by_event(evts, "$ai_generation")) == 1


def test_registering_twice_replaces_and_never_duplicates(index, client, sink):
    other_sink_client = Client(destination=posthog_llm.InMemoryDestination(), flush_interval=0.05)
    try:
        first = posthog_li.set_global_handler(other_sink_client)
        second = posthog_li.set_global_handler(client)
        assert posthog_li.get_global_handler() is second
        assert not first.active
        dispatcher = get_dispatcher()
        assert len(ours(dispatcher.span_handlers)) == 1
        assert len(ours(dispatcher.event_handlers)) == 1
        index.as_query_engine().query("cats?")
    finally:
        posthog_li.remove_global_handler()
    evts = events(client, sink)
    assert len(by_event(evts, "$ai_trace")) == 1
    assert len(by_event(evts, "$ai_generation")) == 1
    assert other_sink_client.flush(5)
    assert other_sink_client.destination.events == []
    other_sink_client.shutdown(5)


def test_registering_again_while_a_stream_is_unread_keeps_its_query_one_trace(index, client, sink):
    # A notebook cell run again between a streamed query and reading its answer.
    try:
        posthog_li.set_global_handler(client)
        response = index.as_query_engine(streaming=True).query("cats?")
        posthog_li.set_global_handler(client)
        assert "".join(response.response_gen) == ANSWER
    finally:
        posthog_li.remove_global_handler()
    evts = events(client, sink)
    (trace,) = by_event(evts, "$ai_trace")
    (generation,) = by_event(evts, "$ai_generation")
    assert {e["properties"]["$ai_trace_id"] for e in evts} == {trace["$ai_trace_id"]}
    assert generation["$ai_parent_id"] is not None  # under the query's synthesize step


def test_registering_for_someone_else_leaves_a_started_query_to_the_first_registration(
    index, client, sink
):
    # Another client or identity: what the first registration started is not sent as theirs.
    other = Client(destination=posthog_llm.InMemoryDestination(), flush_interval=0.05)
    try:
        posthog_li.set_global_handler(client, distinct_id="alice")
        response = index.as_query_engine(streaming=True).query("cats?")
        posthog_li.set_global_handler(other, distinct_id="bob", privacy_mode=True)
        "".join(response.response_gen)
    finally:
        posthog_li.remove_global_handler()
    first = events(client, sink)
    assert by_event(first, "$ai_trace") and {e["distinct_id"] for e in first} == {"alice"}
    assert other.flush(5)
    assert all(e["distinct_id"] == "bob" for e in other.destination.events)
    other.shutdown(5)


def test_remove_global_handler_stops_all_capture(index, client, sink):
    handler = posthog_li.set_global_handler(client)
    posthog_li.remove_global_handler()
    index.as_query_engine().query("cats?")
    assert events(client, sink) == []
    assert posthog_li.get_global_handler() is None
    assert not handler.active
    dispatcher = get_dispatcher()
    assert ours(dispatcher.span_handlers) == [] and ours(dispatcher.event_handlers) == []
    posthog_li.remove_global_handler()  # a second removal is harmless


def test_defaults_given_at_registration(index, client, sink):
    posthog_li.set_global_handler(
        client,
        distinct_id="user_42",
        session_id="conv-7",
        properties={"team": "search"},
        groups={"company": "acme"},
    )
    try:
        index.as_query_engine().query("cats?")
        with posthog_llm.context(distinct_id="user_43"):
            index.as_query_engine().query("dogs?")
    finally:
        posthog_li.remove_global_handler()
    evts = events(client, sink)
    assert {e["distinct_id"] for e in evts} == {"user_42", "user_43"}
    for e in evts:
        p = e["properties"]
        assert p["$ai_session_id"] == "conv-7"
        assert p["team"] == "search"
        assert p["$groups"] == {"company": "acme"}


@pytest.mark.parametrize("where", ["handler", "context", "client"])
def test_privacy_mode_sends_no_content(index, sink, where):
    client = Client(destination=sink, flush_interval=0.05, privacy_mode=where == "client")
    posthog_li.set_global_handler(client, privacy_mode=where == "handler")
    try:
        with posthog_llm.context(privacy_mode=True if where == "context" else None):
            index.as_query_engine().query("my secret question")
            stream = index.as_query_engine(streaming=True).query("my secret stream")
            "".join(stream.response_gen)
    finally:
        posthog_li.remove_global_handler()
    evts = events(client, sink)
    client.shutdown(5)
    payload = json.dumps(evts)
    assert "secret" not in payload
    assert "Cats sleep" not in payload and ANSWER not in payload
    for e in evts:
        for key in ("$ai_input", "$ai_output_choices", "$ai_input_state", "$ai_output_state"):
            assert key not in e["properties"]
    gens = by_event(evts, "$ai_generation")
    assert len(gens) == 2 and all(g["$ai_output_tokens"] == 4 for g in gens)
    assert len(by_event(evts, "$ai_trace")) == 2


def test_events_reach_a_posthog_server_over_http(index, posthog_server):
    client = Client(api_key="phc_test", host=posthog_server.host, flush_interval=0.05)
    posthog_li.set_global_handler(client, distinct_id="wire-user")
    try:
        index.as_query_engine().query("cats?")
    finally:
        posthog_li.remove_global_handler()
    assert client.flush(10)
    received = posthog_server.wait_for(5)
    client.shutdown(5)
    assert sorted(e["event"] for e in received) == sorted(
        ["$ai_trace", "$ai_span", "$ai_span", "$ai_generation", "$ai_embedding"]
    )
    assert {e["distinct_id"] for e in received} == {"wire-user"}


def test_posthog_python_client_is_accepted(index, posthog_server):
    posthog = pytest.importorskip("posthog")
    ph = posthog.Posthog("phc_test", host=posthog_server.host, sync_mode=True)
    posthog_li.set_global_handler(ph)
    try:
        index.as_query_engine().query("cats?")
    finally:
        posthog_li.remove_global_handler()
    received = posthog_server.wait_for(5)
    trace_ids = {e["properties"]["$ai_trace_id"] for e in received}
    assert len(trace_ids) == 1
    (gen,) = [e for e in received if e["event"] == "$ai_generation"]
    assert gen["properties"]["$ai_output_tokens"] == 4


def test_missing_llama_index_says_which_extra_to_install(monkeypatch):
    for name in list(sys.modules):
        if name.startswith("posthog_llm.integrations.llama_index"):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "llama_index.core.instrumentation", None)
    with pytest.raises(ImportError, match=r"pip install 'posthog-llm\[llama-index\]'"):
        importlib.import_module("posthog_llm.integrations.llama_index")


def test_removal_sends_what_was_still_waiting(index, client, sink):
    handler = posthog_li.set_global_handler(client)
    response = index.as_query_engine(streaming=True).query("unread stream")
    assert handler.pending()["traces"] == 1
    posthog_li.remove_global_handler()
    (trace,) = by_event(events(client, sink), "$ai_trace")
    assert trace["$ai_input_state"] == "unread stream"
    assert "".join(response.response_gen) == ANSWER  # reading it later captures nothing
    names = sorted(e["event"] for e in events(client, sink))
    assert names == ["$ai_embedding", "$ai_span", "$ai_span", "$ai_trace"]  # no generation
