"""Attributes and events as real instrumentations set them (OpenLLMetry, OpenInference, the
Anthropic SDK's own spans), on spans built with the real OpenTelemetry SDK."""

from __future__ import annotations

import json

from opentelemetry.trace import StatusCode

from tests.support.events import only

START = 1_700_000_000_000_000_000  # a span's start, in nanoseconds
OI_LLM = {"openinference.span.kind": "LLM", "llm.model_name": "gpt-4o-mini-2024-08-06"}
TRACELOOP = {"llm.request.type": "chat", "gen_ai.request.model": "gpt-4o-mini"}


def span(tracer, name: str, attributes: dict, events=(), *, end_ms: int = 500, error=None):
    """One span started at START, with `events` as (name, attributes, ms after the start)."""
    s = tracer.start_span(name, attributes=attributes, start_time=START)
    for event_name, event_attributes, ms in events:
        s.add_event(event_name, event_attributes, timestamp=START + ms * 1_000_000)
    if error is not None:
        kind, message = error
        s.add_event(
            "exception",
            {"exception.type": kind, "exception.message": message},
            timestamp=START + end_ms * 1_000_000,
        )
        s.set_status(StatusCode.ERROR)
    s.end(end_time=START + end_ms * 1_000_000)


def generations(events) -> dict[str, dict]:
    return {e["properties"]["$ai_span_name"]: e["properties"] for e in events("$ai_generation")}


def test_streaming_and_the_time_to_first_token(tracer, events):
    span(tracer, "traceloop stream", {**TRACELOOP, "gen_ai.is_streaming": True})
    span(tracer, "traceloop plain", {**TRACELOOP, "gen_ai.is_streaming": False})
    span(
        tracer,
        "anthropic.messages.create",
        {
            "gen_ai.request.model": "claude-sonnet-4-5",
            "gen_ai.request.stream": True,
            "gen_ai.response.time_to_first_chunk": 0.029782643,
        },
    )
    span(
        tracer,
        "oi stream",
        {**OI_LLM, "llm.invocation_parameters": '{"model": "gpt-4o-mini", "stream": true}'},
        [("First Token Stream Event", {}, 120)],
    )
    span(
        tracer,
        "oi plain",
        {**OI_LLM, "llm.invocation_parameters": '{"model": "gpt-4o-mini"}'},
    )
    span(  # LangChain's model setting, even when the call was `.stream()`: not an answer
        tracer,
        "langchain",
        {**OI_LLM, "llm.invocation_parameters": '{"model": "gpt-4o-mini", "stream": false}'},
    )
    found = {
        name: (p.get("$ai_stream"), p.get("$ai_time_to_first_token"))
        for name, p in generations(events).items()
    }
    assert found == {
        "traceloop stream": (True, None),
        "traceloop plain": (False, None),
        "anthropic.messages.create": (True, 0.029782643),
        "oi stream": (True, 0.12),
        "oi plain": (None, None),
        "langchain": (None, None),
    }


def test_openinference_responses_output_contents_are_the_message_text(tracer, events):
    prefix = "llm.output_messages.0.message"
    span(
        tracer,
        "Response",
        {
            **OI_LLM,
            f"{prefix}.role": "assistant",
            f"{prefix}.contents.0.message_content.type": "text",
            f"{prefix}.contents.0.message_content.text": "Echo: ",
            f"{prefix}.contents.1.message_content.type": "text",
            f"{prefix}.contents.1.message_content.text": "hi responses",
        },
    )
    span(
        tracer,
        "vision",
        {
            **OI_LLM,
            "llm.input_messages.0.message.role": "user",
            "llm.input_messages.0.message.contents.0.message_content.type": "text",
            "llm.input_messages.0.message.contents.0.message_content.text": "what is this?",
            "llm.input_messages.0.message.contents.1.message_content.type": "image",
            "llm.input_messages.0.message.contents.1.message_content.image.image.url": "https://x/y.png",
        },
    )
    found = generations(events)
    assert found["Response"]["$ai_output_choices"] == [
        {"role": "assistant", "content": "Echo: hi responses"}
    ]
    assert found["vision"]["$ai_input"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is this?"},
                {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
            ],
        }
    ]


