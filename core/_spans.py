"""Spans for the user's own code: `posthog_llm.span(...)` and `@posthog_llm.observe`.

A span with nothing open around it starts a trace and is sent as `$ai_trace`; inside another
span (ours, or any integration's step) it is an `$ai_span` of that trace. While it is open, every
integration's events made inside it join its trace with it as parent.
"""

from __future__ import annotations

import functools
import inspect
import sys
import time
import uuid
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Mapping
from contextvars import ContextVar
from types import TracebackType
from typing import Any, TypeVar, overload

from ._client import on_any_shutdown, sends_to, settled_list
from ._context import Scope
from ._emit import Emitter, capture_internal_exceptions, check_client
from ._errors import stopped_by_caller
from ._events import SPAN, TRACE, span_properties, trace_properties
from ._observation import (
    SPAN_KIND,
    TRACE_KIND,
    Observation,
    StepPlace,
    close_observation,
    current_observation,
    open_observation,
)
from ._serialize import TRUNCATION_MARKER
from ._snapshot import bounded_weight, snapshot

__all__ = ["Span", "span", "observe"]

_F = TypeVar("_F", bound=Callable[..., Any])
_W = TypeVar("_W", bound=Callable[..., Any])
_perf = time.perf_counter
_default_emitter = Emitter(None)
# Spans entered in this context while open in another (`Span.__enter__`): id(span) -> its twin.
_twins: ContextVar[dict[int, Span] | None] = ContextVar("posthog_llm_span_twins", default=None)


def _open_here(obs: Observation) -> bool:
    """Whether `obs` is open in this context: the current observation or one it is inside."""
    current = current_observation()
    while current is not None:
        if current is obs:
            return True
        current = current.parent
    return False


# A generator's output is what it yielded, kept up to about this many characters.
MAX_COLLECTED_CHARS = 1_000_000
MAX_COLLECTED_ITEMS = 10_000


