"""`posthog-llm serve` receives OTLP/HTTP traces (protobuf and JSON) and stores `$ai_*` events."""

from __future__ import annotations

import base64
import gzip
import json
import time
from typing import Any

import pytest
import requests

pytest.importorskip("opentelemetry.proto")
pytest.importorskip("opentelemetry.exporter.otlp.proto.http")

from google.protobuf import json_format  # noqa: E402
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans  # noqa: E402
from opentelemetry.exporter.otlp.proto.http import Compression  # noqa: E402
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)
from opentelemetry.trace import set_span_in_context  # noqa: E402
from posthog_llm import EventStore  # noqa: E402
from posthog_llm.local.server import start_server  # noqa: E402

CHAT = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o-mini",
    "gen_ai.usage.input_tokens": 12,
    "gen_ai.usage.output_tokens": 4,
    "gen_ai.input.messages": json.dumps(
        [{"role": "user", "parts": [{"type": "text", "content": "Weather in Paris?"}]}]
    ),
}


@pytest.fixture
def server(db_path, server_log):
    """The collector, holding a trace whose root has not come for 0.3 s (10 s by default)."""
    handle = start_server(db_path, log=server_log.append, otlp_hold_seconds=0.3)
    yield handle
    handle.close()


def stored_when_ready(db_path: str, count: int, timeout: float = 10.0) -> list[dict]:
    """The store's events once there are `count` of them (held traces are stored later)."""
    deadline = time.monotonic() + timeout
    while True:
        events = stored(db_path)
        if len(events) >= count or time.monotonic() > deadline:
            return events
        time.sleep(0.05)


def post_spans(url: str, spans: Any) -> requests.Response:
    """One OTLP protobuf export of `spans` to the collector at `url`, answered 200."""
    response = requests.post(
        url + "/v1/traces",
        data=encode_spans(spans).SerializeToString(),
        headers={"Content-Type": "application/x-protobuf"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response


def run_agent(provider: TracerProvider, **extra: object) -> None:
    """An HTTP request with an agent, a chat call, a tool and a DB query inside."""
    tracer = provider.get_tracer("tests")
    with tracer.start_as_current_span("POST /ask", attributes={"http.method": "POST", **extra}):
        with tracer.start_as_current_span(
            "invoke_agent Weather",
            attributes={"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "Weather"},
        ):
            with tracer.start_as_current_span("chat gpt-4o-mini", attributes=CHAT):
                pass
            with tracer.start_as_current_span(
                "execute_tool get_weather",
                attributes={
                    "gen_ai.operation.name": "execute_tool",
                    "gen_ai.tool.name": "get_weather",
                    "gen_ai.tool.call.arguments": '{"city": "Paris"}',
                },
            ):
                pass
        with tracer.start_as_current_span("INSERT log", attributes={"db.system": "sqlite"}):
            pass


def stored(db_path: str) -> list[dict]:
    with EventStore(db_path) as store:
        return store.events()


def shape(events: list[dict]) -> list[tuple]:
    """What the conversion decided, without ids and times (for comparing two transports)."""
    keep = ("$ai_span_name", "$ai_model", "$ai_input_tokens", "$ai_input", "$ai_input_state")
    return sorted(
        (e["event"], tuple(json.dumps(e["properties"].get(k)) for k in keep)) for e in events
    )


def check_agent_trace(events: list[dict]) -> None:
    assert sorted(e["event"] for e in events) == [
        "$ai_generation",
        "$ai_span",
        "$ai_span",
        "$ai_trace",
    ]
    by_event = {e["event"]: e["properties"] for e in events}
    trace = by_event["$ai_trace"]
    assert trace["$ai_span_name"] == "POST /ask"
    assert len(trace["$ai_trace_id"]) == 32
    assert {e["properties"]["$ai_trace_id"] for e in events} == {trace["$ai_trace_id"]}
    gen = by_event["$ai_generation"]
    assert (gen["$ai_model"], gen["$ai_input_tokens"], gen["$ai_output_tokens"]) == (
        "gpt-4o-mini",
        12,
        4,
    )
    assert gen["$ai_input"] == [{"role": "user", "content": "Weather in Paris?"}]
    names = {e["properties"]["$ai_span_name"] for e in events if e["event"] == "$ai_span"}
    assert names == {"Weather", "get_weather"}


def test_an_otlp_protobuf_exporter_fills_the_store_and_the_viewer(server, db_path):
    provider = TracerProvider()
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=server.url + "/v1/traces"))
    )
    run_agent(provider)
    assert provider.force_flush(10_000)
    provider.shutdown()
    events = stored(db_path)
    check_agent_trace(events)
    trace_id = events[0]["properties"]["$ai_trace_id"]
    assert {e["distinct_id"] for e in events} == {trace_id}  # personless, one id per trace
    listed = requests.get(server.url + "/api/traces", timeout=10).json()["traces"]
    assert [t["trace_id"] for t in listed] == [trace_id]
    detail = requests.get(f"{server.url}/api/traces/{trace_id}", timeout=10)
    assert detail.status_code == 200
    assert "get_weather" in detail.text


