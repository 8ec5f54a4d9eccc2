"""Policies the core owns for every integration: identity, overrides, sampling, feedback,
metrics and error text."""

from __future__ import annotations

from typing import Any

import posthog_llm
import pytest
from posthog_llm import Client, InMemoryDestination
from posthog_llm.instrumentation import (
    Emitter,
    error_text,
    header_secrets,
    scrub_secrets,
    secrets_in,
)

from tests.support.posthog_sink import PostHogSink


def read(client: Client, sink: InMemoryDestination) -> list[dict[str, Any]]:
    assert client.flush(5)
    return sink.events


# -- identity ---------------------------------------------------------------------------------------


def test_manual_capture_of_a_trace_event_uses_the_trace_id_as_anonymous_id(
    client: Client, sink: InMemoryDestination
) -> None:
    client.capture("$ai_generation", properties={"$ai_trace_id": "trace-1", "$ai_model": "m"})
    client.capture("$ai_span", properties={"$ai_trace_id": "trace-1", "$ai_span_id": "s"})
    client.capture("$ai_generation", distinct_id="user-1", properties={"$ai_trace_id": "trace-1"})
    anonymous_a, anonymous_b, named = read(client, sink)
    assert anonymous_a["distinct_id"] == anonymous_b["distinct_id"] == "trace-1"
    assert anonymous_a["properties"]["$process_person_profile"] is False
    assert named["distinct_id"] == "user-1"
    assert "$process_person_profile" not in named["properties"]


def test_posthog_python_context_identity_is_honoured() -> None:
    posthog = pytest.importorskip("posthog")
    from posthog import contexts

    server = PostHogSink()
    ph = posthog.Posthog("phc_test", host=server.host, sync_mode=True)
    try:
        emitter = Emitter(ph, framework="test")
        with contexts.new_context():
            contexts.identify_context("user-from-posthog")
            contexts.set_context_session("session-9")
            scope = emitter.scope()
        assert scope.distinct_id == "user-from-posthog"
        assert scope.session_id == "session-9"
        with posthog_llm.context(distinct_id="ours-wins"), contexts.new_context():
            contexts.identify_context("user-from-posthog")
            assert emitter.scope().distinct_id == "ours-wins"
    finally:
        ph.shutdown()
        server.close()


# -- overrides -------------------------------------------------------------------------------------


def test_ai_properties_the_user_passes_win_over_computed_ones(
    client: Client, sink: InMemoryDestination
) -> None:
    posthog_llm.set_client(client)
    with posthog_llm.context(properties={"$ai_total_cost_usd": 0.5, "$ai_provider": "gateway"}):
        with posthog_llm.span("answer", properties={"$ai_span_name": "renamed"}):
            pass
    [event] = read(client, sink)
    p = event["properties"]
    assert p["$ai_total_cost_usd"] == 0.5
    assert p["$ai_provider"] == "gateway"
    assert p["$ai_span_name"] == "renamed"


# -- sampling --------------------------------------------------------------------------------------


def test_sample_rate_keeps_or_drops_whole_traces(sink: InMemoryDestination) -> None:
    client = Client(destination=sink, flush_interval=0.05, sample_rate=0.5)
    posthog_llm.set_client(client)
    try:
        for _ in range(200):
            with posthog_llm.span("root"):
                with posthog_llm.span("child"):
                    pass
        client.capture("$ai_generation", properties={"$ai_model": "no trace"})
        events = read(client, sink)
        by_trace: dict[str, int] = {}
        for e in events:
            tid = e["properties"].get("$ai_trace_id")
            if tid is not None:
                by_trace[tid] = by_trace.get(tid, 0) + 1
        assert all(count == 2 for count in by_trace.values()), "a trace is kept whole or not at all"
        assert 50 < len(by_trace) < 150
        assert [e for e in events if "$ai_trace_id" not in e["properties"]], "no trace id: kept"
        assert client.stats()["sampled_out"] == 2 * (200 - len(by_trace))
    finally:
        client.shutdown(5)


def test_sampling_is_decided_by_trace_id_alone(sink: InMemoryDestination) -> None:
    a = Client(destination=sink, sample_rate=0.3)
    b = Client(destination=InMemoryDestination(), sample_rate=0.3)
    try:
        ids = [f"trace-{i}" for i in range(300)]
        kept_a = [i for i in ids if a._sampled(i)]
        kept_b = [i for i in ids if b._sampled(i)]
        assert kept_a == kept_b and 30 < len(kept_a) < 150
    finally:
        a.shutdown(1)
        b.shutdown(1)


