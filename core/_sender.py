"""One background worker per client: a bounded queue, batching, flush, shutdown and the spool.

The caller's thread only appends to a deque (or, when the worker is far behind, builds the event
itself: backpressure instead of loss). The worker turns queued items into JSON bytes, groups
them into batches by count and bytes, and hands each batch to the delivery policy
(`_delivery`); with more waiting, a second request may be out at once (`_second_request`).
What cannot be delivered now goes to the disk spool (`_spool`) when there is one, and the
worker drains the spool in the background once the endpoint answers again.

Like OpenTelemetry's batch processor: bounded queue, `flush`/`shutdown(timeout)` that always
return, a fresh worker after `fork`, and the destination protocol as the exporter seam.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

from ._delivery import DeliveryPolicy, Outcome
from ._second_request import SecondRequest
from ._sender_stats import Counters, RateLimitedWarning, SenderStats
from ._spool import Spool
from .destinations import Destination

__all__ = ["BatchSender", "SenderStats", "report_skipped_event"]

log = logging.getLogger("posthog_llm")

_live_senders: weakref.WeakSet[BatchSender] = weakref.WeakSet()

# Batch size while catching up; PostHog accepts batches of this size (bodies up to 20 MB).
_CATCH_UP_BATCH = 2_000
# How long a sender holds spooled events it is sending before another may take them.
_SPOOL_LEASE = 60.0
# Seconds with a spool before a failing batch is spooled instead of retried further.
_RETRY_BUDGET_WITH_SPOOL = 5.0
# Nominal size of a queued item whose size is not estimated (short queue, or lazy builder).
_NOMINAL_ITEM_BYTES = 1024


# Events of a 400'd batch that one bisection did not reach (`Outcome.deferred`).
_NOT_ISOLATED = "refused by the endpoint (HTTP 400) with an offender not isolated yet"


def _report(exc: BaseException) -> None:
    # Imported here: `_emit` imports the client, which imports this module.
    from ._emit import report_internal_error

    report_internal_error(exc)


def report_skipped_event(exc: BaseException) -> None:
    """An event that could not be built: said in the log and reported (the caller counts it)."""
    log.warning("posthog-llm: could not build an event; it was skipped (%r)", exc)
    _report(exc)


class BatchSender:
    """Ships items to a destination from one daemon thread.

    `process(item)` turns a queued item into the event's JSON bytes (a list of them for an
    item that holds several events), or None to drop it (`before_send`). It runs on the worker thread (or the caller's, under backpressure).
    """

    def __init__(
        self,
        destination: Destination,
        process: Callable[[Any], bytes | list[bytes] | None],
        *,
        flush_at: int = 250,
        flush_interval: float = 0.5,
        max_queue_size: int = 100_000,
        max_queue_bytes: int = 64 * 1024 * 1024,
        max_batch_bytes: int = 4 * 1024 * 1024,
        timeout: float = 10.0,
        max_retries: int = 6,
        warn_interval: float = 10.0,
        spool: Spool | None = None,
        estimate: Callable[[Any], int] | None = None,
        count: Callable[[Any], int] | None = None,
    ) -> None:
        self.destination = destination
        self._process = process
        self._estimate = estimate
        # How many events a queued item holds, without building it (None: one each).
        self._count = count
        self.flush_at = flush_at
        self.flush_interval = flush_interval
        self.max_queue_size = max_queue_size
        self.max_queue_bytes = max_queue_bytes
        self.max_batch_bytes = max_batch_bytes
        self.timeout = timeout
        self.max_retries = max_retries
        self.spool = spool
        self._warning = RateLimitedWarning(warn_interval)
        self._spool_warning = RateLimitedWarning(warn_interval)
        self._failing_warning = RateLimitedWarning(warn_interval)
        self._closed_warning = RateLimitedWarning(warn_interval)
        self._spool_error_warning = RateLimitedWarning(warn_interval)
        # Set while the spool cannot be written (a folder that cannot be made, a full disk, a
        # read-only home): batches are then retried in memory, as without a spool.
        self._spool_failing = False
        self._init_state()
        _live_senders.add(self)
        if spool is not None and spool.exists():
            # Events left by an earlier process (or one that is down now): replay them.
            self._start()

    # -- state ---------------------------------------------------------------------------------

    def _init_state(self) -> None:
        self.counters = Counters()
        # The locks are re-entrant: a signal handler that captures, flushes or reads stats()
        # runs on a thread that may hold one of them already, and must not wait on itself.
        self._inflight_lock = threading.RLock()
        self.policy = DeliveryPolicy(
            self.destination,
            self.counters,
            timeout=self.timeout,
            max_retries=self.max_retries,
            retry_budget=_RETRY_BUDGET_WITH_SPOOL if self.spool is not None else None,
            lock=self._inflight_lock,
        )
        self._queue: deque[tuple[Any, int]] = deque()
        # Estimated bytes of one queued (unbuilt) item: a running average of sampled estimates.
        self._item_bytes = _NOMINAL_ITEM_BYTES
        self._estimate_turn = 0
        # Events beyond one per item that `enqueue_several` queued (ever): a burst is measured in
        # events, so a trace queued as one item counts as the events it builds into.
        self._extra_events = 0
        # `enqueue` takes its one-comparison path below this queue length (`_update_fast_limit`).
        self._fast_limit = 0
        self._backlog: deque[bytes] = deque()
        self._backlog_bytes = 0
        self._backlog_lock = threading.RLock()
        # Items taken from the queue to be built, events put in the backlog and taken from it in
        # batches (ever): a flush delivers what was there when it began, not what comes later.
        self._drained = 0
        self._stored = 0
        self._batched = 0
        # Held while queued items are built into the backlog: a shutdown deadline that saves
        # what is left waits for the build in progress, and none starts after it. Reentrant: a
        # `shutdown()` from `before_send` saves what is left on the worker, inside its own build.
        self._drain_lock = threading.RLock()
        # True while the worker builds queued items (only the worker writes it).
        self._worker_building = False
        self._lock = threading.RLock()
        self._progress = threading.Condition(threading.RLock())
        self._wake = threading.Event()
        self._abort = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._stopping = False
        self._closed = False
        # Set by `shutdown` (under the drain lock) as it saves what is left in memory: an item
        # that lands in the queue after that is the capturing thread's to drop (`_after_close`).
        self._swept = False
        # Events dropped because the sender is closed, and how many of them a flush has seen.
        self._closed_drops = 0
        self._closed_drops_seen = 0
        # Losses already answered by a flush: the next one says False for those since then,
        # also those before it started (a full queue, retries that ran out in the background).
        self._losses_reported = 0
        self._closed_lock = threading.RLock()
        self._shutdown_result: bool | None = None
        self._deadline: float | None = None
        # Set by `shutdown`: past this, building an item's events stops (they are counted lost).
        self.build_until: float | None = None
        self._flush_requested = 0
        self._flush_done = 0
        # The flushes answered False lately, as (first, last) request numbers: a flush whose
        # pass said False is told so even when a later pass (which its thread woke after) said
        # True (a loss is reported by one pass only).
        self._flush_false: deque[tuple[int, int]] = deque(maxlen=64)
        # Batches taken from the backlog and not settled yet (two while a second request is out).
        self._inflight: list[list[bytes]] = []
        # Events of a failed batch while the spool is tried (counted as queued by `stats()`).
        self._spooling = 0
        # In-flight batches a shutdown deadline saved while their request went on: the spool
        # rows each went to (None: counted failed), and set once the saving is done.
        self._taken: dict[int, tuple[list[bytes], list[int] | None]] = {}
        # The outcome each in-flight batch is filling: what it delivered already is counted
        # sent, not queued (a batch of two lanes is two requests).
        self._outcomes: dict[int, Outcome] = {}
        self._saved = threading.Event()
        self._second: SecondRequest | None = None
        if getattr(self.destination, "concurrent_requests", 1) > 1:
            self._second = SecondRequest(self._deliver_guarded)

    def _after_fork_in_child(self) -> None:
        # The parent's queue belongs to the parent (it will send it); the child starts empty,
        # with fresh locks (a lock held at fork time would never be released here).
        if self.spool is not None:
            self.spool.after_fork_in_child()
        after_fork = getattr(self.destination, "after_fork_in_child", None)
        if after_fork is not None:
            try:
                after_fork()
            except Exception:
                log.debug("posthog-llm: resetting the destination after fork failed", exc_info=True)
        self._init_state()

    @property
    def _destination_name(self) -> str:
        """What the warnings call the destination: its `description`, else its class (a user's
        destination need only have `send` and `close`)."""
        name = getattr(self.destination, "description", None)
        return name if isinstance(name, str) and name else type(self.destination).__name__

    @property
    def queued_bytes_estimate(self) -> int:
        """Estimated bytes of the events queued but not built yet."""
        return len(self._queue) * self._item_bytes

    def stats(self) -> SenderStats:
        pending = 0
        if self.spool is not None:
            try:
                pending = self.spool.pending()
            except Exception:
                pending = -1
        with self._inflight_lock:  # a batch being sent is still queued until it is settled
            values = self.counters.snapshot()
            sending = 0
            for batch in self._inflight:
                outcome = self._outcomes.get(id(batch))
                sending += len(batch) - (len(outcome.delivered) if outcome is not None else 0)
            sending += self._spooling  # failed, the spool being tried
        return SenderStats(
            queued=len(self._queue) + len(self._backlog) + sending,
            spool_pending=pending,
            **values,
        )

    # -- caller side ---------------------------------------------------------------------------

    def enqueue(self, item: Any) -> bool:
        """Queue one item; False when it was dropped because the queue is full or closed."""
        queue = self._queue
        waiting = len(queue)
        turn = self._estimate_turn
        self._estimate_turn = (turn + 1) & 7
        if not turn:
            self._estimate_item(item)
        # Below every bound (the common path): one comparison, the append, and a wake-up for
        # the worker once a batch is waiting. `shutdown` sets the limit to 0; a caller that
        # passed it just before sees `_closed` after its append (`_after_close`).
        if waiting < self._fast_limit:
            queue.append(item)
            if self._closed:
                return self._after_close()
            if waiting + 1 >= self.flush_at and not self._wake.is_set():
                self._wake.set()
            return True
        return self._enqueue_bounded(item, waiting)

    def has_room(self) -> bool:
        """Whether `enqueue` would take an item now without dropping it (open, and the queue
        below its bound)."""
        return not self._closed and len(self._queue) < self.max_queue_size

    def enqueue_several(self, item: Any, events: int) -> bool:
        """`enqueue` for an item that builds into about `events` events: the worker is woken
        once the queue holds a batch's worth of events rather than of items."""
        queued = self.enqueue(item)
        self._extra_events += events - 1  # a hint: a lost update only shortens a burst wait
        if queued and len(self._queue) * events >= self.flush_at and not self._wake.is_set():
            self._wake.set()
        return queued

    def _estimate_item(self, item: Any) -> None:
        # One item in eight is estimated (a fraction of a microsecond on average), and the
        # bound counts every queued item at that size: it rises at once and falls slowly, so
        # 100 KB prompts behind a stalled endpoint are bounded by bytes, not only by count.
        if self._estimate is not None:
            estimate = self._estimate(item)
            self._item_bytes = max(estimate, (self._item_bytes + estimate) // 2)
        self._update_fast_limit()

    def _update_fast_limit(self) -> None:
        """Queue length below which `enqueue` needs no other check (0 until the worker runs,
        and once the sender is closed)."""
        if self._thread is None or self._closed:
            self._fast_limit = 0
            return
        room = max(0, self.max_queue_bytes - self._backlog_bytes)
        by_bytes = room // max(1, self._item_bytes) + 1
        self._fast_limit = min(self.help_threshold, self.max_queue_size, by_bytes)

    def _enqueue_bounded(self, item: Any, waiting: int) -> bool:
        if self._closed:
            self._drop_closed(self._events_in(item))  # a trace counts as its events
            return False
        # The worker is far behind (by count or bytes): build here (backpressure).
        if self._thread is not None and (
            (waiting >= self.flush_at and waiting >= self.max_queue_size >> 2)
            # One bound for built and unbuilt events together: built ones waiting on the
            # network leave that much less room for unbuilt ones.
            or waiting * self._item_bytes + self._backlog_bytes > self.max_queue_bytes
        ):
            return self._build_here(item)
        queue = self._queue
        if len(queue) >= self.max_queue_size:
            if self.spool is not None:
                return self._build_here(item)
            # Drop the newest: what is already queued is older and closer to being sent.
            self.counters.add("dropped", self._events_in(item))
            self._warning.warn(
                "posthog-llm queue is full (%d events): dropping new events", self.max_queue_size
            )
            return False
        queue.append(item)
        if self._closed:
            return self._after_close()
        if self._thread is None:
            self._start()
        elif len(queue) >= self.flush_at and not self._wake.is_set():
            self._wake.set()
        return True

    def _after_close(self) -> bool:
        """An item reached memory while `shutdown` closed the sender (it passed the closed check
        just before). Until `shutdown` saves what is left, that save takes it: True. After it,
        nothing would ever send it: what is in memory now is dropped and counted, False."""
        if not self._swept:
            return True
        self._drop_left_after_close()
        return False

    def _drop_left_after_close(self) -> None:
        with self._drain_lock:
            count = sum(self._events_in(item) for item in self._queue)
            self._queue.clear()
            with self._backlog_lock:
                count += len(self._backlog)
                self._backlog.clear()
                self._backlog_bytes = 0
        if count:
            self._drop_closed(count)

    def _drop_closed(self, count: int) -> None:
        """Events that arrived after `shutdown`: dropped, counted, and warned about."""
        with self._closed_lock:
            self.counters.add("dropped", count)
            self._closed_drops += count
        self._closed_warning.warn(
            "posthog-llm: this client was shut down; events captured after shutdown() are "
            "dropped (%s)",
            self._destination_name,
        )

    def _losses(self) -> int:
        """Events dropped, failed or dropped from the spool, but not those refused because
        they came after a close: they were never accepted."""
        with self._closed_lock:
            counts = self.counters.snapshot()
            refused = self._closed_drops
        return counts["failed"] + counts["dropped"] - refused + counts["spool_dropped"]

    @property
    def help_threshold(self) -> int:
        return max(self.flush_at, self.max_queue_size // 4)

    def _build(self, item: Any) -> list[bytes]:
        """Build one queued item: its event, or the events of an item that holds several.

        A builder that raises is reported and counted as failed."""
        try:
            data = self._process(item)
        except Exception as exc:
            report_skipped_event(exc)
            self.counters.add("failed")
            return []
        if data is None:
            self.counters.add("filtered")
            return []
        return data if isinstance(data, list) else [data]

    def _build_here(self, item: Any) -> bool:
        """The worker is far behind: build this event on the caller's thread.

        Backpressure instead of loss. Unbuilt items hold references to the caller's objects and
        their size is unknown; built ones are bytes, bounded by `max_queue_bytes`. This costs the
        caller CPU only while the worker cannot keep up, and never waits on the network.
        """
        built = self._build(item)
        # With a spool, what is built and what is queued share the byte bound: past it an event
        # waits on disk, not lost. Without one the queued items' estimate (pessimistic after a
        # large event) is not a reason to drop an event: built ones have their own bound.
        unbuilt = self.queued_bytes_estimate if self.spool is not None else 0
        overflow = [data for data in built if not self._store_built(data, unbuilt)]
        if overflow:
            self._overflow(overflow)
        if self._closed:
            return self._after_close() and bool(built)
        if not self._wake.is_set():
            self._wake.set()
        return bool(built)

    def _store_built(self, data: bytes, unbuilt: int = 0) -> bool:
        """Add built `data` to the backlog unless that and `unbuilt` (estimated bytes of items
        still queued, for an event built outside the queue) would pass the byte bound."""
        with self._backlog_lock:
            if self._backlog_bytes + len(data) + unbuilt > self.max_queue_bytes:
                return False
            self._backlog.append(data)
            self._backlog_bytes += len(data)
            self._stored += 1
            return True

    def _overflow(self, events: list[bytes]) -> None:
        """Built events beyond the byte bound: to the spool, or dropped without one."""
        if not self._to_spool(events, "the in-memory buffer is full"):
            self.counters.add("dropped", len(events))
            self._warning.warn(
                "posthog-llm buffer is full (%d bytes): dropping new events", self.max_queue_bytes
            )

    def _to_spool(self, events: list[bytes], why: str, ids: list[int] | None = None) -> bool:
        """Write events to the spool; False when there is none (or it cannot be written).
        `ids` gets the rows of the events written (the newest, when the spool is too small)."""
        if self.spool is None or not events:
            return False
        try:
            dropped = self.spool.put(events, ids)
        except Exception as exc:
            self._spool_failing = True
            self._spool_error_warning.warn(
                "posthog-llm: could not write to the spool %s (%s); undelivered events are "
                "retried in memory until it can be written",
                self.spool.path,
                exc,
            )
            return False
        self._spool_failing = False
        self.counters.add("spooled", len(events))
        log.debug("posthog-llm: spooled %d events (%s)", len(events), why)
        if dropped:
            self.counters.add("spool_dropped", dropped)
            self._spool_warning.warn(
                "posthog-llm spool is full (%d bytes at %s): dropped the %d oldest spooled events",
                self.spool.max_bytes,
                self.spool.path,
                dropped,
            )
        return True

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            thread = threading.Thread(target=self._run, name="posthog-llm-sender", daemon=True)
            self._thread = thread
            thread.start()
            self._update_fast_limit()

    def flush(self, timeout: float | None = None) -> bool:
        """Deliver everything queued so far, spooled events included.

        True when all of it was delivered (or filtered); False when some could not be (it is
        in the spool, if there is one). Never waits out an outage: one attempt at the endpoint,
        then it returns. Always returns by `timeout` seconds (None: as long as the attempt takes).

        On the sender's own threads (from `before_send`, or a logging handler on a logger the
        worker writes to) it cannot wait for them: it returns at once, True only when nothing is
        pending. After `shutdown`: its result, and False once events were dropped since the last
        flush because the sender is closed.
        """
        if self._closed:
            with self._closed_lock:
                dropped = self._closed_drops > self._closed_drops_seen
                self._closed_drops_seen = self._closed_drops
            return bool(self._shutdown_result) and self._queue_is_empty() and not dropped
        return self._flush(timeout)

    def _on_own_thread(self) -> bool:
        current = threading.current_thread()
        return current is self._thread or (
            self._second is not None and self._second.runs_on(current)
        )

    def _nothing_pending(self) -> bool:
        """Nothing in memory, being built, in flight or in the spool (read without waiting for
        the worker: for a flush on one of the sender's own threads)."""
        if self._worker_building or not self._queue_is_empty() or self._inflight:
            return False
        if self.spool is None:
            return True
        try:
            return self.spool.pending() == 0
        except Exception:
            return False

    def _flush(self, timeout: float | None) -> bool:
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        if self._on_own_thread():
            # Waiting here would wait for this very thread, for good.
            return self._nothing_pending()
        with self._lock:  # re-entrant: a signal handler may flush while `_start` holds it
            if _gone(self._thread):
                self._thread = None
                self._start()
        with self._progress:
            self._flush_requested += 1
            generation = self._flush_requested
        self._wake.set()
        with self._progress:
            while self._flush_done < generation:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._progress.wait(0.5 if remaining is None else min(remaining, 0.5))
                if _gone(self._thread):
                    return False
            return not any(first <= generation <= last for first, last in self._flush_false)

    def _queue_is_empty(self) -> bool:
        return not self._queue and not self._backlog

    def shutdown(self, timeout: float | None = None) -> bool:
        """Deliver what is pending within `timeout` seconds, then stop the worker.

        Returns whether every event this client accepted was delivered. Returns by the deadline
        even if the destination is down or stalls; what is left then goes to the spool (the time
        to write it to disk comes on top, within as long again, at least a second), or is lost
        (counted failed) without one. From the moment it starts,
        events are refused (dropped, counted and warned about, never raised).
        """
        if self._closed:
            return bool(self._shutdown_result)
        start = time.monotonic()
        self._deadline = None if timeout is None else start + max(0.0, timeout)
        # Saving what is left to the spool comes on top of the deadline, within as long again
        # (at least a second): past that, what is not built yet is counted lost.
        save_until = (
            None if self._deadline is None else self._deadline + max(1.0, max(0.0, timeout or 0))
        )
        # Past the deadline, what is built can only be kept in the spool.
        keep = self.spool is not None and not self._spool_failing
        self.build_until = save_until if keep else self._deadline
        self._stopping = True
        # Closed before the final flush: an event captured from here on is refused (dropped and
        # counted), or, if its thread passed the check just before, taken by the flush or by
        # `_save_what_is_left` below; nothing lands where no one would send it.
        self._closed = True
        self._fast_limit = 0
        if timeout is None:
            delivered = self._flush(None)
        else:
            # Delivery stops early enough to save what is left by the deadline (up to half of
            # the time: a large queue against a stalled endpoint would otherwise overshoot it).
            delivered = self._flush(max(0.0, timeout - min(timeout / 2, self._save_estimate())))
        self._abort.set()
        self._wake.set()
        if self._second is not None:
            self._second.stop()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(0.25 if delivered else 0.1)
        if self._save_what_is_left():
            delivered = False
        try:
            self.destination.close()
        except Exception:
            log.debug("posthog-llm: closing the destination failed", exc_info=True)
        if self.spool is not None:
            self.spool.close()
        # True only when every event this sender ever accepted was delivered (or filtered);
        # one refused because it came after the close was never accepted (it is warned about,
        # and the next `flush()` says False).
        delivered = delivered and not self._losses()
        self._shutdown_result = delivered
        return delivered

    def _save_estimate(self) -> float:
        """Seconds `_save_what_is_left` would take now. Measured: ~16 µs to build a queued
        event and ~7 µs to spool one, with margin."""
        queued = len(self._queue)  # a queued trace counts as one event: short there
        built = len(self._backlog) + sum(len(batch) for batch in list(self._inflight))
        return queued * 25e-6 + (queued + built) * 10e-6

    def _save_what_is_left(self) -> int:
        """At shutdown: spool the batches in flight and everything still in memory (after a
        deadline, or what a capture racing with `shutdown` queued); returns how many there were.
        """
        with self._inflight_lock:
            inflight, self._inflight = self._inflight, []
        try:
            return self._save(inflight)
        finally:
            self._saved.set()

    def _save(self, inflight: list[list[bytes]]) -> int:
        why = "shutdown deadline reached"
        saved = lost = 0
        for batch in inflight:
            # Each on its own: its request may still be answered, and what it delivered is then
            # taken back out of the spool (or the failed count) by `_taken_back`.
            ids: list[int] = []
            if self._to_spool(batch, why, ids):
                self._taken[id(batch)] = (batch, ids)
                saved += len(batch)
            else:
                self._taken[id(batch)] = (batch, None)
                lost += len(batch)
        left: list[bytes] = []
        # The worker finishes the item it is building (into the backlog) and builds no more.
        with self._drain_lock:
            self._swept = True
            with self._backlog_lock:
                while self._backlog:
                    left.append(self._backlog.popleft())
                self._backlog_bytes = 0
            # Built only where they can be kept (a spool that takes writes), and within the
            # time saving may take past the deadline: building runs `before_send`, which may
            # take any time.
            keep = self.spool is not None and not self._spool_failing
            deadline = self.build_until
            while self._queue:
                try:
                    item = self._queue.popleft()
                except IndexError:
                    break
                if keep and (deadline is None or time.monotonic() < deadline):
                    left.extend(self._build(item))
                else:
                    lost += self._events_in(item)
        if left:
            if self._to_spool(left, why):
                saved += len(left)
            else:
                lost += len(left)
        if lost:
            self.counters.add("failed", lost)
            log.warning(
                "posthog-llm shut down with %d events not delivered to %s",
                lost,
                self._destination_name,
            )
        if saved:
            log.warning(
                "posthog-llm shut down with %d events not delivered to %s; they are in the spool "
                "%s and will be sent by the next client for this host and key",
                saved,
                self._destination_name,
                self.spool.path if self.spool else "",
            )
        return saved + lost

    def _events_in(self, item: Any) -> int:
        """The events an unbuilt item holds (one when that cannot be told)."""
        if self._count is None:
            return 1
        try:
            return max(0, int(self._count(item)))
        except Exception:
            return 1

    def _taken_back(self, batch: list[bytes], outcome: Outcome) -> None:
        """`batch` was answered after a shutdown deadline saved it: what it delivered leaves
        the spool (or the failed count) again, so it is neither sent twice by the next client
        nor counted both sent and failed."""
        if not outcome.delivered or not self._saved.wait(10.0):
            return
        entry = self._taken.pop(id(batch), None)
        if entry is None or entry[0] is not batch:
            return
        ids = entry[1]
        if ids is None:
            self.counters.add("failed", -len(outcome.delivered))
            return
        # The rows are the newest of the batch that fitted: its tail.
        rows = {id(data): row for data, row in zip(batch[len(batch) - len(ids) :], ids)}
        delivered = [rows[id(data)] for data in outcome.delivered if id(data) in rows]
        spool = self.spool
        if spool is None or not delivered:
            return
        try:
            spool.ack(delivered)
        except Exception as exc:
            self._spool_error_warning.warn(
                "posthog-llm: could not update the spool %s: %s", spool.path, exc
            )
            return
        finally:
            spool.close()  # opened again for this after the shutdown closed it
        self.counters.add("spooled", -len(delivered))

    # -- worker side ---------------------------------------------------------------------------

    def _drain(self) -> None:
        """Build queued items into the byte-bounded backlog, one batch's worth at a time.

        Building only what the next request needs keeps the byte bound for what is genuinely
        waiting on the network: building the whole queue ahead of sending would fill the
        buffer with large events and drop them even though they could have been delivered.
        """
        queue = self._queue
        backlog = self._backlog
        target = self._batch_target()
        ahead = self._build_ahead_bytes
        overflow: list[bytes] = []
        with self._drain_lock:
            # After a shutdown deadline, what is left is `_save_what_is_left`'s: an item built
            # here now would land in a backlog that was already saved, and be lost.
            abort = self._abort
            self._worker_building = True
            try:
                while queue and not abort.is_set():  # a shutdown deadline waits for one item only
                    if len(backlog) >= target or self._backlog_bytes >= ahead:
                        break
                    try:
                        item = queue.popleft()
                    except IndexError:
                        break
                    self._drained += 1
                    for data in self._build(item):
                        if not self._store_built(data):
                            overflow.append(data)
            finally:
                self._worker_building = False
            if overflow:
                self._overflow(overflow)

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

    def _take_batch(self, target: int | None = None) -> list[bytes]:
        backlog = self._backlog
        target = target or self._batch_target()
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
            self._batched += len(batch)
            # In flight from here on: a shutdown deadline can still save it.
            if batch:
                with self._inflight_lock:
                    self._inflight.append(batch)
        return batch

    def _run(self) -> None:
        next_tick = time.monotonic() + self.flush_interval
        while True:
            self._wake.wait(max(0.0, next_tick - time.monotonic()))
            self._wake.clear()
            if self._pid != os.getpid():
                return
            try:
                requested = self._flush_requested
                if requested > self._flush_done:
                    ok = False
                    try:
                        ok = self._full_pass()
                    finally:
                        # A pass that raised still answers its flush (False): the next pass
                        # would count its losses from after them and say True.
                        with self._progress:
                            if not ok and requested > self._flush_done:
                                self._flush_false.append((self._flush_done + 1, requested))
                            self._flush_done = max(self._flush_done, requested)
                            self._progress.notify_all()
                else:
                    next_tick = self._regular_round(next_tick)
                    self._drain_spool(max_batches=4)
            except Exception as exc:
                log.exception("posthog-llm: the sender hit an unexpected error")
                _report(exc)
            now = time.monotonic()
            if now >= next_tick:
                next_tick = now + self.flush_interval
            if self._abort.is_set():  # set by `shutdown`, after its final flush
                if self._swept:
                    # A `shutdown` on this thread (from `before_send`) saved what was left
                    # while this thread was building an item: nothing sends that one now.
                    self._drop_left_after_close()
                return

    def _regular_round(self, next_tick: float) -> float:
        """Send (or, while the endpoint is down, spool) what is due; returns the next tick."""
        self._let_burst_pass(next_tick + self.flush_interval)
        self._drain()
        while self._backlog:
            now = time.monotonic()
            tick = now >= next_tick
            if not (
                tick
                or self._flush_requested > self._flush_done
                or len(self._backlog) + len(self._queue) >= self.flush_at
                or self._backlog_bytes >= self._build_ahead_bytes
            ):
                break
            if tick:
                # One timed delivery per interval: events that arrive while it is being
                # sent wait for a full batch or the next tick, instead of going out a
                # few at a time in a loop that lasts as long as the traffic does.
                next_tick = now + self.flush_interval
            batch = self._take_batch()
            if self.spool is not None and self.policy.should_wait():
                self._spool_batch(batch, "the endpoint is down")
            else:
                self._send(batch)
            self._drain()
            if self._abort.is_set() or self._flush_requested > self._flush_done:
                break
        return next_tick

    def _full_pass(self) -> bool:
        """Flush: everything in memory, then the spool; True when all of it was delivered.

        With a spool, retries are spool replays: the pass waits out short backoffs (a
        Retry-After, the first seconds of an outage) while the endpoint has delivered a batch
        within the last `_RETRY_BUDGET_WITH_SPOOL` seconds.
        """
        before = self.counters.snapshot()
        lost_before = self._losses_reported
        started = time.monotonic()
        # A flush tries the endpoint now, even while it is considered down, unless the
        # endpoint asked for time (a 429's Retry-After): then, with a spool, what is in memory
        # goes there, and the spool is replayed once that time has passed.
        if self.policy.should_wait() and not self.policy.asked_wait():
            self.policy.down_until = 0.0
        probe_failed = False
        # What this flush owes: the items queued now (the worker is the only one that takes
        # them), then the events in the backlog once they are built. Events captured meanwhile
        # go out with them when they fit a batch, but are not waited for: under steady traffic
        # the queue is never empty, and a flush that waited for that would never return.
        items_due = self._drained + len(self._queue)
        events_due: int | None = None
        while not self._abort.is_set():
            self._drain()
            if events_due is None and (self._drained >= items_due or not self._queue):
                events_due = self._stored
            if events_due is not None and (self._batched >= events_due or not self._backlog):
                break  # (the backlog is first in, first out)
            batch = self._take_batch()
            if not batch:
                continue
            if self.spool is not None and (probe_failed or self.policy.asked_wait()):
                self._spool_batch(batch, "the endpoint is down")
                continue
            self._send(batch)
            probe_failed = self.policy.should_wait()
        owed = events_due is None or (self._batched < events_due and bool(self._backlog))
        if self._second is not None:
            self._second.wait_idle()
        # Counted from the last batch delivered: an outage is not waited out, but a failure
        # late in a long replay (the backlog an outage left) is.
        progress = started
        while self.spool is not None and not self._abort.is_set():
            if self.policy.should_wait():
                resume = self.policy.down_until
                # Everything here is already on disk: wait only for a retry that can happen
                # within the budget and before a shutdown's deadline (never wait just to give up).
                if resume - progress > _RETRY_BUDGET_WITH_SPOOL or (
                    self._deadline is not None and resume >= self._deadline
                ):
                    break
                if self._abort.wait(max(0.0, resume - time.monotonic())):
                    break
            if self._drain_spool(max_batches=1):  # a batch was answered for good
                progress = time.monotonic()
            elif not self.policy.should_wait():
                break
        after = self.counters.snapshot()
        lost = self._losses_reported = self._losses()
        if lost > lost_before or owed:
            return False
        if self.spool is not None:
            try:
                return self.spool.pending() == 0
            except Exception:
                # A spool that cannot be read (a folder where its file should be): what this
                # sender never spooled is not waiting there.
                return after["spooled"] == 0
        return after["spooled"] == before["spooled"]

    def _let_burst_pass(self, deadline: float) -> None:
        """While a burst is still arriving, wait (bounded) before serializing.

        Serializing on this thread competes with the caller for the GIL; deferring it until the
        burst is over keeps `capture()` cheap. The wait ends at `deadline`, at three quarters of
        the help threshold (a queued event holds one container for the garbage collector, so
        waiting costs little), or as soon as a flush or shutdown asks for delivery. Half the
        threshold measured the same (1.8 against 1.9 µs per `capture` in a 20,000-event burst,
        once the benchmark stopped timing a collection of its own objects; the 2.8 against
        3.6 µs that chose three quarters came from that collection).
        """
        high_water = self.help_threshold * 3 // 4
        while not (self._flush_requested > self._flush_done or self._stopping):
            before = len(self._queue)
            if before >= high_water or time.monotonic() >= deadline:
                return
            extra = self._extra_events
            time.sleep(0.002)
            if len(self._queue) - before + self._extra_events - extra < 16:
                return

    def _settling(self, batch: list[bytes]) -> bool:
        """Take `batch` out of the in-flight list; False if a shutdown deadline took it first."""
        with self._inflight_lock:
            self._outcomes.pop(id(batch), None)
            for i, taken in enumerate(self._inflight):
                if taken is batch:
                    del self._inflight[i]
                    return True
            return False

    def _settled_to_spool(self, batch: list[bytes], count: int) -> bool:
        """Take `batch` out of the in-flight list (False if a shutdown deadline took it first)
        and count `count` of its events as queued while the spool is tried: `stats()` never
        misses them, and a shutdown deadline meanwhile does not save them a second time."""
        with self._inflight_lock:
            if not self._settling(batch):
                return False
            self._spooling += count
            return True

    def _spooled(self, events: list[bytes], *, back_in_flight: bool = False) -> None:
        """The spool has taken `events`, or not (`back_in_flight`: retried in memory now)."""
        with self._inflight_lock:
            if back_in_flight:
                self._inflight.append(events)
            self._spooling -= len(events)

    def _spool_batch(self, batch: list[bytes], why: str) -> None:
        if not self._settled_to_spool(batch, len(batch)):
            return  # taken (and spooled) by a shutdown deadline
        spooled = False
        try:
            spooled = self._to_spool(batch, why)
        finally:
            self._spooled(batch, back_in_flight=not spooled)
        if not spooled:
            self._retry_in_memory(batch)  # the spool cannot take it

    def _send(self, batch: list[bytes]) -> None:
        """Deliver `batch`: on the helper thread when more is waiting and it is free, else here.

        Only while the endpoint is answering: one that is failing gets one request at a time
        (and its batches reach the spool in the order they were captured).
        """
        second = self._second
        if (
            second is not None
            and self.policy.answering
            and (self._backlog or self._queue)
            and second.try_hand(batch)
        ):
            return
        self._deliver(batch)

    def _deliver_guarded(self, batch: list[bytes]) -> None:
        try:
            self._deliver(batch)
        except Exception as exc:
            log.exception("posthog-llm: the sender hit an unexpected error")
            _report(exc)

    def _deliver(self, batch: list[bytes]) -> None:
        """Send one batch from memory. With a spool, a failed attempt goes straight to the spool
        (and the spool retries it, backing off): a process killed during an outage then loses
        only what it captured in the last flush interval. Without one, the batch is retried
        here, after the wait the endpoint asked for (within a shutdown's deadline)."""
        in_memory = self.spool is None or self._spool_failing
        outcome = self._attempt(batch, retry=in_memory)
        undelivered = outcome.undelivered
        if not self._settled_to_spool(batch, len(undelivered)):
            self._taken_back(batch, outcome)  # a shutdown deadline took (and saved) the batch
            return
        if not undelivered:
            self._settle(outcome)
            if outcome.delivered:
                self.policy.mark_up()
            return
        spooled = retried = False
        try:
            self._settle(outcome)
            self.policy.mark_down(self.policy.take_retry_after())
            why = "; ".join(outcome.reasons[-1:])
            spooled = self._to_spool(undelivered, why)
            retried = not spooled and not in_memory
        finally:
            self._spooled(undelivered, back_in_flight=retried)
        if spooled:
            self.counters.add("retried", len(undelivered))  # by the spool, later
            self._warn_failing(len(undelivered), outcome.reasons)
        elif retried:
            # The spool cannot take them: retried here, as without one, rather than lost.
            self.counters.add("retried", len(undelivered))
            self._retry_in_memory(undelivered)
        else:
            self._give_up(undelivered, outcome.reasons)

    def _retry_in_memory(self, batch: list[bytes]) -> None:
        """Send `batch` with the policy's retries (the spool cannot take it). The caller has put
        it back in flight (`_spooled`): counted as queued meanwhile, and a shutdown deadline can
        still save it."""
        outcome = self._attempt(batch, retry=True)
        if not self._settling(batch):
            self._taken_back(batch, outcome)
            return
        self._settle(outcome)
        if outcome.undelivered:
            self._give_up(outcome.undelivered, outcome.reasons)
        elif outcome.delivered:
            self.policy.mark_up()

    def _attempt(self, batch: list[bytes], *, retry: bool) -> Outcome:
        """One send of `batch` (with the policy's retries when `retry`, after the wait the
        endpoint asked for, within a shutdown's deadline)."""
        outcome = Outcome()
        with self._inflight_lock:
            self._outcomes[id(batch)] = outcome
        asked = self.policy.asked_wait()
        if asked and retry:
            if self._deadline is not None:
                asked = min(asked, max(0.0, self._deadline - time.monotonic()))
            self._abort.wait(asked)
        return self.policy.send(
            batch, deadline=self._deadline, abort=self._abort, retry=retry, outcome=outcome
        )

    def _settle(self, outcome: Outcome) -> None:
        if outcome.rejected:
            self._give_up(outcome.rejected, outcome.reasons)
        deferred = outcome.deferred
        if deferred:
            # The spool replays them (a fresh bisection each time) without waiting: the
            # endpoint is answering.
            if self.spool is not None and self._to_spool(deferred, _NOT_ISOLATED):
                self.counters.add("retried", len(deferred))
            else:
                self._give_up(deferred, [*outcome.reasons, _NOT_ISOLATED])

    def _give_up(self, events: list[bytes], reasons: list[str]) -> None:
        self.counters.add("failed", len(events))
        self._warning.warn(
            "posthog-llm: dropped a batch of %d events for %s: %s",
            len(events),
            self._destination_name,
            reasons[-1] if reasons else "unknown error",
        )

    def _warn_failing(self, count: int, reasons: list[str]) -> None:
        """Say why delivery fails (an endpoint that never answers, a certificate that is not
        trusted), though nothing is lost: what was not delivered waits in the spool."""
        self._failing_warning.warn(
            "posthog-llm: could not deliver %d events to %s (%s); they wait in the spool %s "
            "and are sent once it answers",
            count,
            self._destination_name,
            reasons[-1] if reasons else "unknown error",
            self.spool.path if self.spool is not None else "",
        )

    def _drain_spool(self, max_batches: int) -> bool:
        """Send up to `max_batches` batches from the spool; True while there may be more."""
        spool = self.spool
        if spool is None or self.policy.should_wait() or self._abort.is_set():
            return False
        try:
            if not spool.has_claimable():
                return False
        except Exception as exc:
            self._spool_error_warning.warn(
                "posthog-llm: could not read the spool %s: %s", spool.path, exc
            )
            return False
        more = False
        for _ in range(max_batches):
            try:
                # Large batches: a spool that fills during an outage drains quickly after it.
                rows = spool.claim(
                    max(self.flush_at, _CATCH_UP_BATCH), self.max_batch_bytes, _SPOOL_LEASE
                )
            except Exception as exc:
                self._spool_error_warning.warn(
                    "posthog-llm: could not read the spool %s: %s", spool.path, exc
                )
                return False
            if not rows:
                return False
            ids = {id(data): row_id for row_id, data in rows}
            batch = [data for _, data in rows]
            # One attempt, then the spool waits (backing off).
            outcome = self.policy.send(
                batch, deadline=self._deadline, abort=self._abort, retry=False
            )
            self.counters.add("replayed", len(outcome.delivered))
            done = [ids[id(d)] for d in outcome.delivered + outcome.rejected]
            back = [ids[id(d)] for d in outcome.undelivered]
            # Not isolated yet (`Outcome.deferred`): the next claim bisects them again.
            again = [ids[id(d)] for d in outcome.deferred]
            if outcome.rejected:
                self._give_up(outcome.rejected, outcome.reasons)
            if again:
                self.counters.add("retried", len(again))
            try:
                spool.ack(done)
                spool.release(back + again)
            except Exception as exc:
                self._spool_error_warning.warn(
                    "posthog-llm: could not update the spool %s: %s", spool.path, exc
                )
            if back:
                self._warn_failing(len(back), outcome.reasons)
                self.counters.add("retried", len(back))
                self.policy.mark_down(self.policy.take_retry_after())
                return False
            self.policy.mark_up()
            more = True
        return more


def _gone(thread: threading.Thread | None) -> bool:
    """No worker, or one that ran and ended (one being started is not gone: a signal handler
    may run while `thread.start()` waits for it)."""
    return thread is None or (thread.ident is not None and not thread.is_alive())


def _reinit_after_fork() -> None:
    for sender in list(_live_senders):
        sender._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reinit_after_fork)
