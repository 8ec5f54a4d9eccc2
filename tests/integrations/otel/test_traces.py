"""Which spans become events, identity, privacy, joining a user's span, OpenInference."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import posthog_llm
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context
from posthog_llm import EventStore
from posthog_llm.integrations.otel import PostHogSpanProcessor

from tests.support.events import only

from .conftest import messages

CHAT = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini"}


def test_a_trace_without_ai_spans_sends_nothing(tracer, events, client):
    for _ in range(3):
        with tracer.start_as_current_span("GET /health", attributes={"http.method": "GET"}):
            with tracer.start_as_current_span("SELECT 1", attributes={"db.system": "sqlite"}):
                pass
    assert events() == []
    stats = client.stats()
    assert stats["queued"] == stats["sent"] == 0


def test_non_ai_spans_count_only_between_ai_spans(tracer, events):
    with tracer.start_as_current_span("POST /chat", attributes={"http.method": "POST"}) as root:
        with tracer.start_as_current_span("auth"):  # above the AI work: not between
            pass
        with tracer.start_as_current_span(
            "invoke_agent A", attributes={"gen_ai.operation.name": "invoke_agent"}
        ) as agent:
            with tracer.start_as_current_span("retrieve documents") as retrieve:
                with tracer.start_as_current_span("chat gpt-4o-mini", attributes=CHAT) as chat:
                    pass
            with tracer.start_as_current_span("SELECT cache"):  # below, no AI under it
                pass
    trace_id = format(root.get_span_context().trace_id, "032x")

    def hex_id(span) -> str:
        return format(span.get_span_context().span_id, "016x")

    trace = only(events("$ai_trace"))
    assert trace["$ai_span_name"] == "POST /chat"  # the root is the trace
    spans = {e["properties"]["$ai_span_name"]: e["properties"] for e in events("$ai_span")}
    assert set(spans) == {"invoke_agent A", "retrieve documents"}
    assert spans["invoke_agent A"]["$ai_parent_id"] == trace_id
    assert spans["retrieve documents"]["$ai_parent_id"] == hex_id(agent)
    assert "$ai_span_type" not in spans["retrieve documents"]
    gen = only(events("$ai_generation"))
    assert gen["$ai_parent_id"] == hex_id(retrieve)
    assert gen["$ai_span_id"] == hex_id(chat)


def test_openinference_spans(tracer, events):
    with tracer.start_as_current_span(
        "query",
        attributes={
            "openinference.span.kind": "CHAIN",
            "input.value": '{"question": "why?"}',
            "input.mime_type": "application/json",
            "output.value": "because",
            "session.id": "s-1",
            "user.id": "user_oi",
        },
    ):
        with tracer.start_as_current_span(
            "OpenAI.chat",
            attributes={
                "openinference.span.kind": "LLM",
                "llm.model_name": "gpt-4o",
                "llm.provider": "openai",
                "llm.invocation_parameters": '{"temperature": 0.5, "api_key": "sk-x"}',
                "llm.input_messages.0.message.role": "system",
                "llm.input_messages.0.message.content": "Be brief.",
                "llm.input_messages.1.message.role": "user",
                "llm.input_messages.1.message.content": "why?",
                "llm.output_messages.0.message.role": "assistant",
                "llm.output_messages.0.message.tool_calls.0.tool_call.id": "c1",
                "llm.output_messages.0.message.tool_calls.0.tool_call.function.name": "lookup",
                "llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments": "{}",
                "llm.token_count.prompt": 11,
                "llm.token_count.completion": 2,
                "llm.token_count.prompt_details.cache_read": 3,
                "llm.token_count.completion_details.reasoning": 1,
                "llm.tools.0.tool.json_schema": '{"type": "function", "name": "lookup"}',
            },
        ):
            pass
        with tracer.start_as_current_span(
            "lookup",
            attributes={
                "openinference.span.kind": "TOOL",
                "tool.name": "lookup",
                "input.value": "{}",
                "output.value": "42",
            },
        ):
            pass
        with tracer.start_as_current_span(
            "embed",
            attributes={
                "openinference.span.kind": "EMBEDDING",
                "embedding.model_name": "text-embedding-3-small",
                "embedding.embeddings.0.embedding.text": "why?",
            },
        ):
            pass
    found = events()
    assert {e["distinct_id"] for e in found} == {"user_oi"}
    assert {e["properties"]["$ai_session_id"] for e in found} == {"s-1"}
    trace = only(events("$ai_trace"))
    assert trace["$ai_input_state"] == {"question": "why?"}
    assert trace["$ai_output_state"] == "because"
    gen = only(events("$ai_generation"))
    assert gen["$ai_model"] == "gpt-4o"
    assert gen["$ai_model_parameters"] == {"temperature": 0.5}  # never the api key
    assert gen["$ai_input"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "why?"},
    ]
    assert gen["$ai_output_choices"][0]["tool_calls"][0]["function"]["name"] == "lookup"
    assert (gen["$ai_input_tokens"], gen["$ai_output_tokens"]) == (11, 2)
    assert gen["$ai_cache_read_input_tokens"] == 3
    assert gen["$ai_reasoning_tokens"] == 1
    assert gen["$ai_tools"] == [{"type": "function", "name": "lookup"}]
    tool = only(events("$ai_span"))
    assert (tool["$ai_span_name"], tool["$ai_span_type"], tool["$ai_output_state"]) == (
        "lookup",
        "tool",
        "42",
    )
    embedding = only(events("$ai_embedding"))
    assert embedding["$ai_input"] == ["why?"]
    assert embedding["$ai_embedding_input_count"] == 1


def test_context_identity_and_privacy(tracer, events):
    with posthog_llm.context(distinct_id="user_ctx", properties={"plan": "pro"}):
        with tracer.start_as_current_span(
            "chat", attributes={**CHAT, "gen_ai.input.messages": messages(("user", "secret plan"))}
        ):
            pass
    with posthog_llm.context(privacy_mode=True):
        with tracer.start_as_current_span(
            "chat", attributes={**CHAT, "gen_ai.input.messages": messages(("user", "secret plan"))}
        ) as span:
            span.set_attribute("gen_ai.usage.input_tokens", 3)
    first = [e for e in events() if "$process_person_profile" not in e["properties"]]
    assert {e["distinct_id"] for e in first} == {"user_ctx"}
    assert all(e["properties"]["plan"] == "pro" for e in first)
    private = [e for e in events() if e["properties"].get("$process_person_profile") is False]
    assert len(private) == 2
    assert "secret plan" not in json.dumps(private)
    assert any(e["properties"].get("$ai_input_tokens") == 3 for e in private)


def test_privacy_mode_on_the_processor_drops_content_and_error_messages(client, events):
    provider = TracerProvider()
    provider.add_span_processor(PostHogSpanProcessor(client, privacy_mode=True))
    tracer = provider.get_tracer("tests")
    with pytest.raises(ValueError):
        with tracer.start_as_current_span(
            "execute_tool lookup",
            attributes={
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.call.arguments": '{"q": "my diagnosis"}',
            },
        ):
            raise ValueError("the patient said: my diagnosis")
    with tracer.start_as_current_span(
        "chat", attributes={**CHAT, "gen_ai.output.messages": messages(("assistant", "diagnosis"))}
    ):
        pass
    found = events()
    assert len(found) == 3  # two traces (each root is its trace) and the chat generation
    assert "diagnosis" not in json.dumps(found)
    tool = [e["properties"] for e in found if e["event"] == "$ai_trace"][0]
    assert tool["$ai_error"] == "ValueError"
    assert "$ai_input_state" not in tool


def test_otel_work_inside_a_users_span_joins_its_trace(tracer, events, client):
    with posthog_llm.span("handle request", client=client) as outer:
        with tracer.start_as_current_span(
            "invoke_agent A", attributes={"gen_ai.operation.name": "invoke_agent"}
        ) as agent:
            with tracer.start_as_current_span("chat", attributes=CHAT):
                pass
    found = events()
    assert {e["properties"]["$ai_trace_id"] for e in found} == {outer.trace_id}
    (trace,) = events("$ai_trace")
    assert trace["properties"]["$ai_span_name"] == "handle request"
    agent_id = format(agent.get_span_context().span_id, "016x")
    span = only(events("$ai_span"))
    assert (span["$ai_span_id"], span["$ai_parent_id"]) == (agent_id, outer.span_id)
    assert only(events("$ai_generation"))["$ai_parent_id"] == agent_id


def test_a_trace_whose_root_lives_elsewhere_is_sent_on_flush(client, events):
    provider = TracerProvider()
    processor = PostHogSpanProcessor(client)
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("tests")
    remote = SpanContext(
        trace_id=0x0AF7651916CD43DD8448EB211C80319C,
        span_id=0xB7AD6B7169203331,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
    parent = set_span_in_context(NonRecordingSpan(remote))
    with tracer.start_as_current_span("server work", context=parent):
        pass  # a local root (remote parent), not AI: nothing
    span = tracer.start_span("chat", context=parent, attributes=CHAT)
    child = tracer.start_span(
        "execute_tool t",
        context=set_span_in_context(span),
        attributes={"gen_ai.operation.name": "execute_tool"},
    )
    child.end()
    assert events() == []  # waiting for the local root
    assert processor.force_flush(5000)
    tool = only(events("$ai_span"))
    assert tool["$ai_trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    # The open local root's children name the trace, as when the trace is sent whole.
    assert tool["$ai_parent_id"] == "0af7651916cd43dd8448eb211c80319c"
    span.end()
    gen = only(events("$ai_generation"))
    assert gen["$ai_parent_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert len(events("$ai_trace")) == 1


def test_openllmetry_and_vercel_ai_sdk_spans(tracer, events):
    with tracer.start_as_current_span(
        "joke_workflow.workflow",
        attributes={
            "traceloop.span.kind": "workflow",
            "traceloop.entity.name": "joke_workflow",
            "traceloop.entity.input": '{"topic": "owls"}',
            "traceloop.entity.output": '"Owls are hoot."',
        },
    ):
        with tracer.start_as_current_span(
            "openai.chat",
            attributes={
                "llm.request.type": "chat",
                "gen_ai.system": "OpenAI",
                "gen_ai.request.model": "gpt-4o",
                "gen_ai.prompt.0.role": "user",
                "gen_ai.prompt.0.content": "Tell a joke about owls",
                "gen_ai.completion.0.role": "assistant",
                "gen_ai.completion.0.content": "Owls are hoot.",
                "gen_ai.usage.prompt_tokens": 6,
                "gen_ai.usage.completion_tokens": 4,
            },
        ):
            pass
    with tracer.start_as_current_span(
        "ai.generateText",
        attributes={"ai.model.id": "gpt-4o-mini", "ai.prompt": '{"prompt": "hi"}'},
    ):
        with tracer.start_as_current_span(
            "ai.generateText.doGenerate",
            attributes={
                "ai.model.id": "gpt-4o-mini",
                "ai.model.provider": "openai.chat",
                "ai.prompt.messages": '[{"role": "user", "content": "hi"}]',
                "ai.response.text": "hello",
                "ai.usage.promptTokens": 3,
                "ai.usage.completionTokens": 1,
                "ai.response.finishReason": "stop",
            },
        ):
            pass
    traces = {e["properties"]["$ai_span_name"]: e["properties"] for e in events("$ai_trace")}
    assert traces["joke_workflow"]["$ai_input_state"] == {"topic": "owls"}
    assert traces["joke_workflow"]["$ai_output_state"] == "Owls are hoot."
    assert set(traces) == {"joke_workflow", "ai.generateText"}
    traceloop, vercel = (e["properties"] for e in events("$ai_generation"))
    assert traceloop["$ai_provider"] == "openai"
    assert traceloop["$ai_input"] == [{"role": "user", "content": "Tell a joke about owls"}]
    assert (traceloop["$ai_input_tokens"], traceloop["$ai_output_tokens"]) == (6, 4)
    assert vercel["$ai_model"] == "gpt-4o-mini"
    assert vercel["$ai_provider"] == "openai"
    assert vercel["$ai_input"] == [{"role": "user", "content": "hi"}]
    assert vercel["$ai_output_choices"] == [{"role": "assistant", "content": "hello"}]
    assert (vercel["$ai_input_tokens"], vercel["$ai_output_tokens"]) == (3, 1)
    assert vercel["$ai_stop_reason"] == "stop"


def test_records_read_from_the_sdk_fields_equal_those_read_through_its_properties():
    from opentelemetry.sdk.trace import SpanProcessor
    from opentelemetry.trace import Status, StatusCode
    from posthog_llm.instrumentation import record_from_sdk_span

    ended = []

    class PublicOnly:
        """A ReadableSpan seen through its public properties only (another SDK's span)."""

        def __init__(self, span):
            self.span = span

        def __getattr__(self, name):
            if name.startswith("_"):
                raise AttributeError(name)
            return getattr(self.span, name)

    class Keep(SpanProcessor):
        def on_end(self, span):
            ended.append(span)

    provider = TracerProvider()
    provider.add_span_processor(Keep())
    tracer = provider.get_tracer("test")
    parent = SpanContext(trace_id=7, span_id=9, is_remote=True, trace_flags=TraceFlags(1))
    with tracer.start_as_current_span(
        "remote child", context=set_span_in_context(NonRecordingSpan(parent))
    ):
        with tracer.start_as_current_span("chat", attributes=CHAT) as span:
            span.add_event("exception", {"exception.type": "ValueError"})
            span.set_status(Status(StatusCode.ERROR, "boom"))
    records = [record_from_sdk_span(span) for span in ended]
    assert records == [record_from_sdk_span(PublicOnly(span)) for span in ended]
    chat, child = records
    assert chat.is_error and chat.status_message == "boom"
    assert chat.events[0].name == "exception" and chat.attributes["gen_ai.request.model"]
    assert child.parent_remote and child.parent_id == f"{9:016x}" and child.trace_id == f"{7:032x}"


def test_each_event_carries_its_span_end_time(tracer, events):
    import time
    from datetime import datetime

    agent_attrs = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "A"}
    with tracer.start_as_current_span("invoke_agent A", attributes=agent_attrs) as agent:
        with tracer.start_as_current_span("chat gpt-4o-mini", attributes=CHAT):
            pass
        time.sleep(0.3)

    sent = events()
    at = {e["event"]: datetime.fromisoformat(e["timestamp"]) for e in sent}
    assert set(at) == {"$ai_generation", "$ai_trace"}
    gap = (at["$ai_trace"] - at["$ai_generation"]).total_seconds()
    assert 0.25 <= gap < 5  # not the time the trace was queued, for every event alike
    assert abs(at["$ai_trace"].timestamp() - agent.end_time / 1e9) < 0.01


