"""The integration API: everything an integration may import from the core, and nothing else.

Integrations import from here and from the public `posthog_llm` package only, never from the
private `posthog_llm._*` modules.
"""

from __future__ import annotations

from ._context import Scope, make_scope
from ._emit import Emitter, capture_internal_exceptions, report_internal_error
from ._events import (
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
    span_properties,
    trace_properties,
)

__all__ = [
    "Emitter",
    "capture_internal_exceptions",
    "report_internal_error",
    "Scope",
    "make_scope",
    "GENERATION",
    "EMBEDDING",
    "SPAN",
    "TRACE",
    "generation_properties",
    "embedding_properties",
    "span_properties",
    "trace_properties",
    "allowed_model_parameters",
    "clean_base_url",
    "provider_from_base_url",
    "http_status_of",
]

# -- provider drop-ins: the generic tracked SDK call and the one usage normaliser ---------------
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
    track_async_sdk_stream,
    track_iterator,
    track_sdk_stream,
)
from ._usage import Usage, normalize_usage  # noqa: E402

__all__ += [
    "POSTHOG_ARGUMENTS",
    "TrackedCall",
    "TrackedKind",
    "Tracker",
    "begin_call",
    "run_tracked",
    "run_tracked_async",
    "secrets_of",
    "track_iterator",
    "track_async_iterator",
    "track_sdk_stream",
    "track_async_sdk_stream",
    "Usage",
    "normalize_usage",
]
