"""A provider drop-in call made inside another framework's generation is reported once, by that
generation, which keeps what the call was told and what it read: its privacy, the facts the
framework lacks (model, provider, tokens, base URL, stop reason) and its `posthog_*` arguments.

A custom LangChain chat model on the Anthropic drop-in, a LlamaIndex `CustomLLM` on the OpenAI
drop-in: the frameworks know neither the model nor its tokens; the drop-in does."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from llama_index.core.base.llms.types import (
    CompletionResponse,
    CompletionResponseGen,
    LLMMetadata,
)
from llama_index.core.llms.callbacks import llm_completion_callback
from llama_index.core.llms.custom import CustomLLM
from posthog_llm import Client, InMemoryDestination
from posthog_llm.integrations import llama_index as posthog_li

pytest.importorskip("anthropic")

from posthog_llm.local.anthropic_standin import AnthropicStandIn  # noqa: E402

ANTHROPIC_KEY = "sk-ant-test-0123456789abcdef"
SECRET = "SECRET-PROMPT-owls"


@pytest.fixture
def anthropic_standin() -> Iterator[AnthropicStandIn]:
    with AnthropicStandIn() as server:
        yield server


def _anthropic(server: AnthropicStandIn, **options: Any) -> Any:
    from posthog_llm.integrations.anthropic import Anthropic

    return Anthropic(api_key=ANTHROPIC_KEY, base_url=server.base_url, max_retries=0, **options)


def _chat_model(client: Any, calls: int = 1, **call_options: Any) -> BaseChatModel:
    """A custom chat model whose `_generate` asks the Anthropic drop-in `calls` times (a draft,
    then a rewrite): LangChain knows nothing of the model behind it."""

    class MyChat(BaseChatModel):
        @property
        def _llm_type(self) -> str:
            return "mychat"

        def _generate(
            self, messages: Any, stop: Any = None, run_manager: Any = None, **kw: Any
        ) -> ChatResult:
            text = str(messages[-1].content)
            for _ in range(calls):
                reply = client.messages.create(
                    model="claude-haiku-4-5",
                    max_tokens=50,
                    messages=[{"role": "user", "content": text}],
                    **call_options,
                )
                text = reply.content[0].text
            return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text))])

        def _stream(
            self, messages: Any, stop: Any = None, run_manager: Any = None, **kw: Any
        ) -> Iterator[ChatGenerationChunk]:
            with client.messages.stream(
                model="claude-haiku-4-5",
                max_tokens=50,
                messages=[{"role": "user", "content": str(messages[-1].content)}],
                **call_options,
            ) as stream:
                for text in stream.text_stream:
                    yield ChatGenerationChunk(message=AIMessageChunk(content=text))

    return MyChat()


def _generations(events: Any) -> list[dict[str, Any]]:
    return [e for e in events() if e["event"] == "$ai_generation"]


# -- LangChain: a custom chat model on the Anthropic drop-in -------------------------------------


def test_a_private_drop_in_call_keeps_the_langchain_generation_private(
    handler: Any, anthropic_standin: AnthropicStandIn, events: Any
) -> None:
    model = _chat_model(_anthropic(anthropic_standin), posthog_privacy_mode=True)
    assert SECRET in str(model.invoke(SECRET, config={"callbacks": [handler]}).content)
    sent = _generations(events)
    assert len(sent) == 1  # still reported once
    props = sent[0]["properties"]
    assert props["$ai_framework"] == "langchain"
    assert "$ai_input" not in props and "$ai_output_choices" not in props
    assert SECRET not in json.dumps([e["properties"] for e in sent])
    # Private, not empty: what the model was and what it cost stays.
    assert props["$ai_model"].startswith("claude-haiku-4-5")
    assert props["$ai_input_tokens"] > 0 and props["$ai_output_tokens"] > 0


def test_a_private_drop_in_client_keeps_the_langchain_generation_private(
    handler: Any, anthropic_standin: AnthropicStandIn, sink: InMemoryDestination, events: Any
) -> None:
    # Privacy set on the drop-in's own client (which receives nothing: the handler's client
    # reports the call) applies to the call wherever it is reported.
    private = Client(destination=InMemoryDestination(), privacy_mode=True)
    try:
        model = _chat_model(_anthropic(anthropic_standin, posthog_client=private))
        model.invoke(SECRET, config={"callbacks": [handler]})
        sent = _generations(events)
        assert [e["properties"]["$ai_framework"] for e in sent] == ["langchain"]
        assert SECRET not in json.dumps(sent[0]["properties"])
    finally:
        private.shutdown(5)


def test_the_langchain_generation_takes_the_model_provider_and_tokens_the_call_read(
    handler: Any, anthropic_standin: AnthropicStandIn, events: Any
) -> None:
    model = _chat_model(_anthropic(anthropic_standin))
    model.invoke("Owls?", config={"callbacks": [handler]})
    [event] = _generations(events)
    props = event["properties"]
    assert props["$ai_framework"] == "langchain"
    assert props["$ai_model"].startswith("claude-haiku-4-5")
    # The drop-in's provider, not the one LangChain makes up from the class name ("my").
    assert props["$ai_provider"] == "anthropic"
    assert props["$ai_base_url"] == anthropic_standin.base_url.rstrip("/")
    assert props["$ai_input_tokens"] > 0 and props["$ai_output_tokens"] > 0
    assert props["$ai_stop_reason"] == "end_turn"
    assert props["$ai_http_status"] == 200
    # Not private: the framework's own content stays.
    assert props["$ai_input"][-1]["content"] == "Owls?"


def test_a_langchain_generation_of_two_drop_in_calls_sums_their_tokens(
    handler: Any, anthropic_standin: AnthropicStandIn, sink: InMemoryDestination, events: Any
) -> None:
    # Each call alone first, as the drop-in reports it outside any framework: the reference.
    client = _anthropic(anthropic_standin)
    first = client.messages.create(
        model="claude-haiku-4-5", max_tokens=50, messages=[{"role": "user", "content": "Owls?"}]
    )
    client.messages.create(
        model="claude-haiku-4-5",
        max_tokens=50,
        messages=[{"role": "user", "content": first.content[0].text}],
    )
    alone = _generations(events)
    assert len(alone) == 2
    sink.clear()

    _chat_model(client, calls=2).invoke("Owls?", config={"callbacks": [handler]})
    [event] = _generations(events)
    props = event["properties"]
    for key in ("$ai_input_tokens", "$ai_output_tokens"):
        assert props[key] == sum(e["properties"][key] for e in alone)


def test_the_drop_in_calls_own_properties_and_user_reach_the_langchain_generation(
    handler: Any, anthropic_standin: AnthropicStandIn, events: Any
) -> None:
    model = _chat_model(
        _anthropic(anthropic_standin),
        posthog_properties={"feature": "owl-facts"},
        posthog_distinct_id="user-42",
    )
    model.invoke("Owls?", config={"callbacks": [handler]})
    sent = events()
    [generation] = [e for e in sent if e["event"] == "$ai_generation"]
    assert generation["properties"]["feature"] == "owl-facts"
    assert generation["distinct_id"] == "user-42"
    assert generation["properties"]["$ai_framework"] == "langchain"


def test_a_streamed_langchain_generation_keeps_a_private_streamed_call_private(
    handler: Any, anthropic_standin: AnthropicStandIn, events: Any
) -> None:
    model = _chat_model(_anthropic(anthropic_standin), posthog_privacy_mode=True)
    text = "".join(str(c.content) for c in model.stream(SECRET, config={"callbacks": [handler]}))
    assert SECRET in text
    [event] = _generations(events)
    props = event["properties"]
    assert SECRET not in json.dumps(props)
    assert props["$ai_model"].startswith("claude-haiku-4-5")
    assert props["$ai_output_tokens"] > 0


def test_a_langchain_model_that_knows_its_model_and_usage_keeps_them(
    handler: Any, anthropic_standin: AnthropicStandIn, events: Any
) -> None:
    # Facts the framework has win: a model that reports its own model name and usage.
    client = _anthropic(anthropic_standin)

    class Known(BaseChatModel):
        @property
        def _llm_type(self) -> str:
            return "known"

        def _generate(
            self, messages: Any, stop: Any = None, run_manager: Any = None, **kw: Any
        ) -> ChatResult:
            reply = client.messages.create(
                model="claude-haiku-4-5",
                max_tokens=50,
                messages=[{"role": "user", "content": "Owls?"}],
                posthog_properties={"feature": "owl-facts"},
            )
            message = AIMessage(
                content=reply.content[0].text,
                usage_metadata={"input_tokens": 1000, "output_tokens": 7, "total_tokens": 1007},
                response_metadata={"model_name": "my-gateway-model"},
            )
            return ChatResult(generations=[ChatGeneration(message=message)])

    Known().invoke("Owls?", config={"callbacks": [handler]})
    [event] = _generations(events)
    props = event["properties"]
    assert props["$ai_model"] == "my-gateway-model"
    assert (props["$ai_input_tokens"], props["$ai_output_tokens"]) == (1000, 7)
    assert props["feature"] == "owl-facts"  # the call's arguments still reach it


# -- LlamaIndex: a CustomLLM on the OpenAI drop-in ------------------------------------------------


class DropInLLM(CustomLLM):
    """A custom LLM asking the OpenAI drop-in `calls` times per completion."""

    client: Any = None
    calls: int = 1
    call_options: dict[str, Any] = {}

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata()  # says nothing of the model behind it

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        text = prompt
        for _ in range(self.calls):
            reply = self.client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": text}],
                **self.call_options,
            )
            text = reply.choices[0].message.content or ""
        return CompletionResponse(text=text)

    @llm_completion_callback()
    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        def gen() -> Iterator[CompletionResponse]:
            text = ""
            stream = self.client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": prompt}],
                stream=True,
                stream_options={"include_usage": True},
                **self.call_options,
            )
            for chunk in stream:
                delta = chunk.choices[0].delta.content if chunk.choices else None
                if delta:
                    text += delta
                    yield CompletionResponse(text=text, delta=delta)

        return gen()


@pytest.fixture
def li_handler(default_client: Client) -> Iterator[None]:
    posthog_li.set_global_handler(default_client)
    try:
        yield
    finally:
        posthog_li.remove_global_handler()


def test_the_llama_index_generation_takes_the_model_provider_and_tokens_the_call_read(
    li_handler: None, openai_client: Any, sink: InMemoryDestination, events: Any
) -> None:
    # The same call alone, as the drop-in reports it outside any framework: the reference.
    openai_client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Owls?"}]
    )
    [alone] = [e["properties"] for e in _generations(events)]
    sink.clear()

    assert DropInLLM(client=openai_client).complete("Owls?").text
    [event] = _generations(events)
    props = event["properties"]
    assert props["$ai_framework"] == "llama-index"
    # The served model, not the class name LlamaIndex falls back to.
    assert props["$ai_model"].startswith("gpt-4o-mini")
    for key in ("$ai_model", "$ai_provider", "$ai_base_url", "$ai_input_tokens"):
        assert props[key] == alone[key]
    assert props["$ai_input_tokens"] > 0 and props["$ai_output_tokens"] > 0
    assert props["$ai_stop_reason"] == "stop"
    assert props["$ai_input"]  # not private: LlamaIndex's own content stays


def test_a_llama_index_generation_of_two_drop_in_calls_sums_their_tokens(
    li_handler: None, openai_client: Any, sink: InMemoryDestination, events: Any
) -> None:
    first = openai_client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Owls?"}]
    )
    openai_client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": first.choices[0].message.content}],
    )
    alone = _generations(events)
    assert len(alone) == 2
    sink.clear()

    DropInLLM(client=openai_client, calls=2).complete("Owls?")
    [event] = _generations(events)
    props = event["properties"]
    for key in ("$ai_input_tokens", "$ai_output_tokens"):
        assert props[key] == sum(e["properties"][key] for e in alone)


def test_a_private_drop_in_call_keeps_the_llama_index_generation_private(
    li_handler: None, openai_client: Any, events: Any
) -> None:
    llm = DropInLLM(
        client=openai_client,
        call_options={"posthog_privacy_mode": True, "posthog_properties": {"feature": "owls"}},
    )
    assert SECRET in llm.complete(SECRET).text
    # Streamed: the request is made lazily, after the LLM's span ended.
    assert SECRET in "".join(r.delta or "" for r in llm.stream_complete(SECRET))
    sent = _generations(events)
    assert [e["properties"]["$ai_framework"] for e in sent] == ["llama-index"] * 2
    for event in sent:
        props = event["properties"]
        assert SECRET not in json.dumps(props)
        assert props["feature"] == "owls"
        assert props["$ai_model"].startswith("gpt-4o-mini")
        assert props["$ai_output_tokens"] > 0


def test_a_llama_index_chat_folding_its_complete_keeps_the_calls_facts(
    li_handler: None, openai_client: Any, events: Any
) -> None:
    # CustomLLM.chat() calls complete(): one generation, with the drop-in call's facts.
    from llama_index.core.llms import ChatMessage

    llm = DropInLLM(client=openai_client, call_options={"posthog_privacy_mode": True})
    assert SECRET in str(llm.chat([ChatMessage(role="user", content=SECRET)]).message.content)
    [event] = _generations(events)
    props = event["properties"]
    assert SECRET not in json.dumps(props)
    assert props["$ai_model"].startswith("gpt-4o-mini")
    assert props["$ai_input_tokens"] > 0


def test_a_private_drop_in_call_in_a_chains_model_keeps_its_generation_private(
    handler: Any, anthropic_standin: AnthropicStandIn, events: Any
) -> None:
    from langchain_core.prompts import ChatPromptTemplate

    model = _chat_model(_anthropic(anthropic_standin), posthog_privacy_mode=True)
    chain = ChatPromptTemplate.from_template("Tell me about {topic}") | model
    chain.invoke({"topic": SECRET}, config={"callbacks": [handler]})
    sent = events()
    [generation] = [e["properties"] for e in sent if e["event"] == "$ai_generation"]
    assert generation["$ai_framework"] == "langchain"
    assert SECRET not in json.dumps(generation)
    assert generation["$ai_model"].startswith("claude-haiku-4-5")
    # The call's privacy is its generation's: the chain's own steps are the chain's.
    assert len({e["properties"]["$ai_trace_id"] for e in sent}) == 1


def test_a_streamed_openai_call_the_model_reports_goes_out_as_the_model_built_it(
    handler: Any, openai_client: Any, standin: Any, events: Any
) -> None:
    # Reported by LangChain's generation, the drop-in call asks for no usage chunk on its
    # behalf: an OpenAI-compatible server that refuses `stream_options` keeps working.
    class StreamingChat(BaseChatModel):
        @property
        def _llm_type(self) -> str:
            return "streamingchat"

        def _generate(
            self, messages: Any, stop: Any = None, run_manager: Any = None, **kw: Any
        ) -> ChatResult:
            stream = openai_client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": str(messages[-1].content)}],
                stream=True,
            )
            text = "".join(
                chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices
            )
            return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text))])

    assert StreamingChat().invoke("Owls?", config={"callbacks": [handler]}).content
    (request,) = [r for r in standin.requests if r["path"].endswith("/chat/completions")]
    assert "stream_options" not in request.body
    (generation,) = _generations(events)
    assert generation["properties"]["$ai_model"].startswith("gpt-4o-mini")
