"""asyncio.gather, threads, and errors: the right trace for every event, exceptions untouched."""

from __future__ import annotations

import asyncio
import contextvars
import json
import threading
from collections import defaultdict
from typing import Any

import pytest

pytest.importorskip("llama_index.core")

import posthog_llm  # noqa: E402
from llama_index.core import Settings  # noqa: E402
from llama_index.core.instrumentation import get_dispatcher  # noqa: E402

from .fakes import ANSWER, UsageLLM, events  # noqa: E402


def by_event(evts, name):
    return [e["properties"] for e in evts if e["event"] == name]


def by_trace(evts):
    grouped = defaultdict(list)
    for e in evts:
        grouped[e["properties"]["$ai_trace_id"]].append(e)
    return grouped


async def test_gathered_aqueries_get_separate_correct_traces(index, handler, client, sink):
    engine = index.as_query_engine()
    questions = [f"question {i}" for i in range(6)]
    answers = await asyncio.gather(*(engine.aquery(q) for q in questions))
    assert all(str(a) == ANSWER for a in answers)

    evts = events(client, sink)
    traces = by_event(evts, "$ai_trace")
    assert sorted(t["$ai_input_state"] for t in traces) == sorted(questions)
    grouped = by_trace(evts)
    assert len(grouped) == len(questions)
    for trace in traces:
        members = grouped[trace["$ai_trace_id"]]
        kinds = sorted(e["event"] for e in members)
        assert kinds == ["$ai_embedding", "$ai_generation", "$ai_span", "$ai_span", "$ai_trace"]
        question = trace["$ai_input_state"]
        (emb,) = [e["properties"] for e in members if e["event"] == "$ai_embedding"]
        assert emb["$ai_input"] == [question]  # the embedding of this query, not another's
        (gen,) = [e["properties"] for e in members if e["event"] == "$ai_generation"]
        assert question in gen["$ai_input"][0]["content"]
        span_ids = {e["properties"]["$ai_span_id"] for e in members if e["event"] == "$ai_span"}
        assert gen["$ai_parent_id"] in span_ids


def test_thread_with_copied_context_nests_and_plain_thread_starts_its_own(
    index, handler, client, sink
):
    engine = index.as_query_engine()
    dispatcher = get_dispatcher("tests.llama_index.threads")

    @dispatcher.span
    def batch() -> None:
        ctx = contextvars.copy_context()
        copied = threading.Thread(target=ctx.run, args=(engine.query, "copied context"))
        copied.start()
        copied.join()
        plain = threading.Thread(target=engine.query, args=("plain thread",))
        plain.start()
        plain.join()

    batch()
    evts = events(client, sink)
    traces = {t["$ai_span_name"].rpartition(".")[2]: t for t in by_event(evts, "$ai_trace")}
    assert set(traces) == {"batch", "query"}
    assert traces["query"]["$ai_input_state"] == "plain thread"
    outer = traces["batch"]["$ai_trace_id"]
    nested = [s for s in by_event(evts, "$ai_span") if s["$ai_span_type"] == "query"]
    (query_span,) = nested
    assert query_span["$ai_input_state"] == "copied context"
    assert query_span["$ai_trace_id"] == outer
    assert query_span["$ai_parent_id"] == outer
    plain_trace = traces["query"]["$ai_trace_id"]
    assert plain_trace != outer
    gens = by_event(evts, "$ai_generation")
    assert sorted(g["$ai_trace_id"] for g in gens) == sorted([outer, plain_trace])


def test_context_identity_per_request(index, handler, client, sink):
    engine = index.as_query_engine()
    with posthog_llm.context(distinct_id="user_1", session_id="s-1", trace_id="trace-abc"):
        engine.query("first")
    with posthog_llm.context(distinct_id="user_2", properties={"plan": "pro"}):
        engine.query("second")
    evts = events(client, sink)
    first = [e for e in evts if e["distinct_id"] == "user_1"]
    second = [e for e in evts if e["distinct_id"] == "user_2"]
    assert len(first) == len(second) == len(evts) // 2
    assert {e["properties"]["$ai_trace_id"] for e in first} == {"trace-abc"}
    assert all(e["properties"]["$ai_session_id"] == "s-1" for e in first)
    assert all(e["properties"]["plan"] == "pro" for e in second)
    assert all("$process_person_profile" not in e["properties"] for e in evts)


def test_failing_llm_marks_generation_and_ancestors_and_reraises(index, handler, client, sink):
    boom = RuntimeError("provider down")
    Settings.llm.fail_with = boom
    with pytest.raises(RuntimeError) as raised:
        index.as_query_engine().query("cats?")
    assert raised.value is boom  # the user's exception, unchanged

    evts = events(client, sink)
    (gen,) = by_event(evts, "$ai_generation")
    (trace,) = by_event(evts, "$ai_trace")
    spans = {s["$ai_span_type"]: s for s in by_event(evts, "$ai_span")}
    assert gen["$ai_is_error"] is True
    assert gen["$ai_error"] == "RuntimeError: provider down"
    assert "$ai_output_choices" not in gen
    assert spans["synthesize"]["$ai_is_error"] is True
    assert gen["$ai_parent_id"] == spans["synthesize"]["$ai_span_id"]
    assert trace["$ai_is_error"] is True
    assert trace["$ai_error"] == "RuntimeError: provider down"
    # The retrieval before it succeeded and says so.
    assert "$ai_is_error" not in spans["retrieve"]