def test_otlp_json_goes_through_the_same_conversion(server, db_path, tmp_path):
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    run_agent(provider)
    spans = memory.get_finished_spans()

    payload = json_format.MessageToDict(encode_spans(spans))
    # OTLP/JSON spells ids in hex where protobuf's JSON mapping uses base64.
    for resource_spans in payload["resourceSpans"]:
        for scope_spans in resource_spans["scopeSpans"]:
            for span in scope_spans["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()
    response = requests.post(server.url + "/v1/traces", json=payload, timeout=10)
    assert response.status_code == 200, response.text
    assert response.json() == {}
    from_json = stored(db_path)
    check_agent_trace(from_json)

    other = start_server(str(tmp_path / "protobuf.db"))
    try:
        response = post_spans(other.url, spans)
        assert response.headers["Content-Type"] == "application/x-protobuf"
    finally:
        other.close()
    assert shape(stored(str(tmp_path / "protobuf.db"))) == shape(from_json)


@pytest.mark.parametrize("compression", [Compression.Gzip, Compression.Deflate])
def test_compressed_exports_at_posthogs_otel_path(server, db_path, compression):
    provider = TracerProvider()
    exporter = OTLPSpanExporter(endpoint=server.url + "/i/v0/ai/otel", compression=compression)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    run_agent(provider, **{"posthog.distinct_id": "user_otlp", "session.id": "s-9"})
    assert provider.force_flush(10_000)
    provider.shutdown()
    events = stored(db_path)
    check_agent_trace(events)
    assert {e["distinct_id"] for e in events} == {"user_otlp"}
    assert {e["properties"]["$ai_session_id"] for e in events} == {"s-9"}


def test_posthog_pythons_own_otel_processor_fills_the_local_store(server, db_path):
    otel = pytest.importorskip("posthog.ai.otel")
    provider = TracerProvider()
    processor = otel.PostHogSpanProcessor(api_key="phc_local_test", host=server.url)
    provider.add_span_processor(processor)
    run_agent(provider)
    assert processor.force_flush(10_000)
    provider.shutdown()
    # posthog-python sends only AI spans: the HTTP root never comes. Once the hold is over the
    # trace is stored with a stand-in root named after its top-level span, so it has its
    # `$ai_trace` and every parent id names an event of the trace.
    events = stored_when_ready(db_path, 4)
    assert sorted(e["event"] for e in events) == [
        "$ai_generation",
        "$ai_span",
        "$ai_span",
        "$ai_trace",
    ]
    assert len({e["properties"]["$ai_trace_id"] for e in events}) == 1
    trace_id = events[0]["properties"]["$ai_trace_id"]
    (trace,) = [e["properties"] for e in events if e["event"] == "$ai_trace"]
    assert trace["$ai_span_name"] == "invoke_agent Weather"
    ids = {trace_id} | {e["properties"].get("$ai_span_id") for e in events}
    assert all(e["properties"]["$ai_parent_id"] in ids for e in events if e["event"] != "$ai_trace")
    listed = requests.get(server.url + "/api/traces", timeout=10).json()["traces"]
    assert [t["trace_id"] for t in listed] == [trace_id]


def test_privacy_attribute_and_secret_scrubbing(server, db_path):
    provider = TracerProvider()
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=server.url + "/v1/traces"))
    )
    tracer = provider.get_tracer("tests")
    with pytest.raises(RuntimeError):
        with tracer.start_as_current_span("chat", attributes=CHAT):
            raise RuntimeError("upstream refused Bearer sk-proj-abcdefghijklmnopqrstuvwx")
    with pytest.raises(RuntimeError):
        with tracer.start_as_current_span(
            "chat", attributes={**CHAT, "posthog.privacy_mode": True}
        ):
            raise RuntimeError("the user asked about Paris")
    assert provider.force_flush(10_000)
    provider.shutdown()
    events = stored(db_path)
    generations = [e["properties"] for e in events if e["event"] == "$ai_generation"]
    scrubbed, private = sorted(generations, key=lambda p: "$ai_input" in p, reverse=True)
    assert scrubbed["$ai_error"].startswith("RuntimeError: upstream refused Bearer")
    assert "sk-proj" not in json.dumps(events)
    assert private["$ai_error"] == "RuntimeError"
    assert "$ai_input" not in private
    assert private["$ai_input_tokens"] == 12
    assert "Paris" not in json.dumps([e for e in events if e["properties"] is private])


