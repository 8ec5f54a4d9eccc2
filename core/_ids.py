"""Random (version 4) UUID strings, cheap enough for the caller's hot path.

`str(uuid.uuid4())` costs ~2.5 µs and a system call that releases the GIL, which hands the
sender's worker the GIL in the middle of the user's call. Here one `os.urandom` call makes 256
ids; taking one is a `deque.popleft` (atomic, so threads never share an id). A forked child
starts with an empty pool, so it never repeats its parent's ids.
"""

from __future__ import annotations

import os
from collections import deque

__all__ = ["uuid4_str"]

_BATCH = 256
_pool: deque[str] = deque()


def _refill() -> None:
    raw = bytearray(os.urandom(16 * _BATCH))
    ids = []
    for i in range(0, 16 * _BATCH, 16):
        # RFC 4122: version 4 in the high nibble of byte 6, variant 10xx in byte 8.
        raw[i + 6] = (raw[i + 6] & 0x0F) | 0x40
        raw[i + 8] = (raw[i + 8] & 0x3F) | 0x80
        h = raw[i : i + 16].hex()
        ids.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    _pool.extend(ids)


def uuid4_str() -> str:
    """A new random UUID as its canonical 36-character string.

    >>> import uuid
    >>> uuid.UUID(uuid4_str()).version
    4
    """
    try:
        return _pool.popleft()
    except IndexError:
        _refill()
        return _pool.popleft()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_pool.clear)
