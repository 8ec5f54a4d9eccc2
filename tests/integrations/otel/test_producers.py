"""Spans as particular producers write them (Semantic Kernel, OpenLLMetry, Azure AI, PydanticAI,
Strands, the Vercel AI SDK), built with the real OpenTelemetry SDK."""

from __future__ import annotations

import pytest

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