class Span:
    """One span of the user's code. Use it through `posthog_llm.span(...)`.

    >>> import posthog_llm
    >>> with posthog_llm.span("retrieve", input={"q": "owls"}) as s:
    ...     s.set_output(["doc-1", "doc-2"])
    """

    __slots__ = (
        "name",
        "_input",
        "_output",
        "_properties",
        "_emitter",
        "_obs",
        "_parent_id",
        "_start",
        "_ended",
        "_collected",
        "_depth",
        "__weakref__",
    )

    def __init__(
        self,
        name: str,
        *,
        input: Any = None,
        properties: Mapping[str, Any] | None = None,
        client: Any = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"span name must be a non-empty string, got {name!r}")
        if properties is not None and not isinstance(properties, Mapping):
            raise TypeError(f"properties must be a mapping, got {type(properties).__name__}")
        self.name = name
        self._input = snapshot(input)
        self._output: Any = None
        self._properties: dict[str, Any] = dict(properties) if properties else {}
        self._emitter = _default_emitter if client is None else Emitter(client)
        self._obs: Observation | None = None
        self._parent_id: str | None = None
        self._start = 0.0
        self._ended = False
        self._collected: _Collector | None = None  # a generator's: what it yielded so far
        self._depth = 0  # `with` blocks of this span open now (one span, however nested)

    # -- what the user calls ---------------------------------------------------------------------

    @property
    def trace_id(self) -> str | None:
        """The id of the trace this span belongs to (for `capture_feedback`, links, logs)."""
        return self._obs.trace_id if self._obs is not None else None

    @property
    def span_id(self) -> str | None:
        return self._obs.span_id if self._obs is not None else None

    def set_output(self, value: Any) -> None:
        """What the span produced (`$ai_output_state`)."""
        self._output = snapshot(value)

    def set_properties(self, properties: Mapping[str, Any]) -> None:
        """Extra properties for this span's event (they win over computed ones)."""
        if not isinstance(properties, Mapping):
            raise TypeError(f"properties must be a mapping, got {type(properties).__name__}")
        self._properties.update(properties)

    # -- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> Span:
        obs = self._obs
        if self._depth > 0 and obs is not None and not self._ended and not _open_here(obs):
            # Open on another thread or task, entered here too: a span of its own in this
            # context (what `as` binds), ended by this block's exit; the other stays theirs.
            twin = Span(
                self.name,
                input=self._input,
                properties=self._properties,
                client=self._emitter._client,
            )
            twin.start(activate=True)
            _twins.set({**(_twins.get() or {}), id(self): twin})
            return twin
        self.start(activate=True)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        twins = _twins.get()
        if twins and id(self) in twins:
            twin = twins[id(self)]
            _twins.set({key: value for key, value in twins.items() if key != id(self)} or None)
            twin.end(exc)
            return
        self.end(exc)

    async def __aenter__(self) -> Span:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    def start(self, *, activate: bool) -> None:
        """Open the span; with `activate`, code that runs next in this context is inside it.

        A span object used again after it ended is a new span (its own event); entered again
        while it is open, it stays the one span until the outermost block ends."""
        self._depth += 1
        if self._depth > 1:
            return
        if self._ended:
            self._ended = False
            self._obs = None
            self._parent_id = None
            self._collected = None
            self._output = None
        self._start = _perf()
        with capture_internal_exceptions():
            if not self._emitter.enabled:
                return
            parent = current_observation()
            scope = self._emitter.scope()
            if parent is not None and scope.trace_id in (None, parent.trace_id):
                trace_id = parent.trace_id
                span_id = str(uuid.uuid4())
                self._parent_id = parent.span_id
                kind = SPAN_KIND
            else:
                # A trace root: its span id is the trace id, which its children name as parent.
                trace_id = span_id = scope.trace_id or str(uuid.uuid4())
                kind = TRACE_KIND
            scope = scope.merged(Scope(trace_id=trace_id))
            client = self._emitter._client
            if activate:
                self._obs = open_observation(
                    kind, trace_id=trace_id, span_id=span_id, scope=scope, client=client
                )
            else:
                self._obs = Observation(kind, trace_id, span_id, scope, None, parent)
                if client is not None:
                    self._obs.client = client

    def end(self, error: BaseException | None = None) -> None:
        """Close the span and send its event (once)."""
        end = _perf()
        if self._depth > 0:
            self._depth -= 1
            if self._depth > 0:
                return  # an inner `with` of the same span: the outermost one ends it
        obs = self._obs
        if obs is None or self._ended:
            return
        self._ended = True
        with capture_internal_exceptions():
            close_observation(obs)
            emitter = self._emitter
            if emitter._client is None and obs.client is not None:
                # Opened inside a span given a client: sent where that trace goes.
                emitter = Emitter(obs.client)
            if stopped_by_caller(error) or (
                isinstance(error, SystemExit) and error.code in (None, 0)
            ):
                # The consumer stopped reading a generator, the task was cancelled (a timeout,
                # a client gone), or the program exits successfully: the caller stopping the
                # work, as for streams and framework runs, not the work failing.
                error = None
            scope = obs.scope
            if self._properties:
                scope = scope.merged(Scope(properties=self._properties))
            # What joined work reported to this trace root (`report_to_trace`).
            reported: BaseException | str | None = error if error is not None else obs.error
            if obs.session_id is not None and scope.session_id is None:
                scope = scope.merged(Scope(session_id=obs.session_id))
            build = functools.partial(
                _build,
                obs,
                self._parent_id,
                self.name,
                self._input,
                self._output,
                reported,
                end - self._start,
                emitter.privacy(scope),
            )
            event = TRACE if obs.kind == TRACE_KIND else SPAN
            emitter.emit(event, build, scope, trace_id=obs.trace_id)


# -- generators still open at shutdown -----------------------------------------------------------
#
# The span of an `@observe` generator ends when the generator does. One the caller stopped
# reading and still holds ends no other way before the process does (it is closed when it is
# collected, at exit after the sender's last delivery): each open one is held weakly here and
# sent as it is, with what it yielded so far, when the client it sends to shuts down and at
# process exit, before the last delivery.

_open_generator_spans: weakref.WeakSet[Span] = weakref.WeakSet()


def _hold_open(s: Span, collected: _Collector | None) -> None:
    s._collected = collected
    _open_generator_spans.add(s)


def _send_open_generator_spans(client: Any) -> None:
    """Shutdown hand-over: end the open generator spans that go to `client` (None: all)."""
    for s in settled_list(_open_generator_spans):
        own = s._emitter._client
        if own is None and s._obs is not None:
            own = s._obs.client  # inherited from the span it was opened in
        if s._ended or not sends_to(own, client):
            continue
        _open_generator_spans.discard(s)
        collected = s._collected
        if collected is not None:
            s.set_output(collected.value())
        s._depth = min(s._depth, 1)
        s.end()


