"""LangChain and LangGraph integration: every trace, step and LLM call as PostHog `$ai_*` events.

Per chain call:

>>> from posthog_llm.integrations.langchain import PostHogCallbackHandler
>>> handler = PostHogCallbackHandler(distinct_id="user_123", properties={"plan": "pro"})
>>> # chain.invoke({"topic": "owls"}, config={"callbacks": [handler]})

For the whole process (every thread and asyncio task, no callbacks to pass):

>>> from posthog_llm.integrations.langchain import set_global_handler, remove_global_handler
>>> handler = set_global_handler()
>>> remove_global_handler()

Per run, LangChain config metadata overrides the handler's options: `posthog_distinct_id`,
`posthog_trace_id`, `posthog_session_id`, `posthog_properties`, `posthog_groups`,
`posthog_privacy_mode`. `posthog_llm.context(...)` applies as well.
"""

from __future__ import annotations

from posthog_llm.instrumentation import require

require("langchain_core", "langchain")

from ._global import get_global_handler, remove_global_handler, set_global_handler  # noqa: E402
from ._handler import PostHogCallbackHandler  # noqa: E402

__all__ = [
    "PostHogCallbackHandler",
    "set_global_handler",
    "remove_global_handler",
    "get_global_handler",
]
