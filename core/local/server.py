"""`posthog-llm serve`: a PostHog-compatible capture endpoint and the trace viewer, in one process.

Point posthog-python, posthog-js, `posthog_llm.Client` or curl at it and the events land in the
local SQLite store, where the viewer (`/`), the `posthog-llm` command line and notebooks read them.

>>> from posthog_llm.local.server import start_server
>>> server = start_server(".posthog-llm/events.db")                     # doctest: +SKIP
>>> client = posthog_llm.Client(api_key="phc_local", host=server.url)   # doctest: +SKIP
>>> server.url                                                          # doctest: +SKIP
'http://127.0.0.1:53127'
>>> server.close()                                                      # doctest: +SKIP

Capture: `POST /batch/`, `/capture/`, `/e/`, `/i/v0/e/`, `/i/v0/ai/batch/` with JSON, gzip
(`Content-Encoding: gzip`, gzip magic bytes or `?compression=gzip-js`) or posthog-js's form body
`data=<base64 JSON>`. Viewer API: `/api/traces?search=`, `/api/traces/<id>`, `/api/stats`,
`/api/events`, `/api/info`. Standard library only (`http.server`).
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import hmac
import ipaddress
import json
import math
import os
import signal
import socket
import socketserver
import sqlite3
import sys
import threading
import time
import uuid as _uuid
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any, NamedTuple
from urllib.parse import parse_qs, unquote, urlsplit

from .._events import EMBEDDING, GENERATION
from .._store import EventStore, TraceNode, default_db_path
from .._version import __version__
from ..destinations.sqlite import connect, event_row, insert_events
from .pricing import PricingSource, PricingTable, load_pricing

__all__ = [
    "start_server",
    "serve",
    "ServerHandle",
    "ServeError",
    "BadRequest",
    "decode_body",
    "normalize_event",
    "CAPTURE_PATHS",
    "DEFAULT_PORT",
    "DEFAULT_MAX_BODY_BYTES",
]

DEFAULT_PORT = 8010
DEFAULT_MAX_BODY_BYTES = 20 * 1024 * 1024
# The paths PostHog's SDKs post events to, without their trailing slash.
CAPTURE_PATHS = frozenset({"/batch", "/capture", "/e", "/track", "/i/v0/e", "/i/v0/ai/batch"})
# posthog-js asks for feature flags and its remote config on load; empty answers keep it quiet.
FLAGS_PATHS = frozenset({"/decide", "/flags"})


def _is_sdk_path(path: str) -> bool:
    return path in CAPTURE_PATHS or path in FLAGS_PATHS or path.startswith("/array/")


VIEWER_PAGES = frozenset({"/", "/traces", "/dashboard", "/events"})
_STATIC_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
# The viewer shows untrusted LLM text: no inline script, no foreign origins, no framing.
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_DRAIN_LIMIT = 64 * 1024 * 1024


class ServeError(Exception):
    """The server cannot start as configured (printed as one line by `posthog-llm serve`)."""


class BadRequest(Exception):
    """A request the collector refuses; `status` is the HTTP status (400, 401, 413 …)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


# -- request bodies ----------------------------------------------------------------------------


def _inflate(raw: bytes, limit: int, wbits: int) -> bytes:
    """Decompress gzip/zlib members without ever holding more than `limit` bytes (zip bombs)."""
    out = bytearray()
    data = raw
    while data:
        inflater = zlib.decompressobj(wbits)
        try:
            out += inflater.decompress(data, limit + 1 - len(out))
        except zlib.error as exc:
            raise BadRequest(f"body is not valid compressed data: {exc}") from None
        if len(out) > limit or inflater.unconsumed_tail:
            raise BadRequest(f"decompressed body is larger than the {limit} byte limit", status=413)
        if not inflater.eof:
            raise BadRequest("compressed body is truncated")
        data = inflater.unused_data.lstrip(b"\0")
    return bytes(out)


