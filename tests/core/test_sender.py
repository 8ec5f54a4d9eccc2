"""The sender against a real loopback PostHog server that fails, throttles, drops and stalls."""

from __future__ import annotations

import gzip
import json
import logging
import socket
import threading
import time
from collections import Counter

import posthog_llm
import pytest
from posthog_llm import Client, InMemoryDestination
from posthog_llm.destinations import RetryableError


def _client(server, **kw) -> Client:
    kw.setdefault("flush_interval", 0.05)
    return Client(api_key="phc_test", host=server.host, **kw)


class Blocked:
    """A destination that is down and asks to be retried much later."""

    description = "blocked"

    def send(self, events, *, timeout):
        raise RetryableError("down", retry_after=30)

    def close(self):
        pass


def _uuids(server) -> list[str]:
    return [e["uuid"] for e in server.events]


def test_batches_are_gzipped_and_carry_the_api_key(posthog_server):
    client = _client(posthog_server, flush_at=10)
    uuids = [
        client.capture("$ai_generation", distinct_id="u", properties={"i": i}) for i in range(25)
    ]
    assert client.flush(10)
    assert sorted(_uuids(posthog_server)) == sorted(uuids)
    assert all(r["path"] == "/i/v0/ai/batch/" for r in posthog_server.requests)
    assert all(r["headers"].get("Content-Encoding") == "gzip" for r in posthog_server.requests)
    assert {e["api_key"] for e in posthog_server.events} == {"phc_test"}
    assert max(Counter(r["bytes"] > 0 for r in posthog_server.requests).values()) >= 3
    client.shutdown(2)


def test_gzip_can_be_turned_off(posthog_server):
    client = _client(posthog_server, gzip=False)
    client.capture("e", distinct_id="u")
    assert client.flush(5)
    assert "Content-Encoding" not in posthog_server.requests[0]["headers"]
    client.shutdown(1)


def test_5xx_then_success_delivers_exactly_once(posthog_server):
    posthog_server.behaviour = lambda n: ("status", 503) if n < 2 else "ok"
    client = _client(posthog_server)
    uuids = [client.capture("e", distinct_id="u", properties={"i": i}) for i in range(50)]
    assert client.flush(15)
    got = _uuids(posthog_server)
    assert sorted(got) == sorted(uuids) and len(got) == len(set(got))
    stats = client.stats()
    assert stats["retried"] >= 50 and stats["sent"] == 50 and stats["failed"] == 0
    client.shutdown(1)


def test_429_honours_retry_after(posthog_server):
    posthog_server.behaviour = lambda n: ("status", 429, {"Retry-After": "1"}) if n == 0 else "ok"
    client = _client(posthog_server)
    client.capture("e", distinct_id="u")
    start = time.monotonic()
    assert client.flush(10)
    assert time.monotonic() - start >= 0.9  # waited as the server asked
    assert len(posthog_server.events) == 1
    client.shutdown(1)


def test_a_flush_says_false_for_events_lost_before_it_started(posthog_server):
    # Retries that ran out in the background lost every event, and the flush after said True.
    posthog_server.behaviour = lambda n: ("status", 503, {})
    client = _client(posthog_server, spool=False, max_retries=1)
    try:
        for _ in range(5):
            client.capture("e", distinct_id="u")
        deadline = time.monotonic() + 10
        while client.stats()["failed"] < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert client.stats()["failed"] == 5
        posthog_server.behaviour = lambda n: "ok"
        assert client.flush(5) is False  # the first flush since the loss says so
        client.capture("e", distinct_id="u")
        assert client.flush(5) is True  # and the next one answers for what came after
    finally:
        client.shutdown(1)


