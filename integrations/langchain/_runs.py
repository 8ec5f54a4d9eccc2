"""Run bookkeeping: a log per trace on the caller, turned into runs on the worker.

The hooks append each run's start and end to its trace's log as flat values (references and a
`perf_counter()` timestamp, no object per run) and keep one entry per live run in a bounded
map. When the last open run of a trace ends, the log is queued as one item; on the sender's
worker, `replay` turns it into `Run`s for the event builders.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any
from uuid import UUID

from posthog_llm.instrumentation import (
    GENERATION_KIND,
    SPAN_KIND,
    DeferredCalls,
    Observation,
    Scope,
    keep_deferred,
    with_trace_id,
)

__all__ = [
    "Trace",
    "Run",
    "RunMap",
    "Hidden",
    "CHAIN",
    "TOOL",
    "RETRIEVER",
    "CHAT",
    "LLM",
    "FRAMEWORK",
    "END",
    "START_WIDTH",
    "END_WIDTH",
    "UNENDED",
    "record_positions",
    "start_positions",
    "key_of",
    "key_text",
    "tracked_elsewhere",
]

CHAIN, TOOL, RETRIEVER, CHAT, LLM = "chain", "tool", "retriever", "chat", "llm"
FRAMEWORK = "langchain"

# The log's records. A start: (kind, key, parent key, parent span, name, serialized, inputs,
# start time, extra 1, extra 2, scope), where the parent span is None unless it is given (a
# root's outer span, someone else's span opened inside the parent, a parent that already left
# the log) and the extras are the chain's run type, or a model's metadata and invocation params.
# An end: (END, key, output, error, end time, inputs given at the end or None, or UNENDED).
START_WIDTH = 11
END_WIDTH = 6
END: Any = object()
# In an end record's inputs: LangChain never ended the run (forgotten at shutdown or by age,
# or ended with its cancelled root), so no real input replaced a streamed chain's placeholder.
UNENDED: Any = object()
# The input LangChain starts a streamed (`transform`) chain with; the real one comes at its end.
_STREAM_PLACEHOLDER = {"input": ""}


class Trace:
    """One trace's log and what every run of it shares: its id, its root and who it is for.

    Appends to `log` and changes to `open` are single C-level operations (atomic under the GIL),
    so concurrent steps of one trace need no lock; handing the log over takes the handler's lock.
    """

    __slots__ = (
        "trace_id",
        "root_key",
        "joined",
        "scope",
        "properties_ref",
        "sent_whole",
        "secrets",
        "log",
        "open",
        "root_obs",
        "client",
        "observations",
        "asked",
        "tokens",
        "context",
        "overrides",
        "deferred",
    )

    def __init__(
        self,
        trace_id: str,
        root_key: Any,
        scope: Scope,
        properties_ref: Any,
        joined: bool = False,
    ) -> None:
        self.trace_id = trace_id
        # The root run's key in the run map.
        self.root_key = root_key
        # Whether the root joined someone else's trace (its children then name its own span).
        self.joined = joined
        self.scope = scope
        # The root's `posthog_properties` metadata object: children inherit the very same
        # object, so an identity check tells whether a child added properties of its own.
        self.properties_ref = properties_ref
        # Long texts that generations of this trace sent whole (filled by their builders on
        # the worker; the trace's own event, built last, then does not repeat them in full).
        # None once the trace's own event was built (or its root was forgotten). An empty
        # tuple until the first one: most traces have none.
        self.sent_whole: list[str] | tuple[()] | None = ()
        # Credentials the models of this trace hold (filled on the worker by the builder of a
        # failed generation): scrubbed from that error's text, and the steps' it reached.
        self.secrets: list[str] | tuple[()] = ()
        self.log: list[Any] = []
        self.open: set[Any] = set()
        self.root_obs: Observation | None = None
        self.client: Any = None  # where it goes, named at its start (None: the default client)
        # The rare paths, made when first needed: observations of steps that nested work asked
        # about (key -> (observation, opened here)), the steps it asked about, token times.
        self.observations: dict[Any, tuple[Observation, bool]] | None = None
        self.asked: set[Any] | None = None
        self.tokens: dict[Any, list[Any]] | None = None
        # The `posthog_llm.context(...)` scope the root started in: a step that starts in
        # another (one opened inside a node) takes that one's identity and privacy.
        self.context: Scope | None = None
        self.overrides: Scope | None = None  # the root run's metadata (`posthog_*`)
        # Model run key -> the provider drop-in calls made inside it (`keep_deferred`), for
        # its generation's builder on the worker; None while there are none (most traces).
        self.deferred: dict[Any, DeferredCalls] | None = None

    def observation_map(self) -> dict[Any, tuple[Observation, bool]]:
        """`observations`, made on first use (most traces never need it)."""
        made = self.observations
        if made is None:
            made = self.observations = {}
        return made

    def span_for_children_of(self, key: Any) -> str:
        """`$ai_parent_id` of a child of run `key` when its start is no longer in the log."""
        if key == self.root_key and not self.joined:
            return self.trace_id
        return key_text(key)

    def start_record(self, key: Any) -> int:
        """Where run `key`'s start is in the log (-1 if it is not): the rare paths only."""
        log = self.log
        for at in start_positions(log, len(log)):
            if log[at + 1] == key:
                return at
        return -1


