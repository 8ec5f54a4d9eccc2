"""`PostHogSpanProcessor`: finished OpenTelemetry spans -> `$ai_*` events through our sender.

Per span the hot path is one dictionary lookup and, until a trace shows AI work, one prefix check
of the span's name and attribute keys. Spans of an AI trace are kept as records (their ids, times
and the SDK's own attribute dict) until the trace's local root ends; the finished trace is then
one queued item, and the trace's plan and events are made on the sender's worker.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from typing import Any, NamedTuple, TypeVar

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.trace import get_current_span

from ._kernel import (
    AI_PREFIXES,
    EMPTY_SCOPE,
    IDENTITY_KEYS,
    PRIVACY_ATTRIBUTE,
    Emitter,
    Scope,
    SpanRecord,
    asks_privacy,
    attributes_of,
    capture_internal_exceptions,
    current_observation,
    current_scope,
    distinct_id_of,
    first_of,
    is_ai_span,
    make_scope,
    model_call_reported,
    outside_span,
    plan_trace,
    privacy_requested,
    record_from_sdk_span,
    register_outside_tracer,
    report_internal_error,
    session_id_of,
    span_event,
    trace_event,
    with_trace_id,
)

__all__ = ["PostHogSpanProcessor"]

FRAMEWORK = "opentelemetry"
# Traces whose root never ends (it lives in another process, or the processor was added midway)
# are sent as they are once this many are open, oldest first: memory stays bounded.
MAX_OPEN_TRACES = 1000
MAX_SPANS_PER_TRACE = 5000
# Plain spans kept per trace whose work outlived its root, for a late span that names one.
MAX_HELD_SPANS = 64
# Set when an AI step starts (GenAI semantic conventions, OpenInference): from then on its trace
# is an AI trace, and the steps around it that end before it (a handler returning a stream) are
# kept.
_START_KEYS = ("gen_ai.operation.name", "openinference.span.kind")


def _is_ai(span: ReadableSpan) -> bool:
    """The check every span pays: an AI prefix on its name or on an attribute key."""
    if span.name.startswith(AI_PREFIXES):
        return True
    # The backing dict when there (as `attributes_of`, inlined: this runs for every span).
    attributes = getattr(getattr(span, "_attributes", None), "_dict", None)
    if attributes is None:
        attributes = span.attributes
    if attributes:
        for key in attributes:
            if key.startswith(AI_PREFIXES):
                return True
    return False


class PostHogSpanProcessor(SpanProcessor):
    """Send AI spans as PostHog `$ai_*` events.

    >>> from opentelemetry.sdk.trace import TracerProvider
    >>> provider = TracerProvider()
    >>> provider.add_span_processor(PostHogSpanProcessor())        # doctest: +SKIP

    Spans following the OpenTelemetry GenAI semantic conventions (`gen_ai.*`), OpenInference
    (`llm.*`, `openinference.span.kind`), OpenLLMetry (`traceloop.*`) and the Vercel AI SDK
    (`ai.*`) become `$ai_generation`, `$ai_embedding` and `$ai_span`; each trace's root becomes
    its `$ai_trace`. Traces without AI spans send nothing. `posthog_llm.context(...)` around
    the code that starts a trace applies its identity and properties.
    """

    def __init__(self, client: Any = None, *, privacy_mode: bool | None = None) -> None:
        if privacy_mode is not None and not isinstance(privacy_mode, bool):
            raise TypeError(f"privacy_mode must be a bool, got {type(privacy_mode).__name__}")
        self._emitter = Emitter(client, framework=FRAMEWORK, privacy_mode=privacy_mode)
        # trace id (int) -> records of the spans of a trace known to hold AI work, in end order
        self._open: OrderedDict[int, list[SpanRecord]] = OrderedDict()
        # trace id -> (scope, open observation) when its root started, if either was set
        self._starts: OrderedDict[int, tuple[Scope, Any]] = OrderedDict()
        # trace id -> the identity in force where its first AI step started, or where work of
        # ours first joined it, for a trace whose root started with none: the trace's own
        # events only (each piece of work that joins keeps its own context's identity).
        self._first_identity: OrderedDict[int, Scope] = OrderedDict()
        # Span ids of model calls reported by posthog-llm itself (`model_call_reported`).
        self._elsewhere: set[int] = set()
        # trace id -> how a trace whose root ended was sent (its root's span id, scope and
        # outer observation), for spans that end after it (a stream read after the handler
        # returned): they are sent at once, as part of it.
        self._ended: OrderedDict[int, _Ended] = OrderedDict()
        # Span ids of open spans that posthog-llm work joined (`_joined`), oldest first: they
        # are steps of their trace's events whatever their attributes.
        # The value: whether a model call joined (`reported_call`).
        self._inside: OrderedDict[int, bool] = OrderedDict()
        # Trace ids of traces a span of which started with `posthog.privacy_mode`, newest last:
        # work that joins them is private too (their own events are, by their records).
        self._private: OrderedDict[int, None] = OrderedDict()
        # trace id -> its local root's span id, while the root is open: a trace flushed before
        # its root ends (`force_flush` inside a request) names it as its spans' parent.
        self._roots: dict[int, int] = {}
        # Trace ids of those roots that started as AI work (an `invoke_agent` span): the plain
        # steps between one and a model call are sent with a part of its trace sent early.
        self._ai_roots: dict[int, None] = {}
        # trace id -> what was sent of a trace before its root ended, for the rest of it.
        self._partly_sent: OrderedDict[int, _Partial] = OrderedDict()
        # Re-entrant: a garbage collection inside a locked section may finish an abandoned
        # generator whose `finally` ends a span, and `on_end` then runs on this same thread.
        self._lock = threading.RLock()
        # How many traces `_send_oldest` is sending (a flush, or too many open traces).
        self._sending_open = 0
        register_outside_tracer(FRAMEWORK, _observation_in_current_span)
        # Traces still open when the client shuts down (or the process exits) are handed over
        # first, while the client still delivers.
        self._emitter.on_shutdown(self._hand_over_open)

    # -- SpanProcessor ---------------------------------------------------------------------

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        # The keys a span starts with (the backing dict: the public view locks per read).
        attributes = getattr(getattr(span, "_attributes", None), "_dict", None)
        if attributes is not None and PRIVACY_ATTRIBUTE in attributes:
            self._note_private(span, attributes)
        parent = span.parent
        if parent is not None and not parent.is_remote:
            # A step that starts as AI work makes its trace an AI trace now, so the steps
            # around it that end before it (a handler returning a stream) are kept.
            # The keys an AI step is made with (the conventions set them at the start); the full
            # check is at its end. Two lookups: every child span of every trace pays this.
            if attributes is None or not (
                _START_KEYS[0] in attributes or _START_KEYS[1] in attributes
            ):
                return
            try:
                if model_call_reported():
                    self._reported_elsewhere(span)
                    return
                trace_key = span.context.trace_id
                # A trace already sent takes this step at its end, as a late part (`_ended`).
                if trace_key not in self._open and trace_key not in self._ended:
                    self._open_unless_sent(trace_key)
                    if trace_key not in self._starts:
                        # A root this processor never saw start (another TracerProvider's):
                        # the identity in force where its first AI step starts.
                        scope = current_scope()
                        if scope is not EMPTY_SCOPE and scope != EMPTY_SCOPE:
                            self._remember_identity(trace_key, self._own_scope())
            except Exception as exc:  # KeyboardInterrupt, SystemExit pass through
                report_internal_error(exc)
            return  # otherwise only a trace's local root decides its identity and parent
        # try/except rather than the context manager: this runs for every trace's root.
        try:
            context = span.context
            _keep(self._roots, context.trace_id, context.span_id)
            if attributes is not None and (
                _START_KEYS[0] in attributes or _START_KEYS[1] in attributes
            ):
                if model_call_reported():
                    self._reported_elsewhere(span)
                    return
                _keep(self._ai_roots, context.trace_id, None)
            outer = current_observation(outside=False)  # a root is never inside our own spans
            if outer is None:
                scope = current_scope()
                # By identity first (the scope outside any `posthog_llm.context(...)`): a
                # dataclass comparison of every field costs ~1 µs per trace.
                if scope is EMPTY_SCOPE or scope == EMPTY_SCOPE:
                    return
            _keep(self._starts, context.trace_id, (self._own_scope(), outer))
        except Exception as exc:  # KeyboardInterrupt, SystemExit pass through
            report_internal_error(exc)

    def on_end(self, span: ReadableSpan) -> None:
        # try/except rather than the context manager: this runs for every span of the process.
        try:
            trace_key = span.context.trace_id
            spans = self._open.get(trace_key)
            elsewhere = False
            if self._elsewhere:
                elsewhere = span.context.span_id in self._elsewhere
                if elsewhere:
                    self._elsewhere.discard(span.context.span_id)
            joined = self._inside.pop(span.context.span_id, None) if self._inside else None
            inside = joined is not None
            if spans is None and (elsewhere or not (inside or _is_ai(span))):
                # A plain span of a trace not known (here, now) to hold AI work.
                parent = span.parent
                root = parent is None or parent.is_remote
                if (
                    root
                    or self._sending_open
                    or (self._partly_sent and trace_key in self._partly_sent)
                ):
                    # Unless a flush has sent part of its trace, or is sending it now (a
                    # local root: one per trace, whose end may race with such a flush).
                    with self._lock:
                        if self._place(trace_key, span, elsewhere, inside, joined, plain=True):
                            return
                        if root:
                            self._starts.pop(trace_key, None)
                            self._roots.pop(trace_key, None)
                            self._ai_roots.pop(trace_key, None)
                            return
                if self._ended:
                    self._late_plain(trace_key, span, elsewhere)
                return
            # Placed under the lock: the trace's root may end on another thread at this
            # moment, and the record must land in the list it sends, or be sent as a late part
            # of the trace it sent, never in a list nothing sends.
            with self._lock:
                self._place(trace_key, span, elsewhere, inside, joined)
        except Exception as exc:  # KeyboardInterrupt, SystemExit pass through
            report_internal_error(exc)

    def _place(
        self,
        trace_key: int,
        span: Any,
        elsewhere: bool,
        inside: bool,
        joined: bool | None,
        plain: bool = False,
    ) -> bool:
        """Add an ended span of an AI trace to its records (sending the trace when its root
        ended), or send it as a late part of a trace already sent; a `plain` span only to a
        trace open or partly sent (else False). Called under the lock."""
        spans = self._open.get(trace_key)
        partial = self._partly_sent.get(trace_key) if self._partly_sent else None
        if plain and spans is None and partial is None:
            return False
        if spans is None:
            ended = self._ended.get(trace_key) if self._ended else None
            if ended is not None:
                late = _record(span, ended.trace_hex, elsewhere)
                late.reported_inside = inside
                late.reported_call = joined is True
                self._send_late(trace_key, late)
                return True
            spans = self._opened(trace_key)
        # The span as a record at once: what the conversion reads, a few objects instead of
        # the SDK's dozen kept alive until the trace is sent (the garbage collector's full
        # passes over queued traces were the largest cost of a burst).
        # The trace id's hex is made once per trace (the first record's).
        record = _record(span, spans[0].trace_id if spans else None, elsewhere)
        if inside:
            record.reported_inside = True
            record.reported_call = joined is True
        elif partial is not None and (
            record.span_id in partial.parents or record.span_id == partial.root_hex
        ):
            # The root, or a span between it and what was sent already: a step.
            record.reported_inside = True
        spans.append(record)
        parent = span.parent
        if parent is None or parent.is_remote or len(spans) >= MAX_SPANS_PER_TRACE:
            done = self._open.pop(trace_key, None)
            if done:
                self._send(trace_key, done)
        return True

    def _late_plain(self, trace_key: int, span: Any, elsewhere: bool) -> bool:
        """A plain span of a trace whose root has ended, which has work outliving the root:
        sent as a step when that work names it as its parent, else held (the newest few) in
        case work that ends later does. False when the trace has no such work."""
        ended = self._ended.get(trace_key)
        if ended is None or ended.held is None:
            return False
        parent = span.parent
        if parent is None or parent.is_remote:
            return False  # another local root of the trace (a second request): not a step
        record = _record(span, ended.trace_hex, elsewhere)
        with self._lock:
            ended = self._ended.get(trace_key)
            if ended is None or ended.held is None:
                return False
            if record.span_id not in ended.parents:
                # The oldest forgotten first: the newest are likelier parents.
                _keep(ended.held, record.span_id, record, MAX_HELD_SPANS)
                return True
        record.reported_inside = True  # between the root and work sent: a step
        self._send_late(trace_key, record)
        return True

    def _observation_here(self, span: Any) -> Any:
        """Work posthog-llm reports (a provider drop-in's call, `posthog_llm.span`, a framework's
        trace) may start inside `span`, an open span of this processor's provider, with no
        observation of ours open: it joins the span's trace, under it (under the trace itself
        when `span` is the trace's local root). Only work that does join reads the span id
        (`_Joining`): a context naming another trace, or a question asked in passing, leaves
        the trace as it was."""
        if not self._emitter.enabled:
            return None
        ctx = span.get_span_context()
        trace_key = ctx.trace_id
        started = self._starts.get(trace_key)
        # A trace sent already, whole (its root ended: `span` outlived it) or in part (a flush
        # before its root ended): work joins it as it was sent.
        sent: _Partial | _Ended | None = None
        if started is None:
            sent = self._partly_sent.get(trace_key) if self._partly_sent else None
            if sent is None and self._ended:
                sent = self._ended.get(trace_key)
            if sent is not None and sent.scope is not None and (sent.rooted or sent.outer):
                # The root's identity when it started with one; else the work's own, as before.
                started = (sent.scope, sent.outer)
        if started is not None and started[1] is not None:
            return None  # joined to an observation of ours elsewhere: left alone
        trace_hex = f"{trace_key:032x}"
        context = current_scope()
        if context.trace_id is not None and str(context.trace_id) != trace_hex:
            return None  # the context names another trace: work here goes there
        parent = getattr(span, "parent", None)
        if parent is None or parent.is_remote:
            span_hex = trace_hex  # the root is the trace's own event
        else:
            span_hex = f"{ctx.span_id:016x}"
        if started is not None:
            scope, remember = started[0], None  # where the root started: the trace's identity
        else:
            # The work's own context. The first that joins names the trace's own events, as
            # the first GenAI step does, unless they went out under an identity already.
            scope = self._emitter.defaults.merged(context)
            named = sent is not None and sent.scope is not None
            joins_first = not named and context is not EMPTY_SCOPE and context != EMPTY_SCOPE
            remember = scope if joins_first else None
        scope = with_trace_id(scope, trace_hex)
        resource = getattr(getattr(span, "resource", None), "attributes", None)
        if (
            trace_key in self._private
            or (sent is not None and sent.private)
            or asks_privacy(attributes_of(span), resource)
        ):
            scope = scope.merged(make_scope(privacy_mode=True))
        joining = _Joining(self, trace_key, ctx.span_id, span_hex, remember)
        return outside_span(trace_hex, joining, scope, FRAMEWORK)

    def _note_private(self, span: Any, attributes: Any) -> None:
        """A span starts with `posthog.privacy_mode`: work that joins its trace is private."""
        try:
            if asks_privacy(attributes):
                # Kept until pushed out: a span that ends after its root may still be joined.
                _keep(self._private, span.context.trace_id, None)
        except Exception as exc:  # KeyboardInterrupt, SystemExit pass through
            report_internal_error(exc)

    def _joined(
        self, trace_key: int, span_key: int, remember: Scope | None, model_call: bool
    ) -> None:
        """Work joined open span `span_key` (`model_call`: a model call posthog-llm reports):
        the span is a step of its trace, an AI trace now."""
        with self._lock:
            _keep(self._inside, span_key, model_call or self._inside.get(span_key, False))
        if remember is not None and trace_key not in self._starts:
            self._remember_identity(trace_key, remember)
        if trace_key not in self._open and trace_key not in self._ended:
            # (A trace whose root ended takes the span when it ends, as a late part of it.)
            self._open_unless_sent(trace_key)

    def _opened(self, trace_key: int) -> list[SpanRecord]:
        """The records of AI trace `trace_key`, kept from now on; the oldest open trace is sent
        as it is when too many are open (roots that never end)."""
        with self._lock:
            spans = self._open.setdefault(trace_key, [])
            if len(self._open) > MAX_OPEN_TRACES:
                self._send_oldest()
        return spans

    def _open_unless_sent(self, trace_key: int) -> None:
        """Keep AI trace `trace_key`'s records from now on, unless its root ended (checked
        under the lock: the root may be ending on another thread): then its spans are late
        parts of what was sent, taken as they end."""
        with self._lock:
            if trace_key not in self._open and trace_key not in self._ended:
                self._opened(trace_key)

    def _remember_identity(self, trace_key: int, scope: Scope) -> None:
        if trace_key not in self._first_identity:
            _keep(self._first_identity, trace_key, scope)

    def _reported_elsewhere(self, span: Any) -> None:
        """A GenAI span started inside a model call posthog-llm reports already (the SDK's own
        span under a provider drop-in, an instrumentation's under a framework's model run)."""
        elsewhere = self._elsewhere
        if len(elsewhere) >= MAX_OPEN_TRACES:
            elsewhere.clear()  # spans that never end: forget rather than grow
        elsewhere.add(span.context.span_id)

    def shutdown(self) -> None:
        # Within the client's own shutdown deadline (OpenTelemetry gives none).
        timeout = None
        with capture_internal_exceptions():  # a default client the environment cannot build
            timeout = getattr(self._emitter.client, "shutdown_timeout", None)
        if isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and timeout > 0:
            self.force_flush(int(timeout * 1000))
        else:
            self.force_flush()

    def _hand_over_open(self) -> None:
        """Queue the traces still open (their roots have not ended) with the client."""
        with capture_internal_exceptions():
            for _ in range(len(self._open)):  # those open now: work may open more meanwhile
                self._send_oldest()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Send traces still open (their roots have not ended) and flush the client."""
        with capture_internal_exceptions():
            for _ in range(len(self._open)):
                self._send_oldest()
            client = self._emitter.client
            flush = getattr(client, "flush", None)
            if callable(flush):
                try:
                    result = flush(timeout_millis / 1000.0)
                except TypeError:  # posthog-python's flush() takes no timeout
                    result = flush()
                return result is not False
        return True

    # -- sending ---------------------------------------------------------------------------

    def _send_oldest(self) -> None:
        # Sent under the lock: what the trace's spans that end meanwhile on other threads
        # look up (`_partly_sent`, `_ended`) is in place before they look.
        with self._lock:
            if not self._open:
                return
            # Raised before the pop and lowered once `_partly_sent` is set: a plain span that
            # found its trace not open, and sees neither, ended before the pop.
            self._sending_open += 1
            try:
                trace_key, spans = self._open.popitem(last=False)
                self._send(trace_key, spans)
            finally:
                self._sending_open -= 1

    def _send(self, trace_key: int, records: list[SpanRecord]) -> None:
        """Hand a finished trace to the client as one item; it is converted on the worker.

        A trace whose root has not ended (a flush, or too many open traces) is sent as far as
        it went; the rest follows under the same identity when its root ends."""
        partial = self._partly_sent.pop(trace_key, None) if self._partly_sent else None
        started = self._starts.pop(trace_key, None)
        first = self._first_identity.pop(trace_key, None) if self._first_identity else None
        root = next((r for r in records if r.parent_id is None or r.parent_remote), None)
        if root is not None:
            self._roots.pop(trace_key, None)
            self._ai_roots.pop(trace_key, None)
        if not self._emitter.enabled:
            return
        private = trace_key in self._private or privacy_requested(records)
        rooted = started is not None  # its root started with an identity or inside our work
        if partial is not None:
            private = private or partial.private
            rooted = partial.rooted
            if partial.scope is not None:
                started = (partial.scope, partial.outer)
        if started is None:
            started = (first if first is not None else self._own_scope(), None)
        scope, outer = started
        # Marked AI when an AI step started, but none has ended yet (the root ended first):
        # nothing to send until one does.
        waiting = not any(
            rec.reported_inside or is_ai_span(rec.name, rec.attributes) for rec in records
        )
        if root is None:
            if partial is not None and partial.scope is None and first is not None:
                # Still nothing sent: the first work that joined since the last flush names it.
                partial = partial._replace(scope=first)
            if partial is None:
                root_key = self._roots.get(trace_key)
                root_hex = f"{root_key:016x}" if root_key is not None else None
                # Nothing sent yet (an AI step is still open): the trace's identity is still
                # the root's, or that of the first work that joins it, as without the flush.
                partial = _Partial(
                    root_hex,
                    frozenset(),
                    scope if rooted else first,
                    outer,
                    private,
                    rooted,
                )
            if not waiting:
                ai_root = (
                    frozenset({partial.root_hex})
                    if partial.root_hex is not None and trace_key in self._ai_roots
                    else frozenset()
                )
                scope = self._emit(records, scope, outer, partial.root_hex, private, ai_root)
                parents = partial.parents | _open_parents(records, ai_root)
                partial = _Partial(partial.root_hex, parents, scope, outer, private, rooted)
            with self._lock:
                _keep(self._partly_sent, trace_key, partial)
            return
        if not waiting:
            scope = self._emit(records, scope, outer, None, private)
        # Spans of this trace that end later are sent as part of it (`_send_late`), under
        # its privacy: a late span does not carry its root's `posthog.privacy_mode`.
        # Spans still open that what was sent names as parents (they outlived the root): sent
        # as steps when they end. Looked for only when a record's parent is not in the trace.
        own = {rec.span_id for rec in records}
        outlived = (
            _open_parents(records)
            if any(
                rec.parent_id not in own and not rec.parent_remote
                for rec in records
                if rec.parent_id is not None
            )
            else frozenset()
        )
        if partial is not None and not partial.parents <= own:
            outlived = outlived | (partial.parents - own)  # named by what was flushed earlier
        with self._lock:
            ended = _Ended(
                root.span_id,
                root.trace_id,
                scope,
                outer,
                records if waiting else None,
                private,
                outlived,
                {} if outlived or waiting else None,
                rooted,
            )
            _keep(self._ended, trace_key, ended)

    def _own_scope(self) -> Scope:
        """The scope in force here, for this processor's own bookkeeping: never the stand-in for
        one of its own spans (`_observation_here`)."""
        _internal.busy = True
        try:
            scope: Scope = self._emitter.scope()
        finally:
            _internal.busy = False
        return scope

    def _send_late(self, trace_key: int, record: SpanRecord) -> None:
        """A span that ended after its trace's root (an AI span, or one that sent work names as
        its parent): sent at once, under the trace's identity, a child of the trace where its
        parent was the root; with the trace's own records when none of them was sent yet (its
        root, then, is its `$ai_trace`). Plain spans of the trace held since, that it names as
        its parent in turn, go with it. The trace's state is read and updated under the lock:
        spans of one trace may end on several threads at once."""
        if not self._emitter.enabled:
            return
        late = [record]
        with self._lock:
            ended = self._ended.get(trace_key)
            if ended is not None:  # (pushed out meanwhile: sent as a trace of its own, below)
                parents = set(ended.parents)
                parents.discard(record.span_id)
                held = ended.held if ended.held is not None else {}
                top = record
                while top.parent_id is not None and not top.parent_remote:
                    parent = top.parent_id
                    if parent == ended.root_span_id:
                        break
                    if parent in held:
                        top = held.pop(parent)
                        top.reported_inside = True  # between the root and work sent: a step
                        parents.discard(top.span_id)
                        late.append(top)
                        continue
                    parents.add(parent)  # still open, or ended unseen: sent if it comes
                    break
                private = ended.private or trace_key in self._private or privacy_requested(late)
                waiting = ended.waiting
                self._ended[trace_key] = ended._replace(
                    waiting=None, private=private, parents=frozenset(parents), held=held
                )
                # A trace still receiving spans is the newest: not the next pushed out.
                self._ended.move_to_end(trace_key)
        if ended is None:
            self._emit(late, self._own_scope(), None, None, privacy_requested(late))
            return
        if waiting is None:
            self._emit(late, ended.scope, ended.outer, ended.root_span_id, private)
        else:
            self._emit([*waiting, *late], ended.scope, ended.outer, None, private)

    def _emit(
        self,
        records: list[SpanRecord],
        scope: Scope,
        outer: Any,
        late_root: str | None,
        private: bool = False,
        ai_outside: frozenset[str] = frozenset(),
    ) -> Scope:
        """Queue `records` as one item under `scope` (and their own identity attributes, which
        are most specific), without content when `private` (their trace asked for it); returns
        the scope they were sent under. `ai_outside`: as for `plan_trace`."""
        user = session = None
        if any(not IDENTITY_KEYS.isdisjoint(rec.attributes) for rec in records):
            user = first_of(records, distinct_id_of)
            session = first_of(records, session_id_of)
        if user is not None or session is not None:
            scope = scope.merged(make_scope(distinct_id=user, session_id=session))
        privacy = private or self._emitter.privacy(scope)
        trace_id = outer.trace_id if outer is not None else records[0].trace_id
        self._emitter.emit_many(
            functools.partial(_trace_events, records, outer, privacy, late_root, ai_outside),
            scope,
            trace_id=trace_id,
        )
        return scope


