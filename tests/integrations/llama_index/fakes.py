"""Fakes for the LlamaIndex tests.

Everything runs offline on LlamaIndex's own MockLLM / MockEmbedding, subclassed so that they
report usage, a served model name and a stop reason the way real provider integrations do.
"""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core.base.llms.types import (  # noqa: E402
    ChatMessage,
    ChatResponse,
    CompletionResponse,
    CompletionResponseGen,
)
from llama_index.core.embeddings import MockEmbedding  # noqa: E402
from llama_index.core.instrumentation import get_dispatcher  # noqa: E402
from llama_index.core.instrumentation.events.embedding import (  # noqa: E402
    EmbeddingEndEvent,
    EmbeddingStartEvent,
)
from llama_index.core.llms import MockLLM  # noqa: E402
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback  # noqa: E402
from posthog_llm import Client, InMemoryDestination  # noqa: E402

dispatcher = get_dispatcher(__name__)

ANSWER = "Cats sleep a lot"
SERVED_MODEL = "mock-gpt-2025-01-01"


def _raw(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {
        "model": SERVED_MODEL,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 2},
            "completion_tokens_details": {"reasoning_tokens": 1},
        },
        "choices": [{"finish_reason": "stop"}],
    }


class UsageLLM(MockLLM):
    """A CustomLLM (chat() calls complete()) whose responses carry OpenAI-style raw usage."""

    temperature: float = 0.25
    api_key: str = "sk-test-secret-key"
    fail_with: Any = None
    fail_mid_stream: Any = None

    @classmethod
    def class_name(cls) -> str:
        return "UsageLLM"

    def _tokens(self, prompt: str) -> int:
        return len(prompt.split())

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        if self.fail_with is not None:
            raise self.fail_with
        return CompletionResponse(text=ANSWER, raw=_raw(self._tokens(prompt), 4))

    @llm_completion_callback()
    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        if self.fail_with is not None:
            raise self.fail_with
        words = ANSWER.split()
        tokens = self._tokens(prompt)
        fail = self.fail_mid_stream

        def gen() -> CompletionResponseGen:
            text = ""
            for i, word in enumerate(words):
                if fail is not None and i == 2:
                    raise fail
                delta = word if i == 0 else " " + word
                text += delta
                last = i == len(words) - 1
                yield CompletionResponse(
                    text=text, delta=delta, raw=_raw(tokens, len(words)) if last else None
                )

        return gen()


class ChatUsageLLM(MockLLM):
    """A chat-native LLM reporting Anthropic-style usage as an object, and a stop reason."""

    @classmethod
    def class_name(cls) -> str:
        return "ChatUsageLLM"

    @llm_chat_callback()
    def chat(self, messages: Any, **kwargs: Any) -> ChatResponse:
        class _Usage:
            input_tokens = 21
            output_tokens = 3
            cache_read_input_tokens = 5
            cache_creation_input_tokens = 7

        class _Raw:
            model = "claude-mock"
            stop_reason = "end_turn"
            usage = _Usage()

        return ChatResponse(message=ChatMessage(role="assistant", content="hello"), raw=_Raw())


def events(client: Client, sink: InMemoryDestination) -> list[dict[str, Any]]:
    assert client.flush(5)
    return sink.events


def props(client: Client, sink: InMemoryDestination, name: str) -> list[dict[str, Any]]:
    return [e["properties"] for e in events(client, sink) if e["event"] == name]


class UsageEmbeddingEndEvent(EmbeddingEndEvent):
    """How an embedding integration that knows its token usage can report it."""

    usage: dict = {}


class TokenReportingEmbedding(MockEmbedding):
    """An embedding model whose provider reports token usage."""

    model_name: str = "mock-embed-3"

    def get_query_embedding(self, query: str) -> list[float]:
        dispatcher.event(EmbeddingStartEvent(model_dict=self.to_payload()))
        vector = self._get_query_embedding(query)
        dispatcher.event(
            UsageEmbeddingEndEvent(
                chunks=[query],
                embeddings=[vector],
                usage={"prompt_tokens": len(query.split()), "total_tokens": len(query.split())},
            )
        )
        return vector