class Hidden:
    """A live LangGraph plumbing run: not reported; its children attach to its parent."""

    __slots__ = ("trace", "parent_key", "parent_span", "start")

    def __init__(self, trace: Trace, parent_key: Any, parent_span: Any, start: float) -> None:
        self.trace = trace
        self.parent_key = parent_key
        self.parent_span = parent_span
        self.start = start


class Run:
    """One LangChain run rebuilt from its trace's log on the worker: what the builders read."""

    __slots__ = (
        "kind",
        "key",
        "trace",
        "parent_span",
        "name",
        "serialized",
        "inputs",
        "metadata",
        "params",
        "run_type",
        "start",
        "first_token",
        "last_token",
        "streamed",
        "scope",
        "span_str",
        "builder",
        "emitter",
        "output",
        "error",
        "end",
        "max_chars",
        "memo",
        "deferred",
    )

    def __init__(
        self,
        kind: str,
        key: Any,
        trace: Trace,
        parent_span: Any,
        name: Any,
        serialized: Any,
        inputs: Any,
        start: float,
    ) -> None:
        self.kind = kind
        self.key = key
        self.trace = trace
        # `$ai_parent_id`: None for the trace's root (its children use the trace id).
        self.parent_span = parent_span
        self.name = name
        self.serialized = serialized
        self.inputs = inputs
        self.metadata: Any = None
        self.params: Any = None
        self.run_type: Any = None
        self.start = start
        self.first_token: float | None = None
        self.last_token: float | None = None
        # `[first token time, last token time, token, token, ...]` of a streamed model call.
        self.streamed: list[Any] | None = None
        self.scope = trace.scope
        self.span_str: str | None = None
        self.builder: Callable[..., dict[str, Any]] | None = None
        self.emitter: Any = None
        self.output: Any = None
        self.error: BaseException | None = None
        self.end = start
        self.max_chars: int | None = None
        # Messages converted so far in this replay, shared by its runs (`converted`).
        self.memo: dict[int, Any] | None = None
        # The provider drop-in calls a model run made, which its generation reports.
        self.deferred: DeferredCalls | None = None

    def __call__(self) -> dict[str, Any]:
        """The event's properties (on the worker)."""
        builder = self.builder
        if builder is None:
            raise RuntimeError("the run has not ended")
        return builder(self.emitter, self, self.output, self.error, self.end, self.max_chars)

    def span_id(self) -> str:
        """The run's id as a string (its `$ai_span_id`), made once, when first asked for."""
        span = self.span_str
        if span is None:
            span = self.span_str = key_text(self.key)
        return span

    def span_id_for_children(self) -> str:
        """What a child of this run uses as its `$ai_parent_id`."""
        if self.parent_span is None:
            return self.trace.trace_id
        return self.span_id()


