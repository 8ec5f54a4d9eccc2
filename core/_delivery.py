"""Delivery policy: one batch to the destination, with retries, splitting, bisection and backoff.

The queue and the worker (`_sender`) decide *what* to send and *when*; this module decides how
one batch is attempted and what became of each event: delivered, rejected for good, or not
deliverable now (for the spool). It also keeps the endpoint's up/down state, so that during an
outage batches go straight to the spool and only one probe at a time knocks on the door.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

from ._sender_stats import Counters
from .destinations import BatchTooLargeError, Destination, PermanentError, RetryableError

__all__ = ["DeliveryPolicy", "Outcome"]

log = logging.getLogger("posthog_llm")

# Requests spent isolating the offenders of one batch answered with 400: each costs about
# 2*log2(n) requests, so a quarter of the batch's size (at least 64) isolates ~10 bad events in
# the 2,000-event batches a spool replay or a catch-up sends (64 alone lost ~1,400 good events
# of such a batch), and stays bounded when every event is bad.
_MIN_BISECT_REQUESTS = 64
# A refused event is shrunk no further than this: an endpoint that refuses 32 KB refuses events.
_MIN_SHRUNK_BYTES = 32 * 1024
_MAX_DOWN_BACKOFF = 30.0


@dataclass
class Outcome:
    """What became of one batch."""

    delivered: list[bytes] = field(default_factory=list)
    rejected: list[bytes] = field(default_factory=list)
    undelivered: list[bytes] = field(default_factory=list)
    # Refused (400) with an offender among them, which one not found within the bisection's
    # requests: the endpoint answers, and another attempt (from the spool) isolates more.
    deferred: list[bytes] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)


class DeliveryPolicy:
    """Attempts batches on a destination and keeps the endpoint's up/down state."""

    def __init__(
        self,
        destination: Destination,
        counters: Counters,
        *,
        timeout: float,
        max_retries: int,
        retry_budget: float | None,
        lock: AbstractContextManager[object] | None = None,
    ) -> None:
        self.destination = destination
        self.counters = counters
        # Held while a delivered group moves from its outcome to the `sent` count: the sender's
        # `stats()` reads both under it, so an event is never counted twice or not at all.
        self._lock: AbstractContextManager[object] = (
            lock if lock is not None else contextlib.nullcontext()
        )
        self.timeout = timeout
        self.max_retries = max_retries
        # With a spool, a batch is retried for at most this many seconds, then spooled: the spool
        # waits out an outage, not the worker.
        self.retry_budget = retry_budget
        lane = getattr(destination, "lane", None)
        self._lane: Callable[[bytes], str] | None = lane if callable(lane) else None
        self.reset()

    def reset(self) -> None:
        self.down_until = 0.0
        # Until when the endpoint itself asked not to be called (a Retry-After): a flush waits
        # for that, where it would try an endpoint that is merely failing at once.
        self.asked_until = 0.0
        self._backoff = 0.0
        self._last_retry_after: float | None = None
        # The last batch was delivered: the endpoint is answering (not merely not known down).
        self.answering = False

    # -- endpoint state ------------------------------------------------------------------------

    @property
    def is_down(self) -> bool:
        return self._backoff > 0

    def should_wait(self) -> bool:
        """True while the endpoint is down and its next probe is not due yet."""
        return self._backoff > 0 and time.monotonic() < self.down_until

    def mark_down(self, retry_after: float | None = None) -> None:
        self.answering = False
        self._backoff = min(_MAX_DOWN_BACKOFF, max(1.0, self._backoff * 2))
        wait = max(self._backoff * random.uniform(0.5, 1.0), retry_after or 0.0)
        now = time.monotonic()
        self.down_until = now + min(wait, 60.0)
        self.asked_until = now + min(retry_after, 60.0) if retry_after else 0.0

    def asked_wait(self) -> float:
        """Seconds left of a wait the endpoint asked for (Retry-After); 0.0 when none."""
        if not self.asked_until:
            return 0.0
        return max(0.0, self.asked_until - time.monotonic())

    def mark_up(self) -> None:
        self.answering = True
        self._backoff = 0.0
        self.down_until = 0.0
        self.asked_until = 0.0

    # -- one batch -----------------------------------------------------------------------------

    def send(
        self,
        batch: list[bytes],
        *,
        deadline: float | None,
        abort: threading.Event,
        retry: bool = True,
        outcome: Outcome | None = None,
    ) -> Outcome:
        """Attempt `batch` (split by lane); never raises. `outcome`, when given, is the one
        filled (while the batch is being sent, what it delivered so far can be read there)."""
        if outcome is None:
            outcome = Outcome()
        for group in self._by_lane(batch):
            if outcome.undelivered or abort.is_set():
                # The endpoint just failed: do not knock again with the rest of the batch.
                outcome.undelivered.extend(group)
                if not outcome.reasons:
                    outcome.reasons.append("shutdown deadline reached")
                continue
            self._send_group(group, outcome, deadline, abort, retry)
        return outcome

    def _by_lane(self, batch: list[bytes]) -> list[list[bytes]]:
        if self._lane is None or len(batch) < 2:
            return [batch]
        lanes: dict[str, list[bytes]] = {}
        for data in batch:
            lanes.setdefault(self._lane(data), []).append(data)
        return list(lanes.values())

    def _timeout(self, deadline: float | None) -> float:
        if deadline is None:
            return self.timeout
        return max(0.05, min(self.timeout, deadline - time.monotonic()))

    def _send_group(
        self,
        group: list[bytes],
        outcome: Outcome,
        deadline: float | None,
        abort: threading.Event,
        retry: bool,
    ) -> None:
        attempt = 0
        started = time.monotonic()
        while True:
            if abort.is_set():
                outcome.undelivered.extend(group)
                outcome.reasons.append("shutdown deadline reached")
                return
            try:
                self.destination.send(group, timeout=self._timeout(deadline))
            except BatchTooLargeError as exc:
                if len(group) == 1:
                    shrunk = self._send_shrunk(group[0], deadline, abort)
                    if shrunk is True:
                        self._delivered(outcome, group)  # the event as queued: its spool row
                    elif shrunk is None:  # no answer to a smaller copy: kept, tried again
                        outcome.undelivered.extend(group)
                        outcome.reasons.append(str(exc))
                    else:
                        outcome.rejected.extend(group)
                        outcome.reasons.append(str(exc))
                    return
                half = len(group) // 2
                self._send_group(group[:half], outcome, deadline, abort, retry)
                self._send_group(group[half:], outcome, deadline, abort, retry)
                return
            except PermanentError as exc:
                if len(group) > 1 and exc.status == 400:
                    budget = max(_MIN_BISECT_REQUESTS, len(group) // 4)
                    self._bisect(group, outcome, deadline, abort, [budget])
                else:
                    outcome.rejected.extend(group)
                    outcome.reasons.append(str(exc))
                return
            except RetryableError as exc:
                attempt += 1
                delay = exc.retry_after
                if delay is None:
                    delay = min(30.0, 0.25 * (2 ** (attempt - 1))) * random.uniform(0.5, 1.0)
                delay = min(delay, 60.0)
                now = time.monotonic()
                if (
                    not retry
                    or attempt > self.max_retries
                    or (self.retry_budget is not None and now + delay - started > self.retry_budget)
                    or (deadline is not None and now + delay > deadline)
                ):
                    outcome.undelivered.extend(group)
                    outcome.reasons.append(f"{exc} (after {attempt - 1} retries)")
                    self._last_retry_after = exc.retry_after
                    return
                self.counters.add("retried", len(group))
                log.debug("posthog-llm: retrying a batch in %.2fs: %s", delay, exc)
                abort.wait(delay)
                continue
            except Exception as exc:
                # Not an answer from the endpoint (a fault on our side of the wire): the
                # batch is kept where it can be (the spool), as for an endpoint that failed.
                log.exception("posthog-llm: the destination raised unexpectedly")
                outcome.undelivered.extend(group)
                outcome.reasons.append(f"{type(exc).__name__}: {exc}")
                return
            self._delivered(outcome, group)
            return

    def _send_shrunk(
        self, data: bytes, deadline: float | None, abort: threading.Event
    ) -> bool | None:
        """One event the endpoint refused as too large (413: a self-hosted PostHog's `/batch/`
        taking the AI intake's events, a proxy's body limit): sent again truncated, with the
        visible marker, at half its size and less, rather than dropped for its content.
        True once a copy is taken; False when none can be made or every one is refused; None
        when the endpoint gave no answer to one (the event is kept for later)."""
        from ._serialize import fit_event  # the serializer's truncation; only on this rare path

        try:
            event = json.loads(data)
        except ValueError:
            return False
        if not isinstance(event, dict):
            return False
        limit = len(data)
        while not abort.is_set():
            limit //= 2
            if limit < _MIN_SHRUNK_BYTES:
                return False
            try:
                smaller = fit_event(event, limit)
                self.destination.send([smaller], timeout=self._timeout(deadline))
            except BatchTooLargeError:
                continue
            except PermanentError:
                return False
            except Exception:
                return None
            return True
        return None

    def _delivered(self, outcome: Outcome, group: list[bytes]) -> None:
        with self._lock:
            outcome.delivered.extend(group)
            self.counters.add("sent", len(group))
            self.counters.add("batches")

    def take_retry_after(self) -> float | None:
        value, self._last_retry_after = self._last_retry_after, None
        return value

    def _bisect(
        self,
        group: list[bytes],
        outcome: Outcome,
        deadline: float | None,
        abort: threading.Event,
        budget: list[int],
    ) -> None:
        """The endpoint refused `group` (400): find the events it refuses, in bounded requests."""
        if len(group) == 1:
            outcome.rejected.extend(group)
            outcome.reasons.append("refused by the endpoint (HTTP 400)")
            return
        half = len(group) // 2
        for part in (group[:half], group[half:]):
            if budget[0] <= 0 or abort.is_set():
                # Out of requests: what is not isolated yet is tried again later (from the
                # spool; without one it is given up with the offenders).
                outcome.deferred.extend(part)  # (no reason: nothing is given up)
                continue
            budget[0] -= 1
            try:
                self.destination.send(part, timeout=self._timeout(deadline))
            except PermanentError as exc:
                if exc.status == 400:
                    self._bisect(part, outcome, deadline, abort, budget)
                else:
                    outcome.rejected.extend(part)
                    outcome.reasons.append(str(exc))
                continue
            except Exception:
                # Anything else (a retryable failure mid-bisection) goes the normal way.
                self._send_group(part, outcome, deadline, abort, True)
                continue
            self._delivered(outcome, part)
