"""A model's refusal is kept on its generation, whichever way the call was made.

The stand-in does not refuse: these runs answer from an `httpx.MockTransport` instead (still
the SDK's own models, spans and clients; no network).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from agents import (
    Agent,
    ModelRefusalError,
    RunConfig,
    Runner,
    set_default_openai_api,
    set_default_openai_client,
    set_trace_processors,
)
from posthog_llm.integrations import openai_agents as posthog_agents

from .conftest import API_KEY, by_name

REFUSAL = "I can't help with that."


def _response(model: str) -> dict[str, Any]:
    """A Responses API answer whose only content is a refusal."""
    message = {
        "type": "message",
        "id": "msg_1",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "refusal", "refusal": REFUSAL}],
    }
    return {
        "id": "resp_1",
        "object": "response",
        "created_at": time.time(),
        "model": model,
        "status": "completed",
        "output": [message],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
    }


def _chat_stream(model: str) -> bytes:
    """A Chat Completions stream that refuses in two pieces."""
    deltas = [
        ({"role": "assistant", "refusal": "I can't "}, None),
        ({"refusal": "help with that."}, None),
    ]
    deltas.append(({}, "stop"))
    chunks = [
        {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        for delta, finish in deltas
    ]
    text = "".join(f"data: {json.dumps(chunk)}\n\n" for chunk in chunks) + "data: [DONE]\n\n"
    return text.encode()


def _answer(request: httpx.Request) -> httpx.Response:
    model = json.loads(request.content)["model"]
    if request.url.path.endswith("/responses"):
        return httpx.Response(200, json=_response(model))
    stream = {"content-type": "text/event-stream"}
    return httpx.Response(200, content=_chat_stream(model), headers=stream)


@pytest.fixture
def refusing_sdk(api: str) -> Iterator[None]:
    set_trace_processors([])
    transport = httpx.AsyncClient(transport=httpx.MockTransport(_answer))
    set_default_openai_client(
        openai.AsyncOpenAI(
            base_url="http://refuser.invalid/v1",
            api_key=API_KEY,
            http_client=transport,
            max_retries=0,
        ),
        use_for_tracing=False,
    )
    set_default_openai_api(api)  # type: ignore[arg-type]
    yield
    posthog_agents.uninstrument()
    set_trace_processors([])


def _run(api: str) -> None:
    agent = Agent(name="Solo", instructions="Answer.", model="gpt-4o-mini")

    async def streamed() -> None:
        result = Runner.run_streamed(agent, "hi")
        async for _ in result.stream_events():
            pass

    try:
        if api == "chat_completions":  # a stream: its output is recorded as a Responses dump
            asyncio.run(streamed())
        else:
            Runner.run_sync(agent, "hi")
    except Exception:  # the SDK raises on a refusal (ModelRefusalError in newer versions)
        pass


@pytest.mark.usefixtures("refusing_sdk")
def test_a_refusal_is_kept_like_a_chat_completions_message_keeps_it(client, events, api):
    posthog_agents.instrument(client)
    _run(api)
    (generation,) = [e["properties"] for e in events("$ai_generation")]
    assert generation["$ai_output_choices"] == [
        {"role": "assistant", "content": None, "refusal": REFUSAL}
    ]


def _refused_run(api: str, run_config: RunConfig | None = None) -> None:
    """The run, which must end in the SDK's own refusal error, untouched by the processor."""
    agent = Agent(name="Solo", instructions="Answer.", model="gpt-4o-mini")

    async def streamed() -> None:
        result = Runner.run_streamed(agent, "hi", run_config=run_config)
        async for _ in result.stream_events():
            pass

    with pytest.raises(ModelRefusalError, match="I can't help with that"):
        if api == "chat_completions":
            asyncio.run(streamed())
        else:
            Runner.run_sync(agent, "hi", run_config=run_config)


@pytest.mark.parametrize("privacy", [False, True])
@pytest.mark.usefixtures("refusing_sdk")
def test_a_refusal_marks_the_turn_it_ended_and_the_trace(client, events, api, privacy):
    posthog_agents.instrument(client, privacy_mode=privacy)
    _refused_run(api)
    refused = "ModelRefusalError"
    if not privacy:
        refused += f": Model refused to produce output: {REFUSAL}"
    spans = events("$ai_span")
    turn = by_name(spans, "Solo turn 1")
    assert (turn.get("$ai_is_error"), turn.get("$ai_error")) == (True, refused)
    assert by_name(spans, "Solo")["$ai_is_error"] is True
    (trace,) = [e["properties"] for e in events("$ai_trace")]
    assert (trace.get("$ai_is_error"), trace.get("$ai_error")) == (True, refused)
    (generation,) = [e["properties"] for e in events("$ai_generation")]
    assert "$ai_is_error" not in generation  # the call itself answered
    if privacy:
        assert REFUSAL not in str(events())


@pytest.mark.usefixtures("refusing_sdk")
def test_without_turn_spans_a_refusal_marks_the_agent_and_the_trace(client, events, api):
    posthog_agents.instrument(client)
    _refused_run(api, RunConfig(tracing={"include_task_and_turn_spans": False}))
    assert not [e for e in events("$ai_span") if e["properties"]["$ai_span_type"] == "turn"]
    agent = by_name(events("$ai_span"), "Solo")
    assert agent["$ai_is_error"] is True
    assert REFUSAL in agent["$ai_error"]
    (trace,) = [e["properties"] for e in events("$ai_trace")]
    assert trace["$ai_is_error"] is True
    assert trace["$ai_error"] == agent["$ai_error"]