def record_positions(log: list[Any], n: int) -> Iterator[tuple[int, bool]]:
    """Where each record is among the first `n` entries of a log, and whether it is an end
    (the rare paths; the worker's `replay` reads both kinds of record in one loop of its own)."""
    i = 0
    while i < n:
        if log[i] is END:
            yield i, True
            i += END_WIDTH
        else:
            yield i, False
            i += START_WIDTH


def start_positions(log: list[Any], n: int) -> Iterator[int]:
    """Where each start record is among the first `n` entries of a log."""
    return (at for at, is_end in record_positions(log, n) if not is_end)


def key_of(run_id: Any) -> Any:
    # Keyed by the UUID's integer: `UUID.__hash__` is Python code, `int.__hash__` is not.
    return run_id.int if type(run_id) is UUID else run_id


def key_text(key: Any) -> str:
    """The run id as text: what `str(UUID(int=key))` gives, without building the UUID."""
    if type(key) is int:
        h = f"{key:032x}"
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
    return str(key)


def replay(
    trace: Trace, log: list[Any], emitter: Any, max_chars: int | None, builders: Any
) -> list[Run]:
    """The runs of a handed-over log that ended in it, in the order they ended (worker side).

    `builders`: (trace, span, generation) builder functions. Runs that started but did not
    end in this log (evicted, or carried over to the next log) are left out.
    """
    trace_builder, span_builder, generation_builder = builders
    runs: dict[Any, Run] = {}
    memo: dict[int, Any] = {}
    ended: list[Run] = []
    tokens = trace.tokens
    i, n = 0, len(log)
    while i < n:
        if log[i] is END:
            run = runs.get(log[i + 1])
            if run is not None and run.builder is None:
                run.output = log[i + 2]
                run.error = log[i + 3]
                run.end = log[i + 4]
                late_inputs = log[i + 5]
                if late_inputs is UNENDED:
                    if run.serialized is None and run.inputs == _STREAM_PLACEHOLDER:
                        run.inputs = None  # not an input anyone gave: none is known
                elif late_inputs is not None:
                    run.inputs = late_inputs
                run.emitter = emitter
                run.max_chars = max_chars
                if run.kind == CHAT or run.kind == LLM:
                    run.builder = generation_builder
                    if trace.deferred is not None:
                        run.deferred = trace.deferred.pop(run.key, None)
                    if run.streamed is not None and tokens is not None:
                        # The run keeps its tokens until built; the trace, remembered a while
                        # after it ended (for late children), does not.
                        tokens.pop(run.key, None)
                elif run.parent_span is None:
                    run.builder = trace_builder
                else:
                    run.builder = span_builder
                ended.append(run)
            i += END_WIDTH
            continue
        kind, key, parent_key, parent_span, name, serialized, inputs, start, x1, x2, scope = log[
            i : i + START_WIDTH
        ]
        if parent_span is None and parent_key is not None:
            parent = runs.get(parent_key)
            parent_span = (
                parent.span_id_for_children()
                if parent is not None
                else trace.span_for_children_of(parent_key)
            )
        run = Run(kind, key, trace, parent_span, name, serialized, inputs, start)
        if kind == CHAT or kind == LLM:
            run.metadata = x1
            run.params = x2
            if tokens is not None:
                times = tokens.get(key)
                if times is not None:
                    run.first_token, run.last_token = times[0], times[1]
                    run.streamed = times
        else:
            run.run_type = x1
        if scope is not None:
            run.scope = scope
        run.memo = memo
        runs[key] = run
        i += START_WIDTH
    return ended


