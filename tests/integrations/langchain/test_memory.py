"""No run state outlives its run; abandoned runs are forgotten, so memory stays flat."""

from __future__ import annotations

import gc
import uuid

import pytest

pytest.importorskip("langchain_core")

from tests.integrations.langchain.fakes import chain, model, reply  # noqa: E402


def test_finished_runs_leave_nothing_behind(handler, events):
    runnable = chain()
    for i in range(300):
        runnable.invoke({"question": f"q{i}"}, config={"callbacks": [handler]})
    assert len(handler._runs) == 0
    # Only a short, bounded memory of ended runs (for children starting after their parent).
    assert handler._runs.ended_count <= handler._runs.max_ended
    assert len(events("$ai_trace")) == 300


def test_streamed_tokens_are_let_go_once_their_trace_is_sent(handler, events):
    # Ended traces are remembered a while (for late children): not the tokens streamed in them.
    runnable = chain(model(reply("one two three four five six seven eight")))
    for i in range(50):
        assert "".join(runnable.stream({"question": f"q{i}"}, config={"callbacks": [handler]}))
    assert len(events("$ai_trace")) == 50
    assert all(g["properties"]["$ai_output_choices"] for g in events("$ai_generation"))
    remembered = {id(t): t for t in handler._runs._ended.values() if hasattr(t, "tokens")}
    assert remembered  # the memory of ended runs holds these traces
    assert all(not t.tokens for t in remembered.values())


def test_2000_abandoned_streams_stay_bounded(handler, events):
    handler.max_runs = 500
    runnable = chain(model(reply("one two three four")))
    streams = []
    for i in range(2000):
        stream = runnable.stream({"question": f"q{i}"}, config={"callbacks": [handler]})
        next(stream)  # started, then never finished: the caller keeps it and walks away
        streams.append(stream)
        assert len(handler._runs) <= 500
    assert len(handler._runs) == 500
    assert handler._runs.evicted >= 2000 * 3 - 500
    assert handler._runs.ended_count <= handler._runs.max_ended
    del streams


def test_abandoned_streams_that_are_collected_end_cleanly(handler, events):
    runnable = chain(model(reply("one two three four")))
    for i in range(200):
        stream = runnable.stream({"question": f"q{i}"}, config={"callbacks": [handler]})
        next(stream)
        del stream  # closed by the garbage collector: LangChain ends its runs
    gc.collect()
    assert len(handler._runs) == 0
    traces = events("$ai_trace")
    assert len(traces) == 200
    # The consumer stopped reading; nothing failed.
    assert all("$ai_is_error" not in t["properties"] for t in traces)
    assert all("$ai_is_error" not in g["properties"] for g in events("$ai_generation"))


def test_a_stream_the_caller_keeps_but_stops_reading_is_sent_without_a_made_up_input(
    client, handler, sink
):
    # LangChain starts a streamed chain with the placeholder {"input": ""} and gives the real
    # input at its end, which never comes: the trace said its input was {"input": ""}.
    stream = chain(model(reply("one two three"))).stream(
        {"question": "hedgehogs?"}, config={"callbacks": [handler]}
    )
    next(stream)
    assert client.shutdown(5)
    events = {e["properties"].get("$ai_span_name"): e for e in sink.events}
    trace = next(e for e in sink.events if e["event"] == "$ai_trace")["properties"]
    assert "$ai_input_state" not in trace
    assert events["ChatPromptTemplate"]["properties"]["$ai_input_state"] == {
        "question": "hedgehogs?"
    }
    assert all(e["properties"].get("$ai_input_state") != {"input": ""} for e in sink.events)
    del stream


def test_a_streamed_chain_that_ends_keeps_its_real_input(handler, events):
    stream = chain(model(reply("one two"))).stream(
        {"question": "owls?"}, config={"callbacks": [handler]}
    )
    assert "".join(stream)
    trace = events("$ai_trace")[0]["properties"]
    assert trace["$ai_input_state"] == {"question": "owls?"}


