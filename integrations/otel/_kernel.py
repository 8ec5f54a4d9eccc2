"""What the OpenTelemetry integration takes from the core: the kernel integration API only.

The conversion itself (span records, the GenAI, OpenInference, OpenLLMetry and Vercel AI SDK
conventions, a trace's plan) is the core's: `posthog-llm serve` turns OTLP into the same events.
"""

from __future__ import annotations

from posthog_llm.instrumentation import (
    AI_PREFIXES,
    EMPTY_SCOPE,
    IDENTITY_KEYS,
    PRIVACY_ATTRIBUTE,
    Emitter,
    Scope,
    SpanRecord,
    asks_privacy,
    attributes_of,
    capture_internal_exceptions,
    current_observation,
    current_scope,
    distinct_id_of,
    first_of,
    is_ai_span,
    make_scope,
    model_call_reported,
    outside_span,
    plan_trace,
    privacy_requested,
    record_from_sdk_span,
    register_outside_tracer,
    report_internal_error,
    session_id_of,
    span_event,
    trace_event,
    with_trace_id,
)

__all__ = [
    "AI_PREFIXES",
    "EMPTY_SCOPE",
    "IDENTITY_KEYS",
    "PRIVACY_ATTRIBUTE",
    "asks_privacy",
    "attributes_of",
    "Emitter",
    "Scope",
    "SpanRecord",
    "capture_internal_exceptions",
    "current_observation",
    "model_call_reported",
    "outside_span",
    "register_outside_tracer",
    "with_trace_id",
    "current_scope",
    "distinct_id_of",
    "first_of",
    "is_ai_span",
    "make_scope",
    "plan_trace",
    "privacy_requested",
    "record_from_sdk_span",
    "report_internal_error",
    "session_id_of",
    "span_event",
    "trace_event",
]