@pytest.mark.parametrize("rate", [-0.1, 1.5, "1", True])
def test_sample_rate_is_checked_at_configuration(rate: Any, sink: InMemoryDestination) -> None:
    with pytest.raises(ValueError, match="sample_rate"):
        Client(destination=sink, sample_rate=rate)


# -- feedback and metrics --------------------------------------------------------------------------


def test_feedback_and_metric_events(client: Client, sink: InMemoryDestination) -> None:
    posthog_llm.capture_feedback("trace-7", "Great answer!", distinct_id="user-1", client=client)
    posthog_llm.capture_metric("trace-7", "helpfulness", 4, client=client)
    feedback, metric = read(client, sink)
    assert feedback["event"] == "$ai_feedback"
    assert feedback["distinct_id"] == "user-1"
    assert feedback["properties"]["$ai_trace_id"] == "trace-7"
    assert feedback["properties"]["$ai_feedback_text"] == "Great answer!"
    assert metric["event"] == "$ai_metric"
    assert metric["distinct_id"] == "trace-7"  # anonymous: the trace's id
    assert metric["properties"]["$ai_metric_name"] == "helpfulness"
    assert metric["properties"]["$ai_metric_value"] == 4


def test_feedback_through_a_posthog_python_client() -> None:
    posthog = pytest.importorskip("posthog")
    server = PostHogSink()
    ph = posthog.Posthog("phc_test", host=server.host, sync_mode=True)
    try:
        posthog_llm.capture_feedback("trace-8", "meh", client=ph)
        [event] = server.wait_for(1)
        assert event["event"] == "$ai_feedback"
        assert event["distinct_id"] == "trace-8"
        assert event["properties"]["$ai_feedback_text"] == "meh"
        assert event["properties"]["$process_person_profile"] is False
    finally:
        ph.shutdown()
        server.close()


def test_feedback_and_metrics_through_posthog_python_take_its_context_identity() -> None:
    posthog = pytest.importorskip("posthog")
    from posthog import contexts

    server = PostHogSink()
    ph = posthog.Posthog("phc_test", host=server.host, sync_mode=True)
    try:
        with contexts.new_context():
            contexts.identify_context("user-from-posthog")
            contexts.set_context_session("session-3")
            posthog_llm.capture_feedback("trace-9", "thanks", client=ph)
            posthog_llm.capture_metric("trace-9", "score", 1, client=ph)
        events = server.wait_for(2)
        assert {e["distinct_id"] for e in events} == {"user-from-posthog"}
        assert {e["properties"]["$ai_session_id"] for e in events} == {"session-3"}
        assert all("$process_person_profile" not in e["properties"] for e in events)
    finally:
        ph.shutdown()
        server.close()


def test_feedback_and_metrics_through_posthog_python_carry_our_contexts_properties() -> None:
    posthog = pytest.importorskip("posthog")
    server = PostHogSink()
    ph = posthog.Posthog("phc_test", host=server.host, sync_mode=True)
    try:
        with posthog_llm.context(
            distinct_id="u1", properties={"plan": "pro"}, groups={"company": "acme"}
        ):
            posthog_llm.capture_feedback("trace-10", "thanks", client=ph)
            posthog_llm.capture_metric("trace-10", "score", 1, client=ph)
        events = server.wait_for(2)
        assert {e["event"] for e in events} == {"$ai_feedback", "$ai_metric"}
        for event in events:
            assert event["distinct_id"] == "u1"
            assert event["properties"]["plan"] == "pro"
            assert event["properties"]["$groups"] == {"company": "acme"}
    finally:
        ph.shutdown()
        server.close()


