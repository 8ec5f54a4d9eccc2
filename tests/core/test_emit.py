from __future__ import annotations

import time

import posthog_llm
import pytest
from posthog_llm import Emitter, generation_properties, span_properties
from posthog_llm._context import make_scope


def test_anonymous_trace_shares_one_distinct_id_and_is_personless(client, sink):
    emitter = Emitter(client, framework="test")
    scope = emitter.scope()
    emitter.emit(
        "$ai_span", lambda: span_properties(trace_id="t1", span_id="s1"), scope, trace_id="t1"
    )
    emitter.emit(
        "$ai_generation", generation_properties(trace_id="t1", span_id="g1"), scope, trace_id="t1"
    )
    client.flush(5)
    assert {e["distinct_id"] for e in sink.events} == {"t1"}
    assert all(e["properties"]["$process_person_profile"] is False for e in sink.events)


def test_an_empty_or_blank_id_counts_as_not_given(posthog_server):
    # PostHog refuses a whole batch over one empty distinct id; the loopback server does too.
    posthog_server.rejects = lambda e: not e["distinct_id"].strip()
    client = posthog_llm.Client(api_key="phc_test", host=posthog_server.host, flush_interval=30)
    anonymous = Emitter(client, distinct_id="", session_id=" ")
    with posthog_llm.context(distinct_id="  "):
        scope = anonymous.scope()
    anonymous.emit("$ai_span", span_properties(trace_id="t1", span_id="s1"), scope, trace_id="t1")
    # An empty id given nearer the call does not override a real one given further out.
    known = Emitter(client, distinct_id="user_1")
    scope = known.scope(make_scope(distinct_id="", trace_id=""))
    known.emit("$ai_span", span_properties(trace_id="t2", span_id="s2"), scope, trace_id="t2")
    assert client.flush(5) is True
    first, second = posthog_server.events
    assert first["distinct_id"] == "t1" and first["properties"]["$process_person_profile"] is False
    assert "$ai_session_id" not in first["properties"]
    assert second["distinct_id"] == "user_1"
    assert client.stats()["failed"] == 0
    client.shutdown(1)


def test_precedence_defaults_then_context_then_overrides(client, sink):
    emitter = Emitter(
        client, distinct_id="default", properties={"a": "default", "b": "default"}, session_id="s0"
    )
    with posthog_llm.context(
        distinct_id="ctx", properties={"b": "ctx", "c": "ctx"}, groups={"company": "acme"}
    ):
        scope = emitter.scope(make_scope(properties={"c": "call"}))
    emitter.emit("$ai_generation", generation_properties(trace_id="t"), scope, trace_id="t")
    client.flush(5)
    event = sink.events[0]
    assert event["distinct_id"] == "ctx"
    props = event["properties"]
    assert (props["a"], props["b"], props["c"]) == ("default", "ctx", "call")
    assert props["$ai_session_id"] == "s0"
    assert props["$groups"] == {"company": "acme"}
    assert "$process_person_profile" not in props


def test_privacy_from_context_strips_content_built_later(client, sink):
    emitter = Emitter(client)
    with posthog_llm.context(privacy_mode=True):
        scope = emitter.scope()
    emitter.emit(
        "$ai_generation",
        lambda: generation_properties(trace_id="t", input="secret", input_tokens=2),
        scope,
        trace_id="t",
    )
    client.flush(5)
    props = sink.events[0]["properties"]
    assert "$ai_input" not in props and props["$ai_input_tokens"] == 2


def test_posthog_python_client_is_accepted(posthog_server):
    posthog = pytest.importorskip("posthog")
    ph = posthog.Posthog("phc_test", host=posthog_server.host, sync_mode=True)
    emitter = Emitter(ph, framework="test")
    emitter.emit(
        "$ai_generation",
        lambda: generation_properties(trace_id="t9", model="m", input={1, 2}),
        emitter.scope(),
        trace_id="t9",
    )
    ph.flush()
    events = posthog_server.wait_for(1)
    assert events[0]["event"] == "$ai_generation"
    assert events[0]["properties"]["$ai_trace_id"] == "t9"
    assert events[0]["properties"]["$ai_input"] == [1, 2]
    assert events[0]["distinct_id"] == "t9"


def test_bad_client_is_rejected_at_configuration_time():
    with pytest.raises(TypeError, match="client"):
        Emitter(client=42)


