"""The generic tracked SDK call: what every provider drop-in (OpenAI, Anthropic, Gemini) shares.

A provider supplies only its translation: a `Kind` per tracked method (how to build the event
from the raw facts, what each stream chunk adds) and a `Tracker` subclass that knows its client
(base URL, provider name, credentials). This module does the rest:

- pulls the `posthog_*` arguments out of the call before the SDK sees them;
- joins the open observation (a `posthog_llm.span`, a LangChain run, a LlamaIndex span), and
  sends nothing of its own under another framework's open generation, so each model call is
  reported once: that generation takes the call's privacy, facts and `posthog_*` arguments
  instead (`_deferred`);
- times the call (latency; for streams the SDK's own time only, and the time to first token);
- records the SDK's result or exception and hands a zero-argument builder to the emitter, so
  the event's properties are built on the sender's worker thread with our own `Client`.

The user's result and exception are never changed: tracking errors are swallowed and reported
through `capture_internal_exceptions`.
"""

from __future__ import annotations

import functools
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any, NamedTuple, get_args

from ._client import on_any_shutdown, sends_to, settled_list
from ._context import Scope, lenient_scope
from ._deferred import defer_call, reads_deferred_calls
from ._emit import Emitter, capture_internal_exceptions, report_internal_error
from ._errors import error_text, header_secrets, scrub_secrets, stopped_by_caller
from ._events import (
    EMBEDDING,
    GENERATION,
    PROP_SPAN_ID,
    clean_base_url,
    embedding_properties,
    generation_properties,
    http_status_of,
)
from ._ids import uuid4_str
from ._observation import (
    GENERATION_KIND,
    Observation,
    _model_call_checks,
    current_observation,
    done_reporting_model_call,
    framework_model_call_running,
    reporting_model_call,
)
from ._sender_stats import RateLimitedWarning
from ._snapshot import snapshot_items

__all__ = [
    "POSTHOG_ARGUMENTS",
    "TrackedKind",
    "Tracker",
    "TrackedCall",
    "begin_call",
    "run_tracked",
    "run_tracked_async",
    "track_sdk_stream",
    "track_async_sdk_stream",
    "track_iterator",
    "track_async_iterator",
    "track_sdk_response",
    "track_async_sdk_response",
    "secrets_of",
    "track_copies",
]

# Removed from every tracked call before the SDK sees it. `posthog_provider_override` is also
# accepted so code written for posthog-python's wrappers keeps working.
POSTHOG_ARGUMENTS = (
    "posthog_distinct_id",
    "posthog_trace_id",
    "posthog_session_id",
    "posthog_properties",
    "posthog_groups",
    "posthog_privacy_mode",
    "posthog_provider_override",
)

_perf = time.perf_counter


def track_copies(client: Any, instrument: Callable[[Any], None]) -> None:
    """Make `client.copy()` and `client.with_options()` return clients that are tracked too.

    The SDKs build a new client of the same class for other options; `instrument(copied)` gives
    it the same tracking. An entry in the instance's `__dict__` shadows the class's method, so
    other clients are untouched.
    """
    state = client.__dict__
    cls = type(client)
    for name in ("copy", "with_options"):
        state[name] = _tracked_copy(getattr(cls, name), client, instrument)


def _tracked_copy(method: Any, client: Any, instrument: Callable[[Any], None]) -> Any:
    @functools.wraps(method)
    def copy(*args: Any, **kwargs: Any) -> Any:
        copied = method(client, *args, **kwargs)
        instrument(copied)
        return copied

    return copy


_READ_AS_IS = (str, bytes, list, tuple, dict)


# -- what a provider supplies -------------------------------------------------------------------


