"""What the OpenAI Agents integration takes from the core: the kernel integration API only."""

from __future__ import annotations

from posthog_llm.instrumentation import (
    GENERATION,
    GENERATION_KIND,
    SPAN,
    SPAN_KIND,
    TRACE,
    TRACE_KIND,
    Emitter,
    Scope,
    capture_internal_exceptions,
    close_observation,
    current_observation,
    error_text,
    generation_properties,
    http_status_of,
    make_scope,
    open_observation,
    provider_from_base_url,
    span_properties,
    trace_properties,
    whole_number,
)

__all__ = [
    "GENERATION",
    "GENERATION_KIND",
    "SPAN",
    "SPAN_KIND",
    "TRACE",
    "TRACE_KIND",
    "Emitter",
    "Scope",
    "capture_internal_exceptions",
    "close_observation",
    "current_observation",
    "error_text",
    "generation_properties",
    "http_status_of",
    "make_scope",
    "open_observation",
    "provider_from_base_url",
    "span_properties",
    "trace_properties",
    "whole_number",
]