def test_a_client_that_fails_to_capture_feedback_does_not_raise_into_the_caller(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Failing:
        def capture(self, *args: Any, **kwargs: Any) -> None:
            raise RuntimeError("capture broke")

    assert posthog_llm.capture_feedback("trace-1", "ok", client=Failing()) is None
    assert posthog_llm.capture_metric("trace-1", "score", 2, client=Failing()) is None
    assert sum("capture broke" in (r.exc_text or "") for r in caplog.records) == 2


def test_feedback_rejects_bad_arguments(client: Client) -> None:
    with pytest.raises(ValueError):
        posthog_llm.capture_feedback("", "text", client=client)
    with pytest.raises(TypeError):
        posthog_llm.capture_feedback("t", 3, client=client)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        posthog_llm.capture_metric("t", "", 1, client=client)
    with pytest.raises(TypeError):
        posthog_llm.capture_metric("t", "x", 1, client=object())


def test_feedback_on_a_span_while_capture_is_off_is_nothing_not_an_error() -> None:
    off = Client(disabled=True)
    with posthog_llm.span("answer", client=off) as span:
        span.set_output("42")
    assert span.trace_id is None  # nothing was traced
    assert posthog_llm.capture_feedback(span.trace_id, "Great answer!", client=off) is None
    assert posthog_llm.capture_metric(span.trace_id, "helpfulness", 4, client=off) is None


# -- privacy on every route ------------------------------------------------------------------------


def test_a_privacy_client_keeps_only_the_error_type_of_a_manual_event(
    sink: InMemoryDestination,
) -> None:
    private = Client(destination=sink, privacy_mode=True, flush_interval=0.05)
    try:
        props = posthog_llm.generation_properties(
            trace_id="t1",
            model="m",
            input=[{"role": "user", "content": "the prompt"}],
            error="Boom: the prompt",
        )
        private.capture("$ai_generation", distinct_id="u", properties=props)
        private.capture("$ai_span", properties={"$ai_trace_id": "t1", "$ai_error": "the prompt"})
        private.capture("$ai_span", properties={"$ai_trace_id": "t1", "$ai_error": "KeyError"})
        generation, free_text, typed = read(private, sink)
    finally:
        private.shutdown(5)
    assert generation["properties"]["$ai_error"] == "Boom"
    assert generation["properties"]["$ai_is_error"] is True
    assert "$ai_input" not in generation["properties"]
    assert free_text["properties"]["$ai_error"] == "error"  # no type to keep: a neutral marker
    assert typed["properties"]["$ai_error"] == "KeyError"  # what the integrations send stays


def test_privacy_inside_a_context_reduces_a_manual_error_too(
    client: Client, sink: InMemoryDestination
) -> None:
    with posthog_llm.context(privacy_mode=True):
        client.capture("$ai_generation", properties={"$ai_error": "ValueError: the prompt"})
    [event] = read(client, sink)
    assert event["properties"]["$ai_error"] == "ValueError"


def test_privacy_drops_feedback_text_but_keeps_the_feedback(sink: InMemoryDestination) -> None:
    private = Client(destination=sink, privacy_mode=True, flush_interval=0.05)
    plain = Client(destination=sink, flush_interval=0.05)
    try:
        posthog_llm.capture_feedback("trace-1", "my words", client=private)
        with posthog_llm.context(privacy_mode=True):
            posthog_llm.capture_feedback("trace-2", "my words", client=plain)
        posthog_llm.capture_metric("trace-3", "helpfulness", 4, client=private)
        assert private.flush(5) and plain.flush(5)
    finally:
        private.shutdown(5)
        plain.shutdown(5)
    by_trace = {e["properties"]["$ai_trace_id"]: e for e in sink.events}
    for trace_id in ("trace-1", "trace-2"):
        assert by_trace[trace_id]["event"] == "$ai_feedback"
        assert "$ai_feedback_text" not in by_trace[trace_id]["properties"]
    assert by_trace["trace-3"]["properties"]["$ai_metric_value"] == 4


def test_privacy_drops_feedback_text_sent_through_a_posthog_python_client() -> None:
    posthog = pytest.importorskip("posthog")
    server = PostHogSink()
    ph = posthog.Posthog("phc_test", host=server.host, sync_mode=True)
    try:
        with posthog_llm.context(privacy_mode=True):
            posthog_llm.capture_feedback("trace-9", "my words", client=ph)
        [event] = server.wait_for(1)
        assert event["event"] == "$ai_feedback"
        assert "$ai_feedback_text" not in event["properties"]
    finally:
        ph.shutdown()


# -- error text ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "secret",
    [
        "sk-proj-abcdefghijklmnopqrstuvwxyz012345",
        "sk-ant-api03-abcdefghijklmnopqrstuvwxyz",
        "AIzaSyA1234567890abcdefghijklmnop",
        "Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig",
        "x-api-key: 9f8e7d6c5b4a39281706",
        "api_key=abcd1234efgh5678",
        "?key=zyxwvutsrq987654",
    ],
)
def test_error_text_scrubs_secrets(secret: str) -> None:
    text = error_text(RuntimeError(f"request failed ({secret}) status 401"))
    assert text is not None and text.startswith("RuntimeError: request failed (")
    value = secret.split()[-1].split("=")[-1]
    assert value not in text and "[redacted]" in text


