"""`messages.create` / `messages.parse`: properties, tokens, caching, tools, per-call arguments."""

from __future__ import annotations

import inspect
import json
import uuid

import pytest

anthropic = pytest.importorskip("anthropic")

import posthog_llm  # noqa: E402
import pydantic  # noqa: E402

from tests.support.events import only  # noqa: E402

from .conftest import HELLO, MODEL  # noqa: E402

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


def test_create_becomes_one_generation(make_client, events, standin):
    llm = make_client()
    reply = llm.messages.create(
        model=MODEL,
        max_tokens=200,
        system="You are terse.",
        stop_sequences=["###"],
        messages=HELLO,
    )

    assert isinstance(reply, anthropic.types.Message)
    assert reply.content[0].text == "Echo: Tell me a fun fact about hedgehogs"
    props = only(events("$ai_generation"))
    assert props["$ai_model"] == MODEL
    assert props["$ai_provider"] == "anthropic"
    assert props["$ai_base_url"] == standin.base_url
    assert props["$ai_input"] == [{"role": "system", "content": "You are terse."}, *HELLO]
    assert props["$ai_output_choices"] == [
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "Echo: Tell me a fun fact about hedgehogs"}],
        }
    ]
    assert props["$ai_input_tokens"] == reply.usage.input_tokens
    assert props["$ai_output_tokens"] == reply.usage.output_tokens
    assert props["$ai_cache_read_input_tokens"] == 0
    assert props["$ai_cache_creation_input_tokens"] == 0
    assert props["$ai_model_parameters"] == {"max_tokens": 200, "stop_sequences": ["###"]}
    assert props["$ai_stop_reason"] == "end_turn"
    assert props["$ai_http_status"] == 200
    assert props["$ai_service_tier"] == reply.usage.service_tier == "standard"
    assert props["$ai_stream"] is False
    assert "$ai_web_search_count" not in props  # not reported: omitted, not 0
    assert isinstance(props["$ai_latency"], float) and 0 < props["$ai_latency"] < 60
    assert "$ai_is_error" not in props
    uuid.UUID(props["$ai_trace_id"])


def test_posthog_arguments_are_applied_and_never_sent(make_client, events, standin):
    llm = make_client()
    llm.messages.create(
        model=MODEL,
        max_tokens=50,
        messages=HELLO,
        posthog_distinct_id="user_123",
        posthog_trace_id="trace_123",
        posthog_session_id="session_9",
        posthog_properties={"conversation_id": "abc123"},
        posthog_groups={"company": "acme"},
    )

    sent = standin.last_request("/v1/messages")
    assert not [key for key in sent["body"] if key.startswith("posthog")]
    event = events("$ai_generation")[0]
    props = event["properties"]
    assert event["distinct_id"] == "user_123"
    assert props["$ai_trace_id"] == "trace_123"
    assert props["$ai_session_id"] == "session_9"
    assert props["conversation_id"] == "abc123"
    assert props["$groups"] == {"company": "acme"}
    assert "$process_person_profile" not in props


def test_prompt_caching_reports_writes_with_their_ttl_split_then_reads(make_client, events):
    llm = make_client()
    system = [
        {
            "type": "text",
            "text": "A long style guide that is worth caching. " * 5,
            "cache_control": {"type": "ephemeral", "ttl": "1h"},
        }
    ]
    first = llm.messages.create(model=MODEL, max_tokens=50, system=system, messages=HELLO)
    second = llm.messages.create(model=MODEL, max_tokens=50, system=system, messages=HELLO)

    written, read = [e["properties"] for e in events("$ai_generation")]
    assert first.usage.cache_creation_input_tokens > 0
    assert written["$ai_cache_creation_input_tokens"] == first.usage.cache_creation_input_tokens
    assert written["$ai_cache_creation_1h_input_tokens"] == first.usage.cache_creation_input_tokens
    assert written["$ai_cache_creation_5m_input_tokens"] == 0
    assert written["$ai_cache_read_input_tokens"] == 0
    assert read["$ai_cache_read_input_tokens"] == second.usage.cache_read_input_tokens > 0
    assert read["$ai_cache_creation_input_tokens"] == 0
    # Anthropic's input_tokens exclude cache reads and writes; PostHog's cost model expects that.
    assert read["$ai_input_tokens"] == second.usage.input_tokens


def test_web_search_requests_are_counted(make_client, events):
    llm = make_client()
    llm.messages.create(
        model=MODEL,
        max_tokens=100,
        messages=HELLO,
        tools=[{"type": "web_search_20250305", "name": "web_search", "max_uses": 3}],
    )

    props = only(events("$ai_generation"))
    assert props["$ai_web_search_count"] == 1
    assert props["$ai_tools"][0]["name"] == "web_search"


