"""Errors mark their span and the run; privacy mode and secret scrubbing; registration."""

from __future__ import annotations

import asyncio

import openai
import pytest
from agents import Agent, Runner, TracingProcessor, function_tool
from agents.tracing import get_trace_provider
from posthog_llm import context
from posthog_llm.integrations import openai_agents as posthog_agents

from .conftest import API_KEY, by_name, make_agents, sdk_version

pytestmark = pytest.mark.usefixtures("agents_sdk")


def _tell_the_model(ctx: object, error: Exception) -> str:
    return f"the tool failed: {error}"


# With its own failure function the SDK keeps the error detail in the trace (the default one
# redacts it).
@function_tool(failure_error_function=_tell_the_model)
def broken_weather(city: str) -> str:
    """The weather in a city (always fails)."""
    raise RuntimeError(f"weather service refused key sk-live-abcdefghijklmnop1234 for {city}")


def test_a_failing_tool_marks_its_span_and_the_trace(client, events):
    posthog_agents.instrument(client)
    result = Runner.run_sync(make_agents(tools=[broken_weather]), "What is the weather in Paris?")
    assert "the tool failed" in result.final_output  # the SDK reports the failure to the model
    tool = by_name(events("$ai_span"), "broken_weather")
    assert tool["$ai_is_error"] is True
    assert "weather service refused key" in tool["$ai_error"]
    assert "sk-live-abcdefghijklmnop1234" not in tool["$ai_error"]  # scrubbed
    (trace,) = events("$ai_trace")
    assert trace["properties"]["$ai_is_error"] is True
    assert trace["properties"]["$ai_error"] == tool["$ai_error"]


def test_a_failing_model_call_marks_the_generation_and_the_trace(client, events):
    posthog_agents.instrument(client)
    with pytest.raises(openai.InternalServerError):
        Runner.run_sync(make_agents(model="error-500"), "What is the weather in Paris?")
    found = events()
    failed = [e["properties"] for e in found if e["properties"].get("$ai_is_error")]
    assert failed, found
    assert API_KEY not in str(found)
    (trace,) = events("$ai_trace")
    assert trace["properties"]["$ai_is_error"] is True
    (generation,) = events("$ai_generation")
    assert generation["properties"]["$ai_is_error"] is True


@pytest.mark.parametrize("privacy", [False, True])
def test_a_failed_call_keeps_the_model_it_asked_for_and_its_http_status(client, events, privacy):
    posthog_agents.instrument(client, privacy_mode=privacy)
    with pytest.raises(openai.RateLimitError):
        Runner.run_sync(Agent(name="Solo", instructions="Be brief.", model="error-429"), "hello")
    (generation,) = [e["properties"] for e in events("$ai_generation")]
    assert generation["$ai_is_error"] is True
    assert generation["$ai_model"] == generation["$ai_span_name"] == "error-429"
    assert generation["$ai_http_status"] == 429
    # The SDK records no input for a failed Responses call: none, not an empty list.
    assert generation.get("$ai_input") != []


def _run_and_stream(agent: Agent[None]) -> None:
    """The agent run plainly, then streamed; each raises the model's failure."""

    async def main() -> None:  # one loop: the client's connections live on it
        with pytest.raises(openai.RateLimitError):
            await Runner.run(agent, "hello")
        with pytest.raises(openai.RateLimitError):
            streamed = Runner.run_streamed(agent, "hello")
            async for _ in streamed.stream_events():
                pass

    asyncio.run(main())


@pytest.mark.parametrize("privacy", [False, True])
def test_a_failed_call_is_its_exception_and_status_on_the_generation_agent_and_trace(
    client, events, privacy
):
    # As the OpenAI drop-in says the same failure: class and message (only the class under
    # privacy mode), and the HTTP status on every event the failure marks.
    posthog_agents.instrument(client, privacy_mode=privacy)
    _run_and_stream(Agent(name="Solo", instructions="Be brief.", model="error-429"))
    found = events()
    marked = [e for e in found if e["properties"].get("$ai_is_error")]
    kinds = [(e["event"], e["properties"]["$ai_span_name"]) for e in marked]
    run = [("$ai_generation", "error-429"), ("$ai_span", "Solo"), ("$ai_trace", "Agent workflow")]
    streamed = run if sdk_version() >= (0, 24) else [run[0], run[2]]
    # (Older Agents SDKs close a failed stream's agent span without the failure.)
    assert sorted(kinds) == sorted(run + streamed)
    for event in marked:
        error = event["properties"]["$ai_error"]
        if privacy:
            assert error == "RateLimitError", event
        else:
            # (How the SDK words the body after the status differs between openai versions.)
            assert error.startswith("RateLimitError: Error code: 429 - "), event
            assert "Rate limit reached" in error, event
        assert event["properties"]["$ai_http_status"] == 429, event
    assert API_KEY not in str(found)


