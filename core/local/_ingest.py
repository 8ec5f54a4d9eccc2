"""Capture request bodies: decoding however an SDK packed them, and normalising their events.

Everything here is pure (bytes and JSON in, event dicts out); the collector stores what it returns.

>>> events, api_key = split_payload(decode_body(b'{"batch": [{"event": "e", "distinct_id": "u"}]}'))
>>> normalize_event(events[0])["distinct_id"]
'u'
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import json
import math
import re
import uuid as _uuid
import zlib
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

__all__ = [
    "BadRequest",
    "DEFAULT_MAX_BODY_BYTES",
    "decode_body",
    "iso",
    "key_of",
    "normalize_event",
    "parse_timestamp",
    "parse_weight",
    "peek_keys",
    "split_payload",
]

DEFAULT_MAX_BODY_BYTES = 20 * 1024 * 1024


class BadRequest(Exception):
    """A request the collector refuses; `status` is the HTTP status (400, 401, 413 …)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


# -- request bodies ----------------------------------------------------------------------------


_CHUNK = 1 << 20
# How much of a body is unpacked to find its api key before the whole of it is.
KEY_PEEK_BYTES = 64 * 1024


class _Prefix(Exception):
    """Internal: the first `limit` bytes were wanted and are here."""

    def __init__(self, data: bytes) -> None:
        self.data = data


def _inflate(
    raw: bytes,
    limit: int,
    wbits: int,
    reserve: Callable[[int], None] | None = None,
    prefix: bool = False,
) -> bytes:
    """Decompress gzip/zlib members a megabyte at a time, never past `limit` (zip bombs).

    Each megabyte is reserved with `reserve` before it is kept. With `prefix=True` the first
    `limit` bytes are returned (raised as _Prefix) instead of refusing a larger body.
    """
    out = bytearray()
    data = raw
    while data:
        inflater = zlib.decompressobj(wbits)
        pending = data
        while True:
            step = min(_CHUNK, limit + 1 - len(out))
            try:
                piece = inflater.decompress(pending, step)
            except zlib.error as exc:
                raise BadRequest(f"body is not valid compressed data: {exc}") from None
            if reserve is not None:
                reserve(2 * len(piece))  # the growing buffer, then its copy
            out += piece
            if len(out) > limit:
                if prefix:
                    raise _Prefix(bytes(out[:limit]))
                raise BadRequest(
                    f"decompressed body is larger than the {limit} byte limit", status=413
                )
            pending = inflater.unconsumed_tail
            if inflater.eof or not pending:
                break
        if not inflater.eof:
            if prefix:
                raise _Prefix(bytes(out))
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


