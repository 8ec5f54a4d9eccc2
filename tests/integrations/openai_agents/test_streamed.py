"""Streamed runs report what the same run reports without streaming.

A streamed Chat Completions call goes through the SDK's Responses adapter: its generation span
holds a `Response` dump, not chat messages, and zeros when the provider sent no usage.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from agents import Agent, ModelSettings, RunConfig, Runner
from posthog_llm.integrations import openai_agents as posthog_agents
from posthog_llm.integrations.openai_agents import _facts

from .conftest import make_agents, sdk_version

with_the_sdk = pytest.mark.usefixtures("agents_sdk")

QUESTION = "What is the weather in Paris?"
ANSWER = "The tool returned: sunny in Paris"
TOKENS = ("$ai_input_tokens", "$ai_output_tokens")


async def _stream(run_config: RunConfig | None) -> Any:
    result = Runner.run_streamed(make_agents(), QUESTION, run_config=run_config)
    async for _ in result.stream_events():
        pass
    return result.final_output


def _streamed(run_config: RunConfig | None = None) -> Any:
    return asyncio.run(_stream(run_config))


def _plain_then_streamed(run_config: RunConfig) -> Any:
    # One event loop for both: the SDK's client keeps its connections on the loop that made them.
    async def main() -> Any:
        await Runner.run(make_agents(), QUESTION, run_config=run_config)
        return await _stream(run_config)

    return asyncio.run(main())


def _with_usage() -> RunConfig:
    return RunConfig(model_settings=ModelSettings(include_usage=True))


@with_the_sdk
def test_a_streamed_run_reports_the_output_of_each_call_and_of_the_run(client, events, api):
    posthog_agents.instrument(client)
    assert _plain_then_streamed(_with_usage()) == ANSWER
    generations = [e["properties"] for e in events("$ai_generation")]
    plain, streamed = generations[:3], generations[3:]

    assert len(streamed) == len(plain) == 3
    for one, other in zip(streamed, plain):
        assert one["$ai_output_choices"] == other["$ai_output_choices"]
        assert one.get("$ai_stop_reason") == other.get("$ai_stop_reason")
    assert streamed[0]["$ai_output_choices"][0]["tool_calls"][0]["function"]["name"] == (
        "transfer_to_specialist"
    )
    assert streamed[0]["$ai_stop_reason"] == "tool_calls"
    assert streamed[1]["$ai_output_choices"][0]["tool_calls"][0]["function"] == {
        "name": "get_weather",
        "arguments": '{"city": "Paris"}',
    }
    assert streamed[-1]["$ai_output_choices"] == [{"role": "assistant", "content": ANSWER}]
    assert all(g["$ai_input_tokens"] > 0 and g["$ai_output_tokens"] > 0 for g in streamed)

    trace = events("$ai_trace")[-1]["properties"]
    assert trace["$ai_output_state"] == ANSWER  # the final text, not the Response dump


@with_the_sdk
def test_a_streamed_run_in_privacy_mode_keeps_content_out(client, events):
    posthog_agents.instrument(client, privacy_mode=True)
    assert _streamed(_with_usage()) == ANSWER
    found = events()
    assert "Paris" not in str(found)
    (first, *_) = [e["properties"] for e in events("$ai_generation")]
    assert first["$ai_stop_reason"] == "tool_calls"  # read from the output, not sent


# Only a Chat Completions stream can arrive without usage (the Responses API always sends it).
@pytest.mark.parametrize("api", ["chat_completions"])
@with_the_sdk
def test_a_stream_without_usage_sends_no_token_counts(client, events, api):
    posthog_agents.instrument(client)
    assert _streamed() == ANSWER
    generations = [e["properties"] for e in events("$ai_generation")]
    assert len(generations) == 3
    for generation in generations:
        assert not set(TOKENS) & set(generation), generation  # unknown, not 0
        assert generation["$ai_output_choices"]  # the rest of the event is there


def test_usage_that_is_all_zeros_is_unknown_and_a_real_count_is_kept():
    zeros = {
        "requests": 1,
        "input_tokens": 0,
        "output_tokens": 0,
        "total_tokens": 0,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens_details": {"reasoning_tokens": 0},
    }
    assert _facts.usage_of(zeros) == {}
    cached_only = {**zeros, "input_tokens_details": {"cached_tokens": 5}}
    assert _facts.usage_of(cached_only)["cache_read_input_tokens"] == 5
    answered = {**zeros, "output_tokens": 7}
    assert _facts.usage_of(answered)["input_tokens"] == 0  # a real count beside it: kept
    assert _facts.usage_of(answered)["output_tokens"] == 7
    # The SDK writes `cache_write_tokens: 0` whenever the provider reported none: unknown.
    details = {"cached_tokens": 0, "cache_write_tokens": 0}
    assert (
        _facts.usage_of({**answered, "input_tokens_details": details})[
            "cache_creation_input_tokens"
        ]
        is None
    )
    written = {**answered, "input_tokens_details": {**details, "cache_write_tokens": 3}}
    assert _facts.usage_of(written)["cache_creation_input_tokens"] == 3


@with_the_sdk
def test_streamed_calls_are_streams_and_plain_calls_are_not(client, events, api):
    posthog_agents.instrument(client)
    assert _plain_then_streamed(_with_usage()) == ANSWER
    generations = [e["properties"] for e in events("$ai_generation")]
    assert [g.get("$ai_stream") for g in generations] == [False] * 3 + [True] * 3
    # The SDK tells a tracing processor nothing between a call's start and end: no first-token
    # time is known, and none is made up.
    assert not any("$ai_time_to_first_token" in g for g in generations)


@pytest.mark.skipif(
    sdk_version() < (0, 24),
    reason="older Agents SDKs never end the model span of a stream that failed midway",
)
@with_the_sdk
def test_a_streamed_call_that_fails_midway_keeps_the_model_it_asked_for(client, events):
    # A Responses stream ending in an `error` event leaves the SDK no response and its error no
    # request: the model is the one the SDK's model object was made for.
    posthog_agents.instrument(client)

    async def main() -> None:
        result = Runner.run_streamed(Agent(name="A", model="error-midstream"), QUESTION)
        async for _ in result.stream_events():
            pass

    with pytest.raises(Exception):  # noqa: B017 - the SDK's own error, whichever it is
        asyncio.run(main())
    [generation] = events("$ai_generation")
    assert generation["properties"]["$ai_model"] == "error-midstream"
    assert generation["properties"]["$ai_is_error"] is True
    assert events("$ai_trace")[0]["properties"]["$ai_is_error"] is True
