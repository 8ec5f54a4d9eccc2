"""OTLP/HTTP traces for `posthog-llm serve`: `/v1/traces` and PostHog's `/i/v0/ai/otel`.

An `OTLPSpanExporter` (protobuf or JSON) or posthog-python's OpenTelemetry exporter pointed at
the collector fills the local store: the request is decoded with OpenTelemetry's own protobuf
classes (`opentelemetry-proto`), its spans go through the same conversion as
`posthog_llm.integrations.otel.PostHogSpanProcessor`, and the resulting `$ai_*` events are stored
like any capture request (same api key rule). An exporter sends spans as they end, so a trace's
root often comes in a later request than its steps: the spans of an AI trace are held until its
root comes, or until `hold_seconds` pass without a new span of it (`_otlp_hold`), and the trace
is converted whole. A trace whose root never comes (posthog-python's exporter forwards AI spans
only) gets a stand-in root named after its first top-level span. A root that comes after its
trace was converted keeps the identity the trace had; it becomes the trace's `$ai_trace` unless
a stand-in already is.

Privacy: a span or resource attribute `posthog.privacy_mode=true` stores the trace without
prompts, outputs or error messages; error text is always scrubbed of api keys.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as _dt
import json
import sqlite3
import threading
import zlib
from collections import OrderedDict, defaultdict
from collections.abc import Callable
from typing import Any

from .._emit import report_internal_error
from ._auth import bearer_token
from ._budget import PROTOBUF_WEIGHT, Reservation
from ._ingest import BadRequest, parse_weight
from ._ingest import _inflate as inflate
from ._otlp_hold import HeldTraces

__all__ = ["OTLP_PATHS", "receive_otlp", "decode_otlp", "otlp_events"]

OTLP_PATHS = frozenset({"/v1/traces", "/i/v0/ai/otel"})

_STATUS_ERROR = 2
# OTLP span flags: bit 8 says whether bit 9 (the parent is remote) is known.
_HAS_IS_REMOTE = 0x100
_IS_REMOTE = 0x200
_TOO_DEEP = "OTLP/JSON body is nested too deeply to be a trace export"


def _proto() -> Any:
    try:
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
    except ImportError:
        raise BadRequest(
            "this collector cannot read OTLP: install it with pip install 'posthog-llm[otel]'",
            status=501,
        ) from None
    return trace_service_pb2


def _hex_ids_to_base64(value: Any) -> Any:
    """OTLP/JSON writes trace and span ids as hex; protobuf's JSON parser expects base64."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key in (
                "traceId",
                "spanId",
                "parentSpanId",
                "trace_id",
                "span_id",
                "parent_span_id",
            ):
                if isinstance(item, str) and item:
                    try:
                        item = base64.b64encode(bytes.fromhex(item)).decode("ascii")
                    except ValueError:
                        raise BadRequest(f"{key} {item[:40]!r} is not hex") from None
                out[key] = item
            else:
                out[key] = _hex_ids_to_base64(item)
        return out
    if isinstance(value, list):
        return [_hex_ids_to_base64(item) for item in value]
    return value


