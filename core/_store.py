"""Reading the local store: events, trace summaries and trace trees (the SQL side).

Used by the `posthog-llm` command line, the local viewer and notebooks. Trace lists and search
read the `trace_summaries` table that the SQLite destination keeps up to date on ingest;
rendering is in `_render` (text) and `_display` (HTML).

>>> from posthog_llm import EventStore
>>> store = EventStore(".posthog-llm/events.db")     # doctest: +SKIP
>>> store.traces(limit=5)                             # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

from ._render import describe_node
from ._store_summary import SUMMARY_VERSION, ensure_summaries
from ._trace_tree import Trace, TraceNode, build_tree
from .destinations.sqlite import DEFAULT_DB_PATH, connect

__all__ = [
    "EventStore",
    "TraceSummary",
    "TraceNode",
    "Trace",
    "build_tree",
    "default_db_path",
    "describe_node",
]


def default_db_path() -> str:
    """`POSTHOG_LLM_DB`, else `./.posthog-llm/events.db`."""
    value = os.environ.get("POSTHOG_LLM_DB")
    return value.strip() if value and value.strip() else DEFAULT_DB_PATH


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _like(text: str) -> str:
    """A LIKE pattern matching `text` anywhere, with its own `%`, `_` and `\\` taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


@dataclass
class TraceSummary:
    """One row per trace, as `posthog-llm traces` prints it."""

    trace_id: str
    name: str | None
    start: str | None
    events: int
    generations: int
    embeddings: int
    spans: int
    input_tokens: int
    output_tokens: int
    latency: float | None
    errors: int
    distinct_id: str | None
    models: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


_SUMMARY_SELECT = (
    "SELECT trace_id, start, events, generations, embeddings, spans, input_tokens, "
    "output_tokens, trace_latency, max_latency, errors, trace_name, first_name, distinct_id, "
    "models FROM trace_summaries"
)
_EVENT_SELECT = "SELECT uuid, event, distinct_id, timestamp, properties FROM events"


def _summary(row: tuple[Any, ...]) -> TraceSummary:
    (
        tid,
        start,
        events,
        gens,
        embs,
        spans,
        tin,
        tout,
        tlat,
        mlat,
        errs,
        tname,
        fname,
        did,
        models,
    ) = row
    return TraceSummary(
        trace_id=tid,
        name=tname or fname,
        start=start or None,
        events=int(events),
        generations=int(gens),
        embeddings=int(embs),
        spans=int(spans),
        input_tokens=int(tin),
        output_tokens=int(tout),
        latency=_num(tlat if tlat is not None else mlat),
        errors=int(errs),
        distinct_id=did,
        models=list(json.loads(models)),
    )


