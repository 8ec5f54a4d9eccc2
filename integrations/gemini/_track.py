"""Gemini on the core's tracked call: the tracker and the tracked `models` modules."""

from __future__ import annotations

import contextvars
from typing import Any

from google.genai.models import AsyncModels, Models
from posthog_llm.instrumentation import (
    EMBEDDING,
    GENERATION,
    TrackedCall,
    TrackedKind,
    Tracker,
    header_secrets,
    run_tracked,
    run_tracked_async,
    track_async_iterator,
    track_iterator,
)

from . import _content
from ._chats import group_chat_rounds

__all__ = ["GeminiTracker", "TrackedModels", "TrackedAsyncModels"]


class GeminiTracker(Tracker):
    """Per-client state. The "client" it is asked about is the SDK's `BaseApiClient`."""

    default_provider = "gemini"
    framework = "gemini"

    def provider_name(self, client: Any) -> str:
        return "vertex" if getattr(client, "vertexai", False) else "gemini"

    def base_url(self, client: Any) -> str | None:
        options = getattr(client, "_http_options", None)
        return super().base_url(_URL(getattr(options, "base_url", None)))

    def secrets(self, client: Any) -> list[str]:
        found = []
        key = getattr(client, "api_key", None)
        if isinstance(key, str) and len(key) >= 8:
            found.append(key)
        token = getattr(getattr(client, "_credentials", None), "token", None)
        if isinstance(token, str) and len(token) >= 8:
            found.append(token)
        headers = getattr(getattr(client, "_http_options", None), "headers", None)
        found.extend(value for value in header_secrets(headers) if value not in found)
        return found


class _URL:
    __slots__ = ("base_url",)

    def __init__(self, base_url: Any) -> None:
        self.base_url = base_url


def _start_stream(stream: Any, call: TrackedCall) -> Any:
    if hasattr(stream, "__anext__"):
        return track_async_iterator(stream, call)
    if hasattr(stream, "__next__"):
        return track_iterator(stream, call)
    return stream


# The responses of the tracked `generate_content` running in this context: with automatic
# function calling, google-genai sends several requests for one call (each through
# `_generate_content_with_continuation`), and all of them count.
_requests: contextvars.ContextVar[list[Any] | None] = contextvars.ContextVar(
    "posthog_llm_gemini_requests", default=None
)


def _collect_requests(call: TrackedCall, kwargs: dict[str, Any]) -> bool:
    call.requests = []
    _requests.set(call.requests)  # reset by the tracked method once the call returns
    return True


def _note_request(response: Any) -> None:
    seen = _requests.get()
    if seen is not None:
        seen.append(response)


GENERATE = TrackedKind(
    GENERATION, ("contents",), _content.build, None, _start_stream, prepare=_collect_requests
)
GENERATE_STREAM = TrackedKind(
    GENERATION,
    ("contents",),
    _content.build,
    _content.observe_chunk,
    _start_stream,
    streams=True,
    request_on_first_read=True,  # google-genai's streams are generators
)
EMBED = TrackedKind(EMBEDDING, ("contents",), _content.build_embedding)


class TrackedModels(Models):
    """`client.models` with `generate_content`, `generate_content_stream`, `embed_content` tracked."""

    def __init__(self, api_client: Any, tracker: GeminiTracker) -> None:
        super().__init__(api_client)
        self._posthog_llm = tracker

    def generate_content(self, *args: Any, **kwargs: Any) -> Any:
        method = super().generate_content
        token = _requests.set(None)
        try:
            return run_tracked(GENERATE, self._posthog_llm, self._api_client, method, args, kwargs)
        finally:
            _requests.reset(token)

    def generate_content_stream(self, *args: Any, **kwargs: Any) -> Any:
        method = super().generate_content_stream
        tracker = self._posthog_llm
        return run_tracked(GENERATE_STREAM, tracker, self._api_client, method, args, kwargs)

    def embed_content(self, *args: Any, **kwargs: Any) -> Any:
        method = super().embed_content
        return run_tracked(EMBED, self._posthog_llm, self._api_client, method, args, kwargs)


class TrackedAsyncModels(AsyncModels):
    """`client.aio.models` with the same three methods tracked."""

    def __init__(self, api_client: Any, tracker: GeminiTracker) -> None:
        super().__init__(api_client)
        self._posthog_llm = tracker

    async def generate_content(self, *args: Any, **kwargs: Any) -> Any:
        method = super().generate_content
        tracker = self._posthog_llm
        token = _requests.set(None)
        try:
            return await run_tracked_async(
                GENERATE, tracker, self._api_client, method, args, kwargs
            )
        finally:
            _requests.reset(token)

    async def generate_content_stream(self, *args: Any, **kwargs: Any) -> Any:
        method = super().generate_content_stream
        tracker = self._posthog_llm
        return await run_tracked_async(
            GENERATE_STREAM, tracker, self._api_client, method, args, kwargs
        )

    async def embed_content(self, *args: Any, **kwargs: Any) -> Any:
        method = super().embed_content
        tracker = self._posthog_llm
        return await run_tracked_async(EMBED, tracker, self._api_client, method, args, kwargs)


# What the SDK's function-calling loop calls once per request: newer releases merge a
# generation's continuations into one answer there, older ones call `_generate_content`.
_PER_REQUEST = (
    "_generate_content_with_continuation"
    if hasattr(Models, "_generate_content_with_continuation")
    else "_generate_content"
)


def _noting(method: Any) -> Any:
    def per_request(self: Any, **kwargs: Any) -> Any:
        response = method(self, **kwargs)
        _note_request(response)
        return response

    return per_request


def _noting_async(method: Any) -> Any:
    async def per_request(self: Any, **kwargs: Any) -> Any:
        response = await method(self, **kwargs)
        _note_request(response)
        return response

    return per_request


setattr(TrackedModels, _PER_REQUEST, _noting(getattr(Models, _PER_REQUEST)))
setattr(TrackedAsyncModels, _PER_REQUEST, _noting_async(getattr(AsyncModels, _PER_REQUEST)))


group_chat_rounds(TrackedModels, TrackedAsyncModels)
