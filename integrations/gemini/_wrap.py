"""`wrap(client)`: make an existing `google.genai.Client` report to PostHog, in place."""

from __future__ import annotations

from typing import Any

from google import genai
from posthog_llm.instrumentation import Emitter

from ._track import GeminiTracker, TrackedAsyncModels, TrackedModels

__all__ = ["wrap", "instrument"]


def wrap(client: genai.Client, posthog_client: Any = None) -> genai.Client:
    """Track `client`'s `models` calls (sync and `aio`); returns the same client.

    `posthog_client` is a `posthog_llm.Client`, a posthog-python client (or the `posthog`
    module), or None for posthog-llm's default client. Wrapping twice only swaps it.

    >>> from google import genai
    >>> from posthog_llm.integrations.gemini import wrap
    >>> client = wrap(genai.Client(api_key="..."))                          # doctest: +SKIP
    """
    if not isinstance(client, genai.Client):
        raise TypeError(f"wrap() takes a google.genai.Client, got {type(client).__name__}")
    instrument(client, posthog_client)
    return client


def instrument(client: genai.Client, posthog_client: Any, **defaults: Any) -> None:
    """Swap the client's `models` modules (sync and async) for tracked ones on the same API client.

    `client.chats` and `client.aio.chats` build on `client.models`, so chats are tracked too.
    `defaults` (distinct_id, properties, groups, privacy_mode) are every call's.
    """
    tracker = GeminiTracker(Emitter(posthog_client, **defaults))
    api_client = client._api_client
    client._models = TrackedModels(api_client, tracker)
    client._aio._models = TrackedAsyncModels(api_client, tracker)