@pytest.mark.parametrize(
    "value", [{"stringValue": "true"}, {"stringValue": "Yes"}, {"boolValue": True}]
)
def test_the_privacy_attribute_as_text_stores_the_trace_without_content(server, db_path, value):
    # What an exporter sends for OTEL_RESOURCE_ATTRIBUTES=posthog.privacy_mode=true: a string.
    trace_id, root, child = "ab" * 16, "01" * 8, "02" * 8
    now = time.time_ns()

    def text(key: str, content: str) -> dict:
        return {"key": key, "value": {"stringValue": content}}

    body = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [
                        text("service.name", "svc"),
                        {"key": "posthog.privacy_mode", "value": value},
                    ]
                },
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": trace_id,
                                "spanId": root,
                                "name": "agent",
                                "startTimeUnixNano": now,
                                "endTimeUnixNano": now + 10**7,
                                "attributes": [
                                    text("gen_ai.operation.name", "invoke_agent"),
                                    text("input.value", "secret task"),
                                ],
                            },
                            {
                                "traceId": trace_id,
                                "spanId": child,
                                "parentSpanId": root,
                                "name": "chat",
                                "startTimeUnixNano": now,
                                "endTimeUnixNano": now + 10**6,
                                "attributes": [
                                    text("gen_ai.operation.name", "chat"),
                                    text("gen_ai.request.model", "gpt-4o"),
                                    text("gen_ai.prompt.0.role", "user"),
                                    text("gen_ai.prompt.0.content", "secret question"),
                                ],
                            },
                        ]
                    }
                ],
            }
        ]
    }
    answer = requests.post(server.url + "/v1/traces", json=body, timeout=10)
    assert answer.status_code == 200, answer.text
    events = stored(db_path)
    assert sorted(e["event"] for e in events) == ["$ai_generation", "$ai_trace"]
    assert "secret" not in json.dumps(events)