class TrackedKind(NamedTuple):
    """How one tracked SDK method turns into an event.

    - `event`: `$ai_generation` or `$ai_embedding`;
    - `list_arguments`: request arguments we keep a copy of (the caller may mutate them later);
    - `build(call)`: the event's properties (runs on the sender's worker thread);
    - `observe(call, chunk)`: per stream chunk, notes what it adds; False hides the chunk;
    - `start_stream(stream, call)`: makes the SDK's stream report, returns what the caller gets;
    - `streams`: True when the method always streams (else `stream=True` in the call says so);
    - `prepare(call, kwargs)`: last look at the request before it is sent (may adjust kwargs);
      returns False to leave the call untracked;
    - `unwrap(result)`: the SDK object inside a raw-response wrapper;
    - `start_response(response, call)`: for a raw-response call (`with_raw_response`,
      `with_streaming_response`), makes the SDK's response object report (see
      `track_sdk_response`); False when it is not one it knows or leaves to `unwrap`;
    - `request_on_first_read`: the SDK's stream sends its request when first read (a
      generator, as google-genai's): one never read made no call and is not reported;
    - `answer_of_error(error)`: the answer an error raised after a response carries (an SDK
      refusing a parsed answer cut at its token limit), reported with the error, else None.
    """

    event: str
    list_arguments: tuple[str, ...]
    build: Callable[[TrackedCall], dict[str, Any]]
    observe: Callable[[TrackedCall, Any], bool] | None = None
    start_stream: Callable[[Any, TrackedCall], Any] | None = None
    streams: bool = False
    prepare: Callable[[TrackedCall, dict[str, Any]], bool] | None = None
    unwrap: Callable[[Any], Any] | None = None
    start_response: Callable[[Any, TrackedCall], bool] | None = None
    request_on_first_read: bool = False
    answer_of_error: Callable[[BaseException], Any] | None = None


class Tracker:
    """Per-client state: the emitter, and what the provider knows about its client.

    Subclasses override `provider_name`, `base_url` and `secret_names`; the defaults read the
    client's `base_url` attribute and name the provider `default_provider`. `sdk_errors` are
    the SDK's own exceptions: one raised while a response body is read again for the event is
    the call's error (the caller's own read raised it too), not a fault of ours.
    """

    default_provider = "unknown"
    secret_names: tuple[str, ...] = ("api_key",)
    sdk_errors: tuple[type[BaseException], ...] = ()
    framework: str | None = None

    def __init__(self, emitter: Emitter) -> None:
        self.emitter = emitter
        # (raw base URL object, its cleaned text): worked out once, not per event.
        self._urls: tuple[Any, str | None] | None = None

    def base_url(self, client: Any) -> str | None:
        raw = getattr(client, "base_url", None)
        urls = self._urls
        if urls is None or urls[0] is not raw:
            cleaned = clean_base_url(raw)
            if cleaned:
                cleaned = scrub_secrets(cleaned, self.secrets(client))
            urls = self._urls = (raw, cleaned)
        return urls[1]

    def provider_name(self, client: Any) -> str:
        return self.default_provider

    def secrets(self, client: Any) -> list[str]:
        """Credentials the client holds, to be sure none ends up in an event: its keys and
        the values of the custom headers it sends that may be credentials (`header_secrets`)."""
        found = secrets_of(client, self.secret_names)
        for value in header_secrets(getattr(client, "_custom_headers", None)):
            if value not in found:
                found.append(value)
        return found


def secrets_of(obj: Any, names: tuple[str, ...]) -> list[str]:
    found = []
    for name in names:
        value = getattr(obj, name, None)
        if isinstance(value, str) and len(value) >= 8:
            found.append(value)
    return found


# -- one call ------------------------------------------------------------------------------------


