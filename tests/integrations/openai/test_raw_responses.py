"""`with_raw_response` and `with_streaming_response`: one event per call, as for the plain call,
and the caller's response object, body and exceptions exactly the SDK's."""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Any

import pytest

openai = pytest.importorskip("openai")

import pydantic  # noqa: E402
from openai._legacy_response import LegacyAPIResponse  # noqa: E402
from openai._response import APIResponse, AsyncAPIResponse  # noqa: E402

from tests.support.events import only  # noqa: E402

from .conftest import API_KEY  # noqa: E402

HELLO = [{"role": "user", "content": "one two three four five six"}]
ECHO = "Echo: one two three four five six"
# Facts that differ from one call to the next, whichever way it was made (the stand-in
# caches a prompt it has seen, as OpenAI does).
PER_CALL = {
    "$ai_trace_id",
    "$ai_span_id",
    "$ai_latency",
    "$ai_time_to_first_token",
    "$ai_cache_read_input_tokens",
}

# name: (the resource, the call's arguments, the event, what the answer says)
CALLS: dict[str, tuple[Callable[[Any], Any], dict[str, Any], str, Callable[[Any], Any]]] = {
    "chat": (
        lambda llm: llm.chat.completions,
        {"model": "gpt-4o-mini", "messages": HELLO, "temperature": 0.2},
        "$ai_generation",
        lambda reply: reply.choices[0].message.content,
    ),
    "responses": (
        lambda llm: llm.responses,
        {"model": "gpt-4o-mini", "input": "one two three", "instructions": "Be brief."},
        "$ai_generation",
        lambda reply: reply.output_text,
    ),
    "embeddings": (
        lambda llm: llm.embeddings,
        {"model": "text-embedding-3-small", "input": ["one", "two"]},
        "$ai_embedding",
        lambda reply: reply.data[1].embedding,
    ),
}


def _facts(props: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in props.items() if k not in PER_CALL}


def _plain(standin: Any) -> Any:
    return openai.OpenAI(base_url=standin.base_url, api_key=API_KEY, max_retries=0)


@pytest.mark.parametrize("name", list(CALLS))
def test_raw_and_streaming_responses_report_what_the_plain_call_does(make_client, events, name):
    resource, arguments, event, answer = CALLS[name]
    llm = make_client()
    plain = resource(llm).create(**arguments)
    raw = resource(llm).with_raw_response.create(**arguments)
    with resource(llm).with_streaming_response.create(**arguments) as response:
        streamed = response.parse()

    assert type(raw) is LegacyAPIResponse and type(response) is APIResponse
    for parsed in (raw.parse(), streamed):
        assert type(parsed) is type(plain)
        assert answer(parsed) == answer(plain)
    found = events(event)
    assert len(found) == 3
    plain_props, raw_props, streamed_props = (e["properties"] for e in found)
    assert _facts(raw_props) == _facts(plain_props)
    assert _facts(streamed_props) == _facts(plain_props)
    assert "$ai_latency" in streamed_props and "$ai_input" in streamed_props


def test_streaming_response_read_as_json_text_or_bytes(make_client, events, standin):
    llm = make_client()
    expected = _plain(standin).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=HELLO
    )
    bodies = []
    for read in ("json", "text", "read"):
        with llm.chat.completions.with_streaming_response.create(
            model="gpt-4o-mini", messages=HELLO
        ) as response:
            bodies.append(getattr(response, read)())

    assert bodies[0]["choices"] == expected.http_response.json()["choices"]
    assert isinstance(bodies[1], str) and isinstance(bodies[2], bytes)
    for props in (e["properties"] for e in events("$ai_generation")):
        assert props["$ai_output_choices"] == [{"role": "assistant", "content": ECHO}]
        assert props["$ai_output_tokens"] == 8 and props["$ai_http_status"] == 200
        assert props["$ai_model"] == "gpt-4o-mini-2024-08-06"


def test_streamed_body_read_line_by_line_is_the_sdks_and_is_reported(make_client, events, standin):
    llm = make_client()
    with _plain(standin).chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", messages=HELLO, stream=True
    ) as theirs:
        expected = [line for line in theirs.iter_lines() if not line.startswith("data: {")]
    with llm.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", messages=HELLO, stream=True
    ) as response:
        assert events("$ai_generation") == []  # nothing before the body is read
        lines = list(response.iter_lines())

    # The caller's lines are the server's: no usage chunk was asked for on their behalf.
    assert "stream_options" not in standin.last_request().body
    assert [line for line in lines if not line.startswith("data: {")] == expected
    assert lines[-2:] == ["data: [DONE]", ""] or lines[-1] == "data: [DONE]"
    props = only(events("$ai_generation"))
    assert props["$ai_stream"] is True
    assert props["$ai_output_choices"] == [{"role": "assistant", "content": ECHO}]
    assert props["$ai_stop_reason"] == "stop"
    assert "$ai_input_tokens" not in props  # not in the body the caller asked for
    assert 0 < props["$ai_time_to_first_token"] <= props["$ai_latency"]


