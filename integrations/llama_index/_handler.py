"""`PostHogLlamaIndexHandler`: span and event handlers on LlamaIndex's root dispatcher.

How the facts arrive (llama-index-core 0.14, `llama_index.core.instrumentation`):
- every instrumented method opens a span `Class.method-<uuid4>`; its parent comes from a
  ContextVar, so nesting survives `asyncio.gather` and threads started with a copied context;
- LLM and embedding calls send Start / InProgress / End events tagged with their span id;
- an error drops the span and each ancestor it propagates through (`span_drop(err)`);
- a streamed LLM call's span ends when it returns the generator; its End event comes later,
  when the consumer has read the stream.

The hooks only append what they are handed, and a timestamp, to their trace's log (`_records`).
Once per trace, at its root, the handler works out identity and opens the one observation that
nested work joins (`_nesting`); when the trace is complete, the whole log is queued as one item
and `_replay` rebuilds its spans and events on the sender's worker thread.
"""

from __future__ import annotations

import sys
import threading
import time
import types
import uuid
import weakref
from collections.abc import Callable, Mapping
from typing import Any

from posthog_llm.instrumentation import (
    GENERATION_KIND,
    SPAN_KIND,
    TRACE_KIND,
    Emitter,
    current_observation,
    current_scope,
    open_observation,
    read_deferred_calls,
    register_model_call_check,
    report_internal_error,
    require,
    scope_opened_inside,
    with_trace_id,
)

require("llama_index.core.instrumentation", "llama-index")

from llama_index.core.base.response.schema import Response as _RESPONSE  # noqa: E402
from llama_index.core.schema import NodeWithScore  # noqa: E402

from . import _llm, _nesting, _spans  # noqa: E402
from ._lifecycle import TraceLifecycle  # noqa: E402
from ._records import (  # noqa: E402
    CHAT_START,
    COMPLETION_START,
    DROP,
    EMBEDDING_END,
    EMBEDDING_START,
    ENTER,
    EXIT,
    INNER,
    LAZY,
    LLM_END,
    LLM_ERROR,
    SCOPE,
    Inner,
    Trace,
)
from ._replay import KINDS, kind_of, root_kind  # noqa: E402
from ._spans import COUNTED, EMBEDDING, FRAMEWORK, LLM, NOISE, USERS_FUNCTION, VISIBLE, Kind  # noqa: E402
from ._stream_tracking import MAX_STACK_WALK  # noqa: E402

__all__ = ["PostHogLlamaIndexHandler", "FRAMEWORK"]

_perf_counter = time.perf_counter
_GENERATOR_TYPES = frozenset({types.GeneratorType, types.AsyncGeneratorType})
_NODE_TYPES = frozenset({NodeWithScore})  # retrieved and reranked nodes
_BATCH_EMBEDDING_METHODS = frozenset({"get_text_embedding_batch", "aget_text_embedding_batch"})
_INDEX_BUILDERS = frozenset(
    {
        "from_documents",
        "build_index_from_nodes",
        "insert_nodes",
        "ainsert_nodes",
        "insert",
        "refresh_ref_docs",
    }
)