def test_error_swallowed_by_llamaindex_only_marks_what_failed(index, handler, client, sink):
    # Refine catches ValueError from the LLM call and answers anyway.
    Settings.llm.fail_with = ValueError("bad output")
    index.as_query_engine().query("cats?")
    evts = events(client, sink)
    (gen,) = by_event(evts, "$ai_generation")
    (trace,) = by_event(evts, "$ai_trace")
    assert gen["$ai_is_error"] is True
    assert "$ai_is_error" not in trace
    assert all("$ai_is_error" not in s for s in by_event(evts, "$ai_span"))


class GatewayLLM(UsageLLM):
    default_headers: dict[str, str] = {}


def test_a_key_the_llm_holds_is_scrubbed_from_every_event_of_the_failed_query(
    index, handler, client, sink
):
    # No known key shape (built from parts): only the LLM's own field tells it is a secret.
    key = "gw" + "-" + "0a1b2c3d4e5f6a7b"
    token = "hdr" + "-" + "9f8e7d6c5b4a"
    llm = GatewayLLM()  # MockLLM's __init__ takes no fields: set them after
    llm.api_key = key
    llm.default_headers = {"X-Gateway-Auth": token, "Content-Type": "application/json"}
    llm.fail_with = RuntimeError(f"401 key {key} and header {token} refused")
    Settings.llm = llm
    with pytest.raises(RuntimeError):
        index.as_query_engine().query("cats?")
    evts = events(client, sink)
    failed = [e["properties"]["$ai_error"] for e in evts if e["properties"].get("$ai_is_error")]
    assert len(failed) >= 3  # the generation, the spans it failed and the trace
    assert all(
        error == "RuntimeError: 401 key [redacted] and header [redacted] refused"
        for error in failed
    )
    assert key not in json.dumps(evts) and token not in json.dumps(evts)


async def test_failing_async_query_reraises(index, handler, client, sink):
    boom = TimeoutError("slow provider")
    Settings.llm.fail_with = boom
    with pytest.raises(TimeoutError) as raised:
        await index.as_query_engine().aquery("cats?")
    assert raised.value is boom
    (trace,) = by_event(events(client, sink), "$ai_trace")
    assert trace["$ai_error"] == "TimeoutError: slow provider"
    assert handler.pending()["traces"] == 0


async def test_a_query_cancelled_by_the_callers_timeout_is_not_an_error(
    index, handler, client, sink
):
    # The kernel's rule, as for spans, LangChain and the drop-ins: the caller stopping the work
    # (`asyncio.wait_for`'s timeout) is not the work failing.
    from llama_index.core.llms import CompletionResponse
    from llama_index.core.llms.callbacks import llm_completion_callback

    class SlowLLM(UsageLLM):
        @llm_completion_callback()
        async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
            await asyncio.sleep(5)
            return CompletionResponse(text="late")

    Settings.llm = SlowLLM()
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(index.as_query_engine().aquery("cats?"), 0.3)
    evts = events(client, sink)
    assert by_event(evts, "$ai_trace") and by_event(evts, "$ai_generation")
    for event in evts:
        assert "$ai_is_error" not in event["properties"], event
        assert "$ai_error" not in event["properties"], event


@pytest.mark.allow_internal_errors
def test_a_fact_that_cannot_be_read_drops_that_fact_not_the_event(index, handler, client, sink):
    # An LLM whose parameters cannot be read: its generation goes out without them, with
    # everything else it has (the kernel's rule in every integration), and the trace is whole.
    class BrokenParameters(type(Settings.llm)):  # type: ignore[misc]
        @property
        def additional_kwargs(self) -> dict[str, Any]:
            raise RuntimeError("unreadable")

    Settings.llm = BrokenParameters()
    assert str(index.as_query_engine().query("cats?")) == ANSWER
    Settings.llm.complete("dogs?")  # a direct call: its own trace
    evts = events(client, sink)
    generations = by_event(evts, "$ai_generation")
    assert len(generations) == 2
    for generation in generations:
        assert "$ai_model_parameters" not in generation
        assert generation["$ai_output_choices"]  # the facts that could be read are all there
        assert generation["$ai_input"]
        assert generation["$ai_http_status"] == 200
    (trace,) = by_event(evts, "$ai_trace")  # the query's; the direct call is a generation alone
    assert trace["$ai_output_state"] == ANSWER
    assert sorted(s["$ai_span_type"] for s in by_event(evts, "$ai_span")) == [
        "retrieve",
        "synthesize",
    ]
    assert len(by_event(evts, "$ai_embedding")) == 1