on_any_shutdown(_send_open_generator_spans)


def _build(
    obs: Observation,
    parent_id: str | None,
    name: str,
    input: Any,
    output: Any,
    error: BaseException | str | None,
    latency: float,
    privacy: bool,
) -> dict[str, Any]:
    if obs.kind == TRACE_KIND:
        return trace_properties(
            trace_id=obs.trace_id,
            span_name=name,
            input_state=input,
            output_state=output,
            latency=latency,
            error=error,
            privacy_mode=privacy,
        )
    return span_properties(
        trace_id=obs.trace_id,
        span_id=obs.span_id,
        parent_id=parent_id,
        span_name=name,
        input_state=input,
        output_state=output,
        latency=latency,
        error=error,
        privacy_mode=privacy,
    )


def span(
    name: str,
    *,
    input: Any = None,
    properties: Mapping[str, Any] | None = None,
    client: Any = None,
) -> Span:
    """A span around a block of the user's code, sync or async (`with` / `async with`).

    With no span open around it, it starts a trace (`$ai_trace`); inside one it is an
    `$ai_span`. An exception inside marks it as an error and propagates untouched.

    >>> import posthog_llm
    >>> with posthog_llm.span("answer", input={"question": "why?"}) as s:
    ...     s.set_output("because")
    """
    return Span(name, input=input, properties=properties, client=client)


# -- @observe ------------------------------------------------------------------------------------


@overload
def observe(func: _F) -> _F: ...


@overload
def observe(
    func: None = None,
    *,
    name: str | None = None,
    capture_input: bool = True,
    capture_output: bool = True,
    client: Any = None,
) -> Callable[[_F], _F]: ...


