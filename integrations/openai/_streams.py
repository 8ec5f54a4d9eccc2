"""Streams stay the SDK's own `Stream` / `AsyncStream` objects, with a tracked iterator inside.

Three small hooks on the SDK's object, no new class:

- its iterator is wrapped; the wrapper times only the SDK's own work (the time the caller's loop
  spends between chunks is not the provider's latency) and notes what each chunk adds;
- closing its HTTP response (`stream.close()`, a `with` block, the `.stream()` helpers' exit)
  ends the call;
- a finalizer ends the call when the stream is dropped unfinished.

The event is sent once, by whichever comes first: the end of the stream, a failure, a close.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from posthog_llm._emit import report_internal_error

if TYPE_CHECKING:
    import openai

    from ._track import Call

__all__ = ["track_stream", "track_async_stream"]

_perf = time.perf_counter


def track_stream(stream: openai.Stream[Any], call: Call) -> openai.Stream[Any]:
    """Make `stream` report to PostHog; returns the same object."""
    stream._iterator = _iterate(stream._iterator, call)
    response = stream.response
    close = response.close

    def close_and_finish() -> None:
        try:
            close()
        finally:
            if not call.reading:  # closed by the SDK itself at the end: the iterator finishes
                call.finish()

    response.close = close_and_finish  # type: ignore[method-assign]
    weakref.finalize(stream, call.finish).atexit = False
    return stream


def track_async_stream(stream: openai.AsyncStream[Any], call: Call) -> openai.AsyncStream[Any]:
    stream._iterator = _aiterate(stream._iterator, call)
    response = stream.response
    aclose = response.aclose

    async def aclose_and_finish() -> None:
        try:
            await aclose()
        finally:
            if not call.reading:
                call.finish()

    response.aclose = aclose_and_finish  # type: ignore[method-assign]
    weakref.finalize(stream, call.finish).atexit = False
    return stream


def _show(observe: Any, call: Call, chunk: Any) -> bool:
    try:
        return bool(observe(call, chunk))
    except Exception as exc:  # our bug must not cost the caller a chunk
        report_internal_error(exc)
        return True


def _iterate(inner: Iterator[Any], call: Call) -> Iterator[Any]:
    observe = call.kind.observe
    try:
        while True:
            call.reading = True
            started = _perf()
            try:
                chunk = next(inner)
            except StopIteration:
                call.busy += _perf() - started
                call.reading = False
                call.finish()
                return
            except BaseException as exc:
                call.busy += _perf() - started
                call.reading = False
                call.finish(exc)
                raise
            call.busy += _perf() - started
            call.reading = False
            if observe is None or _show(observe, call, chunk):
                yield chunk
    finally:
        call.reading = False
        call.finish()  # closed or dropped before the end: a no-op when already sent


async def _aiterate(inner: AsyncIterator[Any], call: Call) -> AsyncIterator[Any]:
    observe = call.kind.observe
    try:
        while True:
            call.reading = True
            started = _perf()
            try:
                chunk = await inner.__anext__()
            except StopAsyncIteration:
                call.busy += _perf() - started
                call.reading = False
                call.finish()
                return
            except BaseException as exc:
                call.busy += _perf() - started
                call.reading = False
                call.finish(exc)
                raise
            call.busy += _perf() - started
            call.reading = False
            if observe is None or _show(observe, call, chunk):
                yield chunk
    finally:
        call.reading = False
        call.finish()
