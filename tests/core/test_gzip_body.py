"""Request bodies: one copy of the events, gzipped by ISA-L when installed, else by zlib."""

from __future__ import annotations

import gzip
import json
import zlib

import pytest
from posthog_llm import Client
from posthog_llm.destinations import posthog_http
from posthog_llm.destinations.posthog_http import PostHogHTTPDestination, gzip_body


@pytest.fixture(params=["installed", "zlib"])
def compressor(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The compressor the destination found, and the stdlib fallback without `isal`."""
    if request.param == "zlib":
        monkeypatch.setattr(posthog_http, "_deflate", zlib)
    return str(request.param)


@pytest.mark.parametrize("count", [0, 1, 3])
def test_the_body_is_the_batch_envelope(count: int) -> None:
    events = [json.dumps({"event": "e", "i": i}).encode() for i in range(count)]
    body = json.loads(PostHogHTTPDestination("phc_key", "http://localhost:1").body(events))
    assert body["api_key"] == "phc_key"
    assert body["batch"] == [{"event": "e", "i": i} for i in range(count)]
    assert body["sent_at"].endswith("+00:00")


def test_gzip_body_is_gzip_that_the_stdlib_reads(compressor: str) -> None:
    text = " ".join(f"word{i % 997}" for i in range(60_000)).encode()
    packed = gzip_body(text)
    assert packed[:2] == b"\x1f\x8b"  # the gzip magic: the container PostHog accepts
    assert gzip.decompress(packed) == text
    assert len(packed) < len(text) // 3


def test_a_large_prompt_arrives_whole_with_either_compressor(
    posthog_server, compressor: str
) -> None:
    prompt = " ".join(f"w{(i * 7919) % 5003}" for i in range(40_000))
    client = Client(api_key="phc_test", host=posthog_server.host, flush_interval=0.05)
    client.capture("$ai_generation", distinct_id="u", properties={"$ai_input": prompt})
    assert client.flush(10)
    assert posthog_server.requests[0]["headers"].get("Content-Encoding") == "gzip"
    assert posthog_server.events[0]["properties"]["$ai_input"] == prompt
    client.shutdown(2)
