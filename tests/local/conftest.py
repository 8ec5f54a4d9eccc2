"""Fixtures for the collector and viewer: a server on a free loopback port, and a store with traces."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from posthog_llm import (
    EMBEDDING,
    GENERATION,
    SPAN,
    TRACE,
    Client,
    embedding_properties,
    generation_properties,
    span_properties,
    trace_properties,
)
from posthog_llm.local.server import ServerHandle, start_server

XSS = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'


@pytest.fixture
def db_path(tmp_path) -> str:
    return str(tmp_path / "events.db")


@pytest.fixture
def server_log() -> list[str]:
    return []


@pytest.fixture
def server(db_path: str, server_log: list[str]) -> Iterator[ServerHandle]:
    handle = start_server(db_path, log=server_log.append)
    yield handle
    handle.close()


def send_sample_traces(host: str) -> dict[str, str]:
    """Three traces through our own Client over HTTP: a chat with retrieval, an error, hostile text."""
    client = Client(api_key="phc_local_test", host=host, flush_interval=0.05)
    t0 = time.time() - 60
    chat, err, xss = "trace-chat-1", "trace-error-2", "trace-xss-3"

    def capture(event: str, props: dict, end: float, distinct_id: str = "user_42") -> None:
        client.capture(event, distinct_id=distinct_id, properties=props, timestamp=t0 + end)

    capture(
        EMBEDDING,
        embedding_properties(
            trace_id=chat,
            span_id="emb-1",
            parent_id="span-retrieve",
            span_name="OpenAIEmbeddings",
            model="text-embedding-3-small",
            provider="openai",
            input=["how do hedgehogs sleep?"],
            input_tokens=12,
            latency=0.05,
        ),
        0.20,
    )
    capture(
        SPAN,
        span_properties(
            trace_id=chat,
            span_id="span-retrieve",
            parent_id=chat,
            span_name="retrieve",
            input_state={"query": "how do hedgehogs sleep?"},
            output_state={"documents": ["Hedgehogs hibernate in winter."]},
            latency=0.2,
        ),
        0.25,
    )
    capture(
        GENERATION,
        generation_properties(
            trace_id=chat,
            span_id="gen-1",
            parent_id=chat,
            span_name="ChatOpenAI",
            model="gpt-4o-mini-2024-07-18",
            provider="openai",
            input=[
                {"role": "system", "content": "You answer questions about hedgehogs."},
                {"role": "user", "content": "How do hedgehogs sleep?"},
            ],
            output_choices=[
                {"role": "assistant", "content": "Curled up in a ball, and they hibernate."},
                {
                    "type": "function",
                    "id": "call_1",
                    "function": {"name": "lookup", "arguments": '{"animal": "hedgehog"}'},
                },
            ],
            input_tokens=120,
            output_tokens=40,
            latency=0.8,
            model_parameters={"temperature": 0.2},
        ),
        1.15,
    )
    capture(
        TRACE,
        trace_properties(
            trace_id=chat,
            span_name="support-chat",
            input_state={"question": "How do hedgehogs sleep?"},
            output_state={"answer": "Curled up in a ball, and they hibernate."},
            latency=1.2,
        ),
        1.2,
    )
    capture(
        GENERATION,
        generation_properties(
            trace_id=err,
            span_name="ChatAnthropic",
            model="claude-3-5-sonnet-20241022",
            provider="anthropic",
            input=[{"role": "user", "content": "hello"}],
            latency=0.3,
            error="RateLimitError: slow down",
            http_status=429,
        ),
        5.0,
        distinct_id="user_7",
    )
    capture(
        GENERATION,
        generation_properties(
            trace_id=xss,
            span_name=XSS,
            model="gpt-4o",
            provider="openai",
            input=[{"role": "user", "content": XSS}],
            output_choices=[{"role": "assistant", "content": XSS}],
            input_tokens=5,
            output_tokens=5,
            latency=0.1,
        ),
        10.0,
        distinct_id=XSS,
    )
    assert client.flush(10), client.stats()
    client.shutdown(5)
    return {"chat": chat, "error": err, "xss": xss}


@pytest.fixture
def sample_traces(server: ServerHandle) -> dict[str, str]:
    return send_sample_traces(server.url)
