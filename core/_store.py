"""Reading the local store: events, trace summaries and trace trees.

Used by the `posthog-llm` command line, the local viewer and notebooks.

>>> from posthog_llm import EventStore
>>> store = EventStore(".posthog-llm/events.db")     # doctest: +SKIP
>>> store.traces(limit=5)                             # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ._events import EMBEDDING, GENERATION, SPAN, TRACE
from .destinations.sqlite import DEFAULT_DB_PATH, connect

__all__ = ["EventStore", "TraceSummary", "TraceNode", "Trace", "default_db_path"]


def default_db_path() -> str:
    """`POSTHOG_LLM_DB`, else `./.posthog-llm/events.db`."""
    value = os.environ.get("POSTHOG_LLM_DB")
    return value.strip() if value and value.strip() else DEFAULT_DB_PATH


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


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


@dataclass
class TraceNode:
    """One event of a trace, with its children."""

    event: dict[str, Any]
    children: list[TraceNode] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return str(self.event.get("event", "")).replace("$ai_", "")

    @property
    def properties(self) -> dict[str, Any]:
        return self.event.get("properties") or {}

    @property
    def name(self) -> str:
        props = self.properties
        if self.event.get("event") in (GENERATION, EMBEDDING):
            return str(props.get("$ai_span_name") or props.get("$ai_model") or self.kind)
        return str(props.get("$ai_span_name") or self.kind)

    def walk(self, depth: int = 0) -> Iterator[tuple[int, TraceNode]]:
        yield depth, self
        for child in self.children:
            yield from child.walk(depth + 1)


@dataclass
class Trace:
    """A trace as a tree; `str(trace)` is the indented text form, `_repr_html_` shows it in Jupyter."""

    trace_id: str
    root: TraceNode
    events: list[dict[str, Any]]

    def to_text(self) -> str:
        return "\n".join(describe_node(node, depth) for depth, node in self.root.walk())

    __str__ = to_text

    def _repr_html_(self) -> str:
        from ._display import trace_html

        return trace_html(self)


def describe_node(node: TraceNode, depth: int) -> str:
    """One line of the tree: kind, name, model, tokens, latency, error."""
    props = node.properties
    parts = [("  " * depth) + ("└─ " if depth else "") + node.kind, node.name]
    if node.event.get("event") in (GENERATION, EMBEDDING):
        model = props.get("$ai_model")
        provider = props.get("$ai_provider")
        if model and model != node.name:
            parts.append(f"model={model}")
        elif model:
            parts[-1] = f"model={model}"
        if provider:
            parts.append(f"provider={provider}")
    tokens_in, tokens_out = props.get("$ai_input_tokens"), props.get("$ai_output_tokens")
    if node.event.get("event") == EMBEDDING and tokens_in is not None and tokens_out is None:
        parts.append(f"tokens={tokens_in}")
    elif tokens_in is not None or tokens_out is not None:
        parts.append(
            f"tokens={tokens_in if tokens_in is not None else '?'}→{tokens_out if tokens_out is not None else '?'}"
        )
    latency = _num(props.get("$ai_latency"))
    if latency is not None:
        parts.append(f"{latency * 1000:.1f}ms")
    if props.get("$ai_stream"):
        ttft = _num(props.get("$ai_time_to_first_token"))
        parts.append("stream" + (f" ttft={ttft * 1000:.1f}ms" if ttft is not None else ""))
    if props.get("$ai_is_error"):
        parts.append(f"ERROR {props.get('$ai_error') or ''}".rstrip())
    return "  ".join(parts)


def build_tree(trace_id: str, events: list[dict[str, Any]]) -> TraceNode:
    """Nest events by `$ai_parent_id`; orphans hang from the root so nothing is hidden."""
    root_event = next((e for e in events if e.get("event") == TRACE), None)
    if root_event is None:
        root_event = {
            "event": TRACE,
            "properties": {"$ai_trace_id": trace_id, "$ai_span_name": "trace"},
            "synthetic": True,
        }
    root = TraceNode(root_event)
    nodes: dict[str, TraceNode] = {trace_id: root}
    ordered = [e for e in events if e is not root_event]
    for event in ordered:
        props = event.get("properties") or {}
        node = TraceNode(event)
        span_id = props.get("$ai_span_id") or event.get("uuid")
        if span_id and span_id not in nodes:
            nodes[str(span_id)] = node
        event["_node"] = node
    for event in ordered:
        node = event.pop("_node")
        parent_id = (event.get("properties") or {}).get("$ai_parent_id")
        parent = nodes.get(str(parent_id)) if parent_id is not None else None
        if parent is None or parent is node:
            parent = root
        parent.children.append(node)
    return root


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

    def events(
        self,
        *,
        limit: int | None = None,
        trace_id: str | None = None,
        event: str | None = None,
        newest_first: bool = False,
    ) -> list[dict[str, Any]]:
        """Events in time order (`{event, distinct_id, properties, timestamp, uuid}`)."""
        sql = "SELECT uuid, event, distinct_id, timestamp, properties FROM events"
        where: list[str] = []
        args: list[Any] = []
        if trace_id is not None:
            where.append("trace_id = ?")
            args.append(trace_id)
        if event is not None:
            where.append("event = ?")
            args.append(event)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY timestamp " + ("DESC" if newest_first else "ASC") + ", rowid"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(int(limit))
        return [self._row(r) for r in self._conn.execute(sql, args)]

    def traces(self, *, limit: int | None = 100, search: str | None = None) -> list[TraceSummary]:
        """Trace summaries, newest first. `search` matches trace id, distinct id or model."""
        args: list[Any] = []
        having = ""
        if search:
            like = f"%{search}%"
            having = (
                " HAVING trace_id LIKE ? OR SUM(distinct_id LIKE ?) > 0"
                " OR SUM(COALESCE(json_extract(properties, '$.\"$ai_model\"'), '') LIKE ?) > 0"
                " OR SUM(COALESCE(json_extract(properties, '$.\"$ai_span_name\"'), '') LIKE ?) > 0"
            )
            args = [like, like, like, like]
        sql = f"""
            SELECT trace_id,
                   MIN(timestamp) AS start,
                   COUNT(*) AS events,
                   SUM(event = '{GENERATION}'), SUM(event = '{EMBEDDING}'), SUM(event = '{SPAN}'),
                   COALESCE(SUM(json_extract(properties, '$."$ai_input_tokens"')), 0),
                   COALESCE(SUM(CASE WHEN event = '{GENERATION}'
                       THEN json_extract(properties, '$."$ai_output_tokens"') END), 0),
                   MAX(CASE WHEN event = '{TRACE}' THEN json_extract(properties, '$."$ai_latency"') END),
                   MAX(json_extract(properties, '$."$ai_latency"')),
                   SUM(COALESCE(json_extract(properties, '$."$ai_is_error"'), 0) IN (1, 'true')),
                   MAX(CASE WHEN event = '{TRACE}' THEN json_extract(properties, '$."$ai_span_name"') END),
                   MIN(json_extract(properties, '$."$ai_span_name"')),
                   MAX(distinct_id),
                   GROUP_CONCAT(DISTINCT json_extract(properties, '$."$ai_model"'))
            FROM events
            WHERE trace_id IS NOT NULL
            GROUP BY trace_id
            {having}
            ORDER BY start DESC
        """
        if limit is not None:
            sql += " LIMIT ?"
            args.append(int(limit))
        out = []
        for row in self._conn.execute(sql, args):
            (
                trace_id,
                start,
                events,
                gens,
                embs,
                spans,
                tin,
                tout,
                trace_latency,
                max_latency,
                errors,
                trace_name,
                any_name,
                distinct_id,
                models,
            ) = row
            out.append(
                TraceSummary(
                    trace_id=trace_id,
                    name=trace_name or any_name,
                    start=start,
                    events=int(events),
                    generations=int(gens or 0),
                    embeddings=int(embs or 0),
                    spans=int(spans or 0),
                    input_tokens=int(tin or 0),
                    output_tokens=int(tout or 0),
                    latency=_num(trace_latency if trace_latency is not None else max_latency),
                    errors=int(errors or 0),
                    distinct_id=distinct_id,
                    models=sorted(m for m in (models or "").split(",") if m),
                )
            )
        return out

    def trace(self, trace_id: str) -> Trace | None:
        """The trace as a tree, or None when the store has no event of it."""
        events = self.events(trace_id=trace_id)
        if not events:
            return None
        return Trace(trace_id=trace_id, root=build_tree(trace_id, events), events=events)


def open_store(path: str | None) -> sqlite3.Connection:  # pragma: no cover - convenience
    return connect(path or default_db_path(), create=False)