@pytest.mark.parametrize("where", ["span", "resource"])
def test_the_privacy_attribute_on_a_span_or_its_resource_drops_content(client, events, where):
    from opentelemetry.sdk.resources import Resource

    flag = {"posthog.privacy_mode": True}
    provider = TracerProvider(resource=Resource.create(flag if where == "resource" else {}))
    provider.add_span_processor(PostHogSpanProcessor(client))
    _run_secret_chat(provider, **(flag if where == "span" else {}))
    provider.shutdown()
    found = events()
    assert sorted(e["event"] for e in found) == ["$ai_generation", "$ai_trace"]
    assert "secret" not in json.dumps(found)
    (generation,) = [e["properties"] for e in found if e["event"] == "$ai_generation"]
    assert generation["$ai_model"] == CHAT["gen_ai.request.model"]  # the rest stays


@pytest.mark.parametrize("value", ["true", "True", "YES", "1"])
def test_the_privacy_attribute_from_otel_resource_attributes_is_text_and_is_honoured(
    client, events, monkeypatch, value
):
    # OpenTelemetry SDKs read OTEL_RESOURCE_ATTRIBUTES as strings: the flag is "true", not True.
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", f"service.name=app,posthog.privacy_mode={value}")
    provider = TracerProvider()
    assert provider.resource.attributes["posthog.privacy_mode"] == value
    provider.add_span_processor(PostHogSpanProcessor(client))
    _run_secret_chat(provider)
    provider.shutdown()
    found = events()
    assert sorted(e["event"] for e in found) == ["$ai_generation", "$ai_trace"]
    assert "secret" not in json.dumps(found)


