"""A byte budget shared by the collector's request threads, so memory stays bounded.

Every capture request reserves what its body will cost before it costs it: the raw body,
each inflated megabyte, and an estimate of the parsed JSON. Requests past the budget wait
their turn (then get 503 with Retry-After); a body that alone exceeds it gets 413.

>>> budget = MemoryBudget(100)
>>> r = Reservation(budget, timeout=0)
>>> r.grow(10); budget.used   # a slot of half the budget
50
>>> r.release(); budget.used
0
"""

from __future__ import annotations

import threading
import time
from collections import deque

from ._ingest import BadRequest, parse_weight

__all__ = [
    "DEFAULT_BUDGET_BYTES",
    "PROTOBUF_WEIGHT",
    "MemoryBudget",
    "Reservation",
    "budget_for",
    "parse_weight",
]

DEFAULT_BUDGET_BYTES = 96 * 1024 * 1024

# Memory per byte of an OTLP protobuf body while it is parsed and converted (upb messages, span
# records, events). Measured on 20 MB bodies: one span with a 20 MB prompt peaks at 15x under
# tracemalloc (its text copied on its way to an event); 80,000 small spans at 7-8x under
# tracemalloc plus upb's own memory, which tracemalloc does not see (17x in RSS in all).
PROTOBUF_WEIGHT = 16
# What one request may reserve per byte of its largest body: the raw body, the inflated body
# twice (the growing buffer, then its copy) and the parse.
_REQUEST_WEIGHT = 3 + PROTOBUF_WEIGHT


def budget_for(max_body_bytes: int) -> int:
    """The default budget for a collector taking bodies up to `max_body_bytes`: two slots, each
    large enough to decode one body of that size (a smaller budget refused OTLP bodies of a
    fifth of the limit with 413), so two requests decode at once and the rest wait their turn."""
    return max(DEFAULT_BUDGET_BYTES, 2 * _REQUEST_WEIGHT * max_body_bytes)


class MemoryBudget:
    """Bytes that request threads may hold at once.

    Requests are admitted first come, first served, so a large honest body is not starved by a
    stream of small ones.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._cond = threading.Condition()
        self._queue: deque[object] = deque()

    def take(self, n: int, timeout: float, *, queued: bool = True) -> bool:
        deadline = time.monotonic() + timeout
        token = object()
        with self._cond:
            if queued:
                self._queue.append(token)
            try:
                while self.used + n > self.limit or (queued and self._queue[0] is not token):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._cond.wait(remaining)
                self.used += n
                return True
            finally:
                if queued:
                    self._queue.remove(token)
                    self._cond.notify_all()

    def give(self, n: int) -> None:
        with self._cond:
            self.used -= n
            self._cond.notify_all()


class Reservation:
    """One request's share of the budget: a slot of half of it, taken at the first `grow`.

    Two slots keep memory bounded with no request ever waiting on another one's growth (no
    deadlock); within its slot a request grows freely, past it `grow` raises BadRequest(413).
    Waiting for a slot longer than `timeout` raises BadRequest(503).
    """

    def __init__(self, budget: MemoryBudget, timeout: float = 10.0) -> None:
        self.budget = budget
        self.timeout = timeout
        self.held = 0
        self.used = 0

    def grow(self, n: int) -> None:
        if n <= 0:
            return
        slot = self.budget.limit // 2
        if self.used + n > slot:
            raise BadRequest(
                "body is too large or too deeply structured to decode within the collector's "
                f"memory budget ({slot // (1024 * 1024)} MB per request)",
                status=413,
            )
        if not self.held:
            if not self.budget.take(slot, self.timeout):
                raise BadRequest("the collector is busy decoding other requests; retry", status=503)
            self.held = slot
        self.used += n

    def release(self) -> None:
        if self.held:
            self.budget.give(self.held)
            self.held = 0
        self.used = 0
