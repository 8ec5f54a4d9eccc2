"""Spans as particular producers write them (Semantic Kernel, OpenLLMetry, Azure AI, PydanticAI,
Strands, the Vercel AI SDK), built with the real OpenTelemetry SDK."""

from __future__ import annotations

import json

import pytest

from .conftest import messages

# Semantic Kernel's model diagnostics: one span per model call, named by its own operations.
_SK_OPERATIONS = [
    ("chat.completions", None),
    ("chat.streaming_completions", True),
    ("text.completions", None),
    ("text.streaming_completions", True),
]


@pytest.mark.parametrize(("operation", "stream"), _SK_OPERATIONS)
def test_semantic_kernel_model_calls_are_generations(tracer, events, operation, stream):
    with tracer.start_as_current_span(
        "invoke_agent Host",
        attributes={"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "Host"},
    ):
        with tracer.start_as_current_span(
            f"{operation} gpt-4o",
            attributes={
                "gen_ai.operation.name": operation,
                "gen_ai.system": "openai",
                "gen_ai.request.model": "gpt-4o",
                "server.address": "https://api.openai.com/v1/",
                "gen_ai.response.finish_reason": "FinishReason.STOP",
                "gen_ai.usage.input_tokens": 20,
                "gen_ai.usage.output_tokens": 5,
            },
        ):
            pass
    assert not events("$ai_span")
    (generation,) = [e["properties"] for e in events("$ai_generation")]
    assert generation["$ai_model"] == "gpt-4o"
    assert generation["$ai_provider"] == "openai"
    assert generation["$ai_input_tokens"] == 20
    assert generation["$ai_output_tokens"] == 5
    assert generation.get("$ai_stream") is stream
    assert generation["$ai_stop_reason"] == "stop"
    assert generation["$ai_base_url"] == "https://api.openai.com/v1"


def test_openllmetry_embedding_texts_legacy_prompts_and_streaming(tracer, events):
    with tracer.start_as_current_span(
        "rag.workflow", attributes={"traceloop.span.kind": "workflow"}
    ):
        with tracer.start_as_current_span(
            "openai.embeddings",
            attributes={
                "llm.request.type": "embedding",
                "gen_ai.system": "openai",
                "gen_ai.request.model": "text-embedding-3-small",
                "gen_ai.prompt.0.content": "hello",
                "gen_ai.prompt.1.content": "world",
                "gen_ai.usage.prompt_tokens": 2,
            },
        ):
            pass
        with tracer.start_as_current_span(
            "openai.chat",
            attributes={
                "llm.request.type": "chat",
                "gen_ai.request.model": "gpt-4o-mini",
                "llm.is_streaming": True,
                "gen_ai.prompt.0.role": "user",
                "gen_ai.prompt.0.content": "hi",
            },
        ):
            pass
        with tracer.start_as_current_span(
            "openai.completion",
            attributes={
                "llm.request.type": "completion",
                "gen_ai.request.model": "gpt-3.5-turbo-instruct",
                "gen_ai.prompt.0.user": "Say this is a test",
                "gen_ai.completion.0.content": "This is a test",
            },
        ):
            pass
    (embedding,) = [e["properties"] for e in events("$ai_embedding")]
    assert embedding["$ai_input"] == ["hello", "world"]
    assert embedding["$ai_embedding_input_count"] == 2
    chat, completion = sorted(
        (e["properties"] for e in events("$ai_generation")), key=lambda p: p["$ai_span_name"]
    )
    assert chat["$ai_stream"] is True
    assert completion["$ai_input"] == [{"role": "user", "content": "Say this is a test"}]
    assert completion["$ai_output_choices"] == [{"role": "assistant", "content": "This is a test"}]


def test_openllmetry_embedding_texts_are_counted_in_privacy_mode(tracer, events):
    with tracer.start_as_current_span(
        "openai.embeddings",
        attributes={
            "llm.request.type": "embedding",
            "gen_ai.request.model": "text-embedding-3-small",
            "gen_ai.prompt.0.content": "hello",
            "gen_ai.prompt.1.content": "world",
            "posthog.privacy_mode": True,
        },
    ):
        pass
    (embedding,) = [e["properties"] for e in events("$ai_embedding")]
    assert embedding.get("$ai_input") is None
    assert embedding["$ai_embedding_input_count"] == 2


def test_azure_message_events_carry_their_content_in_gen_ai_event_content(tracer, events):
    with tracer.start_as_current_span(
        "chat gpt-4o",
        attributes={
            "gen_ai.operation.name": "chat",
            "gen_ai.system": "az.ai.inference",
            "gen_ai.request.model": "gpt-4o",
        },
    ) as span:
        for name, body in (
            ("gen_ai.system.message", {"role": "system", "content": "be nice"}),
            ("gen_ai.user.message", {"role": "user", "content": "hi"}),
            (
                "gen_ai.choice",
                {"message": {"content": "hello"}, "finish_reason": "stop", "index": 0},
            ),
        ):
            span.add_event(
                name,
                {"gen_ai.system": "az.ai.inference", "gen_ai.event.content": json.dumps(body)},
            )
    (generation,) = [e["properties"] for e in events("$ai_generation")]
    assert generation["$ai_input"] == [
        {"role": "system", "content": "be nice"},
        {"role": "user", "content": "hi"},
    ]
    assert generation["$ai_output_choices"] == [{"role": "assistant", "content": "hello"}]
    assert generation["$ai_stop_reason"] == "stop"


def test_pydanticai_tool_results_and_the_agent_runs_final_result(tracer, events):
    with tracer.start_as_current_span(
        "agent run",
        attributes={
            "gen_ai.agent.name": "weather_agent",
            "logfire.msg": "weather_agent run",
            "final_result": '{"get_weather":"sunny in a"}',
        },
    ):
        with tracer.start_as_current_span(
            "chat test",
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": "test",
                "gen_ai.input.messages": json.dumps(
                    [
                        {
                            "role": "user",
                            "parts": [
                                {
                                    "type": "tool_call_response",
                                    "id": "pyd_ai_tool_call_id__get_weather",
                                    "name": "get_weather",
                                    "result": "sunny in a",
                                }
                            ],
                        }
                    ]
                ),
            },
        ):
            pass
    (generation,) = [e["properties"] for e in events("$ai_generation")]
    assert generation["$ai_input"] == [
        {
            "role": "tool",
            "content": "sunny in a",
            "tool_call_id": "pyd_ai_tool_call_id__get_weather",
        }
    ]
    (trace,) = [e["properties"] for e in events("$ai_trace")]
    assert trace["$ai_output_state"] == {"get_weather": "sunny in a"}