_K = TypeVar("_K")
_V = TypeVar("_V")


def _keep(recent: dict[_K, _V], key: _K, value: _V, limit: int = MAX_OPEN_TRACES) -> None:
    """`recent[key] = value`, forgetting the oldest entry past `limit` (traces and spans that
    never end must not make the processor grow)."""
    recent[key] = value
    if len(recent) > limit:
        del recent[next(iter(recent))]


# Set while a processor reads the scope for itself.
_internal = threading.local()


class _Joining:
    """The span id of a stand-in observation (`_observation_here`): reading it, as work that
    joins the span does, marks the span as a step of its trace."""

    __slots__ = ("processor", "trace_key", "span_key", "text", "remember")

    def __init__(
        self,
        processor: PostHogSpanProcessor,
        trace_key: int,
        span_key: int,
        text: str,
        remember: Scope | None,
    ) -> None:
        self.processor = processor
        self.trace_key = trace_key
        self.span_key = span_key
        self.text = text
        self.remember = remember

    def __str__(self) -> str:
        try:
            # Read inside a model call the core reports (a drop-in's): the span wraps it.
            model_call = model_call_reported()
            self.processor._joined(self.trace_key, self.span_key, self.remember, model_call)
        except Exception as exc:  # the work still joins; its span may be left out
            report_internal_error(exc)
        return self.text


