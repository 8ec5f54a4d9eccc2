"""`wrap(client)`: make an existing anthropic client report to PostHog, in place."""

from __future__ import annotations

from typing import Any, TypeVar

import anthropic
from posthog_llm.instrumentation import Emitter, track_copies

from ._track import AnthropicTracker, TrackedAsyncMessages, TrackedMessages, tracked_beta_messages

__all__ = ["wrap", "instrument"]

ClientT = TypeVar("ClientT")

_SYNC = (anthropic.Anthropic, anthropic.AnthropicBedrock, anthropic.AnthropicVertex)
_ASYNC = (anthropic.AsyncAnthropic, anthropic.AsyncAnthropicBedrock, anthropic.AsyncAnthropicVertex)


def wrap(client: ClientT, posthog_client: Any = None) -> ClientT:
    """Track `client`'s Messages calls; returns the same client.

    `client` is an `anthropic.Anthropic`, `AsyncAnthropic`, or one of the Bedrock / Vertex
    clients you already built. `posthog_client` is a `posthog_llm.Client`, a posthog-python
    client (or the `posthog` module), or None for posthog-llm's default client. Copies made
    with `client.with_options(...)` are tracked the same way.

    >>> import anthropic
    >>> from posthog_llm.integrations.anthropic import wrap
    >>> client = wrap(anthropic.Anthropic(api_key="sk-ant-..."))          # doctest: +SKIP
    """
    if not isinstance(client, _SYNC + _ASYNC):
        raise TypeError(
            "wrap() takes an anthropic.Anthropic, AsyncAnthropic, AnthropicBedrock, "
            f"AsyncAnthropicBedrock, AnthropicVertex or AsyncAnthropicVertex client, got "
            f"{type(client).__name__}"
        )
    instrument(client, AnthropicTracker(Emitter(posthog_client)))
    return client


def instrument(client: Any, tracker: AnthropicTracker) -> None:
    """Install the tracked `messages` and `beta.messages` resources on this one client instance.

    An entry in the instance's `__dict__` takes the place of the SDK's cached property (or of
    the attribute the Bedrock client sets), so the class and other clients are untouched.
    """
    state = client.__dict__
    state["_posthog_llm"] = tracker
    sync = isinstance(client, _SYNC)
    state["messages"] = (TrackedMessages if sync else TrackedAsyncMessages)(client)
    beta = getattr(client, "beta", None)
    messages = getattr(beta, "messages", None)
    if beta is not None and messages is not None:
        sdk_class: type = getattr(type(messages), "_sdk_class", type(messages))  # wrapped twice
        beta.__dict__["messages"] = tracked_beta_messages(sdk_class, sync)(client)
    track_copies(client, lambda copied: instrument(copied, tracker))
