"""An in-memory destination: the test seam, and a handy sink for notebooks."""

from __future__ import annotations

import json
import threading
from typing import Any

__all__ = ["InMemoryDestination"]


class InMemoryDestination:
    """Keeps every delivered event as a dict.

    >>> from posthog_llm import Client, InMemoryDestination
    >>> sink = InMemoryDestination()
    >>> client = Client(destination=sink)
    >>> _ = client.capture("$ai_span", distinct_id="u1", properties={"$ai_trace_id": "t"})
    >>> client.flush(timeout=5)
    True
    >>> sink.events[0]["event"]
    '$ai_span'
    """

    description = "memory"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[dict[str, Any]] = []
        self.batches = 0

    def send(self, events: list[bytes], *, timeout: float) -> None:
        parsed = [json.loads(e) for e in events]
        with self._lock:
            self._events.extend(parsed)
            self.batches += 1

    @property
    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._events)

    def named(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == event]

    def clear(self) -> None:
        with self._lock:
            self._events.clear()

    def close(self) -> None:
        pass
