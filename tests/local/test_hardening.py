"""The collector under hostile input: zip bombs, strangers, lone surrogates, foreign pages, deep traces."""

from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import sys
import threading
import time

import requests
from posthog_llm import EventStore
from posthog_llm.destinations.sqlite import connect, insert_events
from posthog_llm.local.server import start_server

# 19 KB of gzip that inflates to 20 MB of `{},{},…`: ~6.6 million dicts if parsed (~500 MB).
BOMB = gzip.compress(b'{"batch":[' + b"{}," * 6_990_000 + b"{}]}", 9)


def _event(name: str = "e") -> dict:
    return {"event": name, "distinct_id": "u", "properties": {"$ai_trace_id": "t"}}


def _stored(db_path: str) -> list[dict]:
    with EventStore(db_path) as store:
        return store.events()


def test_a_gzip_bomb_is_refused_before_it_is_parsed(server, db_path):
    assert len(BOMB) < 25_000
    response = requests.post(
        server.url + "/batch/", data=BOMB, headers={"Content-Encoding": "gzip"}, timeout=30
    )
    assert response.status_code == 413 and "memory budget" in response.json()["detail"]
    ok = requests.post(server.url + "/batch/", json={"batch": [_event()]}, timeout=10)
    assert ok.status_code == 200 and len(_stored(db_path)) == 1


def test_with_an_api_key_a_stranger_is_refused_before_decompressing(db_path):
    with start_server(db_path, api_key="phc_right") as server:
        stranger = requests.post(
            server.url + "/batch/", data=BOMB, headers={"Content-Encoding": "gzip"}, timeout=30
        )
        # 401, not 413: the body was never inflated past its first 64 KiB.
        assert stranger.status_code == 401
        wrong = gzip.compress(json.dumps({"api_key": "phc_wrong", "batch": [_event()]}).encode())
        assert requests.post(server.url + "/batch/", data=wrong, timeout=10).status_code == 401
        keyed = requests.post(
            server.url + "/batch/",
            params={"token": "phc_right"},
            data=BOMB,
            headers={"Content-Encoding": "gzip"},
            timeout=30,
        )
        assert keyed.status_code == 413  # the right key, and still no 500 MB parse
        right = gzip.compress(json.dumps({"api_key": "phc_right", "batch": [_event()]}).encode())
        assert requests.post(server.url + "/batch/", data=right, timeout=10).status_code == 200
    assert len(_stored(db_path)) == 1


def test_an_ai_event_of_several_megabytes_is_stored_whole(server, db_path):
    # The client sends `$ai_*` events up to 8 MiB; the collector accepted bodies of 5 MB only
    # (its per-request memory slot was smaller than a body of the size it allows).
    prompt = "a long document " * 450_000  # ~7 MB
    event = {
        "event": "$ai_generation",
        "distinct_id": "u",
        "properties": {"$ai_trace_id": "big", "$ai_input": [{"role": "user", "content": prompt}]},
    }
    response = requests.post(server.url + "/batch/", json={"batch": [event]}, timeout=60)
    assert response.status_code == 200, response.text[:200]
    [stored] = _stored(db_path)
    assert stored["properties"]["$ai_input"][0]["content"] == prompt


def test_a_body_larger_than_the_budget_is_413_and_the_budget_is_returned(db_path):
    with start_server(db_path, budget_bytes=4_000_000) as server:
        big = {"batch": [_event() | {"properties": {"x": "y" * 900_000}}]}
        response = requests.post(server.url + "/batch/", json=big, timeout=30)
        assert response.status_code == 413
        for _ in range(3):  # what the refused request held was given back
            ok = requests.post(server.url + "/batch/", json={"batch": [_event()]}, timeout=10)
            assert ok.status_code == 200
        deadline = time.monotonic() + 5
        while server._app.budget.used and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server._app.budget.used == 0


def test_a_lone_surrogate_is_a_400_not_a_500(server, db_path, server_log):
    body = b'{"batch": [{"event": "e", "distinct_id": "u", "properties": {"x": "a\\ud800"}}]}'
    response = requests.post(
        server.url + "/batch/", data=body, headers={"Content-Type": "application/json"}, timeout=10
    )
    assert response.status_code == 400 and "lone surrogate" in response.json()["detail"]
    pair = b'{"event": "e", "distinct_id": "u", "properties": {"x": "\\ud83d\\ude00"}}'
    assert requests.post(server.url + "/e/", data=pair, timeout=10).status_code == 200
    assert _stored(db_path)[0]["properties"]["x"] == "\U0001f600"
    assert not [line for line in server_log if "internal error" in line]


def test_pages_on_foreign_origins_cannot_write(server, db_path):
    body = json.dumps([_event()])
    for headers in (
        {"Origin": "http://evil.test", "Content-Type": "text/plain"},
        {"Origin": "null", "Content-Type": "text/plain"},
        {"Sec-Fetch-Site": "cross-site"},  # an <img> GET carries no Origin
    ):
        response = requests.post(server.url + "/e/", data=body, headers=headers, timeout=10)
        assert response.status_code == 403, headers
        assert "Access-Control-Allow-Origin" not in response.headers
    preflight = requests.options(
        server.url + "/e/",
        headers={"Origin": "http://evil.test", "Access-Control-Request-Method": "POST"},
        timeout=10,
    )
    assert preflight.status_code == 403
    assert _stored(db_path) == []
    for origin in ("http://localhost:3000", "http://127.0.0.1:5173", "http://[::1]:8080"):
        response = requests.post(
            server.url + "/e/", data=body, headers={"Origin": origin}, timeout=10
        )
        assert (
            response.status_code == 200
            and response.headers["Access-Control-Allow-Origin"] == origin
        )
    assert len(_stored(db_path)) == 3


