"""The shared tracked call: a provider is only its translation, and the kernel keeps the rule
that a fact that cannot be read drops that fact, not the event."""

from __future__ import annotations

from typing import Any

import pytest
from posthog_llm.instrumentation import (
    GENERATION,
    Emitter,
    TrackedCall,
    TrackedKind,
    Tracker,
    run_tracked,
)


class AcmeClient:
    """A provider SDK's client: one method, a base URL and a key."""

    base_url = "https://api.acme.example/v1"
    api_key = "acme-secret-0123456789"

    def complete(self, **kwargs: Any) -> dict[str, Any]:
        return {"text": f"echo {kwargs['prompt']}", "tokens": [3, 2]}


class AcmeTracker(Tracker):
    default_provider = "acme"


def _build(call: TrackedCall) -> dict[str, Any]:
    from posthog_llm.instrumentation import generation_properties

    result = call.result
    return generation_properties(
        trace_id=call.trace_id,
        parent_id=call.parent_id,
        model=call.params["model"],
        provider=call.provider_name(),
        base_url=call.base_url(),
        input=[{"role": "user", "content": call.params["prompt"]}],
        output_choices=[{"role": "assistant", "content": result["text"]}],
        input_tokens=result["tokens"][0],
        output_tokens=result["tokens"][1],
        latency=call.latency,
        http_status=call.http_status(),
    )


def _call(client: Any, emitter: Emitter, build: Any = _build, tracker: type = AcmeTracker) -> Any:
    kind = TrackedKind(GENERATION, (), build)
    return run_tracked(
        kind, tracker(emitter), client, client.complete, (), {"model": "acme-1", "prompt": "hi"}
    )


def test_a_translation_on_the_tracked_call_reports_the_call(client, events):
    assert _call(AcmeClient(), Emitter(client)) == {"text": "echo hi", "tokens": [3, 2]}
    (event,) = events("$ai_generation")
    props = event["properties"]
    assert (props["$ai_model"], props["$ai_provider"]) == ("acme-1", "acme")
    assert props["$ai_base_url"] == "https://api.acme.example/v1"
    assert (props["$ai_input_tokens"], props["$ai_output_tokens"]) == (3, 2)


@pytest.mark.allow_internal_errors
def test_a_builder_that_cannot_read_the_response_still_sends_the_calls_own_facts(
    client, events, _fail_on_swallowed_internal_errors
):
    def unreadable(call: TrackedCall) -> dict[str, Any]:
        raise KeyError("choices")  # a response of a shape the translation did not expect

    result = _call(AcmeClient(), Emitter(client), build=unreadable)
    assert result["text"] == "echo hi"  # the caller's result is untouched
    (event,) = events("$ai_generation")
    props = event["properties"]
    assert (props["$ai_model"], props["$ai_provider"]) == ("acme-1", "acme")
    assert props["$ai_base_url"] == "https://api.acme.example/v1"
    assert props["$ai_http_status"] == 200 and props["$ai_latency"] >= 0
    assert "$ai_output_choices" not in props and "$ai_input_tokens" not in props
    assert [type(e) for e in _fail_on_swallowed_internal_errors] == [KeyError]  # reported
    assert client.stats()["failed"] == 0  # the event went out


@pytest.mark.allow_internal_errors
def test_a_client_fact_that_cannot_be_read_is_left_out(client, events):
    class NoURL(AcmeClient):
        @property
        def base_url(self) -> str:  # type: ignore[override]
            raise RuntimeError("no base URL here")

    class BrokenTracker(AcmeTracker):
        def provider_name(self, client: Any) -> str:
            raise RuntimeError("unknown")

    _call(NoURL(), Emitter(client), tracker=BrokenTracker)
    (event,) = events("$ai_generation")
    props = event["properties"]
    assert "$ai_base_url" not in props
    assert props["$ai_provider"] == "acme"  # the tracker's default
    assert props["$ai_output_choices"] == [{"role": "assistant", "content": "echo hi"}]
    assert (props["$ai_input_tokens"], props["$ai_output_tokens"]) == (3, 2)


def test_a_long_history_is_kept_as_sent_whatever_the_caller_does_after(client, events):
    # Past the snapshot's bounds the list and its messages are still copied: a long agent
    # history whose newest message is edited, or which gets the answer appended, after the call.
    history = [{"role": "user", "content": f"m{i}"} for i in range(25_000)]
    blocks = [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]

    def build(call: TrackedCall) -> dict[str, Any]:
        from posthog_llm.instrumentation import generation_properties

        return generation_properties(trace_id=call.trace_id, input=call.params["messages"])

    def complete(**kwargs: Any) -> str:
        return "ok"

    kind = TrackedKind(GENERATION, ("messages",), build)
    tracker = AcmeTracker(Emitter(client))
    for messages in (history, blocks):
        run_tracked(kind, tracker, AcmeClient(), complete, (), {"messages": messages})
    history[-1]["content"] = "EDITED"
    history.append({"role": "assistant", "content": "answer"})
    blocks[0]["content"][0]["text"] = "changed"
    long_input, short_input = (e["properties"]["$ai_input"] for e in events("$ai_generation"))
    assert len(long_input) == 25_000 and long_input[-1]["content"] == "m24999"
    assert short_input[0]["content"][0]["text"] == "hi"
