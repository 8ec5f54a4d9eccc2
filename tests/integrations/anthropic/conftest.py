"""Fixtures: a real loopback Anthropic stand-in and tracked clients pointed at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytest.importorskip("anthropic")

from posthog_llm import Client  # noqa: E402
from posthog_llm.local.anthropic_standin import AnthropicStandIn  # noqa: E402

API_KEY = "sk-ant-api03-test0123456789abcdefSECRET"
MODEL = "claude-sonnet-4-6"
HELLO = [{"role": "user", "content": "Tell me a fun fact about hedgehogs"}]


@pytest.fixture
def standin() -> Iterator[AnthropicStandIn]:
    with AnthropicStandIn() as server:
        yield server


@pytest.fixture
def make_client(standin: AnthropicStandIn, client: Client) -> Callable[..., Any]:
    """`make_client(cls=Anthropic, **sdk_kwargs)`: a tracked client on the stand-in."""
    from posthog_llm.integrations.anthropic import Anthropic

    def make(cls: type = Anthropic, **kwargs: Any) -> Any:
        if kwargs.get("api_key", API_KEY) is None:
            del kwargs["api_key"]  # the Vertex client takes no api_key
        else:
            kwargs.setdefault("api_key", API_KEY)
        kwargs.setdefault("max_retries", 0)
        kwargs.setdefault("posthog_client", client)
        kwargs.setdefault("base_url", standin.base_url)
        return cls(**kwargs)

    return make
