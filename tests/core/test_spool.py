"""The disk spool: nothing is lost while PostHog is down, across restarts and processes."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter

import pytest
from posthog_llm import Client, InMemoryDestination
from posthog_llm._spool import Spool, default_spool_dir, spool_path


def _client(server, **kw) -> Client:
    kw.setdefault("flush_interval", 0.05)
    return Client(api_key="phc_spool", host=server.host, **kw)


def _down(server) -> None:
    server.behaviour = lambda n: ("status", 503)


def _up(server) -> None:
    server.behaviour = lambda n: "ok"


# -- the spool itself ----------------------------------------------------------------------------


def test_spool_claims_oldest_first_and_leases_exclude_other_senders(tmp_path):
    spool = Spool(str(tmp_path / "s" / "spool.db"))
    assert spool.claim(10, 1 << 20, 60) == [] and spool.pending() == 0
    spool.put([b"a", b"b", b"c"])
    spool.put([b"d"])
    other = Spool(spool.path)  # another sender (same file, own connection)
    first = spool.claim(2, 1 << 20, 60)
    assert [data for _, data in first] == [b"a", b"b"]
    assert [data for _, data in other.claim(10, 1 << 20, 60)] == [b"c", b"d"]
    assert spool.claim(10, 1 << 20, 60) == []  # everything is leased
    spool.release([first[1][0]])
    spool.ack([first[0][0]])
    assert [data for _, data in other.claim(10, 1 << 20, 60)] == [b"b"]
    assert spool.pending() == 3


def test_an_expired_lease_makes_events_claimable_again(tmp_path):
    spool = Spool(str(tmp_path / "spool.db"))
    spool.put([b"x"])
    assert spool.claim(10, 1 << 20, lease=0.05)
    assert spool.claim(10, 1 << 20, 60) == []
    time.sleep(0.1)  # the holder died: its lease runs out
    assert [d for _, d in spool.claim(10, 1 << 20, 60)] == [b"x"]


def test_a_full_spool_drops_the_oldest(tmp_path):
    spool = Spool(str(tmp_path / "spool.db"), max_bytes=200_000)
    dropped = 0
    for i in range(100):
        dropped += spool.put([json.dumps({"i": i, "pad": "p" * 4_000}).encode()])
    assert dropped > 0 and spool.pending() == 100 - dropped
    rows = spool.claim(1_000, 1 << 30, 60)
    assert [json.loads(d)["i"] for _, d in rows] == list(range(dropped, 100))  # newest kept
    assert os.path.getsize(spool.path) < 600_000


def test_one_put_larger_than_the_spool_keeps_its_file_near_the_limit(tmp_path):
    # A shutdown saves its whole backlog in one put: written at once it grew the file to that
    # size, which SQLite keeps (the freed pages stay in the file).
    spool = Spool(str(tmp_path / "spool.db"), max_bytes=200_000)
    spool.put([json.dumps({"i": -1}).encode()])
    batch = [json.dumps({"i": i, "pad": "p" * 1_000}).encode() for i in range(1_000)]
    dropped = spool.put(batch)
    kept = [json.loads(d)["i"] for _, d in spool.claim(10_000, 1 << 30, 60)]
    assert dropped == 1_001 - len(kept) and kept == list(range(1_000 - len(kept), 1_000))
    assert 100 < len(kept) < 200
    assert os.path.getsize(spool.path) < 1.25 * 200_000
    # An event too large for the spool is dropped alone: the smaller ones before it fit.
    small = [json.dumps({"small": i}).encode() for i in range(10)]
    assert spool.put([*small, b"x" * 190_000]) == 1
    assert [d for _, d in spool.claim(10_000, 1 << 30, 60)] == small
    # An event that fits in an empty spool is kept, whatever older ones it pushes out.
    spool.put([b"y" * 178_000])
    assert spool.pending() == 1 and spool.claim(10, 1 << 30, 0)[0][1] == b"y" * 178_000


def test_default_location_and_one_spool_per_host_and_key(tmp_path, monkeypatch):
    monkeypatch.delenv("POSTHOG_LLM_SPOOL_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert default_spool_dir() == str(tmp_path / "cache" / "posthog-llm" / "spool")
    monkeypatch.setenv("POSTHOG_LLM_SPOOL_DIR", str(tmp_path / "mine"))
    assert default_spool_dir() == str(tmp_path / "mine")
    a = spool_path("/b", "https://us.i.posthog.com", "phc_secret")
    assert a == spool_path("/b", "https://us.i.posthog.com/", "phc_secret")
    assert a != spool_path("/b", "https://us.i.posthog.com", "phc_other")
    assert a != spool_path("/b", "https://eu.i.posthog.com", "phc_secret")
    assert "phc_secret" not in a


# -- the client with a spool ---------------------------------------------------------------------


def test_events_are_spooled_while_down_and_replayed_by_a_later_client(posthog_server, tmp_path):
    _down(posthog_server)
    first = _client(posthog_server)
    uuids = [first.capture("$ai_span", distinct_id="u", properties={"i": i}) for i in range(200)]
    assert first.flush(10) is False  # nothing delivered: False, not True
    stats = first.stats()
    assert stats["spooled"] == 200 and stats["spool_pending"] == 200 and stats["failed"] == 0
    assert first.shutdown(2) is False
    assert posthog_server.events == []
    key_files = [os.path.join(d, f) for d, _, fs in os.walk(tmp_path / "spool") for f in fs]
    assert key_files and all("phc_spool" not in p for p in key_files)
    for path in key_files:
        with open(path, "rb") as f:
            assert b"phc_spool" not in f.read()

    _up(posthog_server)
    second = _client(posthog_server)  # same host and key: replays the spool, oldest first
    assert second.flush(10) is True
    got = [e["uuid"] for e in posthog_server.events]
    assert got == uuids  # original uuids, in capture order, each once
    assert second.stats()["replayed"] == 200 and second.stats()["spool_pending"] == 0
    second.shutdown(2)


def test_the_spool_drains_in_the_background_when_the_endpoint_comes_back(posthog_server):
    _down(posthog_server)
    client = _client(posthog_server)
    uuids = {client.capture("e", distinct_id="u", properties={"i": i}) for i in range(50)}
    assert client.flush(5) is False
    _up(posthog_server)
    events = posthog_server.wait_for(50, timeout=15)  # no flush: the worker probes and drains
    assert {e["uuid"] for e in events} == uuids and len(events) == 50
    # The sink counts a batch when it receives it; the worker acks the spool rows only after
    # reading the answer, so the spool empties a moment later.
    deadline = time.monotonic() + 10
    while client.stats()["spool_pending"] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert client.stats()["spool_pending"] == 0
    assert client.flush(5) is True
    client.shutdown(1)


def test_shutdown_waits_for_a_retry_due_before_its_deadline(posthog_server):
    posthog_server.behaviour = lambda n: ("status", 429, {"Retry-After": "1"}) if n == 0 else "ok"
    client = _client(posthog_server)
    uuids = [client.capture("e", distinct_id="u", properties={"i": i}) for i in range(10)]
    start = time.monotonic()
    assert client.shutdown(4) is True  # spooled at the 429, replayed a second later
    assert time.monotonic() - start >= 0.9
    assert sorted(e["uuid"] for e in posthog_server.events) == sorted(uuids)


def test_shutdown_does_not_wait_for_a_retry_due_after_its_deadline(posthog_server):
    posthog_server.behaviour = lambda n: ("status", 429, {"Retry-After": "3"})
    client = _client(posthog_server)
    for i in range(10):
        client.capture("e", distinct_id="u", properties={"i": i})
    start = time.monotonic()
    assert client.shutdown(2) is False
    # Everything is on disk and the next try is after the deadline: returns before it.
    assert time.monotonic() - start < 1.9
    assert client.stats()["spool_pending"] == 10 and posthog_server.events == []


def test_a_flush_replaying_a_long_backlog_rides_out_a_failure_late_in_it(
    posthog_server, monkeypatch
):
    # The flush gives up on an endpoint that has not delivered anything for this long, not on one
    # that fails once after delivering for longer than it: a backlog left by an outage then
    # drains within the flush instead of staying on disk for some later process.
    monkeypatch.setattr("posthog_llm._sender._RETRY_BUDGET_WITH_SPOOL", 2.0)
    _down(posthog_server)
    client = _client(posthog_server, flush_interval=30)
    uuids = [client.capture("e", distinct_id="u", properties={"i": i}) for i in range(24_000)]
    assert client.flush(5) is False
    assert client.stats()["spool_pending"] == 24_000
    replays: list[int] = []

    def one_failure(number: int):
        replays.append(number)
        return ("status", 503) if len(replays) == 10 else "ok"

    posthog_server.delay = 0.25  # every answer
    posthog_server.behaviour = one_failure
    # Batches of 2,000 answered in 0.25 s each: the failure comes ~2.25 s into the replay.
    assert client.flush(30) is True
    assert len(replays) == 13
    assert sorted(e["uuid"] for e in posthog_server.events) == sorted(uuids)
    assert client.stats()["spool_pending"] == 0
    client.shutdown(1)


def test_retries_exhausted_go_to_the_spool_not_lost(posthog_server):
    posthog_server.behaviour = lambda n: "drop" if n < 2 else "ok"
    client = _client(posthog_server)
    uuids = [client.capture("e", distinct_id="u") for _ in range(20)]
    assert client.flush(10)  # failed twice: spooled, then replayed within the flush
    assert client.stats()["spooled"] == 20 and client.stats()["replayed"] == 20
    assert sorted(e["uuid"] for e in posthog_server.events) == sorted(uuids)
    assert client.stats()["failed"] == 0
    client.shutdown(1)


def test_a_full_spool_drops_oldest_counts_and_warns_once(posthog_server, caplog):
    caplog.set_level(logging.WARNING, logger="posthog_llm")
    _down(posthog_server)
    client = _client(posthog_server, spool_max_bytes=150_000)
    for i in range(300):
        client.capture("e", distinct_id="u", properties={"i": i, "pad": "lorem ipsum " * 200})
        if i % 50 == 49:
            client.flush(2)
    assert client.flush(2) is False
    stats = client.stats()
    assert stats["spool_dropped"] > 0
    assert stats["spool_pending"] == 300 - stats["spool_dropped"]
    warnings = [r for r in caplog.records if "spool is full" in r.getMessage()]
    assert len(warnings) == 1
    _up(posthog_server)
    assert client.flush(10)
    received = sorted(e["properties"]["i"] for e in posthog_server.events)
    assert received == list(range(300 - len(received), 300))  # the newest were kept
    client.shutdown(1)


def test_spool_can_be_turned_off(posthog_server, tmp_path):
    _down(posthog_server)
    client = _client(posthog_server, spool=False, max_retries=0)
    client.capture("e", distinct_id="u")
    assert client.flush(5) is False
    assert client.stats()["failed"] == 1 and client.stats()["spooled"] == 0
    assert not (tmp_path / "spool").exists()
    client.shutdown(1)


def test_local_and_custom_destinations_have_no_spool(tmp_path):
    assert Client(db=tmp_path / "e.db").spool is None
    assert Client(destination=InMemoryDestination()).spool is None


def test_spool_dir_argument_wins(posthog_server, tmp_path):
    client = _client(posthog_server, spool_dir=tmp_path / "here")
    assert client.spool is not None and client.spool.path.startswith(str(tmp_path / "here"))
    client.shutdown(1)


# -- processes -----------------------------------------------------------------------------------


def _run(code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_the_spool_survives_a_process_restart(posthog_server):
    """A process captures while PostHog is down and exits; the next process delivers."""
    _down(posthog_server)
    code = """
        import json, sys
        from posthog_llm import Client
        client = Client(api_key="phc_restart", host=sys.argv[1], flush_interval=0.05,
                        shutdown_timeout=3)
        uuids = [client.capture("$ai_generation", distinct_id="u", properties={"i": i})
                 for i in range(300)]
        print(json.dumps(uuids))
        # no flush: the exit hook spools what it cannot deliver
    """
    first = _run(code, posthog_server.host)
    assert first.returncode == 0, first.stderr
    uuids = json.loads(first.stdout)
    assert posthog_server.events == []
    _up(posthog_server)
    second = _run(
        """
        import sys
        from posthog_llm import Client
        client = Client(api_key="phc_restart", host=sys.argv[1])
        assert client.flush(20), client.stats()
        """,
        posthog_server.host,
    )
    assert second.returncode == 0, second.stderr
    assert [e["uuid"] for e in posthog_server.events] == uuids


def test_processes_sharing_a_spool_never_send_an_event_twice(posthog_server, tmp_path):
    _down(posthog_server)
    seed = _client(posthog_server)
    uuids = [seed.capture("e", distinct_id="u", properties={"i": i}) for i in range(3_000)]
    assert seed.shutdown(5) is False
    _up(posthog_server)
    code = """
        import sys
        from posthog_llm import Client
        client = Client(api_key="phc_spool", host=sys.argv[1], flush_at=100)
        client.flush(30)
        client.shutdown(5)
    """
    env = {**os.environ}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code), posthog_server.host],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    counts = Counter(e["uuid"] for e in posthog_server.events)
    assert set(counts) == set(uuids)
    assert max(counts.values()) == 1  # three processes drained it, none twice


@pytest.mark.skipif(not hasattr(os, "kill"), reason="POSIX signals")
def test_sigkill_loses_only_what_was_in_memory(posthog_server):
    """While PostHog is down, a SIGKILL loses at most the events not spooled yet."""
    import signal

    _down(posthog_server)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                """
                import sys, time
                from posthog_llm import Client
                client = Client(api_key="phc_kill", host=sys.argv[1], flush_interval=0.1)
                for i in range(100_000):
                    client.capture("e", distinct_id="u", properties={"i": i})
                    print(i, flush=True)
                    time.sleep(0.002)
                """
            ),
            posthog_server.host,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    last = -1
    deadline = time.monotonic() + 12  # past the first batch's retry budget
    while time.monotonic() < deadline:
        last = int(proc.stdout.readline())
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    captured = last + 1
    spool = Spool(spool_path(os.environ["POSTHOG_LLM_SPOOL_DIR"], posthog_server.host, "phc_kill"))
    kept = spool.pending()
    # Lost: about one flush interval plus the batch being retried, never the whole outage.
    assert captured > 1_000
    assert captured - kept < 0.5 * captured


def test_a_request_answered_while_shutdown_saves_what_is_left_loses_nothing(posthog_server):
    # The worker's request is held until `shutdown`, past its deadline, is spooling what is
    # left (building queued events on the calling thread); back from the request, the worker
    # must not build queued events into a backlog that was already saved.
    answer = threading.Event()
    posthog_server.behaviour = lambda n: "ok" if n or answer.wait(20) else "ok"
    main = threading.current_thread()
    saved = []

    def slow_on_shutdown(event: dict) -> dict:
        if threading.current_thread() is main:
            answer.set()
            saved.append(1)
            if len(saved) < 200:
                time.sleep(0.001)  # the worker, back from its request, has the GIL meanwhile
        return event

    client = _client(posthog_server, flush_at=50, before_send=slow_on_shutdown)
    # The first request takes a catch-up batch (2,000 events); the rest wait in the queue.
    uuids = {client.capture("e", distinct_id="u", properties={"i": i}) for i in range(6_000)}
    deadline = time.monotonic() + 10
    while not posthog_server.requests and time.monotonic() < deadline:
        time.sleep(0.01)  # the first request is out, and held
    assert client.shutdown(0.2) is False
    spooled = Spool(client.spool.path).claim(10_000, 1 << 30, 60)
    kept = {json.loads(data)["uuid"] for _, data in spooled}
    received = {e["uuid"] for e in posthog_server.events}
    assert uuids <= kept | received, f"lost {len(uuids - kept - received)}"


def test_an_endpoint_that_cannot_be_reached_is_named_in_a_warning(caplog, tmp_path):
    # Nothing is lost (it waits in the spool), but the user is told why nothing arrives.
    caplog.set_level(logging.WARNING, logger="posthog_llm")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: connections to it are refused
    client = Client(api_key="phc_x", host=f"http://127.0.0.1:{port}", spool_dir=str(tmp_path))
    for i in range(5):
        client.capture("e", distinct_id="u", properties={"i": i})
    assert client.flush(2) is False
    assert client.flush(2) is False
    [warning] = [r.getMessage() for r in caplog.records if "could not deliver" in r.getMessage()]
    assert f"127.0.0.1:{port}" in warning and "Connection" in warning and "spool" in warning
    assert client.stats()["spool_pending"] == 5
    client.shutdown(1)


# -- a spool that cannot be written ----------------------------------------------------------------


def test_an_outage_answering_500_is_retried_with_back_off(posthog_server):
    # Every batch answered 500 for a while: without a spool the batch is retried with back-off
    # and delivered when the endpoint is back.
    started = time.monotonic()
    posthog_server.behaviour = lambda n: (
        ("status", 500) if time.monotonic() - started < 1.0 else "ok"
    )
    client = _client(posthog_server, spool=False)
    uuids = [client.capture("e", distinct_id="u", properties={"i": i}) for i in range(100)]
    assert client.flush(30)
    assert sorted(e["uuid"] for e in posthog_server.events) == sorted(uuids)
    assert client.stats()["failed"] == 0
    assert posthog_server.request_count < 20  # retries with back-off, not a request per event
    client.shutdown(1)


def test_a_shutdown_deadline_during_a_slow_spool_write_spools_the_batch_once(
    posthog_server, tmp_path, monkeypatch
):
    # A spool write slowed down (SQLite busy on a spool shared with another process) while the
    # deadline passes: the batch being written is not saved a second time by the shutdown.
    put = Spool.put

    def slow_put(self, events, ids=None):
        if threading.current_thread().name.startswith("posthog-llm-sender"):
            time.sleep(1.0)
        return put(self, events, ids)

    monkeypatch.setattr(Spool, "put", slow_put)
    _down(posthog_server)
    client = _client(posthog_server, spool_dir=str(tmp_path / "spool"))
    for i in range(10):
        client.capture("e", distinct_id="u", properties={"i": i})
    time.sleep(0.4)  # refused: the worker is writing the batch to the spool
    client.shutdown(0.2)
    time.sleep(1.2)
    monkeypatch.setattr(Spool, "put", put)
    assert client.stats()["spooled"] == 10
    (path,) = [p for p in (tmp_path / "spool").rglob("*.db")]
    assert Spool(str(path)).pending() == 10


def _unwritable_spool_dir(tmp_path) -> str:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    return str(blocker / "spool")  # under a regular file: the folder can never be made


def test_a_spool_that_cannot_be_written_leaves_delivery_as_reliable_as_no_spool(
    posthog_server, tmp_path, caplog
):
    posthog_server.behaviour = lambda n: ("status", 503) if n == 0 else "ok"
    client = _client(posthog_server, spool_dir=_unwritable_spool_dir(tmp_path))
    with caplog.at_level(logging.WARNING, logger="posthog_llm"):
        uuids = {client.capture("e", distinct_id="u", properties={"i": i}) for i in range(40)}
        assert client.flush(10)
    assert {e["uuid"] for e in posthog_server.events} == uuids
    stats = client.stats()
    assert stats["failed"] == 0 and stats["retried"] == 40 and stats["spooled"] == 0
    assert "retried in memory" in caplog.text
    assert client.shutdown(2)


def test_with_the_endpoint_down_and_the_spool_unwritable_batches_are_retried_in_memory(
    posthog_server, tmp_path
):
    client = _client(posthog_server, spool_dir=_unwritable_spool_dir(tmp_path))
    _down(posthog_server)
    client.capture("first", distinct_id="u")
    assert not client.flush(1)  # the endpoint is down: marked down, nothing can be spooled
    failed = client.stats()["failed"]
    # While it is down (marked so by the failure above) and recovering, a batch that would
    # have gone to the spool is tried, with retries, instead of being counted failed.
    posthog_server.behaviour = lambda n: ("status", 503) if n < 3 else "ok"
    uuid = client.capture("second", distinct_id="u")
    assert client.flush(10)
    assert uuid in {e["uuid"] for e in posthog_server.events}
    assert client.stats()["failed"] == failed
    client.shutdown(2)


def test_a_spool_file_that_is_not_a_database_is_set_aside_and_a_new_one_started(
    posthog_server, tmp_path, caplog
):
    path = spool_path(str(tmp_path / "spool"), posthog_server.host, "phc_spool")
    os.makedirs(os.path.dirname(path))
    with open(path, "wb") as f:
        f.write(b"\x00not a database" * 512)  # what a power loss or another program left
    posthog_server.behaviour = lambda n: ("status", 503) if n == 0 else "ok"
    client = _client(posthog_server, spool_dir=str(tmp_path / "spool"))
    with caplog.at_level(logging.WARNING, logger="posthog_llm"):
        uuids = {client.capture("e", distinct_id="u", properties={"i": i}) for i in range(30)}
        assert client.flush(10)  # the first answer spooled them; the replay delivered them
    assert {e["uuid"] for e in posthog_server.events} == uuids
    assert client.stats()["spool_pending"] == 0 and client.stats()["failed"] == 0
    aside = [name for name in os.listdir(os.path.dirname(path)) if ".corrupt-" in name]
    assert len(aside) == 1 and "is unreadable" in caplog.text
    with open(os.path.join(os.path.dirname(path), aside[0]), "rb") as f:
        assert f.read(16) == b"\x00not a database\x00"  # kept as it was, not deleted
    assert client.shutdown(2)


# -- a request answered after the shutdown deadline saved its batch --------------------------------


def test_a_batch_answered_after_shutdown_saved_it_is_not_sent_again_by_the_next_client(
    posthog_server, tmp_path
):
    spool_dir = str(tmp_path / "spool")
    posthog_server.delay = 1.2  # every answer (200, events recorded) comes 1.2 s late
    first = _client(posthog_server, spool_dir=spool_dir, flush_interval=0.05)
    uuids = [first.capture("e", distinct_id="u", properties={"i": i}) for i in range(20)]
    time.sleep(0.3)  # the batch is out, its answer 1.2 s away
    assert first.shutdown(0.6) is False  # saved to the spool at its deadline, request still out
    time.sleep(1.5)  # the answer arrives after shutdown returned
    posthog_server.delay = 0.0
    assert [e["uuid"] for e in posthog_server.events] == uuids
    assert first.stats()["sent"] == 20 and first.stats()["spool_pending"] == 0
    second = _client(posthog_server, spool_dir=spool_dir)
    assert second.flush(5)
    assert Counter(e["uuid"] for e in posthog_server.events) == Counter(uuids)  # no duplicates
    assert second.stats()["replayed"] == 0
    second.shutdown(2)


def test_without_a_spool_a_batch_answered_after_shutdown_counts_once():
    gate = threading.Event()
    got: list[bytes] = []

    class Slow:
        description = "slow"

        def send(self, events, *, timeout):
            gate.wait(10)
            got.extend(events)

        def close(self):
            pass

    client = Client(destination=Slow(), flush_interval=0.05)
    for i in range(30):
        client.capture("e", distinct_id="u", properties={"i": i})
    time.sleep(0.3)
    assert client.shutdown(0.3) is False  # the request is still out: counted failed for now
    assert client.stats()["failed"] == 30
    gate.set()
    deadline = time.monotonic() + 5
    while client.stats()["sent"] < 30 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(got) == 30
    stats = client.stats()
    assert (stats["sent"], stats["failed"]) == (30, 0)


def test_a_spool_whose_pages_cannot_be_read_is_set_aside_when_they_are_read(tmp_path, caplog):
    path = str(tmp_path / "spool.db")
    spool = Spool(path)
    spool.put([b"x" * 3000 for _ in range(40)])  # several pages of rows
    spool.close()
    with open(path, "r+b") as f:  # a valid header, damaged pages after it (a torn write)
        f.seek(4096 * 3)
        f.write(b"\xff" * 4096 * 4)
    again = Spool(path)
    with caplog.at_level(logging.WARNING, logger="posthog_llm"):
        assert again.pending() == 0  # a new spool: the damaged one was set aside
        again.put([b"fresh"])
        assert [data for _, data in again.claim(10, 1 << 20, 60)] == [b"fresh"]
    assert "is unreadable" in caplog.text
    assert len([n for n in os.listdir(tmp_path) if n.startswith("spool.db.corrupt-")]) == 1


def test_a_sender_that_finds_the_spool_damaged_after_another_replaced_it_keeps_the_new_one(
    tmp_path,
):
    import sqlite3

    path = str(tmp_path / "spool.db")
    with open(path, "wb") as f:
        f.write(b"\x00not a database" * 512)
    first, second = Spool(path), Spool(path)
    first.put([b"a", b"b"])  # the first to look set the bad file aside and started anew
    # The second found the old file damaged too, a moment before: its recovery, under the
    # lock the senders share, checks the file again and keeps what the first wrote.
    conn = second._recover(sqlite3.DatabaseError("file is not a database"))
    conn.close()
    assert second.pending() == 2
    aside = [n for n in os.listdir(tmp_path) if n.startswith("spool.db.corrupt-")]
    assert len(aside) == 1
    with open(tmp_path / aside[0], "rb") as f:
        assert f.read(15) == b"\x00not a database"


def test_a_folder_where_the_spool_file_should_be_does_not_make_flush_say_false(
    posthog_server, tmp_path
):
    spool_dir = tmp_path / "spool"
    os.makedirs(
        spool_path(str(spool_dir), posthog_server.host, "phc_spool")
    )  # a folder, not a file
    client = _client(posthog_server, spool_dir=str(spool_dir))
    uuids = {client.capture("e", distinct_id="u", properties={"i": i}) for i in range(10)}
    assert client.flush(5)  # all delivered; nothing of ours could be in that spool
    assert {e["uuid"] for e in posthog_server.events} == uuids
    assert client.shutdown(2)


def test_a_batch_retried_in_memory_counts_as_queued_until_it_is_answered(posthog_server, tmp_path):
    posthog_server.behaviour = lambda n: ("status", 503) if n < 4 else "ok"
    client = _client(posthog_server, spool_dir=_unwritable_spool_dir(tmp_path))
    for i in range(20):
        client.capture("e", distinct_id="u", properties={"i": i})
    deadline = time.monotonic() + 20
    while posthog_server.request_count == 0 and time.monotonic() < deadline:
        time.sleep(0.005)  # built and out as one batch: from here every event is in a count
    while time.monotonic() < deadline:
        stats = client.stats()
        assert stats["queued"] + stats["sent"] + stats["failed"] == 20, stats
        if stats["sent"] == 20:
            break
        time.sleep(0.01)
    assert client.stats()["sent"] == 20 and posthog_server.request_count == 5
    assert client.shutdown(2)


def test_a_fault_on_our_side_of_the_wire_keeps_the_batch_in_the_spool(posthog_server, caplog):
    # Not an answer from PostHog (a child process forked mid-import found a half-made module,
    # once): the batch waits in the spool and is delivered later, not dropped.
    client = _client(posthog_server)
    send = client.destination.send
    faults = [AttributeError("partially initialized module 'requests'")]

    def faulty(events, *, timeout):
        if faults:
            raise faults.pop()
        return send(events, timeout=timeout)

    client.destination.send = faulty
    with caplog.at_level(logging.ERROR, logger="posthog_llm"):
        uuids = {client.capture("e", distinct_id="u", properties={"i": i}) for i in range(10)}
        assert client.flush(10)  # spooled at the fault, replayed by the flush
    assert {e["uuid"] for e in posthog_server.events} == uuids
    assert client.stats()["failed"] == 0
    assert client.shutdown(2)
