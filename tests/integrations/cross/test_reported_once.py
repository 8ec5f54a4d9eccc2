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


def _drop_in_chat(sync_client: Any, async_client: Any) -> Any:
    """A LangChain chat model whose provider client is the OpenAI drop-in, as
    `ChatOpenAI(client=..., async_client=...)` given ours would be."""
    from langchain_core.language_models.chat_models import BaseChatModel
    from langchain_core.messages import AIMessage, AIMessageChunk
    from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

    class Chat(BaseChatModel):
        @property
        def _llm_type(self) -> str:
            return "drop-in-chat"

        def _generate(self, messages: Any, stop: Any = None, run_manager: Any = None, **kw: Any):
            reply = sync_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
            text = reply.choices[0].message.content or ""
            if run_manager is not None:  # as models that stream inside `_generate` do
                run_manager.on_llm_new_token(text)
            return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text))])

        async def _agenerate(
            self, messages: Any, stop: Any = None, run_manager: Any = None, **kw: Any
        ):
            reply = await async_client.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES
            )
            text = reply.choices[0].message.content or ""
            return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text))])

        def _stream(self, messages: Any, stop: Any = None, run_manager: Any = None, **kw: Any):
            stream = sync_client.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, stream=True
            )
            for chunk in stream:
                delta = chunk.choices[0].delta.content if chunk.choices else None
                if delta:
                    yield ChatGenerationChunk(message=AIMessageChunk(content=delta))

    return Chat()


def test_each_call_of_a_langchain_model_on_the_drop_in_is_one_generation(
    handler: Any, openai_client: Any, async_openai_client: Any, events: Any
) -> None:
    from langchain_core.prompts import ChatPromptTemplate

    chat = _drop_in_chat(openai_client, async_openai_client)
    config = {"callbacks": [handler]}
    assert chat.invoke("Owls?", config=config).content
    assert "".join(str(c.content) for c in chat.stream("Owls?", config=config))
    chain = ChatPromptTemplate.from_template("Tell me about {topic}") | chat
    assert chain.invoke({"topic": "owls"}, config=config).content
    assert asyncio.run(chat.ainvoke("Owls?", config=config)).content
    sent = events()
    generations = [e["properties"] for e in sent if e["event"] == "$ai_generation"]
    assert [g.get("$ai_framework") for g in generations] == ["langchain"] * 4
    assert len({e["properties"]["$ai_trace_id"] for e in sent}) == 4  # one trace per call


def test_a_model_without_our_handler_leaves_its_drop_in_call_reported(
    handler: Any, openai_client: Any, async_openai_client: Any, events: Any
) -> None:
    chat = _drop_in_chat(openai_client, async_openai_client)
    with_handler = _drop_in_chat(openai_client, async_openai_client)
    with_handler.invoke("Owls?", config={"callbacks": [handler]})
    chat.invoke("Owls?")  # LangChain reports nothing of this one: the drop-in does
    generations = [e["properties"] for e in events() if e["event"] == "$ai_generation"]
    assert sorted(g.get("$ai_framework", "") for g in generations) == ["", "langchain"]


def test_calls_a_callback_makes_inside_the_models_code_are_its_own(
    handler: Any, openai_client: Any, async_openai_client: Any, events: Any
) -> None:
    # A judge in the user's own handler, called by LangChain from inside the model's stream:
    # its call is not the model's and is reported, whatever the handlers' order.
    from langchain_core.callbacks import BaseCallbackHandler

    class Judge(BaseCallbackHandler):
        def on_llm_end(self, *args: Any, **kwargs: Any) -> None:
            openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    class Moderator(BaseCallbackHandler):
        def on_llm_new_token(self, *args: Any, **kwargs: Any) -> None:
            openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    chat = _drop_in_chat(openai_client, async_openai_client)
    for callbacks in ([Judge(), handler], [handler, Judge()]):
        assert "".join(
            str(c.content) for c in chat.stream("Owls?", config={"callbacks": callbacks})
        )
    # A token the model's own `_generate` dispatches: the moderator's call is its own.
    chat.invoke("Owls?", config={"callbacks": [Moderator(), handler]})
    generations = [e["properties"] for e in events() if e["event"] == "$ai_generation"]
    frameworks = sorted(g.get("$ai_framework", "") for g in generations)
    assert frameworks == ["", "", "", "langchain", "langchain", "langchain"]
