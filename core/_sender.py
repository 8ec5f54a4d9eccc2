"""One background worker per client: a bounded queue, batching, retries, flush and shutdown.

The caller's thread only appends to a deque. The worker turns queued items into JSON bytes
(building, serializing and truncating off the caller's thread), groups them into batches by count
and bytes, and hands each batch to a destination, retrying with backoff when that is worth it.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .destinations import BatchTooLargeError, Destination, PermanentError, RetryableError

__all__ = ["BatchSender", "SenderStats"]

log = logging.getLogger("posthog_llm")

_live_senders: weakref.WeakSet[BatchSender] = weakref.WeakSet()

# Batch size while catching up; PostHog accepts batches of this size (bodies up to 20 MB).
_CATCH_UP_BATCH = 2_000


@dataclass(frozen=True)
class SenderStats:
    """Counters since the client started (or since a fork, in the child)."""

    queued: int
    sent: int
    dropped: int
    retried: int
    failed: int
    filtered: int
    batches: int

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class _RateLimitedWarning:
    """Log at most one warning per interval, with the count of what happened meanwhile."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._last = 0.0
        self._suppressed = 0

    def warn(self, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._last < self.interval and self._last:
            self._suppressed += 1
            return
        suppressed, self._suppressed, self._last = self._suppressed, 0, now
        if suppressed:
            message += " (%d similar messages suppressed)"
            args = (*args, suppressed)
        log.warning(message, *args)


class BatchSender:
    """Ships items to a destination from one daemon thread.

    `process(item)` turns a queued item into the event's JSON bytes, or None to drop it
    (`before_send`). It runs on the worker thread.
    """

    def __init__(
        self,
        destination: Destination,
        process: Callable[[Any], bytes | None],
        *,
        flush_at: int = 250,
        flush_interval: float = 0.5,
        max_queue_size: int = 100_000,
        max_queue_bytes: int = 64 * 1024 * 1024,
        max_batch_bytes: int = 4 * 1024 * 1024,
        timeout: float = 10.0,
        max_retries: int = 6,
        warn_interval: float = 10.0,
    ) -> None:
        self.destination = destination
        self._process = process
        self.flush_at = flush_at
        self.flush_interval = flush_interval
        self.max_queue_size = max_queue_size
        self.max_queue_bytes = max_queue_bytes
        self.max_batch_bytes = max_batch_bytes
        self.timeout = timeout
        self.max_retries = max_retries
        self._warning = _RateLimitedWarning(warn_interval)
        self._init_state()
        _live_senders.add(self)

    # -- state ---------------------------------------------------------------------------------

    def _init_state(self) -> None:
        self._queue: deque[Any] = deque()
        self._backlog: deque[bytes] = deque()
        self._backlog_bytes = 0
        self._backlog_lock = threading.Lock()
        self._lock = threading.Lock()
        self._progress = threading.Condition(threading.Lock())
        self._wake = threading.Event()
        self._abort = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._stopping = False
        self._closed = False
        self._deadline: float | None = None
        self._flush_waiters = 0
        self._accepted = 0
        self._finished = 0  # accepted items that were sent, failed, filtered or dropped late
        self._sent = 0
        self._dropped = 0
        self._retried = 0
        self._failed = 0
        self._filtered = 0
        self._batches = 0

    def _after_fork_in_child(self) -> None:
        # The parent's queue belongs to the parent (it will send it); the child starts empty,
        # with fresh locks (a lock held at fork time would never be released here).
        self._init_state()

    def stats(self) -> SenderStats:
        return SenderStats(
            queued=len(self._queue) + len(self._backlog),
            sent=self._sent,
            dropped=self._dropped,
            retried=self._retried,
            failed=self._failed,
            filtered=self._filtered,
            batches=self._batches,
        )

    # -- caller side ---------------------------------------------------------------------------

    def enqueue(self, item: Any) -> bool:
        """Queue one item; False when it was dropped because the queue is full or closed."""
        if self._closed:
            self._dropped += 1
            return False
        queue = self._queue
        if len(queue) >= self.help_threshold and self._thread is not None:
            return self._build_here(item)
        if len(queue) >= self.max_queue_size:
            # Drop the newest: what is already queued is older and closer to being sent.
            self._dropped += 1
            self._warning.warn(
                "posthog-llm queue is full (%d events): dropping new events", self.max_queue_size
            )
            return False
        queue.append(item)
        self._accepted += 1
        if self._thread is None:
            self._start()
        elif len(queue) >= self.flush_at and not self._wake.is_set():
            self._wake.set()
        return True

    @property
    def help_threshold(self) -> int:
        return max(self.flush_at, self.max_queue_size // 4)

    def _build_here(self, item: Any) -> bool:
        """The worker is far behind: build this event on the caller's thread.

        Backpressure instead of loss. Unbuilt items hold references to the caller's objects and
        their size is unknown; built ones are bytes, bounded by `max_queue_bytes`. This costs the
        caller CPU only while the worker cannot keep up, and never waits on I/O.
        """
        self._accepted += 1
        try:
            data = self._process(item)
        except Exception:
            log.exception("posthog-llm: could not build an event; it was skipped")
            data = None
        if data is None:
            self._filtered += 1
            self._finish(1)
        elif not self._store_built(data):
            self._dropped += 1
            self._warn_buffer_full()
            self._finish(1)
        if not self._wake.is_set():
            self._wake.set()
        return data is not None

    def _store_built(self, data: bytes) -> bool:
        with self._backlog_lock:
            if self._backlog_bytes + len(data) > self.max_queue_bytes:
                return False
            self._backlog.append(data)
            self._backlog_bytes += len(data)
            return True

    def _warn_buffer_full(self) -> None:
        self._warning.warn(
            "posthog-llm buffer is full (%d bytes): dropping new events", self.max_queue_bytes
        )

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            thread = threading.Thread(target=self._run, name="posthog-llm-sender", daemon=True)
            self._thread = thread
            thread.start()

    def flush(self, timeout: float | None = None) -> bool:
        """Send everything queued so far; True when all of it was delivered (or filtered).

        Always returns by `timeout` seconds (None: wait as long as it takes).
        """
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        target = self._accepted
        if self._finished >= target:
            return self._queue_is_empty()
        if self._thread is None or not self._thread.is_alive():
            if self._closed:
                return False
            self._thread = None
            self._start()
        with self._progress:
            self._flush_waiters += 1
        try:
            self._wake.set()
            with self._progress:
                while self._finished < target:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    self._progress.wait(0.5 if remaining is None else min(remaining, 0.5))
                    self._wake.set()
            return True
        finally:
            with self._progress:
                self._flush_waiters -= 1

    def _queue_is_empty(self) -> bool:
        return not self._queue and not self._backlog

    def shutdown(self, timeout: float | None = None) -> bool:
        """Deliver what is pending within `timeout` seconds, then stop the worker.

        Returns whether everything was delivered; returns by the deadline even if the
        destination is down or stalls (the worker is a daemon thread and gives up its retries).
        """
        if self._closed:
            return self._queue_is_empty()
        start = time.monotonic()
        self._deadline = None if timeout is None else start + max(0.0, timeout)
        self._stopping = True
        delivered = self.flush(timeout)
        self._closed = True
        self._abort.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            remaining = (
                None if self._deadline is None else max(0.0, self._deadline - time.monotonic())
            )
            thread.join(remaining if remaining is None else min(remaining, 0.2) + 0.05)
        try:
            self.destination.close()
        except Exception:
            log.debug("posthog-llm: closing the destination failed", exc_info=True)
        if not delivered:
            pending = len(self._queue) + len(self._backlog)
            log.warning(
                "posthog-llm shut down with %d events not delivered to %s",
                max(pending, self._accepted - self._finished),
                self.destination.description,
            )
        return delivered

    # -- worker side ---------------------------------------------------------------------------

    def _finish(self, count: int) -> None:
        with self._progress:
            self._finished += count
            self._progress.notify_all()

    def _drain(self) -> None:
        """Build queued items into the byte-bounded backlog, one batch's worth at a time.

        Building only what the next request needs keeps the byte bound for what is genuinely
        waiting on the network: building the whole queue ahead of sending would fill the
        buffer with large events and drop them even though they could have been delivered.
        """
        queue = self._queue
        backlog = self._backlog
        target = self._batch_target()
        filtered = dropped = 0
        while queue:
            if len(backlog) >= target or self._backlog_bytes >= self._build_ahead_bytes:
                break
            item = queue.popleft()
            try:
                data = self._process(item)
            except Exception:
                log.exception("posthog-llm: could not build an event; it was skipped")
                data = None
            if data is None:
                filtered += 1
                continue
            if not self._store_built(data):
                dropped += 1
        if filtered or dropped:
            self._filtered += filtered
            self._dropped += dropped
            if dropped:
                self._warn_buffer_full()
            self._finish(filtered + dropped)

    @property
    def _build_ahead_bytes(self) -> int:
        # Never build so far ahead that the byte bound itself would drop a deliverable event.
        return min(self.max_batch_bytes, self.max_queue_bytes // 2)

    def _batch_target(self) -> int:
        """Events per request: `flush_at`, or larger batches while far behind.

        Each request hands the GIL back and forth several times, and a busy caller makes every
        hand-back wait; when events pile up, fewer and larger requests (still capped by
        `max_batch_bytes`) keep delivery ahead of the caller.
        """
        if len(self._queue) + len(self._backlog) > 4 * self.flush_at:
            return max(self.flush_at, _CATCH_UP_BATCH)
        return self.flush_at

    def _take_batch(self) -> list[bytes]:
        backlog = self._backlog
        target = self._batch_target()
        batch: list[bytes] = []
        size = 0
        with self._backlog_lock:
            while backlog and len(batch) < target:
                if batch and size + len(backlog[0]) > self.max_batch_bytes:
                    break
                data = backlog.popleft()
                size += len(data)
                batch.append(data)
            self._backlog_bytes -= size
        return batch

    def _run(self) -> None:
        next_tick = time.monotonic() + self.flush_interval
        while True:
            self._wake.wait(max(0.0, next_tick - time.monotonic()))
            self._wake.clear()
            if self._pid != os.getpid():
                return
            try:
                self._let_burst_pass(next_tick + self.flush_interval)
                self._drain()
                while self._backlog:
                    now = time.monotonic()
                    tick = now >= next_tick
                    if not (
                        tick
                        or self._flush_waiters
                        or self._stopping
                        or len(self._backlog) + len(self._queue) >= self.flush_at
                        or self._backlog_bytes >= self.max_batch_bytes
                    ):
                        break
                    if tick:
                        # One timed delivery per interval: events that arrive while it is being
                        # sent wait for a full batch or the next tick, instead of going out a
                        # few at a time in a loop that lasts as long as the traffic does.
                        next_tick = now + self.flush_interval
                    self._deliver(self._take_batch())
                    self._drain()
                    if self._abort.is_set():
                        break
            except Exception:
                log.exception("posthog-llm: the sender hit an unexpected error")
            now = time.monotonic()
            if now >= next_tick:
                next_tick = now + self.flush_interval
            if self._closed and (self._abort.is_set() or self._queue_is_empty()):
                return

    def _let_burst_pass(self, deadline: float) -> None:
        """While a burst is still arriving, wait (bounded) before serializing.

        Serializing on this thread competes with the caller for the GIL; deferring it until the
        burst is over keeps `capture()` cheap. The wait ends at `deadline`, at half a queue, or
        as soon as a flush or shutdown asks for delivery.
        """
        high_water = self.help_threshold // 2
        while not (self._flush_waiters or self._stopping):
            before = len(self._queue)
            if before >= high_water or time.monotonic() >= deadline:
                return
            time.sleep(0.002)
            if len(self._queue) - before < 16:
                return

    def _request_timeout(self) -> float:
        if self._deadline is None:
            return self.timeout
        return max(0.05, min(self.timeout, self._deadline - time.monotonic()))

    def _deliver(self, batch: list[bytes]) -> None:
        attempt = 0
        while True:
            if self._abort.is_set():
                self._give_up(batch, "shutdown deadline reached")
                return
            try:
                self.destination.send(batch, timeout=self._request_timeout())
            except BatchTooLargeError as exc:
                if len(batch) == 1:
                    self._give_up(batch, str(exc))
                    return
                half = len(batch) // 2
                self._deliver(batch[:half])
                self._deliver(batch[half:])
                return
            except PermanentError as exc:
                self._give_up(batch, str(exc))
                return
            except RetryableError as exc:
                attempt += 1
                if attempt > self.max_retries:
                    self._give_up(batch, f"{exc} (after {self.max_retries} retries)")
                    return
                self._retried += len(batch)
                delay = exc.retry_after
                if delay is None:
                    delay = min(30.0, 0.25 * (2 ** (attempt - 1))) * random.uniform(0.5, 1.0)
                delay = min(delay, 60.0)
                if self._deadline is not None:
                    delay = min(delay, max(0.0, self._deadline - time.monotonic()))
                log.debug("posthog-llm: retrying a batch in %.2fs: %s", delay, exc)
                if self._abort.wait(delay):
                    continue
                continue
            except Exception as exc:
                log.exception("posthog-llm: the destination raised unexpectedly")
                self._give_up(batch, f"{type(exc).__name__}: {exc}")
                return
            self._sent += len(batch)
            self._batches += 1
            self._finish(len(batch))
            return

    def _give_up(self, batch: list[bytes], reason: str) -> None:
        self._failed += len(batch)
        self._warning.warn(
            "posthog-llm: dropped a batch of %d events for %s: %s",
            len(batch),
            self.destination.description,
            reason,
        )
        self._finish(len(batch))


def _reinit_after_fork() -> None:
    for sender in list(_live_senders):
        sender._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reinit_after_fork)
