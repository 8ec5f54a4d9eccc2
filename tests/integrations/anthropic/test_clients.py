"""Errors, secrets, wrap(), copies, and joining an open span or another framework's generation."""

from __future__ import annotations

import json

import pytest

anthropic = pytest.importorskip("anthropic")

import posthog_llm  # noqa: E402
from posthog_llm.instrumentation import close_observation, make_scope, open_observation  # noqa: E402

from tests.support.echo_gateway import EchoGateway  # noqa: E402
from tests.support.events import only  # noqa: E402

from .conftest import API_KEY, HELLO, MODEL  # noqa: E402


@pytest.mark.parametrize(
    "status, error",
    [
        (429, anthropic.RateLimitError),
        (500, anthropic.InternalServerError),
        (529, anthropic.APIStatusError),  # OverloadedError, or InternalServerError in older SDKs
        (400, anthropic.BadRequestError),
    ],
)
def test_api_errors_reach_the_caller_untouched_and_are_reported(make_client, events, status, error):
    llm = make_client()
    with pytest.raises(error) as caught:
        llm.messages.create(model=f"error-{status}", max_tokens=10, messages=HELLO)

    raised = type(caught.value)
    assert caught.value.status_code == status
    assert raised.__module__.startswith("anthropic")  # the SDK's own exception, not a wrapper
    props = only(events("$ai_generation"))
    assert props["$ai_is_error"] is True
    assert props["$ai_http_status"] == status
    assert props["$ai_error"].startswith(f"{raised.__name__}: Error code: {status}")
    assert "$ai_output_choices" not in props


def test_api_key_never_reaches_an_event(make_client, events, caplog):
    llm = make_client()
    with pytest.raises(anthropic.AuthenticationError) as caught:
        llm.messages.create(model="error-key", max_tokens=10, messages=HELLO)
    llm.messages.create(model=MODEL, max_tokens=10, messages=HELLO)

    assert API_KEY in str(caught.value)  # the gateway quoted it to the caller ...
    everything = json.dumps(events(), default=str)
    assert API_KEY not in everything  # ... but no event repeats it
    assert "[redacted]" in events("$ai_generation")[0]["properties"]["$ai_error"]
    assert API_KEY not in caplog.text


def test_custom_header_values_a_gateway_quotes_are_scrubbed(make_client, events):
    gateway_token = "gw" + "-" + "custom-auth-0123456789"  # no known key shape: only the header
    with EchoGateway() as gateway:
        llm = make_client(base_url=gateway.base_url, default_headers={"X-Gateway": gateway_token})
        with pytest.raises(anthropic.AuthenticationError) as caught:
            llm.messages.create(model=MODEL, max_tokens=10, messages=HELLO)
    assert gateway_token in str(caught.value)
    error = only(events("$ai_generation"))["$ai_error"]
    assert gateway_token not in error and "[redacted]" in error
    assert "anthropic-version" in error  # harmless headers stay readable


def test_error_under_privacy_mode_keeps_only_type_and_status(make_client, events):
    llm = make_client()
    with pytest.raises(anthropic.RateLimitError):
        llm.messages.create(
            model="error-429", max_tokens=10, messages=HELLO, posthog_privacy_mode=True
        )

    props = only(events("$ai_generation"))
    assert props["$ai_error"] == "RateLimitError"
    assert props["$ai_http_status"] == 429
    assert "$ai_input" not in props


def test_a_posthog_argument_of_the_wrong_type_is_left_out_and_the_call_made(
    make_client, standin, events
):
    llm = make_client()
    llm.messages.create(model=MODEL, max_tokens=10, messages=HELLO, posthog_properties=[1])
    assert len(standin.requests) == 1
    assert len(events("$ai_generation")) == 1


def test_wrap_existing_client_and_its_copies(client, events, standin):
    from posthog_llm.integrations.anthropic import wrap

    raw = anthropic.Anthropic(api_key=API_KEY, base_url=standin.base_url, max_retries=0)
    untouched = anthropic.Anthropic(api_key=API_KEY, base_url=standin.base_url, max_retries=0)
    assert wrap(raw, posthog_client=client) is raw
    raw.messages.create(model=MODEL, max_tokens=10, messages=HELLO)
    raw.with_options(timeout=5).messages.create(model=MODEL, max_tokens=10, messages=HELLO)
    untouched.messages.create(model=MODEL, max_tokens=10, messages=HELLO)

    assert len(events("$ai_generation")) == 2
    with pytest.raises(TypeError, match="anthropic.Anthropic"):
        wrap(object(), posthog_client=client)


