"""Run bookkeeping: what a hook records, and a bounded map that forgets abandoned runs.

Hooks store raw references and a `perf_counter()` timestamp here and nothing else; all
conversion happens later in the event builder, on the sender's worker thread.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any
from uuid import UUID

from posthog_llm.instrumentation import (
    GENERATION_KIND,
    SPAN_KIND,
    Observation,
    Scope,
    with_trace_id,
)

__all__ = [
    "Trace",
    "Run",
    "RunMap",
    "CHAIN",
    "TOOL",
    "RETRIEVER",
    "CHAT",
    "LLM",
    "FRAMEWORK",
]

CHAIN, TOOL, RETRIEVER, CHAT, LLM = "chain", "tool", "retriever", "chat", "llm"
FRAMEWORK = "langchain"


class Trace:
    """What every run of one trace shares: its id, its root and who it belongs to."""

    __slots__ = ("trace_id", "root_key", "scope", "properties_ref", "sent_whole")

    def __init__(
        self,
        trace_id: str,
        root_id: Any,
        scope: Scope,
        properties_ref: Any,
    ) -> None:
        self.trace_id = trace_id
        # The root run's key in the run map (what the memory of ended runs is keyed by).
        self.root_key = _key(root_id)
        self.scope = scope
        # The root's `posthog_properties` metadata object: children inherit the very same
        # object, so an identity check tells whether a child added properties of its own.
        self.properties_ref = properties_ref
        # Long texts that generations of this trace sent whole (filled by their builders on
        # the worker; the trace's own event, built last, then does not repeat them in full).
        # None once the trace's own event was built (or its root was forgotten): nothing
        # would read them any more. An empty tuple until the first one: most traces have none,
        # and a list per trace would be one more object for the collector while it is queued.
        self.sent_whole: list[str] | tuple[()] | None = ()


class Run:
    """One LangChain run between its start and end hooks."""

    __slots__ = (
        "kind",
        "key",
        "run_id",
        "trace",
        "parent_span",
        "hidden",
        "name",
        "serialized",
        "inputs",
        "metadata",
        "params",
        "run_type",
        "start",
        "first_token",
        "last_token",
        "scope",
        "obs",
        "own_obs",
        "asked",
        "parent_key",
        "span_str",
        # Set by the end hook: what `__call__` hands the builder on the worker thread.
        "builder",
        "emitter",
        "output",
        "error",
        "end",
        "max_chars",
    )

    def __init__(
        self,
        kind: str,
        run_id: UUID,
        trace: Trace,
        parent_span: Any,
        name: Any,
        serialized: Any,
        inputs: Any,
        start: float,
    ) -> None:
        self.kind = kind
        # The run map's key; LangChain's UUID object itself is not kept (one object fewer per
        # run for the garbage collector while the event waits in the queue): `span_id()`.
        self.key = _key(run_id)
        self.run_id = None if type(run_id) is UUID else run_id
        self.trace = trace
        # The `$ai_parent_id` of this run's event: None for the root, the trace id for a direct
        # child of the root, else the nearest visible ancestor's run id.
        self.parent_span = parent_span
        self.hidden = False
        self.name = name
        self.serialized = serialized
        self.inputs = inputs
        self.metadata: Any = None
        self.params: Any = None
        self.run_type: Any = None
        self.start = start
        self.first_token: float | None = None
        self.last_token: float | None = None
        self.scope = trace.scope
        # The run's observation, for work nested in it: opened (`own_obs`) by a root, or by a
        # run that starts where no observation of its trace is visible; for other runs made
        # only when nested work asks LangChain's resolver which run is executing.
        self.obs: Observation | None = None
        self.own_obs = False
        self.asked = False  # whether LangChain's resolver named this run as executing
        self.parent_key: Any = None  # the parent run's key in the run map (None: a root)
        self.span_str: str | None = None  # str(run_id), made when first needed: `span_id()`
        self.builder: Callable[..., dict[str, Any]] | None = None
        self.emitter: Any = None
        self.output: Any = None
        self.error: BaseException | None = None
        self.end = start
        self.max_chars: int | None = None

    def __call__(self) -> dict[str, Any]:
        """The event's properties (on the worker): the ended run is its own builder.

        One object per event instead of a `functools.partial` and its argument tuple: fewer
        allocations on the caller and fewer objects for the garbage collector while queued.
        """
        builder = self.builder
        if builder is None:
            raise RuntimeError("the run has not ended")
        return builder(self.emitter, self, self.output, self.error, self.end, self.max_chars)

    def span_id(self) -> Any:
        """The run's id as a string (its `$ai_span_id`), made once, when first asked for."""
        span = self.span_str
        if span is None:
            run_id = self.run_id
            if run_id is None and type(self.key) is int:
                # What `str(UUID(int=key))` gives, without building the UUID (Python code).
                h = f"{self.key:032x}"
                span = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
            else:
                span = str(run_id)
            self.span_str = span
        return span

    def span_id_for_children(self) -> Any:
        """What a child of this run uses as its `$ai_parent_id`."""
        if self.parent_span is None:
            return self.trace.trace_id
        if self.hidden:
            return self.parent_span
        return self.span_id()


