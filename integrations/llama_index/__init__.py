"""LlamaIndex integration: one line captures every query, chat, agent run, LLM and embedding call.

>>> from posthog_llm.integrations import llama_index as posthog_li
>>> handler = posthog_li.set_global_handler(distinct_id="user_123")   # doctest: +SKIP
>>> index.as_query_engine().query("What did the author do?")          # doctest: +SKIP
>>> posthog_li.remove_global_handler()                                # doctest: +SKIP

Built on LlamaIndex's instrumentation module (span and event handlers on the root dispatcher),
so it sees calls whatever the order in which `Settings`, indexes and engines were created.
Requires `llama-index-core`: ``pip install 'posthog-llm[llama-index]'``.
"""

from __future__ import annotations

from ._handler import PostHogLlamaIndexHandler
from ._register import get_global_handler, remove_global_handler, set_global_handler

__all__ = [
    "set_global_handler",
    "remove_global_handler",
    "get_global_handler",
    "PostHogLlamaIndexHandler",
]