def test_privacy_mode_keeps_structure_and_drops_content(client, events):
    posthog_agents.instrument(client, privacy_mode=True)
    Runner.run_sync(make_agents(tools=[broken_weather]), "What is the weather in Paris?")
    found = events()
    assert len(found) >= 10
    content = {"$ai_input", "$ai_output_choices", "$ai_input_state", "$ai_output_state"}
    for event in found:
        assert not content & set(event["properties"]), event
    assert "Paris" not in str(found)
    tool = by_name(events("$ai_span"), "broken_weather")
    assert tool["$ai_is_error"] is True
    assert "weather service" not in tool["$ai_error"]  # only the SDK's fixed phrase
    generations = events("$ai_generation")
    assert all(g["properties"]["$ai_input_tokens"] > 0 for g in generations)


def test_context_privacy_and_identity_apply_to_the_run(client, events):
    posthog_agents.instrument(client, distinct_id="default-user", properties={"app": "desk"})
    with context(distinct_id="user_9", properties={"plan": "pro"}, groups={"company": "acme"}):
        Runner.run_sync(make_agents(), "What is the weather in Paris?")
    with context(privacy_mode=True):
        Runner.run_sync(make_agents(), "What is the weather in Paris?")
    found = events()
    first, second = found[: len(found) // 2], found[len(found) // 2 :]
    assert {e["distinct_id"] for e in first} == {"user_9"}
    assert all(e["properties"]["plan"] == "pro" and e["properties"]["app"] == "desk" for e in first)
    assert all(e["properties"]["$groups"] == {"company": "acme"} for e in first)
    assert {e["distinct_id"] for e in second} == {"default-user"}
    assert not any("$ai_input" in e["properties"] for e in second)
    assert any("$ai_input" in e["properties"] for e in first)


def test_a_trace_id_set_by_context_names_the_run(client, events):
    # As for every other integration: a request's id given to `context` is the run's trace
    # id, so feedback sent with it lands on the run.
    posthog_agents.instrument(client)
    with context(trace_id="request-42"):
        Runner.run_sync(make_agents(), "What is the weather in Paris?")
    found = events()
    assert {e["properties"]["$ai_trace_id"] for e in found} == {"request-42"}
    (trace,) = [e["properties"] for e in found if e["event"] == "$ai_trace"]
    ids = {e["properties"].get("$ai_span_id") for e in found} | {"request-42"}
    assert all(e["properties"].get("$ai_parent_id", "request-42") in ids for e in found)
    assert trace.get("$ai_parent_id") is None


class _Recorder(TracingProcessor):
    def __init__(self) -> None:
        self.traces: list[str] = []

    def on_trace_start(self, trace) -> None:
        self.traces.append(trace.trace_id)

    def on_trace_end(self, trace) -> None:
        pass

    def on_span_start(self, span) -> None:
        pass

    def on_span_end(self, span) -> None:
        pass

    def shutdown(self) -> None:
        pass

    def force_flush(self) -> None:
        pass


def test_instrument_twice_reports_once_and_keeps_the_sdks_own_processors(client, events):
    from agents import add_trace_processor

    recorder = _Recorder()
    add_trace_processor(recorder)
    first = posthog_agents.instrument(client)
    second = posthog_agents.instrument(client)
    assert first is not second
    Runner.run_sync(make_agents(), "What is the weather in Paris?")
    assert len(events("$ai_trace")) == 1
    assert len(recorder.traces) == 1

    posthog_agents.uninstrument()
    posthog_agents.uninstrument()  # harmless
    Runner.run_sync(make_agents(), "What is the weather in Paris?")
    assert len(events("$ai_trace")) == 1  # nothing new
    assert len(recorder.traces) == 2  # the other processor still runs
    processors = get_trace_provider()._multi_processor._processors  # type: ignore[attr-defined]
    assert recorder in processors and first not in processors and second not in processors


def test_bad_configuration_is_refused_at_instrument_time():
    with pytest.raises(TypeError, match="privacy_mode"):
        posthog_agents.instrument(privacy_mode="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="capture"):
        posthog_agents.instrument(client=object())
    with pytest.raises(TypeError, match="properties"):
        posthog_agents.instrument(properties=["not", "a", "mapping"])  # type: ignore[arg-type]
    # What could only be a mistake is not turned into its text as an id or a name.
    with pytest.raises(TypeError, match="distinct_id must be a string, an int or a UUID"):
        posthog_agents.instrument(distinct_id=["a"])
    with pytest.raises(TypeError, match="properties names must be strings"):
        posthog_agents.instrument(properties={1: "a"})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match=r"groups\['company'\]"):
        posthog_agents.instrument(groups={"company": None})
