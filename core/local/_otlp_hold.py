"""The collector's hold on AI traces whose root span has not arrived yet.

An OpenTelemetry exporter sends spans as they end, in batches a few seconds apart, so a trace's
root (which ends last) often comes in a later request than its steps. Converting each request on
its own would give those steps without the identity the root carries, without the non-AI spans
that sit between AI spans, and with a parent id no event has. The collector holds a trace's
spans until its root comes, or until `hold_seconds` pass without a new span of the trace (an
exporter that never sends the root, such as posthog-python's, which forwards AI spans only);
then the whole trace goes through the conversion at once, as the in-process processor's does.

>>> held = HeldTraces(hold_seconds=10.0)
>>> held.put("trace-1", [], "")
[]
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

__all__ = ["HeldTraces"]

# What a trace's held spans carry with them: its records and the request's Authorization
# header (stored later under the same api key rule as the request that brought them).
Held = tuple[str, list[Any], str]


class HeldTraces:
    """Records by trace id, with when each trace last got a span; bounded by `max_spans`."""

    def __init__(self, hold_seconds: float, *, max_spans: int = 10_000) -> None:
        self.hold_seconds = hold_seconds
        self.max_spans = max_spans
        self._traces: OrderedDict[str, tuple[list[Any], str, float]] = OrderedDict()
        self._spans = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._traces)

    def take(self, trace_id: str) -> list[Any]:
        """The held records of `trace_id` (removed), or an empty list."""
        with self._lock:
            held = self._traces.pop(trace_id, None)
            if held is None:
                return []
            self._spans -= len(held[0])
            return held[0]

    def merge(
        self,
        trace_id: str,
        records: list[Any],
        authorization: str,
        keep: Callable[[list[Any]], bool],
    ) -> tuple[list[Any] | None, list[Held]]:
        """Add `records` to what is held of `trace_id`, atomically (two requests may bring spans
        of one trace at once). When `keep(all records)` the trace stays held: returns None and
        the traces that had to make room; else it is released: returns all its records."""
        with self._lock:
            previous = self._traces.pop(trace_id, None)
            if previous is not None:
                self._spans -= len(previous[0])
                records = previous[0] + records
            if not keep(records):
                return records, []
            return None, self._hold(trace_id, records, authorization)

    def put(self, trace_id: str, records: list[Any], authorization: str) -> list[Held]:
        """Hold `records` (all of the trace's so far); returns the traces that had to make room
        (the longest held first), to be converted now."""
        with self._lock:
            previous = self._traces.pop(trace_id, None)
            if previous is not None:
                self._spans -= len(previous[0])
            return self._hold(trace_id, records, authorization)

    def _hold(self, trace_id: str, records: list[Any], authorization: str) -> list[Held]:
        """(Under the lock.) Hold `records`; over the bound, the traces held longest make room,
        the newest one too when it alone is over the bound."""
        self._traces[trace_id] = (records, authorization, time.monotonic())
        self._spans += len(records)
        pushed: list[Held] = []
        while self._spans > self.max_spans and self._traces:
            oldest, (old_records, old_auth, _) = self._traces.popitem(last=False)
            self._spans -= len(old_records)
            pushed.append((oldest, old_records, old_auth))
        return pushed

    def due(self, *, everything: bool = False) -> list[Held]:
        """The traces without a new span for `hold_seconds` (all of them with `everything`)."""
        limit = time.monotonic() - self.hold_seconds
        taken: list[Held] = []
        with self._lock:
            for trace_id in list(self._traces):
                records, authorization, last = self._traces[trace_id]
                if not everything and last > limit:
                    break  # ordered by last arrival: the rest came later still
                del self._traces[trace_id]
                self._spans -= len(records)
                taken.append((trace_id, records, authorization))
        return taken
