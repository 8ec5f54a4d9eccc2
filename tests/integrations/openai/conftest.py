"""Fixtures: a real loopback OpenAI stand-in and tracked clients pointed at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytest.importorskip("openai")

from posthog_llm import Client  # noqa: E402
from posthog_llm.local.openai_standin import OpenAIStandIn  # noqa: E402

API_KEY = "sk-test-0123456789abcdefSECRET"


@pytest.fixture
def standin() -> Iterator[OpenAIStandIn]:
    with OpenAIStandIn() as server:
        yield server


@pytest.fixture
def make_client(standin: OpenAIStandIn, client: Client) -> Callable[..., Any]:
    """`make_client(cls=OpenAI, **sdk_kwargs)`: a tracked client on the stand-in, into `client`."""
    from posthog_llm.integrations.openai import AsyncAzureOpenAI, AzureOpenAI, OpenAI

    def make(cls: type = OpenAI, **kwargs: Any) -> Any:
        kwargs.setdefault("api_key", API_KEY)
        kwargs.setdefault("max_retries", 0)
        kwargs.setdefault("posthog_client", client)
        if cls in (AzureOpenAI, AsyncAzureOpenAI):
            kwargs.setdefault("azure_endpoint", standin.azure_endpoint)
            kwargs.setdefault("api_version", "2024-10-21")
        else:
            kwargs.setdefault("base_url", standin.base_url)
        return cls(**kwargs)

    return make