def test_streamed_body_iterated_through_parse(make_client, events, standin):
    llm = make_client()
    with llm.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini",
        messages=HELLO,
        stream=True,
        stream_options={"include_usage": True},
        posthog_distinct_id="user-9",
    ) as response:
        stream = response.parse()
        assert type(stream) is openai.Stream
        chunks = list(stream)

    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 8  # theirs
    assert "".join(c.choices[0].delta.content or "" for c in chunks[:-1]) == ECHO
    (event,) = events("$ai_generation")
    props = event["properties"]
    assert event["distinct_id"] == "user-9"
    assert props["$ai_output_choices"] == [{"role": "assistant", "content": ECHO}]
    assert props["$ai_output_tokens"] == 8 and props["$ai_input_tokens"] > 0
    assert props["$ai_model_parameters"] == {"stream": True}
    assert 0 < props["$ai_time_to_first_token"] <= props["$ai_latency"]


def test_responses_event_stream_through_a_streaming_response(make_client, events):
    llm = make_client()
    with llm.responses.with_streaming_response.create(
        model="gpt-4o-mini", input="one two three", stream=True
    ) as response:
        kinds = [event.type for event in response.parse()]

    assert kinds[-1] == "response.completed"
    props = only(events("$ai_generation"))
    assert props["$ai_output_choices"][0]["content"] == "Echo: one two three"
    assert props["$ai_output_tokens"] > 0 and props["$ai_stream"] is True
    assert props["$ai_stop_reason"] == "stop"


def test_a_body_never_read_still_reports_the_call_when_closed(make_client, events):
    llm = make_client()
    with llm.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", messages=HELLO, posthog_distinct_id="user-1"
    ) as response:
        assert response.status_code == 200

    props = only(events("$ai_generation"))
    assert props["$ai_model"] == "gpt-4o-mini"  # the requested one: the served one is unread
    assert props["$ai_input"] == [{"role": "user", "content": HELLO[0]["content"]}]
    assert props["$ai_http_status"] == 200 and props["$ai_latency"] > 0
    assert "$ai_output_choices" not in props and "$ai_input_tokens" not in props
    assert "$ai_is_error" not in props


def test_a_stream_left_early_reports_what_was_read(make_client, events):
    llm = make_client()
    with llm.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", messages=HELLO, stream=True
    ) as response:
        for chunk in response.parse():
            if chunk.choices[0].delta.content:
                break

    props = only(events("$ai_generation"))
    assert props["$ai_output_choices"] == [{"role": "assistant", "content": "Echo:"}]
    assert "$ai_stop_reason" not in props


def test_a_response_dropped_unclosed_sends_its_event(make_client, events):
    llm = make_client()
    manager = llm.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", messages=HELLO, stream=True
    )
    response = manager.__enter__()
    next(response.iter_lines())
    del manager, response
    gc.collect()
    props = only(events("$ai_generation"))
    assert props["$ai_stream"] is True and props["$ai_http_status"] == 200


def test_an_error_status_raises_the_sdks_error_and_reports_it(make_client, events):
    llm = make_client()
    with pytest.raises(openai.RateLimitError) as raised:
        with llm.chat.completions.with_streaming_response.create(model="error-429", messages=HELLO):
            pass  # pragma: no cover - the SDK raises on entering
    with pytest.raises(openai.InternalServerError):
        llm.chat.completions.with_raw_response.create(model="error-500", messages=HELLO)

    assert type(raised.value) is openai.RateLimitError
    limited, failed = (e["properties"] for e in events("$ai_generation"))
    assert limited["$ai_http_status"] == 429 and limited["$ai_is_error"] is True
    assert limited["$ai_error"].startswith("RateLimitError")
    assert failed["$ai_http_status"] == 500 and failed["$ai_is_error"] is True


