"""Google Gemini: a drop-in `google.genai.Client` that sends every model call to PostHog.

>>> from posthog_llm import Client as PostHogLLM
>>> from posthog_llm.integrations.gemini import Client
>>> client = Client(api_key="...", posthog_client=PostHogLLM())               # doctest: +SKIP
>>> reply = client.models.generate_content(
...     model="gemini-2.5-flash",
...     contents="Tell me a fun fact about hedgehogs",
...     posthog_distinct_id="user_123",              # optional, as are the other posthog_* ones
... )                                                                         # doctest: +SKIP

Tracked, sync and under `client.aio`: `models.generate_content`,
`models.generate_content_stream` and `models.embed_content` (as `$ai_embedding`); chats are
tracked through those calls. `$ai_provider` is "gemini", or "vertex" for a client in Vertex
mode. Everything else is the SDK, untouched. For a client built elsewhere use
`wrap(client, posthog_client=...)`.
"""

from __future__ import annotations

from posthog_llm.instrumentation import require

require("google.genai", "gemini")

from ._clients import Client  # noqa: E402
from ._wrap import wrap  # noqa: E402

__all__ = ["Client", "wrap"]