def test_bad_requests_are_refused_clearly(server, db_path):
    url = server.url + "/v1/traces"
    garbage = requests.post(
        url, data=b"\xff\x00garbage", headers={"Content-Type": "application/x-protobuf"}, timeout=10
    )
    assert garbage.status_code == 400
    assert "protobuf" in garbage.json()["detail"]
    wrong_type = requests.post(url, data=b"x", headers={"Content-Type": "text/plain"}, timeout=10)
    assert wrong_type.status_code == 415
    bad_json = requests.post(url, json={"resourceSpans": "nope"}, timeout=10)
    assert bad_json.status_code == 400
    bad_id = requests.post(
        url,
        json={"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz", "spanId": "01"}]}]}]},
        timeout=10,
    )
    assert bad_id.status_code == 400
    assert requests.get(url, timeout=10).status_code == 405
    assert stored(db_path) == []


def test_a_collector_with_an_api_key_wants_it_on_otlp_too(db_path):
    with start_server(db_path, api_key="phc_right_key") as handle:
        memory = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(memory))
        run_agent(provider)
        body = encode_spans(memory.get_finished_spans()).SerializeToString()
        headers = {"Content-Type": "application/x-protobuf"}
        refused = requests.post(handle.url + "/v1/traces", data=body, headers=headers, timeout=10)
        assert refused.status_code == 401
        headers["Authorization"] = "Bearer phc_right_key"
        accepted = requests.post(handle.url + "/v1/traces", data=body, headers=headers, timeout=10)
        assert accepted.status_code == 200
    assert len(stored(db_path)) == 4


def test_a_trace_sent_over_several_requests_keeps_its_identity_and_gets_its_root(server, db_path):
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("tests")
    with tracer.start_as_current_span("POST /ask", attributes={"http.method": "POST"}):
        with tracer.start_as_current_span(
            "chat", attributes={**CHAT, "posthog.distinct_id": "user_split"}
        ):
            pass
    chat, root = memory.get_finished_spans()
    # The chat span first (a batch exporter sends what has ended), the request span later.
    for part in ([chat], [root]):
        post_spans(server.url, part)
    events = stored(db_path)
    assert sorted(e["event"] for e in events) == ["$ai_generation", "$ai_trace"]
    assert {e["distinct_id"] for e in events} == {"user_split"}
    trace = [e["properties"] for e in events if e["event"] == "$ai_trace"][0]
    assert trace["$ai_span_name"] == "POST /ask"