def test_a_stream_failing_midway_raises_to_the_reader_and_is_reported(make_client, events):
    llm = make_client()
    with llm.chat.completions.with_streaming_response.create(
        model="error-midstream", messages=HELLO, stream=True
    ) as response:
        with pytest.raises(openai.APIError, match="interrupted") as raised:
            list(response.parse())
    assert type(raised.value) is openai.APIError

    props = only(events("$ai_generation"))
    assert props["$ai_is_error"] is True and props["$ai_http_status"] == 200
    assert props["$ai_error"].startswith("APIError: The stream was interrupted")
    assert props["$ai_output_choices"] == [{"role": "assistant", "content": "Partial"}]


class Answer(pydantic.BaseModel):
    text: str


def test_a_parse_the_sdk_refuses_is_the_calls_error_not_a_lost_event(make_client, events):
    # The body came back (200) but cut at max_tokens: the caller's parse() raises, and the
    # event says so; before, the event was lost to an internal error.
    llm = make_client()
    raw = llm.chat.completions.with_raw_response.parse(
        model="gpt-4o-mini", messages=HELLO, response_format=Answer, max_tokens=1
    )
    with pytest.raises(openai.LengthFinishReasonError):
        raw.parse()

    props = only(events("$ai_generation"))
    assert props["$ai_is_error"] is True and props["$ai_http_status"] == 200
    assert props["$ai_error"].startswith("LengthFinishReasonError")


def test_raw_response_stream_asks_for_no_usage_chunk(make_client, events, standin):
    # The caller can read the raw body itself: it is the server's answer to their request.
    llm = make_client()
    raw = llm.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=HELLO, stream=True
    )
    assert "stream_options" not in standin.last_request().body
    chunks = list(raw.parse())
    assert all(chunk.choices for chunk in chunks)
    props = only(events("$ai_generation"))
    assert props["$ai_output_choices"] == [{"role": "assistant", "content": ECHO}]
    assert "$ai_output_tokens" not in props  # not in the body the caller asked for


@pytest.mark.parametrize("read", ["parse", "iter_lines", "read", "iter_raw"])
def test_raw_response_stream_is_reported_however_its_body_is_read(make_client, events, read):
    llm = make_client()
    raw = llm.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=HELLO, stream=True, stream_options={"include_usage": True}
    )
    if read == "parse":
        assert list(raw.parse())[-1].usage.completion_tokens == 8
    elif read == "iter_lines":
        assert "data: [DONE]" in list(raw.http_response.iter_lines())
    elif read == "read":
        assert raw.http_response.read().endswith(b"data: [DONE]\n\n")
    else:
        assert b"".join(raw.http_response.iter_raw()).endswith(b"data: [DONE]\n\n")

    props = only(events("$ai_generation"))
    assert props["$ai_stream"] is True and props["$ai_http_status"] == 200
    assert props["$ai_output_choices"] == [{"role": "assistant", "content": ECHO}]
    assert props["$ai_model"] == "gpt-4o-mini-2024-08-06" and props["$ai_stop_reason"] == "stop"
    assert props["$ai_output_tokens"] == 8  # the usage chunk the caller asked for
    assert 0 < props["$ai_time_to_first_token"] <= props["$ai_latency"]


def test_a_raw_stream_kept_without_its_response_reports_what_is_read(make_client, events):
    llm = make_client()
    stream = llm.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=HELLO, stream=True
    ).parse()
    gc.collect()  # the raw response is gone; its HTTP response lives on in the stream
    assert events("$ai_generation") == []
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream)

    assert text == ECHO
    props = only(events("$ai_generation"))
    assert props["$ai_output_choices"] == [{"role": "assistant", "content": ECHO}]


def test_streaming_response_read_with_iter_raw_is_reported(make_client, events):
    llm = make_client()
    with llm.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", messages=HELLO
    ) as response:
        body = b"".join(response.http_response.iter_raw())
    with llm.responses.with_streaming_response.create(
        model="gpt-4o-mini", input="one two three", stream=True
    ) as response:
        for _ in response.http_response.iter_raw(16):
            pass

    assert body.startswith(b"{")
    chat, responses = (e["properties"] for e in events("$ai_generation"))
    assert chat["$ai_output_choices"] == [{"role": "assistant", "content": ECHO}]
    assert chat["$ai_model"] == "gpt-4o-mini-2024-08-06" and chat["$ai_output_tokens"] == 8
    assert responses["$ai_output_choices"][0]["content"] == "Echo: one two three"
    assert responses["$ai_stream"] is True and responses["$ai_stop_reason"] == "stop"


