"""Anthropic on the core's tracked call: the tracker and the tracked `Messages` resources."""

from __future__ import annotations

import functools
import time
from typing import Any

import anthropic
from anthropic._base_client import AsyncAPIClient
from anthropic._response import APIResponse, AsyncAPIResponse
from anthropic.resources.messages import AsyncMessages, Messages
from posthog_llm.instrumentation import (
    GENERATION,
    TrackedCall,
    TrackedKind,
    Tracker,
    begin_call,
    run_tracked,
    run_tracked_async,
    track_async_sdk_response,
    track_async_sdk_stream,
    track_sdk_response,
    track_sdk_stream,
)

from . import _messages

__all__ = [
    "AnthropicTracker",
    "TrackedMessages",
    "TrackedAsyncMessages",
    "tracked_beta_messages",
]

_perf = time.perf_counter
_STATE = "_posthog_llm"


class AnthropicTracker(Tracker):
    """Per-client state, shared with the client's `copy()` / `with_options()` copies."""

    default_provider = "anthropic"
    framework = "anthropic"
    # Anthropic's key or token, Bedrock's AWS credentials, Vertex's access token.
    secret_names = (
        "api_key",
        "auth_token",
        "aws_secret_key",
        "aws_access_key",
        "aws_session_token",
        "access_token",
    )
    sdk_errors = (anthropic.AnthropicError,)


def _start_stream(stream: Any, call: TrackedCall) -> Any:
    if isinstance(stream, anthropic.AsyncStream):
        return track_async_sdk_stream(stream, call)
    if isinstance(stream, anthropic.Stream):
        return track_sdk_stream(stream, call)
    return stream


def _raw_response_classes() -> tuple[type, ...]:
    # What `with_raw_response` returns has moved between SDK versions (the legacy class first,
    # `APIResponse` later); both have a cached `parse()`.
    found: list[type] = []
    try:
        from anthropic._legacy_response import LegacyAPIResponse

        found.append(LegacyAPIResponse)
    except ImportError:
        pass
    found.append(APIResponse)
    return tuple(found)


_RAW_RESPONSES = _raw_response_classes()
# The SDK's own classes that read a raw response's body again for the event.
_REPLAY = (APIResponse, anthropic.Stream)


def _start_response(response: Any, call: TrackedCall) -> bool:
    # An async client's raw response is the legacy class in older SDKs: its body is read async.
    if isinstance(response, AsyncAPIResponse) or (
        isinstance(response, _RAW_RESPONSES) and isinstance(call.client, AsyncAPIClient)
    ):
        return track_async_sdk_response(response, call, _REPLAY)
    if isinstance(response, _RAW_RESPONSES):
        return track_sdk_response(response, call, _REPLAY)
    return False


MESSAGES = TrackedKind(
    GENERATION,
    ("messages", "tools", "system"),
    _messages.build,
    _messages.observe_event,
    _start_stream,
    start_response=_start_response,
)
STREAM_HELPER = MESSAGES._replace(streams=True)


def _tracker(resource: Any) -> Tracker | None:
    return getattr(resource._client, _STATE, None)


def _tracked_manager(call: TrackedCall | None, manager: Any) -> Any:
    """A `messages.stream(...)` helper's manager, made to report the request it makes."""
    # The manager keeps its request in a private attribute, named after its class.
    attribute = f"_{type(manager).__name__}__api_request"
    request = getattr(manager, attribute, None)
    if call is None or request is None:
        return manager
    if not callable(request):  # the async manager's: a coroutine, awaited on entering
        setattr(manager, attribute, _tracked_async_request(call, request))
        return manager

    def tracked_request() -> Any:
        start = _perf()
        try:
            raw = request()
        except BaseException as exc:
            call.fail(exc, _perf() - start)
            raise
        return call.succeed(raw, _perf() - start)

    setattr(manager, attribute, tracked_request)
    return manager


async def _tracked_async_request(call: TrackedCall, request: Any) -> Any:
    start = _perf()
    try:
        raw = await request
    except BaseException as exc:
        call.fail(exc, _perf() - start)
        raise
    return call.succeed(raw, _perf() - start)