def _unpack(
    raw: bytes,
    *,
    content_type: str,
    content_encoding: str,
    query: dict[str, str],
    limit: int,
    reserve: Callable[[int], None] | None,
    prefix: bool,
) -> bytes:
    """The JSON text of a body (decompressed, form and base64 layers removed)."""
    compression = query.get("compression", "").lower()
    encoding = content_encoding.lower().strip()
    if (
        encoding in ("gzip", "x-gzip")
        or compression in ("gzip", "gzip-js")
        or raw[:2] == b"\x1f\x8b"
    ):
        raw = _inflate(raw, limit, 16 + zlib.MAX_WBITS, reserve, prefix)
    elif encoding == "deflate":
        wbits = zlib.MAX_WBITS if raw[:1] == b"\x78" else -zlib.MAX_WBITS
        raw = _inflate(raw, limit, wbits, reserve, prefix)
    elif encoding not in ("", "identity"):
        raise BadRequest(f"unsupported Content-Encoding {content_encoding!r} (use gzip)")
    text = raw.strip()
    # curl -d sends JSON as application/x-www-form-urlencoded unless told otherwise.
    is_form = content_type.lower().startswith("application/x-www-form-urlencoded")
    if text.startswith(b"data=") or (is_form and text[:1] not in (b"{", b"[")):
        try:
            form = parse_qs(text.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError:
            raise BadRequest("body is neither UTF-8 JSON nor gzip") from None
        if "data" not in form:
            raise BadRequest("form body has no data= field (posthog-js sends data=<base64 JSON>)")
        text = form["data"][0].strip().encode("utf-8")
    if text[:1] and text[:1] not in b"{[":
        # posthog-js `compression=base64` and older SDKs send base64-encoded JSON.
        try:
            decoded = _b64decode(text.decode("ascii"))
        except UnicodeDecodeError:
            decoded = None
        if decoded is not None and decoded[:2] == b"\x1f\x8b":
            decoded = _inflate(decoded, limit, 16 + zlib.MAX_WBITS, reserve, prefix)
        if decoded is not None and decoded.lstrip()[:1] in (b"{", b"["):
            return decoded
    return text


_KEY_PATTERN = re.compile(rb'"(?:api_key|token)"\s*:\s*"([^"\\]{1,512})"')


def peek_keys(
    raw: bytes,
    *,
    content_type: str = "",
    content_encoding: str = "",
    query: dict[str, str] | None = None,
) -> list[str]:
    """The api keys (`"api_key"`/`"token"` values) in the first 64 KiB of a body's JSON text.

    Unpacks only that much, so a collector with an api key can refuse a stranger's body before
    decompressing or parsing the whole of it. SDKs put the key first (posthog-python, our
    Client) or in each event's first properties (posthog-js).
    """
    try:
        head = _unpack(
            raw,
            content_type=content_type,
            content_encoding=content_encoding,
            query=query or {},
            limit=KEY_PEEK_BYTES,
            reserve=None,
            prefix=True,
        )
    except _Prefix as cut:
        head = cut.data
    return [m.decode("utf-8", "replace") for m in _KEY_PATTERN.findall(head[:KEY_PEEK_BYTES])]


def decode_body(
    raw: bytes,
    *,
    content_type: str = "",
    content_encoding: str = "",
    query: dict[str, str] | None = None,
    limit: int = DEFAULT_MAX_BODY_BYTES,
    reserve: Callable[[int], None] | None = None,
) -> Any:
    """The JSON value of a capture request body, however an SDK packed it.

    Handles plain JSON, gzip (header, magic bytes or `?compression=gzip-js`), deflate, the
    form body `data=<base64 JSON>` and bare base64 JSON (`?compression=base64`). With
    `reserve`, each inflated megabyte and the parse's estimated memory are reserved first.

    >>> decode_body(b'{"event": "e"}')
    {'event': 'e'}
    >>> decode_body(b"data=eyJldmVudCI6ICJlIn0%3D", content_type="application/x-www-form-urlencoded")
    {'event': 'e'}
    """
    text = _unpack(
        raw,
        content_type=content_type,
        content_encoding=content_encoding,
        query=query or {},
        limit=limit,
        reserve=reserve,
        prefix=False,
    )
    if not text:
        raise BadRequest('empty body: send a JSON event, a {"batch": [...]} object or a list')
    if reserve is not None:
        reserve(parse_weight(text))
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("body is neither UTF-8 JSON nor gzip") from None
    return _loads(decoded, "body")


def parse_weight(text: bytes) -> int:
    """A generous estimate of the memory json.loads and storing need for this JSON text.

    Python objects dwarf their JSON: `{}` is 2 bytes of text and ~64 bytes as a dict, so
    containers, strings and separators are counted apart from the text itself.
    """
    # Measured: a body of long strings peaks near 8x its size on its way into the store (the
    # text, the parsed value, the normalised event, its JSON and the row are alive at once).
    containers = text.count(b"{") + text.count(b"[")
    return 8 * len(text) + 72 * containers + 32 * text.count(b'"') + 16 * text.count(b",")


# -- events ------------------------------------------------------------------------------------


def iso(moment: _dt.datetime) -> str:
    # The same form our Client writes, so the store's text ORDER BY timestamp stays in time order.
    return moment.astimezone(_dt.timezone.utc).isoformat()


def parse_timestamp(value: Any) -> _dt.datetime | None:
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


def key_of(event: dict[str, Any]) -> str | None:
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
        moment = parse_timestamp(raw["timestamp"])
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
        "timestamp": iso(moment),
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