def test_tool_use_and_thinking_blocks_in_the_output(make_client, events):
    llm = make_client()
    reply = llm.messages.create(
        model=MODEL,
        max_tokens=1024,
        thinking={"type": "enabled", "budget_tokens": 512},
        tools=[WEATHER_TOOL],
        tool_choice={"type": "auto"},
        messages=[{"role": "user", "content": "Weather in Paris?"}],
    )

    tool_use = reply.content[-1]
    props = only(events("$ai_generation"))
    assert props["$ai_tools"] == [WEATHER_TOOL]
    assert props["$ai_model_parameters"] == {
        "max_tokens": 1024,
        "thinking": {"type": "enabled", "budget_tokens": 512},
        "tool_choice": {"type": "auto"},
    }
    assert props["$ai_stop_reason"] == "tool_use"
    assert props["$ai_output_choices"] == [
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "The user said: Weather in Paris?"},
                {
                    "type": "function",
                    "id": tool_use.id,
                    # Arguments as JSON text, as every route sends them.
                    "function": {"name": "get_weather", "arguments": json.dumps(tool_use.input)},
                },
            ],
        }
    ]


def test_tool_result_round_trip_keeps_block_content_in_the_input(make_client, events):
    llm = make_client()
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}],
        },
    ]
    reply = llm.messages.create(model=MODEL, max_tokens=50, tools=[WEATHER_TOOL], messages=messages)

    assert reply.content[0].text == "The tool returned: sunny"
    props = only(events("$ai_generation"))
    assert props["$ai_input"] == messages


@pytest.mark.skipif(
    not hasattr(anthropic.resources.messages.Messages, "parse"),
    reason="this anthropic SDK has no messages.parse",
)
def test_parse_reports_the_structured_answer(make_client, events):
    class Weather(pydantic.BaseModel):
        city: str
        degrees: int

    llm = make_client()
    reply = llm.messages.parse(model=MODEL, max_tokens=100, messages=HELLO, output_format=Weather)

    assert reply.parsed_output == Weather(city=HELLO[0]["content"], degrees=1)
    props = only(events("$ai_generation"))
    text = props["$ai_output_choices"][0]["content"][0]["text"]
    assert Weather.model_validate_json(text) == reply.parsed_output
    assert props["$ai_input_tokens"] == reply.usage.input_tokens
    # The class asked for, by name (its schema is the SDK's business).
    assert props["$ai_model_parameters"]["output_format"] == {
        "type": "json_schema",
        "name": "Weather",
    }


@pytest.mark.skipif(
    "output_config"
    not in inspect.signature(anthropic.resources.messages.Messages.create).parameters,
    reason="this anthropic SDK has no output_config",
)
def test_output_config_is_a_model_parameter(make_client, events):
    llm = make_client()
    llm.messages.create(
        model=MODEL, max_tokens=100, messages=HELLO, output_config={"effort": "low"}
    )
    props = only(events("$ai_generation"))
    assert props["$ai_model_parameters"] == {"max_tokens": 100, "output_config": {"effort": "low"}}


@pytest.mark.parametrize("where", ["call", "context", "client"])
def test_privacy_mode_drops_prompt_and_answer(make_client, events, sink, where):
    client = posthog_llm.Client(
        destination=sink, flush_interval=0.05, privacy_mode=where == "client"
    )
    llm = make_client(posthog_client=client)
    kwargs = {"posthog_privacy_mode": True} if where == "call" else {}
    with posthog_llm.context(privacy_mode=True if where == "context" else None):
        llm.messages.create(
            model=MODEL, max_tokens=50, system="secret system", messages=HELLO, **kwargs
        )
    assert client.flush(5)
    client.shutdown(5)

    props = only(sink.named("$ai_generation"))
    assert "$ai_input" not in props and "$ai_output_choices" not in props
    assert props["$ai_output_tokens"] > 0
    assert "hedgehogs" not in str(props) and "secret system" not in str(props)


def test_bedrock_and_vertex_clients_report_as_anthropic(make_client, events, standin):
    from posthog_llm.integrations.anthropic import AnthropicBedrock, AnthropicVertex

    vertex = make_client(
        AnthropicVertex,
        api_key=None,
        region="us-east5",
        project_id="my-project",
        access_token="ya29.vertex-access-token-SECRET",
        base_url=standin.vertex_base_url,
    )
    vertex.messages.create(model=MODEL, max_tokens=50, messages=HELLO)
    # Bedrock API keys (no AWS signing, so no botocore needed) came in later SDKs.
    bedrock_keys = "api_key" in inspect.signature(anthropic.AnthropicBedrock.__init__).parameters
    if bedrock_keys:
        bedrock = make_client(
            AnthropicBedrock, api_key="bedrock-api-key-SECRET", aws_region="us-east-1"
        )
        bedrock.messages.create(model="anthropic.claude-sonnet-4-6", max_tokens=50, messages=HELLO)

    found = [e["properties"] for e in events("$ai_generation")]
    assert len(found) == (2 if bedrock_keys else 1)
    assert "publishers/anthropic/models" in standin.requests[0]["path"]
    assert found[0]["$ai_provider"] == "anthropic" and found[0]["$ai_model"] == MODEL
    assert found[0]["$ai_output_tokens"] > 0
    if bedrock_keys:
        assert standin.requests[1]["path"] == "/model/anthropic.claude-sonnet-4-6/invoke"
        assert found[1]["$ai_provider"] == "anthropic"
        assert found[1]["$ai_model"] == "anthropic.claude-sonnet-4-6"
    assert "SECRET" not in str(events())


