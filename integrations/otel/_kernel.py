"""What the OpenTelemetry integration takes from the core: the kernel integration API only."""

from __future__ import annotations

from posthog_llm.instrumentation import (
    EMBEDDING,
    EMPTY_SCOPE,
    GENERATION,
    SPAN,
    TRACE,
    Emitter,
    Scope,
    capture_internal_exceptions,
    current_observation,
    current_scope,
    embedding_properties,
    error_text,
    generation_properties,
    make_scope,
    provider_name,
    report_internal_error,
    span_properties,
    trace_properties,
    whole_number,
)

__all__ = [
    "EMPTY_SCOPE",
    "EMBEDDING",
    "GENERATION",
    "SPAN",
    "TRACE",
    "Emitter",
    "Scope",
    "capture_internal_exceptions",
    "current_observation",
    "current_scope",
    "embedding_properties",
    "error_text",
    "generation_properties",
    "make_scope",
    "provider_name",
    "report_internal_error",
    "span_properties",
    "trace_properties",
    "whole_number",
]
