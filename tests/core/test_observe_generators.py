"""`@posthog_llm.observe` on generators and async generators keeps the generator protocol:
what the consumer sends, throws in or closes reaches the user's generator, and its return value
reaches `yield from`, exactly as without the decorator (the decorator only adds a span)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Generator
from typing import Any

import posthog_llm
import pytest
from posthog_llm import Client, InMemoryDestination
from posthog_llm._observation import current_observation


@pytest.fixture
def default(client: Client) -> Client:
    posthog_llm.set_client(client)
    return client


@pytest.fixture(params=["sending", "disabled"])
def mode(request: pytest.FixtureRequest, client: Client) -> str:
    """The protocol is the same whether spans are sent or the client is disabled."""
    if request.param == "sending":
        posthog_llm.set_client(client)
    else:
        posthog_llm.set_client(Client(destination=InMemoryDestination(), disabled=True))
    return str(request.param)


def the_span(client: Client, sink: InMemoryDestination, mode: str) -> dict[str, Any] | None:
    """The properties of the one span event sent (None when the client is disabled)."""
    assert client.flush(5)
    if mode == "disabled":
        assert sink.events == []
        return None
    [event] = sink.events
    return dict(event["properties"])


def sent_span(client: Client, sink: InMemoryDestination) -> dict[str, Any]:
    p = the_span(client, sink, "sending")
    assert p is not None
    return p


def trace_id_now() -> str | None:
    obs = current_observation()
    return obs.trace_id if obs is not None else None


# -- generators ----------------------------------------------------------------------------------


def test_send_reaches_the_generator_and_its_replies_come_back(
    client: Client, sink: InMemoryDestination, mode: str
) -> None:
    seen_in: list[str | None] = []

    @posthog_llm.observe(name="accumulate")
    def accumulate() -> Generator[int, int | None, int]:
        total = 0
        while True:
            seen_in.append(trace_id_now())
            x = yield total
            if x is None:
                return total
            total += x

    it = accumulate()
    assert next(it) == 0
    assert it.send(5) == 5
    assert it.send(7) == 12
    with pytest.raises(StopIteration) as stop:
        it.send(None)
    assert stop.value.value == 12
    p = the_span(client, sink, mode)
    if p is not None:
        assert p["$ai_output_state"] == [0, 5, 12]
        assert "$ai_is_error" not in p
        assert seen_in == [p["$ai_trace_id"]] * 3  # each step, sent to, runs inside the span
    assert trace_id_now() is None


def test_throw_is_handled_by_the_generator_as_without_the_decorator(
    client: Client, sink: InMemoryDestination, mode: str
) -> None:
    handled_in: list[str | None] = []

    @posthog_llm.observe(name="tolerant")
    def tolerant() -> Generator[str, None, None]:
        while True:
            try:
                yield "ok"
            except ValueError:
                handled_in.append(trace_id_now())
                yield "handled"

    it = tolerant()
    assert next(it) == "ok"
    assert it.throw(ValueError("x")) == "handled"
    assert next(it) == "ok"
    # One it does not handle ends it and comes back untouched, as without the decorator.
    error = KeyError("thrown in")
    with pytest.raises(KeyError) as raised:
        it.throw(error)
    assert raised.value is error
    with pytest.raises(StopIteration):
        next(it)
    p = the_span(client, sink, mode)
    if p is not None:
        assert p["$ai_output_state"] == "okhandledok"  # strings are joined
        assert p["$ai_is_error"] is True
        assert p["$ai_error"] == "KeyError: 'thrown in'"
        assert handled_in == [p["$ai_trace_id"]]


def test_yield_from_a_decorated_generator_gets_its_return_value(
    client: Client, sink: InMemoryDestination, mode: str
) -> None:
    @posthog_llm.observe(name="returns")
    def returns() -> Generator[int, None, str]:
        yield 1
        return "the result"

    def outer() -> Generator[int, None, str]:
        result = yield from returns()
        return f"outer got {result}"

    o = outer()
    assert next(o) == 1
    with pytest.raises(StopIteration) as stop:
        next(o)
    assert stop.value.value == "outer got the result"
    p = the_span(client, sink, mode)
    if p is not None:
        assert p["$ai_output_state"] == [1]
        assert "$ai_is_error" not in p


def test_closing_early_runs_the_cleanup_inside_the_span_and_is_not_an_error(
    default: Client, sink: InMemoryDestination
) -> None:
    cleaned_in: list[str | None] = []

    @posthog_llm.observe(name="numbers")
    def numbers() -> Generator[int, None, None]:
        try:
            yield from range(100)
        finally:
            cleaned_in.append(trace_id_now())

    it = numbers()
    assert next(it) == 0
    it.close()
    p = sent_span(default, sink)
    assert p["$ai_output_state"] == [0]
    assert "$ai_is_error" not in p
    assert cleaned_in == [p["$ai_trace_id"]]  # their cleanup runs inside their span


def test_a_cleanup_that_raises_on_close_raises_to_the_consumer_and_the_span_is_sent(
    default: Client, sink: InMemoryDestination
) -> None:
    error = RuntimeError("cleanup failed")

    @posthog_llm.observe(name="fragile")
    def fragile() -> Generator[int, None, None]:
        try:
            yield 1
            yield 2
        finally:
            raise error

    it = fragile()
    assert next(it) == 1
    with pytest.raises(RuntimeError) as raised:
        it.close()
    assert raised.value is error
    p = sent_span(default, sink)
    assert p["$ai_is_error"] is True
    assert p["$ai_error"] == "RuntimeError: cleanup failed"


# -- async generators ----------------------------------------------------------------------------


def test_asend_reaches_the_async_generator(
    client: Client, sink: InMemoryDestination, mode: str
) -> None:
    seen_in: list[str | None] = []

    @posthog_llm.observe(name="echo")
    async def echo() -> AsyncGenerator[Any, str]:
        x = yield 0
        seen_in.append(trace_id_now())
        yield ("got", x)
        y = yield "again"
        yield ("then", y)

    async def main() -> list[Any]:
        it = echo()
        got = [await it.__anext__(), await it.asend("hello"), await it.__anext__()]
        got.append(await it.asend("world"))
        with pytest.raises(StopAsyncIteration):
            await it.__anext__()
        return got

    assert asyncio.run(main()) == [0, ("got", "hello"), "again", ("then", "world")]
    p = the_span(client, sink, mode)
    if p is not None:
        assert p["$ai_output_state"] == [0, ["got", "hello"], "again", ["then", "world"]]
        assert "$ai_is_error" not in p
        assert seen_in == [p["$ai_trace_id"]]


def test_athrow_is_handled_by_the_async_generator_as_without_the_decorator(
    client: Client, sink: InMemoryDestination, mode: str
) -> None:
    handled: list[tuple[str | None, list[str]]] = []

    async def tolerant() -> AsyncGenerator[str, None]:
        while True:
            try:
                yield "ok"
            except ValueError as exc:
                frames = []
                tb = exc.__traceback__
                while tb is not None:
                    frames.append(tb.tb_frame.f_code.co_name)
                    tb = tb.tb_next
                handled.append((trace_id_now(), frames))
                yield "handled"

    error = KeyError("thrown in")

    async def main(gen: Any) -> list[Any]:
        it = gen()
        got = [await it.__anext__(), await it.athrow(ValueError("x")), await it.__anext__()]
        # One it does not handle ends it and comes back untouched.
        with pytest.raises(KeyError) as raised:
            await it.athrow(error)
        got.append(raised.value)
        with pytest.raises(StopAsyncIteration):
            await it.__anext__()
        await it.aclose()
        return got

    assert asyncio.run(main(tolerant)) == ["ok", "handled", "ok", error]
    [(_, plain_frames)] = handled
    handled.clear()
    decorated = posthog_llm.observe(name="tolerant")(tolerant)
    got = asyncio.run(main(decorated))
    assert got == ["ok", "handled", "ok", error] and got[-1] is error
    [(trace_id, frames)] = handled
    assert frames == plain_frames == ["tolerant"]  # it reaches theirs as the consumer threw it
    p = the_span(client, sink, mode)
    if p is not None:
        assert p["$ai_output_state"] == "okhandledok"
        assert p["$ai_is_error"] is True
        assert p["$ai_error"] == "KeyError: 'thrown in'"
        assert trace_id == p["$ai_trace_id"]


def test_aclose_runs_the_cleanup_inside_the_span_and_is_not_an_error(
    default: Client, sink: InMemoryDestination
) -> None:
    cleaned_in: list[str | None] = []

    @posthog_llm.observe(name="ticks")
    async def ticks() -> AsyncGenerator[int, None]:
        try:
            for i in range(100):
                yield i
        finally:
            await asyncio.sleep(0)  # an async cleanup
            cleaned_in.append(trace_id_now())

    async def main() -> None:
        it = ticks()
        assert await it.__anext__() == 0
        assert await it.__anext__() == 1
        await it.aclose()
        with pytest.raises(StopAsyncIteration):
            await it.__anext__()

    asyncio.run(main())
    p = sent_span(default, sink)
    assert p["$ai_output_state"] == [0, 1]
    assert "$ai_is_error" not in p
    assert cleaned_in == [p["$ai_trace_id"]]  # their cleanup runs inside their span


def test_an_async_cleanup_that_raises_on_aclose_raises_to_the_consumer_and_the_span_is_sent(
    default: Client, sink: InMemoryDestination
) -> None:
    error = RuntimeError("cleanup failed")

    @posthog_llm.observe(name="fragile")
    async def fragile() -> AsyncGenerator[int, None]:
        try:
            yield 1
            yield 2
        finally:
            raise error

    async def main() -> BaseException:
        it = fragile()
        assert await it.__anext__() == 1
        with pytest.raises(RuntimeError) as raised:
            await it.aclose()
        return raised.value

    assert asyncio.run(main()) is error
    p = sent_span(default, sink)
    assert p["$ai_is_error"] is True
    assert p["$ai_error"] == "RuntimeError: cleanup failed"


# -- spans the generator holds open across a yield -----------------------------------------------


def parents_by_name(client: Client, sink: InMemoryDestination) -> dict[str, str | None]:
    assert client.flush(5)
    ids = {}
    parents = {}
    for event in sink.events:
        p = event["properties"]
        name = p.get("$ai_span_name")
        ids[p.get("$ai_span_id") or p["$ai_trace_id"]] = name
        parents[name] = p.get("$ai_parent_id")
    return {name: ids.get(parent) for name, parent in parents.items()}


def test_a_span_held_open_across_a_yield_parents_what_runs_after_the_resume(default, sink):
    @posthog_llm.observe
    def numbers() -> Generator[int, None, None]:
        with posthog_llm.span("inner"):
            yield 1
            with posthog_llm.span("after-resume"):
                pass
            yield 2

    with posthog_llm.span("request"):
        for x in numbers():
            with posthog_llm.span(f"consumer-{x}"):
                pass

    parent = parents_by_name(default, sink)
    assert parent["after-resume"] == "inner"
    assert parent["inner"].endswith("numbers")
    assert parent["consumer-1"] == parent["consumer-2"] == "request"


def test_an_async_span_held_open_across_a_yield_parents_what_runs_after_the_resume(default, sink):
    @posthog_llm.observe
    async def numbers() -> AsyncGenerator[int, None]:
        async with posthog_llm.span("inner"):
            yield 1
            async with posthog_llm.span("after-resume"):
                pass
            yield 2

    async def main() -> None:
        async with posthog_llm.span("request"):
            async for x in numbers():
                async with posthog_llm.span(f"consumer-{x}"):
                    pass

    asyncio.run(main())
    parent = parents_by_name(default, sink)
    assert parent["after-resume"] == "inner"
    assert parent["inner"].endswith("numbers")
    assert parent["consumer-1"] == parent["consumer-2"] == "request"


def test_a_generator_the_caller_stopped_reading_is_sent_when_its_client_shuts_down(
    default: Client, sink: InMemoryDestination
) -> None:
    @posthog_llm.observe
    def words() -> Generator[str, None, None]:
        yield "one "
        yield "two"

    @posthog_llm.observe
    async def async_words() -> AsyncGenerator[str, None]:
        yield "three "
        yield "four"

    held = words()
    assert next(held) == "one "
    held_async = async_words()
    assert asyncio.run(held_async.__anext__()) == "three "  # type: ignore[arg-type]
    assert default.shutdown(timeout=5) is True

    traces = {e["properties"]["$ai_span_name"]: e["properties"] for e in sink.named("$ai_trace")}
    by_short = {name.rsplit(".", 1)[1]: props for name, props in traces.items()}
    assert set(by_short) == {"words", "async_words"}
    assert by_short["words"]["$ai_output_state"] == "one "
    assert by_short["async_words"]["$ai_output_state"] == "three "
    assert "$ai_is_error" not in by_short["words"]
    held.close()  # sent already: nothing more
    assert len(sink.named("$ai_trace")) == 2


def test_a_generator_the_caller_stopped_reading_is_sent_at_process_exit(tmp_path: Any) -> None:
    import subprocess
    import sys
    import textwrap

    from posthog_llm import EventStore

    db = tmp_path / "events.db"
    code = f"""
        import posthog_llm

        posthog_llm.set_client(posthog_llm.Client(db={str(db)!r}))

        @posthog_llm.observe
        def words():
            yield "one "
            yield "two"

        held = words()
        next(held)
        # no close, no flush, no shutdown: the process just ends
        """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    (event,) = EventStore(str(db)).events()
    assert event["event"] == "$ai_trace"
    assert event["properties"]["$ai_output_state"] == "one "


def test_an_async_generator_left_with_break_as_the_program_ends_is_not_an_error(
    default: Client, sink: InMemoryDestination
) -> None:
    # asyncio.run() closes the abandoned generator by cancelling its aclose(): a CancelledError
    # reaches it, though the consumer only stopped reading.
    @posthog_llm.observe
    async def tokens() -> AsyncGenerator[str, None]:
        for token in ["Hel", "lo", " wor", "ld"]:
            yield token

    async def main() -> None:
        async for token in tokens():
            if token == "lo":
                break

    asyncio.run(main())
    p = sent_span(default, sink)
    assert "$ai_is_error" not in p and "$ai_error" not in p
    assert p["$ai_output_state"] == "Hello"
