"""Spans built with the real OpenTelemetry SDK, one per GenAI operation kind."""

from __future__ import annotations

import json

import pytest
from opentelemetry.trace import Status, StatusCode

from tests.support.events import only

from .conftest import messages

CHAT = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o"}


def test_an_agent_with_a_chat_call_and_a_tool_call(tracer, events):
    with tracer.start_as_current_span(
        "invoke_agent Weather",
        attributes={
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": "Weather",
            "gen_ai.provider.name": "openai",
            "gen_ai.conversation.id": "conv-7",
        },
    ) as agent:
        with tracer.start_as_current_span(
            "chat gpt-4o-mini",
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
                "gen_ai.request.temperature": 0.2,
                "gen_ai.request.max_tokens": 200,
                "gen_ai.request.stop_sequences": ("END",),
                "gen_ai.usage.input_tokens": 31,
                "gen_ai.usage.output_tokens": 9,
                "gen_ai.usage.cache_read.input_tokens": 12,
                "gen_ai.response.finish_reasons": ("tool_calls",),
                "gen_ai.system_instructions": json.dumps(
                    [{"type": "text", "content": "You report the weather."}]
                ),
                "gen_ai.input.messages": messages(("user", "Weather in Paris?")),
                "gen_ai.output.messages": json.dumps(
                    [
                        {
                            "role": "assistant",
                            "parts": [
                                {
                                    "type": "tool_call",
                                    "id": "call_1",
                                    "name": "get_weather",
                                    "arguments": {"city": "Paris"},
                                },
                                {  # no id, and text that is not ASCII
                                    "type": "tool_call",
                                    "name": "get_weather",
                                    "arguments": {"city": "Zürich"},
                                },
                            ],
                            "finish_reason": "tool_call",
                        }
                    ]
                ),
                "gen_ai.tool.definitions": json.dumps(
                    [{"type": "function", "name": "get_weather", "parameters": {}}]
                ),
                "server.address": "api.openai.com",
                "server.port": 443,
            },
        ):
            pass
        with tracer.start_as_current_span(
            "execute_tool get_weather",
            attributes={
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": "get_weather",
                "gen_ai.tool.call.id": "call_1",
                "gen_ai.tool.call.arguments": '{"city": "Paris"}',
                "gen_ai.tool.call.result": "sunny",
            },
        ):
            pass
        agent.set_attribute("output.value", "It is sunny in Paris.")

    trace_id = format(agent.get_span_context().trace_id, "032x")
    agent_id = format(agent.get_span_context().span_id, "016x")
    found = events()
    assert {e["properties"]["$ai_trace_id"] for e in found} == {trace_id}
    trace = only(events("$ai_trace"))
    assert trace["$ai_span_name"] == "Weather"
    assert trace["$ai_output_state"] == "It is sunny in Paris."
    assert trace["$ai_session_id"] == "conv-7"
    gen = only(events("$ai_generation"))
    assert gen["$ai_parent_id"] == trace_id  # the agent is the root: it is the trace
    assert gen["$ai_model"] == "gpt-4o-mini-2024-07-18"
    assert gen["$ai_provider"] == "openai"
    assert gen["$ai_base_url"] == "https://api.openai.com"
    assert gen["$ai_model_parameters"] == {"temperature": 0.2, "max_tokens": 200, "stop": ["END"]}
    assert (gen["$ai_input_tokens"], gen["$ai_output_tokens"]) == (31, 9)
    assert gen["$ai_cache_read_input_tokens"] == 12
    assert gen["$ai_stop_reason"] == "tool_calls"
    assert gen["$ai_input"] == [
        {"role": "system", "content": "You report the weather."},
        {"role": "user", "content": "Weather in Paris?"},
    ]
    # The OpenAI drop-in's shape: tool calls as the message's `tool_calls`, no null id, the
    # arguments as written.
    assert gen["$ai_output_choices"] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "type": "function",
                    "id": "call_1",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                },
                {
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Zürich"}'},
                },
            ],
        }
    ]
    assert gen["$ai_tools"][0]["name"] == "get_weather"
    assert gen["$ai_latency"] >= 0
    tool = only(events("$ai_span"))
    assert tool["$ai_span_name"] == "get_weather"
    assert tool["$ai_span_type"] == "tool"
    assert tool["$ai_input_state"] == {"city": "Paris"}
    assert tool["$ai_output_state"] == "sunny"
    assert tool["$ai_parent_id"] == trace_id
    assert agent_id not in {e["properties"].get("$ai_span_id") for e in found}


