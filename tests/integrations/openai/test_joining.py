"""OpenAI drop-in calls join the open observation (a span, another integration's step)."""

from __future__ import annotations

import pytest

pytest.importorskip("openai")

import posthog_llm  # noqa: E402
from posthog_llm.instrumentation import close_observation, make_scope, open_observation  # noqa: E402

from tests.support.events import only  # noqa: E402

HELLO = [{"role": "user", "content": "hello"}]


def test_calls_inside_a_span_join_its_trace(make_client, events, client):
    llm = make_client()
    with posthog_llm.span("answer", client=client) as outer:
        llm.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
        for _ in llm.chat.completions.create(model="gpt-4o-mini", messages=HELLO, stream=True):
            pass
        llm.embeddings.create(model="text-embedding-3-small", input="hello")
    llm.chat.completions.create(model="gpt-4o-mini", messages=HELLO)

    trace_id = only(events("$ai_trace"))["$ai_trace_id"]
    inside = events("$ai_generation")[:2] + events("$ai_embedding")
    for event in inside:
        assert event["properties"]["$ai_trace_id"] == trace_id
        assert event["properties"]["$ai_parent_id"] == outer.span_id
    after = events("$ai_generation")[2]["properties"]
    assert after["$ai_trace_id"] != trace_id and "$ai_parent_id" not in after


async def test_async_calls_inside_nested_spans_take_the_innermost_as_parent(
    make_client, events, client
):
    from posthog_llm.integrations.openai import AsyncOpenAI

    llm = make_client(AsyncOpenAI)
    async with posthog_llm.span("outer", client=client):
        async with posthog_llm.span("inner", client=client) as inner:
            await llm.responses.create(model="gpt-4o-mini", input="hello")

    props = only(events("$ai_generation"))
    assert props["$ai_parent_id"] == inner.span_id
    assert props["$ai_trace_id"] == only(events("$ai_trace"))["$ai_trace_id"]


def test_a_stream_read_after_its_span_ended_goes_where_the_span_went(make_client, events, client):
    # A web handler's span ends before the streamed body is read: the call, which names no
    # client, went to the default client once the span was gone.
    from posthog_llm import Client, InMemoryDestination

    default_sink = InMemoryDestination()
    default = Client(destination=default_sink, flush_interval=0.05)
    posthog_llm.set_client(default)
    try:
        llm = make_client(posthog_client=None)
        with posthog_llm.span("request", client=client):
            stream = llm.chat.completions.create(model="gpt-4o-mini", messages=HELLO, stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert default.flush(10)
        assert default_sink.events == []
        generation = only(events("$ai_generation"))
        assert generation["$ai_trace_id"] == only(events("$ai_trace"))["$ai_trace_id"]
    finally:
        default.shutdown(5)


def test_explicit_trace_id_wins_over_the_open_span(make_client, events, client):
    llm = make_client()
    with posthog_llm.span("answer", client=client):
        llm.chat.completions.create(model="gpt-4o-mini", messages=HELLO, posthog_trace_id="mine")

    props = only(events("$ai_generation"))
    assert props["$ai_trace_id"] == "mine" and "$ai_parent_id" not in props


def test_a_call_under_another_frameworks_generation_is_not_reported_again(make_client, events):
    llm = make_client()
    obs = open_observation(
        "generation", trace_id="t-1", span_id="g-1", scope=make_scope(), framework="openai-agents"
    )
    try:
        reply = llm.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    finally:
        close_observation(obs)

    assert reply.choices[0].message.content == "Echo: hello"
    assert events("$ai_generation") == []
