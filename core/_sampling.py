"""Trace sampling: keep or drop whole traces, the same way in every process."""

from __future__ import annotations

import zlib
from typing import Any

__all__ = ["keep_trace"]

_SCALE = 2**32


def keep_trace(trace_id: Any, rate: float) -> bool:
    """Whether the trace `trace_id` is kept when sampling at `rate` (0.0 to 1.0).

    Decided by a hash of the id alone, so every event of a trace (from any integration, thread
    or process) gets the same answer.

    >>> keep_trace("t1", 1.0), keep_trace("t1", 0.0)
    (True, False)
    """
    if rate >= 1.0:
        return True
    if rate <= 0.0:
        return False
    return zlib.crc32(str(trace_id).encode("utf-8", "surrogatepass")) < rate * _SCALE
