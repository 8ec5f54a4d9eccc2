"""The destination protocol: where a batch of serialized events goes."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["Destination", "RetryableError", "BatchTooLargeError", "PermanentError"]


class RetryableError(Exception):
    """The batch may succeed later (network error, 408, 429, 5xx)."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class BatchTooLargeError(Exception):
    """The destination refused the batch for its size (HTTP 413): split it and try again."""


class PermanentError(Exception):
    """The batch will never be accepted (other 4xx): drop it.

    `status` is the HTTP status when there is one: a 400 for a batch of several events is
    bisected by the sender to find the events the endpoint refuses.
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@runtime_checkable
class Destination(Protocol):
    """Receives batches of events, each already serialized to compact JSON bytes.

    `send` raises one of the errors above on failure and returns normally on success. It is
    called from the sender's worker thread (or, for what is left at shutdown, the caller's), one
    call at a time, unless the destination sets `concurrent_requests = 2`: then the sender may
    keep a second call running on a helper thread (the PostHog destination does, so one
    request's wait overlaps the compression of the next).

    A destination may also define `lane(event: bytes) -> str`: the sender then never mixes events
    of different lanes in one `send` (the PostHog destination sends `$ai_*` events to another
    endpoint).
    """

    description: str

    def send(self, events: list[bytes], *, timeout: float) -> None: ...

    def close(self) -> None: ...