def test_text_completion_with_indexed_prompt_attributes_and_events(tracer, events):
    with tracer.start_as_current_span("run"):
        with tracer.start_as_current_span(
            "text_completion davinci",
            attributes={
                "gen_ai.operation.name": "text_completion",
                "gen_ai.system": "az.ai.openai",
                "gen_ai.request.model": "davinci-002",
                "gen_ai.usage.prompt_tokens": 4,
                "gen_ai.usage.completion_tokens": 6,
                "gen_ai.prompt.0.role": "user",
                "gen_ai.prompt.0.content": "Say hi",
                "gen_ai.completion.0.role": "assistant",
                "gen_ai.completion.0.content": "hi there",
            },
        ):
            pass
        with tracer.start_as_current_span(
            "chat claude",
            attributes={"gen_ai.operation.name": "chat", "gen_ai.system": "anthropic"},
        ) as chat:
            chat.add_event("gen_ai.user.message", {"content": "Hello"})
            chat.add_event(
                "gen_ai.choice",
                {"index": 0, "finish_reason": "stop", "message": '{"content": "Hi!"}'},
            )
    completion, chat_gen = (e["properties"] for e in events("$ai_generation"))
    assert completion["$ai_provider"] == "azure"
    assert completion["$ai_input"] == [{"role": "user", "content": "Say hi"}]
    assert completion["$ai_output_choices"] == [{"role": "assistant", "content": "hi there"}]
    assert (completion["$ai_input_tokens"], completion["$ai_output_tokens"]) == (4, 6)
    assert chat_gen["$ai_provider"] == "anthropic"
    assert chat_gen["$ai_input"] == [{"role": "user", "content": "Hello"}]
    assert chat_gen["$ai_output_choices"] == [{"role": "assistant", "content": "Hi!"}]
    trace = only(events("$ai_trace"))
    assert trace["$ai_span_name"] == "run"


def test_content_on_the_operation_details_event_is_the_calls_input_and_output(tracer, events):
    # The conventions since 1.37 may carry a call's content on this event, not the span.
    with tracer.start_as_current_span(
        "chat gpt-4o",
        attributes={**CHAT, "gen_ai.provider.name": "openai", "gen_ai.usage.input_tokens": 5},
    ) as chat:
        chat.add_event(
            "gen_ai.client.inference.operation.details",
            {
                "gen_ai.system_instructions": json.dumps([{"type": "text", "content": "Be kind"}]),
                "gen_ai.input.messages": messages(("user", "Hi")),
                "gen_ai.output.messages": json.dumps(
                    [
                        {
                            "role": "assistant",
                            "parts": [{"type": "text", "content": "Hello"}],
                            "finish_reason": "stop",
                        }
                    ]
                ),
                "gen_ai.usage.input_tokens": 999,  # the span's own value wins
            },
        )
    generation = only(events("$ai_generation"))
    assert generation["$ai_input"] == [
        {"role": "system", "content": "Be kind"},
        {"role": "user", "content": "Hi"},
    ]
    assert generation["$ai_output_choices"] == [{"role": "assistant", "content": "Hello"}]
    assert generation["$ai_stop_reason"] == "stop"
    assert generation["$ai_input_tokens"] == 5


def test_embeddings_and_create_agent(tracer, events):
    with tracer.start_as_current_span(
        "create_agent Helper",
        attributes={"gen_ai.operation.name": "create_agent", "gen_ai.agent.name": "Helper"},
    ):
        pass
    with tracer.start_as_current_span("ingest"):
        with tracer.start_as_current_span(
            "embeddings text-embedding-3-small",
            attributes={
                "gen_ai.operation.name": "embeddings",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "text-embedding-3-small",
                "gen_ai.usage.input_tokens": 8,
                "gen_ai.embeddings.dimension.count": 256,
            },
        ):
            pass
    embedding = only(events("$ai_embedding"))
    assert embedding["$ai_model"] == "text-embedding-3-small"
    assert embedding["$ai_input_tokens"] == 8
    assert embedding["$ai_model_parameters"] == {"dimensions": 256}
    traces = sorted(e["properties"]["$ai_span_name"] for e in events("$ai_trace"))
    assert traces == ["Helper", "ingest"]
    assert not events("$ai_span")  # a root is its trace, not also a span


