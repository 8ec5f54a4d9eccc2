"""The viewer's JSON API: trace lists, one trace as a tree, usage stats and recent events.

`answer(reader, path, query)` is the whole API: the JSON value for a `/api/...` GET, or
BadRequest (404 for an unknown trace or page, 400 for a bad argument).

>>> reader = Reader(".posthog-llm/events.db", load_pricing())           # doctest: +SKIP
>>> answer(reader, "/api/traces", {"search": "hedgehog"})["traces"]      # doctest: +SKIP
[{'trace_id': 'trace_id', ..., 'cost_usd': 0.00035}]
"""

from __future__ import annotations

import datetime as _dt
import math
import sqlite3
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, NamedTuple
from urllib.parse import unquote

from .._events import (
    EMBEDDING,
    GENERATION,
    OWN_COST_PROPERTIES,
    PROP_CACHE_CREATION_1H_INPUT_TOKENS,
    PROP_CACHE_CREATION_INPUT_TOKENS,
    PROP_CACHE_READ_INPUT_TOKENS,
    PROP_INPUT_TOKENS,
    PROP_IS_ERROR,
    PROP_LATENCY,
    PROP_MODEL,
    PROP_OUTPUT_TOKENS,
    PROP_PROVIDER,
    PROP_REASONING_TOKENS,
    PROP_SERVICE_TIER,
    PROP_TOTAL_COST_USD,
)
from .._store import EventStore, TraceNode
from .._store_summary import (
    as_count,
    as_number,
    is_truthy,
    latency_bin_value,
)
from .._version import __version__
from ..destinations.sqlite import connect
from ._ingest import BadRequest, iso, parse_timestamp
from .pricing import PricingTable, event_cost

__all__ = ["Reader", "answer"]


class _Usage(NamedTuple):
    trace_id: str | None
    event: str
    timestamp: str | None
    model: Any
    provider: Any
    input_tokens: Any
    output_tokens: Any
    cache_read: Any
    cache_write: Any
    total_cost: Any
    reasoning: Any
    cache_write_1h: Any
    service_tier: Any
    input_cost: Any
    output_cost: Any
    input_price: Any
    output_price: Any
    cache_read_price: Any
    cache_write_price: Any
    latency: Any
    is_error: Any


def _prop(name: str) -> str:
    return f"json_extract(properties, '$.\"{name}\"')"


# The properties Reader.cost() reads, in the order of `_Usage`'s fields that hold them.
_COST_PROPS = (
    PROP_MODEL,
    PROP_PROVIDER,
    PROP_INPUT_TOKENS,
    PROP_OUTPUT_TOKENS,
    PROP_CACHE_READ_INPUT_TOKENS,
    PROP_CACHE_CREATION_INPUT_TOKENS,
    PROP_TOTAL_COST_USD,
    PROP_REASONING_TOKENS,
    PROP_CACHE_CREATION_1H_INPUT_TOKENS,
    PROP_SERVICE_TIER,
    *OWN_COST_PROPERTIES[1:],  # after the total, above
)
_USAGE_SQL = (
    "SELECT trace_id, event, timestamp, "
    + ", ".join(_prop(p) for p in (*_COST_PROPS, PROP_LATENCY, PROP_IS_ERROR))
    + f" FROM events WHERE event IN ('{GENERATION}', '{EMBEDDING}')"
)


def _epoch(timestamp: Any) -> float | None:
    moment = parse_timestamp(timestamp)
    return moment.timestamp() if moment else None


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