def decode_otlp(
    raw: bytes,
    *,
    content_type: str,
    content_encoding: str,
    limit: int,
    reserve: Callable[[int], None] | None = None,
) -> Any:
    """An `ExportTraceServiceRequest` from an OTLP/HTTP body (protobuf or JSON, maybe gzip).

    With `reserve` (the collector's memory budget), each inflated megabyte and the parse's
    estimated memory are reserved first, as for capture bodies: a small compressed body cannot
    make the collector build gigabytes of objects.
    """
    pb = _proto()
    encoding = content_encoding.lower().strip()
    if encoding == "gzip" or raw[:2] == b"\x1f\x8b":
        raw = inflate(raw, limit, 16 + zlib.MAX_WBITS, reserve)
    elif encoding == "deflate":
        wbits = zlib.MAX_WBITS if raw[:1] == b"\x78" else -zlib.MAX_WBITS
        raw = inflate(raw, limit, wbits, reserve)
    elif encoding not in ("", "identity"):
        raise BadRequest(f"unsupported Content-Encoding {content_encoding!r} (use gzip)")
    request = pb.ExportTraceServiceRequest()
    kind = content_type.split(";", 1)[0].strip().lower()
    is_json = kind == "application/json" or (not kind and raw.lstrip()[:1] == b"{")
    if reserve is not None:
        # The parsed request, its records and their events: JSON weighs as on the capture path;
        # protobuf is denser than JSON, so each byte counts for more.
        reserve(parse_weight(raw) if is_json else PROTOBUF_WEIGHT * len(raw))
    if is_json:
        from google.protobuf import json_format

        # Nesting deeper than the interpreter's recursion limit (the JSON parser, the id pass
        # and protobuf's parser all recurse) is the sender's fault: a 400, as on `/batch/`.
        try:
            payload = json.loads(raw)
        except RecursionError:
            raise BadRequest(_TOO_DEEP) from None
        except ValueError as exc:
            raise BadRequest(f"OTLP/JSON body is not valid JSON: {exc}") from None
        if not isinstance(payload, dict):
            raise BadRequest('an OTLP/JSON trace export is a JSON object ({"resourceSpans": ...})')
        try:
            json_format.ParseDict(_hex_ids_to_base64(payload), request, ignore_unknown_fields=True)
        except RecursionError:
            raise BadRequest(_TOO_DEEP) from None
        except json_format.ParseError as exc:
            raise BadRequest(f"not an OTLP/JSON trace export: {exc}") from None
        return request
    if kind not in ("application/x-protobuf", "application/protobuf", ""):
        raise BadRequest(
            f"unsupported Content-Type {content_type!r}: send application/x-protobuf or "
            "application/json",
            status=415,
        )
    from google.protobuf.message import DecodeError

    try:
        request.ParseFromString(raw)
    except DecodeError as exc:
        raise BadRequest(f"not an OTLP protobuf trace export: {exc}") from None
    return request


def _value(any_value: Any) -> Any:
    which = any_value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [_value(v) for v in any_value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in any_value.kvlist_value.values}
    if which == "bytes_value":
        return base64.b64encode(any_value.bytes_value).decode("ascii")
    return getattr(any_value, which)


def _attributes(key_values: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in key_values}


def _conversion() -> Any:
    """The core's span conversion, which the OpenTelemetry span processor uses too."""
    from .. import _span_assemble, _span_convert, _span_records

    return _span_assemble, _span_convert, _span_records


def _records(request: Any) -> list[Any]:
    records_module = _conversion()[2]
    SpanEvent, SpanRecord = records_module.SpanEvent, records_module.SpanRecord

    records = []
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                if len(span.trace_id) != 16 or len(span.span_id) != 8:
                    continue  # invalid ids: nothing could link such a span
                flags = span.flags
                records.append(
                    SpanRecord(
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_id=span.parent_span_id.hex() or None,
                        parent_remote=bool(flags & _HAS_IS_REMOTE and flags & _IS_REMOTE),
                        name=span.name,
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                        attributes=_attributes(span.attributes),
                        events=tuple(
                            SpanEvent(e.name, _attributes(e.attributes), e.time_unix_nano)
                            for e in span.events
                        ),
                        is_error=span.status.code == _STATUS_ERROR,
                        status_message=span.status.message or None,
                        resource=resource,
                    )
                )
    return records


def _iso(ns: int) -> str | None:
    if ns <= 0:
        return None
    return _dt.datetime.fromtimestamp(ns / 1e9, _dt.timezone.utc).isoformat()


def _event(
    name: str, props: dict[str, Any], end_ns: int, user: str | None, trace_id: str
) -> dict[str, Any]:
    if user is None:  # personless, one anonymous id per trace (as the SDK integrations do)
        props["$process_person_profile"] = False
    event: dict[str, Any] = {
        "event": name,
        "distinct_id": user if user is not None else trace_id,
        "properties": props,
    }
    timestamp = _iso(end_ns)
    if timestamp is not None:
        event["timestamp"] = timestamp
    return event