def test_flushes_at_once_after_a_loss_do_not_all_say_true():
    # The pass that saw the loss said False, but its waiters read the answer of the next pass
    # (True: a loss is reported once).
    class Slow(InMemoryDestination):
        def send(self, events, *, timeout):
            time.sleep(0.2)
            return super().send(events, timeout=timeout)

    client = Client(destination=Slow(), max_queue_size=4, flush_at=1000, flush_interval=30)
    try:
        for i in range(50):
            client.capture("e", distinct_id="u", properties={"i": i})
        assert client.stats()["dropped"] > 0
        answers: list[bool] = []
        threads = [threading.Thread(target=lambda: answers.append(client.flush(10))) for _ in "abc"]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(answers) == 3 and False in answers
        assert client.flush(10) is True  # reported: the next flush answers for what came after
    finally:
        client.shutdown(5)


@pytest.mark.parametrize("spool", [True, False])
def test_a_flush_waits_out_the_retry_after_a_429_asked_for(posthog_server, spool):
    # An app that flushes after every request must not knock on a rate-limited PostHog each
    # time: with a spool the events wait there, without one in memory.
    posthog_server.behaviour = lambda n: ("status", 429, {"Retry-After": "30"})
    client = _client(posthog_server, spool=spool)
    client.capture("e", distinct_id="u")
    deadline = time.monotonic() + 5
    while not posthog_server.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(posthog_server.requests) == 1  # the background delivery's one attempt
    for _ in range(3):
        client.capture("e", distinct_id="u")
        assert client.flush(0.3) is False
    assert len(posthog_server.requests) == 1
    if spool:
        assert client.stats()["spool_pending"] == 4
    client.shutdown(0.3)
    assert len(posthog_server.requests) == 1


def test_dropped_connections_are_retried(posthog_server):
    posthog_server.behaviour = lambda n: "drop" if n < 2 else "ok"
    client = _client(posthog_server)
    uuids = [client.capture("e", distinct_id="u") for _ in range(5)]
    assert client.flush(15)
    assert sorted(_uuids(posthog_server)) == sorted(uuids)
    client.shutdown(1)


def test_413_splits_the_batch(posthog_server):
    posthog_server.behaviour = lambda n: ("status", 413) if n == 0 else "ok"
    client = _client(posthog_server, flush_at=100)
    uuids = [client.capture("e", distinct_id="u") for _ in range(40)]
    assert client.flush(10)
    assert sorted(_uuids(posthog_server)) == sorted(uuids)
    assert len(posthog_server.requests) >= 3
    client.shutdown(1)


def test_one_event_refused_as_too_large_is_sent_truncated_not_dropped(posthog_server):
    # A self-hosted PostHog's /batch/ (or a proxy) refusing bodies over 1 MB with 413, and a
    # generation with a 3 MB prompt (fitted to the AI intake's larger limit): dropped before.
    limit = 1_000_000
    posthog_server.behaviour = lambda n: (
        ("status", 413) if posthog_server.requests[n]["bytes"] > limit else "ok"
    )
    client = _client(posthog_server, gzip=False)
    prompt = "The quick brown fox. " * 150_000  # ~3 MB
    uuid = client.capture(
        "$ai_generation",
        distinct_id="u",
        properties={"$ai_trace_id": "t", "$ai_input": [{"role": "user", "content": prompt}]},
    )
    assert client.flush(10)
    (event,) = posthog_server.events
    assert event["uuid"] == uuid
    sent = event["properties"]["$ai_input"][0]["content"]
    assert 100_000 < len(sent) < len(prompt) and "truncated" in sent
    assert client.stats()["failed"] == 0 and client.stats()["sent"] == 1
    client.shutdown(1)


def test_other_4xx_drops_the_batch_with_one_log_line(posthog_server, caplog):
    posthog_server.behaviour = lambda n: ("status", 400)
    caplog.set_level(logging.WARNING, logger="posthog_llm")
    client = _client(posthog_server)
    client.capture("e", distinct_id="u")
    client.flush(5)
    assert posthog_server.events == []
    assert client.stats()["failed"] == 1 and client.stats()["retried"] == 0
    assert len([r for r in caplog.records if "dropped a batch" in r.getMessage()]) == 1
    client.shutdown(1)


