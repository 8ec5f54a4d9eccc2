"""Bounded state: nothing accumulates over many operations, abandoned streams are evicted."""

from __future__ import annotations

import gc

import pytest

pytest.importorskip("llama_index.core")

from posthog_llm import Client  # noqa: E402
from posthog_llm.integrations.llama_index import _records  # noqa: E402

from .fakes import events  # noqa: E402

EMPTY = {"spans": 0, "traces": 0, "generations": 0, "streams": 0}


def live_records() -> int:
    gc.collect()
    kinds = (_records.Trace, _records.Node, _records.Gen, _records.Emb, _records.StreamFrame)
    return sum(1 for o in gc.get_objects() if isinstance(o, kinds))


def test_state_stays_flat_over_ten_thousand_operations(index, sink, handler):
    retriever = index.as_retriever()
    engine = index.as_query_engine()
    client = handler._emitter.client
    for i in range(10_000):
        if i % 20 == 0:
            engine.query("cats?")
        else:
            retriever.retrieve("cats?")
        if i == 1_000:
            assert handler.pending() == EMPTY
            assert client.flush(30)  # queued builders hold records until they are sent
            baseline = live_records()
    assert handler.pending() == EMPTY
    assert client.flush(30)
    assert live_records() <= baseline
    traces = [e for e in sink.events if e["event"] == "$ai_trace"]
    assert len(traces) == 10_000
    assert client.stats()["dropped"] == 0


def test_abandoned_streams_are_evicted_and_state_is_bounded(index, sink):
    from posthog_llm.integrations import llama_index as posthog_li

    client = Client(destination=sink, flush_interval=0.05)
    handler = posthog_li.set_global_handler(client)
    handler.max_open_traces = 50
    engine = index.as_query_engine(streaming=True)
    try:
        kept = [engine.query(f"q{i}") for i in range(200)]  # never read
        # The bound holds: the oldest waiting traces were sent as they were.
        assert handler.pending()["traces"] <= 50
        sent = handler.flush_pending()
        assert sent <= 50
        assert handler.pending() == EMPTY
    finally:
        posthog_li.remove_global_handler()
    traces = [e for e in events(client, sink) if e["event"] == "$ai_trace"]
    assert sorted(t["properties"]["$ai_input_state"] for t in traces) == sorted(
        f"q{i}" for i in range(200)
    )
    client.shutdown(5)
    del kept