class RunMap:
    """Live runs by run id, bounded in size and age, safe across threads.

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
        # lock is only taken to evict. An `OrderedDict` costs twice as much per operation.
        self._live: dict[Any, Run] = {}
        # Ended run's key -> its Trace when the span its children use can be told from the key
        # (the root: the trace id; a visible run: its own UUID), else (Trace, span). Ended
        # entries live long enough to reach the collector's oldest generation, so the common
        # case adds no object of its own (the Trace is shared by the whole trace). The ring
        # holds their keys in the order they ended: the slot a new one takes names the oldest.
        self._ended: dict[Any, Any] = {}
        self._ring: list[Any] = [None] * max(1, max_ended)
        self._turns = itertools.count()
        self._lock = threading.Lock()
        self._inserts = 0
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

    def get(self, run_id: UUID) -> Run | None:
        # A plain read is atomic under the GIL; no lock on the per-token path.
        return self._live.get(run_id.int if type(run_id) is UUID else run_id)

    def observation(self, run: Run) -> Observation:
        """`run`'s observation, made now (with those of its ancestors) if nothing asked before.

        Most runs are never asked: only work nested in a run (a provider call in a tool, a user
        span, a child run's start) reads it, through LangChain's resolver."""
        if run.obs is not None:
            return run.obs
        pending: list[Run] = []
        node: Run | None = run
        while node is not None and node.obs is None and len(pending) < 256:
            pending.append(node)
            key = node.parent_key
            node = self._live.get(key) if key is not None else None
        parent = node.obs if node is not None else None
        for member in reversed(pending):
            trace = member.trace
            made = member.obs = Observation(
                GENERATION_KIND if member.kind in (CHAT, LLM) else SPAN_KIND,
                trace.trace_id,
                # A hidden run (LangGraph's plumbing) stands for its visible ancestor.
                member.span_id_for_children(),
                with_trace_id(member.scope, trace.trace_id),
                FRAMEWORK,
                parent,
            )
            parent = made
        return made  # `run` is pending[0], made last

    def parent_of(self, parent_run_id: UUID) -> tuple[Trace, Any] | None:
        """The trace and `$ai_parent_id` for a child of `parent_run_id`, if it is known."""
        key: Any = parent_run_id.int if type(parent_run_id) is UUID else parent_run_id
        parent = self._live.get(key)
        if parent is not None:
            return parent.trace, parent.span_id_for_children()
        ended = self._ended.get(key)
        if ended is None or type(ended) is tuple:
            return ended
        if key == ended.root_key:
            return ended, ended.trace_id
        return ended, UUID(int=key)

    def add(self, run: Run) -> None:
        live = self._live
        live[run.key] = run
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
        run = live.pop(key, None)
        if run is not None:
            _forget(run)
            self.evicted += 1
        return True

    def _evict_old(self) -> None:
        limit = time.perf_counter() - self.max_age
        live = self._live
        while live:
            try:
                oldest = next(iter(live.values()))
            except (StopIteration, RuntimeError):
                return
            if oldest.start >= limit or not self._evict_oldest():
                return

    def pop(self, run_id: UUID) -> Run | None:
        key = run_id.int if type(run_id) is UUID else run_id
        run = self._live.pop(key, None)
        if run is not None and run.kind not in (CHAT, LLM):
            ended = self._ended
            if run.parent_span is None or (
                not run.hidden and run.run_id is None and type(key) is int
            ):
                ended[key] = run.trace  # parent_of() tells the span from the key
            else:
                ended[key] = (run.trace, run.span_id_for_children())
            ring = self._ring
            slot = next(self._turns) % len(ring)  # `next` on a count is atomic under the GIL
            oldest = ring[slot]
            ring[slot] = key
            if oldest is not None and oldest != key:
                ended.pop(oldest, None)
        return run

    def clear(self) -> None:
        with self._lock:
            self._live = {}
            self._ended = {}
            self._ring = [None] * len(self._ring)

    def _after_fork_in_child(self) -> None:
        # A lock held by another thread at fork time would never be released in the child,
        # and the parent's runs end in the parent: start empty.
        self._lock = threading.Lock()
        self._live = {}
        self._ended = {}
        self._ring = [None] * len(self._ring)


def _forget(run: Run) -> None:
    # An evicted run never ends: nothing may keep joining it.
    if run.obs is not None:
        run.obs.closed = True
    if run.parent_span is None:
        # Its trace's own event will never be built: stop collecting texts for it (the memory
        # of ended runs may keep the Trace a while longer).
        run.trace.sent_whole = None


def _key(run_id: Any) -> Any:
    # Keyed by the UUID's integer: `UUID.__hash__` is Python code, `int.__hash__` is not.
    return run_id.int if type(run_id) is UUID else run_id


_live_maps: weakref.WeakSet[RunMap] = weakref.WeakSet()


def _reset_after_fork() -> None:
    for run_map in list(_live_maps):
        run_map._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