class TrackedCall:
    """Raw facts about one tracked call; `properties()` turns them into the event."""

    __slots__ = (
        "kind",
        "client",
        "tracker",
        "params",
        "scope",
        "trace_id",
        "parent_id",
        "privacy",
        "provider",
        "stream",
        "result",
        "error",
        "latency",
        "request_latency",
        "busy",
        "ttft",
        "chunks",
        "model",
        "usage",
        "stop_reason",
        "service_tier",
        "stream_error",
        "hide_usage",
        "reading",
        "pending_request",
        "done",
        "response_mode",
        "body",
        "body_size",
        "body_complete",
        "replay",
        "requests",
        "model_response_id",
        "other_choices",
        "web_searches",
        "destination",
        "unanswered",
        "deferred",
        "overrides",
        "settled",
        "__weakref__",
    )

    def __init__(
        self,
        kind: TrackedKind,
        client: Any,
        tracker: Tracker,
        params: dict[str, Any],
        scope: Scope,
        provider: str | None,
        trace_id: str,
        parent_id: str | None,
    ) -> None:
        self.kind = kind
        self.client = client
        self.tracker = tracker
        self.params = params
        self.scope = scope
        self.trace_id = trace_id
        self.parent_id = parent_id
        self.privacy = tracker.emitter.privacy(scope)
        self.provider = provider
        self.stream = kind.streams or params.get("stream") is True
        self.result: Any = None
        self.error: BaseException | None = None
        self.latency: float | None = None
        self.request_latency = 0.0
        self.busy = 0.0  # time spent inside the SDK's stream iterator
        self.ttft: float | None = None
        self.chunks: list[Any] = []  # what a stream's chunks added, as plain values
        self.model: str | None = None  # a stream's served model
        self.usage: Any = None  # a stream's usage
        self.stop_reason: Any = None  # a stream's stop reason
        self.service_tier: Any = None  # the tier a stream was served at
        self.stream_error: str | None = None  # an error event inside a stream
        self.hide_usage = False
        self.reading = False  # inside the SDK's stream iterator right now
        self.pending_request = False  # a stream whose request goes out when first read
        self.done = False
        self.unanswered = False  # stopped by the caller before any response came
        # A raw-response call: the Stainless header's value ("true"/"raw": `with_raw_response`,
        # "stream": `with_streaming_response`, whose body is the caller's to read).
        self.response_mode: str | None = None
        self.body: list[tuple[bytes, float]] | None = None  # the body as read, with `busy` then
        self.body_size = 0
        self.body_complete = False  # the body was read to its end
        self.replay: Callable[[Iterator[bytes]], Any] | None = None  # the SDK reads it again
        # What a provider keeps of the requests an SDK makes for one call (google-genai's
        # automatic function calling): their responses, or a stream's earlier rounds' usage.
        self.requests: list[Any] | None = None
        self.model_response_id: str | None = None  # the response a stream is reading now
        # A stream's further choices (`n`, `candidate_count`) by index: what each one added.
        self.other_choices: dict[int, list[Any]] | None = None
        self.web_searches = 0  # seen in a stream's chunks (a provider that gives no count)
        # Where the event goes, named when the call starts (None: the default client).
        self.destination: Any = tracker.emitter.destination()
        # Another framework's generation that reports this call (reported once): the call
        # sends nothing, it is marked `settled` once its facts are in, for that generation.
        self.deferred = False
        self.overrides: Scope | None = None  # its `posthog_*` arguments, for that generation
        self.settled = False

    # -- outcomes (hot path: record and hand over) ----------------------------------------------

    def succeed(self, result: Any, elapsed: float) -> Any:
        """Record the SDK's result; returns what the caller gets (streams come back tracked)."""
        # try/except rather than `capture_internal_exceptions()`: the same guard, without a
        # context-manager object per call on the caller's thread.
        try:
            if self.response_mode is not None and self._start_response(result, elapsed):
                if not self.done:
                    _open_calls.add(self)  # a body the caller reads later
                return result
            unwrap = self.kind.unwrap
            parsed = unwrap(result) if unwrap is not None else result
            if self.stream:
                self.request_latency = elapsed
                start = self.kind.start_stream
                tracked = start(parsed, self) if start is not None else parsed
                if self.kind.request_on_first_read:
                    # An open call from its first read on (`_first_read`): never read, no call
                    # was made.
                    self.pending_request = True
                else:
                    _open_calls.add(self)
                # A raw-response wrapper is returned as is: its stream was tracked in place.
                return result if parsed is not result else tracked
            self.result = parsed
            self.latency = elapsed
            self._emit()
        except Exception as exc:
            report_internal_error(exc)
        return result

    def _start_response(self, response: Any, elapsed: float) -> bool:
        """A raw-response call: True when the provider made the response report."""
        start = self.kind.start_response
        if start is None:
            return False
        self.request_latency = self.latency = elapsed
        try:
            return start(response, self)
        except Exception as exc:
            # A response of a shape we do not know: send what the call itself knows.
            report_internal_error(exc)
            self.replay = self.body = None
            self.finish()
            return True

    def fail(self, error: BaseException, elapsed: float) -> None:
        try:
            # Cancelled while waiting for the answer: the caller stopped the call, as for a
            # stream cancelled while it is read (`finish`).
            if stopped_by_caller(error):
                self.error, self.unanswered = None, True
            else:
                self.error = error
                answer_of = self.kind.answer_of_error
                if answer_of is not None and self.result is None:
                    # Billed: its model, tokens and output go with the error.
                    with capture_internal_exceptions():
                        self.result = answer_of(error)
            self.latency = elapsed
            self._emit()
        except Exception as exc:
            report_internal_error(exc)

    def finish(self, error: BaseException | None = None) -> None:
        """End of a stream (exhausted, closed early, failed or dropped): send the event once."""
        if self.done:
            return
        self.done = True
        try:
            # Cancelled while reading (a timeout, a client that disconnected from a streamed
            # reply) is the caller closing the stream early, as a `break` is: not the call's error.
            self.error = None if stopped_by_caller(error) else error
            self.latency = self.request_latency + self.busy
            if self.ttft is not None:
                self.ttft += self.request_latency
            self._send()
        except Exception as exc:
            report_internal_error(exc)

    def _emit(self) -> None:
        self.done = True
        self._send()

    def _send(self) -> None:
        if self.deferred:
            self.settled = True  # the generation reporting it reads its facts from now on
            return
        self.tracker.emitter.emit(
            self.kind.event,
            self.properties,
            self.scope,
            trace_id=self.trace_id,
            client=self.destination,
        )

    # -- for the builders (worker thread for our Client) ------------------------------------------

    def properties(self) -> dict[str, Any]:
        """The event's properties from the provider's builder; if it cannot read what it needs
        (a response or client of an unexpected shape), the facts the call itself holds, so the
        event still goes out without the ones that could not be read."""
        if self.replay is not None:
            try:
                self._read_body()
            except Exception as exc:
                report_internal_error(exc)
        try:
            props = self.kind.build(self)
        except Exception as exc:
            report_internal_error(exc)
            props = self._fallback_properties()
        # The call's own id, so what PostHog shows of a trace can point at it (made here, on
        # the worker: the caller pays nothing for it).
        props.setdefault(PROP_SPAN_ID, uuid4_str())
        return props

    def _read_body(self) -> None:
        """A raw response's body, as the caller read it, read again by the SDK: the result, or
        the stream's events through `observe` (each at the `busy` time its bytes came in)."""
        replay, body = self.replay, self.body
        self.replay = self.body = None
        if replay is None or body is None or not (self.stream or self.body_complete):
            return  # a JSON body read in part (or not at all) says nothing
        busy, ttft = self.busy, self.ttft

        def chunks() -> Iterator[bytes]:
            for data, seen in body:
                self.busy = seen
                yield data

        try:
            parsed = replay(chunks())
            if self.stream:
                observe = self.kind.observe
                for event in parsed:
                    if observe is not None:
                        observe(self, event)
            else:
                self.result = parsed
        except self.tracker.sdk_errors as exc:
            # What the SDK raises reading this body, the caller's own read raised too.
            if self.error is None:
                self.error = exc
        finally:
            self.busy = busy
            if ttft is None and self.ttft is not None:
                self.ttft += self.request_latency

    def _fallback_properties(self) -> dict[str, Any]:
        model = self.params.get("model")
        build = embedding_properties if self.kind.event == EMBEDDING else generation_properties
        error = self.error_text()
        return build(
            trace_id=self.trace_id,
            parent_id=self.parent_id,
            model=model if isinstance(model, str) else None,
            provider=self.provider_name(),
            base_url=self.base_url(),
            latency=self.latency,
            http_status=self.http_status(),
            error=error,
            is_error=True if error else None,
            privacy_mode=self.privacy,
        )

    # A fact about the client that cannot be read is left out (and reported), not the event.

    def base_url(self) -> str | None:
        try:
            return self.tracker.base_url(self.client)
        except Exception as exc:
            report_internal_error(exc)
            return None

    def provider_name(self) -> str:
        if self.provider:
            return self.provider
        try:
            return self.tracker.provider_name(self.client)
        except Exception as exc:
            report_internal_error(exc)
            return self.tracker.default_provider

    def secrets(self) -> list[str]:
        try:
            return self.tracker.secrets(self.client)
        except Exception as exc:
            report_internal_error(exc)
            return []

    def error_text(self) -> str | None:
        """`$ai_error` for the call's exception: secrets scrubbed, only the type under privacy."""
        if self.error is None:
            return None
        return error_text(self.error, privacy=self.privacy, secrets=self.secrets())

    def http_status(self) -> int | None:
        """200 on success; on error the status the exception carries; None when the caller
        stopped the call before any response.

        An error in the middle of a stream, or in reading a raw response's body, came after a
        200 response, so 200 stays.
        """
        if self.error is None:
            # Cancelled while waiting: no response, so no status (nor an error).
            return None if self.unanswered else 200
        status = http_status_of(self.error)
        if status is None and (
            self.result is not None
            or (self.request_latency and (self.stream or self.response_mode))
        ):
            return 200
        return status