async def test_async_raw_and_streaming_responses(make_client, events, standin):
    from posthog_llm.integrations.openai import AsyncOpenAI

    llm = make_client(AsyncOpenAI)
    raw = await llm.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=HELLO)
    assert raw.parse().choices[0].message.content == ECHO
    async with llm.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", messages=HELLO
    ) as response:
        assert type(response) is AsyncAPIResponse
        reply = await response.parse()
    async with llm.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", messages=HELLO, stream=True
    ) as response:
        lines = [line async for line in response.iter_lines()]
    async with llm.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", messages=HELLO, stream=True
    ) as response:
        stream = await response.parse()
        assert type(stream) is openai.AsyncStream
        text = "".join([c.choices[0].delta.content or "" async for c in stream])
    async with llm.embeddings.with_streaming_response.create(
        model="text-embedding-3-small", input="one"
    ) as response:
        await response.read()
    with pytest.raises(openai.RateLimitError):
        async with llm.responses.with_streaming_response.create(model="error-429", input="x"):
            pass  # pragma: no cover
    async with llm.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", messages=HELLO
    ):
        pass
    await llm.close()

    assert reply.choices[0].message.content == ECHO and text == ECHO
    assert "data: [DONE]" in lines
    generations = [e["properties"] for e in events("$ai_generation")]
    assert len(generations) == 6
    raw_props, parsed, by_line, by_parse, limited, unread = generations
    for props in (raw_props, parsed, by_line, by_parse):
        assert props["$ai_output_choices"] == [{"role": "assistant", "content": ECHO}]
        assert props["$ai_http_status"] == 200
    assert raw_props["$ai_output_tokens"] == parsed["$ai_output_tokens"] == 8
    assert by_line["$ai_stream"] is by_parse["$ai_stream"] is True
    assert 0 < by_parse["$ai_time_to_first_token"] <= by_parse["$ai_latency"]
    assert limited["$ai_http_status"] == 429 and limited["$ai_is_error"] is True
    assert "$ai_output_choices" not in unread and unread["$ai_http_status"] == 200
    embedding = only(events("$ai_embedding"))
    assert embedding["$ai_input_tokens"] > 0 and embedding["$ai_model"]


def test_latency_counts_the_sdks_reads_not_the_callers_loop(client, sink):
    import time

    from posthog_llm.integrations.openai import OpenAI
    from posthog_llm.local.openai_standin import OpenAIStandIn

    with OpenAIStandIn(chunk_delay=0.05) as slow:
        llm = OpenAI(base_url=slow.base_url, api_key=API_KEY, max_retries=0, posthog_client=client)
        counts = []
        for pause in (0.0, 0.1):
            with llm.chat.completions.with_streaming_response.create(
                model="gpt-4o-mini", messages=HELLO, stream=True
            ) as response:
                chunks = 0
                for line in response.iter_lines():
                    chunks += line.startswith("data: {")
                    time.sleep(pause)
            counts.append(chunks)
    client.flush(5)
    waiting, looping = (e["properties"] for e in sink.named("$ai_generation"))
    assert waiting["$ai_latency"] >= 0.05 * (counts[0] - 1) * 0.9  # the provider's pace
    assert looping["$ai_latency"] < 0.1 * counts[1] / 2  # not the caller's 0.1 s per line
    assert 0 < waiting["$ai_time_to_first_token"] < waiting["$ai_latency"]


@pytest.fixture
def gzipping(standin: Any) -> Any:
    """A loopback proxy in front of the stand-in that answers gzip-encoded, as a CDN may."""
    import gzip
    import threading
    import urllib.request
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            headers = {"Content-Type": "application/json", "Authorization": f"Bearer {API_KEY}"}
            upstream = standin.base_url.rstrip("/") + self.path.removeprefix("/v1")
            request = urllib.request.Request(upstream, data=body, headers=headers)
            with urllib.request.urlopen(request) as answer:
                kind, data = answer.headers["Content-Type"], gzip.compress(answer.read())
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_a_gzip_encoded_body_read_raw_is_decoded_for_the_event(make_client, events, gzipping):
    llm = make_client(base_url=gzipping)
    with llm.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", messages=HELLO
    ) as response:
        assert response.headers["content-encoding"] == "gzip"
        encoded = b"".join(response.http_response.iter_raw())
    raw = llm.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=HELLO, stream=True
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in raw.parse())
    with llm.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", messages=HELLO
    ) as response:
        decoded = response.json()

    assert encoded.startswith(b"\x1f\x8b") and text == ECHO
    assert decoded["choices"][0]["message"]["content"] == ECHO
    found = [e["properties"] for e in events("$ai_generation")]
    assert len(found) == 3
    for props in found:
        assert props["$ai_output_choices"] == [{"role": "assistant", "content": ECHO}]
        assert props["$ai_model"] == "gpt-4o-mini-2024-08-06"