def test_demo_call_on_the_standin(standin, client, events):
    from posthog_llm.local.demo import anthropic_standin_call as demo_call

    assert demo_call(standin, client, "hello demo") == "Echo: hello demo"
    props = only(events("$ai_generation"))
    assert props["$ai_input"][0] == {"role": "system", "content": "You are a local stand-in."}


def test_beta_messages_are_tracked(make_client, events, standin):
    llm = make_client()
    reply = llm.beta.messages.create(
        model=MODEL, max_tokens=50, messages=HELLO, betas=["context-1m-2025-08-07"],
        posthog_distinct_id="user-beta",
    )  # fmt: skip
    with llm.beta.messages.stream(model=MODEL, max_tokens=50, messages=HELLO) as stream:
        text = stream.get_final_text()
    raw = llm.beta.messages.with_raw_response.create(
        model=MODEL, max_tokens=50, messages=HELLO, stream=True, posthog_trace_id="t-beta"
    )
    kinds = [line for line in raw.http_response.iter_lines() if line.startswith("event:")]

    assert reply.content[0].text == text and kinds[-1] == "event: message_stop"
    assert not any("posthog" in str(request) for request in standin.requests)
    created, streamed, rawed = events("$ai_generation")
    assert created["distinct_id"] == "user-beta"
    assert rawed["properties"]["$ai_trace_id"] == "t-beta"
    for props in (e["properties"] for e in (created, streamed, rawed)):
        assert props["$ai_output_choices"][0]["content"][0]["text"] == text
        assert props["$ai_output_tokens"] > 0 and props["$ai_provider"] == "anthropic"
    assert streamed["properties"]["$ai_stream"] is rawed["properties"]["$ai_stream"] is True


async def test_async_beta_messages_are_tracked(make_client, events, standin):
    from posthog_llm.integrations.anthropic import AsyncAnthropic, AsyncAnthropicVertex

    llm = make_client(AsyncAnthropic)
    reply = await llm.beta.messages.create(model=MODEL, max_tokens=50, messages=HELLO)
    async with llm.beta.messages.stream(
        model=MODEL, max_tokens=50, messages=HELLO, posthog_distinct_id="user-async-beta"
    ) as stream:
        text = await stream.get_final_text()
    vertex = make_client(
        AsyncAnthropicVertex,
        api_key=None,
        region="us-east5",
        project_id="my-project",
        access_token="ya29.vertex-access-token-SECRET",
        base_url=standin.vertex_base_url,
    )
    await vertex.beta.messages.create(model=MODEL, max_tokens=50, messages=HELLO)
    await llm.close()
    await vertex.close()

    assert reply.content[0].text == text
    created, streamed, on_vertex = events("$ai_generation")
    assert streamed["distinct_id"] == "user-async-beta"
    assert streamed["properties"]["$ai_stream"] is True
    for event in (created, streamed, on_vertex):
        assert event["properties"]["$ai_output_choices"][0]["content"][0]["text"] == text


def test_the_input_is_the_request_as_sent_whatever_the_caller_changes_after(make_client, events):
    llm = make_client()
    # A content block reused for each question, and Anthropic's moving cache breakpoint: set on
    # the newest turn for one call, removed after it.
    block = {"type": "text", "text": ""}
    for question in ("first question", "second question"):
        block["text"] = question
        llm.messages.create(
            model=MODEL, max_tokens=10, messages=[{"role": "user", "content": [block]}]
        )
    cached = {"type": "text", "text": "long doc", "cache_control": {"type": "ephemeral"}}
    messages = [{"role": "user", "content": [cached]}]
    llm.messages.create(model=MODEL, max_tokens=10, messages=messages)
    cached.pop("cache_control")
    cached["text"] = "changed"
    first, second, third = (e["properties"] for e in events("$ai_generation"))
    assert first["$ai_input"][0]["content"][0]["text"] == "first question"
    assert second["$ai_input"][0]["content"][0]["text"] == "second question"
    assert third["$ai_input"][0]["content"][0]["text"] == "long doc"
    assert third["$ai_input"][0]["content"][0]["cache_control"] == {"type": "ephemeral"}