def begin_call(
    kind: TrackedKind, tracker: Tracker | None, client: Any, kwargs: dict[str, Any]
) -> TrackedCall | None:
    """Strip the `posthog_*` arguments from `kwargs`; a call to record, or None to pass through."""
    given = None
    for name in POSTHOG_ARGUMENTS:
        if name in kwargs:
            if given is None:
                given = {}
            given[name[8:]] = kwargs.pop(name)
    for name in kind.list_arguments:
        value = kwargs.get(name)
        if value is not None and not isinstance(value, _READ_AS_IS) and _is_iterator(value):
            kwargs[name] = list(value)  # an iterator: read it once, for the SDK and for us
    if tracker is None:
        return None
    overrides: Scope | None = None
    provider = None
    if given:
        provider = given.pop("provider_override", None)
        if provider is not None and (type(provider) is not str or not provider):
            _argument_warning.warn(
                "posthog-llm: posthog_* arguments left out: provider_override must be a "
                "non-empty str, got %r",
                provider,
            )
            provider = None
        # Read while the user's code runs: a value of the wrong type is left out (and said once
        # in a while), never raised into the call, which goes out as asked.
        overrides = _call_overrides(given)
    with capture_internal_exceptions():
        emitter = tracker.emitter
        if not emitter.enabled:
            return None
        observation = current_observation()
        reported_by: Observation | None = None
        if (
            observation is not None
            and observation.kind == GENERATION_KIND
            and observation.framework != tracker.framework
        ):
            # Another framework reports this model call already: report it once. The call
            # hands that generation its privacy, facts and arguments (not an embedding's).
            if kind.event != GENERATION or not reads_deferred_calls(observation):
                return None
            reported_by = observation
        elif _model_call_checks and kind.event == GENERATION:
            # A framework's model code is making this call (a stream read after its span
            # ended, a model on this client): its generation reports it. (Embeddings made
            # meanwhile, a semantic cache's, are not its model call.)
            running = framework_model_call_running()
            if isinstance(running, Observation) and reads_deferred_calls(running):
                reported_by = running
            elif running:
                return None  # a generation the framework cannot name: reported without
        # The scope carries the open observation's trace id unless the context or the call
        # names another trace; only a call in the observation's trace is its child.
        scope = emitter.scope(overrides)
        trace_id = str(scope.trace_id) if scope.trace_id is not None else uuid4_str()
        parent_id = None
        if observation is not None and trace_id == observation.trace_id:
            if observation.closed:
                # Another tracer's span (`outside_span`): read as a model call, so the span
                # it joins is known to wrap one.
                token = reporting_model_call()
                try:
                    parent_id = observation.span_id
                finally:
                    done_reporting_model_call(token)
            else:
                parent_id = observation.span_id
        params = dict(kwargs)
        for name in kind.list_arguments:
            value = kwargs.get(name)
            if isinstance(value, list):
                # The caller may append to the list, or edit a message or a content block in
                # it (reuse a block dict, move a cache breakpoint), before the event is built on
                # the worker: the list, its messages and their blocks as they were sent.
                params[name] = snapshot_items(value)
        call = TrackedCall(kind, client, tracker, params, scope, provider, trace_id, parent_id)
        call.response_mode = _response_mode(kwargs)
        prepare = kind.prepare
        if prepare is not None:
            if reported_by is None:
                if not prepare(call, kwargs):
                    return None
            else:
                # The framework reports the call: its request goes out as the framework built
                # it (no usage chunk asked for on its behalf), as before it was tracked.
                if not prepare(call, dict(kwargs)):
                    return None
                call.hide_usage = False
        if reported_by is not None:
            call.deferred = True
            call.overrides = overrides
            defer_call(reported_by, call)
        return call
    return None


