"""What the builders read from LlamaIndex objects: usage shapes, stop reasons, providers,
parameters, messages, embedding token counts."""

from __future__ import annotations

import datetime
import types

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core.base.llms.types import (  # noqa: E402
    ChatMessage,
    ChatResponse,
    CompletionResponse,
    ImageBlock,
    TextBlock,
    ToolCallBlock,
)
from llama_index.core.llms import MockLLM  # noqa: E402
from posthog_llm.integrations.llama_index import _llm  # noqa: E402

from .fakes import TokenReportingEmbedding, UsageLLM, events  # noqa: E402


def ns(**kwargs):
    return types.SimpleNamespace(**kwargs)


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (
            CompletionResponse(
                text="x",
                raw={
                    "usage": {
                        "prompt_tokens": 10,
                        "completion_tokens": 3,
                        "prompt_tokens_details": {"cached_tokens": 4},
                        "completion_tokens_details": {"reasoning_tokens": 2},
                    }
                },
            ),
            {
                "input_tokens": 10,
                "output_tokens": 3,
                "cache_read_input_tokens": 4,
                "reasoning_tokens": 2,
            },
        ),
        (
            CompletionResponse(
                text="x",
                raw=ns(
                    usage=ns(
                        input_tokens=7,
                        output_tokens=2,
                        cache_read_input_tokens=1,
                        cache_creation_input_tokens=5,
                    )
                ),
            ),
            {
                "input_tokens": 7,
                "output_tokens": 2,
                "cache_read_input_tokens": 1,
                "cache_creation_input_tokens": 5,
            },
        ),
        (
            CompletionResponse(
                text="x", additional_kwargs={"prompt_tokens": 8, "completion_tokens": 1}
            ),
            {"input_tokens": 8, "output_tokens": 1},
        ),
        (
            CompletionResponse(
                text="x",
                raw={"usage_metadata": {"prompt_token_count": 6, "candidates_token_count": 9}},
            ),
            {"input_tokens": 6, "output_tokens": 9},
        ),
        (
            CompletionResponse(text="x", raw={"prompt_eval_count": 12, "eval_count": 4}),
            {"input_tokens": 12, "output_tokens": 4},
        ),
        (CompletionResponse(text="x"), {}),
        (CompletionResponse(text="x", raw="not a mapping"), {}),
    ],
)
def test_usage_shapes(response, expected):
    assert _llm.usage_of(response) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ({"choices": [{"finish_reason": "length"}]}, "length"),
        (ns(stop_reason="end_turn"), "end_turn"),
        ({"done_reason": "stop"}, "stop"),
        ({"candidates": [ns(finish_reason=ns(name="STOP"))]}, "STOP"),
        ({}, None),
    ],
)
def test_stop_reason(raw, reason):
    assert _llm.stop_reason_of(CompletionResponse(text="x", raw=raw)) == reason


def fake_llm(module: str, name: str = "Fake", **attrs):
    cls = type(name, (), {"__module__": module, **attrs})
    return cls()


@pytest.mark.parametrize(
    ("instance", "provider"),
    [
        (fake_llm("llama_index.llms.groq.base", "Groq"), "groq"),
        (fake_llm("llama_index.llms.anthropic.base", "Anthropic"), "anthropic"),
        (fake_llm("llama_index.llms.azure_openai.base", "AzureOpenAI"), "azure"),
        (fake_llm("llama_index.llms.openai.base", "OpenAI"), "openai"),
        (fake_llm("llama_index.llms.google_genai.base", "GoogleGenAI"), "gemini"),
        (fake_llm("llama_index.llms.vertex.base", "Vertex"), "vertex"),
        (fake_llm("llama_index.embeddings.voyageai.base", "VoyageEmbedding"), "voyage"),
        (
            fake_llm(
                "llama_index.llms.openai_like.base",
                "OpenAILike",
                api_base="http://localhost:11434/v1",
            ),
            "ollama",
        ),
        (
            fake_llm(
                "llama_index.llms.openai.base", "OpenAI", api_base="https://api.deepseek.com/v1"
            ),
            "deepseek",
        ),
        (fake_llm("my_app.models", "HomeMade"), None),
        (MockLLM(), "mock"),
    ],
)
def test_provider_from_llm_class(instance, provider):
    assert _llm.provider_of(instance) == provider


def test_model_parameters_come_from_an_allow_list():
    llm = UsageLLM(max_tokens=64)
    params = _llm.model_parameters_of(llm, {"stop": ["\n"], "api_key": "sk-x", "headers": {}})
    assert params == {"temperature": 0.25, "max_tokens": 64, "stop": ["\n"]}


def test_model_falls_back_from_raw_to_metadata_to_class():
    llm = UsageLLM()
    assert _llm.model_of(llm, CompletionResponse(text="x", raw={"model": "gpt-x"})) == "gpt-x"
    assert (
        _llm.model_of(llm, CompletionResponse(text="x"), {"model_name": "configured"})
        == "configured"
    )
    assert _llm.model_of(llm, None, {"model_name": "unknown"}) == "UsageLLM"