# AI traces seen lately, with the identity their first request carried: exporters send a
# long trace over several requests, and its root (often a plain HTTP span) may come last.
# The last flag: the trace was stored with a stand-in root (its `$ai_trace` is sent).
_recent: OrderedDict[str, tuple[str | None, str | None, bool, bool]] = OrderedDict()
_recent_lock = threading.Lock()
_RECENT_TRACES = 10_000

# Non-AI steps of traces whose root has not come and that hold no AI work yet: a step that
# ended before the AI work inside it (a handler returning a stream) comes in an earlier request
# than that work. Kept apart from the hold, in a small bound of its own, so that ordinary
# traffic never pushes a held AI trace out; taken back when AI work of the trace comes.
_steps: OrderedDict[str, list[Any]] = OrderedDict()
_steps_lock = threading.Lock()
_steps_count = [0]
_MAX_STEPS = 2_000


def _keep_steps(trace_id: str, records: list[Any]) -> None:
    with _steps_lock:
        _steps.setdefault(trace_id, []).extend(records)
        _steps.move_to_end(trace_id)
        _steps_count[0] += len(records)
        while _steps_count[0] > _MAX_STEPS and _steps:
            _steps_count[0] -= len(_steps.popitem(last=False)[1])


def _take_steps(trace_id: str) -> list[Any]:
    with _steps_lock:
        taken = _steps.pop(trace_id, None)
        if taken is None:
            return []
        _steps_count[0] -= len(taken)
        return taken


def _remember(trace_id: str, identity: tuple[str | None, str | None, bool, bool]) -> None:
    with _recent_lock:
        _recent[trace_id] = identity
        _recent.move_to_end(trace_id)
        while len(_recent) > _RECENT_TRACES:
            _recent.popitem(last=False)


def otlp_events(
    request: Any, held: HeldTraces | None = None, authorization: str = ""
) -> list[dict[str, Any]]:
    """PostHog events (`event`, `distinct_id`, `properties`, `timestamp`) for an OTLP export.

    With `held`, the spans of an AI trace whose root is not in the request are held there (with
    the request's `authorization`) instead, and a held trace whose root comes is converted whole.
    Steps of a trace with no AI work yet and no root are kept apart (`_keep_steps`), in case
    its AI work comes in a later request.
    """
    plan_trace = _conversion()[0].plan_trace
    by_trace: dict[str, list[Any]] = defaultdict(list)
    for rec in _records(request):
        by_trace[rec.trace_id].append(rec)
    events: list[dict[str, Any]] = []
    for trace_id, records in by_trace.items():
        if _steps:
            records = _take_steps(trace_id) + records
        rootless = not any(r.parent_id is None for r in records)
        if rootless and plan_trace(records) is None:
            _keep_steps(trace_id, records)  # no AI work (yet): nothing to send, or to hold
            continue
        if held is not None:
            released, pushed = held.merge(
                trace_id,
                records,
                authorization,
                # Held while an AI trace waits for its root: a span with no parent at all (one
                # whose parent is in another service does not end this service's trace).
                lambda rs: not any(r.parent_id is None for r in rs) and plan_trace(rs) is not None,
            )
            for trace, held_records, _ in pushed:
                events.extend(trace_events(trace, held_records, rootless=True))
            if released is None:
                continue
            records = released
        events.extend(trace_events(trace_id, records))
    return events


def _joined_across_services(records: list[Any]) -> list[Any]:
    """A span whose parent is in another service is a root there (the in-process processor sees
    only its own service), but when that parent reached the collector too, it is its child."""
    if not any(r.parent_remote for r in records):
        return records
    ids = {r.span_id for r in records}
    return [
        dataclasses.replace(r, parent_remote=False) if r.parent_remote and r.parent_id in ids else r
        for r in records
    ]