def test_a_failed_call_is_an_error_with_its_exception_and_no_secret(tracer, events):
    try:
        with tracer.start_as_current_span(
            "chat gpt-4o",
            attributes={"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o"},
        ):
            raise PermissionError("Incorrect API key provided: sk-proj-abcdefghijklmnopqrstuv")
    except PermissionError:
        pass
    with tracer.start_as_current_span(
        "chat gpt-4o", attributes={"gen_ai.operation.name": "chat", "error.type": "timeout"}
    ) as span:
        span.set_status(Status(StatusCode.ERROR, "timed out after 30s"))
    failed, timed_out = (e["properties"] for e in events("$ai_generation"))
    assert failed["$ai_is_error"] is True
    assert failed["$ai_error"].startswith("PermissionError: Incorrect API key provided:")
    assert "sk-proj" not in failed["$ai_error"]
    assert timed_out["$ai_error"] == "timeout: timed out after 30s"
    traces = [e["properties"] for e in events("$ai_trace")]
    assert all(t["$ai_is_error"] is True for t in traces)


def ended(tracer, name: str, attributes: dict) -> None:
    """One span with `attributes`, started and ended."""
    with tracer.start_as_current_span(name, attributes=attributes):
        pass


def generations(events) -> dict[str, dict]:
    return {e["properties"]["$ai_span_name"]: e["properties"] for e in events("$ai_generation")}


def test_the_stop_reason_is_read_wherever_a_convention_puts_it(tracer, events):
    last = {"role": "assistant", "parts": [{"type": "text", "content": "hi"}]}
    output = json.dumps(
        [{**last, "finish_reason": "tool_call"}, {**last, "finish_reason": "length"}]
    )
    ended(tracer, "messages", {**CHAT, "gen_ai.output.messages": output})
    ended(
        tracer,
        "indexed",
        {
            **CHAT,
            "gen_ai.completion.0.role": "assistant",
            "gen_ai.completion.0.content": "hi",
            "gen_ai.completion.0.finish_reason": "stop",
        },
    )
    with tracer.start_as_current_span("event", attributes=CHAT) as span:
        span.add_event("gen_ai.choice", {"index": 0, "finish_reason": "content_filter"})
    ended(
        tracer,
        "both",
        {
            **CHAT,
            "gen_ai.response.finish_reasons": ("stop",),
            "gen_ai.output.messages": output,
        },
    )
    found = generations(events)
    assert {name: p.get("$ai_stop_reason") for name, p in found.items()} == {
        "messages": "length",
        "indexed": "stop",
        "event": "content_filter",
        "both": "stop",
    }


def test_openllmetry_function_definitions_are_the_tools(tracer, events):
    ended(
        tracer,
        "openai.chat",
        {
            "llm.request.type": "chat",
            "gen_ai.system": "openai",
            "gen_ai.request.model": "gpt-4o",
            "llm.request.functions.0.name": "get_weather",
            "llm.request.functions.0.description": "Weather in a city",
            "llm.request.functions.0.parameters": '{"type": "object", "properties": {}}',
            "llm.request.functions.1.name": "now",
            "llm.request.functions.1.parameters": "not json",  # the fact dropped, not the tool
            "llm.request.functions.2.description": "no name: not a definition",
        },
    )
    assert only(events("$ai_generation"))["$ai_tools"] == [
        {
            "type": "function",
            "name": "get_weather",
            "description": "Weather in a city",
            "parameters": {"type": "object", "properties": {}},
        },
        {"type": "function", "name": "now"},
    ]


def test_a_negative_token_count_is_left_out(tracer, events):
    ended(
        tracer, "chat", {**CHAT, "gen_ai.usage.input_tokens": -5, "gen_ai.usage.output_tokens": 0}
    )
    ended(
        tracer,
        "embeddings",
        {"gen_ai.operation.name": "embeddings", "gen_ai.usage.input_tokens": "-1"},
    )
    gen = only(events("$ai_generation"))
    assert "$ai_input_tokens" not in gen
    assert gen["$ai_output_tokens"] == 0  # a reported 0 stays
    assert "$ai_input_tokens" not in only(events("$ai_embedding"))


def test_the_older_azure_ai_inference_provider_value_is_azure(tracer, events):
    ended(tracer, "chat", {**CHAT, "gen_ai.system": "az.ai.inference"})
    assert only(events("$ai_generation"))["$ai_provider"] == "azure"


def test_messages_that_are_plain_text_are_kept_as_one_message(tracer, events):
    ended(
        tracer,
        "chat",
        {
            **CHAT,
            "gen_ai.input.messages": "What is the weather in Paris?",
            "gen_ai.output.messages": "Sunny.",
        },
    )
    gen = only(events("$ai_generation"))
    assert gen["$ai_input"] == [{"role": "user", "content": "What is the weather in Paris?"}]
    assert gen["$ai_output_choices"] == [{"role": "assistant", "content": "Sunny."}]