def test_messages_with_images_and_tool_calls():
    messages = [
        ChatMessage(
            role="user",
            blocks=[
                TextBlock(text="what is this?"),
                ImageBlock(image=b"\x89PNG...", image_mimetype="image/png"),
            ],
        ),
        ChatMessage(
            role="assistant",
            blocks=[ToolCallBlock(tool_call_id="c1", tool_name="lookup", tool_kwargs={"q": "cat"})],
        ),
        ChatMessage(
            role="assistant",
            blocks=[
                ToolCallBlock(
                    tool_name="book",
                    tool_kwargs={"city": "Zürich", "on": datetime.date(2024, 1, 2)},
                )
            ],
        ),
        ChatMessage(role="tool", content="a cat", additional_kwargs={"tool_call_id": "c1"}),
    ]
    out = _llm.messages_to_input(messages)
    assert out[0] == {
        "role": "user",
        "content": [{"type": "text", "text": "what is this?"}, {"type": "image"}],
    }
    assert out[1]["tool_calls"] == [
        {
            "type": "function",
            "id": "c1",
            "function": {"name": "lookup", "arguments": '{"q": "cat"}'},
        }
    ]
    # Arguments stay JSON text whatever they hold (a date as its text), written as given.
    assert out[2]["tool_calls"][0]["function"]["arguments"] == (
        '{"city": "Zürich", "on": "2024-01-02"}'
    )
    assert out[3] == {"role": "tool", "content": "a cat", "tool_call_id": "c1"}
    chat = ChatResponse(message=ChatMessage(role="assistant", content="done"))
    assert _llm.response_to_output(chat) == [{"role": "assistant", "content": "done"}]


def test_embedding_token_count_when_the_integration_reports_it(settings, documents, client, sink):
    from llama_index.core import Settings, VectorStoreIndex
    from posthog_llm.integrations import llama_index as posthog_li

    Settings.embed_model = TokenReportingEmbedding(embed_dim=8)
    index = VectorStoreIndex.from_documents(documents)
    posthog_li.set_global_handler(client)
    try:
        index.as_retriever().retrieve("how do cats sleep")
    finally:
        posthog_li.remove_global_handler()
    (emb,) = [e["properties"] for e in events(client, sink) if e["event"] == "$ai_embedding"]
    assert emb["$ai_input_tokens"] == 4
    assert emb["$ai_model"] == "mock-embed-3"
    assert emb["$ai_embedding_input_count"] == 1


def test_a_tool_call_in_both_a_block_and_the_kwargs_is_one_call():
    # llama-index-llms-openai 0.8 keeps each call in a ToolCallBlock and in the kwargs as well.
    openai_call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
    }
    message = ChatMessage(
        role="assistant",
        blocks=[
            ToolCallBlock(
                tool_call_id="call_1", tool_name="get_weather", tool_kwargs={"city": "Paris"}
            )
        ],
        additional_kwargs={"tool_calls": [openai_call]},
    )
    (choice,) = _llm.response_to_output(ChatResponse(message=message))
    assert [call["id"] for call in choice["tool_calls"]] == ["call_1"]
    (sent,) = _llm.messages_to_input([message])
    assert len(sent["tool_calls"]) == 1
    # A call only the kwargs hold is still kept.
    other = {**openai_call, "id": "call_2"}
    both = message.model_copy(update={"additional_kwargs": {"tool_calls": [openai_call, other]}})
    (sent,) = _llm.messages_to_input([both])
    assert [call["id"] for call in sent["tool_calls"]] == ["call_1", "call_2"]


class _JSONLLM(UsageLLM):
    """Answers with a JSON object, as a model asked for structured output does."""

    from llama_index.core.llms.callbacks import llm_completion_callback

    @llm_completion_callback()
    def complete(
        self, prompt: str, formatted: bool = False, **kwargs: object
    ) -> CompletionResponse:
        from .fakes import _raw

        return CompletionResponse(text='{"name": "Ann", "age": 3}', raw=_raw(7, 5))


def test_a_structured_llm_call_has_the_facts_of_the_model_that_ran(client, sink):
    from posthog_llm.integrations import llama_index as posthog_li
    from pydantic import BaseModel

    class Person(BaseModel):
        name: str
        age: int

    llm = _JSONLLM()
    keys = ("$ai_model", "$ai_provider", "$ai_base_url", "$ai_input_tokens", "$ai_output_tokens")
    posthog_li.set_global_handler(client)
    try:
        llm.chat([ChatMessage(role="user", content="who?")])
        plain = [e["properties"] for e in events(client, sink) if e["event"] == "$ai_generation"]
        sink.clear()
        result = llm.as_structured_llm(Person).chat([ChatMessage(role="user", content="who?")])
    finally:
        posthog_li.remove_global_handler()
    assert result.raw == Person(name="Ann", age=3)
    (wrapped,) = [e["properties"] for e in events(client, sink) if e["event"] == "$ai_generation"]
    assert wrapped["$ai_span_name"] == "StructuredLLM.chat"
    assert [wrapped.get(k) for k in keys] == [plain[0].get(k) for k in keys]
    assert wrapped["$ai_model_parameters"]["temperature"] == 0.25
