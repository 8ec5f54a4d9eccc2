"""The worker's side: a trace's hook log turned back into spans, calls and `$ai_*` events.

The hooks only appended what LlamaIndex handed over (`_records`); here, on the sender's worker
thread, the log is read in order: which spans people recognise (`_spans.classify`), the nearest
kept ancestor of every internal span, LLM calls folded into the call that made them, embeddings,
errors, and the events in the order they happened, the trace's own event last.
"""

from __future__ import annotations

from typing import Any

from posthog_llm.instrumentation import (
    EMBEDDING as EMBEDDING_EVENT,
)
from posthog_llm.instrumentation import (
    GENERATION,
    SPAN,
    TRACE,
    DeferredCalls,
    report_internal_error,
    safely,
    secrets_in,
    stopped_by_caller,
)

from . import _builders, _spans
from ._records import (
    CHAT_START,
    COMPLETION_START,
    DROP,
    EMBEDDING_START,
    EXIT,
    INNER,
    LAZY,
    LLM_END,
    LLM_ERROR,
    SCOPE,
    WIDTH,
    Emb,
    Gen,
    Node,
    Trace,
)
from ._spans import (
    CUSTOM,
    EMBEDDING,
    LLM,
    NOISE,
    USERS_FUNCTION,
    VISIBLE,
    WORKFLOW,
    Kind,
    function_kind,
)

__all__ = [
    "replay",
    "Tree",
    "kind_of",
    "root_kind",
    "KINDS",
    "NOISE_KIND",
]

_NOISE = Kind(NOISE, None, "")
NOISE_KIND = _NOISE
# (class, `Class.method`) -> Kind; the hooks read it directly (one lookup per span).
KINDS: dict[tuple[type, str], Kind] = {}
_kinds = KINDS


def kind_of(instance: Any, span_id: str) -> Kind:
    """Kind of a span on `instance` (cached per class and `Class.method`)."""
    key = (type(instance), span_id[:-37])
    kind = _kinds.get(key)
    if kind is None:
        kind = _spans.classify(instance, key[1])
        if len(_kinds) < 4096:
            _kinds[key] = kind
    return kind


def root_kind(instance: Any, span_id: str) -> Kind:
    """Kind of a span with no kept parent: a decorated function is named by its qualified name,
    without `<locals>`."""
    if instance is USERS_FUNCTION:
        return function_kind(span_id[:-37])
    if instance is not None:
        return kind_of(instance, span_id)
    return Kind(NOISE, None, span_id[:-37].replace(".<locals>", ""))


class Tree:
    """The kept spans of one trace, built from the log's span entries.

    Used by the replay on the worker, and by `_nesting` on the caller when work from another
    integration asks which span it runs in (fed incrementally: `pos` is how far it has read).
    """

    __slots__ = ("trace", "spans", "root", "pos")

    def __init__(self, trace: Trace) -> None:
        self.trace = trace
        self.spans: dict[str, Node] = {}  # span id -> its Node, or the nearest kept ancestor
        self.root: Node | None = None
        self.pos = 0

    def enter(
        self,
        id_: str,
        parent_id: Any,
        instance: Any,
        args: Any,
        tags: Any,
        now: float,
        lazy: bool,
    ) -> None:
        trace = self.trace
        spans = self.spans
        if id_ == trace.key:
            node = Node(id_, trace, trace.kind, None, trace.pvis, instance, args, tags, now)
            node.vis = trace.pvis
            spans[id_] = self.root = node
            return
        parent = spans.get(parent_id) if parent_id is not None else None
        if lazy and (parent is None or parent.kind.kind != LLM):
            # Work a returned generator ran after its span ended (a streamed query's LLM call):
            # under the visible ancestor of the span that returned the generator.
            pvis = parent.vis if parent is not None else trace.pvis
            kind = root_kind(instance, id_)
            node = spans[id_] = Node(id_, trace, kind, None, pvis, instance, args, tags, now)
            if trace.foreign is not None:
                self._foreign(node)
            return
        if parent is None:
            return
        # A lazily run call inside an LLM call's stream (astream_chat running stream_chat) is
        # that call's child, so its facts fold into it like any nested LLM call.
        if instance is USERS_FUNCTION:
            if parent.kind.kind == WORKFLOW and parent.span_id == parent_id:
                kind = _spans.step_kind(id_[:-37])
            else:
                kind = function_kind(id_[:-37])
        elif instance is not None:
            kind = kind_of(instance, id_)
        elif parent.kind.kind == WORKFLOW and parent.span_id == parent_id:
            kind = _spans.step_kind(id_[:-37])
        else:
            kind = _NOISE
        k = kind.kind
        if k == NOISE or (
            k >= VISIBLE and k != CUSTOM and parent.instance is instance and parent.kind.kind == k
        ):
            # Internal, or LlamaIndex repeating its parent (`__call__` -> `call`). The user's own
            # methods are each a span, however they nest.
            spans[id_] = parent
            return
        node = spans[id_] = Node(id_, trace, kind, parent, parent.vis, instance, args, tags, now)
        if trace.foreign is not None:
            self._foreign(node)

    def _foreign(self, node: Node) -> None:
        """A span opened inside someone else's span (a user span inside a step): its parent."""
        pvis = self.trace.foreign.get(node.span_id) if self.trace.foreign is not None else None
        if pvis is not None:
            node.pvis = pvis
            if node.kind.kind < VISIBLE:
                node.vis = pvis

    def inner(self, id_: str, parent_id: str) -> None:
        """An internal span: it maps to its parent's kept span."""
        parent = self.spans.get(parent_id)
        if parent is not None:
            self.spans[id_] = parent

    def read(self, log: list[Any], i: int, tag: int) -> None:
        """Take the span entry (`ENTER`, `LAZY` or `INNER`) at `log[i]`."""
        if tag == INNER:
            self.inner(log[i + 1], log[i + 2])
        else:
            self.enter(
                log[i + 1], log[i + 2], log[i + 3], log[i + 4], log[i + 5], log[i + 6], tag == LAZY
            )

    def feed(self) -> None:
        """Read the span entries the log has gained since the last call."""
        log = self.trace.log
        i, n = self.pos, len(log)
        while i < n:
            tag = log[i]
            if tag <= INNER:
                self.read(log, i, tag)
            i += WIDTH[tag]
        self.pos = i


