"""The integration API: everything a framework integration may use from the core.

Integrations (ours and third parties') import from here and from `posthog_llm`, never from the
private `posthog_llm._*` modules, so the core can change inside without breaking them. The core
owns every policy that must be the same in every integration: identity and overrides (`Emitter`),
the open observation that joins work into one trace, error text, usage normalisation, and
"a fact that cannot be read drops the fact, not the event" (`safely`). A provider drop-in call
made inside a framework's generation is reported once, by that generation, which takes the
call's privacy, facts and `posthog_*` arguments from `Observation.deferred` (`DeferredCalls`).

>>> from posthog_llm.instrumentation import Emitter, current_observation
>>> emitter = Emitter(framework="my-framework")
>>> current_observation() is None
True
"""

from __future__ import annotations

from ._context import (
    EMPTY_SCOPE,
    Scope,
    current_scope,
    lenient_scope,
    make_scope,
    scope_opened_inside,
    with_trace_id,
)
from ._deferred import DeferredCalls, keep_deferred, read_deferred_calls
from ._emit import (
    Emitter,
    PropertiesOrBuilder,
    capture_internal_exceptions,
    check_client,
    report_internal_error,
    safely,
)
from ._errors import (
    detached_error,
    error_text,
    header_secrets,
    scrub_secrets,
    secrets_in,
    stopped_by_caller,
)
from ._events import (
    AI_EVENTS,
    CONTENT_PROPERTIES,
    EMBEDDING,
    GENERATION,
    SPAN,
    TRACE,
    allowed_model_parameters,
    clean_base_url,
    embedding_properties,
    generation_properties,
    http_status_of,
    provider_from_base_url,
    provider_name,
    span_properties,
    strip_content,
    trace_properties,
)
from ._observation import (
    GENERATION_KIND,
    OUTSIDE,
    SPAN_KIND,
    TRACE_KIND,
    UNKNOWN,
    Observation,
    activated,
    close_observation,
    current_observation,
    model_call_reported,
    nested_in,
    open_observation,
    outside_span,
    register_model_call_check,
    register_outside_tracer,
    register_resolver,
    report_to_trace,
)
from ._openai_format import (
    function_call,
    plain_item,
    responses_input_messages,
    responses_stop_reason,
)
from ._optional import require
from ._serialize import BASE64_PLACEHOLDER, TRUNCATION_MARKER, to_json_safe
from ._snapshot import snapshot

__all__ = [
    # shipping events
    "Emitter",
    "PropertiesOrBuilder",
    "check_client",
    "capture_internal_exceptions",
    "report_internal_error",
    "safely",
    "Scope",
    "EMPTY_SCOPE",
    "make_scope",
    "lenient_scope",
    "current_scope",
    "scope_opened_inside",
    "with_trace_id",
    "to_json_safe",
    "snapshot",
    "BASE64_PLACEHOLDER",
    "TRUNCATION_MARKER",
    "require",
    # event builders
    "GENERATION",
    "EMBEDDING",
    "SPAN",
    "TRACE",
    "AI_EVENTS",
    "CONTENT_PROPERTIES",
    "generation_properties",
    "embedding_properties",
    "span_properties",
    "trace_properties",
    "strip_content",
    "allowed_model_parameters",
    "clean_base_url",
    "provider_from_base_url",
    "provider_name",
    "http_status_of",
    # OpenAI's formats, for every route that meets them
    "function_call",
    "plain_item",
    "responses_input_messages",
    "responses_stop_reason",
    # policies
    "detached_error",
    "error_text",
    "stopped_by_caller",
    "header_secrets",
    "scrub_secrets",
    "secrets_in",
    # the open observation
    "Observation",
    "TRACE_KIND",
    "SPAN_KIND",
    "GENERATION_KIND",
    "current_observation",
    "model_call_reported",
    "nested_in",
    "open_observation",
    "close_observation",
    "report_to_trace",
    "activated",
    "register_resolver",
    "register_outside_tracer",
    "register_model_call_check",
    "outside_span",
    "UNKNOWN",
    "OUTSIDE",
    # model calls reported once: what a drop-in call hands the generation reporting it
    "DeferredCalls",
    "keep_deferred",
    "read_deferred_calls",
]

# -- provider drop-ins: the generic tracked SDK call and the one usage normaliser ---------------
from ._events import MODEL_PARAMETER_NAMES  # noqa: E402
from ._tracked import (  # noqa: E402
    POSTHOG_ARGUMENTS,
    TrackedCall,
    TrackedKind,
    Tracker,
    begin_call,
    run_tracked,
    run_tracked_async,
    secrets_of,
    track_async_iterator,
    track_async_sdk_response,
    track_async_sdk_stream,
    track_copies,
    track_iterator,
    track_sdk_response,
    track_sdk_stream,
)
from ._usage import (  # noqa: E402
    Usage,
    input_tokens_for,
    is_anthropic_model,
    modality_usage,
    normalize_usage,
    output_tokens_for,
    thinking_counted_apart,
    total_usage,
    whole_number,
)

__all__ += [
    "MODEL_PARAMETER_NAMES",
    "POSTHOG_ARGUMENTS",
    "TrackedCall",
    "TrackedKind",
    "Tracker",
    "begin_call",
    "run_tracked",
    "run_tracked_async",
    "secrets_of",
    "track_copies",
    "track_iterator",
    "track_async_iterator",
    "track_sdk_stream",
    "track_async_sdk_stream",
    "track_sdk_response",
    "track_async_sdk_response",
    "Usage",
    "normalize_usage",
    "modality_usage",
    "total_usage",
    "input_tokens_for",
    "output_tokens_for",
    "thinking_counted_apart",
    "is_anthropic_model",
    "whole_number",
]

# -- OpenTelemetry-style spans: one finished span as plain facts, and its `$ai_*` events ----------
# (the OpenTelemetry span processor and `posthog-llm serve`'s OTLP endpoint share them)
from ._span_assemble import TracePlan, plan_trace  # noqa: E402
from ._span_convert import (  # noqa: E402
    IDENTITY_KEYS,
    PRIVACY_ATTRIBUTE,
    asks_privacy,
    distinct_id_of,
    first_of,
    privacy_requested,
    session_id_of,
    span_event,
    trace_event,
)
from ._span_records import (  # noqa: E402
    AI_PREFIXES,
    SpanEvent,
    SpanRecord,
    attributes_of,
    is_ai_span,
    record_from_sdk_span,
)

__all__ += [
    "SpanRecord",
    "SpanEvent",
    "AI_PREFIXES",
    "attributes_of",
    "is_ai_span",
    "record_from_sdk_span",
    "TracePlan",
    "plan_trace",
    "span_event",
    "trace_event",
    "IDENTITY_KEYS",
    "distinct_id_of",
    "session_id_of",
    "first_of",
    "privacy_requested",
    "asks_privacy",
    "PRIVACY_ATTRIBUTE",
]