def _has_root(records: list[Any]) -> bool:
    return any(r.parent_id is None or r.parent_remote for r in records)


def _with_stand_in_root(trace_id: str, records: list[Any]) -> list[Any]:
    """A root for spans whose own never came: the parent of the earliest top-level span, named
    after that span and spanning the whole trace; other top-level spans hang under it."""
    ids = {r.span_id for r in records}
    orphans = [r for r in records if r.parent_id is not None and r.parent_id not in ids]
    if not orphans or _has_root(records):
        return records
    first = min(orphans, key=lambda r: r.start_ns)
    root_id = first.parent_id
    orphan_ids = {id(r) for r in orphans}  # by identity: `in` on the list compared dataclasses
    SpanRecord = _conversion()[2].SpanRecord
    root = SpanRecord(
        trace_id=trace_id,
        span_id=root_id,
        parent_id=None,
        name=first.name,
        start_ns=min(r.start_ns for r in records),
        end_ns=max(r.end_ns for r in records),
        attributes={},
        resource=first.resource,
    )
    kept = [
        dataclasses.replace(r, parent_id=root_id)
        if id(r) in orphan_ids and r.parent_id != root_id
        else r
        for r in records
    ]
    return [*kept, root]


def trace_events(
    trace_id: str, records: list[Any], *, rootless: bool = False
) -> list[dict[str, Any]]:
    """The events of one trace's records (`rootless`: its root will not come)."""
    assemble, convert, _ = _conversion()
    plan_trace = assemble.plan_trace
    distinct_id_of, first_of = convert.distinct_id_of, convert.first_of
    span_event, trace_event = convert.span_event, convert.trace_event
    records = _joined_across_services(records)
    stood_in = False
    if rootless and trace_id not in _recent:  # converted before: its root came, or will
        with_root = _with_stand_in_root(trace_id, records)
        stood_in = with_root is not records
        records = with_root
    events: list[dict[str, Any]] = []
    plan = plan_trace(records)
    known = _recent.get(trace_id)
    if plan is None:
        if known is None:
            return events
        # An AI trace seen in an earlier request: its root (if it is here) is the trace.
        plan = assemble.TracePlan(
            trace_id=trace_id,
            root=next((r for r in records if r.parent_id is None or r.parent_remote), None),
        )
    privacy = convert.privacy_requested(records)
    user = first_of(records, distinct_id_of)
    session = first_of(records, convert.session_id_of)
    if known is not None:  # the same identity as the trace's earlier requests
        user = user if user is not None else known[0]
        session = session if session is not None else known[1]
        privacy = privacy or known[2]
        stood_in = stood_in or known[3]
    _remember(trace_id, (user, session, privacy, stood_in))
    for rec, kind, parent_id in plan.spans:
        try:
            name, props = span_event(
                rec,
                kind,
                trace_id=trace_id,
                parent_id=parent_id,
                privacy=privacy,
                session_id=session,
            )
        except Exception as exc:  # one span's event is lost, not the request's others
            report_internal_error(exc)
            continue
        events.append(_event(name, props, rec.end_ns, user, trace_id))
    # A root that comes after its trace was stored with a stand-in: that is the trace's one
    # `$ai_trace` already.
    if plan.root is not None and not (known is not None and known[3]):
        try:
            name, props = trace_event(
                plan.root, trace_id=trace_id, privacy=privacy, session_id=session
            )
        except Exception as exc:
            report_internal_error(exc)
            return events
        events.append(_event(name, props, plan.root.end_ns, user, trace_id))
    return events