def test_flush_and_shutdown_return_by_their_deadline_when_the_endpoint_stalls(posthog_server):
    posthog_server.behaviour = lambda n: ("stall", 5)
    client = _client(posthog_server, timeout=30)
    for _ in range(10):
        client.capture("e", distinct_id="u")
    start = time.monotonic()
    assert client.flush(0.5) is False
    assert time.monotonic() - start < 1.5  # the stall is 5 s and the request timeout 30 s
    start = time.monotonic()
    client.shutdown(1.0)
    assert time.monotonic() - start < 2.5


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_shutdown_returns_by_deadline_when_the_endpoint_is_down():
    client = Client(
        api_key="phc_test", host=f"http://127.0.0.1:{_dead_port()}", flush_interval=0.05
    )
    for _ in range(1000):
        client.capture("e", distinct_id="u")
    start = time.monotonic()
    assert client.shutdown(timeout=1.0) is False
    assert time.monotonic() - start < 1.5
    assert client.capture("late", distinct_id="u") is None  # closed: dropped, no error


def test_full_queue_drops_newest_counts_and_warns_once(caplog):
    caplog.set_level(logging.WARNING, logger="posthog_llm")
    client = Client(destination=Blocked(), max_queue_size=100, flush_interval=10)
    results = [client.capture("e", distinct_id="u", properties={"i": i}) for i in range(1000)]
    assert sum(r is not None for r in results) >= 100
    assert results[-1] is None  # the newest are dropped
    assert client.stats()["dropped"] >= 800
    warnings = [r for r in caplog.records if "full" in r.getMessage()]
    assert len(warnings) == 1
    client.shutdown(0.2)


def test_memory_is_bounded_by_bytes():
    # Unbuilt events are bounded by count (past the threshold the caller builds them); built
    # events waiting on a down endpoint are bounded by bytes, and beyond that they are dropped.
    client = Client(destination=Blocked(), max_queue_size=400, max_queue_bytes=200_000, flush_at=10)
    for _ in range(2000):
        client.capture("e", distinct_id="u", properties={"blob": "lorem ipsum " * 200})
    sender = client._sender
    assert sender._backlog_bytes <= 200_000
    assert len(sender._queue) <= sender.help_threshold
    assert client.stats()["dropped"] >= 1500
    client.shutdown(0.2)


def test_batches_respect_byte_limit(sink):
    client = Client(destination=sink, flush_interval=0.05)
    client._sender.max_batch_bytes = 50_000
    for _ in range(20):
        client.capture("e", distinct_id="u", properties={"blob": "dolor sit " * 1_000})
    assert client.flush(5)
    assert len(sink.events) == 20 and sink.batches >= 4
    client.shutdown(1)


def test_http_body_is_the_posthog_batch_shape(posthog_server):
    from posthog_llm import PostHogHTTPDestination

    dest = PostHogHTTPDestination("phc_k", posthog_server.host)
    body = json.loads(dest.body([b'{"event":"e","uuid":"1"}']))
    assert (
        body["api_key"] == "phc_k"
        and body["batch"] == [{"event": "e", "uuid": "1"}]
        and body["sent_at"]
    )
    dest.send([b'{"event":"e","uuid":"1","distinct_id":"u","properties":{}}'], timeout=5)
    assert posthog_server.events[0]["uuid"] == "1"
    assert gzip.decompress  # gzip is the default encoding
    dest.close()


def test_a_slow_destination_does_not_block_capture():
    sink = InMemoryDestination()
    original = sink.send

    def slow(events, *, timeout):
        time.sleep(0.3)
        original(events, timeout=timeout)

    sink.send = slow  # type: ignore[method-assign]
    client = Client(destination=sink, flush_interval=0.01, flush_at=500)
    start = time.monotonic()
    for _ in range(2000):
        client.capture("e", distinct_id="u")
    # capture only appends to a queue; 2,000 calls never wait for a 0.3 s send
    assert time.monotonic() - start < 0.3 * 5
    assert client.flush(20)
    assert len(sink.events) == 2000
    client.shutdown(1)


