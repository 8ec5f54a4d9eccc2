from __future__ import annotations

import requests
from posthog_llm.local.posthog_sink import PostHogSink


def test_the_loopback_sink_takes_otlp_protobuf_as_posthogs_ai_otel_endpoint_does():
    sink = PostHogSink(keep=False, count=True)
    try:
        response = requests.post(
            f"{sink.url}/i/v0/ai/otel",
            data=b"\x0a\x00",
            headers={"Content-Type": "application/x-protobuf"},
            timeout=10,
        )
        assert response.status_code == 200
        assert (sink.request_count, sink.bytes, sink.event_count) == (1, 2, 0)
        json_body = requests.post(f"{sink.url}/batch/", data=b"not json", timeout=10)
        assert json_body.status_code == 400  # a JSON route still refuses a bad body
    finally:
        sink.close()
