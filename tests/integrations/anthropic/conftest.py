"""Fixtures: a real loopback Anthropic stand-in and tracked clients pointed at it."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytest.importorskip("anthropic")

from posthog_llm import Client, InMemoryDestination  # noqa: E402
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


@pytest.fixture
def events(client: Client, sink: InMemoryDestination) -> Callable[..., list[dict[str, Any]]]:
    """`events()` flushes and returns every event; `events("$ai_generation")` only those."""

    def read(name: str | None = None) -> list[dict[str, Any]]:
        assert client.flush(5)
        return sink.named(name) if name else sink.events

    return read


def only(found: list[dict[str, Any]]) -> dict[str, Any]:
    """The properties of the one event in `found`."""
    assert len(found) == 1, json.dumps(found, indent=1, default=str)[:3000]
    return found[0]["properties"]