ANTHROPIC_CACHED = {
    "gen_ai.operation.name": "chat",
    "gen_ai.request.model": "claude-sonnet-4-6",
    "gen_ai.usage.input_tokens": 130,  # the conventions' total: the cache counts are in it
    "gen_ai.usage.output_tokens": 5,
    "gen_ai.usage.cache_read.input_tokens": 100,
    "gen_ai.usage.cache_creation.input_tokens": 20,
}


@pytest.mark.parametrize("provider_key", ["gen_ai.provider.name", "gen_ai.system"])
def test_anthropic_input_tokens_leave_the_cache_out_as_posthog_reads_them(
    tracer, events, provider_key
):
    ended(tracer, "chat", {**ANTHROPIC_CACHED, provider_key: "anthropic"})
    gen = only(events("$ai_generation"))
    assert gen["$ai_provider"] == "anthropic"
    assert (
        gen["$ai_input_tokens"],
        gen["$ai_cache_read_input_tokens"],
        gen["$ai_cache_creation_input_tokens"],
        gen["$ai_output_tokens"],
    ) == (10, 100, 20, 5)


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        # OpenAI's and Gemini's input counts include the cache in PostHog's model too.
        (
            {
                **ANTHROPIC_CACHED,
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o",
            },
            130,
        ),
        # Claude on Bedrock or Vertex: PostHog prices the model Anthropic's way, whoever serves it.
        ({**ANTHROPIC_CACHED, "gen_ai.provider.name": "aws.bedrock"}, 10),
        (
            {
                **ANTHROPIC_CACHED,
                "gen_ai.provider.name": "gcp.vertex_ai",
                "gen_ai.request.model": "claude-haiku-4-5@20251001",
            },
            10,
        ),
        (
            {
                "openinference.span.kind": "LLM",
                "llm.provider": "aws",
                "llm.model_name": "us.anthropic.claude-haiku-4-5-20251001-v1:0",
                "llm.token_count.prompt": 130,
                "llm.token_count.prompt_details.cache_read": 100,
                "llm.token_count.prompt_details.cache_write": 20,
            },
            10,
        ),
        # Anthropic without cache counts; and cache counts larger than the input (never < 0).
        ({**CHAT, "gen_ai.provider.name": "anthropic", "gen_ai.usage.input_tokens": 7}, 7),
        (
            {
                **ANTHROPIC_CACHED,
                "gen_ai.provider.name": "anthropic",
                "gen_ai.usage.input_tokens": 50,
            },
            0,
        ),
        # The newest conventions' name for cache writes.
        (
            {
                **CHAT,
                "gen_ai.provider.name": "anthropic",
                "gen_ai.usage.input_tokens": 40,
                "gen_ai.usage.cache_write.input_tokens": 25,
            },
            15,
        ),
        # OpenInference: `llm.token_count.prompt` is the whole prompt, cache included.
        (
            {
                "openinference.span.kind": "LLM",
                "llm.provider": "anthropic",
                "llm.model_name": "claude-sonnet-4-6",
                "llm.token_count.prompt": 130,
                "llm.token_count.prompt_details.cache_read": 100,
                "llm.token_count.prompt_details.cache_write": 20,
            },
            10,
        ),
        # A cache count of another convention is not part of this input's total.
        (
            {
                **CHAT,
                "gen_ai.provider.name": "anthropic",
                "gen_ai.usage.input_tokens": 30,
                "ai.usage.cachedInputTokens": 100,
            },
            30,
        ),
    ],
    ids=[
        "openai",
        "claude-on-bedrock",
        "claude-on-vertex",
        "openinference-claude-on-bedrock",
        "no-cache",
        "never-below-zero",
        "cache-write",
        "openinference",
        "other-convention",
    ],
)
def test_which_input_counts_leave_the_cache_out(tracer, events, attributes, expected):
    ended(tracer, "chat", attributes)
    assert only(events("$ai_generation"))["$ai_input_tokens"] == expected


