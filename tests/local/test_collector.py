"""The PostHog-compatible capture endpoint: paths, body encodings, senders, and refusals."""

from __future__ import annotations

import base64
import gzip
import json
import socket
import threading
import urllib.parse

import pytest
import requests
from posthog_llm import Client, EventStore
from posthog_llm.local.server import (
    CAPTURE_PATHS,
    BadRequest,
    decode_body,
    normalize_event,
    start_server,
)

# The JSON of the curl example in PostHog's "LLM observability installation" manual-capture docs.
DOC_CURL_EXAMPLE = {
    "api_key": "<ph_project_api_key>",
    "event": "$ai_generation",
    "properties": {
        "distinct_id": "distinct_id_of_your_user",
        "$ai_trace_id": "trace_id",
        "$ai_model": "gpt-3.5-turbo",
        "$ai_provider": "openai",
        "$ai_input": '[{"role": "user", "content": "Tell me a fun fact about hedgehogs"}]',
        "$ai_input_tokens": 100,
        "$ai_output_choices": '[{"role": "assistant", "content": "Hedgehogs are small mammals with spines on their back."}]',
        "$ai_output_tokens": 100,
        "$ai_latency": 100,
        "$ai_http_status": 200,
        "$ai_base_url": "https://api.openai.com/v1",
    },
    "timestamp": "2025-01-30T12:00:00Z",
}


def stored(db_path: str) -> list[dict]:
    with EventStore(db_path) as store:
        return store.events()


def test_the_docs_curl_example_is_stored_and_listed(server, db_path):
    response = requests.post(
        server.url + "/capture/",
        data=json.dumps(DOC_CURL_EXAMPLE),
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"status": 1}
    (event,) = stored(db_path)
    assert event["event"] == "$ai_generation"
    assert event["distinct_id"] == "distinct_id_of_your_user"  # taken from properties
    assert event["timestamp"] == "2025-01-30T12:00:00+00:00"
    assert len(event["uuid"]) == 36  # generated
    assert event["properties"]["$ai_model"] == "gpt-3.5-turbo"
    traces = requests.get(server.url + "/api/traces", timeout=10).json()["traces"]
    assert [t["trace_id"] for t in traces] == ["trace_id"]
    # 100 tokens in at $0.50/1M + 100 out at $1.50/1M
    assert traces[0]["cost_usd"] == pytest.approx(0.0002)


def _event(name: str, n: int = 0) -> dict:
    return {
        "event": name,
        "distinct_id": f"user-{n}",
        "properties": {"$ai_trace_id": f"t-{name}", "n": n},
    }


def _form(payload: object) -> dict:
    return {"data": base64.b64encode(json.dumps(payload).encode()).decode()}


ENCODINGS = {
    "json-single": lambda events: {"json": events[0] | {"api_key": "k"}},
    "json-batch": lambda events: {"json": {"api_key": "k", "batch": events}},
    "json-list": lambda events: {"json": events},
    "gzip-header": lambda events: {
        "data": gzip.compress(json.dumps({"api_key": "k", "batch": events}).encode()),
        "headers": {"Content-Encoding": "gzip", "Content-Type": "application/json"},
    },
    "gzip-magic-bytes": lambda events: {
        "data": gzip.compress(json.dumps(events).encode()),
        "headers": {"Content-Type": "text/plain"},
    },
    "gzip-js-query": lambda events: {
        "data": gzip.compress(json.dumps(events).encode()),
        "params": {"compression": "gzip-js", "ver": "1.200.0"},
        "headers": {"Content-Type": "text/plain"},
    },
    "form-base64": lambda events: {"data": _form(events)},
    "base64-query": lambda events: {
        "data": base64.b64encode(json.dumps(events).encode()),
        "params": {"compression": "base64"},
    },
}


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
@pytest.mark.parametrize("path", ["/batch/", "/capture/", "/e/", "/i/v0/e/", "/i/v0/ai/batch/"])
def test_every_capture_path_accepts_every_body_encoding(server, db_path, path, encoding):
    events = [_event("first", 1), _event("second", 2)]
    if encoding == "json-single":
        events = events[:1]
    response = requests.post(server.url + path, timeout=10, **ENCODINGS[encoding](events))
    assert response.status_code == 200, response.text
    got = stored(db_path)
    assert sorted((e["event"], e["distinct_id"]) for e in got) == sorted(
        (e["event"], e["distinct_id"]) for e in events
    )
    assert all(e["properties"]["$ai_trace_id"] == f"t-{e['event']}" for e in got)


