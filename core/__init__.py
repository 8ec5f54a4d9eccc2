"""posthog-llm: LLM observability for Python, as PostHog `$ai_*` events.

>>> import posthog_llm
>>> client = posthog_llm.Client()          # PostHog with POSTHOG_API_KEY, else the local store
>>> with posthog_llm.context(distinct_id="user_123"):
...     with posthog_llm.span("answer"):   # one trace for everything inside
...         pass                           # LangChain / LlamaIndex / OpenAI calls in here
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__

# Public names are imported on first use (PEP 562), so `import posthog_llm` stays cheap and pulls
# in no HTTP client, SQLite or framework until something needs it. To add a public name: one line
# in _LAZY (name -> private module), the same import under TYPE_CHECKING (for type checkers and
# IDEs) and the name in __all__; tests/test_import_cost.py checks that the three agree.
_LAZY: dict[str, str] = {
    "Client": "._client",
    "get_client": "._client",
    "set_client": "._client",
    "DEFAULT_HOST": "._client",
    "context": "._context",
    "span": "._spans",
    "Span": "._spans",
    "observe": "._spans",
    "capture_feedback": "._feedback",
    "capture_metric": "._feedback",
    "GENERATION": "._events",
    "EMBEDDING": "._events",
    "SPAN": "._events",
    "TRACE": "._events",
    "generation_properties": "._events",
    "embedding_properties": "._events",
    "span_properties": "._events",
    "trace_properties": "._events",
    "EventStore": "._store",
    "Trace": "._store",
    "TraceSummary": "._store",
    "Destination": ".destinations",
    "InMemoryDestination": ".destinations",
    "PostHogHTTPDestination": ".destinations",
    "SQLiteDestination": ".destinations",
    # Integration plumbing lives in `posthog_llm.instrumentation`; these stay importable here for
    # existing code, outside __all__.
    "current_scope": "._context",
    "Scope": "._context",
    "Emitter": "._emit",
    "capture_internal_exceptions": "._emit",
    "to_json_safe": "._serialize",
}

if TYPE_CHECKING:
    from ._client import DEFAULT_HOST, Client, get_client, set_client
    from ._context import Scope as Scope
    from ._context import context
    from ._context import current_scope as current_scope
    from ._emit import Emitter as Emitter
    from ._emit import capture_internal_exceptions as capture_internal_exceptions
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
    from ._serialize import to_json_safe as to_json_safe
    from ._spans import Span, observe, span
    from ._store import EventStore, Trace, TraceSummary
    from .destinations import (
        Destination,
        InMemoryDestination,
        PostHogHTTPDestination,
        SQLiteDestination,
    )

# What users call.
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


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
