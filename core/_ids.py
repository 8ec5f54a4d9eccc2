"""Random (version 4) UUID strings, cheap enough for the caller's hot path.

`str(uuid.uuid4())` costs ~2.5 µs and a system call that releases the GIL, which hands the
sender's worker the GIL in the middle of the user's call. Here one `os.urandom` call makes 256
ids; taking one is a `deque.popleft` (atomic, so threads never share an id). A forked child
starts with an empty pool, so it never repeats its parent's ids.
"""

from __future__ import annotations

import binascii
import os
from collections import deque

__all__ = ["uuid4_str"]

_BATCH = 256
_pool: deque[str] = deque()


# RFC 4122: version 4 in the high nibble of byte 6, variant 10xx in the top bits of byte 8.
_VERSION = bytes((b & 0x0F) | 0x40 for b in range(256))
_VARIANT = bytes((b & 0x3F) | 0x80 for b in range(256))


# One pool's ids as text: hex digits go into a template that already holds the dashes, one
# strided copy per digit position (32 C-level copies for all 256 ids instead of 256 f-strings:
# ~0.16 µs per id instead of ~0.55), and one `split` cuts it into strings.
_WIDTH = 37  # 36 characters and a space
_TEMPLATE = (b"-" * 36 + b" ") * _BATCH
_DIGITS = [p for p in range(36) if p not in (8, 13, 18, 23)]


def _refill() -> None:
    raw = bytearray(os.urandom(16 * _BATCH))
    raw[6::16] = raw[6::16].translate(_VERSION)
    raw[8::16] = raw[8::16].translate(_VARIANT)
    digits = binascii.hexlify(raw)
    text = bytearray(_TEMPLATE)
    for index, position in enumerate(_DIGITS):
        text[position::_WIDTH] = digits[index::32]
    _pool.extend(text.decode("ascii").split())


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
