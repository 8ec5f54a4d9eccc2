"""One trace across integrations and runs: a user's span around a run, an agent run as another's
tool, and our OpenAI drop-in used by the SDK (each model call reported once)."""

from __future__ import annotations

import asyncio

import openai
import posthog_llm
import pytest
from agents import Agent, RunConfig, Runner, set_default_openai_client
from posthog_llm.integrations import openai_agents as posthog_agents
from posthog_llm.integrations.openai import AsyncOpenAI

from .conftest import API_KEY, by_name, make_agents
from .test_errors_privacy import broken_weather

pytestmark = pytest.mark.usefixtures("agents_sdk")


def test_a_run_inside_a_users_span_is_a_child_of_it(client, events):
    posthog_agents.instrument(client)
    with posthog_llm.context(distinct_id="user_5"):
        with posthog_llm.span("support request", client=client) as outer:
            Runner.run_sync(make_agents(), "What is the weather in Paris?")
    found = events()
    (trace,) = events("$ai_trace")
    assert trace["properties"]["$ai_span_name"] == "support request"
    trace_id = trace["properties"]["$ai_trace_id"]
    assert outer.trace_id == trace_id
    assert {e["properties"]["$ai_trace_id"] for e in found} == {trace_id}
    run = by_name(events("$ai_span"), "Agent workflow")
    assert run["$ai_span_type"] == "agent_run"
    assert run["$ai_parent_id"] == outer.span_id
    triage = by_name(events("$ai_span"), "Triage")
    assert triage["$ai_parent_id"] == run["$ai_span_id"]
    assert {e["distinct_id"] for e in found} == {"user_5"}
    ids = {e["properties"].get("$ai_span_id") for e in found} | {trace_id}
    assert all(e["properties"].get("$ai_parent_id") in ids | {None} for e in found)


def test_a_joined_runs_error_and_group_id_reach_the_users_trace(client, events):
    posthog_agents.instrument(client)
    with posthog_llm.span("support request", client=client):
        # The tool's failure goes back to the model: nothing raises through the user's span.
        Runner.run_sync(
            make_agents(tools=[broken_weather]),
            "What is the weather in Paris?",
            run_config=RunConfig(group_id="conversation-7"),
        )
    found = events()
    (trace,) = [e["properties"] for e in events("$ai_trace")]
    run = by_name(events("$ai_span"), "Agent workflow")
    tool = by_name(events("$ai_span"), "broken_weather")
    assert trace["$ai_is_error"] is True
    assert trace["$ai_error"] == run["$ai_error"] == tool["$ai_error"]
    assert "sk-live-abcdefghijklmnop1234" not in trace["$ai_error"]
    assert {e["properties"].get("$ai_session_id") for e in found} == {"conversation-7"}


def test_a_joined_run_that_failed_carries_the_http_status_on_its_own_span(client, events):
    posthog_agents.instrument(client)
    with pytest.raises(openai.RateLimitError), posthog_llm.span("request", client=client):
        Runner.run_sync(Agent(name="Solo", instructions="Be brief.", model="error-429"), "hi")
    run = by_name(events("$ai_span"), "Agent workflow")
    assert run["$ai_error"].startswith("RateLimitError: Error code: 429")
    assert run["$ai_http_status"] == 429


def test_a_users_own_session_stays_on_the_trace_a_run_joins(client, events):
    posthog_agents.instrument(client)
    with posthog_llm.context(session_id="chat-42"):
        with posthog_llm.span("support request", client=client):
            Runner.run_sync(
                make_agents(), "Weather in Paris?", run_config=RunConfig(group_id="conversation-7")
            )
    (trace,) = [e["properties"] for e in events("$ai_trace")]
    assert trace["$ai_session_id"] == "chat-42"
    assert "$ai_is_error" not in trace


async def test_an_async_run_inside_a_users_span_joins_it_too(client, events):
    posthog_agents.instrument(client)
    async with posthog_llm.span("async request", client=client):
        await Runner.run(make_agents(), "What is the weather in Paris?")
    assert posthog_llm.instrumentation.current_observation() is None  # nothing left open
    found = events()
    assert len(events("$ai_trace")) == 1
    assert len({e["properties"]["$ai_trace_id"] for e in found}) == 1


def test_the_sdk_calling_our_openai_drop_in_reports_each_model_call_once(
    client, events, agents_sdk, api
):
    set_default_openai_client(
        AsyncOpenAI(
            base_url=agents_sdk.base_url, api_key=API_KEY, max_retries=0, posthog_client=client
        ),
        use_for_tracing=False,
    )
    posthog_agents.instrument(client)
    Runner.run_sync(make_agents(), "What is the weather in Paris?")
    generations = [e["properties"] for e in events("$ai_generation")]
    assert len(generations) == 3, generations
    assert {g["$ai_framework"] for g in generations} == {"openai-agents"}

    # Without the Agents processor the drop-in reports the calls itself.
    posthog_agents.uninstrument()
    Runner.run_sync(make_agents(), "What is the weather in Paris?")
    generations = [e["properties"] for e in events("$ai_generation")]
    assert len(generations) == 6
    assert sum(1 for g in generations if "$ai_framework" not in g) == 3


