"""The core's policies hold in every integration: secret scrubbing, privacy-mode errors and
user overrides of computed `$ai_*` properties."""

from __future__ import annotations

import time
from typing import Any

import openai
import posthog_llm
import pytest
from llama_index.core.base.llms.types import CompletionResponse
from llama_index.core.llms import MockLLM
from llama_index.core.llms.callbacks import llm_completion_callback
from posthog_llm.integrations.langchain import PostHogCallbackHandler

from tests.integrations.langchain.fakes import StatusError, model

SECRET = "sk-proj-abcdefghijklmnopqrstuvwxyz0123"
MESSAGES = [{"role": "user", "content": "hi"}]


class FailingLLM(MockLLM):
    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        raise StatusError(f"upstream rejected key {SECRET} for: {prompt}", 401)


def generation(events: list[dict[str, Any]]) -> dict[str, Any]:
    found = [e["properties"] for e in events if e["event"] == "$ai_generation"]
    assert len(found) == 1
    return found[0]


def _two_steps() -> Any:
    """A LangChain chain of two steps: one `$ai_trace` and two `$ai_span`s per invoke."""
    from langchain_core.runnables import RunnableLambda

    return RunnableLambda(lambda x: x).with_config(run_name="a") | RunnableLambda(
        lambda x: x
    ).with_config(run_name="b")


@pytest.mark.parametrize("privacy", [False, True])
def test_langchain_errors(default_client: Any, events: Any, privacy: bool) -> None:
    handler = PostHogCallbackHandler(default_client, privacy_mode=privacy)
    llm = model(error=StatusError(f"bad key {SECRET} for prompt 'my secret plan'", 401))
    with pytest.raises(StatusError):
        llm.invoke("my secret plan", config={"callbacks": [handler]})
    p = generation(events())
    assert p["$ai_is_error"] is True and p["$ai_http_status"] == 401
    assert SECRET not in p["$ai_error"]
    if privacy:
        assert p["$ai_error"] == "StatusError"
    else:
        assert p["$ai_error"].startswith("StatusError: bad key [redacted]")


@pytest.mark.parametrize("privacy", [False, True])
def test_llama_index_errors(default_client: Any, events: Any, privacy: bool) -> None:
    from posthog_llm.integrations import llama_index as posthog_li

    posthog_li.set_global_handler(default_client, privacy_mode=privacy)
    try:
        with pytest.raises(StatusError):
            FailingLLM().complete("my secret plan")
    finally:
        posthog_li.remove_global_handler()
    p = generation(events())
    assert p["$ai_is_error"] is True
    assert SECRET not in p["$ai_error"]
    if privacy:
        assert p["$ai_error"] == "StatusError"
    else:
        assert "[redacted]" in p["$ai_error"]


@pytest.mark.parametrize("privacy", [False, True])
def test_openai_errors(openai_client: Any, events: Any, privacy: bool) -> None:
    with pytest.raises(openai.AuthenticationError) as raised:
        openai_client.chat.completions.create(
            model="error-401", messages=MESSAGES, posthog_privacy_mode=privacy
        )
    assert "sk-test-0123456789abcdefSECRET" in str(raised.value)  # the caller's error is untouched
    p = generation(events())
    assert p["$ai_http_status"] == 401
    assert "sk-test-0123456789abcdefSECRET" not in p["$ai_error"]
    if privacy:
        assert p["$ai_error"] == "AuthenticationError"
    else:
        assert p["$ai_error"].startswith("AuthenticationError: ")


def test_overrides_win_in_every_integration(
    default_client: Any, query_engine: Any, openai_client: Any, events: Any
) -> None:
    handler = PostHogCallbackHandler(default_client, properties={"$ai_provider": "my-gateway"})
    model().invoke("hi", config={"callbacks": [handler]})
    openai_client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        posthog_properties={"$ai_total_cost_usd": 0.25, "$ai_provider": "my-gateway"},
    )
    with posthog_llm.context(properties={"$ai_provider": "my-gateway"}):
        query_engine.query("owls?")
    generations = [e["properties"] for e in events() if e["event"] == "$ai_generation"]
    assert len(generations) == 3
    assert {g["$ai_provider"] for g in generations} == {"my-gateway"}
    assert [g["$ai_total_cost_usd"] for g in generations if "$ai_total_cost_usd" in g] == [0.25]


