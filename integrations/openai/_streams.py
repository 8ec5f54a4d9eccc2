"""Streams stay the SDK's own `Stream` / `AsyncStream` objects, with a tracked iterator inside.

The SDK's stream is given a subclass of its own class (same object, same attributes, `response`,
context manager and all) whose iterator times only the SDK's own work: the time the caller's
loop spends between chunks is not the provider's latency. The event is sent once, when the
stream is exhausted, fails, is closed, or is dropped unfinished.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import openai
from posthog_llm._emit import report_internal_error

if TYPE_CHECKING:
    from ._track import Call

__all__ = ["track_stream", "track_async_stream"]

_perf = time.perf_counter


def _finish_when_dropped(self: Any) -> None:
    call = self.__dict__.get("_posthog_call")
    if call is not None and not call.done:
        try:
            call.finish()
        except Exception:
            pass


_tracked_classes: dict[type, type] = {}


def _tracked_class(cls: type) -> type:
    """A subclass of the SDK's stream class that sends the event on close() and when dropped.

    A plain subclass (no extra base, no new slots) so the SDK's object can take it as its class:
    isinstance checks, attributes and every other method stay the SDK's.
    """
    tracked = _tracked_classes.get(cls)
    if tracked is not None:
        return tracked
    base_close = cls.close  # type: ignore[attr-defined]
    if issubclass(cls, openai.AsyncStream):

        async def close(self: Any) -> None:
            try:
                await base_close(self)
            finally:
                self._posthog_call.finish()

    else:

        def close(self: Any) -> None:  # type: ignore[misc]
            try:
                base_close(self)
            finally:
                self._posthog_call.finish()

    close.__doc__ = base_close.__doc__
    namespace = {
        "close": close,
        "__del__": _finish_when_dropped,
        "__module__": cls.__module__,
        "__qualname__": cls.__qualname__,
        "__doc__": cls.__doc__,
    }
    tracked = _tracked_classes[cls] = type(cls.__name__, (cls,), namespace)
    return tracked


def _show(observe: Any, call: Call, chunk: Any) -> bool:
    try:
        return bool(observe(call, chunk))
    except Exception as exc:  # our bug must not cost the caller a chunk
        report_internal_error(exc)
        return True


def track_stream(stream: openai.Stream[Any], call: Call) -> openai.Stream[Any]:
    """Make `stream` report to PostHog; returns the same object."""
    inner = stream._iterator
    stream._iterator = _iterate(inner, call)
    stream._posthog_call = call  # type: ignore[attr-defined]
    stream.__class__ = _tracked_class(type(stream))
    return stream


def track_async_stream(stream: openai.AsyncStream[Any], call: Call) -> openai.AsyncStream[Any]:
    inner = stream._iterator
    stream._iterator = _aiterate(inner, call)
    stream._posthog_call = call  # type: ignore[attr-defined]
    stream.__class__ = _tracked_class(type(stream))
    return stream


def _iterate(inner: Iterator[Any], call: Call) -> Iterator[Any]:
    observe = call.kind.observe
    try:
        while True:
            started = _perf()
            try:
                chunk = next(inner)
            except StopIteration:
                call.busy += _perf() - started
                call.finish()
                return
            except BaseException as exc:
                call.busy += _perf() - started
                call.finish(exc)
                raise
            call.busy += _perf() - started
            if observe is None or _show(observe, call, chunk):
                yield chunk
    finally:
        call.finish()  # closed or dropped before the end: a no-op when already sent


async def _aiterate(inner: AsyncIterator[Any], call: Call) -> AsyncIterator[Any]:
    observe = call.kind.observe
    try:
        while True:
            started = _perf()
            try:
                chunk = await inner.__anext__()
            except StopAsyncIteration:
                call.busy += _perf() - started
                call.finish()
                return
            except BaseException as exc:
                call.busy += _perf() - started
                call.finish(exc)
                raise
            call.busy += _perf() - started
            if observe is None or _show(observe, call, chunk):
                yield chunk
    finally:
        call.finish()
