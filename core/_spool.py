"""The durable spool: events that could not be delivered yet, in one SQLite file per endpoint.

One spool per (host, api key), in a folder named by a hash of the pair (the key is never written
in clear). Several processes share it: a sender *claims* rows with a lease before sending them
(`BEGIN IMMEDIATE` serialises the claims), deletes them once delivered, and releases them when
the endpoint failed. A process killed while holding a lease loses nothing: the lease expires and
another sender takes the rows again. SQLite in WAL mode with `synchronous=NORMAL` keeps every
committed row across a crash of the process (only a power loss can take the last commits).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from ._private_files import create_private_file, make_private_dirs, sqlite_uri

__all__ = ["Spool", "default_spool_dir", "spool_path", "DEFAULT_SPOOL_MAX_BYTES"]

DEFAULT_SPOOL_MAX_BYTES = 256 * 1024 * 1024

log = logging.getLogger("posthog_llm")
_T = TypeVar("_T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    data BLOB NOT NULL,
    size INTEGER NOT NULL,
    lease REAL NOT NULL DEFAULT 0
);
"""


# About what a row costs beyond its data (ids, size, lease, page headers).
_ROW_OVERHEAD = 32


def _busy(exc: sqlite3.Error) -> bool:
    """Another process holds the file for now (not a fault of the file)."""
    return "locked" in str(exc) or "busy" in str(exc)


def default_spool_dir() -> str:
    """`POSTHOG_LLM_SPOOL_DIR`, else `$XDG_CACHE_HOME/posthog-llm/spool` (`~/.cache/...`)."""
    explicit = os.environ.get("POSTHOG_LLM_SPOOL_DIR", "").strip()
    if explicit:
        return os.path.expanduser(explicit)
    cache = os.environ.get("XDG_CACHE_HOME", "").strip() or os.path.join(
        os.path.expanduser("~"), ".cache"
    )
    return os.path.join(cache, "posthog-llm", "spool")


def spool_path(base: str, host: str, api_key: str) -> str:
    """The spool file of one (host, api key) pair under `base`."""
    digest = hashlib.sha256(f"{host.rstrip('/')}\n{api_key}".encode()).hexdigest()[:32]
    return os.path.join(base, digest, "spool.db")


