"""Delivery at interpreter exit, fork safety, and the local store written by two processes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest
from posthog_llm import Client, EventStore, InMemoryDestination

from ._forking import in_forked_child


def _run(code: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **env}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        env=full_env,
    )


def test_pending_events_are_delivered_at_exit_without_flush(posthog_server):
    result = _run(
        f"""
        from posthog_llm import Client
        client = Client(api_key="phc_exit", host="{posthog_server.host}", flush_interval=60)
        for i in range(300):
            client.capture("$ai_generation", distinct_id="u", properties={{"i": i}})
        # no flush, no shutdown: the atexit hook must deliver
        """
    )
    assert result.returncode == 0, result.stderr
    assert len(posthog_server.wait_for(300, timeout=5)) == 300


def test_exit_is_bounded_when_the_endpoint_is_down():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    result = _run(
        f"""
        from posthog_llm import Client
        client = Client(api_key="phc", host="http://127.0.0.1:{port}", shutdown_timeout=1.0)
        for i in range(100):
            client.capture("e", distinct_id="u")
        """
    )
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - start < 10  # interpreter start + 1 s deadline, not minutes


def test_exit_with_several_clients_to_a_stalled_endpoint_keeps_one_deadline(tmp_path):
    # Each client waiting its own shutdown_timeout in turn made exit six times as long.
    from posthog_llm.local.posthog_sink import PostHogSink

    sink = PostHogSink(delay=30)  # answers nothing in time
    try:
        times = {}
        for clients in (1, 6):
            start = time.monotonic()
            result = _run(
                f"""
                from posthog_llm import Client
                clients = [
                    Client(f"phc_{{i}}", {sink.host!r}, shutdown_timeout=2, spool_dir={str(tmp_path)!r})
                    for i in range({clients})
                ]
                for client in clients:
                    for _ in range(20):
                        client.capture("e", distinct_id="u")
                """
            )
            assert result.returncode == 0, result.stderr
            times[clients] = time.monotonic() - start
        assert times[6] < times[1] + 3.0, times  # six clients: not 6 x 2 s
    finally:
        sink.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX only")
def test_forked_child_gets_a_fresh_worker_and_none_of_the_parent_queue(tmp_path):
    sink = InMemoryDestination()
    client = Client(destination=sink, flush_interval=30)  # parent events stay queued
    for _ in range(5):
        client.capture("parent", distinct_id="p")

    def child() -> str:
        queued_at_start = client.stats()["queued"]
        client.capture("child", distinct_id="c")
        ok = client.flush(5)
        names = [e["event"] for e in sink.events]
        return f"{queued_at_start}|{ok}|{','.join(names)}"

    queued_at_start, ok, names = in_forked_child(child).split("|")
    assert queued_at_start == "0"
    assert ok == "True"
    assert names == "child"  # the parent's five events were not sent by the child
    assert client.flush(5)
    assert [e["event"] for e in sink.events] == ["parent"] * 5
    client.shutdown(1)


def test_local_store_written_by_two_processes_at_once(tmp_path):
    db = tmp_path / "shared.db"
    code = """
        import sys
        from posthog_llm import Client
        client = Client(db=sys.argv[1], flush_at=50, flush_interval=0.01)
        for i in range(1000):
            client.capture("$ai_span", distinct_id=sys.argv[2], properties={"$ai_trace_id": sys.argv[2], "i": i})
        assert client.shutdown(20)
    """
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code), str(db), name],
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("writer-a", "writer-b")
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    with EventStore(db) as store:
        assert store.count() == 2000
        traces = {t.trace_id: t.events for t in store.traces()}
    assert traces == {"writer-a": 1000, "writer-b": 1000}
    with open(db, "rb") as f:
        assert f.read(16).startswith(b"SQLite format 3")
    import sqlite3

    assert sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_retried_batch_is_stored_once(tmp_path):
    from posthog_llm import SQLiteDestination

    dest = SQLiteDestination(tmp_path / "once.db")
    event = b'{"event":"e","distinct_id":"u","properties":{"$ai_trace_id":"t"},"timestamp":"2025-01-01T00:00:00+00:00","uuid":"u-1"}'
    dest.send([event], timeout=1)
    dest.send([event], timeout=1)
    dest.close()
    with EventStore(tmp_path / "once.db") as store:
        assert store.count() == 1


_MP_CODE = """
import multiprocessing as mp
import sys
from posthog_llm import Client