def _loads(text: str | bytes, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadRequest(
            f"{what} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except (RecursionError, ValueError) as exc:
        raise BadRequest(f"{what} is not valid JSON: {exc}") from None


def _b64decode(text: str) -> bytes | None:
    # posthog-js encodes with the standard alphabet; a form body may turn '+' into ' '.
    compact = "".join(text.replace(" ", "+").split())
    compact += "=" * (-len(compact) % 4)
    for altchars in (None, b"-_"):
        try:
            return base64.b64decode(compact, altchars=altchars, validate=True)
        except (binascii.Error, ValueError):
            continue
    return None


def decode_body(
    raw: bytes,
    *,
    content_type: str = "",
    content_encoding: str = "",
    query: dict[str, str] | None = None,
    limit: int = DEFAULT_MAX_BODY_BYTES,
) -> Any:
    """The JSON value of a capture request body, however an SDK packed it.

    Handles plain JSON, gzip (header, magic bytes or `?compression=gzip-js`), deflate, the
    form body `data=<base64 JSON>` and bare base64 JSON (`?compression=base64`).

    >>> decode_body(b'{"event": "e"}')
    {'event': 'e'}
    >>> decode_body(b"data=eyJldmVudCI6ICJlIn0%3D", content_type="application/x-www-form-urlencoded")
    {'event': 'e'}
    """
    query = query or {}
    compression = query.get("compression", "").lower()
    encoding = content_encoding.lower().strip()
    if (
        encoding in ("gzip", "x-gzip")
        or compression in ("gzip", "gzip-js")
        or raw[:2] == b"\x1f\x8b"
    ):
        raw = _inflate(raw, limit, 16 + zlib.MAX_WBITS)
    elif encoding == "deflate":
        raw = _inflate(raw, limit, zlib.MAX_WBITS if raw[:1] == b"\x78" else -zlib.MAX_WBITS)
    elif encoding not in ("", "identity"):
        raise BadRequest(f"unsupported Content-Encoding {content_encoding!r} (use gzip)")
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise BadRequest("body is neither UTF-8 JSON nor gzip") from None
    # curl -d sends JSON as application/x-www-form-urlencoded unless told otherwise.
    is_form = content_type.lower().startswith("application/x-www-form-urlencoded")
    if text.startswith("data=") or (is_form and text[:1] not in ("{", "[")):
        form = parse_qs(text, keep_blank_values=True)
        if "data" not in form:
            raise BadRequest("form body has no data= field (posthog-js sends data=<base64 JSON>)")
        text = form["data"][0].strip()
    if not text:
        raise BadRequest('empty body: send a JSON event, a {"batch": [...]} object or a list')
    if text[0] not in "{[":
        # posthog-js `compression=base64` and older SDKs send base64-encoded JSON.
        decoded = _b64decode(text)
        if decoded is not None and decoded[:2] == b"\x1f\x8b":
            decoded = _inflate(decoded, limit, 16 + zlib.MAX_WBITS)
        if decoded is not None and decoded.lstrip()[:1] in (b"{", b"["):
            return _loads(decoded, "base64-decoded body")
    return _loads(text, "body")


# -- events ------------------------------------------------------------------------------------


def _iso(moment: _dt.datetime) -> str:
    # The same form our Client writes, so the store's text ORDER BY timestamp stays in time order.
    return moment.astimezone(_dt.timezone.utc).isoformat()


def _parse_timestamp(value: Any) -> _dt.datetime | None:
    """An aware datetime from ISO 8601 text or epoch seconds/milliseconds; None if unreadable."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            return None
        seconds = value / 1000.0 if abs(value) > 1e11 else float(value)
        try:
            return _dt.datetime.fromtimestamp(seconds, _dt.timezone.utc)
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if text[-1:] in "zZ":
        text = text[:-1] + "+00:00"
    # Python 3.10's fromisoformat wants exactly 3 or 6 fraction digits.
    head, dot, rest = text.partition(".")
    if dot:
        digits = len(rest) - len(rest.lstrip("0123456789"))
        fraction, tail = rest[:digits], rest[digits:]
        text = f"{head}.{(fraction + '000000')[:6]}{tail}"
    try:
        moment = _dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=_dt.timezone.utc)


def _key_of(event: dict[str, Any]) -> str | None:
    props = event.get("properties")
    for value in (
        event.get("api_key"),
        event.get("token"),
        props.get("token") if isinstance(props, dict) else None,
    ):
        if isinstance(value, str) and value:
            return value
    return None


def normalize_event(raw: Any, *, now: _dt.datetime | None = None) -> dict[str, Any]:
    """`{event, distinct_id, properties, timestamp, uuid}` from one event as an SDK sends it.

    `distinct_id` may sit at the top level or in `properties` (the docs' curl example);
    a missing uuid is generated and a missing timestamp is the time of receipt (minus
    posthog-js's `offset` in milliseconds). Raises BadRequest for an unusable event.

    >>> e = normalize_event({"event": "x", "properties": {"distinct_id": "u1"},
    ...                      "timestamp": "2025-01-30T12:00:00Z"})
    >>> e["distinct_id"], e["timestamp"]
    ('u1', '2025-01-30T12:00:00+00:00')
    """
    if not isinstance(raw, dict):
        raise BadRequest(f"each event must be a JSON object, got {type(raw).__name__}")
    name = raw.get("event")
    if not isinstance(name, str) or not name.strip():
        raise BadRequest("an event has no name: 'event' must be a non-empty string")
    props = raw.get("properties")
    if props is None:
        props = {}
    if not isinstance(props, dict):
        raise BadRequest(f"{name}: 'properties' must be a JSON object")
    props = dict(props)
    distinct_id = None
    for value in (
        raw.get("distinct_id"),
        raw.get("$distinct_id"),
        props.get("distinct_id"),
        props.get("$distinct_id"),
    ):
        if (
            isinstance(value, (str, int, float))
            and not isinstance(value, bool)
            and str(value).strip()
        ):
            distinct_id = str(value)
            break
    if distinct_id is None:
        raise BadRequest(f"{name}: missing distinct_id (at the top level or in properties)")
    for key in ("$set", "$set_once"):  # posthog-python's identify() puts them at the top level
        if isinstance(raw.get(key), dict) and key not in props:
            props[key] = raw[key]
    event_uuid = raw.get("uuid")
    if event_uuid is None or event_uuid == "":
        event_uuid = str(_uuid.uuid4())
    elif not isinstance(event_uuid, str) or len(event_uuid) > 200:
        raise BadRequest(f"{name}: 'uuid' must be a string")
    now = now or _dt.datetime.now(_dt.timezone.utc)
    if raw.get("timestamp") not in (None, ""):
        moment = _parse_timestamp(raw["timestamp"])
        if moment is None:
            raise BadRequest(f"{name}: unreadable timestamp {raw['timestamp']!r} (use ISO 8601)")
    else:
        offset = raw.get("offset")
        moment = now
        if isinstance(offset, (int, float)) and not isinstance(offset, bool) and offset > 0:
            moment = now - _dt.timedelta(milliseconds=min(float(offset), 1e10))
    return {
        "event": name,
        "distinct_id": distinct_id,
        "properties": props,
        "timestamp": _iso(moment),
        "uuid": event_uuid,
    }


def split_payload(payload: Any) -> tuple[list[Any], str | None]:
    """The events of a body (single event, `{"batch": [...]}` or a bare list) and its api key."""
    if isinstance(payload, list):
        return payload, None
    if isinstance(payload, dict):
        key = payload.get("api_key") or payload.get("token")
        key = key if isinstance(key, str) else None
        if "batch" in payload:
            if not isinstance(payload["batch"], list):
                raise BadRequest("'batch' must be a list of events")
            return payload["batch"], key
        if "event" in payload:
            return [payload], key
    raise BadRequest(
        'expected an event {"event", "properties", ...}, a batch {"batch": [...]} or a list of events'
    )


# -- reading the store for the viewer ------------------------------------------------------------


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
    latency: Any
    is_error: Any


def _prop(name: str) -> str:
    return f"json_extract(properties, '$.\"{name}\"')"


_USAGE_SQL = (
    "SELECT trace_id, event, timestamp, "
    + ", ".join(
        _prop(p)
        for p in (
            "$ai_model",
            "$ai_provider",
            "$ai_input_tokens",
            "$ai_output_tokens",
            "$ai_cache_read_input_tokens",
            "$ai_cache_creation_input_tokens",
            "$ai_total_cost_usd",
            "$ai_latency",
            "$ai_is_error",
        )
    )
    + f" FROM events WHERE event IN ('{GENERATION}', '{EMBEDDING}')"
)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def _count(value: Any) -> int | None:
    number = _number(value)
    return int(number) if number is not None and number >= 0 else None


def _truthy(value: Any) -> bool:
    return value is True or value == 1 or (isinstance(value, str) and value.lower() == "true")


def _epoch(timestamp: Any) -> float | None:
    moment = _parse_timestamp(timestamp)
    return moment.timestamp() if moment else None


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


_BUCKETS = (1, 5, 10, 30, 60, 300, 900, 3600, 3 * 3600, 6 * 3600, 86400, 7 * 86400, 30 * 86400)


class _Reader:
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

    def cost(
        self,
        model: Any,
        provider: Any,
        input_tokens: Any,
        output_tokens: Any,
        cache_read: Any = None,
        cache_write: Any = None,
        explicit_total: Any = None,
    ) -> dict[str, Any] | None:
        """The event's own `$ai_total_cost_usd` when it has one, else the table's estimate."""
        total = _number(explicit_total)
        if total is not None:
            return {"total_cost_usd": total, "source": "event"}
        estimate = self.pricing.estimate(
            model if isinstance(model, str) else None,
            _count(input_tokens),
            _count(output_tokens),
            _count(cache_read),
            cache_write_tokens=_count(cache_write),
            provider=provider if isinstance(provider, str) else None,
        )
        if estimate is not None:
            estimate["source"] = "estimate"
        return estimate

    def _usage_cost(self, row: _Usage) -> float | None:
        cost = self.cost(
            row.model,
            row.provider,
            row.input_tokens,
            row.output_tokens,
            row.cache_read,
            row.cache_write,
            row.total_cost,
        )
        return cost["total_cost_usd"] if cost else None

    def _usage(self, where: str = "", args: tuple[Any, ...] = ()) -> list[_Usage]:
        with self._sql() as conn:
            return [_Usage(*row) for row in conn.execute(_USAGE_SQL + where, args)]

    def info(self) -> dict[str, Any]:
        with EventStore(self.db) as store:
            count = store.count()
        return {
            "version": __version__,
            "db": self.db,
            "events": count,
            "pricing_as_of": self.pricing.as_of,
        }

    def traces(self, search: str | None, limit: int) -> dict[str, Any]:
        with EventStore(self.db) as store:
            rows = store.traces(limit=limit, search=search or None)
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
        return {"traces": items, "search": search or "", "pricing_as_of": self.pricing.as_of}

    def _node(self, node: TraceNode, depth: int, parent: int | None) -> dict[str, Any]:
        event, props = node.event, node.properties
        end = _epoch(event.get("timestamp"))
        latency = _number(props.get("$ai_latency"))
        start = end - latency if end is not None and latency is not None else end
        cost = None
        if event.get("event") in (GENERATION, EMBEDDING):
            cost = self.cost(
                props.get("$ai_model"),
                props.get("$ai_provider"),
                props.get("$ai_input_tokens"),
                props.get("$ai_output_tokens"),
                props.get("$ai_cache_read_input_tokens"),
                props.get("$ai_cache_creation_input_tokens"),
                props.get("$ai_total_cost_usd"),
            )
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
            "is_error": _truthy(props.get("$ai_is_error")),
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
                _count(n["properties"].get("$ai_input_tokens")) or 0 for n in usage
            ),
            "output_tokens": sum(
                _count(n["properties"].get("$ai_output_tokens")) or 0
                for n in usage
                if n["event"] == GENERATION
            ),
            "cost_usd": round(sum(costs), 10) if costs else None,
            "errors": sum(1 for n in nodes if n["is_error"]),
            "models": sorted({str(m) for n in usage if (m := n["properties"].get("$ai_model"))}),
            "nodes": nodes,
            "pricing_as_of": self.pricing.as_of,
        }

    def events(self, limit: int, event: str | None) -> dict[str, Any]:
        with EventStore(self.db) as store:
            rows = store.events(limit=limit, event=event or None, newest_first=True)
        return {"events": rows}

    def stats(self, hours: float | None) -> dict[str, Any]:
        """Calls, latency, tokens and cost per model, overall and per time bucket."""
        rows = self._usage()
        points = []
        cutoff = time.time() - hours * 3600 if hours else None
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
        for moment, row in points:
            name = str(row.model) if row.model else "(unknown model)"
            m = by_model.get(name)
            if m is None:
                m = by_model[name] = {
                    "model": name,
                    "calls": 0,
                    "errors": 0,
                    "latencies": [],
                    "input_tokens": 0,
                    "output_tokens": 0,
                    "cost_usd": None,
                    "series": {
                        "calls": [0] * count,
                        "latency_sum": [0.0] * count,
                        "latency_n": [0] * count,
                        "tokens": [0] * count,
                        "cost_usd": [0.0] * count,
                    },
                }
            i = int((moment - origin) // size)
            series = m["series"]
            m["calls"] += 1
            series["calls"][i] += 1
            m["errors"] += 1 if _truthy(row.is_error) else 0
            latency = _number(row.latency)
            if latency is not None:
                m["latencies"].append(latency)
                series["latency_sum"][i] += latency
                series["latency_n"][i] += 1
            tokens_in, tokens_out = _count(row.input_tokens) or 0, _count(row.output_tokens) or 0
            m["input_tokens"] += tokens_in
            m["output_tokens"] += tokens_out
            series["tokens"][i] += tokens_in + tokens_out
            cost = self._usage_cost(row)
            if cost is not None:
                m["cost_usd"] = (m["cost_usd"] or 0.0) + cost
                series["cost_usd"][i] += cost
        models = sorted(by_model.values(), key=lambda m: -m["calls"])
        for m in models:
            latencies = m.pop("latencies")
            m["latency_avg"] = sum(latencies) / len(latencies) if latencies else None
            m["latency_p50"] = _percentile(latencies, 0.5)
            m["latency_p95"] = _percentile(latencies, 0.95)
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
                _iso(_dt.datetime.fromtimestamp(origin + k * size, _dt.timezone.utc))
                for k in range(count)
            ],
            "models": models,
            "totals": totals,
            "pricing_as_of": self.pricing.as_of,
        }


# -- the HTTP server -------------------------------------------------------------------------------


def _is_loopback(host: str) -> bool:
    name = host.strip().strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _load_static() -> dict[str, tuple[bytes, str]]:
    folder = resources.files(__package__).joinpath("viewer")
    files: dict[str, tuple[bytes, str]] = {}
    for entry in folder.iterdir():
        kind = _STATIC_TYPES.get(os.path.splitext(entry.name)[1])
        if kind and entry.is_file():
            files[entry.name] = (entry.read_bytes(), kind)
    return files


class _App:
    """What the request handlers share: the store, the rules and the viewer files."""

    def __init__(
        self,
        db: str,
        *,
        api_key: str | None,
        host: str,
        max_body_bytes: int,
        pricing: PricingTable,
        log: Callable[[str], None] | None,
    ) -> None:
        self.db = db
        self.api_key = api_key
        self.remote = not _is_loopback(host)
        self.bound_host = host.strip("[]").lower()
        self.max_body_bytes = max_body_bytes
        self.reader = _Reader(db, pricing)
        self.static = _load_static()
        self.log = log
        self._conn = connect(db)
        self._lock = threading.Lock()
        self.stored = 0

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def key_ok(self, key: str | None) -> bool:
        if self.api_key is None:
            return True
        return isinstance(key, str) and hmac.compare_digest(key.encode(), self.api_key.encode())

    def ingest(self, raw: bytes, *, headers: Any, query: dict[str, str]) -> int:
        """Decode, check and store one capture request; returns the number of events."""
        payload = decode_body(
            raw,
            content_type=headers.get("Content-Type") or "",
            content_encoding=headers.get("Content-Encoding") or "",
            query=query,
            limit=self.max_body_bytes,
        )
        items, batch_key = split_payload(payload)
        request_key = batch_key or query.get("token") or query.get("api_key")
        auth = headers.get("Authorization") or ""
        if not request_key and auth.lower().startswith("bearer "):
            request_key = auth[7:].strip()
        now = _dt.datetime.now(_dt.timezone.utc)
        events = []
        for item in items:
            # Authenticate before validating: a stranger learns nothing about the rules.
            key = (_key_of(item) if isinstance(item, dict) else None) or request_key
            if not self.key_ok(key):
                raise BadRequest(
                    "invalid or missing project api key for this collector", status=401
                )
            events.append(normalize_event(item, now=now))
        if events:
            rows = [
                event_row(json.dumps(e, ensure_ascii=False, separators=(",", ":")).encode())
                for e in events
            ]
            with self._lock:
                insert_events(self._conn, rows)
                self.stored += len(rows)
        return len(events)


def _flags_answer() -> dict[str, Any]:
    return {
        "featureFlags": {},
        "featureFlagPayloads": {},
        "flags": {},
        "errorsWhileComputingFlags": False,
        "sessionRecording": False,
        "supportedCompression": ["gzip", "gzip-js"],
        "autocapture_opt_out": True,
        "capturePerformance": False,
        "surveys": False,
        "heatmaps": False,
        "siteApps": [],
    }


def _int_arg(query: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    try:
        value = int(query.get(name, default))
    except ValueError:
        raise BadRequest(f"{name} must be a whole number") from None
    return max(low, min(high, value))


class _Handler(BaseHTTPRequestHandler):
    server_version = f"posthog-llm/{__version__}"
    protocol_version = "HTTP/1.1"
    timeout = 120  # idle keep-alive connections end instead of holding a thread forever

    @property
    def app(self) -> _App:
        return self.server.app  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # http.server's access log is noise; capture requests are logged in _capture

    # -- plumbing ------------------------------------------------------------------------------

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, value: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
        extra = {"Cache-Control": "no-store"}
        extra.update(headers or {})
        self._send(status, body.encode("utf-8"), "application/json; charset=utf-8", extra)

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        # PostHog's error shape: posthog-python shows `detail` in its APIError.
        self._json(status, {"type": "validation_error", "detail": message}, headers)

    def _cors(self) -> dict[str, str]:
        return {
            "Access-Control-Allow-Origin": self.headers.get("Origin") or "*",
            "Access-Control-Allow-Credentials": "true",
            "Vary": "Origin",
        }

    def _route(self) -> tuple[str, dict[str, str]]:
        parts = urlsplit(self.path)
        path = "/" + parts.path.strip("/")
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        return path, query

    def _read_body(self) -> bytes | None:
        """The request body, or None after answering 411/400/413 for it."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            self.close_connection = True
            self._error(411, "send the body with a Content-Length (chunked bodies are not read)")
            return None
        try:
            length = int(self.headers.get("Content-Length") or 0)
            if length < 0:
                raise ValueError
        except ValueError:
            self.close_connection = True
            self._error(400, "invalid Content-Length")
            return None
        limit = self.app.max_body_bytes
        if length > limit:
            self._drain(length)
            self._error(413, f"body of {length} bytes is larger than the {limit} byte limit")
            return None
        return self.rfile.read(length)

    def _drain(self, length: int) -> None:
        # Reading the refused body lets the client see the 413 instead of a connection reset.
        if length > _DRAIN_LIMIT:
            self.close_connection = True
            return
        remaining = length
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 1 << 16))
            if not chunk:
                break
            remaining -= len(chunk)

    def _handle(self, method: str) -> None:
        try:
            path, query = self._route()
            if _is_sdk_path(path):
                self._capture_side(method, path, query)
            elif method in ("GET", "HEAD"):
                self._viewer_side(path, query)
            else:
                self._read_body()
                self._error(404, f"no {method} endpoint at {path}")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:  # the server keeps running whatever one request does
            self.close_connection = True
            if self.app.log:
                self.app.log(f"posthog-llm serve: internal error on {self.path}: {exc!r}")
            try:
                self._error(500, f"internal error: {type(exc).__name__}: {exc}")
            except OSError:
                pass

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def do_GET(self) -> None:  # noqa: N802
        self._handle("GET")

    def do_HEAD(self) -> None:  # noqa: N802
        self._handle("HEAD")

    def do_OPTIONS(self) -> None:  # noqa: N802
        path, _ = self._route()
        if not _is_sdk_path(path):
            self._error(404, f"no endpoint at {path}")
            return
        headers = self._cors()
        headers["Access-Control-Allow-Methods"] = "POST, GET, OPTIONS"
        headers["Access-Control-Allow-Headers"] = (
            self.headers.get("Access-Control-Request-Headers") or "Content-Type"
        )
        headers["Access-Control-Max-Age"] = "86400"
        self._send(204, b"", "text/plain", headers)

    # -- capture -------------------------------------------------------------------------------

    def _capture_side(self, method: str, path: str, query: dict[str, str]) -> None:
        if method == "POST":
            raw = self._read_body()
            if raw is None:
                return
        elif "data" in query:  # posthog-js's GET fallback: ?data=<base64 JSON>
            raw = query["data"].encode("utf-8")
        else:
            raw = b""
        if path in FLAGS_PATHS:
            self._json(200, _flags_answer(), self._cors())
            return
        if path.startswith("/array/"):
            self._remote_config(path)
            return
        if method not in ("GET", "POST"):
            self._error(405, f"{path} accepts POST")
            return
        try:
            count = self.app.ingest(raw, headers=self.headers, query=query)
        except BadRequest as exc:
            if self.app.log:
                self.app.log(f"{method} {path} -> {exc.status}: {exc}")
            self._error(exc.status, str(exc), self._cors())
            return
        except sqlite3.OperationalError as exc:
            self._error(503, f"the local store is busy: {exc}", {"Retry-After": "1"})
            return
        if self.app.log:
            self.app.log(f"{method} {path} -> 200: stored {count} event{'s' * (count != 1)}")
        self._json(200, {"status": 1}, self._cors())

    def _remote_config(self, path: str) -> None:
        """posthog-js's remote config: `/array/<token>/config` (JSON) or `config.js` (script)."""
        parts = path.split("/")
        if len(parts) != 4 or parts[3] not in ("config", "config.js"):
            self._error(404, f"no file {path}", self._cors())
            return
        if parts[3] == "config":
            self._json(200, _flags_answer(), self._cors())
            return
        # JSON is valid JavaScript; escaping "<" keeps a token from closing a script element.
        token = json.dumps(unquote(parts[2])).replace("<", "\\u003c")
        config = json.dumps({"config": _flags_answer(), "siteApps": []})
        script = (
            "(function(){var c=window._POSTHOG_REMOTE_CONFIG=window._POSTHOG_REMOTE_CONFIG||{};"
            f"c[{token}]={config};}})();\n"
        )
        headers = self._cors()
        headers["Cache-Control"] = "no-store"
        self._send(200, script.encode("utf-8"), "text/javascript; charset=utf-8", headers)

    # -- viewer --------------------------------------------------------------------------------

    def _viewer_allowed(self) -> bool:
        app = self.app
        if app.remote:
            # Off this machine the stored prompts are behind the project api key (HTTP Basic).
            auth = self.headers.get("Authorization") or ""
            secret = None
            if auth.lower().startswith("basic "):
                try:
                    decoded = base64.b64decode(auth[6:].strip()).decode("utf-8")
                    secret = decoded.split(":", 1)[-1]
                except (binascii.Error, UnicodeDecodeError, ValueError):
                    secret = None
            elif auth.lower().startswith("bearer "):
                secret = auth[7:].strip()
            if not app.key_ok(secret):
                self._error(
                    401,
                    "the viewer needs the project api key as the password",
                    {"WWW-Authenticate": 'Basic realm="posthog-llm", charset="UTF-8"'},
                )
                return False
            return True
        # On loopback, refuse foreign Host names: a DNS-rebinding page must not read the store.
        host = (self.headers.get("Host") or "").strip().lower()
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if host.startswith("[") and "]" in host:
            name = host[1 : host.index("]")]
        if name and not _is_loopback(name) and name != app.bound_host:
            self._error(403, f"unexpected Host {host!r}; open the viewer at a localhost address")
            return False
        return True

    def _viewer_side(self, path: str, query: dict[str, str]) -> None:
        if path == "/favicon.ico":
            self._send(204, b"", "image/x-icon")
            return
        if not self._viewer_allowed():
            return
        app = self.app
        if path in VIEWER_PAGES or path.startswith("/trace/"):
            body, kind = app.static["index.html"]
            self._send(
                200,
                body,
                kind,
                {
                    "Content-Security-Policy": _CSP,
                    "Cache-Control": "no-cache",
                    "Referrer-Policy": "no-referrer",
                    "X-Frame-Options": "DENY",
                },
            )
            return
        if path.startswith("/static/"):
            entry = app.static.get(path[len("/static/") :])
            if entry is None:
                self._error(404, f"no file {path}")
                return
            self._send(200, entry[0], entry[1], {"Cache-Control": "no-cache"})
            return
        try:
            self._api(path, query)
        except BadRequest as exc:
            self._error(exc.status, str(exc))

    def _api(self, path: str, query: dict[str, str]) -> None:
        reader = self.app.reader
        if path == "/api/traces":
            search = query.get("search", "").strip()
            limit = _int_arg(query, "limit", 100, 1, 1000)
            self._json(200, reader.traces(search, limit))
        elif path.startswith("/api/traces/"):
            trace_id = unquote(path[len("/api/traces/") :])
            trace = reader.trace(trace_id)
            if trace is None:
                self._error(404, f"no trace {trace_id!r}")
            else:
                self._json(200, trace)
        elif path == "/api/stats":
            hours = _number(query.get("hours")) if query.get("hours") else None
            self._json(200, reader.stats(hours if hours and hours > 0 else None))
        elif path == "/api/events":
            limit = _int_arg(query, "limit", 100, 1, 1000)
            self._json(200, reader.events(limit, query.get("event")))
        elif path == "/api/info":
            info = reader.info()
            info["remote"] = self.app.remote
            self._json(200, info)
        else:
            self._error(404, f"no page at {path}")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    app: _App

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves a fully qualified name (a DNS query); not needed here.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)


class _Server6(_Server):
    address_family = socket.AF_INET6


class ServerHandle:
    """A running collector and viewer. `url` is the base URL for SDKs and the browser."""

    def __init__(self, server: _Server, app: _App, thread: threading.Thread, host: str) -> None:
        self._server = server
        self._app = app
        self._thread = thread
        self.host = host
        self.port: int = server.server_address[1]
        shown = "127.0.0.1" if host in ("", "0.0.0.0") else host
        shown = f"[{shown}]" if ":" in shown else shown
        self.url = f"http://{shown}:{self.port}"
        self.db = app.db
        self.api_key = app.api_key

    def __repr__(self) -> str:
        return f"<posthog-llm server {self.url} store={self.db}>"

    @property
    def stored(self) -> int:
        """Events stored by this server since it started."""
        return self._app.stored

    def wait(self) -> None:
        """Block until the server stops (Ctrl+C stops `posthog-llm serve`)."""
        while self._thread.is_alive():
            self._thread.join(0.5)

    def close(self) -> None:
        """Stop listening and close the store. Safe to call twice."""
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
        self._app.close()

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _env_key() -> str | None:
    for name in ("POSTHOG_API_KEY", "POSTHOG_PROJECT_API_KEY"):
        value = (os.environ.get(name) or "").strip()
        if value:
            return value
    return None


def start_server(
    db: str | os.PathLike[str] | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    api_key: str | None = None,
    allow_remote: bool = False,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    pricing: PricingSource | None = None,
    log: Callable[[str], None] | None = None,
) -> ServerHandle:
    """Start the collector and viewer on a background thread; `port=0` picks a free port.

    Loopback only unless `allow_remote=True`, which also requires a project api key
    (`api_key` or `POSTHOG_API_KEY`); only events carrying that key are then accepted, and the
    viewer asks for it as an HTTP Basic password. An `api_key` given on loopback is enforced too.
    Raises ServeError when it cannot start.
    """
    path = os.fspath(db) if db else default_db_path()
    host = (host or "").strip()
    if not isinstance(max_body_bytes, int) or max_body_bytes <= 0:
        raise ServeError(
            f"max_body_bytes must be a positive number of bytes, got {max_body_bytes!r}"
        )
    loopback = _is_loopback(host)
    if not loopback and not allow_remote:
        raise ServeError(
            f"refusing to listen on {host or 'all interfaces'!r}: it is not a loopback address. "
            "Add --allow-remote to accept events from other machines (then only the project "
            "api key from --api-key or POSTHOG_API_KEY is accepted)"
        )
    key = api_key.strip() if isinstance(api_key, str) and api_key.strip() else None
    if not loopback:
        key = key or _env_key()
        if key is None:
            raise ServeError(
                "--allow-remote needs the project api key to accept: pass --api-key or set "
                "POSTHOG_API_KEY"
            )
    try:
        table = load_pricing(pricing)
    except ValueError as exc:
        raise ServeError(str(exc)) from None
    try:
        app = _App(
            path, api_key=key, host=host, max_body_bytes=max_body_bytes, pricing=table, log=log
        )
    except (OSError, sqlite3.Error) as exc:
        raise ServeError(f"cannot open the local store {path}: {exc}") from None
    server_class = _Server6 if ":" in host else _Server
    try:
        server = server_class((host.strip("[]"), int(port)), _Handler)
    except (OSError, OverflowError) as exc:
        app.close()
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ServeError(f"cannot listen on {host}:{port}: {reason}") from None
    server.app = app
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        name="posthog-llm-serve",
        daemon=True,
    )
    thread.start()
    return ServerHandle(server, app, thread, host)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _stop_on_sigterm() -> Any:
    """`docker stop` and service managers send SIGTERM: stop as cleanly as on Ctrl+C."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _raise_interrupt)


def _mask(key: str) -> str:
    return key[:4] + "…" if len(key) > 8 else "…"


def serve(args: Any) -> int:
    """`posthog-llm serve`: run until Ctrl+C. `args` has host, port, db, allow_remote, api_key."""
    db = getattr(args, "db", None) or default_db_path()
    max_mb = getattr(args, "max_body_mb", None)
    quiet = bool(getattr(args, "quiet", False))

    def log(line: str) -> None:
        print(line, flush=True)

    try:
        handle = start_server(
            db,
            host=getattr(args, "host", None) or "127.0.0.1",
            port=DEFAULT_PORT if getattr(args, "port", None) is None else args.port,
            api_key=getattr(args, "api_key", None),
            allow_remote=bool(getattr(args, "allow_remote", False)),
            max_body_bytes=(
                int(max_mb * 1024 * 1024) if max_mb is not None else DEFAULT_MAX_BODY_BYTES
            ),
            pricing=getattr(args, "pricing", None),
            log=None if quiet else log,
        )
    except ServeError as exc:
        print(f"posthog-llm: error: {exc}", file=sys.stderr)
        return 1
    print(f"posthog-llm {__version__}: PostHog-compatible collector on {handle.url} (store: {db})")
    print(f"  viewer:        {handle.url}/")
    print(f"  send events:   POSTHOG_HOST={handle.url}  (posthog-python, posthog-js, posthog_llm)")
    if handle.api_key:
        print(f"  accepting only the project api key {_mask(handle.api_key)}")
    print("Press Ctrl+C to stop.", flush=True)
    previous = _stop_on_sigterm()
    try:
        handle.wait()
    except KeyboardInterrupt:
        pass
    finally:
        handle.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    stored = handle.stored
    print(f"stopped; stored {stored} event{'s' * (stored != 1)} in {db}")
    return 0