@pytest.mark.allow_internal_errors
def test_a_failing_builder_never_raises_into_the_caller(client, sink, caplog):
    emitter = Emitter(client)

    def broken():
        raise RuntimeError("builder bug")

    emitter.emit("$ai_span", broken, emitter.scope(), trace_id="t")
    emitter.emit(
        "$ai_span", span_properties(trace_id="t", span_id="ok"), emitter.scope(), trace_id="t"
    )
    client.flush(5)
    assert [e["properties"]["$ai_span_id"] for e in sink.events] == ["ok"]


def test_posthog_module_is_accepted_as_in_the_product_doc(posthog_server, monkeypatch):
    posthog = pytest.importorskip("posthog")
    monkeypatch.setattr(posthog, "project_api_key", "phc_module")
    monkeypatch.setattr(posthog, "host", posthog_server.host)
    monkeypatch.setattr(posthog, "sync_mode", True)
    monkeypatch.setattr(posthog, "privacy_mode", True)
    monkeypatch.setattr(posthog, "default_client", None)
    try:
        emitter = Emitter(posthog)
        scope = emitter.scope()
        emitter.emit(
            "$ai_generation",
            lambda: generation_properties(trace_id="tm", model="m", input="secret", input_tokens=1),
            scope,
            trace_id="tm",
        )
        posthog.flush()
        (event,) = posthog_server.wait_for(1)
        assert event["api_key"] == "phc_module" and event["properties"]["$ai_trace_id"] == "tm"
        assert "$ai_input" not in event["properties"]  # posthog.privacy_mode is honoured
    finally:
        if posthog.default_client is not None:
            posthog.default_client.shutdown()
        posthog.default_client = None


def _trace_of_three() -> list[tuple[str, dict]]:
    return [
        ("$ai_generation", generation_properties(trace_id="tr", span_id="g", input="hi")),
        ("$ai_span", span_properties(trace_id="tr", span_id="s")),
        ("$ai_trace", {"$ai_trace_id": "tr", "$ai_span_name": "root"}),
    ]


def test_emit_many_ships_a_whole_trace_as_one_item_built_later(client, sink):
    emitter = Emitter(client, properties={"team": "a"})
    built = []

    def build():
        built.append(True)
        return _trace_of_three()

    with posthog_llm.context(distinct_id="u1", session_id="s1"):
        scope = emitter.scope()
    emitter.emit_many(build, scope, trace_id="tr")
    assert client.stats()["queued"] == 1 and not built  # one item, nothing built yet
    client.flush(5)
    assert len(built) == 1
    assert [e["event"] for e in sink.events] == ["$ai_generation", "$ai_span", "$ai_trace"]
    assert {e["distinct_id"] for e in sink.events} == {"u1"}
    assert all(e["properties"]["team"] == "a" for e in sink.events)
    assert all(e["properties"]["$ai_session_id"] == "s1" for e in sink.events)
    assert len({e["uuid"] for e in sink.events}) == 3


def test_emit_many_counts_what_before_send_drops_and_honours_privacy(sink):
    def drop_spans(event):
        return None if event["event"] == "$ai_span" else event

    client = posthog_llm.Client(destination=sink, before_send=drop_spans, privacy_mode=True)
    try:
        emitter = Emitter(client)
        emitter.emit_many(_trace_of_three, emitter.scope(), trace_id="tr")
        client.flush(5)
        assert [e["event"] for e in sink.events] == ["$ai_generation", "$ai_trace"]
        assert "$ai_input" not in sink.events[0]["properties"]
        assert {e["distinct_id"] for e in sink.events} == {"tr"}  # anonymous: the trace id
        assert client.stats()["filtered"] == 1
    finally:
        client.shutdown(5)


@pytest.mark.allow_internal_errors
def test_an_event_of_a_trace_that_cannot_be_built_loses_only_itself(client, sink):
    def build():
        one, two, three = _trace_of_three()
        return [one, (None, two[1]), three]  # a builder's bug in the middle event

    emitter = Emitter(client)
    emitter.emit_many(build, emitter.scope(), trace_id="tr")
    client.flush(5)
    assert [e["event"] for e in sink.events] == ["$ai_generation", "$ai_trace"]
    assert client.stats()["failed"] == 1


