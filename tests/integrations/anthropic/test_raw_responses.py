"""`messages.with_raw_response` and `messages.with_streaming_response`: one event per call, as
for the plain call, and the caller's response, body and exceptions exactly the SDK's."""

from __future__ import annotations

import inspect
import json
from typing import Any

import pytest

anthropic = pytest.importorskip("anthropic")

from anthropic._response import APIResponse, AsyncAPIResponse  # noqa: E402

from tests.support.events import only  # noqa: E402

from .conftest import API_KEY, HELLO, MODEL  # noqa: E402

ECHO = "Echo: Tell me a fun fact about hedgehogs"
TEXT = [{"role": "assistant", "content": [{"type": "text", "text": ECHO}]}]
PER_CALL = {"$ai_trace_id", "$ai_span_id", "$ai_latency", "$ai_time_to_first_token"}


def _facts(props: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in props.items() if k not in PER_CALL and "cache" not in k}


def test_raw_and_streaming_responses_report_what_the_plain_call_does(make_client, events):
    llm = make_client()
    arguments: dict[str, Any] = {"model": MODEL, "max_tokens": 100, "messages": HELLO}
    plain = llm.messages.create(**arguments, system="Be brief.")
    raw = llm.messages.with_raw_response.create(**arguments, system="Be brief.")
    with llm.messages.with_streaming_response.create(**arguments, system="Be brief.") as response:
        assert type(response) is APIResponse
        streamed = response.parse()

    for parsed in (raw.parse(), streamed):
        assert type(parsed) is type(plain) and parsed.content == plain.content
    plain_props, raw_props, streamed_props = (e["properties"] for e in events("$ai_generation"))
    assert _facts(raw_props) == _facts(plain_props)
    assert _facts(streamed_props) == _facts(plain_props)
    assert streamed_props["$ai_output_choices"] == TEXT


def test_streamed_events_read_line_by_line_or_through_parse(make_client, events, standin):
    llm = make_client()
    plain = anthropic.Anthropic(api_key=API_KEY, base_url=standin.base_url, max_retries=0)
    with plain.messages.with_streaming_response.create(
        model=MODEL, max_tokens=100, messages=HELLO, stream=True
    ) as theirs:
        expected = [line for line in theirs.iter_lines() if not line.startswith("data:")]
    with llm.messages.with_streaming_response.create(
        model=MODEL, max_tokens=100, messages=HELLO, stream=True
    ) as response:
        lines = list(response.iter_lines())
    with llm.messages.with_streaming_response.create(
        model=MODEL, max_tokens=100, messages=HELLO, stream=True
    ) as response:
        stream = response.parse()
        assert type(stream) is anthropic.Stream
        kinds = [event.type for event in stream]

    assert [line for line in lines if not line.startswith("data:")] == expected
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    for props in (e["properties"] for e in events("$ai_generation")):
        assert props["$ai_stream"] is True and props["$ai_output_choices"] == TEXT
        assert props["$ai_output_tokens"] == 9 and props["$ai_input_tokens"] > 0
        assert props["$ai_stop_reason"] == "end_turn" and props["$ai_http_status"] == 200
        assert 0 < props["$ai_time_to_first_token"] <= props["$ai_latency"]


def test_raw_response_of_a_stream_is_tracked_through_parse(make_client, events):
    llm = make_client()
    raw = llm.messages.with_raw_response.create(
        model=MODEL, max_tokens=100, messages=HELLO, stream=True
    )
    assert raw.parse() is raw.parse()
    assert [event.type for event in raw.parse()][-1] == "message_stop"
    props = only(events("$ai_generation"))
    assert props["$ai_output_choices"] == TEXT and props["$ai_stream"] is True


def test_unread_body_error_status_and_midstream_error(make_client, events):
    llm = make_client()
    with llm.messages.with_streaming_response.create(
        model=MODEL, max_tokens=100, messages=HELLO
    ) as response:
        assert response.status_code == 200
    with pytest.raises(anthropic.RateLimitError) as raised:
        with llm.messages.with_streaming_response.create(
            model="error-429", max_tokens=100, messages=HELLO
        ):
            pass  # pragma: no cover - the SDK raises on entering
    assert type(raised.value) is anthropic.RateLimitError
    with llm.messages.with_streaming_response.create(
        model="error-midstream", max_tokens=100, messages=HELLO, stream=True
    ) as response:
        with pytest.raises(anthropic.APIStatusError) as caught:
            list(response.parse())

    unread, limited, midway = (e["properties"] for e in events("$ai_generation"))
    assert unread["$ai_model"] == MODEL and unread["$ai_http_status"] == 200
    assert "$ai_output_choices" not in unread and "$ai_is_error" not in unread
    assert unread["$ai_input"] == HELLO
    assert limited["$ai_http_status"] == 429 and limited["$ai_is_error"] is True
    assert midway["$ai_is_error"] is True
    assert midway["$ai_error"].startswith(type(caught.value).__name__)
    assert midway["$ai_output_choices"][0]["content"][0]["text"] == "Echo: Tell"


