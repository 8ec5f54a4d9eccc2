from __future__ import annotations

import posthog_llm
import pytest
from posthog_llm import Emitter, generation_properties, span_properties
from posthog_llm._context import make_scope


def test_anonymous_trace_shares_one_distinct_id_and_is_personless(client, sink):
    emitter = Emitter(client, framework="test")
    scope = emitter.scope()
    emitter.emit(
        "$ai_span", lambda: span_properties(trace_id="t1", span_id="s1"), scope, trace_id="t1"
    )
    emitter.emit(
        "$ai_generation", generation_properties(trace_id="t1", span_id="g1"), scope, trace_id="t1"
    )
    client.flush(5)
    assert {e["distinct_id"] for e in sink.events} == {"t1"}
    assert all(e["properties"]["$process_person_profile"] is False for e in sink.events)


def test_precedence_defaults_then_context_then_overrides(client, sink):
    emitter = Emitter(
        client, distinct_id="default", properties={"a": "default", "b": "default"}, session_id="s0"
    )
    with posthog_llm.context(
        distinct_id="ctx", properties={"b": "ctx", "c": "ctx"}, groups={"company": "acme"}
    ):
        scope = emitter.scope(make_scope(properties={"c": "call"}))
    emitter.emit("$ai_generation", generation_properties(trace_id="t"), scope, trace_id="t")
    client.flush(5)
    event = sink.events[0]
    assert event["distinct_id"] == "ctx"
    props = event["properties"]
    assert (props["a"], props["b"], props["c"]) == ("default", "ctx", "call")
    assert props["$ai_session_id"] == "s0"
    assert props["$groups"] == {"company": "acme"}
    assert "$process_person_profile" not in props


def test_privacy_from_context_strips_content_built_later(client, sink):
    emitter = Emitter(client)
    with posthog_llm.context(privacy_mode=True):
        scope = emitter.scope()
    emitter.emit(
        "$ai_generation",
        lambda: generation_properties(trace_id="t", input="secret", input_tokens=2),
        scope,
        trace_id="t",
    )
    client.flush(5)
    props = sink.events[0]["properties"]
    assert "$ai_input" not in props and props["$ai_input_tokens"] == 2


def test_posthog_python_client_is_accepted(posthog_server):
    posthog = pytest.importorskip("posthog")
    ph = posthog.Posthog("phc_test", host=posthog_server.host, sync_mode=True)
    emitter = Emitter(ph, framework="test")
    emitter.emit(
        "$ai_generation",
        lambda: generation_properties(trace_id="t9", model="m", input={1, 2}),
        emitter.scope(),
        trace_id="t9",
    )
    ph.flush()
    events = posthog_server.wait_for(1)
    assert events[0]["event"] == "$ai_generation"
    assert events[0]["properties"]["$ai_trace_id"] == "t9"
    assert events[0]["properties"]["$ai_input"] == [1, 2]
    assert events[0]["distinct_id"] == "t9"


def test_bad_client_is_rejected_at_configuration_time():
    with pytest.raises(TypeError, match="client"):
        Emitter(client=42)


@pytest.mark.allow_internal_errors
def test_a_failing_builder_never_raises_into_the_caller(client, sink, caplog):
    emitter = Emitter(client)

    def broken():
        raise RuntimeError("builder bug")

    emitter.emit("$ai_span", broken, emitter.scope(), trace_id="t")
    emitter.emit(
        "$ai_span", span_properties(trace_id="t", span_id="ok"), emitter.scope(), trace_id="t"
    )
    client.flush(5)
    assert [e["properties"]["$ai_span_id"] for e in sink.events] == ["ok"]


def test_posthog_module_is_accepted_as_in_the_product_doc(posthog_server, monkeypatch):
    posthog = pytest.importorskip("posthog")
    monkeypatch.setattr(posthog, "project_api_key", "phc_module")
    monkeypatch.setattr(posthog, "host", posthog_server.host)
    monkeypatch.setattr(posthog, "sync_mode", True)
    monkeypatch.setattr(posthog, "privacy_mode", True)
    monkeypatch.setattr(posthog, "default_client", None)
    try:
        emitter = Emitter(posthog)
        scope = emitter.scope()
        emitter.emit(
            "$ai_generation",
            lambda: generation_properties(trace_id="tm", model="m", input="secret", input_tokens=1),
            scope,
            trace_id="tm",
        )
        posthog.flush()
        (event,) = posthog_server.wait_for(1)
        assert event["api_key"] == "phc_module" and event["properties"]["$ai_trace_id"] == "tm"
        assert "$ai_input" not in event["properties"]  # posthog.privacy_mode is honoured
    finally:
        if posthog.default_client is not None:
            posthog.default_client.shutdown()
        posthog.default_client = None
