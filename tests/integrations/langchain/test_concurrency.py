"""batch, async, streams, threads and tasks at once: every trace stays whole and separate."""

from __future__ import annotations

import asyncio
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("langchain_core")

from langchain_core.runnables import RunnableLambda  # noqa: E402

from tests.integrations.langchain.fakes import (  # noqa: E402
    assert_well_formed,
    by_trace,
    chain,
    model,
    reply,
)


def _questions(n: int) -> list[dict[str, str]]:
    return [{"question": f"question {i}"} for i in range(n)]


def _check_traces(sent: list[dict], expected: int) -> None:
    traces = by_trace(sent)
    assert len(traces) == expected
    for trace_events in traces.values():
        assert_well_formed(trace_events)
        assert sorted(e["event"] for e in trace_events) == [
            "$ai_generation",
            "$ai_span",
            "$ai_span",
            "$ai_trace",
        ]
        (trace,) = [e for e in trace_events if e["event"] == "$ai_trace"]
        (generation,) = [e for e in trace_events if e["event"] == "$ai_generation"]
        # The generation of a trace saw that trace's own question.
        question = trace["properties"]["$ai_input_state"]["question"]
        assert generation["properties"]["$ai_input"][1]["content"] == question


def test_batch(handler, events):
    results = chain().batch(_questions(5), config={"callbacks": [handler]})
    assert results == ["Owls eat mice."] * 5
    _check_traces(events(), 5)


async def test_ainvoke(handler, events):
    assert await chain().ainvoke({"question": "q"}, config={"callbacks": [handler]})
    _check_traces(events(), 1)


async def test_abatch_of_50_with_max_concurrency(handler, events):
    results = await chain().abatch(
        _questions(50), config={"callbacks": [handler], "max_concurrency": 8}
    )
    assert len(results) == 50
    _check_traces(events(), 50)
    assert len(handler._runs) == 0


async def test_astream(handler, events):
    llm = model(reply("Owls eat mice at night."))
    chunks = [
        c async for c in chain(llm).astream({"question": "q"}, config={"callbacks": [handler]})
    ]
    assert "".join(chunks) == "Owls eat mice at night."
    sent = events()
    _check_traces(sent, 1)
    (generation,) = [e["properties"] for e in sent if e["event"] == "$ai_generation"]
    assert generation["$ai_stream"] is True
    assert "$ai_time_to_first_token" in generation
    (trace,) = [e["properties"] for e in sent if e["event"] == "$ai_trace"]
    assert trace["$ai_input_state"] == {"question": "q"}


async def test_astream_events(handler, events):
    kinds = set()
    async for event in chain().astream_events(
        {"question": "q"}, config={"callbacks": [handler]}, version="v2"
    ):
        kinds.add(event["event"])
    assert "on_chat_model_stream" in kinds
    _check_traces(events(), 1)


async def test_leaving_astream_events_early_is_not_an_error(handler, events):
    # LangChain cancels the run it was streaming when the consumer leaves the loop: the
    # caller stopping its own work, as a `break` out of a stream, not a failure.
    stream = chain().astream_events(
        {"question": "q"}, config={"callbacks": [handler]}, version="v2"
    )
    async for event in stream:
        if event["event"] == "on_chat_model_stream":
            break
    await stream.aclose()  # what `asyncio.run` does with it at the end
    sent = events()
    assert {e["event"] for e in sent} >= {"$ai_trace", "$ai_generation"}
    for event in sent:
        assert "$ai_is_error" not in event["properties"], event
        assert "$ai_error" not in event["properties"], event


async def test_a_chain_cancelled_by_a_timeout_is_sent_at_once_with_its_open_runs(handler, events):
    # LangChain tells only the root that it was cancelled: the model call inside it never
    # ends. The trace is sent now (not at shutdown), the call's latency ends with it, and a
    # call that never answered has no HTTP status.
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage

    class Slow(GenericFakeChatModel):
        async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs):
            await asyncio.sleep(5)

    slow = chain(Slow(messages=iter([AIMessage(content="hi")])))
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(
            slow.ainvoke({"question": "q"}, config={"callbacks": [handler]}), 0.1
        )
    sent = events()
    assert sorted(e["event"] for e in sent) == ["$ai_generation", "$ai_span", "$ai_trace"]
    (generation,) = [e["properties"] for e in sent if e["event"] == "$ai_generation"]
    assert "$ai_http_status" not in generation and generation["$ai_latency"] < 1.0
    (trace,) = [e["properties"] for e in sent if e["event"] == "$ai_trace"]
    assert trace["$ai_latency"] < 1.0


