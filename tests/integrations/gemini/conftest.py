"""Fixtures: a real loopback Gemini stand-in and tracked google-genai clients pointed at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytest.importorskip("google.genai")

from posthog_llm import Client  # noqa: E402
from posthog_llm.local.gemini_standin import GeminiStandIn  # noqa: E402

API_KEY = "AIzaSyTEST-0123456789abcdefSECRET"
MODEL = "gemini-2.5-flash"


@pytest.fixture
def standin() -> Iterator[GeminiStandIn]:
    with GeminiStandIn() as server:
        yield server


@pytest.fixture
def make_client(standin: GeminiStandIn, client: Client) -> Callable[..., Any]:
    """`make_client(**sdk_kwargs)`: a tracked `Client` on the stand-in, reporting into `client`."""
    from posthog_llm.integrations.gemini import Client as Gemini

    def make(**kwargs: Any) -> Any:
        kwargs.setdefault("api_key", API_KEY)
        kwargs.setdefault("posthog_client", client)
        kwargs.setdefault(
            "http_options", {"base_url": standin.base_url, "retry_options": {"attempts": 1}}
        )
        return Gemini(**kwargs)

    return make
