"""The sender's counters (safe from any thread) and its rate-limited warnings."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

__all__ = ["SenderStats", "Counters", "RateLimitedWarning", "COUNTER_NAMES"]

log = logging.getLogger("posthog_llm")

COUNTER_NAMES = (
    "sent",
    "dropped",
    "retried",
    "failed",
    "filtered",
    "invalid",
    "batches",
    "spooled",
    "replayed",
    "spool_dropped",
)


@dataclass(frozen=True)
class SenderStats:
    """Counters since the client started (or since a fork, in the child).

    queued: events in memory, not yet delivered; sent: delivered (replayed ones included);
    dropped: lost in memory (queue full without a spool, or captured after shutdown);
    retried: event-attempts that were retried; failed: rejected by the endpoint or unbuildable;
    filtered: dropped by `before_send`; invalid: rejected by `capture` (e.g. no event name);
    batches: requests that succeeded; spooled: written to the disk spool; replayed: delivered from
    the spool; spool_dropped: oldest spooled events dropped because the spool was full;
    spool_pending: events in the spool now.
    """

    queued: int
    sent: int
    dropped: int
    retried: int
    failed: int
    filtered: int
    invalid: int
    batches: int
    spooled: int
    replayed: int
    spool_dropped: int
    spool_pending: int

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class Counters:
    """Named integer counters; `add` is safe from caller threads and the worker alike."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._values = dict.fromkeys(COUNTER_NAMES, 0)

    def add(self, name: str, count: int = 1) -> None:
        with self._lock:
            self._values[name] += count

    def get(self, name: str) -> int:
        return self._values[name]

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._values)


class RateLimitedWarning:
    """Log at most one warning per interval, with the count of what happened meanwhile."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._last = 0.0
        self._suppressed = 0
        self._lock = threading.RLock()

    def warn(self, message: str, *args: Any) -> None:
        now = time.monotonic()
        with self._lock:
            if self._last and now - self._last < self.interval:
                self._suppressed += 1
                return
            suppressed, self._suppressed, self._last = self._suppressed, 0, now
        if suppressed:
            message += " (%d similar messages suppressed)"
            args = (*args, suppressed)
        log.warning(message, *args)