# Below this many calls in the range the dashboard reads the events themselves (exact, and
# buckets of a second for a quick demo); above it, the per-minute roll-up kept on ingest.
EXACT_STATS_LIMIT = 5_000
_ROLLUP_SUMS = (
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

_BUCKETS = (1, 5, 10, 30, 60, 300, 900, 3600, 3 * 3600, 6 * 3600, 86400, 7 * 86400, 30 * 86400)


class Reader:
    """The viewer's queries: EventStore for traces, a little SQL of its own for usage and cost."""

    def __init__(self, db: str, pricing: PricingTable) -> None:
        self.db = db
        self.pricing = pricing

    @contextmanager
    def _sql(self) -> Iterator[sqlite3.Connection]:
        conn = connect(self.db, create=False)
        try:
            yield conn
        finally:
            conn.close()

    def cost(self, props: Mapping[str, Any]) -> dict[str, Any] | None:
        """The cost the event states itself (`own_cost`: its total, its input and output costs,
        or its tokens at its own prices, as PostHog reads them), else the table's estimate
        (`PricingTable.estimate_event`: what `Client(send_estimated_cost=True)` sends)."""
        return event_cost(props, self.pricing)

    def _usage_cost(self, row: _Usage) -> float | None:
        cost = self.cost(dict(zip(_COST_PROPS, row[3 : 3 + len(_COST_PROPS)])))
        return cost["total_cost_usd"] if cost else None

    def _usage(self, where: str = "", args: tuple[Any, ...] = ()) -> list[_Usage]:
        with self._sql() as conn:
            return [_Usage(*row) for row in conn.execute(_USAGE_SQL + where, args)]

    def info(self) -> dict[str, Any]:
        with EventStore(self.db) as store:
            count = store.count()
            traces = store.count_traces()
        return {
            "version": __version__,
            "db": self.db,
            "events": count,
            "traces": traces,
            "pricing_as_of": self.pricing.as_of,
            "pricing_source": self.pricing.source,
        }

    def traces(self, search: str | None, limit: int, cursor: str | None = None) -> dict[str, Any]:
        """A page of trace summaries, newest first, with the total and the next page's cursor."""
        before = None
        if cursor:
            after_start, bar, after_id = cursor.partition("|")
            if not bar:
                raise BadRequest("cursor must be the next_cursor of a previous page")
            before = (after_start, after_id)
        with EventStore(self.db) as store:
            rows = store.traces(limit=limit, search=search or None, before=before)
            if before is None and len(rows) < limit:
                total = len(rows)
            else:
                total = store.count_traces(search or None)
        costs: dict[str, float] = {}
        ids = [r.trace_id for r in rows]
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for usage in self._usage(f" AND trace_id IN ({marks})", tuple(chunk)):
                cost = self._usage_cost(usage)
                if cost is not None and usage.trace_id is not None:
                    costs[usage.trace_id] = costs.get(usage.trace_id, 0.0) + cost
        items = []
        for row in rows:
            item = row.as_dict()
            item["cost_usd"] = round(costs[row.trace_id], 10) if row.trace_id in costs else None
            items.append(item)
        last = rows[-1] if rows and len(rows) == limit else None
        return {
            "traces": items,
            "total": total,
            "next_cursor": f"{last.start or ''}|{last.trace_id}" if last else None,
            "search": search or "",
            "pricing_as_of": self.pricing.as_of,
            "pricing_source": self.pricing.source,
        }

    def _node(self, node: TraceNode, depth: int, parent: int | None) -> dict[str, Any]:
        event, props = node.event, node.properties
        end = _epoch(event.get("timestamp"))
        latency = as_number(props.get(PROP_LATENCY))
        start = end - latency if end is not None and latency is not None else end
        cost = None
        if event.get("event") in (GENERATION, EMBEDDING):
            cost = self.cost(props)
        return {
            "depth": depth,
            "parent": parent,
            "kind": node.kind,
            "name": node.name,
            "event": event.get("event"),
            "uuid": event.get("uuid"),
            "distinct_id": event.get("distinct_id"),
            "timestamp": event.get("timestamp"),
            "synthetic": bool(event.get("synthetic")),
            "start": start,
            "end": end,
            "latency": latency,
            "is_error": is_truthy(props.get(PROP_IS_ERROR)),
            "cost": cost,
            "properties": props,
        }

    def trace(self, trace_id: str) -> dict[str, Any] | None:
        with EventStore(self.db) as store:
            trace = store.trace(trace_id)
        if trace is None:
            return None
        nodes: list[dict[str, Any]] = []
        parents: list[int] = []  # index of the latest node at each depth
        for depth, node in trace.root.walk():
            del parents[depth:]
            nodes.append(self._node(node, depth, parents[-1] if parents else None))
            parents.append(len(nodes) - 1)
        starts = [n["start"] for n in nodes if n["start"] is not None]
        ends = [n["end"] for n in nodes if n["end"] is not None]
        root = nodes[0]
        if root["start"] is None and starts:  # no $ai_trace event: the root spans its children
            root["start"], root["end"] = min(starts), max(ends)
        costs = [n["cost"]["total_cost_usd"] for n in nodes if n["cost"]]
        usage = [n for n in nodes if n["event"] in (GENERATION, EMBEDDING)]
        distinct_ids = [n["distinct_id"] for n in nodes if n["distinct_id"]]
        return {
            "trace_id": trace_id,
            "name": root["name"],
            "start": min(starts) if starts else None,
            "end": max(ends) if ends else None,
            "events": len(trace.events),
            "distinct_id": distinct_ids[0] if distinct_ids else None,
            "input_tokens": sum(
                as_count(n["properties"].get(PROP_INPUT_TOKENS)) or 0 for n in usage
            ),
            "output_tokens": sum(
                as_count(n["properties"].get(PROP_OUTPUT_TOKENS)) or 0
                for n in usage
                if n["event"] == GENERATION
            ),
            "cost_usd": round(sum(costs), 10) if costs else None,
            "errors": sum(1 for n in nodes if n["is_error"]),
            "models": sorted({str(m) for n in usage if (m := n["properties"].get(PROP_MODEL))}),
            "nodes": nodes,
            "pricing_as_of": self.pricing.as_of,
            "pricing_source": self.pricing.source,
        }

    def events(self, limit: int, event: str | None) -> dict[str, Any]:
        with EventStore(self.db) as store:
            rows = store.events(limit=limit, event=event or None, newest_first=True)
        return {"events": rows}

    def stats(self, hours: float | None) -> dict[str, Any]:
        """Calls, errors, latency, tokens and cost per model, overall and per time bucket."""
        cutoff = time.time() - hours * 3600 if hours else None
        minute = int(cutoff // 60) * 60 if cutoff is not None else None
        with self._sql() as conn:
            calls = conn.execute(
                "SELECT COALESCE(SUM(calls), 0) FROM usage_minutes WHERE minute >= ?",
                (minute if minute is not None else -(2**62),),
            ).fetchone()[0]
            if calls > EXACT_STATS_LIMIT:
                return self._stats_rollup(conn, minute)
        return self._stats_exact(cutoff)

    def _finish(
        self,
        by_model: dict[str, dict[str, Any]],
        size: int,
        origin: float,
        count: int,
        approximate: bool,
    ) -> dict[str, Any]:
        models = sorted(by_model.values(), key=lambda m: -m["calls"])
        for m in models:
            series = m["series"]
            total, n = series.pop("latency_sum"), series.pop("latency_n")
            series["latency_avg"] = [t / k if k else None for t, k in zip(total, n)]
            series["cost_usd"] = [round(c, 10) for c in series["cost_usd"]]
            if m["cost_usd"] is not None:
                m["cost_usd"] = round(m["cost_usd"], 10)
        known_costs = [m["cost_usd"] for m in models if m["cost_usd"] is not None]
        totals = {
            "calls": sum(m["calls"] for m in models),
            "errors": sum(m["errors"] for m in models),
            "input_tokens": sum(m["input_tokens"] for m in models),
            "output_tokens": sum(m["output_tokens"] for m in models),
            "cost_usd": round(sum(known_costs), 10) if known_costs else None,
        }
        return {
            "bucket_seconds": size,
            "buckets": [
                iso(_dt.datetime.fromtimestamp(origin + k * size, _dt.timezone.utc))
                for k in range(count)
            ],
            "models": models,
            "totals": totals,
            "approximate_percentiles": approximate,
            "pricing_as_of": self.pricing.as_of,
            "pricing_source": self.pricing.source,
        }

    @staticmethod
    def _model_entry(name: str, count: int) -> dict[str, Any]:
        return {
            "model": name,
            "calls": 0,
            "errors": 0,
            "input_tokens": 0,
            "output_tokens": 0,
            "cost_usd": None,
            "latency_avg": None,
            "latency_p50": None,
            "latency_p95": None,
            "series": {
                "calls": [0] * count,
                "errors": [0] * count,
                "latency_sum": [0.0] * count,
                "latency_n": [0] * count,
                "tokens": [0] * count,
                "cost_usd": [0.0] * count,
            },
        }

    def _stats_exact(self, cutoff: float | None) -> dict[str, Any]:
        """From the events themselves: exact percentiles, buckets down to a second."""
        if cutoff is not None:
            # Stored timestamps are UTC ISO text, so text order is time order (a minute early
            # to keep events whose text form differs; the exact cut is made below).
            since = iso(_dt.datetime.fromtimestamp(cutoff - 60, _dt.timezone.utc))
            rows = self._usage(" AND timestamp >= ?", (since,))
        else:
            rows = self._usage()
        points = []
        for row in rows:
            moment = _epoch(row.timestamp)
            if moment is None or (cutoff is not None and moment < cutoff):
                continue
            points.append((moment, row))
        if not points:
            return {"bucket_seconds": None, "buckets": [], "models": [], "totals": None}
        first, last = min(p[0] for p in points), max(p[0] for p in points)
        size = next((b for b in _BUCKETS if (last - first) / b <= 48), _BUCKETS[-1])
        origin = math.floor(first / size) * size
        count = int((last - origin) // size) + 1
        by_model: dict[str, dict[str, Any]] = {}
        latencies: dict[str, list[float]] = {}
        for moment, row in points:
            name = str(row.model) if row.model else "(unknown model)"
            m = by_model.get(name)
            if m is None:
                m = by_model[name] = self._model_entry(name, count)
                latencies[name] = []
            i = int((moment - origin) // size)
            series = m["series"]
            m["calls"] += 1
            series["calls"][i] += 1
            if is_truthy(row.is_error):
                m["errors"] += 1
                series["errors"][i] += 1
            latency = as_number(row.latency)
            if latency is not None:
                latencies[name].append(latency)
                series["latency_sum"][i] += latency
                series["latency_n"][i] += 1
            tokens_in, tokens_out = (
                as_count(row.input_tokens) or 0,
                as_count(row.output_tokens) or 0,
            )
            m["input_tokens"] += tokens_in
            m["output_tokens"] += tokens_out
            series["tokens"][i] += tokens_in + tokens_out
            cost = self._usage_cost(row)
            if cost is not None:
                m["cost_usd"] = (m["cost_usd"] or 0.0) + cost
                series["cost_usd"][i] += cost
        for name, m in by_model.items():
            values = latencies[name]
            m["latency_avg"] = sum(values) / len(values) if values else None
            m["latency_p50"] = _percentile(values, 0.5)
            m["latency_p95"] = _percentile(values, 0.95)
        return self._finish(by_model, size, origin, count, approximate=False)

    def _stats_rollup(self, conn: sqlite3.Connection, minute: int | None) -> dict[str, Any]:
        """From the per-minute roll-up kept on ingest: buckets of a minute or more."""
        low = minute if minute is not None else -(2**62)
        first, last = conn.execute(
            "SELECT MIN(minute), MAX(minute) FROM usage_minutes WHERE minute >= ?", (low,)
        ).fetchone()
        size = next((b for b in _BUCKETS if b >= 60 and (last - first) / b <= 48), _BUCKETS[-1])
        origin = (first // size) * size
        count = int((last - origin) // size) + 1
        by_model: dict[str, dict[str, Any]] = {}
        lat_total: dict[str, list[float]] = {}
        sums = ", ".join(f"SUM({c})" for c in _ROLLUP_SUMS)
        query = (
            f"SELECT (minute - ?) / ?, model, provider, {sums} FROM usage_minutes "
            "WHERE minute >= ? GROUP BY 1, 2, 3"
        )
        for row in conn.execute(query, (origin, size, low)):
            i, model, provider = int(row[0]), row[1], row[2]
            (calls, errors, t_in, t_out, p_calls, p_in, p_out, p_read, p_write) = row[3:12]
            explicit_calls, explicit_cost, lat_sum, lat_n = row[12:16]
            name = model or "(unknown model)"
            m = by_model.get(name)
            if m is None:
                m = by_model[name] = self._model_entry(name, count)
                lat_total[name] = [0.0, 0.0]
            series = m["series"]
            m["calls"] += calls
            series["calls"][i] += calls
            m["errors"] += errors
            series["errors"][i] += errors
            m["input_tokens"] += t_in
            m["output_tokens"] += t_out
            series["tokens"][i] += t_in + t_out
            series["latency_sum"][i] += lat_sum
            series["latency_n"][i] += lat_n
            lat_total[name][0] += lat_sum
            lat_total[name][1] += lat_n
            cost = explicit_cost if explicit_calls else None
            if p_calls:
                estimate = self.pricing.estimate(
                    model or None,
                    p_in,
                    p_out,
                    p_read,
                    cache_write_tokens=p_write,
                    provider=provider or None,
                )
                if estimate is not None:
                    cost = (cost or 0.0) + estimate["total_cost_usd"]
            if cost is not None:
                m["cost_usd"] = (m["cost_usd"] or 0.0) + cost
                series["cost_usd"][i] += cost
        hist: dict[str, list[tuple[int, int]]] = {}
        for model, bin_, n in conn.execute(
            "SELECT model, bin, SUM(n) FROM usage_latency WHERE hour >= ? GROUP BY 1, 2 "
            "ORDER BY 1, 2",
            ((low // 3600) * 3600 if minute is not None else low,),
        ):
            hist.setdefault(model or "(unknown model)", []).append((int(bin_), int(n)))
        for name, m in by_model.items():
            total, n = lat_total[name]
            m["latency_avg"] = total / n if n else None
            bins = hist.get(name, [])
            m["latency_p50"] = _hist_percentile(bins, 0.5)
            m["latency_p95"] = _hist_percentile(bins, 0.95)
        return self._finish(by_model, size, origin, count, approximate=True)


def _hist_percentile(bins: list[tuple[int, int]], q: float) -> float | None:
    """The q-quantile of a latency histogram (bins in order), as its bin's value (±5%)."""
    total = sum(n for _, n in bins)
    if not total:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for index, n in bins:
        seen += n
        if seen >= rank:
            return latency_bin_value(index)
    return latency_bin_value(bins[-1][0])


def _int_arg(query: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    try:
        value = int(query.get(name, default))
    except ValueError:
        raise BadRequest(f"{name} must be a whole number") from None
    return max(low, min(high, value))


_MAX_HOURS = 1_000_000.0


def answer(reader: Reader, path: str, query: dict[str, str], *, remote: bool = False) -> Any:
    """The JSON value for a GET of `path` under `/api/`; raises BadRequest (404 for no such page)."""
    if path == "/api/traces":
        search = query.get("search", "").strip()
        limit = _int_arg(query, "limit", 100, 1, 1000)
        return reader.traces(search, limit, query.get("cursor") or None)
    if path.startswith("/api/traces/"):
        trace_id = unquote(path[len("/api/traces/") :])
        trace = reader.trace(trace_id)
        if trace is None:
            raise BadRequest(f"no trace {trace_id!r}", status=404)
        return trace
    if path == "/api/stats":
        raw = query.get("hours")
        hours = as_number(raw) if raw else None
        if raw and hours is None:
            raise BadRequest(f"hours={raw!r}: give a number of hours, like 24")
        # 0, negative or longer than any store has existed (a million hours): all time.
        return reader.stats(hours if hours and 0 < hours <= _MAX_HOURS else None)
    if path == "/api/events":
        limit = _int_arg(query, "limit", 100, 1, 1000)
        return reader.events(limit, query.get("event"))
    if path == "/api/info":
        info = reader.info()
        info["remote"] = remote
        return info
    raise BadRequest(f"no page at {path}", status=404)