RATE_LIMITED = (
    "Error code: 429 - {'error': {'message': 'Rate limit reached', 'code': 'rate_limit'}}"
)


def test_an_sdk_error_gives_its_http_status(tracer, events):
    span(
        tracer,
        "traceloop 429",
        {**TRACELOOP, "error.type": "RateLimitError"},
        error=("openai.RateLimitError", RATE_LIMITED),
    )
    span(
        tracer,
        "oi 429",
        {"openinference.span.kind": "LLM", "llm.invocation_parameters": '{"model": "error-429"}'},
        error=("openai.RateLimitError", RATE_LIMITED),
    )
    span(  # LangChain's own class, known by its message
        tracer,
        "langchain 429",
        OI_LLM,
        error=("langchain_openai.chat_models.base.OpenAIRateLimitError", RATE_LIMITED),
    )
    span(tracer, "by type only", {**TRACELOOP, "error.type": "AuthenticationError"})
    span(
        tracer,
        "by class",
        TRACELOOP,
        error=("anthropic.NotFoundError", "model not found"),
    )
    span(  # the span's own status wins
        tracer,
        "stated",
        {**TRACELOOP, "http.response.status_code": 503, "error.type": "RateLimitError"},
    )
    span(tracer, "timeout", TRACELOOP, error=("openai.APITimeoutError", "Request timed out."))
    found = generations(events)
    assert {name: p.get("$ai_http_status") for name, p in found.items()} == {
        "traceloop 429": 429,
        "oi 429": 429,
        "langchain 429": 429,
        "by type only": 401,
        "by class": 404,
        "stated": 503,
        "timeout": None,
    }
    assert found["oi 429"]["$ai_model"] == "error-429"  # from the invocation parameters
    assert found["oi 429"]["$ai_is_error"] is True


def test_openinference_and_anthropic_finish_reasons_are_the_stop_reason(tracer, events):
    span(tracer, "oi", {**OI_LLM, "llm.finish_reason": "tool_calls"})
    span(
        tracer,
        "anthropic.messages.create",
        {"gen_ai.request.model": "claude-sonnet-4-5", "anthropic.message.stop_reason": "end_turn"},
    )
    span(
        tracer,
        "both",
        {**TRACELOOP, "gen_ai.response.finish_reasons": ("stop",), "llm.finish_reason": "length"},
    )
    found = generations(events)
    assert {name: p.get("$ai_stop_reason") for name, p in found.items()} == {
        "oi": "tool_calls",
        "anthropic.messages.create": "end_turn",
        "both": "stop",
    }


def test_an_openinference_tool_message_keeps_the_call_it_answers(tracer, events):
    prefix = "llm.input_messages"
    span(
        tracer,
        "ChatOpenAI",
        {
            **OI_LLM,
            f"{prefix}.0.message.role": "user",
            f"{prefix}.0.message.content": "weather in Paris?",
            f"{prefix}.1.message.role": "assistant",
            f"{prefix}.1.message.tool_calls.0.tool_call.id": "call_standin_2585e791ad73",
            f"{prefix}.1.message.tool_calls.0.tool_call.function.name": "get_weather",
            f"{prefix}.1.message.tool_calls.0.tool_call.function.arguments": json.dumps(
                {"city": "Paris"}
            ),
            f"{prefix}.2.message.role": "tool",
            f"{prefix}.2.message.content": "sunny, 21C",
            f"{prefix}.2.message.tool_call_id": "call_standin_2585e791ad73",
        },
    )
    messages = only(events("$ai_generation"))["$ai_input"]
    assert messages[2] == {
        "role": "tool",
        "content": "sunny, 21C",
        "tool_call_id": "call_standin_2585e791ad73",
    }
    assert "tool_call_id" not in messages[0]