_argument_warning = RateLimitedWarning(60.0)


def _call_overrides(given: dict[str, Any]) -> Scope:
    refused: list[str] = []
    scope = lenient_scope(**given, refused=refused)
    if refused:
        _argument_warning.warn("posthog-llm: posthog_* arguments left out: %s", "; ".join(refused))
    return scope


# Stainless SDKs (openai, anthropic) mark `with_raw_response` and `with_streaming_response`
# calls with this header: "true" or "raw" for the first, "stream" for the second.
_RAW_RESPONSE_HEADER = "X-Stainless-Raw-Response"


def _response_mode(kwargs: dict[str, Any]) -> str | None:
    headers = kwargs.get("extra_headers")
    if not headers or not isinstance(headers, Mapping):
        return None
    mode = headers.get(_RAW_RESPONSE_HEADER)
    return mode if isinstance(mode, str) else None


def _is_iterator(value: Any) -> bool:
    # Generators, map objects...: the SDK would exhaust them before we could read them.
    return hasattr(value, "__next__")


def run_tracked(
    kind: TrackedKind,
    tracker: Tracker | None,
    client: Any,
    method: Callable[..., Any],
    args: Any,
    kwargs: dict[str, Any],
) -> Any:
    """Call `method(*args, **kwargs)` as one tracked call; returns its result unchanged."""
    call = begin_call(kind, tracker, client, kwargs)
    if call is None:
        return method(*args, **kwargs)
    token = reporting_model_call()
    start = _perf()
    try:
        result = method(*args, **kwargs)
    except BaseException as exc:
        call.fail(exc, _perf() - start)
        raise
    finally:
        done_reporting_model_call(token)
    return call.succeed(result, _perf() - start)