@pytest.mark.parametrize("value", ["false", "no", "0", "maybe", ""])
def test_a_privacy_attribute_that_does_not_ask_for_it_never_turns_it_off(client, events, value):
    from opentelemetry.sdk.resources import Resource

    provider = TracerProvider(resource=Resource.create({"posthog.privacy_mode": value}))
    provider.add_span_processor(PostHogSpanProcessor(client, privacy_mode=True))
    _run_secret_chat(provider, **{"posthog.privacy_mode": value})
    provider.shutdown()
    found = events()
    assert sorted(e["event"] for e in found) == ["$ai_generation", "$ai_trace"]
    assert "secret" not in json.dumps(found)


def _run_secret_chat(provider: TracerProvider, **root_attributes: object) -> None:
    tracer = provider.get_tracer("tests")
    with tracer.start_as_current_span(
        "invoke_agent A",
        attributes={
            "gen_ai.operation.name": "invoke_agent",
            "input.value": "secret task",
            **root_attributes,
        },
    ):
        with tracer.start_as_current_span(
            "chat",
            attributes={
                **CHAT,
                "gen_ai.input.messages": messages(("user", "secret question")),
                "gen_ai.output.messages": messages(("assistant", "secret reply")),
            },
        ):
            pass


def test_a_span_nested_too_deep_to_parse_loses_no_event_of_its_trace(tracer, events):
    with tracer.start_as_current_span(
        "invoke_agent A", attributes={"gen_ai.operation.name": "invoke_agent"}
    ):
        with tracer.start_as_current_span("chat ok", attributes=CHAT):
            pass
        with tracer.start_as_current_span(
            "chat deep", attributes={**CHAT, "gen_ai.input.messages": "[" * 3000 + "]" * 3000}
        ):
            pass
    found = events()
    assert sorted(e["properties"].get("$ai_span_name") for e in found) == [
        "chat deep",
        "chat ok",
        "invoke_agent A",
    ]


