"""One trace for a chat message's automatic function calling.

google-genai 3 runs a chat's automatic function calling itself: `Chat.send_message` calls
`models.generate_content` once per round (the model asks for a function, the SDK runs it and
asks again). Each round is a generation of its own; outside any span each would start a trace
of its own, so one message would read as several unrelated requests. A message sent through a
tracked client's chat therefore runs its rounds in one trace, unless a span, a framework run or
`posthog_llm.context(trace_id=...)` gives them one already. (Streamed messages are left alone: a
context set inside a generator would leak into the consumer's code between chunks.)
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from typing import Any

from posthog_llm import context
from posthog_llm.instrumentation import current_observation, current_scope

__all__ = ["group_chat_rounds"]

_MARK = "__posthog_llm_rounds__"


def _needs_trace(chat: Any, tracked: tuple[type, ...]) -> bool:
    if not isinstance(getattr(chat, "_modules", None), tracked):
        return False  # a chat of a client we do not track
    return current_observation() is None and current_scope().trace_id is None


def group_chat_rounds(tracked: type, tracked_async: type) -> None:
    """Make `Chat.send_message` and `AsyncChat.send_message` of tracked clients run their rounds
    in one trace (installed once; chats of other clients call through untouched)."""
    try:
        from google.genai import chats
    except ImportError:  # pragma: no cover - the SDK without chats
        return
    sync_chat = getattr(chats, "Chat", None)
    original = getattr(sync_chat, "send_message", None)
    if original is not None and not getattr(original, _MARK, False):
        sync_chat.send_message = _sync(original, (tracked,))  # type: ignore[union-attr]
    async_chat = getattr(chats, "AsyncChat", None)
    original_async = getattr(async_chat, "send_message", None)
    if original_async is not None and not getattr(original_async, _MARK, False):
        async_chat.send_message = _async(original_async, (tracked_async,))  # type: ignore[union-attr]


def _sync(original: Callable[..., Any], tracked: tuple[type, ...]) -> Callable[..., Any]:
    @functools.wraps(original)
    def send_message(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not _needs_trace(self, tracked):
            return original(self, *args, **kwargs)
        with context(trace_id=str(uuid.uuid4())):
            return original(self, *args, **kwargs)

    setattr(send_message, _MARK, True)
    return send_message


def _async(original: Callable[..., Any], tracked: tuple[type, ...]) -> Callable[..., Any]:
    @functools.wraps(original)
    async def send_message(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not _needs_trace(self, tracked):
            return await original(self, *args, **kwargs)
        with context(trace_id=str(uuid.uuid4())):
            return await original(self, *args, **kwargs)

    setattr(send_message, _MARK, True)
    return send_message