def test_the_http_status_is_the_spans_or_200_for_a_call_that_did_not_fail(tracer, events):
    ended(tracer, "chat ok", CHAT)
    ended(tracer, "chat stated", {**CHAT, "http.response.status_code": 201})
    ended(tracer, "embeddings", {"gen_ai.operation.name": "embeddings"})
    ended(
        tracer,
        "chat refused",
        {**CHAT, "error.type": "RateLimitError", "http.response.status_code": "429"},
    )
    ended(tracer, "chat failed", {**CHAT, "error.type": "timeout"})
    status = {
        e["properties"]["$ai_span_name"]: e["properties"].get("$ai_http_status")
        for e in events()
        if e["event"] in ("$ai_generation", "$ai_embedding")
    }
    assert status == {
        "chat ok": 200,
        "chat stated": 201,
        "embeddings": 200,
        "chat refused": 429,
        "chat failed": None,  # an error without a status: unknown, not 200
    }


def test_tool_calls_and_results_in_parts_read_as_the_openai_drop_in_sends_them(tracer, events):
    history = [
        {"role": "user", "parts": [{"type": "text", "content": "Weather in Paris?"}]},
        {
            "role": "assistant",
            "parts": [
                {"type": "text", "content": ""},  # an empty text beside the call (OpenLLMetry)
                {"type": "tool_call", "id": "c1", "name": "get_weather", "arguments": {"c": 1}},
            ],
        },
        {
            "role": "tool",
            "parts": [{"type": "tool_call_response", "id": "c1", "response": "sunny"}],
        },
    ]
    with tracer.start_as_current_span(
        "chat",
        attributes={"gen_ai.operation.name": "chat", "gen_ai.input.messages": json.dumps(history)},
    ):
        pass
    (gen,) = [e["properties"] for e in events("$ai_generation")]
    assert gen["$ai_input"] == [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "type": "function",
                    "id": "c1",
                    "function": {"name": "get_weather", "arguments": '{"c": 1}'},
                }
            ],
        },
        {"role": "tool", "content": "sunny", "tool_call_id": "c1"},
    ]


def test_the_older_indexed_messages_keep_their_tool_calls_and_the_calls_they_answer(tracer, events):
    with tracer.start_as_current_span(
        "openai.chat",
        attributes={
            "llm.request.type": "chat",
            "gen_ai.system": "openai",
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.prompt.0.role": "user",
            "gen_ai.prompt.0.content": "Weather in Rome?",
            "gen_ai.prompt.1.role": "assistant",
            "gen_ai.prompt.1.tool_calls.0.id": "call_1",
            "gen_ai.prompt.1.tool_calls.0.name": "get_weather",
            "gen_ai.prompt.1.tool_calls.0.arguments": '{"city": "Rome"}',
            "gen_ai.prompt.2.role": "tool",
            "gen_ai.prompt.2.content": "sunny",
            "gen_ai.prompt.2.tool_call_id": "call_1",
            "gen_ai.completion.0.role": "assistant",
            "gen_ai.completion.0.finish_reason": "tool_calls",
            "gen_ai.completion.0.tool_calls.0.id": "call_2",
            "gen_ai.completion.0.tool_calls.0.name": "get_forecast",
            "gen_ai.completion.0.tool_calls.0.arguments": '{"days": 3}',
        },
    ):
        pass
    gen = only(events("$ai_generation"))
    assert gen["$ai_input"] == [
        {"role": "user", "content": "Weather in Rome?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "type": "function",
                    "id": "call_1",
                    "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
                }
            ],
        },
        {"role": "tool", "content": "sunny", "tool_call_id": "call_1"},
    ]
    assert gen["$ai_output_choices"] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "type": "function",
                    "id": "call_2",
                    "function": {"name": "get_forecast", "arguments": '{"days": 3}'},
                }
            ],
        }
    ]


def test_message_events_keep_their_tool_calls_and_the_calls_they_answer(tracer, events):
    call = {"id": "c1", "type": "function", "function": {"name": "w", "arguments": "{}"}}
    with tracer.start_as_current_span("chat", attributes=CHAT) as span:
        span.add_event("gen_ai.user.message", {"content": "Weather?"})
        span.add_event("gen_ai.assistant.message", {"tool_calls": json.dumps([call])})
        span.add_event("gen_ai.tool.message", {"content": "sunny", "id": "c1"})
    assert only(events("$ai_generation"))["$ai_input"] == [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "content": "sunny", "tool_call_id": "c1"},
    ]


@pytest.mark.parametrize("key", ["gen_ai.tool.definitions", "ai.prompt.tools"])
def test_tool_definitions_given_as_an_array_of_json_texts_are_tool_objects(tracer, events, key):
    tool = {"type": "function", "name": "weather", "parameters": {"type": "object"}}
    with tracer.start_as_current_span("chat", attributes={**CHAT, key: (json.dumps(tool),)}):
        pass
    assert only(events("$ai_generation"))["$ai_tools"] == [tool]
