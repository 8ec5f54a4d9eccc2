"""Fixtures for traces that cross integrations: every framework sends into one client."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytest.importorskip("langchain_core")
pytest.importorskip("llama_index.core")
pytest.importorskip("openai")

import posthog_llm  # noqa: E402
from llama_index.core import Document, Settings, VectorStoreIndex  # noqa: E402
from llama_index.core.embeddings import MockEmbedding  # noqa: E402
from llama_index.core.llms import MockLLM  # noqa: E402
from posthog_llm import Client, InMemoryDestination  # noqa: E402
from posthog_llm.integrations import llama_index as posthog_li  # noqa: E402
from posthog_llm.integrations.langchain import PostHogCallbackHandler  # noqa: E402
from posthog_llm.local.openai_standin import OpenAIStandIn  # noqa: E402

API_KEY = "sk-test-0123456789abcdefSECRET"


@pytest.fixture
def default_client(client: Client) -> Iterator[Client]:
    """`client` is also the default client, so `posthog_llm.span` sends into it."""
    posthog_llm.set_client(client)
    yield client


@pytest.fixture
def handler(default_client: Client) -> PostHogCallbackHandler:
    return PostHogCallbackHandler(default_client)


@pytest.fixture
def query_engine(default_client: Client) -> Iterator[Any]:
    saved = (Settings._llm, Settings._embed_model)
    Settings.llm = MockLLM(max_tokens=8)
    Settings.embed_model = MockEmbedding(embed_dim=8)
    index = VectorStoreIndex.from_documents(
        [Document(text="Owls hunt at night."), Document(text="Cats sleep all day.")]
    )
    posthog_li.set_global_handler(default_client)  # after the index build: its trace is noise
    try:
        yield index.as_query_engine()
    finally:
        posthog_li.remove_global_handler()
        Settings._llm, Settings._embed_model = saved


@pytest.fixture
def standin() -> Iterator[OpenAIStandIn]:
    with OpenAIStandIn() as server:
        yield server


@pytest.fixture
def openai_client(standin: OpenAIStandIn, default_client: Client) -> Any:
    from posthog_llm.integrations.openai import OpenAI

    return OpenAI(
        api_key=API_KEY, base_url=standin.base_url, max_retries=0, posthog_client=default_client
    )


@pytest.fixture
def async_openai_client(standin: OpenAIStandIn, default_client: Client) -> Any:
    from posthog_llm.integrations.openai import AsyncOpenAI

    return AsyncOpenAI(
        api_key=API_KEY, base_url=standin.base_url, max_retries=0, posthog_client=default_client
    )


@pytest.fixture
def events(default_client: Client, sink: InMemoryDestination) -> Callable[[], list[dict[str, Any]]]:
    def read() -> list[dict[str, Any]]:
        assert default_client.flush(5)
        return sink.events

    return read