def test_openllmetry_embedding_texts_are_the_input(tracer, events):
    texts = [
        {"role": "user", "parts": [{"type": "text", "content": "alpha"}]},
        {"role": "user", "parts": [{"type": "text", "content": "beta gamma"}]},
    ]
    span(
        tracer,
        "openai.embeddings",
        {
            "llm.request.type": "embedding",
            "gen_ai.request.model": "text-embedding-3-small",
            "gen_ai.is_streaming": False,
            "gen_ai.input.messages": json.dumps(texts),
        },
    )
    embedding = only(events("$ai_embedding"))
    assert embedding["$ai_input"] == ["alpha", "beta gamma"]
    assert embedding["$ai_embedding_input_count"] == 2


def test_llamaindex_complete_prompts_are_the_input(tracer, events):
    span(
        tracer,
        "OpenAI.complete",
        {
            **OI_LLM,
            "input.value": '{"args": ["complete me"]}',
            "input.mime_type": "application/json",
            "llm.prompts": ("complete me",),
            "output.value": "Echo: complete me",
        },
    )
    generation = only(events("$ai_generation"))
    assert generation["$ai_input"] == [{"role": "user", "content": "complete me"}]


def test_a_model_call_wrapping_another_is_a_step_and_the_inner_one_the_call(tracer, events):
    # OpenInference's LlamaIndex spans: `predict` (LLM) around `chat` (LLM, with the tokens),
    # `get_query_embedding` around `_get_query_embedding`; one call is one event.
    with tracer.start_as_current_span("query", attributes={"openinference.span.kind": "CHAIN"}):
        with tracer.start_as_current_span("OpenAI.predict", attributes=OI_LLM):
            with tracer.start_as_current_span(
                "OpenAI.chat",
                attributes={**OI_LLM, "llm.token_count.prompt": 9, "llm.token_count.completion": 3},
            ):
                pass
        embedding = {"openinference.span.kind": "EMBEDDING", "embedding.model_name": "emb-3"}
        with tracer.start_as_current_span("get_query_embedding", attributes=embedding):
            with tracer.start_as_current_span("_get_query_embedding", attributes=embedding):
                pass
    (generation,) = [e["properties"] for e in events("$ai_generation")]
    assert generation["$ai_span_name"] == "OpenAI.chat"
    assert generation["$ai_input_tokens"] == 9
    (embedding_event,) = [e["properties"] for e in events("$ai_embedding")]
    assert embedding_event["$ai_span_name"] == "_get_query_embedding"
    spans = {e["properties"]["$ai_span_name"]: e["properties"] for e in events("$ai_span")}
    assert {"OpenAI.predict", "get_query_embedding"} <= set(spans)
    # The calls hang from the steps that wrap them.
    assert generation["$ai_parent_id"] == spans["OpenAI.predict"]["$ai_span_id"]


def test_llamaindex_preparing_a_tool_call_is_a_step_not_a_generation(tracer, events):
    # OpenInference names every span of a LlamaIndex LLM's dispatched methods an LLM span;
    # `_prepare_chat_with_tools` only builds the arguments of the `chat` after it.
    invocation = {"llm.invocation_parameters": '{"model_name": "gpt-4o-mini"}'}
    with tracer.start_as_current_span("agent", attributes={"openinference.span.kind": "AGENT"}):
        span(
            tracer,
            "OpenAI._prepare_chat_with_tools",
            {
                **OI_LLM,
                **invocation,
                "input.value": '{"tools": ["<FunctionTool object>"], "user_msg": "add 1 and 2"}',
                "output.value": '{"messages": ["ChatMessage(role=user)"], "tools": []}',
            },
        )
        span(
            tracer,
            "OpenAI.chat",
            {
                **OI_LLM,
                **invocation,
                "llm.input_messages.0.message.role": "user",
                "llm.input_messages.0.message.content": "add 1 and 2",
                "llm.output_messages.0.message.role": "assistant",
                "llm.output_messages.0.message.content": "3",
            },
        )
    generation = only(events("$ai_generation"))
    assert generation["$ai_output_choices"] == [{"role": "assistant", "content": "3"}]
    (step,) = events("$ai_span")
    assert step["properties"]["$ai_span_name"] == "OpenAI._prepare_chat_with_tools"