def test_steady_traffic_is_sent_once_per_interval_not_a_few_events_at_a_time(sink):
    original = sink.send

    def send_like_http(events, *, timeout):
        time.sleep(0.005)  # a request takes a while; events keep arriving meanwhile
        original(events, timeout=timeout)

    sink.send = send_like_http  # type: ignore[method-assign]
    client = Client(destination=sink, flush_at=10_000, flush_interval=0.3)
    end = time.monotonic() + 1.2
    sent = 0
    while time.monotonic() < end:
        client.capture("e", distinct_id="u")
        sent += 1
        time.sleep(0.0005)
    assert client.flush(5)
    assert len(sink.events) == sent
    # about one batch per 0.3 s interval (plus the final flush), never one per trickle of events
    assert sink.batches <= 8, sink.batches
    client.shutdown(1)


def test_a_worker_far_behind_makes_the_caller_build_events_instead_of_dropping():
    client = Client(destination=Blocked(), max_queue_size=400, flush_at=10, flush_interval=30)
    sender = client._sender
    results = [client.capture("e", distinct_id="u", properties={"i": i}) for i in range(1000)]
    assert all(results)  # nothing dropped: past the threshold the caller built them
    assert client.stats()["dropped"] == 0
    in_flight = sum(len(batch) for batch in sender._inflight)
    assert client.stats()["queued"] == 1000  # all pending: unbuilt, built or sending
    assert len(sender._queue) <= sender.help_threshold  # unbuilt items stay bounded
    # The rest was built (by the caller, past the threshold): waiting as bytes in the backlog,
    # or already taken by the stalled worker as one catch-up batch in flight.
    assert len(sender._backlog) + in_flight >= 1000 - sender.help_threshold
    client.shutdown(0.2)


def test_large_events_beyond_the_byte_bound_are_delivered_not_dropped(posthog_server):
    # 50 events of ~100 KB captured in a tight loop: 5 MB in all, 5x the byte bound. Memory stays
    # bounded (the rest waits in the disk spool) and every event is delivered.
    client = _client(posthog_server, max_queue_bytes=1_000_000, flush_at=5, flush_interval=30)
    text = "lorem ipsum dolor sit amet " * 4_000
    uuids = [
        client.capture("$ai_generation", distinct_id="u", properties={"$ai_input": text, "i": i})
        for i in range(50)
    ]
    sender = client._sender
    # Built events: exact bytes. Unbuilt ones: a sampled estimate, a few events of slack.
    assert sender._backlog_bytes <= 1_000_000
    assert sender.queued_bytes_estimate <= 1_000_000 + 4 * 110_000
    assert client.flush(20)
    assert sorted(_uuids(posthog_server)) == sorted(uuids)
    stats = client.stats()
    assert stats["dropped"] == 0 and stats["spool_pending"] == 0
    client.shutdown(1)


def test_unbuilt_large_events_are_bounded_by_bytes_behind_a_stalled_endpoint(posthog_server):
    # 100 KB prompts while every request stalls: memory stays under the byte bound (estimated
    # for events not built yet, exact for built ones); what does not fit waits in the spool.
    posthog_server.behaviour = lambda n: ("stall", 3)
    client = _client(posthog_server, max_queue_bytes=4_000_000, timeout=2, flush_at=10)
    prompt = "lorem ipsum dolor sit amet " * 4_000
    sender = client._sender
    peak = 0
    for i in range(600):
        client.capture("$ai_generation", distinct_id="u", properties={"$ai_input": prompt, "i": i})
        peak = max(peak, sender.queued_bytes_estimate + sender._backlog_bytes)
    # With a spool, built and unbuilt events share the bound (two events of slack).
    assert peak <= 4_000_000 + 220_000
    assert len(sender._queue) < 100  # not 600 references to 100 KB prompts
    stats = client.stats()
    assert stats["dropped"] == 0 and stats["spooled"] > 0
    client.shutdown(0.5)


