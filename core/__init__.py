"""posthog-llm: LLM observability for Python, as PostHog `$ai_*` events.

>>> import posthog_llm
>>> client = posthog_llm.Client()          # PostHog with POSTHOG_API_KEY, else the local store
>>> with posthog_llm.context(distinct_id="user_123"):
...     with posthog_llm.span("answer"):   # one trace for everything inside
...         pass                           # LangChain / LlamaIndex / OpenAI calls in here
"""

from __future__ import annotations

from ._client import DEFAULT_HOST, Client, get_client, set_client
from ._context import Scope, context, current_scope
from ._emit import Emitter, capture_internal_exceptions
from ._events import (
    EMBEDDING,
    GENERATION,
    SPAN,
    TRACE,
    embedding_properties,
    generation_properties,
    span_properties,
    trace_properties,
)
from ._feedback import capture_feedback, capture_metric
from ._serialize import to_json_safe
from ._spans import Span, observe, span
from ._store import EventStore, Trace, TraceSummary
from ._version import __version__
from .destinations import (
    Destination,
    InMemoryDestination,
    PostHogHTTPDestination,
    SQLiteDestination,
)

# What users call. Integration plumbing (Emitter, Scope, capture_internal_exceptions, ...) lives in
# `posthog_llm.instrumentation`; the names stay importable here for existing code.
__all__ = [
    "__version__",
    "Client",
    "get_client",
    "set_client",
    "DEFAULT_HOST",
    "context",
    "span",
    "Span",
    "observe",
    "capture_feedback",
    "capture_metric",
    "GENERATION",
    "EMBEDDING",
    "SPAN",
    "TRACE",
    "generation_properties",
    "embedding_properties",
    "span_properties",
    "trace_properties",
    "EventStore",
    "Trace",
    "TraceSummary",
    "Destination",
    "InMemoryDestination",
    "PostHogHTTPDestination",
    "SQLiteDestination",
]

_ = (Scope, current_scope, Emitter, capture_internal_exceptions, to_json_safe)