def observe(
    func: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    capture_input: bool = True,
    capture_output: bool = True,
    client: Any = None,
) -> Any:
    """Run every call of a function inside a span named after it.

    Works on plain functions, `async def`, generators and async generators. The input is the
    arguments by parameter name, defaults included (without `self`/`cls`); the output is the
    return value, or what a generator yielded.

    >>> import posthog_llm
    >>> @posthog_llm.observe
    ... def answer(question: str) -> str:
    ...     return "42"
    >>> @posthog_llm.observe(name="lookup", capture_input=False)
    ... async def lookup(key: str) -> str:
    ...     return key
    """
    if func is None:
        return functools.partial(
            observe,
            name=name,
            capture_input=capture_input,
            capture_output=capture_output,
            client=client,
        )
    if isinstance(func, (staticmethod, classmethod)):
        # Above `@staticmethod` or `@classmethod`: the function inside is observed, and the
        # descriptor kept, so calls on an instance or the class bind as they did.
        decorate = observe(
            name=name, capture_input=capture_input, capture_output=capture_output, client=client
        )
        return type(func)(decorate(func.__func__))
    if not callable(func):
        raise TypeError(f"observe() decorates a function, got {type(func).__name__}")
    if name is not None and (not isinstance(name, str) or not name):
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    for flag, value in (("capture_input", capture_input), ("capture_output", capture_output)):
        if not isinstance(value, bool):
            raise TypeError(f"{flag} must be a bool, got {type(value).__name__}")
    check_client(client)  # at decoration: a wrong client must not break every call
    span_name: str = str(
        name or getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or "span"
    )
    read_input = _input_reader(func) if capture_input else None

    def new_span(args: Any, kwargs: Any) -> Span:
        value = None
        if read_input is not None:
            with capture_internal_exceptions():
                value = read_input(args, kwargs)
        return Span(span_name, input=value, client=client)

    runs = _what_runs(func)

    if inspect.isasyncgenfunction(runs):

        @_wraps(func)
        async def async_gen_wrapper(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
            # No `yield from` for async generators: theirs is driven by hand, passing on what the
            # consumer sends, throws in or closes, so it behaves as it does undecorated.
            s = new_span(args, kwargs)
            s.start(activate=False)
            obs = s._obs
            collected = _Collector() if capture_output and obs is not None else None
            if obs is not None:
                _hold_open(s, collected)
            agen = func(*args, **kwargs)
            error: BaseException | None = None
            place = StepPlace(obs) if obs is not None else None
            try:
                step: Awaitable[Any] = agen.__anext__()
                while True:
                    try:
                        if place is not None:
                            token = place.enter()
                            try:
                                item = await step
                            finally:
                                place.leave(token)
                        else:
                            item = await step
                    except StopAsyncIteration:
                        break
                    if collected is not None:
                        collected.add(item)
                    try:
                        sent = yield item
                    except BaseException as exc:
                        thrown = exc  # handled below, outside this handler (no added __context__)
                    else:
                        step = agen.__anext__() if sent is None else agen.asend(sent)
                        continue
                    if isinstance(thrown, GeneratorExit):  # aclose(): close theirs, then stop
                        if place is not None:
                            token = place.enter()
                            try:
                                await agen.aclose()
                            finally:
                                place.leave(token)
                        else:
                            await agen.aclose()
                        raise thrown
                    # Raised at our `yield`, it gained this frame in its traceback: drop that, so
                    # it reaches their generator as the consumer threw it.
                    tb = thrown.__traceback__
                    if tb is not None and tb.tb_frame is inspect.currentframe():
                        thrown.__traceback__ = tb.tb_next
                    step = agen.athrow(thrown)
                    del thrown, tb
            except BaseException as exc:
                # Closed early, or cancelled (abandoned when the event loop ends): not a failure.
                error = None if stopped_by_caller(exc) else exc
                raise
            finally:
                try:
                    if collected is not None:
                        s.set_output(collected.value())
                    await agen.aclose()  # a no-op when it has finished
                finally:
                    s.end(error)

        return async_gen_wrapper

    if inspect.isgeneratorfunction(runs):

        @_wraps(func)
        def gen_wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
            s = new_span(args, kwargs)
            s.start(activate=False)
            obs = s._obs
            gen = func(*args, **kwargs)
            if obs is None:
                # Nothing will be sent: hand the generator over as it is.
                return (yield from gen)
            collected = _Collector() if capture_output else None
            _hold_open(s, collected)
            error: BaseException | None = None
            try:
                # `yield from` passes send, throw and close through and returns the return value;
                # the step object runs each step inside the span and keeps what was yielded.
                result = yield from _Steps(gen, obs, collected)
                if collected is not None and result is not None:
                    collected.returned = result
                return result
            except BaseException as exc:
                error = None if isinstance(exc, GeneratorExit) else exc
                raise
            finally:
                try:
                    if collected is not None:
                        s.set_output(collected.value())
                    gen.close()  # a no-op when it has finished
                finally:
                    s.end(error)

        return gen_wrapper

    if inspect.iscoroutinefunction(runs):

        @_wraps(func)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            with new_span(args, kwargs) as s:
                result = await func(*args, **kwargs)
                if capture_output:
                    s.set_output(result)
                return result

        return async_wrapper

    @_wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with new_span(args, kwargs) as s:
            result = func(*args, **kwargs)
            if capture_output:
                s.set_output(result)
            return result

    return wrapper


def _wraps(func: Callable[..., Any]) -> Callable[[_W], _W]:
    """`functools.wraps`, for a callable whose name or docs cannot be copied too (a mock made
    with a `spec` answers `__qualname__` with another mock): then only `__wrapped__` is set."""

    def decorate(wrapper: _W) -> _W:
        try:
            functools.update_wrapper(wrapper, func)
        except (TypeError, AttributeError):
            wrapper.__wrapped__ = func  # type: ignore[attr-defined]
        return wrapper

    return decorate


async def _awaited(*args: Any, **kwargs: Any) -> Any:
    """What an `AsyncMock` stands for: an `async def`."""


def _called(*args: Any, **kwargs: Any) -> Any:
    """What another mock stands for: a plain function."""


def _what_runs(func: Callable[..., Any]) -> Callable[..., Any]:
    """What a call of `func` runs, to tell whether it is async or a generator: `func` when it
    says so itself (a coroutine function, an `AsyncMock`, a partial of one), else for a callable
    object (or a partial of one) its class's `__call__`: an agent class with `async def
    __call__` is awaited inside its span, not returned from it unstarted."""
    mock = sys.modules.get("unittest.mock")
    if mock is not None and isinstance(func, mock.NonCallableMock):
        # A mock answers every flag inspect reads (an async generator, for one with a spec):
        # what it runs is what its class says.
        return _awaited if isinstance(func, mock.AsyncMock) else _called
    if (
        inspect.iscoroutinefunction(func)
        or inspect.isasyncgenfunction(func)
        or inspect.isgeneratorfunction(func)
    ):
        return func
    target = func
    while isinstance(target, functools.partial):
        target = target.func
    if (
        inspect.isfunction(target)
        or inspect.ismethod(target)
        or inspect.isbuiltin(target)
        or isinstance(target, type)
    ):
        return target
    return type(target).__call__


def _input_reader(func: Callable[..., Any]) -> Callable[[Any, Any], Any]:
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        signature = None
    params = list(signature.parameters) if signature is not None else []
    skip = params[0] if params and params[0] in ("self", "cls") else None
    variadic = (
        {
            param.name
            for param in signature.parameters.values()
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD)
        }
        if signature is not None
        else set()
    )

    def read(args: Any, kwargs: Any) -> Any:
        if signature is None:
            return {"args": list(args), "kwargs": dict(kwargs)}
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError:
            return {"args": list(args), "kwargs": dict(kwargs)}
        # A parameter left at its default is as much the call's input as one passed; an empty
        # `*args` or `**kwargs` is not.
        bound.apply_defaults()
        arguments = {
            key: value for key, value in bound.arguments.items() if key not in variadic or value
        }
        if skip is not None:
            arguments.pop(skip, None)
        return arguments

    return read