def test_one_large_event_does_not_make_the_small_ones_after_it_dropped(sink):
    # The queued items' size is a sampled estimate that one large event pushes up for a while;
    # without a spool it must not drop deliverable events while memory is far below the bound.
    client = Client(destination=sink, max_queue_bytes=4_000_000, flush_interval=0.05)
    client.capture("$ai_generation", distinct_id="u", properties={"$ai_input": "x" * 2_000_000})
    uuids = [client.capture("e", distinct_id="u", properties={"i": i}) for i in range(3_000)]
    assert all(uuids)
    assert client.flush(10)
    assert client.stats()["dropped"] == 0 and len(sink.events) == 3_001
    client.shutdown(1)


def test_queue_full_without_a_spool_drops_and_counts_the_newest():
    client = Client(destination=Blocked(), max_queue_bytes=300_000, flush_at=5, flush_interval=30)
    prompt = "lorem ipsum dolor sit amet " * 4_000
    results = [
        client.capture("e", distinct_id="u", properties={"p": prompt, "i": i}) for i in range(50)
    ]
    sender = client._sender
    assert sender._backlog_bytes <= 300_000
    assert sender.queued_bytes_estimate <= 300_000 + 110_000  # one event of slack
    assert client.stats()["dropped"] > 0 and results[0] is not None
    client.shutdown(0.2)


def test_a_batch_being_sent_is_counted_as_queued_until_it_is_answered():
    gate = threading.Event()

    class Slow:
        description = "slow"

        def send(self, events, *, timeout):
            gate.wait(10)

        def close(self):
            pass

    client = Client(destination=Slow(), flush_at=10, flush_interval=0.05)
    for i in range(25):
        client.capture("e", distinct_id="u", properties={"i": i})
    deadline = time.monotonic() + 5
    while not client._sender._inflight and time.monotonic() < deadline:
        time.sleep(0.01)
    assert client._sender._inflight  # a request is waiting on the destination
    stats = client.stats()
    assert stats["queued"] == 25 and stats["sent"] == 0
    gate.set()
    assert client.flush(5)
    stats = client.stats()
    assert stats["queued"] == 0 and stats["sent"] == 25
    client.shutdown(1)


def test_a_destination_without_a_description_is_named_by_its_class(caplog):
    from posthog_llm.destinations import PermanentError

    class Refusing:
        def send(self, events, *, timeout):
            raise PermanentError("no thanks", status=403)

        def close(self):
            pass

    client = Client(destination=Refusing(), flush_interval=0.05)
    client.capture("e", distinct_id="u")
    with caplog.at_level(logging.WARNING, logger="posthog_llm"):
        assert client.flush(5) is False  # the event was refused: not delivered
    assert client.stats()["failed"] == 1
    assert "for Refusing: no thanks" in caplog.text
    client.shutdown(1)
    assert client.capture("late", distinct_id="u") is None
    assert client.stats()["dropped"] == 1 and client.stats()["invalid"] == 0


def test_a_batch_sent_as_two_requests_counts_each_event_once_while_it_is_sent(posthog_server):
    # `$ai_*` events and others go to two endpoints: one batch, two requests, answered late.
    posthog_server.delay = 0.4
    client = _client(posthog_server, flush_interval=0.05)
    for i in range(10):
        client.capture("$ai_generation", distinct_id="u", properties={"i": i})
        client.capture("e", distinct_id="u", properties={"i": i})
    seen = set()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        stats = client.stats()
        seen.add((stats["sent"], stats["queued"]))
        # Never counted twice (an item the worker is building is briefly in neither count).
        assert stats["sent"] + stats["queued"] <= 20, stats
        if stats["sent"] == 20:
            break
        time.sleep(0.01)
    assert (10, 10) in seen  # one request answered, the other still out
    assert client.shutdown(2)


