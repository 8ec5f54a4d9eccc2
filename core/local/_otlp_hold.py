"""The collector's hold on AI traces whose root span has not arrived yet.

An OpenTelemetry exporter sends spans as they end, in batches a few seconds apart, so a trace's
root (which ends last) often comes in a later request than its steps. Converting each request on
its own would give those steps without the identity the root carries, without the non-AI spans
that sit between AI spans, and with a parent id no event has. The collector holds a trace's
spans until its root comes, or until `hold_seconds` pass without a new span of the trace (an
exporter that never sends the root, such as posthog-python's, which forwards AI spans only);
then the whole trace goes through the conversion at once, as the in-process processor's does.

>>> held = HeldTraces(hold_seconds=10.0)
>>> held.merge("trace-1", ["a span"], "", keep=lambda records: True)
(None, [])
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

__all__ = ["HeldTraces", "record_weight"]

# What a trace's held spans carry with them: its records and the request's Authorization
# header (stored later under the same api key rule as the request that brought them).
Held = tuple[str, list[Any], str]


def record_weight(record: Any) -> int:
    """Bytes a held span record keeps, estimated: its text attributes (prompts and outputs are
    most of it), its events', and a fixed part for the rest."""
    weight = 256
    for value in record.attributes.values():
        weight += len(value) if isinstance(value, str) else 16
    for event in record.events:
        weight += 64 + sum(len(v) if isinstance(v, str) else 16 for v in event.attributes.values())
    return weight


class HeldTraces:
    """Records by trace id, with when each trace last got a span; bounded in spans and in the
    bytes `weigh` estimates for them (attribute text, mostly prompts and outputs)."""

    def __init__(
        self,
        hold_seconds: float,
        *,
        max_spans: int = 10_000,
        max_bytes: int = 64 * 1024 * 1024,
        weigh: Callable[[Any], int] | None = None,
    ) -> None:
        self.hold_seconds = hold_seconds
        self.max_spans = max_spans
        self.max_bytes = max_bytes
        self._weigh = weigh
        # trace id -> (records, authorization, last arrival, their weight)
        self._traces: OrderedDict[str, tuple[list[Any], str, float, int]] = OrderedDict()
        self._spans = 0
        self._bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._traces)

    def _weight(self, records: list[Any]) -> int:
        weigh = self._weigh
        return sum(weigh(r) for r in records) if weigh is not None else 0

    def _pop(self, trace_id: str) -> tuple[list[Any], str, float, int] | None:
        """(Under the lock.) Stop holding a trace."""
        held = self._traces.pop(trace_id, None)
        if held is not None:
            self._spans -= len(held[0])
            self._bytes -= held[3]
        return held

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
        added = self._weight(records)
        with self._lock:
            previous = self._pop(trace_id)
            weight = added
            if previous is not None:
                records = previous[0] + records
                weight += previous[3]
            if not keep(records):
                return records, []
            return None, self._hold(trace_id, records, authorization, weight)

    def _hold(
        self, trace_id: str, records: list[Any], authorization: str, weight: int
    ) -> list[Held]:
        """(Under the lock.) Hold `records`; over a bound, the traces held longest make room,
        the newest one too when it alone is over it."""
        self._traces[trace_id] = (records, authorization, time.monotonic(), weight)
        self._spans += len(records)
        self._bytes += weight
        pushed: list[Held] = []
        while (self._spans > self.max_spans or self._bytes > self.max_bytes) and self._traces:
            oldest = next(iter(self._traces))
            old_records, old_auth, _, _ = self._pop(oldest)  # type: ignore[misc]
            pushed.append((oldest, old_records, old_auth))
        return pushed

    def due(self, *, everything: bool = False) -> list[Held]:
        """The traces without a new span for `hold_seconds` (all of them with `everything`)."""
        limit = time.monotonic() - self.hold_seconds
        taken: list[Held] = []
        with self._lock:
            for trace_id in list(self._traces):
                records, authorization, last, _ = self._traces[trace_id]
                if not everything and last > limit:
                    break  # ordered by last arrival: the rest came later still
                self._pop(trace_id)
                taken.append((trace_id, records, authorization))
        return taken