_STRANDS_MODEL = "us.anthropic.claude-sonnet-4-20250514-v1:0"
_DETAILS = "gen_ai.client.inference.operation.details"


def test_strands_content_blocks_and_tool_events(tracer, events):
    with tracer.start_as_current_span(
        "invoke_agent weather",
        attributes={"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "weather"},
    ):
        with tracer.start_as_current_span("execute_event_loop_cycle"):
            with tracer.start_as_current_span(
                "chat",
                attributes={
                    "gen_ai.operation.name": "chat",
                    "gen_ai.request.model": _STRANDS_MODEL,
                },
            ) as chat:
                chat.add_event(
                    "gen_ai.user.message", {"content": json.dumps([{"text": "Weather in Paris?"}])}
                )
                chat.add_event(
                    "gen_ai.choice",
                    {
                        "finish_reason": "tool_use",
                        "message": json.dumps(
                            [
                                {"text": "Let me look."},
                                {
                                    "toolUse": {
                                        "toolUseId": "tu_1",
                                        "name": "get_weather",
                                        "input": {"city": "Paris"},
                                    }
                                },
                            ]
                        ),
                    },
                )
            with tracer.start_as_current_span(
                "execute_tool get_weather",
                attributes={
                    "gen_ai.operation.name": "execute_tool",
                    "gen_ai.tool.name": "get_weather",
                },
            ) as tool:
                tool.add_event(
                    "gen_ai.tool.message",
                    {"role": "tool", "content": json.dumps({"city": "Paris"}), "id": "tu_1"},
                )
                tool.add_event("gen_ai.choice", {"message": json.dumps([{"text": "sunny"}])})
    (generation,) = [e["properties"] for e in events("$ai_generation")]
    assert generation["$ai_input"] == [{"role": "user", "content": "Weather in Paris?"}]
    assert generation["$ai_output_choices"] == [
        {
            "role": "assistant",
            "content": "Let me look.",
            "tool_calls": [
                {
                    "type": "function",
                    "id": "tu_1",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        }
    ]
    tools = [
        e["properties"]
        for e in events("$ai_span")
        if e["properties"].get("$ai_span_type") == "tool"
    ]
    assert [(t["$ai_input_state"], t["$ai_output_state"]) for t in tools] == [
        ({"city": "Paris"}, "sunny")
    ]


def test_strands_latest_conventions_read_both_operation_details_events(tracer, events):
    with tracer.start_as_current_span(
        "chat",
        attributes={"gen_ai.operation.name": "chat", "gen_ai.request.model": _STRANDS_MODEL},
    ) as chat:
        chat.add_event(_DETAILS, {"gen_ai.input.messages": messages(("user", "Weather?"))})
        chat.add_event(_DETAILS, {"gen_ai.output.messages": messages(("assistant", "Sunny."))})
    (generation,) = [e["properties"] for e in events("$ai_generation")]
    assert generation["$ai_input"] == [{"role": "user", "content": "Weather?"}]
    assert generation["$ai_output_choices"] == [{"role": "assistant", "content": "Sunny."}]


def test_vercel_tool_calls_and_tool_call_spans(tracer, events):
    with tracer.start_as_current_span(
        "ai.generateText", attributes={"operation.name": "ai.generateText", "ai.model.id": "gpt-4o"}
    ):
        with tracer.start_as_current_span(
            "ai.generateText.doGenerate",
            attributes={
                "ai.model.id": "gpt-4o",
                "ai.model.provider": "openai.chat",
                "ai.response.toolCalls": json.dumps(
                    [
                        {
                            "toolCallType": "function",
                            "toolCallId": "call_1",
                            "toolName": "weather",
                            "args": '{"city":"Paris"}',
                        }
                    ]
                ),
                "ai.response.finishReason": "tool-calls",
            },
        ):
            pass
        with tracer.start_as_current_span(
            "ai.toolCall",
            attributes={
                "operation.name": "ai.toolCall",
                "ai.toolCall.name": "weather",
                "ai.toolCall.id": "call_1",
                "ai.toolCall.args": '{"city":"Paris"}',
                "ai.toolCall.result": '{"temp":20}',
            },
        ):
            pass
    (generation,) = [e["properties"] for e in events("$ai_generation")]
    assert generation["$ai_output_choices"] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "type": "function",
                    "id": "call_1",
                    "function": {"name": "weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        }
    ]
    (tool,) = [e["properties"] for e in events("$ai_span")]
    assert tool["$ai_span_name"] == "weather"
    assert tool["$ai_span_type"] == "tool"
    assert tool["$ai_input_state"] == {"city": "Paris"}
    assert tool["$ai_output_state"] == {"temp": 20}
