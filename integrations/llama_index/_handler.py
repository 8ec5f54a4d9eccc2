"""`PostHogLlamaIndexHandler`: span and event handlers on LlamaIndex's root dispatcher.

How the facts arrive (llama-index-core 0.14, `llama_index.core.instrumentation`):
- every instrumented method opens a span `Class.method-<uuid4>`; its parent comes from a
  ContextVar, so nesting survives `asyncio.gather` and threads started with a copied context;
- LLM and embedding calls send Start / InProgress / End events tagged with their span id;
- an error drops the span and each ancestor it propagates through (`span_drop(err)`);
- a streamed LLM call's span ends when it returns the generator; its End event comes later,
  when the consumer has read the stream.

The hooks only record references and times. Properties are built by zero-argument builders on
the sender's worker thread (`Emitter.emit`).
"""

from __future__ import annotations

import sys
import threading
import time
import types
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from posthog_llm.instrumentation import EMBEDDING as EMBEDDING_EVENT
from posthog_llm.instrumentation import (
    GENERATION,
    GENERATION_KIND,
    SPAN,
    SPAN_KIND,
    TRACE_KIND,
    Emitter,
    Scope,
    close_observation,
    current_observation,
    open_observation,
    report_internal_error,
)

from . import _spans
from ._lifecycle import TraceLifecycle
from ._records import Emb, Gen, Node, StreamFrame, Trace
from ._spans import EMBEDDING, FRAMEWORK, LLM, NOISE, VISIBLE, WORKFLOW, Kind
from ._stream_tracking import MAX_STACK_WALK

__all__ = ["PostHogLlamaIndexHandler", "FRAMEWORK"]


