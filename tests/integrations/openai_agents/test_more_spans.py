"""Guardrails, streamed runs and custom spans."""

from __future__ import annotations

import asyncio

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
    with trace("Nightly job"):
        with custom_span("load documents", data={"count": 3}):
            pass
    span = by_name(events("$ai_span"), "load documents")
    assert (span["$ai_span_type"], span["$ai_input_state"]) == ("custom", {"count": 3})
    assert events("$ai_trace")[0]["properties"]["$ai_span_name"] == "Nightly job"
