"""Registration on LlamaIndex's root dispatcher, which sees every span and event whatever the
order in which `Settings.llm`, `Settings.embed_model`, indexes and engines were created."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from posthog_llm.instrumentation import report_internal_error, require

require("llama_index.core.instrumentation", "llama-index")

from llama_index.core.instrumentation import get_dispatcher  # type: ignore[attr-defined]  # noqa: E402
from llama_index.core.instrumentation.event_handlers import BaseEventHandler  # noqa: E402
from llama_index.core.instrumentation.span import BaseSpan  # noqa: E402
from llama_index.core.instrumentation.span_handlers import BaseSpanHandler  # noqa: E402

from ._handler import PostHogLlamaIndexHandler  # noqa: E402

__all__ = ["set_global_handler", "remove_global_handler", "get_global_handler"]

_lock = threading.Lock()
_installed: tuple[PostHogLlamaIndexHandler, Any, Any] | None = None


class _SpanHandler(BaseSpanHandler[BaseSpan]):
    """Forwards span hooks to a PostHogLlamaIndexHandler (keeps no spans of its own); the
    handler's hooks hold the guard (off: nothing; our error: reported, never raised)."""

    handler: Any = None

    @classmethod
    def class_name(cls) -> str:
        return "PostHogSpanHandler"

    def span_enter(
        self,
        id_: str,
        bound_args: Any,
        instance: Any = None,
        parent_id: str | None = None,
        tags: Any = None,
        **kwargs: Any,
    ) -> None:
        self.handler.span_enter(id_, bound_args, instance, parent_id, tags)

    def span_exit(
        self, id_: str, bound_args: Any, instance: Any = None, result: Any = None, **kwargs: Any
    ) -> None:
        self.handler.span_exit(id_, bound_args, instance, result)

    def span_drop(
        self,
        id_: str,
        bound_args: Any,
        instance: Any = None,
        err: BaseException | None = None,
        **kwargs: Any,
    ) -> None:
        self.handler.span_drop(id_, bound_args, instance, err)

    def close(self) -> None:
        self.handler.flush_pending()

    # Abstract in BaseSpanHandler; unused because the three hooks above are overridden.
    def new_span(self, *args: Any, **kwargs: Any) -> None:
        return None

    def prepare_to_exit_span(self, *args: Any, **kwargs: Any) -> None:
        return None

    def prepare_to_drop_span(self, *args: Any, **kwargs: Any) -> None:
        return None


class _EventHandler(BaseEventHandler):
    """Forwards instrumentation events to a PostHogLlamaIndexHandler."""

    handler: Any = None

    @classmethod
    def class_name(cls) -> str:
        return "PostHogEventHandler"

    def handle(self, event: Any, **kwargs: Any) -> None:
        handler = self.handler
        if handler._on:
            try:
                # Most events (query, retrieval, synthesis ...) have no route: one dict lookup.
                route = handler._event_routes.get(type(event), _MISSING)
                if route is _MISSING:
                    route = handler._route(type(event))
                if route is not None:
                    route(event)
            except Exception as exc:
                report_internal_error(exc)


_MISSING: Any = object()


def set_global_handler(
    client: Any = None,
    *,
    distinct_id: Any = None,
    session_id: Any = None,
    properties: Mapping[str, Any] | None = None,
    groups: Mapping[str, Any] | None = None,
    privacy_mode: bool = False,
) -> PostHogLlamaIndexHandler:
    """Capture every LlamaIndex query, chat, agent run, LLM and embedding call from now on.

    Call it once, before or after setting `Settings.llm` and building indexes. Calling it again
    replaces the earlier registration, so events are never sent twice.

    >>> import posthog_llm
    >>> from posthog_llm.integrations import llama_index as posthog_li
    >>> handler = posthog_li.set_global_handler(distinct_id="user_123")  # doctest: +SKIP
    >>> with posthog_llm.context(distinct_id="user_456", session_id="s1"):  # doctest: +SKIP
    ...     index.as_query_engine().query("What did the author do?")
    """
    global _installed
    handler = PostHogLlamaIndexHandler(
        client,
        distinct_id=distinct_id,
        session_id=session_id,
        properties=properties,
        groups=groups,
        privacy_mode=privacy_mode,
    )
    span_handler = _SpanHandler()
    span_handler.handler = handler
    event_handler = _EventHandler()
    event_handler.handler = handler
    with _lock:
        if _installed is not None:
            # A query still being streamed stays one trace: the new handler finishes it
            # (registered again with the same client and options; else the old one sends it
            # as it is now).
            handler.adopt(_installed[0])
        _uninstall()
        dispatcher = get_dispatcher()
        dispatcher.add_span_handler(span_handler)
        dispatcher.add_event_handler(event_handler)
        _installed = (handler, span_handler, event_handler)
    return handler


def remove_global_handler() -> None:
    """Stop all capture by the handler `set_global_handler()` registered.

    Traces still waiting (an unread stream) are sent as they are; nothing is captured after.
    """
    with _lock:
        _uninstall()


def get_global_handler() -> PostHogLlamaIndexHandler | None:
    """The registered handler, or None."""
    installed = _installed
    return installed[0] if installed is not None else None


def _uninstall() -> None:
    global _installed
    installed = _installed
    if installed is None:
        return
    _installed = None
    handler, span_handler, event_handler = installed
    handler.flush_pending()  # what was captured before removal is sent, even if unfinished
    handler.close()
    dispatcher = get_dispatcher()
    # New lists, never in-place removal: a dispatch running in another thread keeps iterating
    # the list it started with.
    dispatcher.span_handlers = [h for h in dispatcher.span_handlers if h is not span_handler]
    dispatcher.event_handlers = [h for h in dispatcher.event_handlers if h is not event_handler]