# Key-shaped test values are built from parts, so no file holds anything that looks real.
_BODY = "Ab1Cd2Ef3Gh4Ij5Kl6Mn7Op8Qr9St0Uv"  # 32 letters and digits


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("Invalid API Key " + "gsk" + "_" + _BODY, "gsk" + "_" + _BODY),
        ("Incorrect API key provided: " + "xai" + "-" + _BODY, "xai" + "-" + _BODY),
        ("Unauthorized for " + "hf" + "_" + _BODY, "hf" + "_" + _BODY),
        ("The security token is invalid: " + "AK" + "IA" + "IOSFODNN7EXAMPL1", "IOSFODNN7EXAMPL1"),
        ("bad credentials " + "ghp" + "_" + _BODY + "1234", _BODY),
        ("bad credentials " + "github" + "_pat_" + _BODY, _BODY),
        ("personal key " + "phx" + "_" + _BODY, "phx" + "_" + _BODY),
        ("expired " + "eyJ" + "hbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NSJ9." + _BODY, _BODY),
        ("Authorization: " + _BODY, _BODY),
        ('{"authorization": "Token ' + _BODY + '"}', _BODY),
        ("ConnectError: https://admin:" + _BODY + "@gateway.internal/v1 refused", _BODY),
        ("GET https://acct.blob.core.windows.net/c?sv=2020&sig=" + _BODY + "%2Bx", _BODY),
    ],
)
def test_error_text_scrubs_common_key_formats(text: str, secret: str) -> None:
    scrubbed = error_text(RuntimeError(text))
    assert scrubbed is not None and secret not in scrubbed and "[redacted]" in scrubbed


@pytest.mark.parametrize(
    "text",
    [
        "model hf_hub not found",  # prefixes alone, or too short to be keys
        "gsk_short and xai-mini and ghp_abc",
        "AKIA is not a key, nor is AKIAshort",
        "Authorization failed for this request",
        "see https://docs.example.com/errors#rate-limit",
        "user@example.com cannot use this model",
        "eyJ alone is fine",
        "Missing header Authorization: expected a Bearer token",  # prose after the colon
        '{"authorization": null}',
        "RuntimeError: Authorization: Bearer",
        "clone ssh://git@github.com/org/repo failed",  # a user name without a password
        "task-scheduler-configuration-file is missing",  # 'sk-' inside a word
        "disk-quota-exceeded-for-user-accounts",
        "monkey: banana, turkey=roast",  # 'key' ending another word
    ],
)
def test_error_text_leaves_ordinary_text_alone(text: str) -> None:
    assert scrub_secrets(text) == text


def test_an_authorization_scheme_is_kept_and_only_its_credentials_go() -> None:
    assert scrub_secrets('"authorization": "Bearer x"') == '"authorization": "Bearer x"'
    assert scrub_secrets("Authorization: Basic " + _BODY) == "Authorization: Basic [redacted]"


def test_error_text_scrubs_the_clients_own_secrets_and_keeps_type_under_privacy() -> None:
    error = ValueError("rejected: my-custom-token-123456")
    assert "my-custom-token-123456" not in (
        error_text(error, secrets=["my-custom-token-123456"]) or ""
    )
    assert error_text(error, privacy=True) == "ValueError"
    assert scrub_secrets("nothing secret here") == "nothing secret here"


def test_header_secrets_are_the_values_of_headers_that_may_carry_credentials() -> None:
    token = "gw" + "-" + "0123456789"
    headers = {
        "X-Custom-Auth": token,
        "Authorization": "Bearer " + _BODY,
        "Content-Type": "application/json",
        "User-Agent": "my-app/1.0",
        "x-stainless-lang": "python",
        "anthropic-version": "2023-06-01",
        "X-Short": "abc",  # too short to scrub without damage
        # Custom headers whose name says nothing of a credential count only when their value
        # looks like a token: these would blank out ordinary words of every error.
        "x-portkey-provider": "openai",
        "X-Title": "Support assistant",
    }
    assert header_secrets(headers) == [token, "Bearer " + _BODY, _BODY]
    opaque = "abcDEF" + "0123456789xyz"
    assert header_secrets({"X-Gateway": opaque, "x-portkey-api-key": token}) == [opaque, token]
    assert header_secrets(None) == [] and header_secrets({1: token}) == []