class Spool:
    """Thread-safe, process-shared queue of serialized events on disk, oldest first."""

    def __init__(self, path: str, max_bytes: int = DEFAULT_SPOOL_MAX_BYTES) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._pid = os.getpid()

    # -- connection ----------------------------------------------------------------------------

    def after_fork_in_child(self) -> None:
        """A fresh lock and no connection: the parent's may be held or in use at fork time."""
        self._lock = threading.RLock()
        self._conn = None
        self._pid = os.getpid()

    def exists(self) -> bool:
        return os.path.exists(self.path)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        # A connection must not cross a fork: the child opens its own.
        # Owner-only: the spool holds captured prompts (its -wal/-shm take the file's mode).
        make_private_dirs(os.path.dirname(self.path))
        try:
            conn = self._open()
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError):
                raise  # busy, locked, full, not permitted: the file itself may be fine
            conn = self._recover(exc)
        self._conn, self._pid = conn, os.getpid()
        return conn

    def _using(self, operation: Callable[[sqlite3.Connection], _T]) -> _T:
        """(Under `_lock`.) `operation` on the spool's connection. A damaged file (one that is
        not a database, or whose pages cannot be read) is set aside, and `operation` runs once
        more on a new spool: otherwise no event could ever be spooled again."""
        try:
            return operation(self._connection())
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError):
                raise
            self._forget_connection()
            conn = self._recover(exc)
            self._conn, self._pid = conn, os.getpid()
            return operation(conn)

    def _forget_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and self._pid == os.getpid():
            try:
                conn.close()
            except sqlite3.Error:
                pass

    def _recover(self, exc: sqlite3.DatabaseError) -> sqlite3.Connection:
        """A new connection after `exc` said the file is damaged. Under a lock the processes
        sharing the spool take, the file is checked again first: another of them may have set
        it aside and started a new one already. Set aside, not deleted."""
        with _exclusive(self.path + ".lock"):
            conn = None
            try:
                conn = self._open()
                healthy = conn.execute("PRAGMA quick_check(1)").fetchone()[0] == "ok"
            except sqlite3.DatabaseError as again:
                if isinstance(again, sqlite3.OperationalError):
                    raise
                healthy = False
            if healthy and conn is not None:
                return conn
            if conn is not None:
                conn.close()
            stamp = time.strftime("%Y%m%dT%H%M%S")
            aside = f"{self.path}.corrupt-{stamp}-{os.getpid()}-{secrets.token_hex(4)}"
            log.warning(
                "posthog-llm: the spool %s is unreadable (%s); moved to %s", self.path, exc, aside
            )
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(self.path + suffix):
                    os.replace(self.path + suffix, aside + suffix)
            return self._open()

    def _open(self) -> sqlite3.Connection:
        create_private_file(self.path)
        conn = sqlite3.connect(
            sqlite_uri(self.path),
            uri=True,
            timeout=30.0,
            check_same_thread=False,
            isolation_level=None,
        )
        try:
            self._prepare(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _prepare(self, conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA busy_timeout = 30000")
        for attempt in range(50):
            try:
                # auto_vacuum only takes effect on a new file; it lets an emptied spool shrink.
                conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
                # The spool is read and written in order: a small page cache is enough, and the
                # WAL file is trimmed after checkpoints.
                conn.execute("PRAGMA cache_size = -1024")
                conn.execute("PRAGMA journal_size_limit = 8388608")
                conn.executescript(_SCHEMA)
                break
            except sqlite3.OperationalError as exc:
                if not _busy(exc) or attempt == 49:
                    raise
                time.sleep(0.02 * (attempt + 1))

    def close(self) -> None:
        with self._lock:
            self._forget_connection()

    # -- writing -------------------------------------------------------------------------------

    def put(self, events: Sequence[bytes], ids: list[int] | None = None) -> int:
        """Append events (newest last); returns how many of the oldest were dropped to fit.
        `ids`, when given, gets the row ids of the events written, in order."""
        if not events:
            return 0
        # Written a part at a time, the limit enforced after each: the file never holds much
        # more than `max_bytes` (written at once, a shutdown's whole backlog grew it to that
        # size, and SQLite keeps a file's freed pages). Of one put, only the newest events
        # that fit in an empty spool are written; an event larger than that is dropped alone.
        room = self._fill_to
        kept: list[bytes] = []
        for data in reversed(events):
            size = len(data) + _ROW_OVERHEAD
            if size > room:
                if size > self._fill_to:
                    continue  # it could never fit: the older ones still may
                break
            room -= size
            kept.append(data)
        kept.reverse()
        dropped = len(events) - len(kept)
        if not kept:
            return dropped
        with self._lock:
            written, limited = self._using(lambda conn: self._write(conn, kept))
        if ids is not None:
            ids.extend(written)
        return dropped + limited

    def _write(self, conn: sqlite3.Connection, events: list[bytes]) -> tuple[list[int], int]:
        """One transaction: the row ids written, and how many old events the limit dropped."""
        part_bytes = max(1, self.max_bytes // 10)
        written: list[int] = []
        dropped = 0
        _begin(conn)
        try:
            start = 0
            while start < len(events):
                end, size = start, 0
                while end < len(events) and (end == start or size < part_bytes):
                    size += len(events[end])
                    end += 1
                newest = conn.execute("SELECT max(id) FROM events").fetchone()[0] or 0
                conn.executemany(
                    "INSERT INTO events (data, size) VALUES (?, ?)",
                    [(sqlite3.Binary(e), len(e)) for e in events[start:end]],
                )
                # One writer (the transaction holds the write lock): the part's rows are the
                # last `end - start` ids.
                last = conn.execute("SELECT max(id) FROM events").fetchone()[0]
                written.extend(range(last - (end - start) + 1, last + 1))
                dropped += self._enforce_limit(conn, newest)
                start = end
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise
        return written, dropped

    def _used_bytes(self, conn: sqlite3.Connection) -> int:
        # Pages in use, not a SUM over rows: O(1) whatever the spool holds.
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        size = conn.execute("PRAGMA page_size").fetchone()[0]
        return int((pages - free) * size)

    @property
    def _fill_to(self) -> int:
        # A full spool is cut back to this (a tenth below the limit), so it does not delete on
        # every put; what one put may write at most.
        return int(self.max_bytes * 0.9)

    def _enforce_limit(self, conn: sqlite3.Connection, older_than: int) -> int:
        """Drop the oldest events while the spool is over its limit; rows after `older_than`
        (the ones just written, which fit in an empty spool) are kept whatever pages cost."""
        used = self._used_bytes(conn)
        if used <= self.max_bytes:
            return 0
        excess = used - self._fill_to
        freed = dropped = 0
        last_id = None
        rows = conn.execute("SELECT id, size FROM events WHERE id <= ? ORDER BY id", (older_than,))
        for row_id, size in rows:
            freed += size + _ROW_OVERHEAD
            dropped += 1
            last_id = row_id
            if freed >= excess:
                break
        if last_id is not None:
            conn.execute("DELETE FROM events WHERE id <= ?", (last_id,))
        return dropped

    # -- reading -------------------------------------------------------------------------------

    def claim(self, max_count: int, max_bytes: int, lease: float) -> list[tuple[int, bytes]]:
        """Lease up to `max_count` events (and about `max_bytes`), oldest first."""
        if not self.exists():
            return []
        now = time.time()
        with self._lock:
            return self._using(lambda conn: self._claim(conn, now, max_count, max_bytes, lease))

    def _claim(
        self, conn: sqlite3.Connection, now: float, max_count: int, max_bytes: int, lease: float
    ) -> list[tuple[int, bytes]]:
        _begin(conn)
        try:
            rows = conn.execute(
                "SELECT id, size FROM events WHERE lease < ? ORDER BY id LIMIT ?",
                (now, max_count),
            ).fetchall()
            ids: list[int] = []
            total = 0
            for row_id, size in rows:
                if ids and total + size > max_bytes:
                    break
                ids.append(row_id)
                total += size
            out: list[tuple[int, bytes]] = []
            if ids:
                # Fixed statements (no IN list of varying length): each distinct SQL text
                # would be prepared and cached, and with thousands of placeholders that
                # cache alone grows the process by megabytes. Under the write lock, the
                # unleased rows between the first and last id are exactly those selected.
                until = now + lease
                first, last = ids[0], ids[-1]
                conn.execute(
                    "UPDATE events SET lease = ? WHERE id BETWEEN ? AND ? AND lease < ?",
                    (until, first, last, now),
                )
                out = [
                    (row_id, bytes(data))
                    for row_id, data in conn.execute(
                        "SELECT id, data FROM events WHERE id BETWEEN ? AND ? AND lease = ? "
                        "ORDER BY id",
                        (first, last, until),
                    )
                ]
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise
        return out

    def ack(self, ids: Sequence[int]) -> None:
        """Delete delivered (or permanently rejected) events."""
        self._by_ids("DELETE FROM events WHERE id = ?", ids)
        with self._lock:
            self._using(_vacuum_when_empty)

    def release(self, ids: Sequence[int]) -> None:
        """Give claimed events back, for the next attempt by any sender."""
        self._by_ids("UPDATE events SET lease = 0 WHERE id = ?", ids)

    def _by_ids(self, sql: str, ids: Sequence[int]) -> None:
        if not ids:
            return
        rows = [(row_id,) for row_id in ids]
        with self._lock:
            self._using(lambda conn: _in_transaction(conn, sql, rows))

    def pending(self) -> int:
        """Events in the spool (leased or not)."""
        if not self.exists():
            return 0
        with self._lock:
            return self._using(_count)

    def has_claimable(self) -> bool:
        if not self.exists():
            return False
        now = time.time()
        with self._lock:
            return self._using(
                lambda conn: (
                    conn.execute("SELECT 1 FROM events WHERE lease < ? LIMIT 1", (now,)).fetchone()
                    is not None
                )
            )


def _count(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT COUNT(*) FROM events").fetchone()[0])


def _vacuum_when_empty(conn: sqlite3.Connection) -> None:
    if not conn.execute("SELECT 1 FROM events LIMIT 1").fetchone():
        conn.execute("PRAGMA incremental_vacuum")  # an emptied spool gives its pages back


def _in_transaction(conn: sqlite3.Connection, sql: str, rows: list[tuple[int]]) -> None:
    _begin(conn)
    try:
        conn.executemany(sql, rows)
        conn.execute("COMMIT")
    except BaseException:
        _rollback(conn)
        raise


def _begin(conn: sqlite3.Connection) -> None:
    """Start a write transaction. One already open on this connection is this thread's own,
    interrupted (a signal handler that captured): refused, so that it is left intact."""
    if conn.in_transaction:
        raise _Busy("the spool is in use on this thread")
    conn.execute("BEGIN IMMEDIATE")


class _Busy(sqlite3.OperationalError):
    """The spool's connection is in a transaction this thread started and has not finished."""


def _rollback(conn: sqlite3.Connection) -> None:
    """Undo a transaction that failed; a damaged file may refuse that too (its error wins)."""
    try:
        conn.execute("ROLLBACK")
    except sqlite3.Error:
        pass


@contextlib.contextmanager
def _exclusive(path: str) -> Iterator[None]:
    """Hold an exclusive lock on `path` (made owner-only) against the other processes; where
    there are no POSIX file locks, against nothing."""
    try:
        import fcntl
    except ImportError:  # Windows: the rename below is then unguarded
        yield
        return
    create_private_file(path)
    with open(path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