class _Collector:
    """What a generator yielded, up to a size limit; strings are joined.

    Each item is copied as it is yielded (the generator may change a dict it yields again) and
    counted by its size, so a long stream of large chunks (audio, files) is not held whole.
    """

    __slots__ = ("items", "chars", "dropped", "text", "returned")

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.chars = 0
        self.dropped = 0
        self.text = True  # only strings yielded: they are joined
        self.returned: Any = None

    def add(self, item: Any) -> None:
        room = MAX_COLLECTED_CHARS - self.chars
        if room <= 0 or len(self.items) >= MAX_COLLECTED_ITEMS:
            self.dropped += 1
            return
        if isinstance(item, str):
            if len(item) > room:
                item = item[:room] + TRUNCATION_MARKER
            self.chars += len(item)
        elif isinstance(item, (bytes, bytearray, memoryview)):
            self.text = False
            size = item.nbytes if isinstance(item, memoryview) else len(item)
            # Kept (copied) while it fits; past that, only its size.
            item = bytes(item) if size <= room else f"[{size} bytes]"
            self.chars += len(item)
        else:
            self.text = False
            weight = bounded_weight(item, room)
            if weight > room:
                # Past the bound: the last item kept, as it is (copying it would cost the
                # caller more than the bound allows); nothing after it.
                self.chars = MAX_COLLECTED_CHARS
            else:
                item = snapshot(item)
                self.chars += weight
        self.items.append(item)

    def value(self) -> Any:
        items: Any = self.items
        if items and self.text:
            items = "".join(items)
        if self.dropped:
            marker = f"... [{self.dropped} more items not kept]"
            items = items + marker if isinstance(items, str) else [*items, marker]
        return items


class _Steps:
    """The user's generator, each step of it run inside its span, what it yields collected.

    The wrapper delegates to this with `yield from`, which calls `send`, `throw` and `close` here
    as the consumer calls them on the wrapper (and reads the return value from StopIteration).
    """

    __slots__ = ("gen", "place", "collected")

    def __init__(self, gen: Generator[Any, Any, Any], obs: Observation, collected: Any) -> None:
        self.gen = gen
        self.place = StepPlace(obs)
        self.collected: _Collector | None = collected

    def __iter__(self) -> _Steps:
        return self

    def _step(self, step: Callable[..., Any], *args: Any) -> Any:
        place = self.place
        token = place.enter()
        try:
            item = step(*args)
        finally:
            place.leave(token)
        if self.collected is not None:
            self.collected.add(item)
        return item

    def __next__(self) -> Any:
        return self._step(self.gen.__next__)

    def send(self, value: Any) -> Any:
        return self._step(self.gen.send, value)

    def throw(self, *exc: Any) -> Any:
        return self._step(self.gen.throw, *exc)

    def close(self) -> None:
        place = self.place
        token = place.enter()
        try:
            self.gen.close()
        finally:
            place.leave(token)