def test_runs_older_than_max_run_age_are_evicted(handler):
    handler.max_run_age = 0.0
    for _ in range(256):
        handler.on_chain_start(None, {}, run_id=uuid.uuid4())
    assert len(handler._runs) < 64


def test_default_limits_are_bounded(handler):
    assert 0 < handler.max_runs <= 100_000
    assert 0 < handler.max_run_age <= 24 * 3600


def test_copies_of_a_config_share_the_handler(handler):
    import copy

    config = {"callbacks": [handler]}
    assert copy.deepcopy(config)["callbacks"][0] is handler
    assert copy.copy(handler) is handler


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork")
def test_a_forked_child_starts_with_empty_run_state(handler, events):
    import os

    run_id = uuid.uuid4()
    handler.on_chain_start(None, {}, run_id=run_id)
    handler._runs._lock.acquire()  # held by "another thread" at fork time
    try:
        pid = os.fork()
        if pid == 0:  # the child: must not deadlock, and owns none of the parent's runs
            ok = len(handler._runs) == 0
            handler.on_chain_start(None, {}, run_id=uuid.uuid4())
            os._exit(0 if ok and len(handler._runs) == 1 else 1)
    finally:
        handler._runs._lock.release()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert len(handler._runs) == 1
    handler.on_chain_end({}, run_id=run_id)


def test_a_stream_the_caller_stopped_reading_is_sent_when_its_client_shuts_down(
    handler, client, sink
):
    stream = chain(model(reply("one two three four"))).stream(
        {"question": "q"}, config={"callbacks": [handler]}
    )
    next(stream)  # still held, never closed
    assert client.shutdown(timeout=5) is True

    assert len(handler._runs) == 0
    names = sorted(e["event"] for e in sink.events)
    assert names.count("$ai_trace") == 1 and names.count("$ai_generation") == 1
    (trace,) = sink.named("$ai_trace")
    assert "$ai_is_error" not in trace["properties"]  # not finished, not failed
    (generation,) = sink.named("$ai_generation")
    # The model's text streamed so far (the fake model streams word by word).
    (choice,) = generation["properties"]["$ai_output_choices"]
    assert choice["role"] == "assistant"
    assert choice["content"] and "one two three four".startswith(choice["content"])
    assert "$ai_stop_reason" not in generation["properties"]
    assert all(
        e["properties"]["$ai_trace_id"] == trace["properties"]["$ai_trace_id"] for e in sink.events
    )
    stream.close()  # sent already: nothing more
    assert len(sink.events) == len(names)


async def test_an_astream_langchain_leaves_open_is_sent_when_its_client_shuts_down(
    handler, client, sink
):
    # LangChain leaves the chat run of a closed `astream` open until its event loop closes.
    agen = chain(model(reply("one two three four five six"))).astream(
        {"question": "q"}, config={"callbacks": [handler]}
    )
    async for _ in agen:
        break
    await agen.aclose()
    assert client.shutdown(timeout=5) is True

    assert len(sink.named("$ai_trace")) == 1
    assert len(sink.named("$ai_generation")) == 1
    assert client.stats()["dropped"] == 0


def test_a_stream_the_caller_stopped_reading_is_sent_at_process_exit(tmp_path):
    import subprocess
    import sys
    import textwrap

    from posthog_llm import EventStore

    db = tmp_path / "events.db"
    code = f"""
        import posthog_llm
        from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
        from langchain_core.messages import AIMessage
        from langchain_core.runnables import RunnableLambda
        from posthog_llm.integrations.langchain import PostHogCallbackHandler

        handler = PostHogCallbackHandler(posthog_llm.Client(db={str(db)!r}))
        llm = GenericFakeChatModel(messages=iter([AIMessage(content="one two three four")]))
        runnable = (RunnableLambda(lambda x: x).with_config(run_name="prep") | llm).with_config(
            run_name="chain"
        )
        stream = runnable.stream("q", config={{"callbacks": [handler]}})
        next(stream)
        # no close, no flush, no shutdown: the process just ends
        """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    names = sorted(e["event"] for e in EventStore(str(db)).events())
    assert names == ["$ai_generation", "$ai_span", "$ai_trace"]