def _observation_in_current_span() -> Any:
    """The core asks (no observation of ours is open here): the current OpenTelemetry span, as
    an observation, when one of our processors receives its spans."""
    if getattr(_internal, "busy", False):
        return None
    span = get_current_span()
    if not span.is_recording():
        return None
    # The SDK's span knows its provider's processors; a span of a provider without ours (or of
    # another SDK) is not joined: its trace would never be sent.
    registered = getattr(getattr(span, "_span_processor", None), "_span_processors", None)
    if not registered:
        return None
    for processor in registered:
        if isinstance(processor, PostHogSpanProcessor):
            return processor._observation_here(span)
    return None


class _Partial(NamedTuple):
    root_hex: str | None  # the open root's span id, when this processor saw it start
    parents: frozenset[str]  # open spans what was sent names as parents
    scope: Scope | None  # what was sent was sent under; None: nothing yet, and no root identity
    outer: Any
    private: bool  # what was sent asked for privacy (`posthog.privacy_mode` on a span)
    rooted: bool  # the identity is the root's (it started with one), not the first work's


def _record(span: Any, trace_hex: str | None, elsewhere: bool) -> SpanRecord:
    """The span as a record; a span whose model call posthog-llm reports already (`elsewhere`)
    is only a step of its trace: its AI attributes are left out."""
    record = record_from_sdk_span(span, trace_hex)
    if elsewhere:
        record.attributes = {
            k: v for k, v in record.attributes.items() if not k.startswith(AI_PREFIXES)
        }
    return record


