"""One tracked SDK call: pull out the `posthog_*` arguments, time the call, ship one event.

The hot path only records raw facts (the request arguments, the SDK's result or exception,
timings) in a `Call`. The event's properties are built later by `Call.properties`, a zero-arg
builder that runs on the sender's worker thread when the destination is our own `Client`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any, NamedTuple

import openai
from openai._legacy_response import LegacyAPIResponse
from posthog_llm.instrumentation import (
    EMBEDDING,
    GENERATION,
    GENERATION_KIND,
    Emitter,
    Scope,
    capture_internal_exceptions,
    clean_base_url,
    current_observation,
    error_text,
    make_scope,
    provider_from_base_url,
)

from . import _chat, _embeddings, _responses
from ._streams import track_async_stream, track_stream

__all__ = ["Tracker", "Call", "POSTHOG_ARGUMENTS", "run_sync", "run_async"]

FRAMEWORK = "openai"

# Removed from every tracked call before the SDK sees it. `posthog_provider_override` is also
# accepted so code written for posthog.ai.openai keeps working.
POSTHOG_ARGUMENTS = (
    "posthog_distinct_id",
    "posthog_trace_id",
    "posthog_session_id",
    "posthog_properties",
    "posthog_groups",
    "posthog_privacy_mode",
    "posthog_provider_override",
)

# openai's `with_raw_response` / `with_streaming_response` mark their calls with this header.
_RAW_RESPONSE_HEADER = "X-Stainless-Raw-Response"
_perf = time.perf_counter
_READ_AS_IS = (str, bytes, list, tuple, dict, openai.Omit, openai.NotGiven)


class Kind(NamedTuple):
    """How one tracked method turns into an event."""

    event: str
    list_arguments: tuple[str, ...]  # arguments we keep a copy of (the user may mutate them)
    build: Callable[[Call], dict[str, Any]]
    observe: Callable[[Call, Any], bool] | None  # per stream chunk; False hides the chunk


CHAT = Kind(GENERATION, ("messages", "tools"), _chat.build, _chat.observe_chunk)
RESPONSES = Kind(GENERATION, ("input", "tools"), _responses.build, _responses.observe_event)
EMBEDDINGS = Kind(EMBEDDING, ("input",), _embeddings.build, None)


class Tracker:
    """Per-client state, shared with the client's `copy()` / `with_options()` copies."""

    __slots__ = ("emitter", "azure", "urls")

    def __init__(self, emitter: Emitter, azure: bool) -> None:
        self.emitter = emitter
        self.azure = azure
        # (the client's base URL object, its cleaned text, the provider it implies): worked out
        # once, not per event. The SDK keeps the same URL object until base_url is set again.
        self.urls: tuple[Any, str | None, str] | None = None


class Call:
    """Raw facts about one tracked call; `properties()` turns them into the event."""

    __slots__ = (
        "kind",
        "client",
        "tracker",
        "params",
        "scope",
        "trace_id",
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
        "stream_error",
        "hide_usage",
        "reading",
        "done",
        "parent_id",
    )

    def __init__(
        self,
        kind: Kind,
        client: Any,
        tracker: Tracker,
        params: dict[str, Any],
        scope: Scope,
        provider: str | None,
    ) -> None:
        self.kind = kind
        self.client = client
        self.tracker = tracker
        self.params = params
        self.scope = scope
        self.trace_id = scope.trace_id or str(uuid.uuid4())
        self.parent_id: str | None = None  # the open span this call runs inside, if any
        self.privacy = tracker.emitter.privacy(scope)
        self.provider = provider
        self.stream = params.get("stream") is True
        self.result: Any = None
        self.error: BaseException | None = None
        self.latency: float | None = None
        self.request_latency = 0.0
        self.busy = 0.0  # time spent inside the SDK's stream iterator
        self.ttft: float | None = None
        self.chunks: list[Any] = []  # what a stream's chunks added, as plain tuples
        self.model: str | None = None  # a stream's served model
        self.usage: Any = None  # a stream's usage
        self.stream_error: str | None = None  # an error event inside a stream
        self.hide_usage = False
        self.reading = False  # inside the SDK's stream iterator right now
        self.done = False

    # -- outcomes (hot path: record and hand over) ----------------------------------------------

    def succeed(self, result: Any, elapsed: float) -> Any:
        """Record the SDK's result; returns it (streams come back wrapped, same SDK type)."""
        with capture_internal_exceptions():
            if isinstance(result, LegacyAPIResponse):
                # with_raw_response: parse() is cached, so the user's own parse() gets this object.
                parsed = result.parse()
                if self.stream:
                    self._start_stream(parsed, elapsed)
                    return result
                self.result = parsed
            elif self.stream:
                return self._start_stream(result, elapsed)
            else:
                self.result = result
            self.latency = elapsed
            self._emit()
        return result

    def fail(self, error: BaseException, elapsed: float) -> None:
        with capture_internal_exceptions():
            self.error = error
            self.latency = elapsed
            self._emit()

    def _start_stream(self, stream: Any, elapsed: float) -> Any:
        self.request_latency = elapsed
        if isinstance(stream, openai.AsyncStream):
            return track_async_stream(stream, self)
        if isinstance(stream, openai.Stream):
            return track_stream(stream, self)
        return stream  # not a stream we know: leave it alone, send nothing

    # -- streams -------------------------------------------------------------------------------

    def finish(self, error: BaseException | None = None) -> None:
        """End of a stream (exhausted, closed early, failed or dropped): send the event once."""
        if self.done:
            return
        self.done = True
        with capture_internal_exceptions():
            self.error = error
            self.latency = self.request_latency + self.busy
            if self.ttft is not None:
                self.ttft += self.request_latency
            self.tracker.emitter.emit(
                self.kind.event, self.properties, self.scope, trace_id=self.trace_id
            )

    def _emit(self) -> None:
        self.done = True
        self.tracker.emitter.emit(
            self.kind.event, self.properties, self.scope, trace_id=self.trace_id
        )

    # -- the builder (worker thread for our Client) ---------------------------------------------

    def properties(self) -> dict[str, Any]:
        return self.kind.build(self)

    def base_url(self) -> str | None:
        """The client's base URL without credentials (worker side)."""
        return self._urls()[1]

    def provider_name(self) -> str:
        if self.provider:
            return self.provider
        return self._urls()[2]

    def _urls(self) -> tuple[Any, str | None, str]:
        raw = self.client.base_url
        urls = self.tracker.urls
        if urls is None or urls[0] is not raw:
            cleaned = _scrub(clean_base_url(raw), self.secrets())
            provider = "azure" if self.tracker.azure else provider_from_base_url(cleaned)
            urls = self.tracker.urls = (raw, cleaned, provider)
        return urls

    def secrets(self) -> list[str]:
        """Credentials of the client, to be sure none ends up in an event."""
        found = []
        for name in ("api_key", "_azure_ad_token", "admin_api_key"):
            value = getattr(self.client, name, None)
            if isinstance(value, str) and len(value) >= 8:
                found.append(value)
        return found

    def error_text(self) -> str | None:
        if self.error is None:
            return None
        return error_text(self.error, privacy=self.privacy, secrets=self.secrets())