def replay(trace: Trace) -> list[Any]:
    """The events of one finished trace (`Trace.__call__`, on the sender's worker thread)."""
    return _Run(trace).run()


class _Run:
    __slots__ = (
        "trace",
        "tree",
        "gens",
        "out",
        "root_done",
        "has_events",
        "has_spans",
        "span_at",
    )

    def __init__(self, trace: Trace) -> None:
        self.trace = trace
        self.tree = Tree(trace)
        self.gens: dict[str, Gen] = {}
        self.out: list[Any] = []
        self.root_done = False
        self.has_events = False
        self.has_spans = False  # a step of its own was sent (a tool a model call ran)
        # Visible spans sent so far: uid -> their event's index in `out`, and their node.
        self.span_at: dict[Any, tuple[int, Node]] = {}
        trace.secrets = ()

    def run(self) -> list[Any]:
        trace = self.trace
        log = trace.log
        read = self.tree.read
        i, n = 0, len(log)
        while i < n:
            tag = log[i]
            try:
                if tag <= INNER:
                    read(log, i, tag)
                    if tag != INNER and log[i + 1] == trace.key:
                        trace.instance = log[i + 3]
                        trace.args = log[i + 4]
                        trace.tags = log[i + 5]
                elif tag == EXIT:
                    self._exit(log[i + 1], log[i + 2], log[i + 3])
                elif tag == DROP:
                    self._drop(log[i + 1], log[i + 2], log[i + 3])
                elif tag == SCOPE:
                    node = self.tree.spans.get(log[i + 1])
                    if node is not None and node.span_id == log[i + 1]:
                        node.scope = log[i + 2]
                else:
                    self._event(tag, log[i + 1], log[i + 2], log[i + 3], log[i + 4])
            except Exception as exc:
                report_internal_error(exc)
            i += WIDTH[tag]
        if trace.evicted is not None:
            self._evicted(trace.evicted)
        if trace.parent is not None:
            self._emit(SPAN, trace.end, _builders.joined_root_event, trace)
        elif (
            trace.emit
            or (trace.emit is None and self.has_events)
            # A bare model call that ran steps of its own (`llm.predict_and_call(tools)`):
            # they sit under the trace, which is then sent.
            or (
                trace.emit is False
                and self.has_spans
                and trace.kind.kind == LLM
                and trace.pvis is None  # not a call inside someone else's trace
            )
        ):
            self._emit(TRACE, trace.end, _builders.trace_event, trace)
        return self.out

    def _emit(
        self, event: str, at: float | None, build: Any, *args: Any, scope: Any = None
    ) -> None:
        """Build one event; `at`: its `perf_counter` time (it is sent at that wall time);
        `scope`: its span's own (a context opened inside the trace), None: the trace's."""
        self.has_events = True
        try:
            props = build(*args)
        except Exception as exc:  # this event is lost, not the rest of the trace
            report_internal_error(exc)
            return
        offset = self.trace.wall_offset
        when = None if at is None or offset is None else at + offset
        self.out.append((event, props, scope, when))

    def _exit(self, id_: str, result: Any, now: float) -> None:
        node = self.tree.spans.get(id_)
        if node is None or node.span_id != id_:
            return
        self._end(node, id_, result, None, now)

    def _drop(self, id_: str, err: Any, now: float) -> None:
        node = self.tree.spans.get(id_)
        if node is None or node.span_id != id_:
            return
        if isinstance(err, BaseException) and stopped_by_caller(err):
            # Cancelled (a timeout, a workflow cancelled, a caller gone): the caller stopped
            # the work, the work did not fail (the kernel's rule for every integration).
            err = None
        if err is not None and (node.kind.kind == LLM or node.kind.kind == EMBEDDING):
            self._note_secrets(node.instance)
        gen = node.gen
        if gen is not None and not gen.done:
            self.gens.pop(id_, None)
            gen.error = err
            gen.end = now
            self._finish_gen(gen)
            self._failed_late(node, gen)
        embs = node.embs
        if embs:
            node.embs = None
            for emb in embs:  # calls the span's failure ended
                self._emit(
                    EMBEDDING_EVENT,
                    now,
                    _builders.embedding_event,
                    emb,
                    None,
                    None,
                    err,
                    now,
                    scope=node.scope,
                )
        self._end(node, id_, None, err, now)

    def _note_secrets(self, instance: Any) -> None:
        """What a failed LLM or embedding model holds (its `api_key`, custom headers ...): the
        error's text in every event of the trace is scrubbed of it. Read only on failure."""
        if instance is None:
            return
        trace = self.trace
        known = trace.secrets
        found = [s for s in secrets_in(instance) if s not in known]
        if found:
            trace.secrets = [*known, *found]

    def _end(self, node: Any, id_: str, result: Any, err: Any, now: float) -> None:
        """The root ends the trace; a visible span becomes its `$ai_span` event."""
        trace = self.trace
        if id_ == trace.key:
            if err is None:
                trace.result = result
            else:
                trace.error = err
            trace.end = now
            self.root_done = True
        elif node.kind.kind >= VISIBLE:
            if err is None:
                node.result = result
            else:
                node.error = err
            node.end = now
            self.span_at[node.uid] = (len(self.out), node)
            self.has_spans = True
            self._emit(SPAN, now, _builders.span_event, node, result, err, now, scope=node.scope)

    def _event(self, tag: int, span_id: Any, now: float, value: Any, extra: Any) -> None:
        if tag <= COMPLETION_START:  # value: the call's slot, extra: messages or prompt
            node = self.tree.spans.get(span_id) if span_id is not None else None
            if node is None or node.span_id != span_id:
                return
            chat = tag == CHAT_START
            slot = value
            gen = Gen(
                node,
                chat,
                extra if chat else None,
                None if chat else extra,
                slot[5],
                slot[6],
                now,
            )
            # A CustomLLM's chat() calls complete(): fold the inner call into the outer one.
            parent = node.parent
            while parent is not None and parent.kind.kind == LLM:
                outer = parent.gen
                if outer is not None and not outer.done:
                    gen.outer = outer
                    break
                parent = parent.parent
            if gen.outer is None and slot[4] is not None:
                # Run lazily inside the stream another LLM call returned: folds into that call.
                origin = self.tree.spans.get(slot[4])
                outer = origin.gen if origin is not None else None
                if outer is not None and not outer.done:
                    gen.outer = outer
            node.gen = gen
            self.gens[span_id] = gen
            gen_slot(gen, slot)
            deferred = self.trace.deferred
            if deferred is not None:
                gen.deferred = deferred.pop(span_id, None)
        elif tag <= LLM_ERROR:  # value: the call's slot, extra: its response or exception
            ended = self.gens.pop(span_id, None) if span_id else None
            if ended is None or ended.done:
                return
            gen = ended
            gen_slot(gen, value)
            gen.end = now
            if tag == LLM_END:
                if extra is not None:
                    gen.response = extra
            elif not isinstance(extra, GeneratorExit) and not (
                isinstance(extra, BaseException) and stopped_by_caller(extra)
            ):
                gen.error = extra
                self._note_secrets(gen.instance)
            self._finish_gen(gen)
            node = self.tree.spans.get(span_id)
            if node is not None:
                self._failed_late(node, gen)
        else:  # embeddings. Start: value = model_dict; end: value = chunks, extra = the event
            node = self.tree.spans.get(span_id) if span_id is not None else None
            if node is None or node.span_id != span_id:
                return
            if tag == EMBEDDING_START:
                if node.embs is None:
                    node.embs = []
                node.embs.append(Emb(node, value, now))
            elif node.embs:
                # An End names no Start: the oldest open call of the span is taken (the
                # texts and vectors come with the End).
                emb = node.embs.pop(0)
                self._emit(
                    EMBEDDING_EVENT,
                    now,
                    _builders.embedding_event,
                    emb,
                    value,
                    extra,
                    None,
                    now,
                    scope=node.scope,
                )

    def _finish_gen(self, gen: Gen) -> None:
        gen.done = True
        outer = gen.outer
        if outer is not None:
            if gen.response is not None:
                outer.inner = gen.response
            ran = gen.inner_instance if gen.inner_instance is not None else gen.instance
            if ran is not None:
                outer.inner_instance = ran
            if gen.error is not None and outer.error is None:
                outer.error = gen.error
            if gen.stream:
                outer.stream = True
            if gen.deferred is not None:
                outer.deferred = DeferredCalls.joined(outer.deferred, gen.deferred)
            return
        if self.root_done and gen.response is not None:
            self.trace.stream_output = gen.response  # a lazily run stream: the trace's output
        self._emit(GENERATION, gen.end, _builders.generation_event, gen, scope=_scope_of(gen))

    def _failed_late(self, node: Node, gen: Gen) -> None:
        """A call that failed after its ancestors ended (a streamed response: LlamaIndex ends
        the query's spans before the stream is read): they are marked failed as well, as
        they are when the call fails inside them. Their events are not sent yet."""
        error = gen.error
        if error is None or gen.outer is not None:
            return
        out = self.out
        # Up the visible ancestors (a lazily run call has no parent node, only its visible
        # ancestor's id); one still open is marked when the error passes through it.
        sent = self.span_at.get(node.pvis)
        escaped = self.root_done or node.parent is None  # a lazily run call
        while sent is not None:
            at, parent = sent
            escaped = True
            if parent.error is None and at < len(out):
                parent.error = error
                event, _, extra, when = out[at]
                try:
                    props = _builders.span_event(parent, None, error, parent.end)
                except Exception as exc:  # the event stays as it was
                    report_internal_error(exc)
                else:
                    out[at] = (event, props, extra, when)
            sent = self.span_at.get(parent.pvis)
        if escaped and self.trace.error is None:
            # The error went to whoever reads the stream, the request's caller: after the
            # request returned, or in work it left running (a chat engine's writer thread),
            # whatever its root does next.
            self.trace.error = error

    def _evicted(self, now: float) -> None:
        """The trace waited too long (an abandoned stream): send what it has."""
        trace = self.trace
        for gen in list(self.gens.values()):
            if gen.done:
                continue
            gen.done = True
            gen.end = gen.last or now
            if gen.outer is None:
                self._emit(
                    GENERATION, gen.end, _builders.generation_event, gen, scope=_scope_of(gen)
                )
                if self.root_done and gen.response is not None:
                    trace.stream_output = gen.response
        self.gens.clear()
        if trace.end is None:
            trace.end = now


def _scope_of(gen: Gen) -> Any:
    """A generation's own scope (None: its trace's), with the `posthog_*` arguments and privacy
    of the drop-in calls it reports on top."""
    deferred = gen.deferred
    if deferred is None:
        return gen.scope
    own = gen.scope if gen.scope is not None else gen.trace.scope
    return safely(deferred.scope, own) or gen.scope


def gen_slot(gen: Gen, slot: Any) -> None:
    """What the hooks keep in one small list per LLM call: [first chunk time, last chunk time,
    last response, key of the stream frame it returned, the LLM call whose stream it ran in,
    the Start event's additional kwargs, its model dict, the response's text at its End]."""
    if slot is None:
        return
    if len(slot) > 7 and slot[7] is not None:
        gen.text = slot[7]
    first = slot[0]
    if first is not None:
        gen.first = first
        gen.stream = True
        gen.last = slot[1]
        gen.response = slot[2]