async def run_tracked_async(
    kind: TrackedKind,
    tracker: Tracker | None,
    client: Any,
    method: Callable[..., Any],
    args: Any,
    kwargs: dict[str, Any],
) -> Any:
    call = begin_call(kind, tracker, client, kwargs)
    if call is None:
        return await method(*args, **kwargs)
    token = reporting_model_call()
    start = _perf()
    try:
        result = await method(*args, **kwargs)
    except BaseException as exc:
        call.fail(exc, _perf() - start)
        raise
    finally:
        done_reporting_model_call(token)
    return call.succeed(result, _perf() - start)


# -- what is still open at shutdown -------------------------------------------------------------
#
# A stream (or a raw response's body) the caller stopped reading without closing it, and still
# holds, ends no other way before the process does: its finalizer runs only when it is
# collected, at exit after the sender's last delivery. Every open one is held weakly here and
# sent as it is (what was read so far; no stop reason unless it was read, as a stream closed
# early) when the client it sends to shuts down, and at process exit before the last delivery.

_open_calls: weakref.WeakSet[TrackedCall] = weakref.WeakSet()


def _send_open_calls(client: Any) -> None:
    """Shutdown hand-over: send the open calls that go to `client` (None: all, at exit)."""
    for call in settled_list(_open_calls):
        if call.done or not sends_to(call.destination, client):
            continue
        _open_calls.discard(call)
        call.finish()


on_any_shutdown(_send_open_calls)


# -- streams ---------------------------------------------------------------------------------------
#
# Stainless SDK streams (openai, anthropic) stay the SDK's own `Stream` / `AsyncStream` objects
# with a tracked iterator inside, by three small hooks:
#
# - the iterator is wrapped; the wrapper times only the SDK's own work (the time the caller's loop
#   spends between chunks is not the provider's latency) and notes what each chunk adds;
# - closing its HTTP response (`stream.close()`, a `with` block, the helpers' exit) ends the call;
# - a finalizer ends the call when the stream is dropped unfinished.
#
# Plain generators (google-genai) are wrapped in a tracked generator instead. Either way the
# event is sent once, by whichever comes first: the end of the stream, a failure, a close.


def track_sdk_stream(stream: Any, call: TrackedCall) -> Any:
    """Make a Stainless `Stream` report; returns the same object."""
    stream._iterator = track_iterator(stream._iterator, call)
    response = stream.response
    close = response.close

    def close_and_finish() -> None:
        try:
            close()
        finally:
            if not call.reading:  # closed by the SDK itself at the end: the iterator finishes
                call.finish()

    response.close = close_and_finish
    weakref.finalize(stream, call.finish).atexit = False
    return stream


def track_async_sdk_stream(stream: Any, call: TrackedCall) -> Any:
    """Make a Stainless `AsyncStream` report; returns the same object."""
    stream._iterator = track_async_iterator(stream._iterator, call)
    response = stream.response
    aclose = response.aclose

    async def aclose_and_finish() -> None:
        try:
            await aclose()
        finally:
            if not call.reading:
                call.finish()

    response.aclose = aclose_and_finish
    weakref.finalize(stream, call.finish).atexit = False
    return stream


def _first_read(call: TrackedCall) -> None:
    if call.pending_request:  # its request is being sent now: an open call until it ends
        call.pending_request = False
        _open_calls.add(call)


