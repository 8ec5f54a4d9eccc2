"""`set_global_handler()`: capture every LangChain run in the process without passing callbacks.

LangChain's configure hooks add a handler to every callback manager whose hook variable
`.get()` returns one. A real `ContextVar` set in one thread is not seen by other threads (each
new thread starts with an empty context) nor by contexts copied before the set, so the hook
variable here is a process-wide slot with the `ContextVar.get()` signature: one assignment is
seen by every thread, asyncio task and executor at once.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from ._handler import PostHogCallbackHandler

__all__ = ["set_global_handler", "remove_global_handler", "get_global_handler"]


class _ProcessWideHandler:
    """Quacks like the `ContextVar` that `register_configure_hook` expects (only `.get()`)."""

    name = "posthog_llm_langchain_global_handler"

    def __init__(self) -> None:
        self.handler: PostHogCallbackHandler | None = None

    def get(self, default: Any = None) -> PostHogCallbackHandler | None:
        handler = self.handler
        return handler if handler is not None else default


_slot = _ProcessWideHandler()
_registered = False
_lock = threading.Lock()


def _register() -> None:
    global _registered
    if _registered:
        return
    from langchain_core.tracers.context import register_configure_hook

    # handle_class: LangChain adds the global handler only when no PostHogCallbackHandler is
    # already attached to the run, so passing one explicitly never doubles the events.
    register_configure_hook(
        _slot,  # type: ignore[arg-type]
        True,  # inheritable: child runs keep it
        PostHogCallbackHandler,
    )
    _registered = True


def set_global_handler(
    client: Any = None,
    *,
    distinct_id: Any = None,
    trace_id: Any = None,
    session_id: Any = None,
    properties: Mapping[str, Any] | None = None,
    groups: Mapping[str, Any] | None = None,
    privacy_mode: bool = False,
) -> PostHogCallbackHandler:
    """Capture every LangChain run in this process, in every thread and task.

    Takes the same options as `PostHogCallbackHandler` and returns the handler it installed
    (replacing any earlier one).

    >>> from posthog_llm.integrations.langchain import set_global_handler, remove_global_handler
    >>> handler = set_global_handler(distinct_id="user_123")
    >>> # chain.invoke({"topic": "owls"})  -> traced without config={"callbacks": [...]}
    >>> remove_global_handler()
    """
    handler = PostHogCallbackHandler(
        client,
        distinct_id=distinct_id,
        trace_id=trace_id,
        session_id=session_id,
        properties=properties,
        groups=groups,
        privacy_mode=privacy_mode,
    )
    with _lock:
        _register()
        _slot.handler = handler
    return handler


def remove_global_handler() -> None:
    """Stop capturing runs that were not given a handler explicitly."""
    with _lock:
        _slot.handler = None


def get_global_handler() -> PostHogCallbackHandler | None:
    """The handler installed by `set_global_handler()`, if any."""
    return _slot.handler
