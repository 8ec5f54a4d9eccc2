"""The drop-in client: `google.genai.Client` plus a `posthog_client=` argument."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google import genai

from ._wrap import instrument

__all__ = ["Client"]


class Client(genai.Client):
    """`google.genai.Client` that sends every `models` call (also under `aio`) to PostHog.

    Takes all of `genai.Client`'s arguments, and `posthog_client`: a `posthog_llm.Client`, a
    posthog-python client or the `posthog` module, or None for posthog-llm's default client.
    Tracked calls also accept `posthog_distinct_id`, `posthog_trace_id`, `posthog_session_id`,
    `posthog_properties`, `posthog_groups` and `posthog_privacy_mode`; they never reach Google.
    `posthog_distinct_id`, `posthog_properties`, `posthog_groups` and `posthog_privacy_mode`
    given here are every call's defaults (as posthog-python's Gemini client takes them); a
    call's own and `posthog_llm.context(...)` win over them.

    >>> client = Client(api_key="test", posthog_distinct_id="user_123")  # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        posthog_client: Any = None,
        posthog_distinct_id: Any = None,
        posthog_properties: Mapping[str, Any] | None = None,
        posthog_groups: Mapping[str, Any] | None = None,
        posthog_privacy_mode: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        instrument(
            self,
            posthog_client,
            distinct_id=posthog_distinct_id,
            properties=posthog_properties,
            groups=posthog_groups,
            privacy_mode=posthog_privacy_mode,
        )