def receive_otlp(handler: Any, method: str) -> None:
    """Answer one request to an OTLP path on `handler` (the collector's request handler)."""
    if method != "POST":
        handler._error(405, "OTLP/HTTP traces are POSTed (protobuf or JSON)")
        return
    reservation = Reservation(handler.app.budget)
    try:
        stored = _receive(handler, reservation)
    finally:
        reservation.release()
    if stored is None:
        return
    app = handler.app
    if app.log:
        app.log(f"POST {handler.path} (OTLP) -> 200: stored {stored} event{'s' * (stored != 1)}")
    content_type = handler.headers.get("Content-Type") or ""
    if content_type.split(";", 1)[0].strip().lower() == "application/json":
        handler._send(200, b"{}", "application/json")
    else:
        response = _proto().ExportTraceServiceResponse().SerializeToString()
        handler._send(200, response, "application/x-protobuf")


def _receive(handler: Any, reservation: Reservation) -> int | None:
    """Decode, convert and store one OTLP body; the events stored, or None after an error
    answer. Memory comes from the collector's budget, as for capture bodies."""
    raw = handler._read_body(reservation)
    if raw is None:
        return None
    headers = handler.headers
    app = handler.app
    try:
        # With an api key configured, a stranger is refused before anything is decompressed.
        if app.api_key is not None and not app.key_ok(
            bearer_token(headers.get("Authorization") or "")
        ):
            raise BadRequest("invalid or missing project api key for this collector", status=401)
        refusal = handler.write_refusal("traces")  # the capture paths' rule for browser pages
        if refusal is not None:
            raise BadRequest(refusal, status=403)
        request = decode_otlp(
            raw,
            content_type=headers.get("Content-Type") or "",
            content_encoding=headers.get("Content-Encoding") or "",
            limit=app.max_body_bytes,
            reserve=reservation.grow,
        )
        del raw
        authorization = headers.get("Authorization") or ""
        events = otlp_events(request, app.otlp_held, authorization)
        del request
        if len(app.otlp_held):
            _start_flusher(app)
        # The parsed request is gone: its share of the budget goes back before storing.
        reservation.release()
        stored = _store(app, events, authorization, reservation.grow) if events else 0
    except BadRequest as exc:
        if app.log:
            app.log(f"POST {handler.path} -> {exc.status}: {exc}")
        extra = {"Retry-After": "1"} if exc.status == 503 else {}
        handler._error(exc.status, str(exc), extra or None)
        return None
    except sqlite3.OperationalError as exc:
        handler._error(503, f"the local store is busy: {exc}", {"Retry-After": "1"})
        return None
    return int(stored)


def _store(
    app: Any,
    events: list[dict[str, Any]],
    authorization: str,
    reserve: Callable[[int], None] | None = None,
) -> int:
    """Store converted events through the capture path: its normalising and api key rule."""
    body = json.dumps({"batch": events}, ensure_ascii=False, default=str).encode("utf-8")
    del events
    stored: int = app.ingest(
        body,
        headers={"Content-Type": "application/json", "Authorization": authorization},
        query={},
        reserve=reserve,
    )
    return stored


def flush_held(app: Any, *, everything: bool = False) -> int:
    """Convert and store the held traces that are due (all of them with `everything`, when the
    collector stops); returns the events stored."""
    stored = 0
    for trace_id, records, authorization in app.otlp_held.due(everything=everything):
        try:
            events = trace_events(trace_id, records, rootless=True)
            if events:
                stored += _store(app, events, authorization)
        except Exception as exc:  # a held trace that cannot be stored is reported, not fatal
            if app.log:
                app.log(f"OTLP: could not store trace {trace_id}: {exc}")
    return stored


_flusher_lock = threading.Lock()


def _start_flusher(app: Any) -> None:
    """The thread that stores held traces once their hold is over (one per collector, started
    when the first trace is held)."""
    with _flusher_lock:
        if app.otlp_flusher is not None:
            return
        interval = max(0.02, min(1.0, app.otlp_held.hold_seconds / 4))

        def run() -> None:
            while not app.closing.wait(interval):
                flush_held(app)

        app.otlp_flusher = threading.Thread(target=run, name="posthog-llm-otlp-hold", daemon=True)
        app.otlp_flusher.start()