def test_raw_and_streaming_responses_are_tracked(make_client, events):
    llm = make_client()
    raw = llm.messages.with_raw_response.create(model=MODEL, max_tokens=10, messages=HELLO)
    with llm.messages.with_streaming_response.create(
        model=MODEL, max_tokens=10, messages=HELLO
    ) as response:
        body = response.json()

    assert raw.parse().content[0].text == body["content"][0]["text"]
    found = [e["properties"] for e in events("$ai_generation")]
    assert len(found) == 2
    for props in found:
        assert props["$ai_output_choices"][0]["content"][0]["text"] == body["content"][0]["text"]


def test_calls_inside_a_span_join_its_trace(make_client, events, client):
    llm = make_client()
    with posthog_llm.span("answer the user", client=client) as outer:
        llm.messages.create(model=MODEL, max_tokens=10, messages=HELLO)
        with llm.messages.stream(model=MODEL, max_tokens=10, messages=HELLO) as stream:
            stream.until_done()

    generations = events("$ai_generation")
    (trace,) = events("$ai_trace")
    assert len(generations) == 2
    for event in generations:
        assert event["properties"]["$ai_trace_id"] == trace["properties"]["$ai_trace_id"]
        assert event["properties"]["$ai_parent_id"] == outer.span_id


async def test_async_calls_inside_a_span_join_its_trace(make_client, events, client):
    from posthog_llm.integrations.anthropic import AsyncAnthropic

    llm = make_client(AsyncAnthropic)
    async with posthog_llm.span("async work", client=client) as outer:
        await llm.messages.create(model=MODEL, max_tokens=10, messages=HELLO)
    await llm.close()

    props = only(events("$ai_generation"))
    assert props["$ai_parent_id"] == outer.span_id
    assert props["$ai_trace_id"] == only(events("$ai_trace"))["$ai_trace_id"]


def test_call_under_another_frameworks_generation_is_reported_once(make_client, events):
    llm = make_client()
    obs = open_observation(
        "generation", trace_id="t-1", span_id="g-1", scope=make_scope(), framework="agents-sdk"
    )
    try:
        llm.messages.create(model=MODEL, max_tokens=10, messages=HELLO)
    finally:
        close_observation(obs)
    llm.messages.create(model=MODEL, max_tokens=10, messages=HELLO)

    props = only(events("$ai_generation"))  # only the call made after it closed
    assert props["$ai_trace_id"] != "t-1" and "$ai_parent_id" not in props


def test_call_inside_a_langchain_step_joins_its_run(make_client, events, client):
    pytest.importorskip("langchain_core")
    from langchain_core.runnables import RunnableLambda
    from posthog_llm.integrations.langchain import PostHogCallbackHandler

    llm = make_client()

    def ask(question: str) -> str:
        reply = llm.messages.create(
            model=MODEL, max_tokens=50, messages=[{"role": "user", "content": question}]
        )
        return str(reply.content[0].text)

    step = RunnableLambda(ask).with_config(run_name="ask_claude")
    assert step.invoke("hi", config={"callbacks": [PostHogCallbackHandler(client)]}) == "Echo: hi"

    root = only(events("$ai_trace"))
    generation = only(events("$ai_generation"))
    assert root["$ai_span_name"] == "ask_claude"
    assert generation["$ai_trace_id"] == root["$ai_trace_id"]
    assert generation["$ai_parent_id"] == root["$ai_trace_id"]  # the lambda is the trace root


def test_the_sdks_own_opentelemetry_span_is_not_a_second_generation(make_client, client, events):
    """anthropic 2.x records its own GenAI span of each call; with the drop-in and
    `PostHogSpanProcessor` on one provider, each call is still reported once."""
    import inspect

    if "open_telemetry" not in inspect.signature(anthropic.Anthropic).parameters:
        pytest.skip("this anthropic SDK records no OpenTelemetry spans of its own")
    sdk_trace = pytest.importorskip("opentelemetry.sdk.trace")
    from posthog_llm.integrations.otel import PostHogSpanProcessor

    provider = sdk_trace.TracerProvider()
    provider.add_span_processor(PostHogSpanProcessor(client))
    plain = anthropic.Anthropic(
        api_key=API_KEY,
        base_url=make_client().base_url,
        max_retries=0,
        open_telemetry={"tracer_provider": provider},
    )
    tracked = make_client(open_telemetry={"tracer_provider": provider})
    plain.messages.create(model=MODEL, max_tokens=50, messages=HELLO)  # only the SDK's span
    tracked.messages.create(model=MODEL, max_tokens=50, messages=HELLO)
    provider.force_flush()
    generations = events("$ai_generation")
    # One from the plain client's span (OpenTelemetry), one from the drop-in: not three.
    assert len(generations) == 2
    assert sorted(g["properties"].get("$ai_framework", "") for g in generations) == [
        "",
        "opentelemetry",
    ]