class PostHogLlamaIndexHandler(TraceLifecycle):
    """Turns LlamaIndex queries, chats, agent runs, LLM and embedding calls into PostHog events.

    Usually created and registered by `posthog_li.set_global_handler(...)`:

    >>> from posthog_llm.integrations import llama_index as posthog_li
    >>> handler = posthog_li.set_global_handler(distinct_id="user_123")   # doctest: +SKIP
    >>> index.as_query_engine().query("What did the author do?")          # doctest: +SKIP

    `stream_timeout` (seconds of inactivity, default 300) is how long an unconsumed or abandoned
    stream keeps its trace open before it is sent as it is; `open_trace_timeout` (default 3600)
    does the same for an operation that never ends (a span LlamaIndex never closed). Every
    internal map is bounded (`max_open_spans`, `max_open_traces`, `max_pending`).
    """

    stream_timeout: float = 300.0
    open_trace_timeout: float = 3600.0
    max_open_spans: int = 100_000
    max_open_traces: int = 10_000
    max_pending: int = 10_000

    def __init__(
        self,
        client: Any = None,
        *,
        distinct_id: Any = None,
        session_id: Any = None,
        properties: Mapping[str, Any] | None = None,
        groups: Mapping[str, Any] | None = None,
        privacy_mode: bool = False,
    ) -> None:
        self._emitter = Emitter(
            client,
            framework=FRAMEWORK,
            distinct_id=distinct_id,
            session_id=session_id,
            properties=properties,
            groups=groups,
            privacy_mode=privacy_mode,
        )
        self._on = True
        self._lock = threading.Lock()
        # span id (open, or of an unsent trace) -> its trace (`Inner` for an internal span)
        self._spans: dict[str, Trace | Inner] = {}
        self._traces: dict[str, Trace] = {}  # root span id -> open trace
        # LLM span id -> (its trace, slot): see `_replay.gen_slot`
        self._gens: dict[str, tuple[Trace, list[Any]]] = {}
        self._frames: dict[int, Any] = {}  # id(generator frame) -> StreamFrame
        _handlers.add(self)
        self._event_routes: dict[type, Callable[[Any], None] | None] = {}
        self._plain_embedding_ends: frozenset[type] = frozenset()
        self._last_sweep = time.perf_counter()
        self._sweeper: threading.Thread | None = None
        self._sweeper_lock = threading.Lock()
        self._wake = threading.Event()
        _nesting.watch(self)
        # A stream the caller stopped reading (a `break`) keeps its trace open until
        # `stream_timeout`: a client shutting down, or the process ending, sends it as it is.
        self._emitter.on_shutdown(self._hand_over)

    def __repr__(self) -> str:
        return f"<PostHogLlamaIndexHandler {'on' if self._on else 'off'}>"

    # -- public ------------------------------------------------------------------------------

    @property
    def active(self) -> bool:
        return self._on

    def pending(self) -> dict[str, int]:
        """Sizes of the internal maps (open spans, traces, streams): for tests and debugging."""
        return {
            "spans": len(self._spans),
            "traces": len(self._traces),
            "generations": len(self._gens),
            "streams": len(self._frames),
        }

    def flush_pending(self) -> int:
        """Send every trace still waiting (open streams included) as it is now; returns how many."""
        with self._lock:
            traces = list(self._traces.values())
        for trace in traces:
            self._evict(trace)
        return len(traces)

    def adopt(self, earlier: PostHogLlamaIndexHandler) -> bool:
        """Take over what `earlier` still follows (a query whose stream is not read yet), so a
        registration that replaces it finishes those traces whole (`set_global_handler`).

        Only from a handler with the same client and options (a notebook cell run again): what
        one started for another project, or another person, is not sent as this one's. False
        when nothing was taken over."""
        mine, theirs = self._emitter, earlier._emitter
        if mine._client is not theirs._client or mine.defaults != theirs.defaults:
            return False
        with earlier._lock, self._lock:
            self._spans.update(earlier._spans)
            self._traces.update(earlier._traces)
            self._gens.update(earlier._gens)
            self._frames.update(earlier._frames)
            earlier._spans.clear()
            earlier._traces.clear()
            earlier._gens.clear()
            earlier._frames.clear()
        if self._traces:
            self._ensure_sweeper()
        return True

    def _hand_over(self) -> None:
        if self._on and self._traces:
            self.flush_pending()

    def close(self) -> None:
        """Stop capturing and forget all state (what `remove_global_handler()` calls)."""
        self._on = False
        self._wake.set()
        with self._lock:
            self._spans.clear()
            self._traces.clear()
            self._gens.clear()
            self._frames.clear()

    # -- span hooks ----------------------------------------------------------------------------
    # Called by LlamaIndex's dispatcher, which swallows whatever they raise without a word: the
    # public hooks guard themselves and report (debug log) instead; `_register`'s span handler
    # forwards to them. They run ~40 times per query: a dict lookup, an append to the trace's
    # log, nothing else, except once per trace at its root.

    def span_enter(
        self,
        id_: str,
        bound_args: Any,
        instance: Any = None,
        parent_id: str | None = None,
        tags: Any = None,
        **kwargs: Any,
    ) -> None:
        if self._on:
            try:
                self._enter(id_, bound_args, instance, parent_id, tags)
            except Exception as exc:
                report_internal_error(exc)

    def span_exit(
        self, id_: str, bound_args: Any, instance: Any = None, result: Any = None, **kwargs: Any
    ) -> None:
        if self._on:
            try:
                self._exit(id_, instance, result)
            except Exception as exc:
                report_internal_error(exc)

    def span_drop(
        self,
        id_: str,
        bound_args: Any,
        instance: Any = None,
        err: BaseException | None = None,
        **kwargs: Any,
    ) -> None:
        if self._on:
            try:
                self._drop(id_, err)
            except Exception as exc:
                report_internal_error(exc)

    def _enter(
        self, id_: str, bound_args: Any, instance: Any, parent_id: str | None, tags: Any
    ) -> None:
        spans = self._spans
        entry = spans.get(parent_id)  # type: ignore[arg-type]  # None is never a key
        if entry is None:
            self._root(id_, bound_args, instance, parent_id, tags)
            return
        trace: Trace = entry.trace if type(entry) is Inner else entry  # type: ignore[assignment]
        if trace.streams and type(entry) is Inner:
            # Work a returned generator runs, under plumbing LlamaIndex started elsewhere (a
            # streamed chat's writer thread): it belongs under the span that returned the
            # generator, as in a streamed query, not under the plumbing's visible ancestor.
            origin = self._stream_origin()
            if origin is not None and origin.trace is trace and not origin.llm:
                parent_id = origin.origin
        # The arguments mapping, not the BoundArguments around it (which holds a fresh
        # inspect.Signature per call). LLM and embedding calls: none, their events carry what
        # their builders read.
        args = None
        if instance is not None:
            kind = (KINDS.get((type(instance), id_[:-37])) or kind_of(instance, id_)).kind
            if not kind:  # internal: only where it sits, nothing kept
                spans[id_] = trace.inner  # type: ignore[assignment]  # None once sent: a miss
                trace.log += (INNER, id_, parent_id, _perf_counter())
                trace.opened.append(id_)
                return
            if kind >= VISIBLE:
                args = getattr(bound_args, "arguments", bound_args)
                if kind in COUNTED:
                    args = _spans.light_arguments(kind, args)
        else:
            args = getattr(bound_args, "arguments", bound_args)
            if _spans.is_users_function():  # a span of its own, or a workflow step
                instance = USERS_FUNCTION
        if trace.nested is not None:  # work from elsewhere ran in this trace: a span of the
            _nesting.foreign_parent(trace, id_, parent_id)  # user's may be open here
        spans[id_] = trace
        now = _perf_counter()
        trace.log += (ENTER, id_, parent_id, instance, args, tags, now)
        scope = scope_opened_inside(trace.scope, trace.context)
        if scope is not None:  # a context opened inside the trace: this span's events are its
            trace.log += (SCOPE, id_, scope, now)
        trace.opened.append(id_)

    def _exit(self, id_: str, instance: Any, result: Any) -> None:
        # Ended spans stay resolvable until their trace is sent: a thread or task started inside
        # a span may open its first child after the span ended (a streamed chat's writer thread).
        entry = self._spans.get(id_)
        if entry is None:
            return
        kind = type(result)
        if type(entry) is Inner:
            trace = entry.trace
            if kind in _GENERATOR_TYPES:
                self._remember_stream(result, trace, id_, instance, True)
        else:
            trace = entry  # type: ignore[assignment]
            if kind is _RESPONSE:
                # A query's or synthesizer's Response: its text is all its event reads; its
                # source nodes need not stay alive until the worker runs.
                if type(result.response) is str:
                    result = result.response
            elif kind is list:
                if result and type(result[0]) in _NODE_TYPES:
                    result = self._snapshot(id_, instance, result)
            elif kind in _GENERATOR_TYPES:
                self._remember_stream(result, trace, id_, instance)
            trace.log += (EXIT, id_, result, _perf_counter())
        trace.closed.append(None)
        if trace.root_done or id_ == trace.key:
            self._closed(trace, id_)

    def _drop(self, id_: str, err: BaseException | None) -> None:
        entry = self._spans.get(id_)
        if entry is None:
            return
        if isinstance(entry, Inner):
            trace = entry.trace
        else:
            trace = entry
            trace.log += (DROP, id_, err, _perf_counter())
            if self._gens.pop(id_, None) is not None:
                trace.closed.append(None)  # its LLM call ends with it
        trace.closed.append(None)
        if trace.root_done or id_ == trace.key:
            self._closed(trace, id_)

    @staticmethod
    def _snapshot(id_: str, instance: Any, result: list[Any]) -> Any:
        """Retrieved and reranked nodes: (node, score) copied now, scores may change later."""
        if instance is None:
            return result
        return _spans.snapshot_result(kind_of(instance, id_).kind, result)

    # -- roots (once per trace) ----------------------------------------------------------------

    def _root(
        self, id_: str, bound_args: Any, instance: Any, parent_id: str | None, tags: Any
    ) -> None:
        now = _perf_counter()
        spans = self._spans
        if len(spans) >= self.max_open_spans:
            self._trim(spans)
        args = getattr(bound_args, "arguments", bound_args)
        if instance is None and _spans.is_users_function():
            instance = USERS_FUNCTION  # the user's own function: a span, or the trace
        # A span without parent may be work a returned generator runs lazily (a streamed query).
        origin = self._stream_origin() if parent_id is None and self._frames else None
        if origin is not None and not origin.trace.done:
            trace = origin.trace
            spans[id_] = trace
            trace.log += (LAZY, id_, origin.origin, instance, args, tags, now)
            trace.opened.append(id_)
            with self._lock:
                trace.awaiting = False
            trace.last = now
            return
        self._start_trace(id_, root_kind(instance, id_), instance, args, tags, now)

    def _start_trace(
        self, id_: str, kind: Kind, instance: Any, args: Any, tags: Any, now: float
    ) -> None:
        emitter = self._emitter
        if not emitter.enabled:
            return
        scope = emitter.scope()
        k = kind.kind
        batch = k == EMBEDDING and kind.name.rpartition(".")[2] in _BATCH_EMBEDDING_METHODS
        # The root span's uuid is the trace id, except for a batch embedding, whose own event
        # (with that uuid as span id) sits under the trace.
        outer = current_observation()
        if outer is not None and scope.trace_id == outer.trace_id:
            # Inside another integration's step or a user span: join that trace. The root is
            # sent as an `$ai_span` under it (or, for a bare call, only its own event is sent).
            trace = Trace(outer.trace_id, id_, scope, emitter.privacy(scope), kind, now)
            if k >= VISIBLE:
                trace.parent = outer.span_id
                trace.pvis = id_[-36:]
            elif k == NOISE:
                trace.joining = outer  # its span id is read if something inside is sent
                trace.emit = False
            else:
                trace.pvis = outer.span_id
                trace.emit = False
            self._open_root(trace, id_, instance, args, tags, now)
            return
        trace_id = scope.trace_id or (str(uuid.uuid4()) if batch else id_[-36:])
        trace = Trace(trace_id, id_, scope, emitter.privacy(scope), kind, now)
        if k >= VISIBLE:
            trace.pvis = trace.id
        elif batch:
            trace.pvis = trace.id  # an index build: the batch embedding is the root we get
            trace.name = _index_build_name()
        elif k == NOISE:
            trace.pvis = trace.id
            trace.emit = None
        else:  # a bare LLM or embedding call: its own event is enough, like a direct SDK call
            trace.emit = False
        self._open_root(trace, id_, instance, args, tags, now)

    def _open_root(
        self, trace: Trace, id_: str, instance: Any, args: Any, tags: Any, now: float
    ) -> None:
        k = trace.kind.kind
        args = _spans.light_arguments(k, args)
        if k >= VISIBLE or k == LLM:
            # The trace's one observation: nested work finds the span it runs in through it,
            # and reads the trace id from its scope. That scope is the observation's alone
            # (the queued trace keeps the identity scope, often shared by many traces).
            trace.obs = open_observation(
                (TRACE_KIND if trace.parent is None else SPAN_KIND)
                if k >= VISIBLE
                else GENERATION_KIND,
                trace_id=trace.id,
                span_id=trace.pvis if k >= VISIBLE and trace.pvis is not None else id_[-36:],
                scope=with_trace_id(trace.scope, trace.id),
                framework=FRAMEWORK,
                client=self._emitter._client,
            )
            trace.client = trace.obs.client
        else:
            trace.client = self._emitter.destination()
        trace.log += (ENTER, id_, None, instance, args, tags, now)
        trace.context = current_scope()
        trace.opened.append(id_)
        self._spans[id_] = trace
        traces = self._traces
        if len(traces) >= self.max_open_traces:
            oldest = next(iter(traces.values()), None)
            if oldest is not None:
                self._evict(oldest)
        traces[id_] = trace
        if now - self._last_sweep > 1.0:
            self._sweep(now)

    # -- events --------------------------------------------------------------------------------

    def handle(self, event: Any, **kwargs: Any) -> None:
        if not self._on:
            return
        try:
            route = self._event_routes.get(type(event), _MISSING)
            if route is _MISSING:
                route = self._route(type(event))
            if route is not None:
                route(event)
        except Exception as exc:
            report_internal_error(exc)

    def _route(self, cls: type) -> Callable[[Any], None] | None:
        from llama_index.core.instrumentation.events import embedding as emb_events
        from llama_index.core.instrumentation.events import exception as exc_events
        from llama_index.core.instrumentation.events import llm as llm_events

        routes: list[tuple[type, Callable[[Any], None]]] = [
            (llm_events.LLMChatStartEvent, self._on_chat_start),
            (llm_events.LLMCompletionStartEvent, self._on_completion_start),
            (llm_events.LLMChatInProgressEvent, self._on_progress),
            (llm_events.LLMCompletionInProgressEvent, self._on_progress),
            (llm_events.LLMChatEndEvent, self._on_llm_end),
            (llm_events.LLMCompletionEndEvent, self._on_llm_end),
            (emb_events.EmbeddingStartEvent, self._on_embedding_start),
            (emb_events.EmbeddingEndEvent, self._on_embedding_end),
            (exc_events.ExceptionEvent, self._on_exception),
        ]
        sparse_end = getattr(emb_events, "SparseEmbeddingEndEvent", None)
        if sparse_end is not None:
            routes.append((sparse_end, self._on_embedding_end))
        self._plain_embedding_ends = frozenset(
            c for c in (emb_events.EmbeddingEndEvent, sparse_end) if c is not None
        )
        route = None
        for event_cls, handler in routes:
            if issubclass(cls, event_cls):
                route = handler
                break
        if len(self._event_routes) < 1024:
            self._event_routes[cls] = route
        return route

    # Events are logged as the few facts the builders read, not the event objects (each one a
    # pydantic model with its own dicts and sets for the collector to track while queued).

    def _on_chat_start(self, event: Any) -> None:
        # The messages are copied now: chat engines append to the same history list later.
        self._llm_start(event, CHAT_START, list(event.messages))

    def _on_completion_start(self, event: Any) -> None:
        self._llm_start(event, COMPLETION_START, event.prompt)

    def _llm_start(self, event: Any, tag: int, sent: Any) -> None:
        span_id = event.span_id
        trace = self._spans.get(span_id) if span_id is not None else None
        if type(trace) is not Trace:  # not ours, or an internal span
            return
        slot: list[Any] = [
            None,
            None,
            None,
            None,
            None,
            event.additional_kwargs,
            event.model_dict,
            None,
        ]
        if self._frames:
            # astream_chat() runs stream_chat() lazily, from inside the generator it returned.
            origin = self._stream_origin(llm=True)
            if origin is not None and origin.trace is trace:
                slot[4] = origin.origin
        gens = self._gens
        if len(gens) >= self.max_pending:
            self._trim(gens)
        gens[span_id] = (trace, slot)
        trace.log += (tag, span_id, _perf_counter(), slot, sent)
        trace.opened.append(span_id)

    def _on_progress(self, event: Any) -> None:
        entry = self._gens.get(event.span_id)
        if entry is None:
            return
        now = _perf_counter()
        trace, slot = entry
        if slot[0] is None:
            slot[0] = now
        slot[1] = now
        slot[2] = event.response
        trace.last = now

    def _on_llm_end(self, event: Any) -> None:
        span_id = event.span_id
        entry = self._gens.pop(span_id, None)
        response = event.response
        if entry is not None:
            # The text as the call returned it: the response is read later, on the worker,
            # and an agent may have rewritten it by then (ReActAgent cuts its text in place).
            entry[1][7] = _text_of(response)
        self._llm_done(span_id, entry, LLM_END, response)

    def _on_exception(self, event: Any) -> None:
        # Sent when a streamed LLM call fails (or its consumer closes it) mid-stream.
        span_id = event.span_id
        entry = self._gens.pop(span_id, None) if span_id else None
        self._llm_done(span_id, entry, LLM_ERROR, event.exception)

    def _llm_done(
        self, span_id: str, entry: tuple[Trace, list[Any]] | None, tag: int, outcome: Any
    ) -> None:
        if entry is None:
            return
        trace, slot = entry
        key = slot[3]
        if key is not None:  # the stream it returned is read: lazy work no longer joins it
            frame = self._frames.get(key)
            if frame is not None and frame.origin == span_id:
                self._frames.pop(key, None)
        trace.log += (tag, span_id, _perf_counter(), slot, outcome)
        trace.closed.append(None)
        if trace.root_done:
            self._settle(trace)

    def _on_embedding_start(self, event: Any) -> None:
        span_id = event.span_id
        trace = self._spans.get(span_id) if span_id is not None else None
        if type(trace) is Trace:
            trace.log += (EMBEDDING_START, span_id, _perf_counter(), event.model_dict, None)

    def _on_embedding_end(self, event: Any) -> None:
        span_id = event.span_id
        trace = self._spans.get(span_id) if span_id is not None else None
        if type(trace) is Trace:
            # LlamaIndex's own end events carry no usage: only a subclass (an integration
            # reporting tokens) is kept for the builder to read.
            extra = None if type(event) in self._plain_embedding_ends else event
            trace.log += (EMBEDDING_END, span_id, _perf_counter(), event.chunks, extra)


