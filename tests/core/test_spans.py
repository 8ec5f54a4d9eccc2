"""`posthog_llm.span` and `@posthog_llm.observe` on the user's own code."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import posthog_llm
import pytest
from posthog_llm import Client, InMemoryDestination


@pytest.fixture
def default(client: Client) -> Client:
    posthog_llm.set_client(client)
    return client


def read(client: Client, sink: InMemoryDestination) -> list[dict[str, Any]]:
    assert client.flush(5)
    return sink.events


def props(events: list[dict[str, Any]], name: str) -> dict[str, Any]:
    found = [e["properties"] for e in events if e["properties"].get("$ai_span_name") == name]
    assert len(found) == 1, [e["properties"].get("$ai_span_name") for e in events]
    return found[0]


def test_a_span_with_nothing_open_is_a_trace(default: Client, sink: InMemoryDestination) -> None:
    with posthog_llm.span("answer", input={"q": "why?"}, properties={"team": "a"}) as s:
        s.set_output("because")
        s.set_properties({"step": 1})
        trace_id = s.trace_id
    [event] = read(default, sink)
    p = event["properties"]
    assert event["event"] == "$ai_trace"
    assert p["$ai_trace_id"] == trace_id
    assert p["$ai_span_name"] == "answer"
    assert p["$ai_input_state"] == {"q": "why?"}
    assert p["$ai_output_state"] == "because"
    assert p["team"] == "a" and p["step"] == 1
    assert p["$ai_latency"] >= 0
    assert "$ai_parent_id" not in p
    assert event["distinct_id"] == trace_id
    assert p["$process_person_profile"] is False


def test_nested_spans_are_spans_of_the_outer_trace(
    default: Client, sink: InMemoryDestination
) -> None:
    with posthog_llm.span("outer") as outer:
        with posthog_llm.span("middle") as middle:
            with posthog_llm.span("inner"):
                pass
    events = read(default, sink)
    assert [e["event"] for e in events] == ["$ai_span", "$ai_span", "$ai_trace"]
    inner, mid = props(events, "inner"), props(events, "middle")
    assert mid["$ai_parent_id"] == outer.trace_id
    assert inner["$ai_parent_id"] == middle.span_id == mid["$ai_span_id"]
    assert {e["properties"]["$ai_trace_id"] for e in events} == {outer.trace_id}


def test_work_inside_a_span_given_a_client_sends_through_that_client(
    default: Client, sink: InMemoryDestination
) -> None:
    # Spans and observed functions that name no client went to the default client: the
    # request's trace root reached its client, its children another destination.
    request_sink = InMemoryDestination()
    request_client = Client(destination=request_sink, flush_interval=0.05)

    @posthog_llm.observe
    def retrieve(query: str) -> list[str]:
        with posthog_llm.span("rank"):
            return [query]

    try:
        with posthog_llm.span("handle_request", client=request_client) as request:
            with posthog_llm.span("plan"):
                retrieve("owls")
        with posthog_llm.span("elsewhere"):
            pass
        sent = read(request_client, request_sink)
        names = sorted(e["properties"]["$ai_span_name"].rsplit(".", 1)[-1] for e in sent)
        assert names == ["handle_request", "plan", "rank", "retrieve"]
        assert {e["properties"]["$ai_trace_id"] for e in sent} == {request.trace_id}
        # Outside it, the default client as before.
        assert [e["properties"]["$ai_span_name"] for e in read(default, sink)] == ["elsewhere"]
    finally:
        request_client.shutdown(5)


def test_feedback_follows_the_span_client_and_not_once_the_span_has_ended(
    default: Client, sink: InMemoryDestination
) -> None:
    import contextvars

    request_sink = InMemoryDestination()
    request_client = Client(destination=request_sink, flush_interval=0.05)
    try:
        with posthog_llm.span("request", client=request_client) as request:
            posthog_llm.capture_metric(request.trace_id, "helpfulness", 4)
            later = contextvars.copy_context()  # work that outlives the span (a task)
        # Its context still names the ended span: it is not inside it any more.
        later.run(posthog_llm.capture_feedback, request.trace_id, "thanks")
        sent = read(request_client, request_sink)
        assert sorted(e["event"] for e in sent) == ["$ai_metric", "$ai_trace"]
        assert [e["event"] for e in read(default, sink)] == ["$ai_feedback"]
    finally:
        request_client.shutdown(5)


def test_an_exception_marks_the_span_and_propagates_untouched(
    default: Client, sink: InMemoryDestination
) -> None:
    error = KeyError("missing sk-abcdefghijklmnopqrstuvwx")
    with pytest.raises(KeyError) as raised:
        with posthog_llm.span("lookup"):
            raise error
    assert raised.value is error
    [event] = read(default, sink)
    p = event["properties"]
    assert p["$ai_is_error"] is True
    assert p["$ai_error"].startswith("KeyError")
    assert "sk-abcdefghijklmnopqrstuvwx" not in p["$ai_error"]


def test_what_joined_work_reports_reaches_the_trace_root_only(
    default: Client, sink: InMemoryDestination
) -> None:
    from posthog_llm.instrumentation import current_observation, report_to_trace

    with posthog_llm.span("request"):
        with posthog_llm.span("step"):
            joined = current_observation()
            assert joined is not None
            report_to_trace(joined, error="ToolError: it broke", session_id="chat-1")
            report_to_trace(joined, error="Later: ignored", session_id="chat-2")  # first wins
    with posthog_llm.context(session_id="mine"):
        with pytest.raises(KeyError):
            with posthog_llm.span("own"):
                own = current_observation()
                assert own is not None
                report_to_trace(own, error="ToolError: it broke", session_id="theirs")
                raise KeyError("own failure")
    events = read(default, sink)
    request, step, mine = props(events, "request"), props(events, "step"), props(events, "own")
    assert (request["$ai_is_error"], request["$ai_error"]) == (True, "ToolError: it broke")
    assert request["$ai_session_id"] == "chat-1"
    assert "$ai_is_error" not in step and "$ai_session_id" not in step  # the trace only
    # The span's own exception and the user's own session win over what was reported.
    assert mine["$ai_error"].startswith("KeyError") and mine["$ai_session_id"] == "mine"


def test_spans_follow_async_tasks(default: Client, sink: InMemoryDestination) -> None:
    async def child(n: int) -> None:
        async with posthog_llm.span(f"child-{n}"):
            await asyncio.sleep(0)

    async def main() -> str:
        async with posthog_llm.span("root") as root:
            await asyncio.gather(child(1), child(2))
        assert root.trace_id is not None
        return root.trace_id

    trace_id = asyncio.run(main())
    events = read(default, sink)
    assert len(events) == 3
    for n in (1, 2):
        assert props(events, f"child-{n}")["$ai_parent_id"] == trace_id


def test_span_rejects_bad_arguments_at_once() -> None:
    with pytest.raises(ValueError):
        posthog_llm.span("")
    with pytest.raises(TypeError):
        posthog_llm.span("x", properties=["not", "a", "mapping"])  # type: ignore[arg-type]


def test_privacy_mode_keeps_the_error_type_only(default: Client, sink: InMemoryDestination) -> None:
    with posthog_llm.context(privacy_mode=True):
        with pytest.raises(ValueError):
            with posthog_llm.span("secretive", input="my prompt"):
                raise ValueError("the prompt said: my prompt")
    [event] = read(default, sink)
    p = event["properties"]
    assert p["$ai_error"] == "ValueError"
    assert "$ai_input_state" not in p


# -- @observe --------------------------------------------------------------------------------------


def test_observe_a_function(default: Client, sink: InMemoryDestination) -> None:
    @posthog_llm.observe
    def add(a: int, b: int = 2) -> int:
        return a + b

    assert add(1, b=5) == 6
    [event] = read(default, sink)
    p = event["properties"]
    assert event["event"] == "$ai_trace"
    assert p["$ai_span_name"].endswith("add")
    assert p["$ai_input_state"] == {"a": 1, "b": 5}
    assert p["$ai_output_state"] == 6


def test_observe_records_parameters_left_at_their_defaults(
    default: Client, sink: InMemoryDestination
) -> None:
    @posthog_llm.observe(name="search")
    def search(query: str, *extra: str, limit: int = 3, **options: object) -> int:
        return limit

    assert search("cats") == 3
    assert search("dogs", "more", limit=5, fuzzy=True) == 5
    first, second = read(default, sink)
    # Empty `*extra` and `**options` say nothing; a default the function ran with does.
    assert first["properties"]["$ai_input_state"] == {"query": "cats", "limit": 3}
    assert second["properties"]["$ai_input_state"] == {
        "query": "dogs",
        "extra": ["more"],
        "limit": 5,
        "options": {"fuzzy": True},
    }


def test_observe_with_options_and_methods(default: Client, sink: InMemoryDestination) -> None:
    class Bot:
        @posthog_llm.observe(name="reply", capture_output=False)
        def reply(self, text: str) -> str:
            return text.upper()

        @posthog_llm.observe(capture_input=False)
        def plan(self, text: str) -> list[str]:
            return [self.reply(text)]

    assert Bot().plan("hi") == ["HI"]
    events = read(default, sink)
    reply = props(events, "reply")
    assert reply["$ai_input_state"] == {"text": "hi"}  # no `self`
    assert "$ai_output_state" not in reply
    plan = [e["properties"] for e in events if e["event"] == "$ai_trace"][0]
    assert "$ai_input_state" not in plan
    assert plan["$ai_output_state"] == ["HI"]
    assert reply["$ai_parent_id"] == plan["$ai_trace_id"]


def test_observe_async_functions(default: Client, sink: InMemoryDestination) -> None:
    @posthog_llm.observe(name="fetch")
    async def fetch(key: str) -> str:
        await asyncio.sleep(0)
        return key * 2

    @posthog_llm.observe(name="main")
    async def main() -> list[str]:
        return list(await asyncio.gather(fetch("a"), fetch("b")))

    assert asyncio.run(main()) == ["aa", "bb"]
    events = read(default, sink)
    fetches = [e["properties"] for e in events if e["properties"]["$ai_span_name"] == "fetch"]
    root = props(events, "main")
    assert sorted(f["$ai_output_state"] for f in fetches) == ["aa", "bb"]
    assert all(f["$ai_parent_id"] == root["$ai_trace_id"] for f in fetches)


def test_observe_generators_collects_what_was_yielded(
    default: Client, sink: InMemoryDestination
) -> None:
    @posthog_llm.observe(name="inner")
    def inner() -> str:
        return "x"

    @posthog_llm.observe(name="tokens")
    def tokens(n: int) -> Iterator[str]:
        for i in range(n):
            inner()  # runs inside the generator's span
            yield str(i)

    consumer_spans = []
    for _ in tokens(3):
        with posthog_llm.span("consumer") as c:  # the consumer is not inside the generator
            consumer_spans.append(c.trace_id)
    events = read(default, sink)
    gen = props(events, "tokens")
    assert gen["$ai_output_state"] == "012"
    assert gen["$ai_input_state"] == {"n": 3}
    inners = [e["properties"] for e in events if e["properties"]["$ai_span_name"] == "inner"]
    assert len(inners) == 3
    assert all(i["$ai_trace_id"] == gen["$ai_trace_id"] for i in inners)
    assert gen["$ai_trace_id"] not in consumer_spans


def test_observe_generator_closed_early_is_not_an_error(
    default: Client, sink: InMemoryDestination
) -> None:
    @posthog_llm.observe
    def numbers() -> Iterator[int]:
        yield from range(100)

    gen = numbers()
    assert next(gen) == 0
    gen.close()
    [event] = read(default, sink)
    assert event["properties"]["$ai_output_state"] == [0]
    assert "$ai_is_error" not in event["properties"]


def test_a_successful_exit_is_not_an_error_and_a_failing_one_is(
    default: Client, sink: InMemoryDestination
) -> None:
    @posthog_llm.observe
    def main(code: int | None) -> None:
        sys.exit(code)

    for code in (0, None, 3):
        with pytest.raises(SystemExit):
            main(code)
    ok, no_code, failed = (e["properties"] for e in read(default, sink))
    assert "$ai_is_error" not in ok and "$ai_is_error" not in no_code
    assert failed["$ai_is_error"] is True
    assert failed["$ai_error"].startswith("SystemExit")


def test_observe_async_generators_and_errors(default: Client, sink: InMemoryDestination) -> None:
    @posthog_llm.observe(name="stream")
    async def stream() -> AsyncIterator[str]:
        yield "a"
        yield "b"
        raise RuntimeError("stream broke")

    async def main() -> list[str]:
        got = []
        with pytest.raises(RuntimeError, match="stream broke"):
            async for item in stream():
                got.append(item)
        return got

    assert asyncio.run(main()) == ["a", "b"]
    [event] = read(default, sink)
    p = event["properties"]
    assert p["$ai_output_state"] == "ab"
    assert p["$ai_is_error"] is True
    assert p["$ai_error"] == "RuntimeError: stream broke"


def test_observe_keeps_the_function_and_its_exception(default: Client) -> None:
    @posthog_llm.observe
    def fails() -> None:
        """Docs."""
        raise ZeroDivisionError("no")

    assert fails.__doc__ == "Docs." and fails.__name__ == "fails"
    with pytest.raises(ZeroDivisionError):
        fails()


def test_a_generator_output_is_capped(default: Client, sink: InMemoryDestination) -> None:
    from posthog_llm import _spans

    @posthog_llm.observe
    def many() -> Iterator[int]:
        yield from range(_spans.MAX_COLLECTED_ITEMS + 5)

    assert sum(1 for _ in many()) == _spans.MAX_COLLECTED_ITEMS + 5
    [event] = read(default, sink)
    output = event["properties"]["$ai_output_state"]
    assert len(output) == _spans.MAX_COLLECTED_ITEMS + 1
    assert output[-1] == "... [5 more items not kept]"


def test_a_generators_output_is_bounded_by_size_and_copied_as_yielded(
    default: Client, sink: InMemoryDestination
) -> None:
    import gc
    import weakref

    from posthog_llm import _spans

    class Chunk(bytearray):  # a bytes-like chunk the test can watch being let go
        pass

    alive: list[weakref.ref[Chunk]] = []

    @posthog_llm.observe(name="audio")
    def audio() -> Iterator[Chunk]:
        for _ in range(5):
            chunk = Chunk(b"\x00" * (_spans.MAX_COLLECTED_CHARS // 2 + 1))
            alive.append(weakref.ref(chunk))
            yield chunk

    @posthog_llm.observe(name="one_big")
    def one_big() -> Iterator[str]:
        yield "x" * (_spans.MAX_COLLECTED_CHARS * 3)

    @posthog_llm.observe(name="progress")
    def progress() -> Iterator[dict[str, str]]:
        state = {"text": ""}
        for token in "abc":
            state["text"] += token
            yield state

    assert sum(len(chunk) for chunk in audio()) == 5 * (_spans.MAX_COLLECTED_CHARS // 2 + 1)
    gc.collect()
    # The consumer let each chunk go: the span holds none of them (copies within the bound).
    assert [ref() for ref in alive] == [None] * 5
    assert list(one_big()) and [dict(s) for s in progress()]
    events = read(default, sink)
    chunks = props(events, "audio")["$ai_output_state"]
    assert len(chunks) == 5
    assert chunks[1:] == [f"[{_spans.MAX_COLLECTED_CHARS // 2 + 1} bytes]"] * 4
    text = props(events, "one_big")["$ai_output_state"]
    assert len(text) < _spans.MAX_COLLECTED_CHARS + 100 and text.startswith("xxx")
    assert props(events, "progress")["$ai_output_state"] == [
        {"text": "a"},
        {"text": "ab"},
        {"text": "abc"},
    ]


def test_a_generator_yielding_its_growing_state_is_copied_only_up_to_the_bound(
    default: Client, sink: InMemoryDestination
) -> None:
    # An agent loop that yields its whole state each step: copying every state whole would cost
    # the caller the square of the steps; the states are counted by their real size instead.
    from posthog_llm import _spans

    @posthog_llm.observe(name="agent")
    def agent() -> Iterator[dict[str, Any]]:
        state: dict[str, Any] = {"messages": []}
        for step in range(3_000):
            state["messages"].append({"role": "assistant", "content": f"step {step} " * 5})
            yield state

    assert sum(1 for _ in agent()) == 3_000
    [event] = read(default, sink)
    output = event["properties"]["$ai_output_state"]
    assert 10 < len(output) < 500, len(output)
    assert output[-1].startswith("... [") and output[-1].endswith(" more items not kept]")
    # Each state as it was when yielded, up to the bound.
    assert [len(state["messages"]) for state in output[:3]] == [1, 2, 3]
    assert len(str(output)) < 3 * _spans.MAX_COLLECTED_CHARS


def test_an_int_too_long_for_text_loses_no_event(
    default: Client, sink: InMemoryDestination
) -> None:
    # An int beyond Python's int-to-str digit limit made building the event raise on the
    # worker: the span, the root (so the whole trace) and the captured event were skipped.
    huge = 10**5000
    marker = "[int of 5001 digits: 10000000…00000000]"

    @posthog_llm.observe
    def step(n: int) -> int:
        return 1

    with posthog_llm.span("request") as root:
        with posthog_llm.span("compute") as compute:
            compute.set_output(huge)
        step(huge)
        root.set_output({"n": huge, "ok": True})
    default.capture("$ai_metric", properties={"$ai_trace_id": "t", "value": huge, "small": 7})
    events = read(default, sink)
    assert props(events, "compute")["$ai_output_state"] == marker
    assert props(events, step.__qualname__)["$ai_input_state"] == {"n": marker}
    assert props(events, "request")["$ai_output_state"] == {"n": marker, "ok": True}
    [metric] = sink.named("$ai_metric")
    assert metric["properties"]["value"] == marker and metric["properties"]["small"] == 7
    assert default.stats()["failed"] == 0


def test_inputs_and_outputs_are_reported_as_they_were_when_recorded(
    default: Client, sink: InMemoryDestination
) -> None:
    # A chat loop appends to one history list: each turn's event shows the history it got.
    @posthog_llm.observe()
    def respond(messages: list[dict[str, str]]) -> dict[str, Any]:
        answer = {"role": "assistant", "content": f"answer {len(messages)}"}
        return {"reply": answer, "seen": messages}

    history: list[dict[str, str]] = []
    for turn in range(3):
        history.append({"role": "user", "content": f"question {turn}"})
        history.append(respond(history)["reply"])
    with posthog_llm.span("step", input={"messages": history}) as s:
        s.set_output({"items": history})
    history[0]["content"] = "rewritten later"
    history.append({"role": "user", "content": "appended later"})
    events = read(default, sink)
    turns = [e["properties"] for e in events if e["properties"]["$ai_span_name"] != "step"]
    assert [len(p["$ai_input_state"]["messages"]) for p in turns] == [1, 3, 5]
    assert [len(p["$ai_output_state"]["seen"]) for p in turns] == [1, 3, 5]
    step = props(events, "step")
    assert len(step["$ai_input_state"]["messages"]) == 6
    assert step["$ai_input_state"]["messages"][0]["content"] == "question 0"
    assert len(step["$ai_output_state"]["items"]) == 6


def test_one_span_object_used_twice_is_two_spans_and_leaves_nothing_open(
    default: Client, sink: InMemoryDestination
) -> None:
    from posthog_llm.instrumentation import current_observation

    step = posthog_llm.span("step", input={"n": 1})
    for turn in range(2):
        with step as s:
            s.set_output(turn)
            with step:  # entered again while open: still the one span
                pass
    assert current_observation() is None
    with posthog_llm.span("unrelated"):
        pass
    events = read(default, sink)
    steps = [e["properties"] for e in events if e["properties"]["$ai_span_name"] == "step"]
    assert [p["$ai_output_state"] for p in steps] == [0, 1]
    assert len({p["$ai_trace_id"] for p in steps}) == 2  # each its own trace
    unrelated = props(events, "unrelated")
    assert "$ai_parent_id" not in unrelated  # a trace of its own, not under a stale span


def test_observe_checks_its_arguments_when_it_decorates() -> None:
    # A wrong client found at the first call would break every call of the user's function.
    with pytest.raises(TypeError, match="client must be"):
        posthog_llm.observe(client=123)(lambda: None)
    with pytest.raises(TypeError, match="capture_input must be a bool"):
        posthog_llm.observe(capture_input="no")(lambda: None)  # type: ignore[arg-type]


def test_one_span_object_entered_on_two_tasks_at_once_is_a_span_in_each(
    default: Client, sink: InMemoryDestination
) -> None:
    from posthog_llm.instrumentation import current_observation

    shared = posthog_llm.span("shared")
    left_open: list[object] = []

    async def job(name: str, delay: float, hold: float) -> None:
        await asyncio.sleep(delay)
        async with shared as s:
            default.capture("$ai_generation", properties={"$ai_model": name})
            s.set_output(name)
            await asyncio.sleep(hold)
        left_open.append(current_observation())
        default.capture("$ai_generation", properties={"$ai_model": f"{name} after"})

    async def main() -> None:
        await asyncio.gather(job("A", 0, 0.02), job("B", 0.005, 0.04))

    asyncio.run(main())
    events = read(default, sink)
    traces = {e["properties"]["$ai_output_state"]: e for e in events if e["event"] == "$ai_trace"}
    generations = {
        e["properties"]["$ai_model"]: e["properties"]
        for e in events
        if e["event"] == "$ai_generation"
    }
    for name in ("A", "B"):  # each block's work in its own span, nothing after it
        assert generations[name]["$ai_trace_id"] == traces[name]["properties"]["$ai_trace_id"]
        assert "$ai_trace_id" not in generations[f"{name} after"]
    assert left_open == [None, None]


def test_a_span_left_open_in_a_generator_ends_with_the_request_around_it(
    default: Client, sink: InMemoryDestination
) -> None:
    def stream_answer() -> Iterator[str]:
        with posthog_llm.span("stream_answer"):  # the user's span inside their own generator
            yield "part 1"
            yield "part 2"

    with posthog_llm.span("request 1") as first:
        held = stream_answer()
        assert next(held) == "part 1"  # read once, kept (a cache, an abandoned response)
    assert posthog_llm.instrumentation.current_observation() is None
    with posthog_llm.span("request 2") as second:
        pass
    assert second.trace_id != first.trace_id
    held.close()  # the generator's span ends now, still in request 1's trace
    events = read(default, sink)
    assert props(events, "request 2")["$ai_trace_id"] == second.trace_id
    assert [e["event"] for e in events if e["properties"]["$ai_span_name"] == "request 2"] == [
        "$ai_trace"
    ]
    assert props(events, "stream_answer")["$ai_trace_id"] == first.trace_id


def test_an_async_generator_left_open_does_not_pull_later_requests_into_its_trace(
    default: Client, sink: InMemoryDestination
) -> None:
    async def chunks() -> AsyncIterator[int]:
        async with posthog_llm.span("inner"):
            yield 1
            yield 2

    async def main() -> tuple[str, str]:
        async with posthog_llm.span("request 1") as first:
            async for _ in chunks():
                break  # left unfinished: closed only when the loop shuts down
        async with posthog_llm.span("request 2") as second:
            pass
        return first.trace_id, second.trace_id

    first_id, second_id = asyncio.run(main())
    assert first_id != second_id
    events = read(default, sink)
    assert props(events, "request 2")["$ai_trace_id"] == second_id
    assert props(events, "inner")["$ai_trace_id"] == first_id


def test_a_snapshot_shares_what_is_too_large_to_copy_cheaply() -> None:
    # The caller pays for at most ~20,000 containers and items: a million-row argument of an
    # observed function is shared, not copied item by item on every call.
    from posthog_llm._snapshot import snapshot

    rows = list(range(1_000_000))
    assert snapshot(rows) is rows
    held = {"rows": rows, "messages": [{"role": "user", "content": "hi"}]}
    kept = snapshot(held)
    assert kept["rows"] is rows  # shared
    assert kept["messages"] == held["messages"] and kept["messages"] is not held["messages"]


def test_a_snapshot_copies_dict_and_list_subclasses_and_shares_what_it_cannot_read() -> None:
    # A framework's dict subclass (LangChain's `AddableDict`) changes after it is handed over as
    # a plain dict does; one that cannot be read, or a proxy whose `__class__` raises, is kept
    # as it is (the serializer writes what it can of it), never an error for the caller.
    from collections import OrderedDict

    from posthog_llm._snapshot import snapshot

    class Trail(list[str]):
        pass

    class Unreadable(dict[str, int]):
        def values(self) -> Any:
            raise RuntimeError("cannot be read")

        def items(self) -> Any:
            raise RuntimeError("cannot be read")

    class Proxy:
        @property  # type: ignore[misc]
        def __class__(self) -> Any:
            raise RuntimeError("working outside of request context")

    trail = Trail(["a"])
    state: OrderedDict[str, Any] = OrderedDict(trail=trail, tags=["x"])
    unreadable, proxy = Unreadable(a=1), Proxy()
    kept = snapshot({"state": state, "unreadable": unreadable, "proxy": proxy})
    trail.append("later")
    state["late"] = 1
    assert kept["state"] == {"trail": ["a"], "tags": ["x"]}
    assert type(kept["state"]) is dict and type(kept["state"]["trail"]) is list
    assert kept["unreadable"] is unreadable and kept["proxy"] is proxy


def test_observe_above_staticmethod_and_classmethod_keeps_how_calls_bind(
    default: Client, sink: InMemoryDestination
) -> None:
    class Maths:
        base = 10

        @posthog_llm.observe
        @staticmethod
        def double(x: int) -> int:
            return 2 * x

        @posthog_llm.observe
        @classmethod
        def plus_base(cls, x: int) -> int:
            return cls.base + x

    assert Maths.double(7) == 14 and Maths().double(7) == 14
    assert Maths.plus_base(1) == 11 and Maths().plus_base(2) == 12
    events = read(default, sink)
    assert [e["properties"]["$ai_input_state"] for e in events] == [
        {"x": 7},
        {"x": 7},
        {"x": 1},
        {"x": 2},
    ]
    assert not any(e["properties"].get("$ai_is_error") for e in events)


def test_observe_on_an_object_with_async_call_awaits_it_inside_the_span(
    default: Client, sink: InMemoryDestination
) -> None:
    class Agent:
        async def __call__(self, question: str) -> str:
            with posthog_llm.span("inner step"):
                await asyncio.sleep(0.01)
            return f"answer to {question}"

    agent = posthog_llm.observe(Agent(), name="agent")
    assert asyncio.run(agent("q")) == "answer to q"
    events = read(default, sink)
    root = props(events, "agent")
    assert root["$ai_output_state"] == "answer to q"
    assert props(events, "inner step")["$ai_trace_id"] == root["$ai_trace_id"]
    assert root["$ai_latency"] >= 0.01


@pytest.mark.parametrize("kind", ["async_mock", "partial_of_callable"])
def test_observe_awaits_what_is_async_whatever_wraps_it(
    default: Client, sink: InMemoryDestination, kind: str
) -> None:
    import functools
    from unittest.mock import AsyncMock

    class Adder:
        async def __call__(self, a: int, b: int) -> int:
            return a + b

    target: Any = (
        AsyncMock(return_value=6) if kind == "async_mock" else functools.partial(Adder(), 3)
    )
    observed = posthog_llm.observe(target, name="work")
    assert asyncio.run(observed(3)) == 6
    assert props(read(default, sink), "work")["$ai_output_state"] == 6


def test_observe_decorates_a_mock_made_with_a_spec(
    default: Client, sink: InMemoryDestination
) -> None:
    # Such a mock answers `__qualname__` with another mock: functools.wraps raised at
    # decoration, into the user's test.
    from unittest.mock import MagicMock

    def greet(name: str) -> str:
        return f"hi {name}"

    fake = MagicMock(spec=greet, return_value="hi mock")
    observed = posthog_llm.observe(name="greet")(fake)
    assert observed("x") == "hi mock"
    assert observed.__wrapped__ is fake
    assert props(read(default, sink), "greet")["$ai_output_state"] == "hi mock"


def test_work_cancelled_by_a_timeout_is_not_an_error_on_any_path(
    default: Client, sink: InMemoryDestination
) -> None:
    # The core's one rule (as for streams and framework runs): a cancelled task is the caller
    # stopping the work, not the work failing, for spans, `@observe` and model calls alike.
    from posthog_llm.integrations.openai import AsyncOpenAI
    from posthog_llm.local.openai_standin import OpenAIStandIn

    standin = OpenAIStandIn(latency=5.0).start()
    openai = AsyncOpenAI(api_key="sk-test", base_url=standin.base_url, max_retries=0)

    @posthog_llm.observe(name="step")
    async def step() -> None:
        await openai.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )

    async def request() -> None:
        async with posthog_llm.span("request"):
            await step()

    async def main() -> None:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(request(), 0.3)
        await openai.close()

    try:
        asyncio.run(main())
    finally:
        standin.close()
    sent = read(default, sink)
    assert sorted(e["event"] for e in sent) == ["$ai_generation", "$ai_span", "$ai_trace"]
    for event in sent:
        assert "$ai_is_error" not in event["properties"], event
        assert "$ai_error" not in event["properties"], event
        # No answer came: no HTTP status (200 would read as an empty successful answer).
        assert "$ai_http_status" not in event["properties"], event
