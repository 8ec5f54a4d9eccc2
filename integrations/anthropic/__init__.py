"""Anthropic: drop-in clients that send every Messages call to PostHog as `$ai_generation`.

Swap the client class and pass `posthog_client`; optionally pass `posthog_*` arguments per call:

>>> from posthog_llm import Client
>>> from posthog_llm.integrations.anthropic import Anthropic
>>> client = Anthropic(api_key="sk-ant-...", posthog_client=Client())      # doctest: +SKIP
>>> reply = client.messages.create(
...     model="claude-haiku-4-5",
...     max_tokens=200,
...     messages=[{"role": "user", "content": "Tell me a fun fact about hedgehogs"}],
...     posthog_distinct_id="user_123",                 # optional, as are the ones below
...     posthog_trace_id="trace_123",
...     posthog_properties={"conversation_id": "abc123"},
...     posthog_groups={"company": "company_id_in_your_db"},
...     posthog_privacy_mode=True,                      # no prompt or answer in the event
... )                                                                      # doctest: +SKIP

Tracked, sync and async: `messages.create` (also `stream=True`), the `messages.stream(...)`
helper and `messages.parse`, the same under `beta.messages`, also through `with_raw_response` and `with_streaming_response`
(the event goes out once the body is read or the response closed). Everything else is the SDK, untouched; results are the SDK's own
objects. The Bedrock and Vertex clients report `$ai_provider` "anthropic", as posthog-python
does. For a client built elsewhere use `wrap(client, posthog_client=...)`.
"""

from __future__ import annotations

from posthog_llm.instrumentation import require

require("anthropic", "anthropic")

from ._clients import (  # noqa: E402
    Anthropic,
    AnthropicBedrock,
    AnthropicVertex,
    AsyncAnthropic,
    AsyncAnthropicBedrock,
    AsyncAnthropicVertex,
)
from ._wrap import wrap  # noqa: E402

__all__ = [
    "Anthropic",
    "AsyncAnthropic",
    "AnthropicBedrock",
    "AsyncAnthropicBedrock",
    "AnthropicVertex",
    "AsyncAnthropicVertex",
    "wrap",
]