async def test_tasks_interleaving_on_one_loop_keep_their_traces(handler, events):
    async def slow(x: dict) -> dict:
        await asyncio.sleep(0.01)
        return x

    pipeline = RunnableLambda(slow) | chain()
    await asyncio.gather(
        *(pipeline.ainvoke(q, config={"callbacks": [handler]}) for q in _questions(20))
    )
    traces = by_trace(events())
    assert len(traces) == 20
    for trace_events in traces.values():
        assert_well_formed(trace_events)
        assert len(trace_events) == 5  # the sequences merge: trace, lambda, 3 steps


def test_a_long_trace_whose_steps_end_on_several_threads_loses_no_run(handler, events):
    # A batch of 500 inside one step: past 4,096 log entries the trace hands over what ended so
    # far while other threads still record into it; a run whose end came in while that was
    # read lost its start to the part handed over, and its event was gone (nothing counted).
    import sys

    inner = chain()
    size = 500

    def step(x, config):
        inner.batch(_questions(size), config=config)
        return x

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # threads switch often: the window is hit every time
    try:
        RunnableLambda(step).invoke(1, config={"callbacks": [handler], "max_concurrency": 8})
    finally:
        sys.setswitchinterval(interval)
    sent = events()
    assert len(sent) == 1 + 4 * size
    assert_well_formed(sent)


def test_threads_sharing_one_handler(handler, events):
    runnable = chain()

    def work(i: int) -> str:
        return runnable.invoke({"question": f"question {i}"}, config={"callbacks": [handler]})

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert len(list(pool.map(work, range(40)))) == 40
    _check_traces(events(), 40)


def test_threads_and_asyncio_at_once(handler, events):
    runnable = chain()
    errors: list[BaseException] = []

    def in_thread() -> None:
        try:
            for q in _questions(10):
                runnable.invoke(q, config={"callbacks": [handler]})
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    async def in_tasks() -> None:
        await runnable.abatch(_questions(10), config={"callbacks": [handler]})

    threads = [threading.Thread(target=in_thread) for _ in range(3)]
    for t in threads:
        t.start()
    asyncio.run(in_tasks())
    for t in threads:
        t.join()
    assert not errors
    _check_traces(events(), 40)


def test_parent_ending_before_its_child_keeps_the_child_in_its_trace(handler, events):
    root, step, llm_run = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    handler.on_chain_start(None, {"q": 1}, run_id=root, name="Agent")
    handler.on_chain_start(None, {"q": 1}, run_id=step, parent_run_id=root, name="Step")
    handler.on_chat_model_start({}, [[]], run_id=llm_run, parent_run_id=step)
    handler.on_chain_end({"done": True}, run_id=root)  # the parent ends first
    handler.on_chain_end({"ok": 1}, run_id=step)
    late = uuid.uuid4()  # and a child that only starts after its parent ended
    handler.on_chain_start(None, {}, run_id=late, parent_run_id=step, name="Late")
    handler.on_chain_end({}, run_id=late)
    handler.on_llm_end(
        __import__("langchain_core.outputs", fromlist=["LLMResult"]).LLMResult(generations=[]),
        run_id=llm_run,
    )

    sent = events()
    assert {e["properties"]["$ai_trace_id"] for e in sent} == {str(root)}
    parents = {
        e["properties"].get("$ai_span_name"): e["properties"].get("$ai_parent_id") for e in sent
    }
    assert parents["Step"] == str(root)
    assert parents["Late"] == str(step)
    (generation,) = [e for e in sent if e["event"] == "$ai_generation"]
    assert generation["properties"]["$ai_parent_id"] == str(step)
    assert len(handler._runs) == 0
