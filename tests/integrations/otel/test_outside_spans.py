"""Work posthog-llm reports inside an OpenTelemetry span joins that span's trace: one request
instrumented by OpenTelemetry (a web framework's server span) that calls the OpenAI drop-in, opens
`posthog_llm.span` or runs a LangChain chain is one trace, not two."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import posthog_llm
import pytest
from opentelemetry.sdk.trace import TracerProvider
from posthog_llm import Client
from posthog_llm.integrations.otel import PostHogSpanProcessor
from posthog_llm.local.openai_standin import OpenAIStandIn

from .conftest import hex_ids

pytest.importorskip("openai")

MESSAGES = [{"role": "user", "content": "Tell me about owls"}]
CHAT = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini"}


@pytest.fixture
def openai_client(client: Client) -> Iterator[Any]:
    from posthog_llm.integrations.openai import OpenAI

    with OpenAIStandIn() as server:
        yield OpenAI(
            api_key="sk-test", base_url=server.base_url, max_retries=0, posthog_client=client
        )


def ask(openai_client: Any) -> None:
    openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)


def test_a_drop_in_call_in_a_request_span_is_in_the_requests_trace(
    tracer: Any, openai_client: Any, events: Any
) -> None:
    with tracer.start_as_current_span("GET /chat") as request:
        ask(openai_client)
    trace_hex, _ = hex_ids(request)

    generation = events("$ai_generation")[0]["properties"]
    assert generation["$ai_trace_id"] == trace_hex
    assert generation["$ai_parent_id"] == trace_hex  # the request span is the trace itself
    (trace,) = events("$ai_trace")
    assert trace["properties"]["$ai_trace_id"] == trace_hex
    assert trace["properties"]["$ai_span_name"] == "GET /chat"
    assert trace["distinct_id"] == events("$ai_generation")[0]["distinct_id"]
    assert events("$ai_span") == []


def test_the_span_a_drop_in_call_runs_in_is_its_parent_step(
    tracer: Any, openai_client: Any, events: Any
) -> None:
    with tracer.start_as_current_span("GET /chat") as request:
        with tracer.start_as_current_span("db.query"):
            pass  # a sibling with no AI work inside: not sent
        with tracer.start_as_current_span("answer_question") as handler:
            ask(openai_client)
    trace_hex, _ = hex_ids(request)
    _, handler_hex = hex_ids(handler)

    generation = events("$ai_generation")[0]["properties"]
    assert (generation["$ai_trace_id"], generation["$ai_parent_id"]) == (trace_hex, handler_hex)
    (step,) = events("$ai_span")
    assert step["properties"]["$ai_span_id"] == handler_hex
    assert step["properties"]["$ai_span_name"] == "answer_question"
    assert step["properties"]["$ai_parent_id"] == trace_hex
    assert len(events("$ai_trace")) == 1


def test_a_user_span_in_an_opentelemetry_span_joins_it_and_work_after_it_does_not(
    client: Client, tracer: Any, openai_client: Any, events: Any
) -> None:
    posthog_llm.set_client(client)
    with tracer.start_as_current_span("GET /chat") as request:
        with posthog_llm.span("retrieve"):
            ask(openai_client)
    ask(openai_client)  # outside any span: a trace of its own
    trace_hex, _ = hex_ids(request)

    (user_span,) = events("$ai_span")
    props = user_span["properties"]
    assert (props["$ai_trace_id"], props["$ai_parent_id"]) == (trace_hex, trace_hex)
    inside, after = events("$ai_generation")
    assert inside["properties"]["$ai_parent_id"] == props["$ai_span_id"]
    assert after["properties"]["$ai_trace_id"] != trace_hex
    assert "$ai_parent_id" not in after["properties"]


def test_the_identity_of_the_context_the_request_started_in_applies(
    tracer: Any, openai_client: Any, events: Any
) -> None:
    with posthog_llm.context(distinct_id="user-7", properties={"tier": "pro"}):
        with tracer.start_as_current_span("GET /chat"):
            pass
        with tracer.start_as_current_span("POST /chat"):
            ask(openai_client)
    for event in events():
        assert event["distinct_id"] == "user-7"
        assert event["properties"]["tier"] == "pro"


def test_a_span_of_a_provider_without_the_processor_is_not_joined(
    openai_client: Any, events: Any
) -> None:
    other = TracerProvider()  # no PostHogSpanProcessor: its traces are never sent
    with other.get_tracer("other").start_as_current_span("GET /chat") as request:
        ask(openai_client)
    trace_hex, _ = hex_ids(request)
    generation = events("$ai_generation")[0]["properties"]
    assert generation["$ai_trace_id"] != trace_hex
    assert "$ai_parent_id" not in generation
    assert events("$ai_trace") == []


def test_a_request_without_posthog_llm_work_still_sends_nothing(tracer: Any, events: Any) -> None:
    with tracer.start_as_current_span("GET /health"):
        with tracer.start_as_current_span("db.query"):
            pass
    assert events() == []


def test_a_langchain_chain_in_a_request_span_is_a_step_of_the_request(
    client: Client, tracer: Any, events: Any
) -> None:
    pytest.importorskip("langchain_core")
    from langchain_core.runnables import RunnableLambda
    from posthog_llm.integrations.langchain import PostHogCallbackHandler

    chain = RunnableLambda(lambda x: x + 1).with_config(run_name="add_one")
    with tracer.start_as_current_span("GET /compute") as request:
        assert chain.invoke(1, config={"callbacks": [PostHogCallbackHandler(client)]}) == 2
    trace_hex, _ = hex_ids(request)

    (step,) = events("$ai_span")
    assert step["properties"]["$ai_span_name"] == "add_one"
    assert step["properties"]["$ai_trace_id"] == trace_hex
    assert step["properties"]["$ai_parent_id"] == trace_hex
    (trace,) = events("$ai_trace")
    assert trace["properties"]["$ai_span_name"] == "GET /compute"


def test_flushing_or_shutting_down_inside_a_span_returns(
    client: Client, provider: Any, tracer: Any, openai_client: Any, events: Any
) -> None:
    # A serverless handler flushes before it returns, inside its own span; the processor's
    # own reading of the scope must not open the trace it is handing over again.
    done: list[str] = []

    def handler() -> None:
        with tracer.start_as_current_span("lambda handler"):
            with tracer.start_as_current_span("chat", attributes=CHAT):
                pass
            ask(openai_client)
            provider.force_flush()
            done.append("flushed")
            client.shutdown(timeout=5)
            done.append("shut down")

    worker = threading.Thread(target=handler, daemon=True)
    worker.start()
    worker.join(30)
    assert done == ["flushed", "shut down"]


def test_a_plain_span_above_an_opentelemetry_generation_is_still_not_sent(
    tracer: Any, events: Any
) -> None:
    with posthog_llm.context(distinct_id="user-42"):
        with tracer.start_as_current_span("GET /chat"):
            with tracer.start_as_current_span("middleware"):
                with tracer.start_as_current_span("chat", attributes=CHAT):
                    pass
    assert events("$ai_span") == []  # not between AI spans
    assert {e["distinct_id"] for e in events()} == {"user-42"}
    assert len(events("$ai_generation")) == 1


def test_work_in_a_private_trace_is_sent_without_content(
    tracer: Any, openai_client: Any, events: Any
) -> None:
    with tracer.start_as_current_span("GET /chat", attributes={"posthog.privacy_mode": True}):
        with tracer.start_as_current_span("handler"):
            ask(openai_client)
    generation = events("$ai_generation")[0]["properties"]
    assert generation["$ai_trace_id"] == events("$ai_trace")[0]["properties"]["$ai_trace_id"]
    assert "$ai_input" not in generation and "$ai_output_choices" not in generation


def test_a_trace_id_named_in_the_context_or_the_call_wins_and_the_request_sends_nothing(
    tracer: Any, openai_client: Any, events: Any
) -> None:
    with tracer.start_as_current_span("GET /chat"):
        with tracer.start_as_current_span("handler"):
            with posthog_llm.context(trace_id="conversation-17"):
                ask(openai_client)
            openai_client.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, posthog_trace_id="conversation-18"
            )
    traces = [e["properties"]["$ai_trace_id"] for e in events("$ai_generation")]
    assert traces == ["conversation-17", "conversation-18"]
    assert events("$ai_trace") == [] and events("$ai_span") == []


def test_with_the_processors_client_disabled_work_keeps_a_trace_of_its_own(
    sink: Any, openai_client: Any, events: Any
) -> None:
    provider = TracerProvider()
    provider.add_span_processor(PostHogSpanProcessor(Client(destination=sink, disabled=True)))
    with provider.get_tracer("t").start_as_current_span("GET /chat") as request:
        ask(openai_client)
    generation = events("$ai_generation")[0]["properties"]
    assert generation["$ai_trace_id"] != hex_ids(request)[0]
    assert "$ai_parent_id" not in generation


def test_every_input_of_a_langchain_batch_in_a_request_span_joins_it(
    client: Client, tracer: Any, events: Any
) -> None:
    pytest.importorskip("langchain_core")
    from langchain_core.runnables import RunnableLambda
    from posthog_llm.integrations.langchain import PostHogCallbackHandler

    chain = RunnableLambda(lambda x: x + 1) | RunnableLambda(lambda x: x * 2)
    handler = PostHogCallbackHandler(client)
    with tracer.start_as_current_span("GET /batch") as request:
        assert chain.batch([1, 2], config={"callbacks": [handler]}) == [4, 6]
    trace_hex, _ = hex_ids(request)
    roots = [
        e["properties"]
        for e in events("$ai_span")
        if e["properties"]["$ai_span_name"] == "RunnableSequence"
    ]
    assert len(roots) == 2
    assert all((r["$ai_trace_id"], r["$ai_parent_id"]) == (trace_hex, trace_hex) for r in roots)
    assert len(events("$ai_trace")) == 1


def test_a_span_that_work_joined_is_sent_when_it_ends_after_a_flush(
    provider: Any, tracer: Any, openai_client: Any, events: Any
) -> None:
    with tracer.start_as_current_span("GET /chat"):
        with tracer.start_as_current_span("handler") as handler:
            ask(openai_client)
            provider.force_flush()  # hands the open trace over before its spans end
    _, handler_hex = hex_ids(handler)
    (step,) = events("$ai_span")
    assert step["properties"]["$ai_span_id"] == handler_hex
    assert events("$ai_generation")[0]["properties"]["$ai_parent_id"] == handler_hex


@pytest.mark.parametrize("where", ["root", "middle span"])
def test_a_trace_private_at_any_span_start_keeps_joined_work_private_and_its_identity(
    tracer: Any, openai_client: Any, events: Any, where: str
) -> None:
    private = {"posthog.privacy_mode": True}
    with tracer.start_as_current_span("POST /chat", attributes=private if where == "root" else {}):
        with posthog_llm.context(distinct_id="alice"):
            with tracer.start_as_current_span(
                "answer", attributes=private if where != "root" else {}
            ):
                with tracer.start_as_current_span("generate"):
                    ask(openai_client)
    generation = events("$ai_generation")[0]
    assert "$ai_input" not in generation["properties"]
    assert "$ai_output_choices" not in generation["properties"]
    assert {e["distinct_id"] for e in events()} == {"alice"}


def test_a_model_call_span_around_a_drop_in_call_is_a_step_and_the_call_counted_once(
    tracer: Any, openai_client: Any, events: Any
) -> None:
    usage = {"gen_ai.usage.input_tokens": 12, "gen_ai.usage.output_tokens": 30}
    with tracer.start_as_current_span("POST /chat"):
        with tracer.start_as_current_span("chat gpt-4o-mini", attributes={**CHAT, **usage}):
            ask(openai_client)
    (generation,) = events("$ai_generation")
    (step,) = events("$ai_span")
    assert step["properties"]["$ai_span_name"] == "chat gpt-4o-mini"
    assert generation["properties"]["$ai_parent_id"] == step["properties"]["$ai_span_id"]


def test_reading_the_current_observation_in_passing_joins_nothing(tracer: Any, events: Any) -> None:
    from posthog_llm.instrumentation import current_observation

    with tracer.start_as_current_span("GET /health"):
        with tracer.start_as_current_span("check"):
            seen = current_observation()
            assert seen is not None and "(not read)" in repr(seen)
    assert events() == []


def test_llama_index_internal_work_in_a_request_span_sends_nothing(
    client: Client, tracer: Any, events: Any
) -> None:
    pytest.importorskip("llama_index.core")
    from llama_index.core import Document
    from llama_index.core.node_parser import SentenceSplitter
    from posthog_llm.integrations import llama_index as posthog_li

    posthog_li.set_global_handler(client)
    try:
        with tracer.start_as_current_span("POST /ingest"):
            with tracer.start_as_current_span("handler"):
                nodes = SentenceSplitter().get_nodes_from_documents([Document(text="Owls.")])
    finally:
        posthog_li.remove_global_handler()
    assert len(nodes) == 1
    assert events() == []


def test_work_that_is_no_model_call_leaves_a_model_call_span_its_generation(
    client: Client, tracer: Any, events: Any
) -> None:
    usage = {"gen_ai.usage.input_tokens": 12, "gen_ai.usage.output_tokens": 30}
    with tracer.start_as_current_span("POST /chat"):
        with tracer.start_as_current_span("chat gpt-4o-mini", attributes={**CHAT, **usage}):
            with posthog_llm.span("parse output", client=client):
                pass
    (generation,) = events("$ai_generation")
    assert generation["properties"]["$ai_input_tokens"] == 12
    (step,) = events("$ai_span")
    assert step["properties"]["$ai_parent_id"] == generation["properties"]["$ai_span_id"]


def test_a_drop_in_call_under_nested_model_call_spans_is_counted_once(
    tracer: Any, openai_client: Any, events: Any
) -> None:
    llm = {"openinference.span.kind": "LLM", "llm.model_name": "gpt-4o-mini"}
    with tracer.start_as_current_span("POST /chat"):
        with tracer.start_as_current_span("LLM.predict", attributes=llm):
            with tracer.start_as_current_span("OpenAI.chat", attributes=llm):
                ask(openai_client)
    (generation,) = events("$ai_generation")
    assert generation["properties"]["$ai_provider"] == "local"  # the drop-in's
    assert {e["properties"]["$ai_span_name"] for e in events("$ai_span")} == {
        "LLM.predict",
        "OpenAI.chat",
    }


def test_privacy_asked_by_an_agent_span_or_before_a_flush_stays_with_the_trace(
    provider: Any, tracer: Any, openai_client: Any, events: Any
) -> None:
    agent = {"gen_ai.operation.name": "invoke_agent", "posthog.privacy_mode": True}
    with tracer.start_as_current_span("POST /agent"):
        with tracer.start_as_current_span("helper", attributes=agent):
            with tracer.start_as_current_span("tool"):
                ask(openai_client)
    with tracer.start_as_current_span("POST /chat", attributes={"posthog.privacy_mode": True}):
        with tracer.start_as_current_span("handler"):
            ask(openai_client)
            provider.force_flush()
            ask(openai_client)
    generations = events("$ai_generation")
    assert len(generations) == 3
    assert not any("$ai_input" in g["properties"] for g in generations)


def test_a_llama_index_stream_read_after_its_span_ended_stays_under_that_span(
    client: Client, tracer: Any, events: Any
) -> None:
    pytest.importorskip("llama_index.core")
    from llama_index.core import Settings
    from llama_index.core.llms import MockLLM
    from llama_index.core.response_synthesizers import get_response_synthesizer
    from posthog_llm.integrations import llama_index as posthog_li

    saved = Settings._llm
    Settings.llm = MockLLM(max_tokens=8)
    posthog_li.set_global_handler(client)
    try:
        with tracer.start_as_current_span("POST /ask"):
            with tracer.start_as_current_span("handler") as handler:
                stream = get_response_synthesizer(streaming=True).get_response("q", ["owls"])
            with tracer.start_as_current_span("send body"):
                assert "".join(stream)
    finally:
        posthog_li.remove_global_handler()
        Settings._llm = saved
    _, handler_hex = hex_ids(handler)
    (generation,) = events("$ai_generation")
    assert generation["properties"]["$ai_parent_id"] == handler_hex
    (step,) = events("$ai_span")
    assert step["properties"]["$ai_span_id"] == handler_hex
    assert len(events("$ai_trace")) == 1


def test_each_piece_of_work_in_one_span_keeps_its_own_context(
    tracer: Any, openai_client: Any, events: Any
) -> None:
    alice = {"distinct_id": "alice", "session_id": "sess-a", "properties": {"tenant": "acme"}}
    with tracer.start_as_current_span("POST /job"):
        with posthog_llm.context(**alice, privacy_mode=True):
            ask(openai_client)
        with posthog_llm.context(distinct_id="bob"):
            ask(openai_client)
    first, second = (e for e in events("$ai_generation"))
    assert first["distinct_id"] == "alice" and "$ai_input" not in first["properties"]
    assert second["distinct_id"] == "bob"
    assert "$ai_session_id" not in second["properties"]
    assert "tenant" not in second["properties"]
    assert second["properties"]["$ai_input"] == MESSAGES  # alice's privacy stays hers
    (trace,) = events("$ai_trace")
    assert trace["distinct_id"] == "alice"  # the first work that joined names the trace