def _big_prompt_spans(prompt_bytes: int) -> Any:
    """One finished chat span whose prompt is `prompt_bytes` long (a RAG context)."""
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    prompt = "context " * (prompt_bytes // 8)
    attributes = CHAT | {
        "gen_ai.input.messages": json.dumps(
            [{"role": "user", "parts": [{"type": "text", "content": prompt}]}]
        )
    }
    with provider.get_tracer("app").start_as_current_span("chat gpt-4o", attributes=attributes):
        pass
    provider.shutdown()
    return memory.get_finished_spans()


def test_a_protobuf_body_well_under_the_body_limit_is_accepted(server, db_path):
    # 4.5 MB of a 20 MB limit: the budget's slot (48 MB for 12x the body) refused it with 413,
    # which OTLP exporters take as final (the trace was dropped).
    post_spans(server.url, _big_prompt_spans(4_500_000))
    (generation,) = [e for e in stored(db_path) if e["event"] == "$ai_generation"]
    assert len(generation["properties"]["$ai_input"][0]["content"]) >= 4_000_000


def test_a_protobuf_body_up_to_the_body_limit_is_accepted(db_path):
    # The budget is sized from the limit: a body of any size up to it can be decoded.
    with start_server(db_path, max_body_bytes=8_000_000) as server:
        spans = _big_prompt_spans(7_900_000)
        assert 7_900_000 < len(encode_spans(spans).SerializeToString()) <= 8_000_000
        post_spans(server.url, spans)
    assert [e["event"] for e in stored(db_path)].count("$ai_generation") == 1


@pytest.mark.parametrize("path", ["/v1/traces", "/i/v0/ai/otel"])
@pytest.mark.parametrize("content_type", ["application/json", "application/x-protobuf"])
def test_a_compression_bomb_is_refused_within_the_memory_budget(db_path, path, content_type):
    # 20 KB on the wire, 20 MB inflated: parsed and converted whole it took the collector from
    # 40 MB to 1.5 GB; the capture paths' budget now refuses it before it is parsed. The default
    # budget now affords decoding one body of the 20 MB limit (two at once), so this runs on a
    # collector with the budget this bomb was sized against.
    inflated = b'{"resourceSpans": [], "padding": "' + b"a" * 20_000_000 + b'"}'
    if content_type != "application/json":
        inflated = b"\x0a" + b"\x00" * 19_999_999
    with start_server(db_path, budget_bytes=96 * 1024 * 1024) as server:
        response = requests.post(
            server.url + path,
            data=gzip.compress(inflated, 9),
            headers={"Content-Type": content_type, "Content-Encoding": "gzip"},
            timeout=60,
        )
    assert response.status_code == 413, response.text
    assert "memory budget" in response.json()["detail"]
    assert stored(db_path) == []


def test_a_json_bomb_of_small_objects_is_refused_within_the_default_budget(server, db_path):
    # Under the body limit, but millions of objects: more than a request's share of the budget.
    inflated = b'{"resourceSpans": [' + b"{}," * 6_900_000 + b"{}]}"
    response = requests.post(
        server.url + "/v1/traces",
        data=gzip.compress(inflated, 9),
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        timeout=60,
    )
    assert response.status_code == 413, response.text
    assert "memory budget" in response.json()["detail"]
    assert stored(db_path) == []


def test_browser_pages_on_other_origins_may_not_post_traces(server, db_path):
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    run_agent(provider)
    body = encode_spans(memory.get_finished_spans()).SerializeToString()
    headers = {"Content-Type": "application/x-protobuf", "Origin": "https://evil.example"}
    refused = requests.post(server.url + "/v1/traces", data=body, headers=headers, timeout=10)
    assert refused.status_code == 403
    assert "evil.example" in refused.json()["detail"]
    assert stored(db_path) == []
    headers["Origin"] = "http://localhost:3000"  # a page on loopback, as on the capture paths
    accepted = requests.post(server.url + "/v1/traces", data=body, headers=headers, timeout=10)
    assert accepted.status_code == 200
    assert len(stored(db_path)) == 4


def test_a_span_nested_too_deep_to_parse_loses_no_event_of_the_request(server, db_path):
    provider = TracerProvider()
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=server.url + "/v1/traces"))
    )
    tracer = provider.get_tracer("tests")
    for deep in (False, True):
        with tracer.start_as_current_span(
            "invoke_agent A", attributes={"gen_ai.operation.name": "invoke_agent"}
        ):
            nested = {"gen_ai.input.messages": "[" * 3000 + "]" * 3000} if deep else {}
            with tracer.start_as_current_span("chat", attributes={**CHAT, **nested}):
                pass
    assert provider.force_flush(10_000)  # one request, both traces: answered 200
    provider.shutdown()
    assert sorted(e["event"] for e in stored(db_path)) == [
        "$ai_generation",
        "$ai_generation",
        "$ai_trace",
        "$ai_trace",
    ]


def _nested_attribute(depth: int) -> bytes:
    value = b'{"arrayValue": {"values": [' * depth + b'{"stringValue": "x"}' + b"]}}" * depth
    return (
        b'{"resourceSpans": [{"resource": {"attributes": [{"key": "k", "value": '
        + value
        + b"}]}}]}"
    )


