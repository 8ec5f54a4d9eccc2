"""Drop-in clients: the openai SDK's own classes plus a `posthog_client=` argument."""

from __future__ import annotations

from typing import Any

import openai
from posthog_llm.instrumentation import Emitter

from ._track import OpenAITracker
from ._wrap import instrument

__all__ = ["OpenAI", "AsyncOpenAI", "AzureOpenAI", "AsyncAzureOpenAI"]


class OpenAI(openai.OpenAI):
    """`openai.OpenAI` that sends every chat, responses and embeddings call to PostHog.

    Takes all of `openai.OpenAI`'s arguments, and `posthog_client`: a `posthog_llm.Client`, a
    posthog-python client or the `posthog` module, or None for posthog-llm's default client.
    Tracked calls also accept `posthog_distinct_id`, `posthog_trace_id`, `posthog_session_id`,
    `posthog_properties`, `posthog_groups` and `posthog_privacy_mode`; they never reach OpenAI.

    >>> client = OpenAI(api_key="sk-...", posthog_client=posthog_llm.Client())  # doctest: +SKIP
    """

    def __init__(self, *, posthog_client: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        instrument(self, OpenAITracker(Emitter(posthog_client), azure=False))


class AsyncOpenAI(openai.AsyncOpenAI):
    """`openai.AsyncOpenAI` that sends every chat, responses and embeddings call to PostHog.

    Same arguments as `OpenAI` in this module; await the calls as usual.
    """

    def __init__(self, *, posthog_client: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        instrument(self, OpenAITracker(Emitter(posthog_client), azure=False))


class AzureOpenAI(openai.AzureOpenAI):
    """`openai.AzureOpenAI` that sends every call to PostHog with `$ai_provider` "azure".

    >>> client = AzureOpenAI(azure_endpoint="https://my-resource.openai.azure.com",
    ...                      api_key="...", api_version="2024-10-21")   # doctest: +SKIP
    """

    def __init__(self, *, posthog_client: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        instrument(self, OpenAITracker(Emitter(posthog_client), azure=True))


class AsyncAzureOpenAI(openai.AsyncAzureOpenAI):
    """`openai.AsyncAzureOpenAI` that sends every call to PostHog with `$ai_provider` "azure"."""

    def __init__(self, *, posthog_client: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        instrument(self, OpenAITracker(Emitter(posthog_client), azure=True))
