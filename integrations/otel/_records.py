"""One finished span as plain facts, whether it came from the SDK or over OTLP.

The conversion reads only `SpanRecord`s, so `PostHogSpanProcessor` and `posthog-llm serve`'s
OTLP receiver turn the same span into the same events. No OpenTelemetry import here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SpanEvent", "SpanRecord", "record_from_sdk_span", "AI_PREFIXES", "is_ai_span"]

# A span is AI work when a name or attribute key has one of these prefixes (GenAI semantic
# conventions, OpenInference, Vercel AI SDK, OpenLLMetry), as PostHog's own exporter decides.
AI_PREFIXES = ("gen_ai.", "llm.", "ai.", "traceloop.", "openinference.")


@dataclass(slots=True)
class SpanEvent:
    name: str
    attributes: Mapping[str, Any]
    time_ns: int = 0


@dataclass(slots=True)
class SpanRecord:
    """A finished span: hex ids (32/16 digits), nanosecond times, plain attribute values."""

    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    start_ns: int
    end_ns: int
    attributes: Mapping[str, Any]
    events: Sequence[SpanEvent] = ()
    is_error: bool = False
    status_message: str | None = None
    parent_remote: bool = False
    resource: Mapping[str, Any] = field(default_factory=dict)

    @property
    def latency(self) -> float | None:
        if not self.start_ns or not self.end_ns:
            return None
        return max(0, self.end_ns - self.start_ns) / 1e9


def is_ai_span(name: str, attributes: Mapping[str, Any] | None) -> bool:
    """The check every span pays: a name or attribute key with an AI prefix."""
    if name.startswith(AI_PREFIXES):
        return True
    if attributes:
        for key in attributes:
            if key.startswith(AI_PREFIXES):
                return True
    return False


def record_from_sdk_span(span: Any) -> SpanRecord:
    """A `SpanRecord` from an ended `opentelemetry.sdk.trace.ReadableSpan`."""
    ctx = span.context
    parent = span.parent
    status = span.status
    resource = getattr(span, "resource", None)
    return SpanRecord(
        trace_id=format(ctx.trace_id, "032x"),
        span_id=format(ctx.span_id, "016x"),
        parent_id=format(parent.span_id, "016x") if parent is not None else None,
        parent_remote=bool(parent is not None and parent.is_remote),
        name=span.name or "",
        start_ns=span.start_time or 0,
        end_ns=span.end_time or 0,
        attributes=span.attributes or {},
        events=tuple(
            SpanEvent(e.name, e.attributes or {}, e.timestamp or 0) for e in span.events or ()
        ),
        is_error=status is not None and status.status_code.name == "ERROR",
        status_message=status.description if status is not None else None,
        resource=resource.attributes if resource is not None else {},
    )
