"""Trace lifecycle: when a trace is complete, and sending what waited too long.

A trace is sent when its root has ended and nothing in it is still open (an unread stream, a
thread started inside it). Abandoned work is evicted after `stream_timeout` /
`open_trace_timeout` by a sweeper thread, so no trace waits forever.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from posthog_llm.instrumentation import GENERATION, SPAN, TRACE, Emitter, report_internal_error

from ._records import Node, Trace
from ._stream_tracking import StreamTracking

__all__ = ["TraceLifecycle"]


class TraceLifecycle(StreamTracking):
    """Mixin of `PostHogLlamaIndexHandler`: open traces, their release, eviction and sending."""

    stream_timeout: float
    open_trace_timeout: float
    _on: bool
    _emitter: Emitter
    _spans: dict[str, Node]
    _traces: dict[str, Trace]
    _sweeper: threading.Thread | None
    _sweeper_lock: threading.Lock
    _wake: threading.Event
    _last_sweep: float

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
            self._emitter.emit(SPAN, trace, trace.scope, trace_id=trace.id)
        elif trace.emit or (trace.emit is None and trace.has_events):
            self._emitter.emit(TRACE, trace, trace.scope, trace_id=trace.id)

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
                        self._emit(GENERATION, gen, trace)
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