_NOISE = Kind(NOISE, None, "")
_GENERATOR_TYPES = (types.GeneratorType, types.AsyncGeneratorType)
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
        self._spans: dict[str, Node] = {}  # open span id -> its Node or nearest kept ancestor
        self._traces: dict[str, Trace] = {}  # root span id -> open trace
        self._gens: dict[str, Gen] = {}  # LLM span id -> generation waiting for its End event
        self._frames: dict[int, StreamFrame] = {}  # id(generator frame) -> where it came from
        self._kinds: dict[tuple[type, str], Kind] = {}
        self._event_routes: dict[type, Callable[[Any], None] | None] = {}
        self._last_sweep = time.perf_counter()
        self._sweeper: threading.Thread | None = None
        self._sweeper_lock = threading.Lock()
        self._wake = threading.Event()

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

    def close(self) -> None:
        """Stop capturing and forget all state (what `remove_global_handler()` calls)."""
        self._on = False
        self._wake.set()
        with self._lock:
            self._spans.clear()
            self._traces.clear()
            self._gens.clear()
            self._frames.clear()

    # -- spans -------------------------------------------------------------------------------

    def _kind_of(self, instance: Any, span_id: str) -> Kind:
        key = (type(instance), span_id[:-37])
        kind = self._kinds.get(key)
        if kind is None:
            kind = _spans.classify(instance, key[1])
            if len(self._kinds) < 4096:
                self._kinds[key] = kind
        return kind

    # The four hooks below are called by LlamaIndex's dispatcher, which swallows whatever they
    # raise without a word: each one guards itself and reports (debug log) instead.

    def span_enter(
        self,
        id_: str,
        bound_args: Any,
        instance: Any = None,
        parent_id: str | None = None,
        tags: Any = None,
        **kwargs: Any,
    ) -> None:
        if not self._on:
            return
        try:
            self._enter(id_, bound_args, instance, parent_id, tags)
        except Exception as exc:
            report_internal_error(exc)

    def _enter(
        self, id_: str, bound_args: Any, instance: Any, parent_id: str | None, tags: Any
    ) -> None:
        now = time.perf_counter()
        spans = self._spans
        parent = spans.get(parent_id) if parent_id is not None else None
        if parent is not None:
            trace = parent.trace
            if instance is not None:
                kind = self._kinds.get((type(instance), id_[:-37])) or self._kind_of(instance, id_)
            elif parent.kind.kind == WORKFLOW and parent.span_id == parent_id:
                kind = _spans.step_kind(id_[:-37])
            else:
                kind = _NOISE
            k = kind.kind
            if k == NOISE or (
                k >= VISIBLE and parent.instance is instance and parent.kind.kind == k
            ):
                spans[id_] = parent  # internal, or a repeat of its parent (`__call__` -> `call`)
            else:
                node = spans[id_] = Node(
                    id_,
                    trace,
                    kind,
                    parent,
                    parent.vis,
                    instance,
                    _spans.call_arguments(bound_args),
                    tags,
                    now,
                )
                if k >= VISIBLE or k == LLM:
                    node.obs = open_observation(
                        SPAN_KIND if k >= VISIBLE else GENERATION_KIND,
                        trace_id=trace.id,
                        span_id=node.uid,
                        scope=trace.scope,
                        framework=FRAMEWORK,
                    )
            trace.ids.append(id_)
            with self._lock:
                trace.open += 1
            trace.last = now
            return
        if len(spans) >= self.max_open_spans:
            self._trim(spans)
        if instance is not None:
            kind = self._kind_of(instance, id_)
        else:  # a decorated function: its qualified name, without `<locals>`
            kind = Kind(NOISE, None, id_[:-37].replace(".<locals>", ""))
        # A span without parent may be work a returned generator runs lazily (a streamed query).
        origin = self._stream_origin() if parent_id is None and self._frames else None
        if origin is not None and not origin.trace.done:
            trace = origin.trace
            args = _spans.call_arguments(bound_args)
            spans[id_] = Node(id_, trace, kind, None, origin.vis, instance, args, tags, now)
            trace.ids.append(id_)
            with self._lock:
                trace.open += 1
                trace.awaiting = False
            trace.last = now
            return
        self._start_trace(id_, kind, instance, bound_args, tags, now)

    def _start_trace(
        self, id_: str, kind: Kind, instance: Any, bound_args: Any, tags: Any, now: float
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
            trace = Trace(outer.trace_id, id_, scope, emitter.privacy(scope), now)
            if k >= VISIBLE:
                trace.parent = outer.span_id
                pvis: str | None = id_[-36:]
            else:
                pvis = outer.span_id
                trace.emit = False
            self._open_root(trace, id_, kind, instance, bound_args, tags, pvis, now)
            return
        trace_id = scope.trace_id or (str(uuid.uuid4()) if batch else id_[-36:])
        if scope.trace_id != trace_id:
            # Once per trace: its observations (and work that joins them) read the trace id
            # from this scope, so `open_observation` has nothing to merge per span.
            scope = scope.merged(Scope(trace_id=trace_id))
        trace = Trace(trace_id, id_, scope, emitter.privacy(scope), now)
        if k >= VISIBLE:
            pvis = trace.id
        elif batch:
            pvis = trace.id  # an index build: the batch embedding is the root we get
            trace.name = _index_build_name()
        elif k == NOISE:
            pvis = trace.id
            trace.emit = None
        else:  # a bare LLM or embedding call: its own event is enough, like a direct SDK call
            pvis = None
            trace.emit = False
        self._open_root(trace, id_, kind, instance, bound_args, tags, pvis, now)

    def _open_root(
        self,
        trace: Trace,
        id_: str,
        kind: Kind,
        instance: Any,
        bound_args: Any,
        tags: Any,
        pvis: str | None,
        now: float,
    ) -> None:
        k = kind.kind
        bound_args = _spans.call_arguments(bound_args)
        node = Node(id_, trace, kind, None, pvis, instance, bound_args, tags, now)
        node.vis = pvis
        if k >= VISIBLE or k == LLM:
            node.obs = open_observation(
                (TRACE_KIND if trace.parent is None else SPAN_KIND)
                if k >= VISIBLE
                else GENERATION_KIND,
                trace_id=trace.id,
                span_id=pvis if k >= VISIBLE and pvis is not None else node.uid,
                scope=trace.scope,
                framework=FRAMEWORK,
            )
        trace.kind = kind
        trace.args = bound_args
        trace.tags = tags
        trace.open = 1
        trace.ids.append(id_)
        self._spans[id_] = node
        traces = self._traces
        if len(traces) >= self.max_open_traces:
            oldest = next(iter(traces.values()), None)
            if oldest is not None:
                self._evict(oldest)
        traces[id_] = trace
        if now - self._last_sweep > 1.0:
            self._sweep(now)

    def span_exit(
        self, id_: str, bound_args: Any, instance: Any = None, result: Any = None, **kwargs: Any
    ) -> None:
        if not self._on:
            return
        try:
            self._exit(id_, result)
        except Exception as exc:
            report_internal_error(exc)

    def _exit(self, id_: str, result: Any) -> None:
        # Ended spans stay resolvable until their trace is sent: a thread or task started inside
        # a span may open its first child after the span ended (a streamed chat's writer thread).
        node = self._spans.get(id_)
        if node is None:
            return
        if node.obs is not None and node.span_id == id_:
            close_observation(node.obs)
            node.obs = None  # nested work looks it up through the contextvar, not the node
        trace = node.trace
        if isinstance(result, _GENERATOR_TYPES):
            self._remember_stream(result, node, id_)
        if node.span_id != id_:  # an internal span
            self._release(trace)
            return
        now = time.perf_counter()
        k = node.kind.kind
        if id_ == trace.key:
            trace.result = _spans.snapshot_result(k, result)
            trace.end = now
            with self._lock:
                trace.root_done = True
                if trace.streams and self._live_streams(trace):
                    trace.awaiting = True  # the response is a stream nobody has read yet
                waiting = trace.awaiting or trace.open > 1
            if waiting:  # something outlives the root: make sure it cannot wait forever
                self._ensure_sweeper()
        elif k >= VISIBLE:
            node.result = _spans.snapshot_result(k, result)
            node.end = now
            self._emit(SPAN, node, trace)
        self._release(trace)

    def span_drop(
        self,
        id_: str,
        bound_args: Any,
        instance: Any = None,
        err: BaseException | None = None,
        **kwargs: Any,
    ) -> None:
        if not self._on:
            return
        try:
            self._drop(id_, err)
        except Exception as exc:
            report_internal_error(exc)

    def _drop(self, id_: str, err: BaseException | None) -> None:
        node = self._spans.get(id_)
        if node is None:
            return
        if node.obs is not None and node.span_id == id_:
            close_observation(node.obs)
            node.obs = None  # nested work looks it up through the contextvar, not the node
        trace = node.trace
        if node.span_id != id_:
            self._release(trace)
            return
        now = time.perf_counter()
        gen = node.gen
        if gen is not None and not gen.done:
            self._gens.pop(id_, None)
            gen.error = err
            gen.end = now
            self._finish_gen(gen)
        emb = node.emb
        if emb is not None:
            node.emb = None
            self._emit_embedding(emb, None, None, err, now)
        if id_ == trace.key:
            trace.error = err
            trace.end = now
            with self._lock:
                trace.root_done = True
        elif node.kind.kind >= VISIBLE:
            node.error = err
            node.end = now
            self._emit(SPAN, node, trace)
        self._release(trace)

    # -- events ------------------------------------------------------------------------------

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
        route = None
        for event_cls, handler in routes:
            if issubclass(cls, event_cls):
                route = handler
                break
        if len(self._event_routes) < 1024:
            self._event_routes[cls] = route
        return route

    def _on_chat_start(self, event: Any) -> None:
        self._start_gen(event, True, list(event.messages), None)

    def _on_completion_start(self, event: Any) -> None:
        self._start_gen(event, False, None, event.prompt)

    def _start_gen(self, event: Any, chat: bool, messages: Any, prompt: Any) -> None:
        span_id = event.span_id
        node = self._spans.get(span_id) if span_id is not None else None
        if node is None or node.span_id != span_id:
            return
        now = time.perf_counter()
        gen = Gen(node, chat, messages, prompt, event.additional_kwargs, event.model_dict, now)
        # A CustomLLM's chat() calls complete(): fold the inner call into the outer one.
        parent = node.parent
        while parent is not None and parent.kind.kind == LLM:
            outer = parent.gen
            if outer is not None and not outer.done:
                gen.outer = outer
                break
            parent = parent.parent
        if gen.outer is None and self._frames:
            # astream_chat() runs stream_chat() lazily, from inside the generator it returned.
            origin = self._stream_origin(want_gen=True)
            if origin is not None and origin.gen is not None:
                gen.outer = origin.gen
        node.gen = gen
        gens = self._gens
        if len(gens) >= self.max_pending:
            self._trim(gens)
        gens[span_id] = gen
        trace = node.trace
        with self._lock:
            trace.open += 1
        trace.last = now

    def _on_progress(self, event: Any) -> None:
        gen = self._gens.get(event.span_id)
        if gen is None:
            return
        now = time.perf_counter()
        if gen.first is None:
            gen.first = now
            gen.stream = True
        gen.last = now
        gen.response = event.response
        gen.trace.last = now

    def _on_llm_end(self, event: Any) -> None:
        gen = self._gens.pop(event.span_id, None)
        if gen is None or gen.done:
            return
        gen.end = time.perf_counter()
        if event.response is not None:
            gen.response = event.response
        self._finish_gen(gen)

    def _on_exception(self, event: Any) -> None:
        # Sent when a streamed LLM call fails (or its consumer closes it) mid-stream.
        gen = self._gens.pop(event.span_id, None) if event.span_id else None
        if gen is None or gen.done:
            return
        gen.end = time.perf_counter()
        if not isinstance(event.exception, GeneratorExit):
            gen.error = event.exception
        self._finish_gen(gen)

    def _finish_gen(self, gen: Gen) -> None:
        gen.done = True
        trace = gen.trace
        key = gen.frame
        if key is not None:
            gen.frame = None
            entry = self._frames.get(key)
            if entry is not None and entry.gen is gen:
                self._frames.pop(key, None)
        outer = gen.outer
        if outer is not None:
            if gen.response is not None:
                outer.inner = gen.response
            if gen.error is not None and outer.error is None:
                outer.error = gen.error
            if gen.stream:
                outer.stream = True
        else:
            if trace.root_done and gen.response is not None:
                trace.stream_output = gen.response  # a lazily run stream: the trace's output
            self._emit(GENERATION, gen, trace)
        self._release(trace)

    def _on_embedding_start(self, event: Any) -> None:
        span_id = event.span_id
        node = self._spans.get(span_id) if span_id is not None else None
        if node is None or node.span_id != span_id:
            return
        node.emb = Emb(node, event.model_dict, time.perf_counter())

    def _on_embedding_end(self, event: Any) -> None:
        span_id = event.span_id
        node = self._spans.get(span_id) if span_id is not None else None
        if node is None or node.span_id != span_id or node.emb is None:
            return
        emb = node.emb
        node.emb = None
        self._emit_embedding(emb, event.chunks, event, None, time.perf_counter())

    def _emit_embedding(
        self, emb: Emb, chunks: Any, end_event: Any, error: BaseException | None, now: float
    ) -> None:
        emb.chunks = chunks
        emb.end_event = end_event
        emb.error = error
        emb.end = now
        self._emit(EMBEDDING_EVENT, emb, emb.trace)


_MISSING: Any = object()


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