class RunMap:
    """Live runs by key (their trace, or a `Hidden`), bounded in size and age, thread safe.

    Runs that never end (a stream nobody consumes, a process that interrupts a graph and
    forgets it) are evicted oldest first once there are more than `max_runs` of them or they
    are older than `max_age` seconds. A short memory of recently ended runs lets a child that
    starts after its parent ended still find its trace.
    """

    def __init__(self, max_runs: int = 10_000, max_age: float = 3600.0, max_ended: int = 1_000):
        self.max_runs = max_runs
        self.max_age = max_age
        self.evicted = 0
        # Plain dicts (insertion-ordered: the oldest live run comes first), changed without
        # the lock on the common path: one dict operation is atomic under the GIL, and the
        # lock is only taken to evict.
        self._live: dict[Any, Any] = {}
        # Ended run's key -> its Trace (a visible run) or its Hidden entry. The ring holds their
        # keys in the order they ended: the slot a new one takes names the oldest.
        self._ended: dict[Any, Any] = {}
        self._ring: list[Any] = [None] * max(1, max_ended)
        self._turns = itertools.count()
        self._lock = threading.Lock()
        # Taken to hand a trace's log over (never while holding it: eviction hands over too).
        self.handover_lock = threading.Lock()
        self._inserts = 0
        # Called with a trace whose runs were all evicted or ended (set by the handler).
        self.on_trace_done: Callable[[Trace], None] | None = None
        # The client the handler owning this map sends to (set by the handler).
        self.client_of: Callable[[], Any] | None = None
        _live_maps.add(self)

    @property
    def max_ended(self) -> int:
        """How many ended runs are remembered for children that start after them."""
        return len(self._ring)

    @max_ended.setter
    def max_ended(self, value: int) -> None:
        with self._lock:
            self._ring = [None] * max(1, int(value))
            self._ended = {}

    def __len__(self) -> int:
        return len(self._live)

    @property
    def ended_count(self) -> int:
        return len(self._ended)

    def get(self, run_id: Any) -> Any:
        """The live entry of a run: its Trace, or a Hidden; None when it is not live."""
        return self._live.get(key_of(run_id))

    def ended(self, key: Any) -> Any:
        return self._ended.get(key)

    def remember_ended(self, key: Any, entry: Any) -> None:
        self._ended[key] = entry
        ring = self._ring
        slot = next(self._turns) % len(ring)  # `next` on a count is atomic under the GIL
        oldest = ring[slot]
        ring[slot] = key
        if oldest is not None and oldest != key:
            self._ended.pop(oldest, None)

    def observation(self, trace: Trace, key: Any) -> Observation | None:
        """Run `key`'s observation, made now (with its ancestors') if nothing asked before.

        Most runs are never asked: only work nested in a run (a provider call in a tool, a user
        span, a child run's start) reads it, through LangChain's resolver."""
        if key == trace.root_key:
            return trace.root_obs
        made = trace.observation_map()
        pending: list[tuple[Any, int]] = []
        parent: Observation | None = None
        node = key
        while len(pending) < 256:
            hit = made.get(node)
            if hit is not None:
                parent = hit[0]
                break
            if node == trace.root_key:
                parent = trace.root_obs
                break
            at = trace.start_record(node)
            if at < 0:
                break
            pending.append((node, at))
            node = trace.log[at + 2]
            if node is None:
                break
        log = trace.log
        for member, at in reversed(pending):
            scope = log[at + 10] or trace.scope
            obs = Observation(
                GENERATION_KIND if log[at] in (CHAT, LLM) else SPAN_KIND,
                trace.trace_id,
                key_text(member),
                with_trace_id(scope, trace.trace_id),
                FRAMEWORK,
                parent,
            )
            made[member] = (obs, False)
            parent = obs
        hit = made.get(key)
        return hit[0] if hit is not None else parent

    def add(self, key: Any, entry: Any) -> None:
        live = self._live
        live[key] = entry
        self._inserts += 1  # a hint for when to look at ages: a lost update does no harm
        if len(live) > self.max_runs or not self._inserts & 63:
            with self._lock:
                while len(live) > self.max_runs:
                    self._evict_oldest()
                self._evict_old()

    def _evict_oldest(self) -> bool:
        live = self._live
        try:
            key = next(iter(live))
        except (StopIteration, RuntimeError):  # empty, or changed by another thread: later
            return False
        entry = live.pop(key, None)
        if entry is not None:
            self.evicted += 1
            self._forget(key, entry)
        return True

    def _start_of(self, key: Any, entry: Any) -> float | None:
        if type(entry) is Hidden:
            return entry.start
        at = entry.start_record(key)
        return entry.log[at + 7] if at >= 0 else None

    def _evict_old(self) -> None:
        limit = time.perf_counter() - self.max_age
        live = self._live
        while live:
            try:
                key, entry = next(iter(live.items()))
            except (StopIteration, RuntimeError):
                return
            start = self._start_of(key, entry)
            if (start is not None and start >= limit) or not self._evict_oldest():
                return

    def hand_over_all(self) -> None:
        """Every live run ends here, as it is (a client shutting down, the process exiting):
        its trace is handed over whole, root included, as soon as none of its runs is live."""
        with self._lock:
            live = self._live
            now = time.perf_counter()
            while live:
                try:
                    key = next(iter(live))
                except (StopIteration, RuntimeError):  # changed by another thread: again
                    continue
                entry = live.pop(key, None)
                if entry is not None:
                    self._forget(key, entry, now)

    def _forget(self, key: Any, entry: Any, now: float | None = None) -> None:
        # An evicted run never ends: nothing may keep joining it.
        if type(entry) is Hidden:
            return
        trace: Trace = entry
        if key == trace.root_key:
            if trace.root_obs is not None:
                keep_deferred(trace, key, trace.root_obs)
                trace.root_obs.closed = True
        elif trace.observations:
            hit = trace.observations.pop(key, None)
            if hit is not None:
                keep_deferred(trace, key, hit[0])
                hit[0].closed = True
        # It is sent as it is, not finished (no output, not an error; a stream's time ends at
        # its last token, an abandoned run's at its trace's last activity), so its trace keeps
        # its root and its steps their parents.
        with self.handover_lock:
            if now is None:
                now = _last_activity(trace, key)
            trace.log.extend((END, key, None, None, now, UNENDED))
        trace.open.discard(key)
        if not trace.open and self.on_trace_done is not None:
            # What of the trace did end is still delivered.
            self.on_trace_done(trace)

    def clear(self) -> None:
        with self._lock:
            self._live = {}
            self._ended = {}
            self._ring = [None] * len(self._ring)

    def _after_fork_in_child(self) -> None:
        # A lock held by another thread at fork time would never be released in the child,
        # and the parent's runs end in the parent: start empty.
        self._lock = threading.Lock()
        self.handover_lock = threading.Lock()
        self._live = {}
        self._ended = {}
        self._ring = [None] * len(self._ring)


def _last_activity(trace: Trace, key: Any) -> float:
    """When run `key` (not ended) was last heard of: its last token, or its trace's last start
    or end in the log (the rare path: eviction)."""
    times = trace.tokens.get(key) if trace.tokens else None
    if times is not None:
        return float(times[1])
    log = trace.log
    last = 0.0
    for at, is_end in record_positions(log, len(log)):
        last = max(last, log[at + (4 if is_end else 7)])
    return last or time.perf_counter()


_live_maps: weakref.WeakSet[RunMap] = weakref.WeakSet()


def tracked_elsewhere(key: Any, runs: RunMap) -> bool:
    """Whether a handler other than the one owning `runs`, sending to the same client, has the
    run `key` open (one sending elsewhere does not report it for this one's client)."""
    others = [other for other in list(_live_maps) if other is not runs and key in other._live]
    if not others:
        return False
    mine = runs.client_of() if runs.client_of is not None else None
    return any(
        mine is None or other.client_of is None or other.client_of() is mine for other in others
    )


def _reset_after_fork() -> None:
    for run_map in list(_live_maps):
        run_map._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