class EventStore:
    """Read access to a posthog-llm SQLite store."""

    def __init__(
        self, path: str | os.PathLike[str] | None = None, *, must_exist: bool = True
    ) -> None:
        self.path = os.fspath(path) if path else default_db_path()
        self._conn = connect(self.path, create=not must_exist)
        if must_exist:
            has_table = self._conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='events'"
            ).fetchone()
            if not has_table:
                self._conn.close()
                raise FileNotFoundError(
                    f"{self.path} is not a posthog-llm database (no events table)"
                )
            if int(self._conn.execute("PRAGMA user_version").fetchone()[0]) < SUMMARY_VERSION:
                ensure_summaries(self._conn)  # a store written by an older version: once

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @staticmethod
    def _row(row: tuple[Any, ...]) -> dict[str, Any]:
        uuid, event, distinct_id, timestamp, properties = row
        return {
            "event": event,
            "distinct_id": distinct_id,
            "properties": json.loads(properties),
            "timestamp": timestamp,
            "uuid": uuid,
        }

    def count(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM events").fetchone()[0])

    def iter_events(
        self,
        *,
        limit: int | None = None,
        trace_id: str | None = None,
        event: str | None = None,
        since: str | None = None,
        newest_first: bool = False,
    ) -> Generator[dict[str, Any], None, None]:
        """Events in time order, read lazily: constant memory however large the store is.

        `since` is an ISO 8601 UTC timestamp (as stored: `2025-01-30T12:00:00+00:00`).
        """
        sql = _EVENT_SELECT
        where: list[str] = []
        args: list[Any] = []
        if trace_id is not None:
            where.append("trace_id = ?")
            args.append(trace_id)
        if event is not None:
            where.append("event = ?")
            args.append(event)
        if since is not None:
            where.append("timestamp >= ?")
            args.append(since)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY timestamp " + ("DESC" if newest_first else "ASC") + ", rowid"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(int(limit))
        cursor = self._conn.execute(sql, args)
        try:
            while True:
                batch = cursor.fetchmany(500)
                if not batch:
                    return
                for row in batch:
                    yield self._row(row)
        finally:
            try:
                cursor.close()
            except sqlite3.ProgrammingError:  # the store was closed before the generator
                pass

    def events(
        self,
        *,
        limit: int | None = None,
        trace_id: str | None = None,
        event: str | None = None,
        since: str | None = None,
        newest_first: bool = False,
    ) -> list[dict[str, Any]]:
        """Events in time order (`{event, distinct_id, properties, timestamp, uuid}`)."""
        return list(
            self.iter_events(
                limit=limit,
                trace_id=trace_id,
                event=event,
                since=since,
                newest_first=newest_first,
            )
        )

    def traces(
        self,
        *,
        limit: int | None = 100,
        search: str | None = None,
        before: tuple[str, str] | None = None,
    ) -> list[TraceSummary]:
        """Trace summaries, newest first. `search` matches trace id, distinct id, name or model.

        `before=(start, trace_id)` of the last row of a page gives the next page.
        """
        where: list[str] = []
        args: list[Any] = []
        table = "trace_summaries"
        if search:
            # Scan the narrow search table in start order, then fetch the page's summaries.
            table = "trace_search"
            where.append("search LIKE ? ESCAPE '\\'")
            args.append(_like(search))
        if before is not None:
            where.append("(start < ? OR (start = ? AND trace_id < ?))")
            args.extend([before[0], before[0], before[1]])
        sql = f"SELECT trace_id FROM {table}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY start DESC, trace_id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(int(limit))
        if not search:
            sql = sql.replace(
                "SELECT trace_id FROM", _SUMMARY_SELECT.replace("FROM trace_summaries", "FROM"), 1
            )
            return [_summary(row) for row in self._conn.execute(sql, args)]
        ids = [row[0] for row in self._conn.execute(sql, args)]
        found: dict[str, TraceSummary] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for row in self._conn.execute(f"{_SUMMARY_SELECT} WHERE trace_id IN ({marks})", chunk):
                found[row[0]] = _summary(row)
        return [found[i] for i in ids if i in found]

    def count_traces(self, search: str | None = None) -> int:
        """How many traces there are (matching `search`, when given)."""
        if search:
            row = self._conn.execute(
                "SELECT COUNT(*) FROM trace_search WHERE search LIKE ? ESCAPE '\\'",
                (_like(search),),
            ).fetchone()
        else:
            row = self._conn.execute("SELECT COUNT(*) FROM trace_summaries").fetchone()
        return int(row[0])

    def trace_ids_with_prefix(self, prefix: str, limit: int = 20) -> list[str]:
        """Trace ids starting with `prefix` (at most `limit`), via the summary's primary key."""
        rows = self._conn.execute(
            "SELECT trace_id FROM trace_summaries WHERE trace_id >= ? AND trace_id < ? "
            "ORDER BY trace_id LIMIT ?",
            (prefix, prefix + "\U0010ffff", int(limit)),
        )
        return [r[0] for r in rows]

    def trace(self, trace_id: str) -> Trace | None:
        """The trace as a tree, or None when the store has no event of it."""
        events = self.events(trace_id=trace_id)
        if not events:
            return None
        return Trace(trace_id=trace_id, root=build_tree(trace_id, events), events=events)

    def connection(self) -> sqlite3.Connection:
        """The underlying SQLite connection (read it, do not write through it)."""
        return self._conn