def _open_parents(
    records: list[SpanRecord], ai_outside: frozenset[str] = frozenset()
) -> frozenset[str]:
    """The spans still open that the events of `records` name as parents (their nearest
    ancestor not among them, for each record that is sent)."""
    plan = plan_trace(records, ai_outside)
    if plan is None:
        return frozenset()
    own = {rec.span_id for rec in records}
    return frozenset(
        parent for _, _, parent in plan.spans if parent not in own and parent != plan.trace_id
    )


class _Ended(NamedTuple):
    root_span_id: str
    trace_hex: str
    scope: Scope
    outer: Any
    waiting: list[SpanRecord] | None  # the trace's records, when no AI step had ended yet
    private: bool  # a span or resource of the trace asked for privacy (`posthog.privacy_mode`)
    parents: frozenset[str]  # open spans what was sent names as parents
    # Plain spans of the trace that ended while `parents` had any: one may turn out to be the
    # parent of one that ends later (spans that outlive their root end in any order).
    held: dict[str, SpanRecord] | None
    rooted: bool  # the identity is the root's (it started with one), not the first work's


def _trace_events(
    records: list[SpanRecord],
    outer: Any,
    privacy: bool,
    late_root: str | None = None,
    ai_outside: frozenset[str] = frozenset(),
) -> list[tuple[str, dict[str, Any], None, float | None]]:
    """Worker side: the `$ai_*` events of one finished trace, each at its span's end time.

    `late_root`: the records ended after their trace was sent, whose root had this span id.
    `ai_outside`: as for `plan_trace`."""
    plan = plan_trace(records, ai_outside)
    if plan is None:
        return []
    privacy = privacy or privacy_requested(records)  # `posthog.privacy_mode` on a span
    root = plan.root
    events: list[tuple[str, dict[str, Any], None, float | None]] = []
    if outer is None:
        trace_id = plan.trace_id
        for rec, kind, parent_id in plan.spans:
            if parent_id == late_root:  # the root was sent as the trace itself
                parent_id = trace_id
            _add_span_event(events, rec, kind, trace_id, parent_id, privacy)
        if root is not None:
            try:
                name, props = trace_event(
                    root, trace_id=trace_id, privacy=privacy, framework=FRAMEWORK
                )
            except Exception as exc:  # the trace's event is lost, not its spans'
                report_internal_error(exc)
            else:
                events.append((name, props, None, _ended_at(root)))
        return events
    # Started inside another observation (posthog_llm.span, an Agents run ...): the whole
    # OpenTelemetry trace joins it, its root as a span under the observation.
    trace_id = outer.trace_id
    stand_in = root.span_id if root is not None else outer.span_id
    for rec, kind, parent_id in plan.spans:
        if rec is root:
            parent_id = outer.span_id
        elif parent_id == plan.trace_id:
            parent_id = stand_in
        _add_span_event(events, rec, kind, trace_id, parent_id, privacy)
    if root is not None and not any(rec is root for rec, _, _ in plan.spans):
        _add_span_event(events, root, "", trace_id, outer.span_id, privacy)
    return events


def _add_span_event(
    events: list[tuple[str, dict[str, Any], None, float | None]],
    rec: SpanRecord,
    kind: str,
    trace_id: str,
    parent_id: str,
    privacy: bool,
) -> None:
    """Append one span's event; a span that cannot be converted loses its event only."""
    try:
        name, props = span_event(
            rec, kind, trace_id=trace_id, parent_id=parent_id, privacy=privacy, framework=FRAMEWORK
        )
    except Exception as exc:
        report_internal_error(exc)
        return
    events.append((name, props, None, _ended_at(rec)))


def _ended_at(rec: SpanRecord) -> float | None:
    """The span's end as `time.time()` seconds: the time its event carries."""
    return rec.end_ns / 1e9 if rec.end_ns else None
