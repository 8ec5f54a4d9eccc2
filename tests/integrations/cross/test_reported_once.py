"""A LlamaIndex LLM built on the OpenAI drop-in: each model call is one generation, streamed too.

A streamed call's provider request is made lazily, as the stream the LLM returned is read, after
the LLM's span ended: the drop-in must still see that the call is LlamaIndex's."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from llama_index.core.base.llms.types import (  # noqa: E402
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
)
from llama_index.core.llms.callbacks import llm_completion_callback  # noqa: E402
from llama_index.core.llms.custom import CustomLLM  # noqa: E402
from posthog_llm.integrations import llama_index as posthog_li  # noqa: E402

MESSAGES = [{"role": "user", "content": "Owls?"}]


class DropInLLM(CustomLLM):
    """An LLM whose provider client is posthog-llm's OpenAI drop-in (as llama-index-llms-openai
    would be, given ours): streams call the provider only once they are read."""

    sync_client: Any = None
    async_client: Any = None

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name="gpt-4o-mini")

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        reply = self.sync_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        return CompletionResponse(text=reply.choices[0].message.content or "")

    @llm_completion_callback()
    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        def gen() -> Iterator[CompletionResponse]:
            text = ""
            stream = self.sync_client.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, stream=True
            )
            for chunk in stream:
                delta = chunk.choices[0].delta.content if chunk.choices else None
                if delta:
                    text += delta
                    yield CompletionResponse(text=text, delta=delta)

        return gen()

    @llm_completion_callback()
    async def astream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseAsyncGen:
        async def gen() -> AsyncIterator[CompletionResponse]:
            text = ""
            stream = await self.async_client.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, stream=True
            )
            async for chunk in stream:
                delta = chunk.choices[0].delta.content if chunk.choices else None
                if delta:
                    text += delta
                    yield CompletionResponse(text=text, delta=delta)

        return gen()


@pytest.fixture
def llm(default_client: Any, openai_client: Any, async_openai_client: Any) -> Iterator[DropInLLM]:
    posthog_li.set_global_handler(default_client)
    try:
        yield DropInLLM(sync_client=openai_client, async_client=async_openai_client)
    finally:
        posthog_li.remove_global_handler()


def _generations(events: Any) -> list[dict[str, Any]]:
    return [e["properties"] for e in events() if e["event"] == "$ai_generation"]


def test_each_call_of_a_llama_index_llm_on_the_drop_in_is_one_generation(
    llm: DropInLLM, events: Any
) -> None:
    assert llm.complete("Owls?").text
    assert "".join(r.delta or "" for r in llm.stream_complete("Owls?"))

    async def read_async() -> str:
        return "".join([r.delta or "" async for r in await llm.astream_complete("Owls?")])

    assert asyncio.run(read_async())
    sent = _generations(events)
    assert [g.get("$ai_framework") for g in sent] == ["llama-index"] * 3


def test_a_drop_in_call_between_chunks_of_a_llama_index_stream_is_its_own(
    llm: DropInLLM, openai_client: Any, events: Any
) -> None:
    # The consumer's own code between chunks is not the LLM's: its call is reported.
    for i, _ in enumerate(llm.stream_complete("Owls?")):
        if i == 0:
            openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    sent = _generations(events)
    assert sorted(g.get("$ai_framework", "") for g in sent) == ["", "llama-index"]