class TrackedMessages(Messages):
    """`client.messages` with `create`, `parse` and `stream` tracked."""

    def create(self, *args: Any, **kwargs: Any) -> Any:
        return run_tracked(MESSAGES, _tracker(self), self._client, super().create, args, kwargs)

    def parse(self, *args: Any, **kwargs: Any) -> Any:
        return run_tracked(MESSAGES, _tracker(self), self._client, super().parse, args, kwargs)

    def stream(self, *args: Any, **kwargs: Any) -> Any:
        call = begin_call(STREAM_HELPER, _tracker(self), self._client, kwargs)
        # A plain resource builds the manager, so an SDK whose helper goes through
        # `self.create(stream=True)` cannot report the call a second time.
        return _tracked_manager(call, Messages(self._client).stream(*args, **kwargs))


class TrackedAsyncMessages(AsyncMessages):
    """`client.messages` of an async client with `create`, `parse` and `stream` tracked."""

    async def create(self, *args: Any, **kwargs: Any) -> Any:
        return await run_tracked_async(
            MESSAGES, _tracker(self), self._client, super().create, args, kwargs
        )

    async def parse(self, *args: Any, **kwargs: Any) -> Any:
        return await run_tracked_async(
            MESSAGES, _tracker(self), self._client, super().parse, args, kwargs
        )

    def stream(self, *args: Any, **kwargs: Any) -> Any:
        call = begin_call(STREAM_HELPER, _tracker(self), self._client, kwargs)
        return _tracked_manager(call, AsyncMessages(self._client).stream(*args, **kwargs))


# -- client.beta.messages ---------------------------------------------------------------------------
#
# The beta resource's class differs by client (the first-party one; Bedrock's and Vertex's borrow
# its methods) and by SDK version (`parse` came later; Bedrock has none), so its tracked class is
# made from whichever class the client has: mixins in front of it, one per method it has.


class _BetaCreateStream:
    _client: Any
    _sdk_class: type

    def create(self, *args: Any, **kwargs: Any) -> Any:
        create = getattr(super(), "create")  # noqa: B009 - the SDK class after this mixin
        return run_tracked(MESSAGES, _tracker(self), self._client, create, args, kwargs)

    def stream(self, *args: Any, **kwargs: Any) -> Any:
        call = begin_call(STREAM_HELPER, _tracker(self), self._client, kwargs)
        return _tracked_manager(call, self._sdk_class(self._client).stream(*args, **kwargs))


class _BetaParse:
    _client: Any

    def parse(self, *args: Any, **kwargs: Any) -> Any:
        parse = getattr(super(), "parse")  # noqa: B009
        return run_tracked(MESSAGES, _tracker(self), self._client, parse, args, kwargs)


class _AsyncBetaCreateStream:
    _client: Any
    _sdk_class: type

    async def create(self, *args: Any, **kwargs: Any) -> Any:
        create = getattr(super(), "create")  # noqa: B009
        return await run_tracked_async(MESSAGES, _tracker(self), self._client, create, args, kwargs)

    def stream(self, *args: Any, **kwargs: Any) -> Any:
        call = begin_call(STREAM_HELPER, _tracker(self), self._client, kwargs)
        return _tracked_manager(call, self._sdk_class(self._client).stream(*args, **kwargs))


class _AsyncBetaParse:
    _client: Any

    async def parse(self, *args: Any, **kwargs: Any) -> Any:
        parse = getattr(super(), "parse")  # noqa: B009
        return await run_tracked_async(MESSAGES, _tracker(self), self._client, parse, args, kwargs)


@functools.cache
def tracked_beta_messages(sdk_class: type, sync: bool) -> type:
    """The tracked subclass of a client's `beta.messages` class (`create`, `stream`, `parse`)."""
    mixins: tuple[type, ...] = (_BetaCreateStream,) if sync else (_AsyncBetaCreateStream,)
    if hasattr(sdk_class, "parse"):
        mixins += (_BetaParse,) if sync else (_AsyncBetaParse,)
    namespace = {"_sdk_class": sdk_class, "__module__": __name__}
    return type(f"Tracked{sdk_class.__name__}", (*mixins, sdk_class), namespace)