def test_cors_origin_allows_more(db_path):
    with start_server(db_path, cors_origins=["https://app.example.com/"]) as server:
        ok = requests.post(
            server.url + "/e/",
            data=json.dumps(_event()),
            headers={"Origin": "https://app.example.com"},
            timeout=10,
        )
        assert ok.status_code == 200
        other = requests.post(
            server.url + "/e/",
            data=json.dumps(_event()),
            headers={"Origin": "https://other.example.com"},
            timeout=10,
        )
        assert other.status_code == 403


def _deep_store(db_path: str, depth: int) -> None:
    rows, parent = [], "deep"
    for i in range(depth):
        props = {
            "$ai_trace_id": "deep",
            "$ai_span_id": f"s{i}",
            "$ai_parent_id": parent,
            "$ai_span_name": f"level {i}",
        }
        rows.append(
            (
                f"u{i}",
                "$ai_span",
                "d",
                f"2025-01-01T00:00:00.{i:06d}+00:00",
                "deep",
                json.dumps(props),
                0.0,
            )
        )
        parent = f"s{i}"
    conn = connect(db_path)
    insert_events(conn, rows)
    conn.close()


def test_a_10000_deep_trace_renders_in_the_api_and_the_cli(server, db_path):
    _deep_store(db_path, 10_000)
    response = requests.get(server.url + "/api/traces/deep", timeout=60)
    assert response.status_code == 200
    nodes = response.json()["nodes"]
    assert len(nodes) == 10_001 and nodes[-1]["depth"] == 10_000 and nodes[-1]["parent"] == 9_999
    shown = subprocess.run(
        [sys.executable, "-m", "posthog_llm", "show", "deep", "--db", db_path],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0 and "Traceback" not in shown.stderr
    lines = shown.stdout.splitlines()
    assert len(lines) == 10_001 and lines[-1].endswith("level 9999")
    assert max(len(line) for line in lines) < 200  # deep levels are summarised, not indented


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_forty_concurrent_bombs_keep_the_server_under_200_mb(tmp_path):
    if not os.path.exists("/proc/self/status"):
        import pytest

        pytest.skip("needs /proc to read the server's peak memory")
    port = _free_port()
    db = str(tmp_path / "bomb.db")
    proc = subprocess.Popen(
        [sys.executable, "-m", "posthog_llm", "serve", "--port", str(port), "--db", db, "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                requests.get(url + "/api/info", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        # Legitimate-looking big bodies too: 3 MB of text inflates ~1:1000 from gzip.
        text_bomb = gzip.compress(
            json.dumps({"batch": [_event() | {"properties": {"x": "y" * 3_000_000}}]}).encode(), 9
        )
        statuses: list[int] = []

        def send(body: bytes) -> None:
            for _ in range(2):
                response = requests.post(
                    url + "/batch/", data=body, headers={"Content-Encoding": "gzip"}, timeout=120
                )
                statuses.append(response.status_code)

        threads = [
            threading.Thread(target=send, args=(BOMB if i % 2 else text_bomb,)) for i in range(40)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(180)
        assert len(statuses) == 80 and set(statuses) <= {200, 413, 503}, statuses
        assert 413 in statuses  # bombs are refused, never answered with a 500
        peak = _peak_rss_mb(proc.pid)
        assert peak < 200, f"peak RSS {peak:.0f} MB"
        # An honest 3 MB prompt still goes through after the storm.
        send(text_bomb)
        assert statuses[-2:] == [200, 200]
        ok = requests.post(url + "/batch/", json={"batch": [_event()]}, timeout=10)
        assert ok.status_code == 200
    finally:
        proc.terminate()
        proc.wait(10)


def test_under_allow_remote_a_stranger_is_refused_before_decompressing(db_path):
    # Bound to all interfaces, asked only over loopback.
    with start_server(db_path, host="0.0.0.0", allow_remote=True, api_key="phc_remote") as server:
        url = f"http://127.0.0.1:{server.port}"
        stranger = requests.post(
            url + "/batch/", data=BOMB, headers={"Content-Encoding": "gzip"}, timeout=30
        )
        assert stranger.status_code == 401
        keyed = gzip.compress(json.dumps({"api_key": "phc_remote", "batch": [_event()]}).encode())
        assert requests.post(url + "/batch/", data=keyed, timeout=10).status_code == 200
        # The handler thread gives its slot back just after answering.
        deadline = time.monotonic() + 5
        while server._app.budget.used and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server._app.budget.used == 0


def test_a_row_the_store_cannot_take_is_left_out_alone(db_path, caplog):
    good = [
        (f"u{i}", "$ai_span", "d", "2025-01-01T00:00:00+00:00", "t", json.dumps({"n": i}), 0.0)
        for i in range(4)
    ]
    unbindable = ({"not": "text"}, "$ai_span", "d", None, "t", "{}", 0.0)
    conn = connect(db_path)
    try:
        assert insert_events(conn, [*good[:2], unbindable, *good[2:]]) == 1
        stored = [r[0] for r in conn.execute("SELECT uuid FROM events ORDER BY uuid")]
    finally:
        conn.close()
    assert stored == ["u0", "u1", "u2", "u3"]
    assert "an event could not be stored" in caplog.text