def test_a_step_that_ends_before_the_ai_work_inside_it_is_still_between_ai_spans(tracer, events):
    # A handler returns a stream: its span ends before the model call inside it does.
    with tracer.start_as_current_span(
        "invoke_agent B", attributes={"gen_ai.operation.name": "invoke_agent"}
    ):
        handler = tracer.start_span("handler")
        chat = tracer.start_span("chat", context=set_span_in_context(handler), attributes=CHAT)
        handler.end()
        chat.end()
    sent = events()
    step = only(_named(sent, "$ai_span", "handler"))
    assert only(_named(sent, "$ai_generation", "chat"))["$ai_parent_id"] == step["$ai_span_id"]


def test_an_ai_span_that_ends_after_its_root_is_sent_at_once_as_part_of_its_trace(
    tracer, events, client
):
    with posthog_llm.context(distinct_id="user-1"):
        root = tracer.start_span(
            "invoke_agent A", attributes={"gen_ai.operation.name": "invoke_agent"}
        )
        late = tracer.start_span("chat late", context=set_span_in_context(root), attributes=CHAT)
        root.end()
    late.end()  # a stream read after the handler returned; no flush of the processor
    sent = events()
    [trace] = _named(sent, "$ai_trace", "invoke_agent A")
    [generation] = _named(sent, "$ai_generation", "chat late")
    trace_id = trace["properties"]["$ai_trace_id"]
    assert generation["properties"]["$ai_trace_id"] == trace_id
    assert generation["properties"]["$ai_parent_id"] == trace_id  # the root is the trace
    assert generation["distinct_id"] == trace["distinct_id"] == "user-1"


