"""Fixtures: the Agents SDK pointed at the loopback OpenAI stand-in, with its own trace export
to OpenAI switched off (no network), and a triage agent that hands off to a specialist."""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib.metadata import version
from typing import Any

import pytest

pytest.importorskip("agents")

import openai  # noqa: E402
from agents import (  # noqa: E402
    Agent,
    function_tool,
    handoff,
    set_default_openai_api,
    set_default_openai_client,
    set_trace_processors,
)
from agents.extensions import handoff_filters  # noqa: E402
from posthog_llm.integrations import openai_agents as posthog_agents  # noqa: E402
from posthog_llm.local.openai_standin import OpenAIStandIn  # noqa: E402

API_KEY = "sk-agents-test-0123456789SECRET"


@pytest.fixture
def standin() -> Iterator[OpenAIStandIn]:
    with OpenAIStandIn() as server:
        yield server


@pytest.fixture(params=["chat_completions", "responses"])
def api(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def agents_sdk(standin: OpenAIStandIn, api: str) -> Iterator[OpenAIStandIn]:
    """The SDK on the stand-in; its default exporter to OpenAI is removed for the test."""
    set_trace_processors([])
    set_default_openai_client(
        openai.AsyncOpenAI(base_url=standin.base_url, api_key=API_KEY, max_retries=0),
        use_for_tracing=False,
    )
    set_default_openai_api(api)  # type: ignore[arg-type]
    yield standin
    posthog_agents.uninstrument()
    set_trace_processors([])


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


def _specialist_input(data: Any) -> Any:
    # The stand-in derives tool call ids from the last user message: a new message after the
    # handoff gives the specialist's tool call an id of its own.
    data = handoff_filters.remove_all_tools(data)
    history = data.input_history
    history = (
        ({"role": "user", "content": history},) if isinstance(history, str) else tuple(history)
    )
    return data.clone(input_history=history + ({"role": "user", "content": "Paris"},))


def make_agents(tools: list[Any] | None = None, model: str = "gpt-4o-mini") -> Agent[Any]:
    """Triage hands off to Specialist, who calls `get_weather` and answers with its result."""
    specialist = Agent(
        name="Specialist",
        instructions="You answer weather questions with the get_weather tool.",
        tools=tools if tools is not None else [get_weather],
        model=model,
    )
    return Agent(
        name="Triage",
        instructions="You route questions to the right specialist.",
        handoffs=[handoff(specialist, input_filter=_specialist_input)],
        model=model,
    )


def by_name(found: list[dict[str, Any]], name: str) -> dict[str, Any]:
    matches = [e["properties"] for e in found if e["properties"].get("$ai_span_name") == name]
    assert len(matches) == 1, json.dumps(found, indent=1, default=str)[:3000]
    return matches[0]


def sdk_version() -> tuple[int, ...]:
    """The installed Agents SDK's (major, minor): some tests depend on what it records."""
    return tuple(int(part) for part in version("openai-agents").split(".")[:2] if part.isdigit())