def _scrub(text: str | None, secrets: list[str]) -> str | None:
    if text:
        for secret in secrets:
            if secret in text:
                text = text.replace(secret, "[redacted]")
    return text


def begin(kind: Kind, client: Any, kwargs: dict[str, Any]) -> Call | None:
    """Strip the `posthog_*` arguments from `kwargs`; a Call to record, or None to pass through."""
    given = None
    for name in POSTHOG_ARGUMENTS:
        if name in kwargs:
            if given is None:
                given = {}
            given[name[8:]] = kwargs.pop(name)
    for name in kind.list_arguments:
        value = kwargs.get(name)
        if value is not None and not isinstance(value, _READ_AS_IS):
            kwargs[name] = list(value)  # an iterator: read it once, for the SDK and for us
    tracker: Tracker | None = getattr(client, "_posthog_llm", None)
    if tracker is None:
        return None
    overrides: Scope | None = None
    provider = None
    if given:
        provider = given.pop("provider_override", None)
        if given.get("privacy_mode") is False:
            # Per call, privacy can only be switched on; False leaves context and client in charge.
            del given["privacy_mode"]
        # A wrong type here is the caller's bug: say so now rather than drop the event later.
        overrides = make_scope(**given)
    with capture_internal_exceptions():
        emitter = tracker.emitter
        if not emitter.enabled:
            return None
        outer = current_observation()
        if outer is not None and outer.kind == GENERATION_KIND and outer.framework != FRAMEWORK:
            return None  # another framework reports this model call already: report it once
        extra_headers = kwargs.get("extra_headers")
        if extra_headers and extra_headers.get(_RAW_RESPONSE_HEADER) == "stream":
            return None  # with_streaming_response: the body is the user's to read; not tracked
        params = dict(kwargs)
        for name in kind.list_arguments:
            value = kwargs.get(name)
            if isinstance(value, list):
                params[name] = list(value)  # the caller may append to it before the event is built
        call = Call(kind, client, tracker, params, emitter.scope(overrides), provider)
        if outer is not None and call.trace_id == outer.trace_id:
            call.parent_id = outer.span_id
        if call.stream and kind is CHAT:
            if "stream_options" not in kwargs or isinstance(
                kwargs["stream_options"], (openai.Omit, openai.NotGiven)
            ):
                # Ask for usage in the last chunk; that extra chunk is hidden from the caller.
                kwargs["stream_options"] = {"include_usage": True}
                call.hide_usage = True
        return call
    return None


def run_sync(kind: Kind, resource: Any, method: Callable[..., Any], args: Any, kwargs: Any) -> Any:
    call = begin(kind, resource._client, kwargs)
    if call is None:
        return method(*args, **kwargs)
    start = _perf()
    try:
        result = method(*args, **kwargs)
    except BaseException as exc:
        call.fail(exc, _perf() - start)
        raise
    return call.succeed(result, _perf() - start)


async def run_async(
    kind: Kind, resource: Any, method: Callable[..., Any], args: Any, kwargs: Any
) -> Any:
    call = begin(kind, resource._client, kwargs)
    if call is None:
        return await method(*args, **kwargs)
    start = _perf()
    try:
        result = await method(*args, **kwargs)
    except BaseException as exc:
        call.fail(exc, _perf() - start)
        raise
    return call.succeed(result, _perf() - start)
