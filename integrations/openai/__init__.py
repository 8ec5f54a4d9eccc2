"""OpenAI: drop-in clients that send every call to PostHog as `$ai_generation` / `$ai_embedding`.

Swap the client class and pass `posthog_client`; optionally pass `posthog_*` arguments per call:

>>> from posthog_llm import Client
>>> from posthog_llm.integrations.openai import OpenAI
>>> client = OpenAI(api_key="sk-...", posthog_client=Client())          # doctest: +SKIP
>>> reply = client.chat.completions.create(
...     model="gpt-4o-mini",
...     messages=[{"role": "user", "content": "Tell me a fun fact about hedgehogs"}],
...     posthog_distinct_id="user_123",                 # optional, as are the ones below
...     posthog_trace_id="trace_123",
...     posthog_properties={"conversation_id": "abc123"},
...     posthog_groups={"company": "company_id_in_your_db"},
...     posthog_privacy_mode=True,                      # no prompt or answer in the event
... )                                                                     # doctest: +SKIP

Tracked, sync and async: `chat.completions.create` (also `stream=True` and the `.stream()`
helper), `chat.completions.parse`, `responses.create` (also streaming), `responses.parse`,
`embeddings.create`, `beta.chat.completions` and `beta.responses.create` (where the installed SDK
has them), each also through `with_raw_response` and `with_streaming_response` (the
event goes out once the body is read or the response closed). Everything else is the SDK,
untouched; results are the SDK's own objects.
For a client built elsewhere use `wrap(client, posthog_client=...)`.

`posthog_llm.context(...)` applies to these calls too; per-call arguments win over it.
`posthog_privacy_mode=False` leaves privacy to the context and the client (it never switches
it off). `posthog_provider_override="deepseek"` sets `$ai_provider`, which is otherwise inferred
from the client's base URL (`azure` for the Azure clients).
"""

from __future__ import annotations

from posthog_llm.instrumentation import require

require("openai", "openai")

from ._clients import AsyncAzureOpenAI, AsyncOpenAI, AzureOpenAI, OpenAI  # noqa: E402
from ._wrap import wrap  # noqa: E402

__all__ = ["OpenAI", "AsyncOpenAI", "AzureOpenAI", "AsyncAzureOpenAI", "wrap"]
