"""OpenAI Agents SDK: every agent run as a PostHog trace, with one line.

>>> from posthog_llm.integrations import openai_agents as posthog_agents
>>> posthog_agents.instrument(distinct_id="user_123")                  # doctest: +SKIP
>>> result = Runner.run_sync(agent, "What is the weather in Paris?")   # doctest: +SKIP
>>> posthog_agents.uninstrument()                                      # doctest: +SKIP

`instrument()` adds a tracing processor next to the SDK's own (it never replaces them) and
returns it; calling it again replaces the previous one, so nothing is reported twice.
One Agents trace becomes one `$ai_trace` (its group id as `$ai_session_id`); agent and turn
spans, tool calls, handoffs, guardrails and MCP tool listings become `$ai_span`; model calls
(Chat Completions and Responses) become `$ai_generation`. `posthog_llm.context(...)` around a
run applies its identity; a run inside another observation (`posthog_llm.span(...)`) joins it,
and its error and group id reach that trace's event.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from posthog_llm.instrumentation import require

_tracing = require("agents.tracing", "openai-agents")

from ._processor import PostHogTracingProcessor  # noqa: E402

__all__ = ["instrument", "uninstrument", "PostHogTracingProcessor"]

_lock = threading.Lock()
_current: PostHogTracingProcessor | None = None


def _registered() -> list[Any] | None:
    """The SDK's processor list, when this SDK version lets us read it (no public getter)."""
    provider = _tracing.get_trace_provider()
    multi = getattr(provider, "_multi_processor", None)
    processors = getattr(multi, "_processors", None)
    return list(processors) if isinstance(processors, tuple) else None


def _remove(processor: PostHogTracingProcessor) -> None:
    processor.active = False  # a processor we cannot unregister stays silent
    current = _registered()
    if current is not None and any(p is processor for p in current):
        _tracing.set_trace_processors([p for p in current if p is not processor])


def instrument(
    client: Any = None,
    *,
    distinct_id: Any = None,
    privacy_mode: bool | None = None,
    properties: Mapping[str, Any] | None = None,
    groups: Mapping[str, Any] | None = None,
) -> PostHogTracingProcessor:
    """Report every Agents SDK run to PostHog (or the local store); returns the processor."""
    global _current
    processor = PostHogTracingProcessor(
        client,
        distinct_id=distinct_id,
        privacy_mode=privacy_mode,
        properties=properties,
        groups=groups,
    )
    with _lock:
        if _current is not None:
            _remove(_current)
        _tracing.add_trace_processor(processor)
        _current = processor
    return processor


def uninstrument() -> None:
    """Remove the processor `instrument()` added; the SDK's own processors stay."""
    global _current
    with _lock:
        if _current is not None:
            _remove(_current)
            _current = None
