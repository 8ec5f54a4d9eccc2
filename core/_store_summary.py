"""Trace summaries and usage roll-ups, kept up to date in the store's insert transaction.

Readers (the trace list, search and the dashboard) query these small indexed tables instead of
re-scanning every event on each poll. `update_summaries` is called by the SQLite destination
with the rows it inserts; `ensure_summaries` builds the tables once for a store written by an
older version (a migration marked with `PRAGMA user_version`).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._events import (
    EMBEDDING,
    GENERATION,
    PROP_CACHE_CREATION_INPUT_TOKENS,
    PROP_CACHE_READ_INPUT_TOKENS,
    PROP_CACHE_READ_TOKEN_PRICE,
    PROP_CACHE_WRITE_TOKEN_PRICE,
    PROP_INPUT_COST_USD,
    PROP_INPUT_TOKEN_PRICE,
    PROP_INPUT_TOKENS,
    PROP_IS_ERROR,
    PROP_LATENCY,
    PROP_MODEL,
    PROP_OUTPUT_COST_USD,
    PROP_OUTPUT_TOKEN_PRICE,
    PROP_OUTPUT_TOKENS,
    PROP_PROVIDER,
    PROP_SPAN_NAME,
    PROP_TOTAL_COST_USD,
    SPAN,
    TRACE,
)
from ._usage import is_anthropic_model

__all__ = [
    "SUMMARY_VERSION",
    "own_cost",
    "LATENCY_BIN_BASE",
    "ensure_summaries",
    "update_summaries",
    "latency_bin_value",
    "timestamp_epoch",
    "as_number",
    "as_count",
    "is_truthy",
]

# Bumped when the summary tables change shape: older stores are rebuilt once.
SUMMARY_VERSION = 4  # 3: an event's own cost also from its custom prices; 4: as PostHog prices them
# Latency histogram bins are powers of this base (±5% around a bin's value).
LATENCY_BIN_BASE = 1.1
# A trace's search text and model list stay bounded however many spans it has.
_MAX_SEARCH_ITEMS = 64
_MAX_MODELS = 32

_SCHEMA = """
CREATE TABLE IF NOT EXISTS trace_summaries (
    trace_id TEXT PRIMARY KEY,
    start TEXT NOT NULL,
    events INTEGER NOT NULL,
    generations INTEGER NOT NULL,
    embeddings INTEGER NOT NULL,
    spans INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    trace_latency REAL,
    max_latency REAL,
    errors INTEGER NOT NULL,
    trace_name TEXT,
    first_name TEXT,
    distinct_id TEXT,
    models TEXT NOT NULL,
    search TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS trace_summaries_start ON trace_summaries(start, trace_id);
CREATE TABLE IF NOT EXISTS trace_search (
    start TEXT NOT NULL,
    trace_id TEXT NOT NULL,
    search TEXT NOT NULL,
    PRIMARY KEY (start, trace_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS usage_minutes (
    minute INTEGER NOT NULL,
    model TEXT NOT NULL,
    provider TEXT NOT NULL,
    calls INTEGER NOT NULL,
    errors INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    priced_calls INTEGER NOT NULL,
    priced_input INTEGER NOT NULL,
    priced_output INTEGER NOT NULL,
    priced_cache_read INTEGER NOT NULL,
    priced_cache_write INTEGER NOT NULL,
    explicit_calls INTEGER NOT NULL,
    explicit_cost REAL NOT NULL,
    latency_sum REAL NOT NULL,
    latency_n INTEGER NOT NULL,
    PRIMARY KEY (minute, model, provider)
);
CREATE TABLE IF NOT EXISTS usage_latency (
    hour INTEGER NOT NULL,
    model TEXT NOT NULL,
    bin INTEGER NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (hour, model, bin)
);
"""

_USAGE_COLUMNS = (
    "calls",
    "errors",
    "input_tokens",
    "output_tokens",
    "priced_calls",
    "priced_input",
    "priced_output",
    "priced_cache_read",
    "priced_cache_write",
    "explicit_calls",
    "explicit_cost",
    "latency_sum",
    "latency_n",
)
_USAGE_UPSERT = (
    "INSERT INTO usage_minutes (minute, model, provider, "
    + ", ".join(_USAGE_COLUMNS)
    + ") VALUES (?, ?, ?, "
    + ", ".join("?" * len(_USAGE_COLUMNS))
    + ") ON CONFLICT (minute, model, provider) DO UPDATE SET "
    + ", ".join(f"{c} = {c} + excluded.{c}" for c in _USAGE_COLUMNS)
)
_LATENCY_UPSERT = (
    "INSERT INTO usage_latency (hour, model, bin, n) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (hour, model, bin) DO UPDATE SET n = n + excluded.n"
)
_SUMMARY_COLUMNS = (
    "trace_id, start, events, generations, embeddings, spans, input_tokens, output_tokens, "
    "trace_latency, max_latency, errors, trace_name, first_name, distinct_id, models, search"
)


def as_number(value: Any) -> float | None:
    """A finite number from a stored property (numbers or numeric strings), else None."""
    if isinstance(value, bool):
        return None
    try:
        if isinstance(value, (int, float)):
            number = float(value)  # an int past a float's range raises OverflowError
        elif isinstance(value, str):
            number = float(value)
        else:
            return None
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def as_count(value: Any) -> int | None:
    """A non-negative whole count from a stored property, else None."""
    number = as_number(value)
    # Past 2**53 a count is not a count (and its sums would not fit SQLite's integers).
    return int(number) if number is not None and 0 <= number <= _MAX_COUNT else None


_MAX_COUNT = 2**53


def own_cost(props: Any) -> float | None:
    """The cost in USD an event states itself, as PostHog reads it ahead of its price table:
    `$ai_total_cost_usd`; else `$ai_input_cost_usd` + `$ai_output_cost_usd`; else its tokens at
    its own per-token prices, when it gives both `$ai_input_token_price` and
    `$ai_output_token_price` (cache reads and writes at `$ai_cache_read_token_price` and
    `$ai_cache_write_token_price`, else at PostHog's share of the input price). None when it
    states none.

    The input count includes the cached tokens except for Anthropic's models (as PostHog's
    `$ai_input_tokens` does): they are priced once, at the cache prices.

    >>> own_cost({"$ai_input_tokens": 10, "$ai_output_tokens": 2,
    ...           "$ai_input_token_price": 0.1, "$ai_output_token_price": 0.5})
    2.0
    >>> round(own_cost({"$ai_provider": "openai", "$ai_input_tokens": 100,
    ...                 "$ai_cache_read_input_tokens": 40, "$ai_output_tokens": 50,
    ...                 "$ai_input_token_price": 0.001, "$ai_output_token_price": 0.002}), 6)
    0.18
    """
    total = as_number(props.get(PROP_TOTAL_COST_USD))
    if total is not None:
        return total
    parts = [as_number(props.get(PROP_INPUT_COST_USD)), as_number(props.get(PROP_OUTPUT_COST_USD))]
    if parts[0] is not None or parts[1] is not None:
        return sum(part or 0.0 for part in parts)
    input_price = as_number(props.get(PROP_INPUT_TOKEN_PRICE))
    output_price = as_number(props.get(PROP_OUTPUT_TOKEN_PRICE))
    if input_price is None or output_price is None:
        return None  # PostHog prices the event from its table then
    provider, model = props.get(PROP_PROVIDER), props.get(PROP_MODEL)
    anthropic = is_anthropic_model(
        provider if isinstance(provider, str) else None, model if isinstance(model, str) else None
    )
    read_share, write_share = _CACHE_SHARES[anthropic]
    read_price = as_number(props.get(PROP_CACHE_READ_TOKEN_PRICE))
    write_price = as_number(props.get(PROP_CACHE_WRITE_TOKEN_PRICE))
    read = as_count(props.get(PROP_CACHE_READ_INPUT_TOKENS)) or 0
    write = as_count(props.get(PROP_CACHE_CREATION_INPUT_TOKENS)) or 0
    tokens_in = as_count(props.get(PROP_INPUT_TOKENS)) or 0
    if not anthropic:
        tokens_in = max(0, tokens_in - read - write)
    return (
        tokens_in * input_price
        + read * (read_price if read_price is not None else input_price * read_share)
        + write * (write_price if write_price is not None else input_price * write_share)
        + (as_count(props.get(PROP_OUTPUT_TOKENS)) or 0) * output_price
    )


# Cache reads and writes as shares of the input price, where an event gives no price of its
# own for them (PostHog's defaults): Anthropic's, and everyone else's.
_CACHE_SHARES = {True: (0.1, 1.25), False: (0.5, 1.0)}


def is_truthy(value: Any) -> bool:
    """Whether a stored flag (True, 1 or "true") is set."""
    return value is True or value == 1 or (isinstance(value, str) and value.lower() == "true")


def timestamp_epoch(value: Any) -> float | None:
    """Seconds since the epoch for a stored ISO 8601 timestamp (naive means UTC), else None."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip()
    if text[-1:] in "zZ":
        text = text[:-1] + "+00:00"
    head, dot, rest = text.partition(".")
    if dot:  # Python 3.10's fromisoformat wants exactly 3 or 6 fraction digits.
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = f"{head}.{(rest[:digits] + '000000')[:6]}{rest[digits:]}"
    try:
        moment = _dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_dt.timezone.utc)
    return moment.timestamp()


def latency_bin(latency: float) -> int:
    return int(round(math.log(max(latency, 1e-6)) / math.log(LATENCY_BIN_BASE)))


def latency_bin_value(index: int) -> float:
    """The latency (seconds) a histogram bin stands for."""
    return float(LATENCY_BIN_BASE**index)


@dataclass
class _Trace:
    start: str
    events: int = 0
    generations: int = 0
    embeddings: int = 0
    spans: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    trace_latency: float | None = None
    max_latency: float | None = None
    errors: int = 0
    trace_name: str | None = None
    first_name: str | None = None
    distinct_id: str | None = None
    models: set[str] = field(default_factory=set)
    search: dict[str, None] = field(default_factory=dict)  # insertion-ordered set


def _max(a: Any, b: Any) -> Any:
    return b if a is None else a if b is None else max(a, b)


def _min(a: Any, b: Any) -> Any:
    return b if a is None else a if b is None else min(a, b)


def _add_search(summary: _Trace, value: Any) -> None:
    if isinstance(value, str) and value and len(summary.search) < _MAX_SEARCH_ITEMS:
        summary.search.setdefault(value[:200], None)


def _from_row(row: Sequence[Any]) -> _Trace:
    summary = _Trace(
        start=row[1],
        events=row[2],
        generations=row[3],
        embeddings=row[4],
        spans=row[5],
        input_tokens=row[6],
        output_tokens=row[7],
        trace_latency=row[8],
        max_latency=row[9],
        errors=row[10],
        trace_name=row[11],
        first_name=row[12],
        distinct_id=row[13],
        models=set(json.loads(row[14])),
    )
    for item in row[15].split("\n"):
        if item:
            summary.search.setdefault(item, None)
    return summary


def _to_row(trace_id: str, s: _Trace) -> tuple[Any, ...]:
    return (
        trace_id,
        s.start,
        s.events,
        s.generations,
        s.embeddings,
        s.spans,
        s.input_tokens,
        s.output_tokens,
        s.trace_latency,
        s.max_latency,
        s.errors,
        s.trace_name,
        s.first_name,
        s.distinct_id,
        json.dumps(sorted(s.models)[:_MAX_MODELS], ensure_ascii=False),
        "\n".join(s.search),
    )


def _add_event(
    summary: _Trace, event: str, distinct_id: Any, timestamp: Any, props: dict[str, Any]
) -> None:
    summary.events += 1
    if isinstance(timestamp, str) and timestamp:
        summary.start = min(summary.start, timestamp) if summary.start else timestamp
    summary.generations += event == GENERATION
    summary.embeddings += event == EMBEDDING
    summary.spans += event == SPAN
    summary.input_tokens += as_count(props.get(PROP_INPUT_TOKENS)) or 0
    if event == GENERATION:
        summary.output_tokens += as_count(props.get(PROP_OUTPUT_TOKENS)) or 0
    latency = as_number(props.get(PROP_LATENCY))
    summary.max_latency = _max(summary.max_latency, latency)
    name = props.get(PROP_SPAN_NAME)
    name = name if isinstance(name, str) else None
    if event == TRACE:
        summary.trace_latency = _max(summary.trace_latency, latency)
        summary.trace_name = _max(summary.trace_name, name)
    summary.first_name = _min(summary.first_name, name)
    summary.errors += is_truthy(props.get(PROP_IS_ERROR))
    if isinstance(distinct_id, str):
        summary.distinct_id = _max(summary.distinct_id, distinct_id)
        _add_search(summary, distinct_id)
    model = props.get(PROP_MODEL)
    if isinstance(model, str) and model:
        if len(summary.models) < _MAX_MODELS:
            summary.models.add(model)
        _add_search(summary, model)
    _add_search(summary, name)


def _usage_delta(
    usage: dict[tuple[int, str, str], list[float]],
    latency_hist: dict[tuple[int, str, int], int],
    timestamp: Any,
    props: dict[str, Any],
) -> None:
    moment = timestamp_epoch(timestamp)
    if moment is None:
        return
    model = props.get(PROP_MODEL)
    model = str(model) if model not in (None, "") else ""
    provider = props.get(PROP_PROVIDER)
    provider = provider if isinstance(provider, str) else ""
    key = (int(moment // 60) * 60, model, provider)
    row = usage.get(key)
    if row is None:
        row = usage[key] = [0.0] * len(_USAGE_COLUMNS)
    tokens_in = as_count(props.get(PROP_INPUT_TOKENS))
    tokens_out = as_count(props.get(PROP_OUTPUT_TOKENS))
    row[0] += 1
    row[1] += is_truthy(props.get(PROP_IS_ERROR))
    row[2] += tokens_in or 0
    row[3] += tokens_out or 0
    explicit = own_cost(props)
    if explicit is not None:
        row[9] += 1
        row[10] += explicit
    elif tokens_in is not None or tokens_out is not None:
        row[4] += 1
        row[5] += tokens_in or 0
        row[6] += tokens_out or 0
        row[7] += as_count(props.get(PROP_CACHE_READ_INPUT_TOKENS)) or 0
        row[8] += as_count(props.get(PROP_CACHE_CREATION_INPUT_TOKENS)) or 0
    latency = as_number(props.get(PROP_LATENCY))
    if latency is not None:
        row[11] += latency
        row[12] += 1
        hist_key = (int(moment // 3600) * 3600, model, latency_bin(latency))
        latency_hist[hist_key] = latency_hist.get(hist_key, 0) + 1


def update_summaries(conn: sqlite3.Connection, rows: Iterable[Sequence[Any]]) -> None:
    """Fold newly inserted event rows into the summary tables (inside the caller's transaction).

    `rows` are `(uuid, event, distinct_id, timestamp, trace_id, properties_json, ...)` tuples,
    as the SQLite destination inserts them; each must be new to the store.
    """
    traces: dict[str, _Trace] = {}
    fresh: list[tuple[str, str, Any, Any, dict[str, Any]]] = []
    usage: dict[tuple[int, str, str], list[float]] = {}
    latency_hist: dict[tuple[int, str, int], int] = {}
    for row in rows:
        event, distinct_id, timestamp, trace_id = row[1], row[2], row[3], row[4]
        try:
            props = json.loads(row[5])
        except (TypeError, ValueError):
            props = {}
        if not isinstance(props, dict):
            props = {}
        if event in (GENERATION, EMBEDDING):
            _usage_delta(usage, latency_hist, timestamp, props)
        if trace_id is not None:
            fresh.append((str(trace_id), str(event), distinct_id, timestamp, props))
    if fresh:
        ids = list({item[0] for item in fresh})
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for existing in conn.execute(
                f"SELECT {_SUMMARY_COLUMNS} FROM trace_summaries WHERE trace_id IN ({marks})",
                chunk,
            ):
                traces[existing[0]] = _from_row(existing)
        old_starts = {trace_id: s.start for trace_id, s in traces.items()}
        for trace_id, event, distinct_id, timestamp, props in fresh:
            summary = traces.get(trace_id)
            if summary is None:
                summary = traces[trace_id] = _Trace(start="")
                _add_search(summary, trace_id)
            _add_event(summary, event, distinct_id, timestamp, props)
        conn.executemany(
            f"INSERT OR REPLACE INTO trace_summaries ({_SUMMARY_COLUMNS}) "
            f"VALUES ({','.join('?' * 16)})",
            [_to_row(trace_id, s) for trace_id, s in traces.items()],
        )
        # The search text, in its own narrow table ordered by start: a search reads it in
        # order, sequentially, and counts matches without touching the wide summary rows.
        conn.executemany(
            "DELETE FROM trace_search WHERE start = ? AND trace_id = ?",
            [(start, trace_id) for trace_id, start in old_starts.items()],
        )
        conn.executemany(
            "INSERT INTO trace_search (start, trace_id, search) VALUES (?, ?, ?)",
            [(s.start, trace_id, "\n".join(s.search)) for trace_id, s in traces.items()],
        )
    if usage:
        conn.executemany(_USAGE_UPSERT, [(*key, *values) for key, values in usage.items()])
    if latency_hist:
        conn.executemany(_LATENCY_UPSERT, [(*key, n) for key, n in latency_hist.items()])


def _has_summaries(conn: sqlite3.Connection) -> bool:
    return int(conn.execute("PRAGMA user_version").fetchone()[0]) >= SUMMARY_VERSION


def ensure_summaries(conn: sqlite3.Connection) -> bool:
    """Create the summary tables, building them from the events once; True when it built them.

    Runs in one write transaction, so concurrent writers (which keep the tables up to date
    themselves) never see a half-built summary.
    """
    if _has_summaries(conn):
        return False
    conn.execute("BEGIN IMMEDIATE")
    try:
        if _has_summaries(conn):
            conn.execute("COMMIT")
            return False
        for table in ("trace_summaries", "trace_search", "usage_minutes", "usage_latency"):
            conn.execute(f"DROP TABLE IF EXISTS {table}")
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        has_events = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='events'"
        ).fetchone()
        if has_events:
            cursor = conn.execute(
                "SELECT uuid, event, distinct_id, timestamp, trace_id, properties FROM events"
            )
            while True:
                batch = cursor.fetchmany(5000)
                if not batch:
                    break
                update_summaries(conn, batch)
        conn.execute(f"PRAGMA user_version = {SUMMARY_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return True
