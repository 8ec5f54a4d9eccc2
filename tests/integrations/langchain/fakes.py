"""Chat models built on langchain-core's own fakes, with the facts real providers report.

They are real LangChain chat models (callbacks, streaming and async all go through
langchain-core); they only answer from a script instead of calling an API.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.output_parsers import StrOutputParser
from langchain_core.outputs import ChatGenerationChunk
from langchain_core.prompts import ChatPromptTemplate

USAGE = {"input_tokens": 25, "output_tokens": 10, "total_tokens": 35}


def reply(content: str = "Owls eat mice.", **kwargs: Any) -> AIMessage:
    kwargs.setdefault("usage_metadata", USAGE)
    return AIMessage(content=content, **kwargs)


class ProviderChatModel(GenericFakeChatModel):
    """A fake chat model that reports a provider, a model, parameters and a base URL.

    Streaming yields the content word by word and then a last chunk with the usage and the
    response metadata, as OpenAI's and Anthropic's integrations do.
    """

    provider: str = "openai"
    model_name: str = "gpt-4o-mini"
    base_url: str | None = None
    temperature: float | None = 0.2
    max_tokens: int | None = 256
    error: Any = None

    @property
    def _identifying_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"model_name": self.model_name}
        if self.base_url:
            params["base_url"] = self.base_url
        if self.temperature is not None:
            params["temperature"] = self.temperature
        if self.max_tokens is not None:
            params["max_tokens"] = self.max_tokens
        params["api_key"] = "sk-secret-never-sent"
        return params

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> dict[str, Any]:
        params: dict[str, Any] = {
            "ls_provider": self.provider,
            "ls_model_name": self.model_name,
            "ls_model_type": "chat",
        }
        if self.temperature is not None:
            params["ls_temperature"] = self.temperature
        if stop:
            params["ls_stop"] = stop
        return params

    def _generate(self, messages: Any, stop: Any = None, run_manager: Any = None, **kwargs: Any):
        if self.error is not None:
            raise self.error
        return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)

    def _stream(
        self, messages: Any, stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> Iterator[ChatGenerationChunk]:
        if self.error is not None:
            raise self.error
        message = next(self.messages)
        message = AIMessage(content=message) if isinstance(message, str) else message
        words = str(message.content).split(" ")
        for i, word in enumerate(words):
            token = word if i == 0 else " " + word
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=token, id=message.id))
            if run_manager:
                run_manager.on_llm_new_token(token, chunk=chunk)
            yield chunk
        last = ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                id=message.id,
                usage_metadata=message.usage_metadata,
                response_metadata=message.response_metadata,
                tool_call_chunks=[
                    {
                        "name": call["name"],
                        "args": __import__("json").dumps(call["args"]),
                        "id": call["id"],
                        "index": i,
                    }
                    for i, call in enumerate(message.tool_calls)
                ],
            )
        )
        if run_manager:
            run_manager.on_llm_new_token("", chunk=last)
        yield last


def model(*replies: Any, **fields: Any) -> ProviderChatModel:
    """A model that answers with `replies` in turn, forever."""
    return ProviderChatModel(messages=itertools.cycle(replies or [reply()]), **fields)


def chain(llm: Any = None) -> Any:
    """`prompt | model | StrOutputParser`, the chain the issue and the benchmark use."""
    prompt = ChatPromptTemplate.from_messages(
        [("system", "You are a helpful assistant."), ("human", "{question}")]
    )
    return prompt | (llm if llm is not None else model()) | StrOutputParser()


class StatusError(Exception):
    """An API error that carries an HTTP status, like openai's and anthropic's."""

    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


def by_trace(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    traces: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        traces.setdefault(event["properties"]["$ai_trace_id"], []).append(event)
    return traces


def assert_well_formed(trace_events: list[dict[str, Any]]) -> None:
    """One `$ai_trace`, one anonymous id, and every parent is the trace or a span of it."""
    traces = [e for e in trace_events if e["event"] == "$ai_trace"]
    assert len(traces) == 1
    trace_id = traces[0]["properties"]["$ai_trace_id"]
    span_ids = {e["properties"].get("$ai_span_id") for e in trace_events}
    for event in trace_events:
        props = event["properties"]
        assert props["$ai_trace_id"] == trace_id
        assert event["distinct_id"] == trace_id
        assert props["$process_person_profile"] is False
        assert props["$ai_framework"] == "langchain"
        if event["event"] != "$ai_trace":
            assert props["$ai_parent_id"] == trace_id or props["$ai_parent_id"] in span_ids
