"""Run a function in a forked child and read back what it reports."""

from __future__ import annotations

import os
from collections.abc import Callable


def in_forked_child(body: Callable[[], str]) -> str:
    """`body()` runs in a child made by `os.fork()`; its return value comes back as text."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_fd)
            os.write(write_fd, body().encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    os.waitpid(pid, 0)
    with os.fdopen(read_fd) as f:
        return f.read()
