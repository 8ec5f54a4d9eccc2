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


# RFC 4122: version 4 in the high nibble of byte 6, variant 10xx in the top bits of byte 8.
_VERSION = bytes((b & 0x0F) | 0x40 for b in range(256))
_VARIANT = bytes((b & 0x3F) | 0x80 for b in range(256))


def _refill() -> None:
    raw = bytearray(os.urandom(16 * _BATCH))
    raw[6::16] = raw[6::16].translate(_VERSION)
    raw[8::16] = raw[8::16].translate(_VARIANT)
    h = raw.hex()  # one pass over all ids, then slices of it
    _pool.extend(
        [
            f"{h[i : i + 8]}-{h[i + 8 : i + 12]}-{h[i + 12 : i + 16]}-{h[i + 16 : i + 20]}-{h[i + 20 : i + 32]}"
            for i in range(0, 32 * _BATCH, 32)
        ]
    )


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
