"""Trace lifecycle: when a trace is complete, and sending what waited too long.

A trace is sent when its root has ended and nothing in it is still open (an unread stream, a
thread started inside it). Abandoned work is evicted after `stream_timeout` /
`open_trace_timeout` by a sweeper thread, so no trace waits forever.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from posthog_llm.instrumentation import (
    Emitter,
    close_observation,
    keep_deferred,
    report_internal_error,
)

from . import _nesting
from ._records import DROP, EXIT, INNER, SPENT, TIME_AT, WIDTH, Inner, Trace
from ._stream_tracking import StreamTracking

__all__ = ["TraceLifecycle"]

# A trace whose log holds only its root's two entries (a NOISE root with nothing inside).
_ROOT_ONLY = WIDTH[0] + WIDTH[EXIT]
# Log entries of internal work: internal spans and the ends of spans.
_INTERNAL = frozenset((INNER, EXIT, DROP))


class TraceLifecycle(StreamTracking):
    """Mixin of `PostHogLlamaIndexHandler`: open traces, their completion, eviction, sending."""

    stream_timeout: float
    open_trace_timeout: float
    _on: bool
    _emitter: Emitter
    _spans: dict[str, Trace | Inner]
    _traces: dict[str, Trace]
    _sweeper: threading.Thread | None
    _sweeper_lock: threading.Lock
    _wake: threading.Event
    _last_sweep: float

    def _closed(self, trace: Trace, id_: str) -> None:
        """Something in a trace whose root ended was closed, or the root itself."""
        if id_ != trace.key:
            self._settle(trace)
            return
        obs = trace.obs
        if obs is not None:
            close_observation(obs)
        complete = False
        with self._lock:
            trace.root_done = True
            if trace.streams and self._live_streams(trace):
                trace.awaiting = True  # the response is a stream nobody has read yet
            elif not trace.done and len(trace.opened) == len(trace.closed):
                trace.done = complete = True  # the common case: nothing outlives the root
        if complete:
            self._finish_trace(trace)
            return
        joining = trace.joining
        if joining is not None:
            # Something outlives the root (a stream, a thread): the enclosing span may end
            # before it, so it is joined now, while it is open.
            trace.joining = None
            trace.pvis = joining.span_id
        if not self._settle(trace):  # something outlives the root: it cannot wait forever
            self._ensure_sweeper()

    def _settle(self, trace: Trace) -> bool:
        """Send the trace if nothing in it is open any more; True when it is sent (or was)."""
        with self._lock:
            if trace.done:
                return True
            if not trace.root_done or len(trace.opened) != len(trace.closed):
                return False
            if trace.awaiting:
                # A stream the response carries is still unread (or being read elsewhere).
                if self._live_streams(trace):
                    return False
                trace.awaiting = False
            trace.done = True
        self._finish_trace(trace)
        return True

    def _finish_trace(self, trace: Trace) -> None:
        self._traces.pop(trace.key, None)
        spans = self._spans
        for span_id in trace.opened:  # span ids (and LLM calls' span ids again)
            spans.pop(span_id, None)
        # Freed now rather than when the worker has built the trace: fewer objects for the
        # collector to track (and promote) while the trace waits in the queue.
        trace.opened = trace.closed = SPENT
        if trace.streams:
            frames = self._frames
            for key in trace.streams:  # the trace is sent: later lazy work starts its own
                entry = frames.get(key)
                if entry is not None and entry.trace is trace:
                    frames.pop(key, None)
            trace.streams = None
        if trace.nested is not None:
            _nesting.close_nested(trace)
        obs = trace.obs
        if obs is not None and obs.deferred is not None:  # drop-in calls inside a bare LLM call
            keep_deferred(trace, trace.key, obs)
        trace.inner = None  # its internal spans are forgotten: no cycle left
        trace.obs = None  # closed: nested work no longer finds it through the trace
        if trace.emit is None and len(trace.log) <= _ROOT_ONLY:
            return  # an internal function called on its own: nothing to send
        joining = trace.joining
        if joining is not None:
            if not _sends_inside(trace.log):
                return  # internal work only: it joins nothing and sends nothing
            trace.pvis = joining.span_id
        # One queued item per trace: the worker rebuilds its spans and events from the log.
        trace.wall_offset = time.time() - time.perf_counter()
        self._emitter.emit_many(trace, trace.scope, trace_id=trace.id, client=trace.client)

    def _evict(self, trace: Trace) -> None:
        """Send a trace that waited too long (an abandoned stream) with what it has."""
        with self._lock:
            if trace.done:
                self._traces.pop(trace.key, None)
                return
            trace.done = True
        trace.evicted = time.perf_counter()
        gens = self._gens
        for span_id, entry in list(gens.items()):
            if entry[0] is trace:
                gens.pop(span_id, None)
        for key, frame in list(self._frames.items()):
            if frame.trace is trace:
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
            and now - _last_logged(t) > (after_root if t.root_done else running)
        ]
        for trace in stale:
            self._evict(trace)

    def _ensure_sweeper(self) -> None:
        """A daemon thread sends abandoned streams' traces even when nothing else happens."""
        if self._sweeper is not None:
            # Running (every streamed query comes here): no lock, no `is_alive()`. A sweeper
            # that is about to stop clears this first and then looks for waiting traces again,
            # so the trace that brought us here is never left without one.
            return
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
                self._sweeper = None
                if not any(t.root_done for t in list(self._traces.values())):
                    return  # nothing outlives its root any more
                self._sweeper = threading.current_thread()


def _last_logged(trace: Trace) -> float:
    """Time of the log's last entry (the hooks keep no separate "last activity" per hook)."""
    log = trace.log
    i, n, last = 0, len(log), trace.start
    while i < n:
        tag = log[i]
        width = WIDTH[tag]
        if i + width > n:
            break
        last = log[i + TIME_AT[tag]]
        i += width
    return float(last)


def _sends_inside(log: list[Any]) -> bool:
    """Whether a root of internal work logged more than internal spans (its own entry, INNER
    spans and their ends)."""
    n = len(log)
    i = WIDTH[log[0]] if n else 0  # the root's own entry
    while i < n:
        tag = log[i]
        if tag not in _INTERNAL:
            return True
        i += WIDTH[tag]
    return False