def test_emit_many_with_a_posthog_python_client(posthog_server):
    posthog = pytest.importorskip("posthog")
    ph = posthog.Posthog("phc_test", host=posthog_server.host, sync_mode=True)
    emitter = Emitter(ph, framework="test")
    emitter.emit_many(_trace_of_three, emitter.scope(), trace_id="tr")
    ph.flush()
    events = posthog_server.wait_for(3)
    assert sorted(e["event"] for e in events) == ["$ai_generation", "$ai_span", "$ai_trace"]
    assert {e["distinct_id"] for e in events} == {"tr"}


@pytest.mark.allow_internal_errors
def test_emit_many_with_a_failing_builder_counts_it_and_keeps_going(client, sink):
    emitter = Emitter(client)

    def broken():
        raise RuntimeError("builder bug")

    emitter.emit_many(broken, emitter.scope(), trace_id="t")
    emitter.emit_many(_trace_of_three, emitter.scope(), trace_id="tr")
    client.flush(5)
    assert len(sink.events) == 3 and client.stats()["failed"] == 1


def test_queued_traces_wake_the_worker_by_the_events_they_hold(sink):
    # Counted as one item each, these two traces would wait for eight traces or the 60 s tick.
    client = posthog_llm.Client(destination=sink, flush_at=8, flush_interval=60)
    try:
        emitter = Emitter(client)

        def four_events():
            return _trace_of_three() + [("$ai_span", {"$ai_span_name": "extra"})]

        emitter.emit_many(four_events, emitter.scope(), trace_id="t1")
        emitter.emit_many(four_events, emitter.scope(), trace_id="t2")
        deadline = time.monotonic() + 10
        while len(sink.events) < 8 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(sink.events) == 8  # delivered without a flush
    finally:
        client.shutdown(5)


class _Holder:
    """Work an integration sends later: `hand_over` queues it through its emitter."""

    def __init__(self, emitter: Emitter) -> None:
        self.emitter = emitter
        self.calls = 0
        emitter.on_shutdown(self.hand_over)

    def hand_over(self) -> None:
        self.calls += 1
        self.emitter.emit("$ai_span", {"$ai_span_name": "held"}, make_scope(distinct_id="u"))


def test_on_shutdown_hands_over_before_the_clients_queue_is_drained(client, sink):
    holder = _Holder(Emitter(client))
    other = posthog_llm.Client(destination=posthog_llm.InMemoryDestination())
    other.shutdown(timeout=5)
    assert holder.calls == 0  # another client's shutdown is not this one's
    assert client.shutdown(timeout=5) is True
    assert holder.calls == 1
    assert [e["properties"]["$ai_span_name"] for e in sink.events] == ["held"]


def test_on_shutdown_for_the_default_client(client, sink):
    holder = _Holder(Emitter())
    posthog_llm.set_client(client)
    try:
        client.shutdown(timeout=5)
    finally:
        posthog_llm.set_client(None)
    assert holder.calls == 1
    assert len(sink.events) == 1


def test_on_shutdown_holds_its_callback_weakly_and_never_raises(client, sink):
    import gc

    holder = _Holder(Emitter(client))
    del holder
    gc.collect()

    def boom() -> None:
        raise RuntimeError("integration bug")

    Emitter(client).on_shutdown(boom)
    assert client.shutdown(timeout=5) is True
    assert sink.events == []


def test_on_shutdown_callbacks_past_the_deadline_are_skipped(client, sink):
    def slow() -> None:
        time.sleep(0.3)

    first = _Holder(Emitter(client))
    Emitter(client).on_shutdown(slow)
    late = _Holder(Emitter(client))
    start = time.monotonic()
    client.shutdown(timeout=0.2)
    assert time.monotonic() - start < 2
    assert (first.calls, late.calls) == (1, 0)


def test_on_shutdown_keeps_every_live_callback_however_many_are_registered(client, sink):
    first = _Holder(Emitter(client))
    # One handler per request is a documented pattern: thousands may be alive at once.
    others = [_Holder(Emitter(client)) for _ in range(1500)]
    assert client.shutdown(timeout=30) is True
    assert first.calls == 1
    assert all(h.calls == 1 for h in others)
    assert len(sink.events) == 1501


def test_the_same_callback_registered_again_is_called_once(client, sink):
    holder = _Holder(Emitter(client))
    for _ in range(1000):
        Emitter(client).on_shutdown(holder.hand_over)
    assert client.shutdown(timeout=5) is True
    assert holder.calls == 1
