"""Real Agents SDK runs against the loopback OpenAI stand-in (Chat Completions and Responses)."""

from __future__ import annotations

import openai
import pytest
from agents import Agent, ModelSettings, RunConfig, Runner
from posthog_llm.integrations import openai_agents as posthog_agents

from .conftest import by_name, make_agents

pytestmark = pytest.mark.usefixtures("agents_sdk")


def test_a_run_with_a_handoff_and_a_tool_call_is_one_trace(client, events, api):
    posthog_agents.instrument(client)
    result = Runner.run_sync(make_agents(), "What is the weather in Paris?")
    assert result.final_output == "The tool returned: sunny in Paris"

    found = events()
    (trace,) = [e["properties"] for e in events("$ai_trace")]
    trace_id = trace["$ai_trace_id"]
    assert trace_id.startswith("trace_")
    assert trace["$ai_span_name"] == "Agent workflow"
    assert trace["$ai_framework"] == "openai-agents"
    assert trace["$ai_latency"] > 0
    assert "$ai_is_error" not in trace
    assert trace["$ai_input_state"] == [
        {"role": "user", "content": "What is the weather in Paris?"}
    ]
    # The final text, as the Responses API and a stream give it (not the whole chat message).
    assert trace["$ai_output_state"] == "The tool returned: sunny in Paris"
    assert {e["properties"]["$ai_trace_id"] for e in found} == {trace_id}

    generations = [e["properties"] for e in events("$ai_generation")]
    assert len(generations) == 3  # triage hands off, specialist calls the tool, then answers
    for gen in generations:
        assert gen["$ai_model"].startswith("gpt-4o-mini")
        assert gen["$ai_input_tokens"] > 0 and gen["$ai_output_tokens"] > 0
        assert gen["$ai_latency"] >= 0
        assert gen["$ai_input"][0]["role"] == "system"
    first = generations[0]
    assert first["$ai_output_choices"][0]["tool_calls"][0]["function"]["name"] == (
        "transfer_to_specialist"
    )
    assert first["$ai_stop_reason"] == "tool_calls"
    # What each call offered the model: Triage its handoff, Specialist its tool, with schemas.
    offered = [[t.get("function", t) for t in gen["$ai_tools"]] for gen in generations[:2]]
    assert [[tool["name"] for tool in tools] for tools in offered] == [
        ["transfer_to_specialist"],
        ["get_weather"],
    ]
    assert "city" in offered[1][0]["parameters"]["properties"]
    assert generations[-1]["$ai_output_choices"][0]["content"] == (
        "The tool returned: sunny in Paris"
    )
    assert generations[-1]["$ai_cache_read_input_tokens"] > 0  # the stand-in caches the prefix

    spans = events("$ai_span")
    tool = by_name(spans, "get_weather")
    assert tool["$ai_span_type"] == "tool"
    assert tool["$ai_input_state"] == {"city": "Paris"}
    assert tool["$ai_output_state"] == "sunny in Paris"
    handoff = by_name(spans, "Triage -> Specialist")
    assert handoff["$ai_span_type"] == "handoff"
    triage, specialist = by_name(spans, "Triage"), by_name(spans, "Specialist")
    assert triage["$ai_span_type"] == specialist["$ai_span_type"] == "agent"
    assert triage["$ai_parent_id"] == specialist["$ai_parent_id"] == trace_id  # task folded in
    turns = [s["properties"] for s in spans if s["properties"]["$ai_span_type"] == "turn"]
    assert [t["$ai_span_name"] for t in turns] == [
        "Triage turn 1",
        "Specialist turn 2",
        "Specialist turn 3",
    ]
    assert not [s for s in spans if s["properties"]["$ai_span_type"] == "task"]

    # Every parent is the trace or another event of it: the tree is whole.
    ids = {e["properties"].get("$ai_span_id") for e in found} | {trace_id}
    for event in found:
        parent = event["properties"].get("$ai_parent_id")
        assert parent is None or parent in ids, event
    assert tool["$ai_parent_id"] == turns[1]["$ai_span_id"]
    assert turns[1]["$ai_parent_id"] == specialist["$ai_span_id"]
    # Anonymous: one personless id for the whole trace.
    assert {e["distinct_id"] for e in found} == {trace_id}
    assert all(e["properties"]["$process_person_profile"] is False for e in found)


# Tool definitions come from the Responses API's response object: this API only.
@pytest.mark.parametrize("api", ["responses"])
def test_responses_api_generations_carry_tool_definitions(client, events, api):
    posthog_agents.instrument(client)
    Runner.run_sync(make_agents(), "What is the weather in Paris?")
    generations = [e["properties"] for e in events("$ai_generation")]
    tool_call = generations[1]
    assert [t["name"] for t in tool_call["$ai_tools"]] == ["get_weather"]
    assert tool_call["$ai_model_parameters"]["tool_choice"] == "auto"
    assert tool_call["$ai_output_choices"][0]["tool_calls"][0]["function"] == {
        "name": "get_weather",
        "arguments": '{"city": "Paris"}',
    }


def test_group_id_is_the_session_and_the_workflow_name_names_the_trace(client, events):
    posthog_agents.instrument(client, distinct_id="user_1", properties={"team": "weather"})
    Runner.run_sync(
        make_agents(),
        "What is the weather in Paris?",
        run_config=RunConfig(workflow_name="Weather desk", group_id="chat-42"),
    )
    found = events()
    (trace,) = events("$ai_trace")
    assert trace["properties"]["$ai_span_name"] == "Weather desk"
    assert {e["properties"]["$ai_session_id"] for e in found} == {"chat-42"}
    assert {e["distinct_id"] for e in found} == {"user_1"}
    assert {e["properties"]["team"] for e in found} == {"weather"}
    assert not any("$process_person_profile" in e["properties"] for e in found)


def test_a_count_or_a_setting_nobody_gave_is_not_sent(client, events, api):
    # The SDK writes a cache-write count of 0 for every OpenAI call (OpenAI reports none) and
    # records every model setting, unset ones as None: neither is sent, as the drop-ins send
    # neither. A setting that was given is.
    posthog_agents.instrument(client)
    Runner.run_sync(Agent(name="Plain", model="gpt-4o-mini"), "hello")
    tuned = Agent(name="Tuned", model="gpt-4o-mini", model_settings=ModelSettings(temperature=0.2))
    Runner.run_sync(tuned, "hello")
    with pytest.raises(openai.RateLimitError):  # no response: nothing the call echoed either
        Runner.run_sync(Agent(name="Broken", model="error-429"), "hello")
    plain, tuned_call, failed = [e["properties"] for e in events("$ai_generation")]
    for generation in (plain, tuned_call, failed):
        assert "$ai_cache_creation_input_tokens" not in generation
    assert plain["$ai_cache_read_input_tokens"] >= 0  # a count OpenAI does report stays
    assert tuned_call["$ai_model_parameters"]["temperature"] == 0.2
    assert "$ai_model_parameters" not in failed
    if api == "chat_completions":
        assert "$ai_model_parameters" not in plain