def test_a_private_drop_in_under_the_sdk_keeps_the_one_generation_private(
    client, events, agents_sdk, api
):
    # Reported once by the Agents span, with the privacy of the drop-in client that made it.
    private = posthog_llm.Client(destination=posthog_llm.InMemoryDestination(), privacy_mode=True)
    set_default_openai_client(
        AsyncOpenAI(
            base_url=agents_sdk.base_url, api_key=API_KEY, max_retries=0, posthog_client=private
        ),
        use_for_tracing=False,
    )
    posthog_agents.instrument(client)
    Runner.run_sync(make_agents(), "What is the weather in Paris?")
    generations = [e["properties"] for e in events("$ai_generation")]
    assert len(generations) == 3
    assert all(g["$ai_framework"] == "openai-agents" for g in generations)
    assert not any("$ai_input" in g or "$ai_output_choices" in g for g in generations)
    assert all(g.get("$ai_model") and g.get("$ai_input_tokens") for g in generations)
    assert private.flush(5) and private.destination.events == []
    private.shutdown(1)


def test_concurrent_runs_stay_apart(client, events):
    posthog_agents.instrument(client)

    async def main() -> None:
        await asyncio.gather(
            *(Runner.run(make_agents(), f"What is the weather in city {i}?") for i in range(4))
        )

    asyncio.run(main())
    found = events()
    traces = {e["properties"]["$ai_trace_id"] for e in events("$ai_trace")}
    assert len(traces) == 4
    for trace_id in traces:
        mine = [e for e in found if e["properties"]["$ai_trace_id"] == trace_id]
        assert len([e for e in mine if e["event"] == "$ai_generation"]) == 3
        ids = {e["properties"].get("$ai_span_id") for e in mine} | {trace_id}
        assert all(e["properties"].get("$ai_parent_id") in ids | {None} for e in mine)


def test_an_agent_run_as_a_tool_stays_under_the_tool_that_ran_it(client, events):
    posthog_agents.instrument(client)
    inner = make_agents()
    ask = inner.as_tool(tool_name="ask_weather_desk", tool_description="Ask the weather desk.")
    outer = Agent(name="Concierge", instructions="Use your tools.", tools=[ask])
    Runner.run_sync(outer, "What is the weather in Paris?")

    found = events()
    (trace,) = events("$ai_trace")
    trace_id = trace["properties"]["$ai_trace_id"]
    spans = events("$ai_span")
    concierge, tool = by_name(spans, "Concierge"), by_name(spans, "ask_weather_desk")
    assert concierge["$ai_parent_id"] == trace_id  # the run's own task: folded into the trace
    # The inner run's task is folded into the tool span that ran it, not into the trace.
    triage, specialist = by_name(spans, "Triage"), by_name(spans, "Specialist")
    assert triage["$ai_parent_id"] == specialist["$ai_parent_id"] == tool["$ai_span_id"]
    assert by_name(spans, "get_weather")["$ai_trace_id"] == trace_id
    assert not [s for s in spans if s["properties"]["$ai_span_type"] == "task"]
    # The outer call, three inner calls, the outer answer: all in the one trace, tree whole.
    assert len(events("$ai_generation")) == 5
    ids = {e["properties"].get("$ai_span_id") for e in found} | {trace_id}
    assert all(e["properties"].get("$ai_parent_id") in ids | {None} for e in found)
    assert "sunny in Paris" in str(trace["properties"]["$ai_output_state"])


def test_a_run_inside_an_opentelemetry_span_joins_it_unless_its_client_is_disabled(
    client, sink, events
):
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.trace import TracerProvider
    from posthog_llm.integrations.otel import PostHogSpanProcessor

    provider = TracerProvider()
    provider.add_span_processor(PostHogSpanProcessor(client))
    tracer = provider.get_tracer("app")
    posthog_agents.instrument(posthog_llm.Client(destination=sink, disabled=True))
    try:
        with tracer.start_as_current_span("POST /agent"):
            Runner.run_sync(make_agents(), "What is the weather in Paris?")
    finally:
        posthog_agents.uninstrument()
    assert events() == []  # nothing reported the run: the request is not an AI trace

    posthog_agents.instrument(client)
    with tracer.start_as_current_span("POST /agent") as request:
        Runner.run_sync(make_agents(), "What is the weather in Paris?")
    trace_hex = f"{request.get_span_context().trace_id:032x}"
    (trace,) = events("$ai_trace")
    assert trace["properties"]["$ai_span_name"] == "POST /agent"
    assert {e["properties"]["$ai_trace_id"] for e in events()} == {trace_hex}
    run = by_name(events("$ai_span"), "Agent workflow")
    assert run["$ai_parent_id"] == trace_hex