def track_iterator(inner: Iterator[Any], call: TrackedCall) -> Iterator[Any]:
    """A generator yielding `inner`'s chunks (those `observe` shows) and reporting at the end."""
    observe = call.kind.observe
    _first_read(call)
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
            if observe is not None:
                try:  # inline rather than a helper call: this runs once per chunk
                    show = observe(call, chunk)
                except Exception as exc:  # our bug must not cost the caller a chunk
                    report_internal_error(exc)
                    show = True
                if not show:
                    continue
            yield chunk
    finally:
        call.reading = False
        call.finish()  # closed or dropped before the end: a no-op when already sent


async def track_async_iterator(inner: AsyncIterator[Any], call: TrackedCall) -> AsyncIterator[Any]:
    observe = call.kind.observe
    _first_read(call)
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
            if observe is not None:
                try:  # inline rather than a helper call: this runs once per chunk
                    show = observe(call, chunk)
                except Exception as exc:  # our bug must not cost the caller a chunk
                    report_internal_error(exc)
                    show = True
                if not show:
                    continue
            yield chunk
    finally:
        call.reading = False
        call.finish()


# -- raw responses ---------------------------------------------------------------------------------
#
# `with_raw_response` and `with_streaming_response` hand the caller the SDK's response object
# (`APIResponse`, `AsyncAPIResponse`, `LegacyAPIResponse`) instead of the parsed result. The caller
# reads its body (`.parse()`, `.read()`, `.json()`, `.iter_lines()`, the HTTP response's own
# `iter_raw()` / `iter_bytes()` / `iter_lines()`, ...); each of those, and the SDK's stream that
# `.parse()` gives for `stream=True`, reads the bytes off the wire through the HTTP response's
# `iter_raw` / `aiter_raw`. So the response is tracked by two hooks on that one object:
#
# - `iter_raw` is wrapped: the wrapper keeps a copy of each piece as it goes by to the caller
#   (never reads ahead of the caller) and times the SDK's own work, as a stream's iterator does;
# - closing it (`close()`, the `with` block, reading to the end) ends the call; a finalizer ends
#   it when the HTTP response is dropped unclosed (with the SDK's stream, not only the wrapper).
#
# On the sender's worker, the SDK reads the copy again into its own objects (the provider gives
# its response and stream classes; the copy is still content-encoded, as it came, and is decoded
# as it was for the caller), and the kind's `build` (and `observe`, for a stream) takes them from
# there. A body never read, or a JSON body read only in part, leaves the output out: the event
# goes out with what the call itself knows. A `with_raw_response` call whose body the SDK read
# already (no stream) sends its event at once.

_BODY_LIMIT = 32 * 1024 * 1024  # bytes of a body kept for the event; a longer one is cut there
# Headers the twin response must not take: it sizes its own body. The decoded body of a read
# response drops its content encoding too; the copy of an undecoded one keeps it.
_SIZE_HEADERS = frozenset({"content-length", "transfer-encoding"})
_BODY_HEADERS = _SIZE_HEADERS | {"content-encoding"}


def track_sdk_response(response: Any, call: TrackedCall, classes: tuple[type, type]) -> bool:
    """Make a Stainless raw response report; `classes` are the SDK's sync `APIResponse` and
    `Stream`, which read the body again for the event. Returns True (it reports)."""
    http = response.http_response
    if _read_already(response, call, http, classes):
        return True
    iter_raw = http.iter_raw
    close = http.close

    def tracked_iter_raw(*args: Any, **kwargs: Any) -> Iterator[bytes]:
        return _tee(iter_raw(*args, **kwargs), call)

    def close_and_finish() -> None:
        try:
            close()
        finally:
            if not call.reading:  # closed by httpx itself at the end: the reader finishes
                call.finish()

    http.iter_raw = tracked_iter_raw
    http.close = close_and_finish
    weakref.finalize(http, call.finish).atexit = False
    return True


def track_async_sdk_response(response: Any, call: TrackedCall, classes: tuple[type, type]) -> bool:
    """`track_sdk_response` for the response of an async client (read with `aiter_raw`)."""
    http = response.http_response
    if _read_already(response, call, http, classes):
        return True
    aiter_raw = http.aiter_raw
    aclose = http.aclose

    def tracked_aiter_raw(*args: Any, **kwargs: Any) -> AsyncIterator[bytes]:
        return _async_tee(aiter_raw(*args, **kwargs), call)

    async def aclose_and_finish() -> None:
        try:
            await aclose()
        finally:
            if not call.reading:
                call.finish()

    http.aiter_raw = tracked_aiter_raw
    http.aclose = aclose_and_finish
    weakref.finalize(http, call.finish).atexit = False
    return True