@pytest.mark.parametrize("early", [True, False], ids=["after-an-ai-step", "before-any-ai-step"])
def test_ai_spans_that_end_after_a_private_root_are_sent_without_content(tracer, events, early):
    def chat(name: str) -> object:
        return tracer.start_span(
            name,
            context=set_span_in_context(root),
            attributes={**CHAT, "gen_ai.input.messages": messages(("user", f"secret {name}"))},
        )

    root = tracer.start_span(
        "handler", attributes={"posthog.privacy_mode": True, "input.value": "secret task"}
    )
    if early:
        chat("chat early").end()
    late = [chat("chat late 1"), chat("chat late 2")]
    root.end()
    for span in late:  # streams read after the handler returned
        span.set_attribute("gen_ai.output.messages", messages(("assistant", "secret reply")))
        span.end()
    sent = events()
    names = sorted(e["properties"]["$ai_span_name"] for e in sent)
    assert names == sorted(["handler", "chat late 1", "chat late 2"] + ["chat early"] * early)
    assert "secret" not in json.dumps(sent)
    late_generation = only(_named(sent, "$ai_generation", "chat late 2"))
    assert late_generation["$ai_model"] == CHAT["gen_ai.request.model"]  # the rest stays


def test_a_late_span_that_asks_for_privacy_keeps_it_for_the_later_ones(tracer, events):
    root = tracer.start_span("handler", attributes={"gen_ai.operation.name": "invoke_agent"})
    first = tracer.start_span(
        "chat 1",
        context=set_span_in_context(root),
        attributes={**CHAT, "posthog.privacy_mode": "true"},
    )
    second = tracer.start_span("chat 2", context=set_span_in_context(root), attributes=CHAT)
    root.end()
    for span in (first, second):
        span.set_attribute("gen_ai.output.messages", messages(("assistant", "secret reply")))
        span.end()
    sent = events()
    assert sorted(e["properties"]["$ai_span_name"] for e in sent) == ["chat 1", "chat 2", "handler"]
    assert "secret" not in json.dumps(sent)


