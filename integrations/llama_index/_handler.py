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

import functools
import sys
import threading
import time
import types
import uuid
import weakref
from collections.abc import Callable, Mapping
from typing import Any

from posthog_llm.instrumentation import EMBEDDING as EMBEDDING_EVENT
from posthog_llm.instrumentation import (
    GENERATION,
    GENERATION_KIND,
    SPAN,
    SPAN_KIND,
    TRACE,
    TRACE_KIND,
    Emitter,
    close_observation,
    current_observation,
    embedding_properties,
    generation_properties,
    open_observation,
    report_internal_error,
    span_properties,
    trace_properties,
)

from . import _llm, _spans
from ._records import Emb, Gen, Node, StreamFrame, Trace
from ._spans import EMBEDDING, LLM, NOISE, VISIBLE, WORKFLOW, Kind

__all__ = ["PostHogLlamaIndexHandler", "FRAMEWORK"]

FRAMEWORK = "llama-index"

_NOISE = Kind(NOISE, None, "")
_GENERATOR_TYPES = (types.GeneratorType, types.AsyncGeneratorType)
_MAX_STACK_WALK = 64
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


class PostHogLlamaIndexHandler:
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
                kind = self._kind_of(instance, id_)
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
                    id_, trace, kind, parent, parent.vis, instance, bound_args, tags, now
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
            spans[id_] = Node(id_, trace, kind, None, origin.vis, instance, bound_args, tags, now)
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
            self._emit(
                SPAN,
                functools.partial(_span_event, node, _spans.snapshot_result(k, result), None, now),
                trace,
            )
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
            self._emit(SPAN, functools.partial(_span_event, node, None, err, now), trace)
        self._release(trace)

    def _release(self, trace: Trace) -> None:
        """One thing in the trace finished; send the trace when nothing is left open."""
        with self._lock:
            trace.open -= 1
            if trace.open > 0 or not trace.root_done or trace.done:
                return
            if trace.awaiting:
                # A stream the response carries is still unread (or being read elsewhere).
                if self._live_streams(trace):
                    return
                trace.awaiting = False
            trace.done = True
        self._finish_trace(trace)

    # -- streams -----------------------------------------------------------------------------

    def _live_streams(self, trace: Trace) -> bool:
        frames = self._frames
        for key in trace.streams or ():
            entry = frames.get(key)
            if entry is not None and entry.trace is trace and entry.frame() is not None:
                return True
        return False

    def _remember_stream(self, gen_obj: Any, node: Node, id_: str) -> None:
        """Remember a generator a span returned, so lazily run work finds its trace."""
        frame = getattr(gen_obj, "gi_frame", None) or getattr(gen_obj, "ag_frame", None)
        if frame is None:
            return
        trace = node.trace
        gen = None
        if node.span_id == id_ and node.kind.kind == LLM:
            gen = node.gen
            if gen is None or gen.done:
                return
        frames = self._frames
        key = id(frame)
        known = frames.get(key)
        if (
            known is not None
            and known.trace is trace
            and known.gen is gen
            and known.frame() is frame
        ):
            return  # the same generator handed up through nested spans
        entry = StreamFrame(key, trace, node.vis, gen)

        def forget(ref: Any, key: int = key) -> None:  # the generator was garbage collected
            known = frames.get(key)
            if known is not None and known.ref is ref:
                frames.pop(key, None)

        entry.ref = weakref.ref(gen_obj, forget)
        if len(frames) >= self.max_pending:
            self._trim(frames)
        frames[key] = entry
        if gen is not None:
            gen.frame = key
        else:
            with self._lock:
                if trace.streams is None:
                    trace.streams = []
                trace.streams.append(key)

    def _stream_origin(self, want_gen: bool = False) -> StreamFrame | None:
        """The remembered generator this code is running inside, if any (walks the stack)."""
        frames = self._frames
        frame: Any = sys._getframe(2)
        for _ in range(_MAX_STACK_WALK):
            if frame is None:
                return None
            entry = frames.get(id(frame))
            if entry is not None and entry.frame() is frame:
                if want_gen:
                    if entry.gen is not None and not entry.gen.done:
                        return entry
                elif entry.gen is None:
                    return entry
            frame = frame.f_back
        return None

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
            self._emit(GENERATION, functools.partial(_generation_event, gen), trace)
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
        self._emit(
            EMBEDDING_EVENT,
            functools.partial(_embedding_event, emb, chunks, end_event, error, now),
            emb.trace,
        )

    # -- sending -----------------------------------------------------------------------------

    def _emit(self, event: str, builder: Callable[[], dict[str, Any]], trace: Trace) -> None:
        trace.has_events = True
        self._emitter.emit(event, builder, trace.scope, trace_id=trace.id)

    def _finish_trace(self, trace: Trace) -> None:
        self._traces.pop(trace.key, None)
        spans = self._spans
        for span_id in trace.ids:
            spans.pop(span_id, None)
        trace.ids = []
        if trace.streams:
            frames = self._frames
            for key in trace.streams:  # the trace is sent: later lazy work starts its own
                entry = frames.get(key)
                if entry is not None and entry.trace is trace:
                    frames.pop(key, None)
            trace.streams = None
        if trace.parent is not None:
            self._emitter.emit(
                SPAN, functools.partial(_joined_root_event, trace), trace.scope, trace_id=trace.id
            )
        elif trace.emit or (trace.emit is None and trace.has_events):
            self._emitter.emit(
                TRACE, functools.partial(_trace_event, trace), trace.scope, trace_id=trace.id
            )

    # -- eviction ----------------------------------------------------------------------------

    def _evict(self, trace: Trace) -> None:
        """Send a trace that waited too long (an abandoned stream) with what it has."""
        with self._lock:
            if trace.done:
                self._traces.pop(trace.key, None)
                return
            trace.done = True
        now = time.perf_counter()
        for span_id, gen in list(self._gens.items()):
            if gen.trace is trace:
                self._gens.pop(span_id, None)
                if not gen.done:
                    gen.done = True
                    gen.end = gen.last or now
                    if gen.outer is None:
                        self._emit(GENERATION, functools.partial(_generation_event, gen), trace)
                    if trace.root_done and gen.outer is None and gen.response is not None:
                        trace.stream_output = gen.response
        if trace.end is None:
            trace.end = now
        for key, entry in list(self._frames.items()):
            if entry.trace is trace:
                self._frames.pop(key, None)
        self._finish_trace(trace)

    def _sweep(self, now: float) -> None:
        self._last_sweep = now
        after_root = self.stream_timeout  # streams or threads outliving a finished root
        running = max(self.stream_timeout, self.open_trace_timeout)  # the root itself still open
        stale = [
            t
            for t in list(self._traces.values())
            if now - t.last > (after_root if t.root_done else running)
        ]
        for trace in stale:
            self._evict(trace)

    def _ensure_sweeper(self) -> None:
        """A daemon thread sends abandoned streams' traces even when nothing else happens."""
        with self._sweeper_lock:
            if self._sweeper is not None and self._sweeper.is_alive():
                return
            thread = threading.Thread(
                target=self._sweep_loop, name="posthog-llm-llama-index-sweeper", daemon=True
            )
            self._sweeper = thread
            thread.start()

    def _sweep_loop(self) -> None:
        while self._on:
            self._wake.wait(max(0.05, min(self.stream_timeout / 4, 5.0)))
            if not self._on:
                break
            try:
                self._sweep(time.perf_counter())
            except Exception as exc:
                report_internal_error(exc)
            with self._sweeper_lock:
                if not any(t.root_done for t in list(self._traces.values())):
                    self._sweeper = None  # nothing outlives its root any more
                    return

    @staticmethod
    def _trim(mapping: dict[Any, Any]) -> None:
        """Drop the oldest tenth of a map that hit its bound."""
        for key in list(mapping)[: max(1, len(mapping) // 10)]:
            mapping.pop(key, None)


_MISSING: Any = object()


def _index_build_name() -> str | None:
    """`VectorStoreIndex.from_documents` when a batch embedding runs inside an index build."""
    frame: Any = sys._getframe(3)
    name = None
    for _ in range(_MAX_STACK_WALK):  # the outermost builder: from_documents, not its helpers
        if frame is None:
            break
        if frame.f_code.co_name in _INDEX_BUILDERS:
            owner = frame.f_locals.get("self") or frame.f_locals.get("cls")
            if owner is not None:
                cls = owner if isinstance(owner, type) else type(owner)
                name = f"{cls.__name__}.{frame.f_code.co_name}"
        frame = frame.f_back
    return name


# -- builders: run on the sender's worker thread -------------------------------------------------


def _latency(start: float, end: float | None) -> float | None:
    return None if end is None else max(0.0, end - start)


def _span_event(node: Node, result: Any, error: BaseException | None, end: float) -> dict[str, Any]:
    trace = node.trace
    kind = node.kind.kind
    privacy = trace.privacy
    return span_properties(
        trace_id=trace.id,
        span_id=node.uid,
        parent_id=node.pvis,
        span_name=node.kind.name,
        span_type=node.kind.span_type,
        input_state=None if privacy else _spans.span_input(kind, node.args, node.tags),
        output_state=None if privacy or error else _spans.span_output(kind, result),
        latency=_latency(node.start, end),
        error=error,
        framework=FRAMEWORK,
        privacy_mode=privacy,
    )


def _trace_event(trace: Trace) -> dict[str, Any]:
    kind = trace.kind
    privacy = trace.privacy
    input_state = output_state = None
    if not privacy and kind is not None:
        input_state = _spans.span_input(kind.kind, trace.args, trace.tags)
        if trace.stream_output is not None:
            output_state = _llm.output_text(trace.stream_output)
        if output_state is None and trace.error is None:
            output_state = _spans.span_output(kind.kind, trace.result)
            if output_state is trace.result and output_state is not None:
                text = _spans.text_of(output_state)
                output_state = text if text is not None else _safe_output(output_state)
    return trace_properties(
        trace_id=trace.id,
        span_name=trace.name or (kind.name if kind is not None else None),
        input_state=input_state,
        output_state=output_state,
        latency=_latency(trace.start, trace.end),
        error=trace.error,
        framework=FRAMEWORK,
        privacy_mode=privacy,
    )


def _joined_root_event(trace: Trace) -> dict[str, Any]:
    """The root of an operation that ran inside another trace, as an `$ai_span` of it."""
    props = _trace_event(trace)
    props.update(
        span_properties(
            trace_id=trace.id,
            span_id=trace.key[-36:],
            parent_id=trace.parent,
            span_type=trace.kind.span_type if trace.kind is not None else None,
            framework=FRAMEWORK,
            privacy_mode=trace.privacy,
        )
    )
    return props


def _safe_output(value: Any) -> Any:
    # A streaming response object that nobody read: no text to show, and its repr says nothing.
    return None if _spans.is_stream(value) else value


def _generation_event(gen: Gen) -> dict[str, Any]:
    trace = gen.trace
    privacy = trace.privacy
    response = gen.response
    usage = _llm.usage_of(response)
    if not usage and gen.inner is not None:
        usage = _llm.usage_of(gen.inner)
    model = _llm.model_of(
        gen.instance, response if response is not None else gen.inner, gen.model_dict
    )
    stop = _llm.stop_reason_of(response) or _llm.stop_reason_of(gen.inner)
    if privacy:
        input_ = output = None
    else:
        input_ = (
            _llm.messages_to_input(gen.messages) if gen.chat else _llm.prompt_to_input(gen.prompt)
        )
        output = _llm.response_to_output(response) if gen.error is None else None
    params = _llm.model_parameters_of(gen.instance, gen.kwargs)
    if gen.stream:
        params["stream"] = True
    end = gen.last if gen.stream and gen.last is not None else gen.end
    return generation_properties(
        trace_id=trace.id,
        span_id=gen.uid,
        parent_id=gen.parent,
        span_name=gen.name,
        model=model,
        provider=_llm.provider_of(gen.instance),
        base_url=_llm.base_url_of(gen.instance),
        model_parameters=params,
        tools=_llm.tools_of(gen.kwargs),
        input=input_,
        output_choices=output,
        latency=_latency(gen.start, end),
        time_to_first_token=_latency(gen.start, gen.first),
        stream=gen.stream,
        stop_reason=stop,
        http_status=None if gen.error is not None else 200,
        error=gen.error,
        framework=FRAMEWORK,
        privacy_mode=privacy,
        **usage,
    )


def _embedding_event(
    emb: Emb, chunks: Any, end_event: Any, error: BaseException | None, end: float
) -> dict[str, Any]:
    trace = emb.trace
    privacy = trace.privacy
    instance = emb.instance
    return embedding_properties(
        trace_id=trace.id,
        span_id=emb.uid,
        parent_id=emb.parent,
        span_name=emb.name,
        model=_llm.embedding_model_of(instance, emb.model_dict),
        provider=_llm.provider_of(instance),
        base_url=_llm.base_url_of(instance),
        input=None if privacy or chunks is None else list(chunks),
        input_count=None if chunks is None else len(chunks),
        input_tokens=_llm.embedding_tokens_of(end_event) if end_event is not None else None,
        latency=_latency(emb.start, end),
        http_status=None if error is not None else 200,
        error=error,
        framework=FRAMEWORK,
        privacy_mode=privacy,
    )
