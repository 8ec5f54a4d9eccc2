"""Drop-in clients: the anthropic SDK's own classes plus a `posthog_client=` argument."""

from __future__ import annotations

from typing import Any

import anthropic
from posthog_llm.instrumentation import Emitter

from ._track import AnthropicTracker
from ._wrap import instrument

__all__ = [
    "Anthropic",
    "AsyncAnthropic",
    "AnthropicBedrock",
    "AsyncAnthropicBedrock",
    "AnthropicVertex",
    "AsyncAnthropicVertex",
]


class Anthropic(anthropic.Anthropic):
    """`anthropic.Anthropic` (Anthropic's API) that sends every Messages call to PostHog.

    Takes all of `anthropic.Anthropic`'s arguments, and `posthog_client`: a `posthog_llm.Client`, a
    posthog-python client or the `posthog` module, or None for posthog-llm's default client.
    """

    def __init__(self, *, posthog_client: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        instrument(self, AnthropicTracker(Emitter(posthog_client)))


class AsyncAnthropic(anthropic.AsyncAnthropic):
    """`anthropic.AsyncAnthropic` (Anthropic's API (async)) that sends every Messages call to PostHog.

    Takes all of `anthropic.AsyncAnthropic`'s arguments, and `posthog_client`: a `posthog_llm.Client`, a
    posthog-python client or the `posthog` module, or None for posthog-llm's default client.
    """

    def __init__(self, *, posthog_client: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        instrument(self, AnthropicTracker(Emitter(posthog_client)))


class AnthropicBedrock(anthropic.AnthropicBedrock):
    """`anthropic.AnthropicBedrock` (Claude on AWS Bedrock) that sends every Messages call to PostHog.

    Takes all of `anthropic.AnthropicBedrock`'s arguments, and `posthog_client`: a `posthog_llm.Client`, a
    posthog-python client or the `posthog` module, or None for posthog-llm's default client.
    """

    def __init__(self, *, posthog_client: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        instrument(self, AnthropicTracker(Emitter(posthog_client)))


class AsyncAnthropicBedrock(anthropic.AsyncAnthropicBedrock):
    """`anthropic.AsyncAnthropicBedrock` (Claude on AWS Bedrock (async)) that sends every Messages call to PostHog.

    Takes all of `anthropic.AsyncAnthropicBedrock`'s arguments, and `posthog_client`: a `posthog_llm.Client`, a
    posthog-python client or the `posthog` module, or None for posthog-llm's default client.
    """

    def __init__(self, *, posthog_client: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        instrument(self, AnthropicTracker(Emitter(posthog_client)))


class AnthropicVertex(anthropic.AnthropicVertex):
    """`anthropic.AnthropicVertex` (Claude on Google Vertex AI) that sends every Messages call to PostHog.

    Takes all of `anthropic.AnthropicVertex`'s arguments, and `posthog_client`: a `posthog_llm.Client`, a
    posthog-python client or the `posthog` module, or None for posthog-llm's default client.
    """

    def __init__(self, *, posthog_client: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        instrument(self, AnthropicTracker(Emitter(posthog_client)))


class AsyncAnthropicVertex(anthropic.AsyncAnthropicVertex):
    """`anthropic.AsyncAnthropicVertex` (Claude on Google Vertex AI (async)) that sends every Messages call to PostHog.

    Takes all of `anthropic.AsyncAnthropicVertex`'s arguments, and `posthog_client`: a `posthog_llm.Client`, a
    posthog-python client or the `posthog` module, or None for posthog-llm's default client.
    """

    def __init__(self, *, posthog_client: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        instrument(self, AnthropicTracker(Emitter(posthog_client)))