@pytest.mark.parametrize(
    "body",
    [
        b'{"resourceSpans":' + b"[" * 100_000 + b"]" * 100_000 + b"}",  # too deep to parse
        _nested_attribute(400),  # parsed, too deep for the conversion to protobuf
    ],
    ids=["json", "protobuf"],
)
def test_json_nested_too_deeply_is_a_bad_request(server, db_path, body):
    answer = _post_json(server.url, body)
    assert answer.status_code == 400, answer.text
    assert "nested too deeply" in answer.json()["detail"]
    post_spans(server.url, [])  # the collector still answers
    assert stored(db_path) == []


@pytest.mark.parametrize("body", [b"null", b"1", b"[]", b'"x"'])
def test_json_that_is_not_an_object_is_a_bad_request(server, db_path, body):
    answer = _post_json(server.url, body)
    assert answer.status_code == 400
    assert "JSON object" in answer.json()["detail"]


def _post_json(url: str, body: bytes) -> requests.Response:
    """`body` as an OTLP/JSON export to the collector at `url`, whatever it answers."""
    return requests.post(
        url + "/v1/traces", data=body, headers={"Content-Type": "application/json"}, timeout=10
    )


def test_a_trace_whose_root_comes_later_is_converted_whole_with_the_roots_identity(server, db_path):
    # The identity is on the request span, which ends (and is exported) last; a DB query sits
    # between the agent and its model call.
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("tests")
    with tracer.start_as_current_span(
        "POST /ask", attributes={"user.id": "u-42", "gen_ai.conversation.id": "conv-1"}
    ):
        with tracer.start_as_current_span(
            "invoke_agent Weather", attributes={"gen_ai.operation.name": "invoke_agent"}
        ):
            with tracer.start_as_current_span("SELECT docs", attributes={"db.system": "sqlite"}):
                with tracer.start_as_current_span("chat", attributes=CHAT):
                    pass
    *steps, root = memory.get_finished_spans()
    for part in (steps, [root]):  # what a batch exporter does when the trace spans two batches
        post_spans(server.url, part)
    events = stored(db_path)
    assert sorted((e["event"], e["properties"].get("$ai_span_name")) for e in events) == [
        ("$ai_generation", "chat"),
        ("$ai_span", "SELECT docs"),
        ("$ai_span", "invoke_agent Weather"),
        ("$ai_trace", "POST /ask"),
    ]
    assert {e["distinct_id"] for e in events} == {"u-42"}
    assert {e["properties"].get("$ai_session_id") for e in events} == {"conv-1"}
    trace_id = events[0]["properties"]["$ai_trace_id"]
    (agent,) = [e for e in events if e["properties"].get("$ai_span_name") == "invoke_agent Weather"]
    assert agent["properties"]["$ai_parent_id"] == trace_id


def test_a_step_exported_before_the_ai_work_inside_it_is_kept_between_ai_spans(server, db_path):
    # A handler returns a stream: its span ends, and is exported, before the model call in it.
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("tests")
    with tracer.start_as_current_span(
        "invoke_agent Weather", attributes={"gen_ai.operation.name": "invoke_agent"}
    ):
        handler = tracer.start_span("handler")
        chat = tracer.start_span("chat", context=set_span_in_context(handler), attributes=CHAT)
        handler.end()
        chat.end()
    for span in memory.get_finished_spans():  # one request per span, in the order they ended
        post_spans(server.url, [span])
    events = {e["properties"]["$ai_span_name"]: e["properties"] for e in stored(db_path)}
    assert set(events) == {"invoke_agent Weather", "handler", "chat"}
    assert events["chat"]["$ai_parent_id"] == events["handler"]["$ai_span_id"]


def test_held_traces_are_stored_when_the_collector_stops(db_path):
    handle = start_server(db_path, otlp_hold_seconds=3600)
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with provider.get_tracer("tests").start_as_current_span("POST /ask"):
        with provider.get_tracer("tests").start_as_current_span("chat", attributes=CHAT):
            pass
    chat, _ = memory.get_finished_spans()
    post_spans(handle.url, [chat])
    assert stored(db_path) == []  # held: its root may still come
    handle.close()
    assert sorted(e["event"] for e in stored(db_path)) == ["$ai_generation", "$ai_trace"]


