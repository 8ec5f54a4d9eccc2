"""A second request in flight: the endpoint's handling of one batch overlaps work on the next."""

from __future__ import annotations

import os
import threading
import time
from collections import Counter

import pytest
from posthog_llm import Client

from ._forking import in_forked_child


class Overlapping:
    """A destination that takes a while per batch and records how many calls ran at once."""

    description = "overlapping"

    def __init__(self, concurrent_requests: int | None) -> None:
        if concurrent_requests is not None:
            self.concurrent_requests = concurrent_requests
        self.lock = threading.Lock()
        self.running = 0
        self.peak = 0
        self.events: list[bytes] = []

    def send(self, events, *, timeout):
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        time.sleep(0.03)
        with self.lock:
            self.running -= 1
            self.events.extend(events)

    def close(self):
        pass


def _capture(client: Client, count: int) -> list[str]:
    return [client.capture("e", distinct_id="u", properties={"i": i}) for i in range(count)]


def test_a_destination_that_allows_it_gets_two_calls_at_once_never_three():
    destination = Overlapping(2)
    client = Client(destination=destination, flush_at=50, flush_interval=30)
    uuids = _capture(client, 5000)  # catch-up batches of 2,000: three calls
    assert client.flush(10) is True
    assert destination.peak == 2
    delivered = Counter(e.split(b'"uuid":"')[1][:36].decode() for e in destination.events)
    assert sorted(delivered) == sorted(uuids) and set(delivered.values()) == {1}
    assert client.stats()["sent"] == 5000
    client.shutdown(1)


def test_other_destinations_get_one_call_at_a_time():
    for destination in (Overlapping(None), Overlapping(1)):
        client = Client(destination=destination, flush_at=50, flush_interval=30)
        _capture(client, 5000)
        assert client.flush(10) is True
        assert destination.peak == 1 and len(destination.events) == 5000
        client.shutdown(1)


def test_posthog_gets_the_next_batch_while_it_is_still_answering_the_last(posthog_server):
    arrivals: list[float] = []

    def slow(number: int):
        arrivals.append(time.monotonic())
        return ("stall", 0.3, 200)

    posthog_server.behaviour = slow
    client = Client(api_key="phc_test", host=posthog_server.host, flush_at=100, flush_interval=30)
    _capture(client, 400)
    assert client.flush(10) is True
    # Each request is answered 0.3 s after it arrives. One at a time, arrivals are at least 0.3 s
    # apart; a request that arrives sooner went out while the one before was still unanswered.
    # Judged by arrival order, not by the total time, which a loaded machine stretches.
    assert len(arrivals) == 4
    assert min(b - a for a, b in zip(arrivals, arrivals[1:])) < 0.25
    # Never three at once: a third request waits until one of the two before it is answered.
    assert min(c - a for a, c in zip(arrivals, arrivals[2:])) >= 0.29
    client.shutdown(1)


def test_both_batches_in_flight_at_a_shutdown_deadline_are_spooled_and_replayed(posthog_server):
    # The endpoint answers once (so a second request may go out), then stalls and fails.
    posthog_server.behaviour = lambda n: "ok" if n == 0 else ("stall", 3, 503)
    first = Client(api_key="phc_two", host=posthog_server.host, flush_at=100, flush_interval=30)
    answered = first.capture("e", distinct_id="u")
    assert first.flush(5) is True
    uuids = _capture(first, 300)
    assert first.shutdown(0.5) is False
    assert posthog_server.request_count == 3  # the answered one, then two at once
    assert first.stats()["spooled"] == 300 and first.stats()["failed"] == 0
    assert [e["uuid"] for e in posthog_server.events] == [answered]
    posthog_server.events.clear()

    posthog_server.behaviour = lambda n: "ok"
    second = Client(api_key="phc_two", host=posthog_server.host, flush_interval=30)
    assert second.flush(10) is True
    delivered = Counter(e["uuid"] for e in posthog_server.events)
    assert sorted(delivered) == sorted(uuids) and set(delivered.values()) == {1}
    second.shutdown(1)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX only")
def test_a_forked_child_gets_its_own_helper_thread():
    destination = Overlapping(2)
    client = Client(destination=destination, flush_at=50, flush_interval=30)
    _capture(client, 5000)
    assert client.flush(10) is True and destination.peak == 2  # the parent's helper ran

    def child() -> str:  # the parent's helper thread does not exist here
        destination.peak = 0
        destination.events = []
        _capture(client, 5000)
        ok = client.flush(10)
        return f"{ok}|{destination.peak}|{len(destination.events)}"

    assert in_forked_child(child) == "True|2|5000"
    client.shutdown(1)
