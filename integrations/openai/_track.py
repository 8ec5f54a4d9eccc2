"""OpenAI on the core's tracked call: the per-client tracker and one `TrackedKind` per method.

Timing, argument stripping, streams and the hand-over to the emitter are the core's
(`posthog_llm.instrumentation`); this module only says what is OpenAI-specific: which objects
are streams and raw responses (`with_raw_response`, `with_streaming_response`), and the
`stream_options` we ask for.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import openai
from openai._base_client import AsyncAPIClient
from openai._legacy_response import LegacyAPIResponse
from openai._response import APIResponse, AsyncAPIResponse
from posthog_llm.instrumentation import (
    EMBEDDING,
    GENERATION,
    Emitter,
    TrackedCall,
    TrackedKind,
    Tracker,
    provider_from_base_url,
    run_tracked,
    run_tracked_async,
    track_async_sdk_response,
    track_async_sdk_stream,
    track_sdk_response,
    track_sdk_stream,
)

from . import _chat, _embeddings, _responses

__all__ = ["OpenAITracker", "CHAT", "RESPONSES", "EMBEDDINGS", "run_sync", "run_async"]

_UNSET = (openai.Omit, openai.NotGiven)


class OpenAITracker(Tracker):
    """Per-client state, shared with the client's `copy()` / `with_options()` copies."""

    secret_names = ("api_key", "_azure_ad_token", "admin_api_key")
    sdk_errors = (openai.OpenAIError,)
    framework = "openai"  # a generation open under this name is our own: not skipped

    def __init__(self, emitter: Emitter, azure: bool) -> None:
        super().__init__(emitter)
        self.azure = azure
        self._provider: tuple[str | None, str] | None = None

    def provider_name(self, client: Any) -> str:
        if self.azure:
            return "azure"
        cleaned = self.base_url(client)
        known = self._provider
        if known is None or known[0] != cleaned:
            known = self._provider = (cleaned, provider_from_base_url(cleaned))
        return known[1]


def _start_stream(stream: Any, call: TrackedCall) -> Any:
    if isinstance(stream, openai.AsyncStream):
        return track_async_sdk_stream(stream, call)
    if isinstance(stream, openai.Stream):
        return track_sdk_stream(stream, call)
    return stream  # not a stream we know: leave it alone, send nothing


# The SDK's own classes that read a raw response's body again for the event.
_REPLAY = (APIResponse, openai.Stream)


def _start_response(response: Any, call: TrackedCall) -> bool:
    # An async client's `with_raw_response` gives the legacy class too: its body is read async.
    if isinstance(response, AsyncAPIResponse) or (
        isinstance(response, LegacyAPIResponse) and isinstance(call.client, AsyncAPIClient)
    ):
        return track_async_sdk_response(response, call, _REPLAY)
    if isinstance(response, (APIResponse, LegacyAPIResponse)):
        return track_sdk_response(response, call, _REPLAY)
    return False


def _prepare_chat(call: TrackedCall, kwargs: dict[str, Any]) -> bool:
    # with_raw_response / with_streaming_response: the body is the caller's to read (its
    # lines, its bytes), so nothing can be hidden from them; no usage chunk is asked for.
    if call.stream and call.response_mode is None:
        options = kwargs.get("stream_options")
        if options is None or isinstance(options, _UNSET):
            options = {}
        # Ask for usage in the last chunk unless the caller said either way (`{}`, None or other
        # options alone say nothing); that extra chunk is hidden from the caller. A copy: the
        # caller's dict may be reused for other calls.
        if isinstance(options, Mapping) and "include_usage" not in options:
            kwargs["stream_options"] = {**options, "include_usage": True}
            call.hide_usage = True
    return True


CHAT = TrackedKind(
    GENERATION,
    ("messages", "tools"),
    _chat.build,
    _chat.observe_chunk,
    _start_stream,
    prepare=_prepare_chat,
    start_response=_start_response,
    answer_of_error=_chat.answer_of_error,
)
RESPONSES = TrackedKind(
    GENERATION,
    ("input", "tools"),
    _responses.build,
    _responses.observe_event,
    _start_stream,
    start_response=_start_response,
)
EMBEDDINGS = TrackedKind(
    EMBEDDING,
    ("input",),
    _embeddings.build,
    None,
    _start_stream,
    start_response=_start_response,
)


def run_sync(
    kind: TrackedKind, resource: Any, method: Callable[..., Any], args: Any, kwargs: Any
) -> Any:
    client = resource._client
    return run_tracked(kind, getattr(client, "_posthog_llm", None), client, method, args, kwargs)


async def run_async(
    kind: TrackedKind, resource: Any, method: Callable[..., Any], args: Any, kwargs: Any
) -> Any:
    client = resource._client
    tracker = getattr(client, "_posthog_llm", None)
    return await run_tracked_async(kind, tracker, client, method, args, kwargs)
