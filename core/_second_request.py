"""A helper thread that keeps a second request in flight next to the sender's worker.

Sending a batch is mostly waiting: for the endpoint to read, decompress and parse the body, and
for the network. While one batch waits on the helper, the worker builds and compresses the next
and sends it itself, so the endpoint's handling of one request overlaps the client's work on the
other. At most two requests are ever in flight; with nothing else to send, the worker sends the
batch itself and no thread hand-off happens.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

__all__ = ["SecondRequest"]


class SecondRequest:
    """`try_hand(batch)` starts `deliver(batch)` on the helper thread unless it is busy.

    >>> sent = []
    >>> helper = SecondRequest(sent.append)
    >>> helper.try_hand([b"{}"]), helper.wait_idle(1.0), sent
    (True, True, [[b'{}']])
    >>> helper.stop()
    """

    def __init__(self, deliver: Callable[[list[bytes]], None]) -> None:
        self._deliver = deliver
        self._idle = threading.Condition(threading.Lock())
        self._busy = False
        self._batch: list[bytes] | None = None
        self._ready = threading.Event()
        self._stopped = False
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def try_hand(self, batch: list[bytes]) -> bool:
        """Send `batch` on the helper thread; False (nothing done) while it is busy."""
        with self._idle:
            if self._busy or self._stopped:
                return False
            self._busy = True
            self._batch = batch
        thread = self._thread
        if thread is None or not thread.is_alive():
            thread = threading.Thread(
                target=self._run, name="posthog-llm-second-request", daemon=True
            )
            self._thread = thread
            thread.start()
        self._ready.set()
        return True

    def runs_on(self, thread: threading.Thread) -> bool:
        """Whether `thread` is the helper thread."""
        return thread is self._thread

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until the helper's request (if any) is done; False if `timeout` came first."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._busy, timeout)

    def stop(self) -> None:
        """The helper thread ends once its current request (if any) is done."""
        with self._idle:
            self._stopped = True
        self._ready.set()

    def _run(self) -> None:
        while True:
            self._ready.wait()
            self._ready.clear()
            if self._pid != os.getpid():
                return
            with self._idle:
                batch, self._batch = self._batch, None
            if batch is not None:
                try:
                    # `deliver` settles its own outcome (and reports its own errors).
                    self._deliver(batch)
                finally:
                    with self._idle:
                        self._busy = False
                        self._idle.notify_all()
            if self._stopped:
                return