_MISSING: Any = object()

# Every handler made (weakly): a provider drop-in asks them whether its call is one of theirs.
_handlers: weakref.WeakSet[PostHogLlamaIndexHandler] = weakref.WeakSet()


def _streamed_llm_call_running() -> Any:
    """Whether this code runs inside the stream an LLM call of ours returned (its provider
    request is made lazily, as the stream is read, after the LLM's span ended): the call is
    reported by its generation, and a drop-in client the LLM uses leaves it out, handing that
    generation's observation (answered here) its facts; True when it cannot be named."""
    for handler in list(_handlers):
        if not (handler._on and handler._frames):
            continue
        origin = handler._stream_origin(llm=True)
        if origin is not None:
            obs = _nesting.generation_of(origin.trace, origin.origin)
            return obs if obs is not None else True
    return False


register_model_call_check(FRAMEWORK, _streamed_llm_call_running)
# Its generation builder takes in what a drop-in call made inside an LLM call was told and read.
read_deferred_calls(FRAMEWORK)


def _index_build_name() -> str | None:
    """`VectorStoreIndex.from_documents` when a batch embedding runs inside an index build."""
    frame: Any = sys._getframe(3)
    name = None
    for _ in range(MAX_STACK_WALK):  # the outermost builder: from_documents, not its helpers
        if frame is None:
            break
        if frame.f_code.co_name in _INDEX_BUILDERS:
            owner = frame.f_locals.get("self") or frame.f_locals.get("cls")
            if owner is not None:
                cls = owner if isinstance(owner, type) else type(owner)
                name = f"{cls.__name__}.{frame.f_code.co_name}"
        frame = frame.f_back
    return name


def _text_of(response: Any) -> Any:
    """A response's text now (a string cannot change later), or None when it cannot be read."""
    try:
        text = _llm.output_text(response)
    except Exception:  # a fact that cannot be read drops the fact
        return None
    return text if type(text) is str else None