def test_sampled_out_counts_every_event_of_a_trace_handed_over_whole(
    default_client: Any, events: Any, handler: Any, query_engine: Any
) -> None:
    # LangChain and LlamaIndex hand a finished trace over as one item: left out by the sample
    # rate, it still counts as the events it would have sent.

    chain = _two_steps()  # a trace of three events
    chain.invoke(1, config={"callbacks": [handler]})
    chain_events = len(events())
    query_engine.query("owls?")
    query_events = len(events()) - chain_events
    assert chain_events == 3 and query_events >= 3
    default_client.sample_rate = 0.0
    chain.invoke(1, config={"callbacks": [handler]})
    query_engine.query("owls?")
    assert len(events()) == chain_events + query_events  # nothing more was sent
    assert default_client.stats()["sampled_out"] == chain_events + query_events


def test_a_trace_sampled_out_after_shutdown_is_counted_sampled_out_not_dropped(
    default_client: Any, handler: Any
) -> None:

    default_client.sample_rate = 0.0
    assert default_client.shutdown(2)
    chain = _two_steps()  # a trace of three events
    chain.invoke(1, config={"callbacks": [handler]})
    stats = default_client.stats()
    assert (stats["sampled_out"], stats["dropped"]) == (3, 0)
    assert default_client.flush(1)  # nothing was lost: it was never to be sent


def test_shutdown_keeps_its_deadline_with_a_trace_queued_and_a_slow_before_send() -> None:
    # A whole trace is one queued item, and before_send runs once per event in it: building
    # stops at the deadline, the rest counted lost, every event accounted for once.
    from langchain_core.runnables import RunnableLambda
    from posthog_llm import Client, InMemoryDestination

    def slow(event: dict) -> dict:
        time.sleep(0.05)
        return event

    client = Client(destination=InMemoryDestination(), before_send=slow, flush_interval=30)
    chain = RunnableLambda(lambda x: x + 1)
    for _ in range(29):
        chain = chain | RunnableLambda(lambda x: x + 1)
    assert chain.invoke(0, config={"callbacks": [PostHogCallbackHandler(client)]}) == 30
    started = time.monotonic()
    client.shutdown(timeout=0.5)
    assert time.monotonic() - started < 1.2  # 31 events would take 1.6 s to build
    stats = client.stats()
    assert stats["sent"] + stats["failed"] == 31 and stats["failed"] > 0, stats


def test_traces_sampled_out_and_still_queued_at_shutdown_count_as_sampled_out() -> None:
    from posthog_llm import Client, InMemoryDestination

    def slow(event: dict) -> dict:
        time.sleep(0.2)
        return event

    # The worker waits for a full batch or its 30 s tick: the traces are still queued.
    client = Client(
        destination=InMemoryDestination(), before_send=slow, flush_interval=30, sample_rate=0.0
    )
    chain = _two_steps()  # a trace of three events
    for _ in range(5):
        chain.invoke(1, config={"callbacks": [PostHogCallbackHandler(client)]})
    assert client.stats()["sampled_out"] == 0  # not counted yet: on the worker, later
    client.shutdown(0)
    stats = client.stats()
    assert (stats["sampled_out"], stats["failed"], stats["dropped"]) == (15, 0, 0)


def test_a_trace_dropped_counts_as_the_events_it_holds() -> None:
    # After shutdown, and with the queue full and no spool: dropped counts events, as every
    # other counter does (a trace of three was one).
    import threading

    from posthog_llm import Client, InMemoryDestination

    gate = threading.Event()

    def held(event: dict) -> dict:
        gate.wait(5)  # the worker is stuck building: the queue fills
        return event

    client = Client(
        destination=InMemoryDestination(), before_send=held, max_queue_size=2, flush_interval=0.01
    )
    chain = _two_steps()  # a trace of three events
    handler = PostHogCallbackHandler(client)
    chain.invoke(1, config={"callbacks": [handler]})
    deadline = time.monotonic() + 5
    while client.stats()["queued"] and time.monotonic() < deadline:
        time.sleep(0.01)  # the worker took the first trace, and waits in before_send
    for _ in range(4):
        chain.invoke(1, config={"callbacks": [handler]})
    dropped = client.stats()["dropped"]
    assert dropped > 0 and dropped % 3 == 0, client.stats()
    gate.set()
    client.shutdown(5)
    before = client.stats()["dropped"]
    chain.invoke(1, config={"callbacks": [handler]})  # after shutdown: refused, counted
    assert client.stats()["dropped"] == before + 3