def test_paths_without_trailing_slash_and_the_get_fallback(server, db_path):
    assert requests.post(server.url + "/batch", json=[_event("a")], timeout=10).status_code == 200
    data = base64.b64encode(json.dumps(_event("b")).encode()).decode()
    response = requests.get(server.url + "/e/", params={"data": data}, timeout=10)
    assert response.status_code == 200, response.text
    assert sorted(e["event"] for e in stored(db_path)) == ["a", "b"]
    assert {"/batch", "/capture", "/e", "/i/v0/e", "/i/v0/ai/batch"} <= CAPTURE_PATHS


def test_posthog_js_shape_flags_and_cors_from_a_loopback_page(server, db_path):
    # posthog-js: token and distinct_id inside properties, an offset instead of a timestamp.
    event = {
        "event": "$pageview",
        "properties": {"token": "phc_js", "distinct_id": "anon-1", "$current_url": "http://x/"},
        "offset": 1500,
    }
    preflight = requests.options(
        server.url + "/e/",
        headers={"Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST"},
        timeout=10,
    )
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    response = requests.post(
        server.url + "/e/",
        params={"compression": "gzip-js", "ip": "1"},
        data=gzip.compress(json.dumps([event]).encode()),
        headers={"Origin": "http://localhost:3000", "Content-Type": "text/plain"},
        timeout=10,
    )
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    flags = requests.post(server.url + "/flags/?v=2", json={"token": "phc_js"}, timeout=10)
    assert flags.status_code == 200 and flags.json()["featureFlags"] == {}
    config = requests.get(server.url + "/array/phc_js/config", timeout=10)
    assert config.status_code == 200 and config.json()["sessionRecording"] is False
    script = requests.get(server.url + "/array/%3C%2Fscript%3E/config.js", timeout=10)
    assert script.headers["Content-Type"].startswith("text/javascript")
    assert "_POSTHOG_REMOTE_CONFIG" in script.text and "</script>" not in script.text
    (got,) = stored(db_path)
    assert got["distinct_id"] == "anon-1" and got["properties"]["token"] == "phc_js"


def test_posthog_python_delivers_to_both_of_its_endpoints(server, db_path, server_log):
    posthog = pytest.importorskip("posthog")
    ph = posthog.Posthog("phc_python", host=server.url, gzip=True, max_retries=0)
    try:
        # capture_ai() posts to PostHog's dedicated AI endpoint, /i/v0/ai/batch/.
        ph.capture_ai(
            "$ai_generation",
            distinct_id="py-user",
            properties={"$ai_trace_id": "py-trace", "$ai_model": "gpt-4o", "$ai_input_tokens": 7},
        )
        ph.capture("signed_up", distinct_id="py-user", properties={"plan": "free"})
        ph.flush()
    finally:
        ph.shutdown()
    got = {e["event"]: e for e in stored(db_path)}
    assert set(got) == {"$ai_generation", "signed_up"}
    assert got["$ai_generation"]["properties"]["$ai_model"] == "gpt-4o"
    assert got["signed_up"]["distinct_id"] == "py-user"
    assert any("/i/v0/ai/batch" in line and "stored 1 event" in line for line in server_log)
    assert any(line.startswith("POST /batch -> 200") for line in server_log)


