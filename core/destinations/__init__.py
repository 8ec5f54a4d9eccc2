"""Where events go: PostHog's capture API, the local SQLite store, or memory (tests)."""

from __future__ import annotations

from ._base import BatchTooLargeError, Destination, PermanentError, RetryableError
from .memory import InMemoryDestination
from .posthog_http import PostHogHTTPDestination
from .sqlite import DEFAULT_DB_PATH, SQLiteDestination

__all__ = [
    "Destination",
    "RetryableError",
    "BatchTooLargeError",
    "PermanentError",
    "InMemoryDestination",
    "PostHogHTTPDestination",
    "SQLiteDestination",
    "DEFAULT_DB_PATH",
]