@pytest.mark.parametrize("spool", [False, True])
def test_shutdown_returns_by_its_deadline_when_before_send_is_slow(tmp_path, spool):
    # Building an event runs before_send (5 ms here): what is still unbuilt at the deadline
    # is counted lost, not built on the caller's thread for seconds (and then thrown away).
    def slow(event):
        time.sleep(0.005)
        return event

    kwargs = {"destination": InMemoryDestination()}
    if spool:  # a PostHog endpoint that refuses connections, with a spool to keep events in
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        kwargs = {
            "api_key": "phc_x",
            "host": f"http://127.0.0.1:{port}",
            "spool_dir": str(tmp_path),
        }
    client = Client(before_send=slow, flush_interval=30, **kwargs)
    for i in range(1000):
        client.capture("e", distinct_id="u", properties={"i": i})
    started = time.monotonic()
    client.shutdown(timeout=0.5)
    # The deadline, and with a spool as long again (at least 1 s) to save what is left.
    assert time.monotonic() - started < (2.0 if spool else 1.0)
    stats = client.stats()
    # Every event is accounted for once: delivered, in the spool, or counted lost.
    assert stats["sent"] + stats["failed"] + stats["spooled"] == 1000, stats
    assert stats["queued"] == 0


def test_a_signal_handler_that_flushes_while_its_thread_holds_the_senders_locks_returns():
    # A handler for SIGTERM that flushes runs on a thread that may be inside the sender
    # (starting the worker, storing a built event): the locks are re-entrant, not a hang.
    client = Client(destination=InMemoryDestination(), flush_interval=30)
    sender = client._sender
    answers: list = []

    def interrupted_inside() -> None:
        with sender._lock:  # inside `_start`
            client.capture("e", distinct_id="u")
            answers.append(client.flush(2))
        with sender._backlog_lock, sender._inflight_lock:  # storing a built event, stats()
            answers.append(client.capture("e", distinct_id="u") is not None)
            answers.append(client.stats()["sent"])

    thread = threading.Thread(target=interrupted_inside, daemon=True)
    thread.start()
    thread.join(10)
    assert answers == [True, True, 1]
    client.shutdown(1)


def test_a_flush_under_steady_traffic_delivers_what_came_before_it_and_returns():
    # A web app flushing while its other threads keep capturing: the flush chased the newer
    # events for as long as they came, and said False at its deadline (None: never returned).
    from tests.support.posthog_sink import PostHogSink

    server = PostHogSink(delay=0.05)  # a remote PostHog takes a while to answer
    client = _client(server, flush_interval=0.5)
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            client.capture("e", distinct_id="u")
            time.sleep(0.002)

    threads = [threading.Thread(target=traffic) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.3)
        before = client.capture("e", distinct_id="u", properties={"mark": 1})
        answers: list[bool] = []
        waiter = threading.Thread(target=lambda: answers.append(client.flush()))
        waiter.start()
        waiter.join(10)
        assert answers == [True]  # returned while the traffic went on, everything delivered
        assert before in _uuids(server)
        assert client.flush(10) is True
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        client.shutdown(5)
        server.close()


def test_events_to_posthog_name_the_library_and_are_not_located_by_the_servers_address(
    posthog_server,
):
    client = _client(posthog_server)
    client.capture("signed_up", distinct_id="user_123")
    client.capture("$ai_generation", distinct_id="user_123", properties={"$lib": "mine"})
    assert client.shutdown(5)
    first, second = (e["properties"] for e in posthog_server.events)
    assert first["$geoip_disable"] is True
    assert (first["$lib"], first["$lib_version"]) == ("posthog-llm", posthog_llm.__version__)
    assert second["$lib"] == "mine"  # the caller's own value wins
    located = _client(posthog_server, disable_geoip=False)
    located.capture("signed_up", distinct_id="user_123")
    assert located.shutdown(5)
    assert "$geoip_disable" not in posthog_server.events[-1]["properties"]
    with pytest.raises(TypeError, match="disable_geoip"):
        Client(destination=InMemoryDestination(), disable_geoip="no")
