"""Streams: `stream=True`, the `messages.stream(...)` helper, and the async client."""

from __future__ import annotations

import json

import pytest

anthropic = pytest.importorskip("anthropic")

from tests.support.events import only  # noqa: E402

from .conftest import HELLO, MODEL  # noqa: E402

ECHO = "Echo: Tell me a fun fact about hedgehogs"


def test_create_stream_yields_the_sdk_events_and_reports_once_at_the_end(make_client, events):
    llm = make_client()
    stream = llm.messages.create(model=MODEL, max_tokens=100, messages=HELLO, stream=True)
    assert isinstance(stream, anthropic.Stream)
    assert events("$ai_generation") == []  # nothing before the stream is read
    kinds = [event.type for event in stream]

    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    props = only(events("$ai_generation"))
    assert props["$ai_stream"] is True
    assert props["$ai_model_parameters"] == {"max_tokens": 100, "stream": True}
    assert props["$ai_output_choices"] == [
        {"role": "assistant", "content": [{"type": "text", "text": ECHO}]}
    ]
    assert props["$ai_input_tokens"] > 0 and props["$ai_output_tokens"] == 9  # 9 words and marks
    assert props["$ai_stop_reason"] == "end_turn"
    assert props["$ai_service_tier"] == "standard"  # message_start's usage names it
    assert 0 < props["$ai_time_to_first_token"] <= props["$ai_latency"]


def test_stream_helper_text_final_message_and_tool_input(make_client, events):
    llm = make_client()
    tool = {
        "name": "lookup",
        "description": "Look a thing up",
        "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}},
    }
    with llm.messages.stream(model=MODEL, max_tokens=100, messages=HELLO) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    with llm.messages.stream(
        model=MODEL,
        max_tokens=100,
        messages=HELLO,
        tools=[tool],
        thinking={"type": "enabled", "budget_tokens": 64},
        posthog_distinct_id="user_7",
    ) as stream:
        called = stream.get_final_message()

    assert text == ECHO and final.content[0].text == ECHO
    plain, with_tool = (e["properties"] for e in events("$ai_generation"))
    assert plain["$ai_output_choices"][0]["content"] == [{"type": "text", "text": ECHO}]
    assert plain["$ai_output_tokens"] == final.usage.output_tokens
    assert plain["$ai_stream"] is True
    tool_use = called.content[-1]
    thinking, function = with_tool["$ai_output_choices"][0]["content"]
    assert thinking == {"type": "thinking", "thinking": called.content[0].thinking}
    # The streamed arguments are the JSON text the deltas carried.
    assert json.loads(function["function"].pop("arguments")) == tool_use.input
    assert function == {"type": "function", "id": tool_use.id, "function": {"name": "lookup"}}
    assert with_tool["$ai_stop_reason"] == "tool_use"
    assert events("$ai_generation")[1]["distinct_id"] == "user_7"


def test_stream_closed_early_reports_what_was_read(make_client, events):
    llm = make_client()
    with llm.messages.create(model=MODEL, max_tokens=100, messages=HELLO, stream=True) as stream:
        for event in stream:
            if event.type == "content_block_delta":
                break

    props = only(events("$ai_generation"))
    assert props["$ai_output_choices"][0]["content"] == [{"type": "text", "text": "Echo:"}]
    assert "$ai_is_error" not in props


def test_error_in_the_middle_of_a_stream(make_client, events):
    llm = make_client()
    stream = llm.messages.create(
        model="error-midstream", max_tokens=100, messages=HELLO, stream=True
    )
    with pytest.raises(anthropic.APIStatusError) as caught:
        for _ in stream:
            pass

    props = only(events("$ai_generation"))
    assert props["$ai_is_error"] is True
    assert props["$ai_error"].startswith(type(caught.value).__name__)
    assert "overloaded" in props["$ai_error"].lower()
    assert props["$ai_output_choices"][0]["content"][0]["text"] == "Echo: Tell"


async def test_async_create_stream_and_helper(make_client, events):
    from posthog_llm.integrations.anthropic import AsyncAnthropic

    llm = make_client(AsyncAnthropic)
    reply = await llm.messages.create(model=MODEL, max_tokens=100, messages=HELLO)
    stream = await llm.messages.create(model=MODEL, max_tokens=100, messages=HELLO, stream=True)
    assert isinstance(stream, anthropic.AsyncStream)
    streamed = [event.type async for event in stream]
    async with llm.messages.stream(model=MODEL, max_tokens=100, messages=HELLO) as helper:
        text = "".join([piece async for piece in helper.text_stream])
    await llm.close()

    assert reply.content[0].text == text == ECHO and streamed[-1] == "message_stop"
    plain, raw, helped = (e["properties"] for e in events("$ai_generation"))
    assert plain["$ai_stream"] is False and raw["$ai_stream"] is helped["$ai_stream"] is True
    for props in (plain, raw, helped):
        assert json.dumps(props["$ai_output_choices"]).count(ECHO) == 1
        assert props["$ai_output_tokens"] == reply.usage.output_tokens


def test_stream_the_caller_stopped_reading_is_sent_when_its_client_shuts_down(
    make_client, client, sink
):
    llm = make_client()
    stream = llm.messages.create(model=MODEL, max_tokens=100, messages=HELLO, stream=True)
    for event in stream:
        if event.type == "content_block_delta":
            break  # still held, never closed
    assert client.shutdown(timeout=5) is True

    (props,) = [e["properties"] for e in sink.named("$ai_generation")]
    assert props["$ai_output_choices"][0]["content"] == [{"type": "text", "text": "Echo:"}]
    assert "$ai_stop_reason" not in props and "$ai_is_error" not in props


def test_a_streamed_server_tool_keeps_its_input(make_client, events):
    # Only client tools' streamed input was folded in: a web search's query read {}.
    llm = make_client()
    search = [{"type": "web_search_20250305", "name": "web_search", "max_uses": 3}]
    plain = llm.messages.create(model=MODEL, max_tokens=100, messages=HELLO, tools=search)
    with llm.messages.stream(model=MODEL, max_tokens=100, messages=HELLO, tools=search) as stream:
        stream.get_final_message()

    created, streamed = (e["properties"] for e in events("$ai_generation"))
    [used] = [b for b in streamed["$ai_output_choices"][0]["content"] if b["type"] != "text"]
    assert used["type"] == "server_tool_use" and used["name"] == "web_search"
    assert used["input"] == plain.content[0].input  # (older SDKs' own final message has {})
    assert used["input"] == {"query": "Tell me a fun fact about hedgehogs"}
    assert created["$ai_output_choices"][0]["content"][0]["input"] == used["input"]