def _read_already(response: Any, call: TrackedCall, http: Any, classes: tuple[type, type]) -> bool:
    """Note how the SDK reads this response again; True when its body was read (event sent)."""
    if http.is_closed:
        # `with_raw_response` without a stream: the SDK has read the whole body already, so
        # the event goes now (the body is parsed for it on the worker, not here).
        call.replay = _replay_recipe(response, http, classes, _BODY_HEADERS)
        call.body, call.body_complete = [(http.content, 0.0)], True
        call.finish()
        return True
    # An open body (`with_streaming_response`, or `with_raw_response` of a stream): the caller's.
    call.replay = _replay_recipe(response, http, classes, _SIZE_HEADERS)
    call.body = []
    return False


def _replay_recipe(
    response: Any, http: Any, classes: tuple[type, type], dropped: frozenset[str]
) -> Callable[[Iterator[bytes]], Any]:
    """How the SDK parsed (or would parse) this response, for a copy of its body.

    Only what the response was built from is kept, not the response: a finalizer waits for it.
    """
    response_cls, stream_cls = classes
    cast_to, client, options = response._cast_to, response._client, response._options
    sse = getattr(response, "_is_sse_stream", None)
    if sse is None:
        sse = getattr(response, "_stream", False)  # the legacy response's name for it
    given_stream = response._stream_cls
    status, request, http_cls = http.status_code, http.request, type(http)
    headers = [(k, v) for k, v in http.headers.multi_items() if k.lower() not in dropped]

    # The sync stream class for the same events (an async response's is the AsyncStream).
    chunk_types = get_args(given_stream)
    sync_stream = stream_cls[chunk_types[0]] if chunk_types else None  # type: ignore[index]

    def replay(chunks: Iterator[bytes]) -> Any:
        # The SDK's own response class builds the result or the stream, with the arguments its
        # version takes.
        content = chunks if sse else b"".join(chunks)
        twin = http_cls(status, headers=headers, content=content, request=request)
        again = response_cls(
            raw=twin,
            cast_to=cast_to,
            client=client,
            stream=bool(sse),
            stream_cls=sync_stream if sse else None,
            options=options,
        )
        return again.parse()

    return replay


def _piece_read(call: TrackedCall, started: float, data: bytes) -> None:
    """One read of the body returned `data`: its time is the SDK's, and a copy is kept."""
    call.busy += _perf() - started
    call.reading = False
    _keep(call, data)


def _body_ended(call: TrackedCall, started: float, error: BaseException | None) -> None:
    """The body's last read: at its end (`error` None; the copy is whole unless cut) or failed."""
    call.busy += _perf() - started
    call.reading = False
    if error is not None:
        call.finish(error)
        return
    if call.body_size <= _BODY_LIMIT:
        call.body_complete = True
    call.finish()


def _keep(call: TrackedCall, data: bytes) -> None:
    body = call.body
    if body is None or call.done:
        return
    size = call.body_size + len(data)
    if size > _BODY_LIMIT:
        call.body_complete = False
        call.body_size = _BODY_LIMIT + 1
        return
    call.body_size = size
    body.append((data, call.busy))


def _tee(inner: Iterator[bytes], call: TrackedCall) -> Iterator[bytes]:
    """Yield `inner`'s pieces to the caller, keeping a copy and timing the SDK's reads."""
    if call.done:  # read again after the end (from the content httpx keeps): nothing new
        yield from inner
        return
    try:
        while True:
            call.reading = True
            started = _perf()
            try:
                data = next(inner)
            except StopIteration:
                _body_ended(call, started, None)
                return
            except BaseException as exc:
                _body_ended(call, started, exc)
                raise
            _piece_read(call, started, data)
            yield data
    finally:
        call.reading = False
        close = getattr(inner, "close", None)
        if close is not None:
            close()


async def _async_tee(inner: AsyncIterator[bytes], call: TrackedCall) -> AsyncIterator[bytes]:
    if call.done:
        async for data in inner:
            yield data
        return
    try:
        while True:
            call.reading = True
            started = _perf()
            try:
                data = await inner.__anext__()
            except StopAsyncIteration:
                _body_ended(call, started, None)
                return
            except BaseException as exc:
                _body_ended(call, started, exc)
                raise
            _piece_read(call, started, data)
            yield data
    finally:
        call.reading = False
        aclose = getattr(inner, "aclose", None)
        if aclose is not None:
            await aclose()