async def test_async_raw_and_streaming_responses(make_client, events):
    from posthog_llm.integrations.anthropic import AsyncAnthropic

    llm = make_client(AsyncAnthropic)
    raw = await llm.messages.with_raw_response.create(model=MODEL, max_tokens=100, messages=HELLO)
    async with llm.messages.with_streaming_response.create(
        model=MODEL, max_tokens=100, messages=HELLO
    ) as response:
        assert type(response) is AsyncAPIResponse
        body = await response.json()
    async with llm.messages.with_streaming_response.create(
        model=MODEL, max_tokens=100, messages=HELLO, stream=True
    ) as response:
        stream = await response.parse()
        assert type(stream) is anthropic.AsyncStream
        kinds = [event.type async for event in stream]
    async with llm.messages.with_streaming_response.create(
        model=MODEL, max_tokens=100, messages=HELLO, stream=True
    ) as response:
        lines = [line async for line in response.iter_lines()]
    with pytest.raises(anthropic.InternalServerError):
        async with llm.messages.with_streaming_response.create(
            model="error-500", max_tokens=100, messages=HELLO
        ):
            pass  # pragma: no cover
    await llm.close()

    parsed = raw.parse()  # a coroutine, or the message itself from older SDKs' legacy response
    if inspect.isawaitable(parsed):
        parsed = await parsed
    assert parsed.content[0].text == body["content"][0]["text"] == ECHO
    assert kinds[-1] == "message_stop" and "event: message_stop" in lines
    found = [e["properties"] for e in events("$ai_generation")]
    assert len(found) == 5
    for props in found[:4]:
        assert json.dumps(props["$ai_output_choices"]).count(ECHO) == 1
        assert props["$ai_output_tokens"] == 9 and props["$ai_http_status"] == 200
    assert found[2]["$ai_stream"] is found[3]["$ai_stream"] is True
    assert found[4]["$ai_http_status"] == 500 and found[4]["$ai_is_error"] is True


@pytest.mark.parametrize("read", ["parse", "iter_lines", "iter_raw"])
def test_raw_response_of_a_stream_is_reported_however_its_body_is_read(make_client, events, read):
    llm = make_client()
    raw = llm.messages.with_raw_response.create(
        model=MODEL, max_tokens=100, messages=HELLO, stream=True
    )
    if read == "parse":
        assert [event.type for event in raw.parse()][-1] == "message_stop"
    elif read == "iter_lines":
        assert "event: message_stop" in list(raw.http_response.iter_lines())
    else:
        assert b"event: message_stop" in b"".join(raw.http_response.iter_raw())

    props = only(events("$ai_generation"))
    assert props["$ai_output_choices"] == TEXT and props["$ai_stream"] is True
    assert props["$ai_output_tokens"] == 9 and props["$ai_stop_reason"] == "end_turn"
    assert 0 < props["$ai_time_to_first_token"] <= props["$ai_latency"]


@pytest.mark.parametrize("client_class", ["AsyncAnthropic", "AsyncAnthropicVertex"])
async def test_async_raw_response_of_a_stream_is_reported(
    make_client, events, standin, client_class
):
    import posthog_llm.integrations.anthropic as drop_in

    cls = getattr(drop_in, client_class)
    extra: dict[str, Any] = {}
    if client_class == "AsyncAnthropicVertex":
        extra = {
            "api_key": None,
            "region": "us-east5",
            "project_id": "my-project",
            "access_token": "ya29.vertex-access-token-SECRET",
            "base_url": standin.vertex_base_url,
        }
    llm = make_client(cls, **extra)
    raw = await llm.messages.with_raw_response.create(
        model=MODEL, max_tokens=100, messages=HELLO, stream=True
    )
    stream = raw.parse()  # a coroutine, or the stream itself from older SDKs' legacy response
    if inspect.isawaitable(stream):
        stream = await stream
    kinds = [event.type async for event in stream]
    raw = await llm.messages.with_raw_response.create(
        model=MODEL, max_tokens=100, messages=HELLO, stream=True
    )
    lines = [line async for line in raw.http_response.aiter_lines()]
    await llm.close()

    assert kinds[-1] == "message_stop" and "event: message_stop" in lines
    found = [e["properties"] for e in events("$ai_generation")]
    assert len(found) == 2
    for props in found:
        assert props["$ai_output_choices"] == TEXT and props["$ai_stream"] is True
        assert props["$ai_output_tokens"] == 9 and props["$ai_http_status"] == 200
        assert 0 < props["$ai_time_to_first_token"] <= props["$ai_latency"]