def test_a_trace_still_open_at_exit_is_stored(tmp_path):
    # Its root never ended in this process; the provider's own exit hook may run after the
    # client has shut down, so the processor hands the trace over first.
    db = tmp_path / "events.db"
    code = f"""
        import posthog_llm
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from posthog_llm.integrations.otel import PostHogSpanProcessor

        provider = TracerProvider()
        provider.add_span_processor(PostHogSpanProcessor(posthog_llm.Client(db={str(db)!r})))
        tracer = provider.get_tracer("t")
        root = tracer.start_span("invoke_agent A", attributes={{"gen_ai.operation.name": "invoke_agent"}})
        tracer.start_span(
            "chat", context=trace.set_span_in_context(root), attributes={CHAT!r}
        ).end()
        """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    names = [e["event"] for e in EventStore(str(db)).events()]
    assert names == ["$ai_generation"]


def _named(sent: list[dict], event: str, name: str) -> list[dict]:
    return [e for e in sent if e["event"] == event and e["properties"]["$ai_span_name"] == name]


def test_an_openinference_retrievers_documents_are_its_output(tracer, events):
    with tracer.start_as_current_span("query", attributes={"openinference.span.kind": "CHAIN"}):
        with tracer.start_as_current_span(
            "retrieve",
            attributes={
                "openinference.span.kind": "RETRIEVER",
                "input.value": "owls",
                "retrieval.documents.0.document.id": "d1",
                "retrieval.documents.0.document.content": "Owls hunt at night.",
                "retrieval.documents.0.document.score": 0.9,
                "retrieval.documents.1.document.id": "d2",
                "retrieval.documents.1.document.content": "Owls eat mice.",
                "retrieval.documents.1.document.metadata": '{"source": "wiki"}',
            },
        ):
            pass
    [retriever] = _named(events(), "$ai_span", "retrieve")
    assert retriever["properties"]["$ai_output_state"] == [
        {"id": "d1", "content": "Owls hunt at night.", "score": 0.9},
        {"id": "d2", "content": "Owls eat mice.", "metadata": {"source": "wiki"}},
    ]


def test_ai_work_a_trace_does_after_its_root_ended_joins_it_whatever_its_root_was(tracer, events):
    # A handler's span (no AI attributes) ends while its stream is still to be read: the model
    # call started before the root ended, or starts only when the stream is read.
    root = tracer.start_span("GET /stream")
    started = tracer.start_span("chat started", context=set_span_in_context(root), attributes=CHAT)
    root.end()
    assert events() == []  # nothing AI has ended yet
    started.end()
    later = tracer.start_span("chat later", context=set_span_in_context(root), attributes=CHAT)
    later.end()
    sent = events()
    [trace] = _named(sent, "$ai_trace", "GET /stream")
    trace_id = trace["properties"]["$ai_trace_id"]
    for name in ("chat started", "chat later"):
        [generation] = _named(sent, "$ai_generation", name)
        assert generation["properties"]["$ai_parent_id"] == trace_id
    assert len(sent) == 3