def test_secrets_in_finds_what_a_model_object_or_its_settings_hold(monkeypatch) -> None:
    pydantic = pytest.importorskip("pydantic")
    key, env_key, token = "k" + "-0123456789", "e" + "-0123456789", "t" + "-0123456789"
    monkeypatch.setenv("GATEWAY_TEST_KEY", env_key)
    serialized = {
        "lc": 1,
        "type": "constructor",
        "kwargs": {
            "model": "gpt-4o-mini",
            "max_tokens": 256,
            "openai_api_key": {"lc": 1, "type": "secret", "id": ["GATEWAY_TEST_KEY"]},
            "default_headers": {"X-Auth": token, "User-Agent": "my-app/1.0"},
        },
    }
    assert secrets_in(serialized) == [env_key, token]
    assert secrets_in({"groq_api_key": pydantic.SecretStr(key), "temperature": 0.1}) == [key]

    class Model(pydantic.BaseModel):
        model: str = "some-model-name"
        api_key: str = key
        additional_kwargs: dict = {"headers": {"X-Auth": token}}  # noqa: RUF012

    assert secrets_in(Model()) == [key, token]
    assert secrets_in(None) == [] and secrets_in(object()) == []


def test_privacy_never_keeps_more_of_an_error_than_the_scrubbed_text() -> None:
    key = "hf_" + "AbCdEfGhIjKlMnOpQrStUvWx"
    assert error_text(key + ": unauthorized") == "[redacted]: unauthorized"
    assert error_text(key + ": unauthorized", privacy=True) == "error"
    assert error_text("AKIA" + "IOSFODNN7EXAMPLE: AccessDenied", privacy=True) == "error"
    assert error_text("RateLimitError: slow down", privacy=True) == "RateLimitError"


def test_settings_named_like_keys_but_holding_none_are_not_secrets() -> None:
    key = "k" + "-0123456789"
    found = secrets_in({"prompt_cache_key": "support-bot", "openai_api_key": key})
    assert found == [key]


def test_keys_after_encoded_quotes_or_digits_are_still_found() -> None:
    key = "sk-proj-" + "AbCdEfGh12345678IjKlMnOp"
    for text in ("?q=1%3D" + key, "%22%3A%22" + key + "%22", "\\u0022" + key, "1" + key):
        assert key not in scrub_secrets(text), text


@pytest.mark.parametrize(
    "text",
    [
        "Authorization: abcdefghABCDEFGH",  # mixed case
        "{'Authorization': 'abcdefghijklmnop'}",  # quoted: data, whatever it looks like
        "Authorization=s3cr3t",  # a digit
        "cf-aig-authorization: AbCdEfGhIjKlMnOpQr",
        "clone https://token123456@github.com/org/repo",  # a token as the user name
    ],
)
def test_credential_like_authorization_and_url_users_are_scrubbed(text: str) -> None:
    assert "[redacted]" in scrub_secrets(text)


def test_privacy_mode_never_keeps_a_known_secret_as_the_error_type() -> None:
    secret = "AbCdEfGh" + "12345678IjKlMnOp"
    text = secret + ": unauthorized"
    assert error_text(text, secrets=[secret]) == "[redacted]: unauthorized"
    assert error_text(text, privacy=True, secrets=[secret]) == "error"


def test_key_settings_other_than_cache_keys_are_secrets() -> None:
    found = secrets_in(
        {
            "subscription_key": "s" + "-0123456",
            "openai_key": "o" + "-0123456",
            "prompt_cache_key": "support-bot",
            "idempotency_key": "request-0001",
        }
    )
    assert found == ["s-0123456", "o-0123456"]


def test_a_custom_header_holding_a_scheme_or_an_opaque_token_is_a_secret() -> None:
    token = "AbCdEfGh" + "12345678"
    opaque = "AbCdEfGhIjKlMnOpQrSt"
    found = header_secrets({"X-Gateway": "Bearer " + token, "X-Other": opaque})
    assert found == ["Bearer " + token, token, opaque]