def test_our_client_delivers_and_never_adds_cost(server, db_path):
    client = Client(api_key="phc_ours", host=server.url, flush_interval=0.05)
    client.capture(
        "$ai_generation",
        distinct_id="me",
        properties={
            "$ai_trace_id": "ours",
            "$ai_model": "gpt-4o",
            "$ai_input_tokens": 1000,
            "$ai_output_tokens": 100,
        },
    )
    assert client.flush(10)
    client.shutdown(5)
    (event,) = stored(db_path)
    assert not [k for k in event["properties"] if "cost" in k]
    trace = requests.get(server.url + "/api/traces/ours", timeout=10).json()
    generation = trace["nodes"][1]
    # Shown as an estimate in the viewer only: 1000 × $2.50/1M + 100 × $10/1M.
    assert generation["cost"]["source"] == "estimate"
    assert generation["cost"]["total_cost_usd"] == pytest.approx(0.0035)


def test_retried_batches_are_stored_once(server, db_path):
    event = _event("once") | {"uuid": "0b8e5f7c-1111-4a4a-9c9c-000000000001"}
    for _ in range(3):
        assert requests.post(server.url + "/batch/", json={"batch": [event]}, timeout=10).ok
    assert len(stored(db_path)) == 1


def test_concurrent_senders_all_land(server, db_path):
    def send(worker: int) -> None:
        with requests.Session() as session:
            for i in range(10):
                batch = [_event(f"w{worker}", i * 10 + j) for j in range(10)]
                assert session.post(server.url + "/batch/", json={"batch": batch}, timeout=10).ok

    threads = [threading.Thread(target=send, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(stored(db_path)) == 600


def test_odd_values_are_stored_with_the_rest_of_their_batch(server, db_path):
    # A trace id that is not a string, and counts no column can hold: SQLite refused them, and
    # the whole batch was lost with a 500.
    odd = [
        _event("object id") | {"properties": {"$ai_trace_id": {"a": 1}}},
        _event("list id") | {"properties": {"$ai_trace_id": [1, 2]}},
        _event("huge") | {"properties": {"$ai_trace_id": "t", "$ai_input_tokens": 10**30}},
        _event("huger") | {"properties": {"$ai_trace_id": "t", "$ai_output_tokens": 10**400}},
    ]
    batch = [_event("good", i) for i in range(5)] + odd
    response = requests.post(server.url + "/batch/", json={"batch": batch}, timeout=10)
    assert response.status_code == 200, response.text
    events = stored(db_path)
    assert len(events) == 9
    with EventStore(db_path) as store:
        assert {t.trace_id for t in store.traces()} >= {'{"a":1}', "[1,2]", "t"}


def test_sums_past_a_float_are_valid_json_for_the_viewer(server, db_path):
    # Two costs of 1e308 add up to infinity, which JSON (and the viewer's JSON.parse) has not.
    batch = [
        _event("$ai_generation", i)
        | {"properties": {"$ai_trace_id": "t", "$ai_total_cost_usd": 1e308, "$ai_model": "m"}}
        for i in range(2)
    ]
    assert requests.post(server.url + "/batch/", json={"batch": batch}, timeout=10).ok

    def refuse(constant: str) -> None:
        raise AssertionError(f"not JSON: {constant}")

    for path in ("/api/traces", "/api/traces/t", "/api/stats"):
        text = requests.get(server.url + path, timeout=10).text
        json.loads(text, parse_constant=refuse)


def test_our_client_stores_odd_values_with_the_rest_of_their_batch(tmp_path):
    db = str(tmp_path / "odd.db")
    client = Client(db=db)
    for i in range(5):
        client.capture("$ai_generation", distinct_id="u", properties={"$ai_trace_id": f"t{i}"})
    client.capture("$ai_generation", distinct_id="u", properties={"$ai_trace_id": {"a": 1}})
    client.capture("$ai_span", distinct_id="u", properties={"$ai_input_tokens": 10**30})
    assert client.flush(10) is True
    stats = client.stats()
    client.shutdown()
    assert stats["failed"] == 0
    assert len(stored(db)) == 7


# -- refusals ----------------------------------------------------------------------------------

BAD_BODIES = {
    "not json": (b"{not json", "not valid JSON"),
    "empty": (b"", "empty body"),
    "no event name": (
        json.dumps({"properties": {"distinct_id": "u"}}).encode(),
        "expected an event",
    ),
    "blank event name": (json.dumps([{"event": "", "distinct_id": "u"}]).encode(), "no name"),
    "no distinct id": (json.dumps({"event": "x", "properties": {}}).encode(), "distinct_id"),
    "properties not object": (
        json.dumps({"event": "x", "distinct_id": "u", "properties": [1]}).encode(),
        "'properties' must be a JSON object",
    ),
    "batch not list": (json.dumps({"batch": {"event": "x"}}).encode(), "'batch' must be a list"),
    "event not object": (json.dumps([1, 2]).encode(), "must be a JSON object"),
    "bad timestamp": (
        json.dumps({"event": "x", "distinct_id": "u", "timestamp": "yesterday"}).encode(),
        "unreadable timestamp",
    ),
    "broken gzip": (b"\x1f\x8b\x08\x00garbage", "compressed"),
    "scalar json": (b"42", "expected an event"),
}


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
def test_bad_bodies_get_a_400_with_a_message_and_the_server_keeps_running(server, db_path, case):
    body, message = BAD_BODIES[case]
    response = requests.post(server.url + "/batch/", data=body, timeout=10)
    assert response.status_code == 400
    assert message in response.json()["detail"]
    assert stored(db_path) == []
    ok = requests.post(server.url + "/batch/", json=[_event("after")], timeout=10)
    assert ok.status_code == 200


def test_a_bad_event_in_a_batch_rejects_the_whole_batch(server, db_path):
    batch = [_event("good"), {"event": "bad"}]
    response = requests.post(server.url + "/batch/", json={"batch": batch}, timeout=10)
    assert response.status_code == 400 and "bad: missing distinct_id" in response.json()["detail"]
    assert stored(db_path) == []


def test_unsupported_encoding_and_unknown_paths(server):
    response = requests.post(
        server.url + "/batch/", data=b"{}", headers={"Content-Encoding": "br"}, timeout=10
    )
    assert response.status_code == 400 and "Content-Encoding" in response.json()["detail"]
    assert requests.post(server.url + "/nope/", json={}, timeout=10).status_code == 404


def test_oversized_bodies_get_413_and_the_server_keeps_running(db_path):
    with start_server(db_path, max_body_bytes=4096) as server:
        big = json.dumps([_event("big") | {"properties": {"x": "a" * 10_000}}])
        response = requests.post(server.url + "/batch/", data=big, timeout=10)
        assert response.status_code == 413
        assert "4096 byte limit" in response.json()["detail"]
        # A small gzip body that inflates past the limit (a zip bomb) is refused as well.
        bomb = gzip.compress(b"[" + b" " * 1_000_000 + b"]")
        assert len(bomb) < 4096
        response = requests.post(
            server.url + "/batch/", data=bomb, headers={"Content-Encoding": "gzip"}, timeout=10
        )
        assert response.status_code == 413
        assert requests.post(server.url + "/batch/", json=[_event("ok")], timeout=10).ok
    assert [e["event"] for e in stored(db_path)] == ["ok"]


def test_a_body_sent_in_chunks_is_read_up_to_the_same_limit(db_path):
    def chunks(data: bytes, size: int = 1000):
        for i in range(0, len(data), size):
            yield data[i : i + size]  # a generator body: requests sends it chunked

    with start_server(db_path, max_body_bytes=4096) as server:
        small = json.dumps([_event("chunked")]).encode()
        response = requests.post(server.url + "/batch/", data=chunks(small, 7), timeout=10)
        assert response.status_code == 200, response.text
        big = json.dumps([_event("big") | {"properties": {"x": "a" * 10_000}}]).encode()
        response = requests.post(server.url + "/batch/", data=chunks(big), timeout=10)
        assert response.status_code == 413
        assert "4096 byte limit" in response.json()["detail"]
        assert requests.post(server.url + "/batch/", json=[_event("ok")], timeout=10).ok
        # A body whose end cannot be found (endless trailers) is refused, not misread.
        url = urllib.parse.urlsplit(server.url)
        body = json.dumps([_event("trailers")]).encode()
        request = (
            b"POST /batch/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
            + f"{len(body):x}\r\n".encode()
            + body
            + b"\r\n0\r\n"
            + b"X-Trailer: 1\r\n" * 150
            + b"\r\n"
        )
        with socket.create_connection((url.hostname, url.port), timeout=10) as conn:
            conn.sendall(request)
            status_line = conn.recv(100).split(b"\r\n", 1)[0]
        assert b" 400 " in status_line, status_line
    assert [e["event"] for e in stored(db_path)] == ["chunked", "ok"]


def test_a_configured_api_key_is_enforced(db_path):
    with start_server(db_path, api_key="phc_right") as server:
        wrong = requests.post(
            server.url + "/batch/",
            json={"api_key": "phc_wrong", "batch": [_event("w")]},
            timeout=10,
        )
        missing = requests.post(server.url + "/batch/", json=[_event("m")], timeout=10)
        assert wrong.status_code == 401 and missing.status_code == 401
        assert "api key" in wrong.json()["detail"]
        right = requests.post(
            server.url + "/batch/",
            json={"api_key": "phc_right", "batch": [_event("r")]},
            timeout=10,
        )
        js_style = requests.post(
            server.url + "/e/",
            data=_form([{"event": "j", "properties": {"token": "phc_right", "distinct_id": "u"}}]),
            timeout=10,
        )
        assert right.status_code == 200 and js_style.status_code == 200
        # Our Client sends the key it was given.
        client = Client(api_key="phc_right", host=server.url, flush_interval=0.05)
        client.capture("c", distinct_id="u")
        assert client.flush(10)
        client.shutdown(5)
    assert sorted(e["event"] for e in stored(db_path)) == ["c", "j", "r"]


# -- the pieces, directly ------------------------------------------------------------------------


def test_decode_body_variants():
    payload = {"event": "e", "properties": {"text": "héllo +/="}}
    raw = json.dumps(payload).encode()
    b64 = base64.b64encode(raw).decode()
    assert decode_body(raw) == payload
    assert decode_body(gzip.compress(raw)) == payload
    assert decode_body(("data=" + urllib.parse.quote(b64)).encode()) == payload
    # A form body posted without URL-encoding turns '+' into ' '; still decoded.
    assert decode_body(("data=" + b64).encode()) == payload
    assert decode_body(b64.encode(), query={"compression": "base64"}) == payload
    # `curl -d '{...}'` without a Content-Type header labels JSON as a form.
    assert decode_body(raw, content_type="application/x-www-form-urlencoded") == payload
    with pytest.raises(BadRequest) as info:
        decode_body(b"foo=bar", content_type="application/x-www-form-urlencoded")
    assert "no data= field" in str(info.value)


def test_normalize_event_fills_in_and_converts():
    event = normalize_event(
        {"event": "x", "$distinct_id": 42, "timestamp": 1738238400000, "$set": {"plan": "pro"}}
    )
    assert event["distinct_id"] == "42"
    assert event["timestamp"] == "2025-01-30T12:00:00+00:00"
    assert event["properties"]["$set"] == {"plan": "pro"}
    offset = normalize_event(
        {"event": "x", "distinct_id": "u", "timestamp": "2025-01-30T13:00:00+01:00"}
    )
    assert offset["timestamp"] == "2025-01-30T12:00:00+00:00"
    fraction = normalize_event(
        {"event": "x", "distinct_id": "u", "timestamp": "2025-01-30T12:00:00.5Z"}
    )
    assert fraction["timestamp"] == "2025-01-30T12:00:00.500000+00:00"
