"""Guardrails, streamed runs and custom spans."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from agents import (
    Agent,
    GuardrailFunctionOutput,
    InputGuardrailTripwireTriggered,
    Runner,
    input_guardrail,
)
from agents.tracing import custom_span, trace
from posthog_llm.integrations import openai_agents as posthog_agents

from .conftest import by_name, make_agents

pytestmark = pytest.mark.usefixtures("agents_sdk")


@input_guardrail
def no_secrets(ctx, agent, text) -> GuardrailFunctionOutput:  # type: ignore[no-untyped-def]
    return GuardrailFunctionOutput(output_info=None, tripwire_triggered="password" in str(text))


def _guarded() -> Agent:
    return Agent(name="Guarded", instructions="Answer.", input_guardrails=[no_secrets])


def test_guardrails_are_spans_and_a_tripwire_marks_the_run(client, events):
    posthog_agents.instrument(client)
    Runner.run_sync(_guarded(), "hello")
    passed = by_name(events("$ai_span"), "no_secrets")
    assert passed["$ai_span_type"] == "guardrail"
    assert passed["$ai_output_state"] == {"triggered": False}

    with pytest.raises(InputGuardrailTripwireTriggered):
        Runner.run_sync(_guarded(), "my password is hunter2")
    traces = [e["properties"] for e in events("$ai_trace")]
    assert len(traces) == 2
    assert "$ai_is_error" not in traces[0]
    assert traces[1]["$ai_is_error"] is True
    tripped = [
        e["properties"]
        for e in events("$ai_span")
        if e["properties"]["$ai_span_name"] == "no_secrets"
    ][1]
    assert tripped["$ai_output_state"] == {"triggered": True}
    # The SDK marks the turn it stopped; the guardrail that tripped is marked too.
    assert tripped["$ai_is_error"] is True
    assert tripped["$ai_error"].startswith("GuardrailTripwireTriggered")
    assert "$ai_is_error" not in passed


@input_guardrail
def broken_guardrail(ctx, agent, text) -> GuardrailFunctionOutput:  # type: ignore[no-untyped-def]
    raise ValueError(f"moderation service down for {text}")


@pytest.mark.parametrize("privacy", [False, True])
def test_a_guardrail_that_raised_is_an_error_not_a_pass(client, events, privacy):
    # The SDK records nothing on the guardrail's span: its `triggered` stays at the default.
    posthog_agents.instrument(client, privacy_mode=privacy)
    agent = Agent(name="Guarded", instructions="Answer.", input_guardrails=[broken_guardrail])
    with pytest.raises(ValueError):
        Runner.run_sync(agent, "hello")
    span = by_name(events("$ai_span"), "broken_guardrail")
    assert span["$ai_is_error"] is True
    assert "$ai_output_state" not in span  # no verdict, rather than "not triggered"
    if privacy:
        assert span["$ai_error"] == "ValueError"
    else:
        assert span["$ai_error"] == "ValueError: moderation service down for hello"
    assert events("$ai_trace")[0]["properties"]["$ai_is_error"] is True


def test_a_run_inside_an_except_block_is_not_marked_by_that_exception(client, events):
    posthog_agents.instrument(client)
    try:
        raise KeyError("the user's own, already handled")
    except KeyError:
        Runner.run_sync(_guarded(), "hello")
    found = events()
    assert not [e for e in found if "$ai_is_error" in e["properties"]], found
    assert by_name(events("$ai_span"), "no_secrets")["$ai_output_state"] == {"triggered": False}


def test_a_streamed_run_is_reported_like_any_other(client, events):
    posthog_agents.instrument(client)

    async def main() -> str:
        result = Runner.run_streamed(make_agents(), "What is the weather in Paris?")
        async for _ in result.stream_events():
            pass
        return str(result.final_output)

    assert asyncio.run(main()) == "The tool returned: sunny in Paris"
    assert len(events("$ai_trace")) == 1
    assert len(events("$ai_generation")) == 3
    assert by_name(events("$ai_span"), "get_weather")["$ai_output_state"] == "sunny in Paris"


def test_custom_spans_carry_their_data(client, events):
    posthog_agents.instrument(client)
    with trace("Nightly job", metadata={"customer": "acme", "tier": 2}):
        with custom_span("load documents", data={"count": 3}):
            pass
    span = by_name(events("$ai_span"), "load documents")
    assert (span["$ai_span_type"], span["$ai_input_state"]) == ("custom", {"count": 3})
    run = events("$ai_trace")[0]["properties"]
    assert run["$ai_span_name"] == "Nightly job"
    assert run["$ai_trace_metadata"] == {"customer": "acme", "tier": 2}  # as posthog-python


def test_a_custom_span_an_exception_leaves_is_an_error_and_one_that_ends_well_is_not(
    client, events
):
    posthog_agents.instrument(client)
    with trace("Nightly job"):
        with pytest.raises(KeyError):
            with custom_span("parse", data={}):
                raise KeyError("boom")
        try:
            raise ValueError("handled earlier")
        except ValueError:
            with custom_span("report", data={}):  # ends normally inside an `except` block
                pass
    spans = events("$ai_span")
    assert by_name(spans, "parse")["$ai_error"] == "KeyError: 'boom'"
    assert "$ai_is_error" not in by_name(spans, "report")
    assert events("$ai_trace")[0]["properties"]["$ai_is_error"] is True


def test_an_mcp_servers_tool_listing_and_its_tool_call_are_spans(client, events):
    mcp_types = pytest.importorskip("mcp.types")
    from agents.mcp import MCPServer

    class WeatherServer(MCPServer):  # an MCP server in this process: no subprocess, no network
        def __init__(self) -> None:
            super().__init__()
            self.calls: list[tuple[str, Any]] = []

        @property
        def name(self) -> str:
            return "weather-mcp"

        async def connect(self) -> None:
            pass

        async def cleanup(self) -> None:
            pass

        async def list_tools(self, *args: Any, **kwargs: Any) -> list[Any]:
            schema = {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            }
            return [mcp_types.Tool(name="get_weather", description="Weather.", inputSchema=schema)]

        async def call_tool(self, tool_name: str, arguments: Any, *args: Any, **kw: Any) -> Any:
            self.calls.append((tool_name, arguments))
            text = mcp_types.TextContent(type="text", text="sunny in Paris")
            return mcp_types.CallToolResult(content=[text])

        async def list_prompts(self, *args: Any, **kwargs: Any) -> Any:
            return mcp_types.ListPromptsResult(prompts=[])

        async def get_prompt(self, *args: Any, **kwargs: Any) -> Any:
            raise NotImplementedError

    server = WeatherServer()
    posthog_agents.instrument(client)
    agent = Agent(name="Forecaster", instructions="Use your tools.", mcp_servers=[server])
    result = asyncio.run(Runner.run(agent, "Weather in Paris?"))

    assert server.calls and server.calls[0][0] == "get_weather"
    assert "sunny in Paris" in str(result.final_output)
    # The SDK lists the server's tools before each model call: two turns, two listings.
    listings = [
        e["properties"]
        for e in events("$ai_span")
        if e["properties"]["$ai_span_name"] == "mcp:weather-mcp"
    ]
    assert len(listings) == 2
    for listing in listings:
        assert listing["$ai_span_type"] == "mcp_tools"
        assert listing["$ai_output_state"] == ["get_weather"]
    tool = by_name(events("$ai_span"), "get_weather")
    assert tool["$ai_span_type"] == "tool"
    assert "sunny in Paris" in json.dumps(tool["$ai_output_state"])
    trace_ids = {e["properties"]["$ai_trace_id"] for e in events()}
    assert len(trace_ids) == 1  # the listing, the tool call and the model calls: one trace
    # Each listing sits in the run that asked for it: in its turn (newer SDKs), in the agent's
    # span or at the top of the trace (older ones).
    (trace_id,) = trace_ids
    names = {e["properties"].get("$ai_span_id"): e["properties"]["$ai_span_name"] for e in events()}
    for listing in listings:
        parent = listing["$ai_parent_id"]
        assert parent == trace_id or names[parent].startswith("Forecaster")
