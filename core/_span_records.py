"""One finished span as plain facts, whether it came from the SDK or over OTLP.

The conversion reads only `SpanRecord`s, so `PostHogSpanProcessor` and `posthog-llm serve`'s
OTLP receiver turn the same span into the same events. No OpenTelemetry import here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = [
    "SpanEvent",
    "SpanRecord",
    "record_from_sdk_span",
    "attributes_of",
    "AI_PREFIXES",
    "is_ai_span",
]

# A span is AI work when a name or attribute key has one of these prefixes (GenAI semantic
# conventions, OpenInference, Vercel AI SDK, OpenLLMetry), as PostHog's own exporter decides.
_STATUS_ERROR = 2  # StatusCode.ERROR, in the SDK and in OTLP
_NO_ATTRIBUTES: Mapping[str, Any] = MappingProxyType({})
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
    # Work posthog-llm reported itself ran inside this span (a provider drop-in's call, a user
    # span, a framework's trace): the span is a step of an AI trace whatever its attributes.
    reported_inside: bool = False
    # ... and that work was a model call: a model-call span around it is a wrapper, not a call.
    reported_call: bool = False

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


def attributes_of(item: Any) -> Mapping[str, Any] | None:
    """A span's or event's attributes, read without copying (the caller must not change them).

    The SDK's public view is a read-only proxy over `BoundedAttributes`, which takes a lock for
    every key read (~0.7 µs a key); its backing dict is used when it is there. An ended span's
    attributes no longer change.
    """
    backing = getattr(getattr(item, "_attributes", None), "_dict", None)
    if isinstance(backing, dict):
        return backing
    public: Mapping[str, Any] | None = item.attributes
    return public


def record_from_sdk_span(span: Any, trace_hex: str | None = None) -> SpanRecord:
    """A `SpanRecord` from an ended `opentelemetry.sdk.trace.ReadableSpan`.

    The record shares the span's attributes (an ended span's attributes no longer change) and
    takes `trace_hex`, the trace id in hex, when the caller already has it.
    """
    try:
        # The SDK's own fields, read directly: this runs on the caller's thread for every span
        # of an AI trace, and the public properties (one call each) cost twice as much.
        ctx = span._context
        parent = span._parent
        status = span._status
        resource = span._resource
        name = span._name
        start_ns = span._start_time
        end_ns = span._end_time
        # As for attributes: the public `events` copies a locked list; read its deque.
        events = getattr(span._events, "_dq", span._events)
    except AttributeError:  # another ReadableSpan: its public properties
        ctx = span.context
        parent = span.parent
        status = span.status
        resource = getattr(span, "resource", None)
        name = span.name
        start_ns = span.start_time
        end_ns = span.end_time
        events = getattr(getattr(span, "_events", None), "_dq", None)
        if events is None:
            events = span.events
    return SpanRecord(
        trace_hex or f"{ctx.trace_id:032x}",
        f"{ctx.span_id:016x}",
        f"{parent.span_id:016x}" if parent is not None else None,
        name or "",
        start_ns or 0,
        end_ns or 0,
        attributes_of(span) or _NO_ATTRIBUTES,
        tuple(
            SpanEvent(e.name, attributes_of(e) or _NO_ATTRIBUTES, e.timestamp or 0) for e in events
        )
        if events
        else (),
        status is not None and status.status_code.value == _STATUS_ERROR,
        status.description if status is not None else None,
        parent is not None and parent.is_remote,
        resource.attributes if resource is not None else _NO_ATTRIBUTES,
    )
