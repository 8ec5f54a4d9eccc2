"""The local store: events in one SQLite file (WAL), read by the CLI, the viewer and notebooks."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from typing import Any

from .._events import PROP_TRACE_ID
from .._private_files import create_private_file, make_private_dirs, sqlite_uri
from .._store_summary import ensure_summaries, update_summaries
from .._timestamps import utc_text
from ._base import RetryableError

__all__ = ["SQLiteDestination", "connect", "ensure_schema", "DEFAULT_DB_PATH"]

log = logging.getLogger("posthog_llm")

DEFAULT_DB_PATH = os.path.join(".posthog-llm", "events.db")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    uuid TEXT PRIMARY KEY,
    event TEXT NOT NULL,
    distinct_id TEXT,
    timestamp TEXT,
    trace_id TEXT,
    properties TEXT NOT NULL,
    received_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS events_trace ON events(trace_id);
CREATE INDEX IF NOT EXISTS events_timestamp ON events(timestamp);
"""


def connect(path: str, *, create: bool = True, timeout: float = 30.0) -> sqlite3.Connection:
    """Open the store; with `create=False` a missing file raises FileNotFoundError."""
    if not create and not os.path.exists(path):
        raise FileNotFoundError(f"no posthog-llm database at {path}")
    if create and path != ":memory:":
        # Owner-only: the store holds captured prompts (its -wal/-shm files take the file's mode).
        make_private_dirs(os.path.dirname(os.path.abspath(path)))
        create_private_file(path)
    conn = sqlite3.connect(
        sqlite_uri(path), uri=True, timeout=timeout, check_same_thread=False, isolation_level=None
    )
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        if create:
            ensure_schema(conn)
        else:
            check_ours(conn)
    except BaseException:
        conn.close()
        raise
    return conn


_COLUMNS = {"uuid", "event", "distinct_id", "timestamp", "trace_id", "properties", "received_at"}


class NotAStoreError(sqlite3.DatabaseError, ValueError):
    """The file is another program's SQLite database: its `events` table is not ours (a
    `ValueError` where a client is configured with it)."""


def check_ours(conn: sqlite3.Connection) -> None:
    """Raise `NotAStoreError` when the database holds another program's `events` table."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(events)")}
    if columns and not _COLUMNS <= columns:
        raise NotAStoreError(
            "not a posthog-llm store: it has an events table of another program (missing "
            f"{', '.join(sorted(_COLUMNS - columns))}); pick another file"
        )


def ensure_schema(conn: sqlite3.Connection) -> None:
    check_ours(conn)
    # Several processes may open the store at once; WAL lets their writers and readers coexist.
    for attempt in range(50):
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.executescript(_SCHEMA)
            ensure_summaries(conn)  # trace summaries kept on ingest; built once for old stores
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            time.sleep(0.05 * (attempt + 1))
    raise sqlite3.OperationalError("database stayed locked while creating the schema")


def _text(value: Any) -> str | None:
    """A column's text: a string as it is, any other JSON value as its JSON (a trace id sent
    as a number or an object still groups its events; SQLite cannot bind a dict)."""
    if value is None or type(value) is str:
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def _trace_column(value: Any) -> str | None:
    """The trace an event belongs to: none for an empty or blank id (no trace a viewer could
    open, or a link could name)."""
    text = _text(value)
    return text if text is not None and text.strip() else None


def event_row(raw: bytes) -> tuple[Any, ...]:
    event = json.loads(raw)
    props = event.get("properties") or {}
    return (
        _text(event.get("uuid")),
        _text(event.get("event")),
        _text(event.get("distinct_id")),
        # In UTC: the store orders and filters events by this text.
        utc_text(event.get("timestamp")),
        _trace_column(props.get(PROP_TRACE_ID)) if isinstance(props, dict) else None,
        json.dumps(props, ensure_ascii=False, separators=(",", ":")),
        time.time(),
    )


def _new_rows(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The rows whose uuid is neither stored yet nor repeated earlier in the batch."""
    seen: set[Any] = set()
    uuids = [row[0] for row in rows if row[0] is not None]
    for start in range(0, len(uuids), 500):
        chunk = uuids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        seen.update(
            r[0] for r in conn.execute(f"SELECT uuid FROM events WHERE uuid IN ({marks})", chunk)
        )
    fresh = []
    for row in rows:
        if row[0] is None or row[0] not in seen:
            fresh.append(row)
            if row[0] is not None:
                seen.add(row[0])
    return fresh


def insert_events(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> int:
    """Store `rows` (`event_row`'s); returns how many could not be stored.

    One bad row never takes the others with it: when the batch fails for its content, the
    rows are stored one by one and only those that still fail are left out (and logged).
    A locked or unwritable store (`sqlite3.OperationalError`) fails the whole batch."""
    try:
        _insert(conn, rows)
        return 0
    except sqlite3.OperationalError:
        raise
    except (sqlite3.Error, ValueError, TypeError, OverflowError) as exc:
        if len(rows) == 1:
            log.warning(
                "posthog-llm: an event could not be stored: %s: %s", type(exc).__name__, exc
            )
            return 1
    return sum(insert_events(conn, [row]) for row in rows)


def _insert(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    # INSERT OR IGNORE on the uuid key: a batch retried after a lost answer is stored once.
    # Only the rows that are new go into the trace summaries, in the same transaction.
    conn.execute("BEGIN IMMEDIATE")
    try:
        new_rows = _new_rows(conn, rows)
        conn.executemany(
            "INSERT OR IGNORE INTO events "
            "(uuid, event, distinct_id, timestamp, trace_id, properties, received_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            new_rows,
        )
        update_summaries(conn, new_rows)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


class SQLiteDestination:
    """Writes batches into the local store. Safe with several writing processes."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        given = os.fspath(path) if path else DEFAULT_DB_PATH
        # Fixed now: the store is opened on the worker, after the app may have changed directory.
        self.path = given if given == ":memory:" else os.path.abspath(given)
        self.description = f"local store {given}"
        if os.path.isfile(self.path):
            # Another program's database is refused now, not at the first batch (read only:
            # nothing is created before events come).
            try:
                probe = sqlite3.connect(sqlite_uri(self.path, read_only=True), uri=True)
                try:
                    check_ours(probe)
                finally:
                    probe.close()
            except NotAStoreError as exc:
                raise NotAStoreError(f"{self.path} is {exc}") from None
            except sqlite3.Error:
                pass  # busy, or not a database at all: told when it is written
        self._conn: sqlite3.Connection | None = None
        self._pid = os.getpid()
        self._lock = threading.Lock()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():
            self._conn = connect(self.path)
            self._pid = os.getpid()
        return self._conn

    def open(self) -> None:
        """Open (and create) the store now: a path that cannot hold one fails here, with
        `OSError` or `sqlite3.Error`, rather than on the sender's worker."""
        with self._lock:
            self._connection()

    def send(self, events: list[bytes], *, timeout: float) -> None:
        rows = [event_row(e) for e in events]
        with self._lock:
            try:
                insert_events(self._connection(), rows)
            except sqlite3.OperationalError as exc:
                raise RetryableError(f"sqlite: {exc}") from None

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None and self._pid == os.getpid():
                try:
                    conn.close()
                except Exception:
                    pass