def test_a_root_after_the_hold_adds_no_second_trace_and_services_join_in_one(db_path):
    handle = start_server(db_path, otlp_hold_seconds=0.2)
    try:
        memory = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(memory))
        tracer = provider.get_tracer("tests")
        with tracer.start_as_current_span("POST /ask"):
            with tracer.start_as_current_span("chat", attributes=CHAT):
                pass
        chat, root = memory.get_finished_spans()
        post_spans(handle.url, [chat])
        stored_when_ready(db_path, 2)  # stored with a stand-in root once the hold is over
        post_spans(handle.url, [root])  # the real root, late
        time.sleep(0.3)
        assert [e["event"] for e in stored(db_path)].count("$ai_trace") == 1
    finally:
        handle.close()


def test_a_trace_across_two_services_is_one_tree_under_the_first_services_root(server, db_path):
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context

    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("service-a")
    with tracer.start_as_current_span("POST /ask") as root_span:
        with tracer.start_as_current_span("chat", attributes=CHAT) as chat_span:
            called_from = chat_span.get_span_context()
    # Service B gets the call with the trace context in its headers: its entry span's parent
    # is remote.
    remote = set_span_in_context(
        NonRecordingSpan(
            SpanContext(called_from.trace_id, called_from.span_id, True, TraceFlags(1))
        )
    )
    with tracer.start_as_current_span("POST /tool", context=remote):
        with tracer.start_as_current_span("chat b", attributes=CHAT):
            pass
    spans = {s.name: s for s in memory.get_finished_spans()}
    post_spans(server.url, [spans["chat"]])
    post_spans(server.url, [spans["chat b"], spans["POST /tool"]])
    post_spans(server.url, [spans["POST /ask"]])
    events = {e["properties"].get("$ai_span_name"): e for e in stored(db_path)}
    assert [e["event"] for e in events.values()].count("$ai_trace") == 1
    assert events["POST /ask"]["event"] == "$ai_trace"
    tool = events["POST /tool"]["properties"]
    assert tool["$ai_parent_id"] == format(called_from.span_id, "016x")
    assert root_span.get_span_context().trace_id == called_from.trace_id


@pytest.mark.parametrize("hold", ["0.3", "3600"])
def test_serve_otlp_hold_sets_how_long_a_rootless_trace_waits(db_path, hold):
    import os
    import re
    import signal
    import subprocess
    import sys

    env = dict(os.environ, PYTHONUNBUFFERED="1")
    command = [sys.executable, "-m", "posthog_llm", "serve", "--port", "0", "--db", db_path]
    proc = subprocess.Popen(
        [*command, "--otlp-hold", hold],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        match = re.search(r"collector on (http://127\.0\.0\.1:\d+)", proc.stdout.readline())
        assert match, proc.stderr.read()
        memory = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(memory))
        with provider.get_tracer("tests").start_as_current_span("POST /ask"):
            with provider.get_tracer("tests").start_as_current_span("chat", attributes=CHAT):
                pass
        chat, _root = memory.get_finished_spans()
        post_spans(match.group(1), [chat])  # the root is still to come (a slow call in it)
        found = stored_when_ready(db_path, 2, timeout=3.0)
        assert len(found) == (2 if hold == "0.3" else 0)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=20)


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--otlp-hold", "-1", "--otlp-hold must be seconds >= 0, got -1.0"),
        ("--max-body-mb", "-1", "--max-body-mb must be a size > 0, got -1.0"),
        ("--max-body-mb", "nan", "--max-body-mb must be a size > 0, got nan"),
    ],
)
def test_serve_names_the_flag_it_refuses(tmp_path, flag, value, message):
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "posthog_llm", "serve", "--port", "0", flag, value],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 1
    assert done.stderr.strip() == f"posthog-llm: error: {message}"
