"""A byte budget shared by the collector's request threads, so memory stays bounded.

Every capture request reserves what its body will cost before it costs it: the raw body,
each inflated megabyte, and an estimate of the parsed JSON. Requests past the budget wait
their turn (then get 503 with Retry-After); a body that alone exceeds it gets 413.

>>> budget = MemoryBudget(100)
>>> r = Reservation(budget, timeout=0)
>>> r.grow(60); budget.used
60
>>> r.release(); budget.used
0
"""

from __future__ import annotations

import threading
import time

from ._ingest import BadRequest, parse_weight

__all__ = ["DEFAULT_BUDGET_BYTES", "MemoryBudget", "Reservation", "parse_weight"]

DEFAULT_BUDGET_BYTES = 128 * 1024 * 1024


class MemoryBudget:
    """Bytes that request threads may hold at once."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._cond = threading.Condition()

    def take(self, n: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.used + n > self.limit:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            self.used += n
            return True

    def give(self, n: int) -> None:
        with self._cond:
            self.used -= n
            self._cond.notify_all()


class Reservation:
    """One request's share of the budget; `grow` raises BadRequest (413 or 503) when refused."""

    def __init__(self, budget: MemoryBudget, timeout: float = 10.0) -> None:
        self.budget = budget
        self.timeout = timeout
        self.held = 0

    def grow(self, n: int) -> None:
        if n <= 0:
            return
        if self.held + n > self.budget.limit:
            raise BadRequest(
                "body is too large or too deeply structured to decode within the collector's "
                f"memory budget ({self.budget.limit // (1024 * 1024)} MB)",
                status=413,
            )
        if not self.budget.take(n, self.timeout):
            raise BadRequest("the collector is busy decoding other requests; retry", status=503)
        self.held += n

    def release(self) -> None:
        if self.held:
            self.budget.give(self.held)
            self.held = 0
