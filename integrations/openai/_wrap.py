"""`wrap(client)`: make an existing openai client report to PostHog, in place."""

from __future__ import annotations

from typing import Any, TypeVar

import openai
from openai.lib.azure import BaseAzureClient
from posthog_llm.instrumentation import Emitter, track_copies

from ._resources import (
    BETA_RESPONSES,
    TrackedAsyncChat,
    TrackedAsyncEmbeddings,
    TrackedAsyncResponses,
    TrackedChat,
    TrackedEmbeddings,
    TrackedResponses,
)
from ._track import OpenAITracker

__all__ = ["wrap", "instrument"]

ClientT = TypeVar("ClientT", openai.OpenAI, openai.AsyncOpenAI)

_STATE = "_posthog_llm"


def wrap(existing_client: ClientT, posthog_client: Any = None) -> ClientT:
    """Track `existing_client`'s chat, responses and embeddings calls; returns the same client.

    `existing_client` is an `openai.OpenAI`, `AsyncOpenAI`, `AzureOpenAI` or `AsyncAzureOpenAI` you
    already built. `posthog_client` is a `posthog_llm.Client`, a posthog-python client (or the
    `posthog` module), or None for posthog-llm's default client. Copies made with
    `client.with_options(...)` are tracked the same way. Wrapping twice only swaps the
    `posthog_client`.

    >>> import openai
    >>> from posthog_llm.integrations.openai import wrap
    >>> client = wrap(openai.OpenAI(api_key="sk-..."))          # doctest: +SKIP
    >>> client.chat.completions.create(model="gpt-4o-mini", messages=[...],
    ...                                posthog_distinct_id="user_123")  # doctest: +SKIP
    """
    client = existing_client
    if not isinstance(client, (openai.OpenAI, openai.AsyncOpenAI)):
        raise TypeError(
            "wrap() takes an openai.OpenAI, AsyncOpenAI, AzureOpenAI or AsyncAzureOpenAI client, "
            f"got {type(client).__name__}"
        )
    instrument(client, OpenAITracker(Emitter(posthog_client), isinstance(client, BaseAzureClient)))
    return client


def instrument(client: Any, tracker: OpenAITracker) -> None:
    """Install the tracked resources on this one client instance.

    The SDK builds `chat`, `responses` and `embeddings` (and `beta`'s) lazily as cached
    properties; an entry in the instance's `__dict__` takes their place, so the class and other
    clients are untouched.
    """
    state = client.__dict__
    sync = isinstance(client, openai.OpenAI)
    state[_STATE] = tracker
    state["chat"] = (TrackedChat if sync else TrackedAsyncChat)(client)
    state["responses"] = (TrackedResponses if sync else TrackedAsyncResponses)(client)
    state["embeddings"] = (TrackedEmbeddings if sync else TrackedAsyncEmbeddings)(client)
    # `beta.chat` (the chat resource again, in SDKs that have it) and `beta.responses`.
    beta = getattr(client, "beta", None)
    if beta is not None:
        beta_state = beta.__dict__
        if hasattr(type(beta), "chat"):
            beta_state["chat"] = (TrackedChat if sync else TrackedAsyncChat)(client)
        if BETA_RESPONSES is not None and hasattr(type(beta), "responses"):
            beta_state["responses"] = BETA_RESPONSES[0 if sync else 1](client)
    track_copies(client, lambda copied: instrument(copied, tracker))
