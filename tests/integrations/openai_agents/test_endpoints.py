"""What a model call says about where it went and how it came back: provider, base URL and
HTTP status, the same for both APIs."""

from __future__ import annotations

import asyncio

import httpx
import openai
import pytest
from agents import Agent, Runner, set_default_openai_client
from posthog_llm.integrations import openai_agents as posthog_agents
from posthog_llm.local.openai_standin import OpenAIStandIn

from .conftest import API_KEY, make_agents

pytestmark = pytest.mark.usefixtures("agents_sdk")


class _HostsEntry(httpx.AsyncBaseTransport):
    """Sends every request to the loopback stand-in whatever host it names, as a hosts-file
    entry would: the client keeps its base URL, the stand-in answers."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request.url = request.url.copy_with(host="127.0.0.1")
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def test_a_loopback_endpoint_is_a_local_provider_with_its_base_url(
    client, events, agents_sdk: OpenAIStandIn
):
    posthog_agents.instrument(client)
    Runner.run_sync(Agent(name="Solo", instructions="Be brief.", model="gpt-4o-mini"), "hello")
    (generation,) = [e["properties"] for e in events("$ai_generation")]
    assert generation["$ai_provider"] == "local"  # as the drop-in and LangChain name it
    assert generation["$ai_base_url"] == agents_sdk.base_url.rstrip("/")


def test_the_provider_is_read_from_the_clients_base_url_in_both_apis(
    client, events, agents_sdk: OpenAIStandIn
):
    base_url = f"http://api.groq.com:{agents_sdk.port}/v1"
    set_default_openai_client(
        openai.AsyncOpenAI(
            base_url=base_url,
            api_key=API_KEY,
            http_client=httpx.AsyncClient(transport=_HostsEntry()),
            max_retries=0,
        ),
        use_for_tracing=False,
    )
    posthog_agents.instrument(client)
    Runner.run_sync(Agent(name="Solo", instructions="Be brief.", model="gpt-4o-mini"), "hello")
    (generation,) = [e["properties"] for e in events("$ai_generation")]
    assert generation["$ai_provider"] == "groq"
    assert generation["$ai_base_url"] == base_url


def test_a_call_the_provider_answered_is_http_200_streamed_or_not(client, events):
    posthog_agents.instrument(client)

    async def plain_then_streamed() -> None:  # one loop: the client's connections live on it
        await Runner.run(make_agents(), "What is the weather in Paris?")
        result = Runner.run_streamed(make_agents(), "What is the weather in Paris?")
        async for _ in result.stream_events():
            pass

    asyncio.run(plain_then_streamed())
    generations = [e["properties"] for e in events("$ai_generation")]
    assert [g.get("$ai_stream") for g in generations] == [False] * 3 + [True] * 3
    assert [g.get("$ai_http_status") for g in generations] == [200] * 6
