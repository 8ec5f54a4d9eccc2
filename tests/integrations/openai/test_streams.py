"""Streamed chat completions: usage, hidden usage chunk, early close, failures, timing."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
import time

import pytest

openai = pytest.importorskip("openai")

from posthog_llm import Client, EventStore, InMemoryDestination  # noqa: E402
from posthog_llm.local.openai_standin import OpenAIStandIn  # noqa: E402

from tests.support.events import only  # noqa: E402

HELLO = [{"role": "user", "content": "one two three four five six"}]


def test_stream_reports_usage_and_hides_the_usage_chunk_it_asked_for(make_client, events, standin):
    llm = make_client()
    stream = llm.chat.completions.create(model="gpt-4o-mini", messages=HELLO, stream=True)

    assert type(stream) is openai.Stream  # the SDK's own object and class
    chunks = list(stream)
    assert all(chunk.choices for chunk in chunks)  # no usage-only chunk reached the caller
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks)
        == "Echo: one two three four five six"
    )
    assert standin.last_request().body["stream_options"] == {"include_usage": True}
    props = only(events("$ai_generation"))
    assert props["$ai_stream"] is True
    assert props["$ai_model_parameters"] == {"stream": True}
    assert props["$ai_output_choices"] == [
        {"role": "assistant", "content": "Echo: one two three four five six"}
    ]
    assert props["$ai_input_tokens"] > 0 and props["$ai_output_tokens"] == 8
    assert props["$ai_cache_read_input_tokens"] == 0
    assert props["$ai_stop_reason"] == "stop"
    assert props["$ai_model"] == "gpt-4o-mini-2024-08-06"
    assert 0 < props["$ai_time_to_first_token"] <= props["$ai_latency"]


@pytest.mark.parametrize("include_usage", [True, False])
def test_caller_stream_options_are_left_alone(make_client, events, standin, include_usage):
    llm = make_client()
    options = {"include_usage": include_usage}
    stream = llm.chat.completions.create(
        model="gpt-4o-mini", messages=HELLO, stream=True, stream_options=options
    )
    chunks = list(stream)

    assert standin.last_request().body["stream_options"] == options
    props = only(events("$ai_generation"))
    if include_usage:  # the caller asked for the usage chunk: it is theirs to see
        assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 8
        assert props["$ai_output_tokens"] == 8
    else:
        assert all(chunk.usage is None for chunk in chunks)
        assert "$ai_input_tokens" not in props  # unknown, so omitted rather than 0
    assert props["$ai_output_choices"][0]["content"].startswith("Echo:")


@pytest.mark.parametrize("options", [{}, None, {"include_obfuscation": False}])
def test_stream_options_that_say_nothing_of_usage_still_get_it(
    make_client, events, standin, options
):
    # `{}`, None or other options alone do not ask for usage, nor refuse it.
    llm = make_client()
    given = None if options is None else dict(options)
    stream = llm.chat.completions.create(
        model="gpt-4o-mini", messages=HELLO, stream=True, stream_options=given
    )
    chunks = list(stream)

    assert all(chunk.choices for chunk in chunks)  # the usage chunk stays hidden
    assert standin.last_request().body["stream_options"] == {
        **(options or {}),
        "include_usage": True,
    }
    assert given == options  # the caller's dict is not changed
    props = only(events("$ai_generation"))
    assert props["$ai_output_tokens"] == 8 and props["$ai_input_tokens"] > 0


def test_early_break_and_close_sends_exactly_one_event(make_client, events):
    llm = make_client()
    stream = llm.chat.completions.create(model="gpt-4o-mini", messages=HELLO, stream=True)
    for chunk in stream:
        if chunk.choices[0].delta.content:
            break
    stream.close()
    stream.close()  # closing twice is fine and sends nothing more

    props = only(events("$ai_generation"))
    assert props["$ai_output_choices"] == [{"role": "assistant", "content": "Echo:"}]
    assert "$ai_stop_reason" not in props and "$ai_input_tokens" not in props
    assert "$ai_is_error" not in props
    assert props["$ai_stream"] is True


def test_stream_used_as_context_manager_and_left_early(make_client, events):
    llm = make_client()
    with llm.chat.completions.create(model="gpt-4o-mini", messages=HELLO, stream=True) as stream:
        first = next(stream)
        assert first.choices[0].delta.role == "assistant"
    assert stream.response.is_closed
    assert len(events("$ai_generation")) == 1


def test_stream_dropped_unread_sends_its_event(make_client, events):
    llm = make_client()
    stream = llm.chat.completions.create(model="gpt-4o-mini", messages=HELLO, stream=True)
    next(iter(stream))
    del stream
    gc.collect()
    props = only(events("$ai_generation"))
    assert props["$ai_stream"] is True


def test_stream_failing_midway_raises_the_sdk_error_and_reports_it(make_client, events):
    llm = make_client()
    stream = llm.chat.completions.create(model="error-midstream", messages=HELLO, stream=True)
    seen = []
    with pytest.raises(openai.APIError, match="interrupted") as raised:
        for chunk in stream:
            seen.append(chunk)
    assert type(raised.value) is openai.APIError
    assert len(seen) == 2

    props = only(events("$ai_generation"))
    assert props["$ai_is_error"] is True
    assert props["$ai_error"].startswith("APIError: The stream was interrupted")
    assert props["$ai_http_status"] == 200  # the failure came after a 200 response
    assert props["$ai_output_choices"] == [{"role": "assistant", "content": "Partial"}]


def test_stream_request_refused_reports_the_status(make_client, events):
    llm = make_client()
    with pytest.raises(openai.RateLimitError):
        llm.chat.completions.create(model="error-429", messages=HELLO, stream=True)
    props = only(events("$ai_generation"))
    assert props["$ai_http_status"] == 429 and props["$ai_is_error"] is True
    assert props["$ai_stream"] is True


def test_tool_call_deltas_are_assembled(make_client, events):
    tool = {
        "type": "function",
        "function": {
            "name": "lookup",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
        },
    }
    llm = make_client()
    chunks = list(
        llm.chat.completions.create(model="gpt-4o-mini", messages=HELLO, tools=[tool], stream=True)
    )
    arguments = "".join(
        c.choices[0].delta.tool_calls[0].function.arguments or ""
        for c in chunks
        if c.choices[0].delta.tool_calls
    )
    props = only(events("$ai_generation"))
    (message,) = props["$ai_output_choices"]
    assert message["tool_calls"][0]["function"] == {"name": "lookup", "arguments": arguments}
    assert message["tool_calls"][0]["id"].startswith("call_")
    assert props["$ai_stop_reason"] == "tool_calls"


def test_stream_helper_is_tracked(make_client, events):
    llm = make_client()
    with llm.chat.completions.stream(model="gpt-4o-mini", messages=HELLO) as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    assert final.choices[0].message.content == "Echo: one two three four five six"
    props = only(events("$ai_generation"))
    assert props["$ai_output_choices"][0]["content"] == final.choices[0].message.content
    assert props["$ai_output_tokens"] == 8


def test_stream_helper_left_early_sends_its_event_on_exit(make_client, events):
    llm = make_client()
    with llm.chat.completions.stream(model="gpt-4o-mini", messages=HELLO) as stream:
        for _ in stream:
            break
    props = only(events("$ai_generation"))  # no garbage collection needed
    assert "$ai_stop_reason" not in props and props["$ai_stream"] is True


def test_stream_helpers_take_the_posthog_arguments(make_client, events, standin):
    llm = make_client()
    with llm.chat.completions.stream(
        model="gpt-4o-mini", messages=HELLO, posthog_distinct_id="user-7", posthog_trace_id="t-1"
    ) as stream:
        final = stream.get_final_completion()
    with llm.responses.stream(
        model="gpt-4o-mini",
        input="one two three",
        posthog_privacy_mode=True,
        posthog_properties={"feature": "helper"},
    ) as events_stream:
        response = events_stream.get_final_response()

    assert final.choices[0].message.content and response.output_text == "Echo: one two three"
    assert not any("posthog" in str(request) for request in standin.requests)
    chat, responses = events("$ai_generation")
    assert chat["distinct_id"] == "user-7" and chat["properties"]["$ai_trace_id"] == "t-1"
    assert chat["properties"]["$ai_output_tokens"] == 8
    assert responses["properties"]["feature"] == "helper"
    assert "$ai_input" not in responses["properties"] and responses["properties"]["$ai_stream"]


async def test_async_stream_helpers_take_the_posthog_arguments(make_client, events):
    from posthog_llm.integrations.openai import AsyncOpenAI

    llm = make_client(AsyncOpenAI)
    async with llm.chat.completions.stream(
        model="gpt-4o-mini", messages=HELLO, posthog_distinct_id="user-8"
    ) as stream:
        final = await stream.get_final_completion()
    async with llm.responses.stream(
        model="gpt-4o-mini", input="one two three", posthog_trace_id="t-2"
    ) as events_stream:
        response = await events_stream.get_final_response()
    await llm.close()

    assert final.choices[0].message.content and response.output_text == "Echo: one two three"
    chat, responses = events("$ai_generation")
    assert chat["distinct_id"] == "user-8" and chat["properties"]["$ai_stream"] is True
    assert responses["properties"]["$ai_trace_id"] == "t-2"
    assert responses["properties"]["$ai_output_choices"][0]["content"] == "Echo: one two three"


def test_latency_counts_the_provider_not_the_callers_loop(make_client, client, sink):
    """Time the caller spends between chunks is not latency; time waiting for chunks is."""
    from posthog_llm.integrations.openai import OpenAI

    llm = make_client()
    caller_wait = 0.0
    for _ in llm.chat.completions.create(model="gpt-4o-mini", messages=HELLO, stream=True):
        time.sleep(0.1)
        caller_wait += 0.1
    with OpenAIStandIn(chunk_delay=0.05) as slow:
        slow_llm = OpenAI(
            base_url=slow.base_url, api_key="sk-x-123456789", max_retries=0, posthog_client=client
        )
        count = sum(
            1
            for _ in slow_llm.chat.completions.create(
                model="gpt-4o-mini", messages=HELLO, stream=True
            )
        )
    client.flush(5)
    fast_caller, slow_provider = (e["properties"] for e in sink.named("$ai_generation"))
    assert fast_caller["$ai_latency"] < caller_wait / 2
    assert slow_provider["$ai_latency"] >= 0.05 * (count - 1) * 0.9


def test_raw_response_stream_is_tracked_through_parse(make_client, events):
    llm = make_client()
    raw = llm.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=HELLO, stream=True
    )
    chunks = list(raw.parse())
    assert raw.parse() is raw.parse()  # the SDK caches it: the caller iterates our stream
    assert all(chunk.choices for chunk in chunks)
    props = only(events("$ai_generation"))
    assert props["$ai_stream"] is True and props["$ai_output_choices"][0]["content"]
    assert "$ai_output_tokens" not in props  # a raw body: no usage chunk asked for


def test_stream_the_caller_stopped_reading_is_sent_when_its_client_shuts_down(
    make_client, client, sink
):
    llm = make_client()
    stream = llm.chat.completions.create(model="gpt-4o-mini", messages=HELLO, stream=True)
    for chunk in stream:
        if chunk.choices[0].delta.content:
            break  # still held, never closed
    assert client.shutdown(timeout=5) is True

    (event,) = [e["properties"] for e in sink.named("$ai_generation")]
    assert event["$ai_output_choices"] == [{"role": "assistant", "content": "Echo:"}]
    assert "$ai_stop_reason" not in event and "$ai_is_error" not in event
    assert event["$ai_stream"] is True
    stream.close()  # sent already: nothing more
    assert len(sink.named("$ai_generation")) == 1


def test_a_shutdown_with_no_time_left_still_hands_the_open_stream_over(make_client, client, sink):
    llm = make_client()
    stream = llm.chat.completions.create(model="gpt-4o-mini", messages=HELLO, stream=True)
    next(iter(stream))
    client.shutdown(timeout=0)
    stats = client.stats()
    # Queued before the client closed: delivered or kept, never refused as "after shutdown".
    assert len(sink.named("$ai_generation")) + stats["spooled"] + stats["failed"] == 1
    assert stats["dropped"] == 0


def test_shutting_down_another_client_leaves_the_stream_open(make_client, events):
    llm = make_client()
    stream = llm.chat.completions.create(model="gpt-4o-mini", messages=HELLO, stream=True)
    first = next(iter(stream))
    Client(destination=InMemoryDestination()).shutdown(timeout=5)
    rest = list(stream)
    assert len([first, *rest]) > 2
    props = only(events("$ai_generation"))
    assert props["$ai_stop_reason"] == "stop"


def test_stream_the_caller_stopped_reading_is_sent_at_process_exit(tmp_path):
    db = tmp_path / "events.db"
    code = f"""
        import posthog_llm
        from posthog_llm.integrations.openai import OpenAI
        from posthog_llm.local.openai_standin import OpenAIStandIn

        standin = OpenAIStandIn().start()
        llm = OpenAI(api_key="sk-test", base_url=standin.base_url, max_retries=0,
                     posthog_client=posthog_llm.Client(db={str(db)!r}))
        stream = llm.chat.completions.create(
            model="gpt-4o-mini", stream=True, messages=[{{"role": "user", "content": "owls"}}]
        )
        for chunk in stream:
            break
        # no close, no flush, no shutdown: the process just ends
        """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    (event,) = EventStore(str(db)).events()
    assert event["event"] == "$ai_generation"


def test_a_stream_cancelled_while_read_is_closed_early_not_failed(client, sink):
    # A timeout around the reader, or a web client that went away from a streamed reply: the
    # caller stopped reading, as with a `break`; the provider did not fail.
    import asyncio

    from posthog_llm.integrations.openai import AsyncOpenAI

    async def read_for_a_while(base_url: str) -> None:
        llm = AsyncOpenAI(base_url=base_url, api_key="sk-x-123456789", posthog_client=client)

        async def read() -> None:
            stream = await llm.chat.completions.create(
                model="gpt-4o-mini", messages=HELLO, stream=True
            )
            async with stream:
                async for _ in stream:
                    pass

        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(read(), 0.12)

    with OpenAIStandIn(chunk_delay=0.05) as slow:
        asyncio.run(read_for_a_while(slow.base_url))
    client.flush(5)
    (event,) = [e["properties"] for e in sink.named("$ai_generation")]
    assert "$ai_is_error" not in event and "$ai_error" not in event
    assert event["$ai_stream"] is True and event["$ai_output_choices"][0]["content"]


@pytest.mark.parametrize("ending", ["shutdown", "exit"])
def test_a_held_stream_reaches_a_posthog_python_client_before_it_closes(
    posthog_server, tmp_path, ending
):
    # posthog-python joins its worker at exit before our own exit hook runs, and its
    # `shutdown()` is its own: the stream the caller still holds was refused or lost.
    pytest.importorskip("posthog")
    code = f"""
        import posthog
        from posthog_llm.integrations.openai import OpenAI
        from posthog_llm.local.openai_standin import OpenAIStandIn

        standin = OpenAIStandIn().start()
        ph = posthog.Posthog("phc_test", host={posthog_server.host!r})
        llm = OpenAI(api_key="sk-test", base_url=standin.base_url, max_retries=0,
                     posthog_client=ph)
        stream = llm.chat.completions.create(
            model="gpt-4o-mini", stream=True, messages=[{{"role": "user", "content": "owls"}}]
        )
        for chunk in stream:
            break
        if {ending == "shutdown"}:
            ph.shutdown()
        """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "after shutdown" not in result.stderr
    (event,) = [e for e in posthog_server.events if e["event"] == "$ai_generation"]
    assert event["properties"]["$ai_stream"] is True


def test_a_responses_stream_left_after_a_function_call_keeps_the_call(make_client, events):
    # The caller runs the tool as soon as its call is whole, without waiting for the response.
    llm = make_client()
    tools = [
        {
            "type": "function",
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        }
    ]
    seen = None
    with llm.responses.create(
        model="gpt-4o-mini", input="weather in Paris?", tools=tools, stream=True
    ) as stream:
        for event in stream:
            if event.type == "response.output_item.done" and event.item.type == "function_call":
                seen = event.item
                break
    assert seen is not None
    [props] = [e["properties"] for e in events("$ai_generation")]
    [message] = props["$ai_output_choices"]
    [call] = message["tool_calls"]
    assert call["id"] == seen.call_id
    assert call["function"] == {"name": "get_weather", "arguments": seen.arguments}