HOST = sys.argv[2]
client = None


def _client():
    global client
    if client is None:
        client = Client(api_key="phc_mp", host=HOST, flush_interval=60)
    return client


if sys.argv[3] == "pool-with-module-client":
    _client()  # made at import: in a spawned child, while it is still being prepared


def work(i):
    # no flush, no shutdown: the child must deliver (or spool) at its exit
    _client().capture("$ai_span", distinct_id="child", properties={"i": i})
    return i


def run_process(start):
    for i in range(start, start + 150):
        work(i)


if __name__ == "__main__":
    method, kind = sys.argv[1], sys.argv[3]
    ctx = mp.get_context(method)
    if method == "fork":
        _client()  # made in the parent, inherited by the children
    if kind == "process":
        procs = [ctx.Process(target=run_process, args=(k * 150,)) for k in range(2)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
            assert p.exitcode == 0
    elif kind == "pool":
        pool = ctx.Pool(2)
        pool.map(work, range(300), chunksize=10)
        pool.close()
        pool.join()
    else:  # the pool's context manager terminates its workers
        with ctx.Pool(2) as pool:
            pool.map(work, range(300), chunksize=10)
"""


def _run_children(tmp_path, method: str, host: str, kind: str) -> None:
    """Run `_MP_CODE`: 300 events captured in children that neither flush nor shut down."""
    script = tmp_path / "mp_script.py"
    script.write_text(_MP_CODE)
    result = subprocess.run(
        [sys.executable, str(script), method, host, kind],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("method", ["fork", "spawn"])
@pytest.mark.parametrize("kind", ["process", "pool", "pool-with", "pool-with-module-client"])
def test_multiprocessing_children_deliver_at_exit(posthog_server, tmp_path, method, kind):
    if method == "fork" and not hasattr(os, "fork"):
        pytest.skip("fork is POSIX only")
    _run_children(tmp_path, method, posthog_server.host, kind)
    events = posthog_server.wait_for(300, timeout=10)
    assert sorted(e["properties"]["i"] for e in events) == list(range(300))


@pytest.mark.parametrize("method", ["fork", "spawn"])
@pytest.mark.parametrize("kind", ["process", "pool"])
def test_multiprocessing_children_spool_at_exit_while_posthog_is_down(
    posthog_server, tmp_path, method, kind
):
    if method == "fork" and not hasattr(os, "fork"):
        pytest.skip("fork is POSIX only")
    posthog_server.behaviour = lambda n: ("status", 503)  # down for the children's whole life
    _run_children(tmp_path, method, posthog_server.host, kind)
    assert posthog_server.events == []
    # PostHog is back: a later client for the same host and key replays what the children left.
    posthog_server.behaviour = lambda n: "ok"
    later = Client(api_key="phc_mp", host=posthog_server.host, flush_interval=0.05)
    assert later.flush(20) is True
    later.shutdown(5)
    events = posthog_server.wait_for(300, timeout=10)
    assert sorted(e["properties"]["i"] for e in events) == list(range(300))


_SIGTERM_INSIDE_CODE = """
import multiprocessing as mp
import os
import signal
import sys
import time
from posthog_llm import Client


def child(host):
    client = Client(api_key="phc_mp", host=host, flush_interval=60)
    # SIGTERM while our own code holds the sender's lock, its worker not started yet (as when
    # Pool.terminate() lands while the exit hook starts the worker to deliver): the handler,
    # which needs that lock to deliver, must not wait for it forever.
    with client._sender._lock:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)


if __name__ == "__main__":
    process = mp.get_context(sys.argv[1]).Process(target=child, args=(sys.argv[2],))
    started = time.monotonic()
    process.start()
    process.join(20)
    print(process.exitcode, round(time.monotonic() - started, 1))
"""


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_sigterm_inside_our_own_locked_code_ends_the_child_within_its_budget(
    posthog_server, tmp_path, method
):
    if method == "fork" and not hasattr(os, "fork"):
        pytest.skip("fork is POSIX only")
    script = tmp_path / "sigterm_script.py"
    script.write_text(_SIGTERM_INSIDE_CODE)
    result = subprocess.run(
        [sys.executable, str(script), method, posthog_server.host],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    exitcode, seconds = result.stdout.split()
    assert exitcode == "-15"  # still ended by SIGTERM, not left hanging (None)
    assert float(seconds) < 15
