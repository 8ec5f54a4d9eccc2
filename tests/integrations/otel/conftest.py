"""Fixtures: a real OpenTelemetry SDK TracerProvider with PostHogSpanProcessor into memory."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from posthog_llm import Client  # noqa: E402
from posthog_llm.integrations.otel import PostHogSpanProcessor  # noqa: E402


@pytest.fixture
def provider(client: Client) -> Iterator[TracerProvider]:
    provider = TracerProvider()
    provider.add_span_processor(PostHogSpanProcessor(client))
    yield provider
    provider.shutdown()


@pytest.fixture
def tracer(provider: TracerProvider) -> Any:
    return provider.get_tracer("tests")


def messages(*items: tuple[str, str]) -> str:
    """GenAI semantic-conventions messages as the JSON text instrumentations put in attributes."""
    return json.dumps([{"role": r, "parts": [{"type": "text", "content": c}]} for r, c in items])


def hex_ids(span: Any) -> tuple[str, str]:
    """A span's trace id and span id as they appear in events."""
    ctx = span.get_span_context()
    return f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"
