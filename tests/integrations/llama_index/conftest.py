"""Fixtures for the LlamaIndex integration: usage-reporting fakes, an index, a handler."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core import Document, Settings, VectorStoreIndex  # noqa: E402
from llama_index.core.embeddings import MockEmbedding  # noqa: E402
from posthog_llm import Client  # noqa: E402
from posthog_llm.integrations import llama_index as posthog_li  # noqa: E402

from .fakes import UsageLLM  # noqa: E402


@pytest.fixture
def settings() -> Iterator[Any]:
    """Settings.llm / Settings.embed_model set to the fakes, restored afterwards."""
    saved = (Settings._llm, Settings._embed_model)
    Settings.llm = UsageLLM()
    Settings.embed_model = MockEmbedding(embed_dim=8)
    try:
        yield Settings
    finally:
        Settings._llm, Settings._embed_model = saved


@pytest.fixture
def documents() -> list[Document]:
    return [
        Document(text="Cats sleep for most of the day."),
        Document(text="Dogs like long walks in the park."),
        Document(text="Parrots can learn many words."),
    ]


@pytest.fixture
def index(settings: Any, documents: list[Document]) -> VectorStoreIndex:
    return VectorStoreIndex.from_documents(documents)


@pytest.fixture
def handler(client: Client) -> Iterator[posthog_li.PostHogLlamaIndexHandler]:
    h = posthog_li.set_global_handler(client)
    try:
        yield h
    finally:
        posthog_li.remove_global_handler()
