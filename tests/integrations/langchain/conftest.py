from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytest.importorskip("langchain_core")

from posthog_llm import Client, InMemoryDestination  # noqa: E402
from posthog_llm.integrations.langchain import (  # noqa: E402
    PostHogCallbackHandler,
    remove_global_handler,
)


@pytest.fixture
def handler(client: Client) -> PostHogCallbackHandler:
    return PostHogCallbackHandler(client)


@pytest.fixture
def events(client: Client, sink: InMemoryDestination) -> Callable[..., list[dict[str, Any]]]:
    """`events()` flushes the client and returns what arrived; `events("$ai_span")` filters."""

    def read(name: str | None = None) -> list[dict[str, Any]]:
        assert client.flush(10)
        found = sink.events
        return [e for e in found if name is None or e["event"] == name]

    return read


@pytest.fixture(autouse=True)
def _no_global_handler() -> Iterator[None]:
    remove_global_handler()
    yield
    remove_global_handler()
