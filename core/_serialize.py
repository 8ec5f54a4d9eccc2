"""JSON-safe conversion, base64 scrubbing and truncation.

Nothing here raises on user data: any value becomes something `json.dumps` accepts, and an event
that is too large is cut down with a visible marker instead of being dropped.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as _dt
import decimal
import enum
import json
import math
import re
import uuid
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

__all__ = [
    "MAX_EVENT_BYTES",
    "TRUNCATION_MARKER",
    "BASE64_PLACEHOLDER",
    "to_json_safe",
    "dumps",
    "fit_event",
]

# PostHog answers 413 above ~1 MB per event; keep a margin for the batch envelope.
MAX_EVENT_BYTES = 900_000
TRUNCATION_MARKER = "…[truncated by posthog-llm]"
BASE64_PLACEHOLDER = "[base64 data removed by posthog-llm]"
_MAX_DEPTH = 64
_MAX_REPR = 2_000

_DATA_URL = re.compile(r"^data:[\w.+-]+/[\w.+-]+;base64,", re.IGNORECASE)
_BASE64_BLOB = re.compile(r"^[A-Za-z0-9+/=_-]{1024,}$")


def _scrub_str(value: str) -> str:
    if len(value) < 64:
        return value
    if value.startswith("data:") and _DATA_URL.match(value):
        head = value[: value.index(",")]
        return f"{head},{BASE64_PLACEHOLDER}"
    if len(value) >= 1024 and " " not in value[:1024] and _BASE64_BLOB.match(value):
        return BASE64_PLACEHOLDER
    return value


def _safe_repr(value: Any) -> str:
    try:
        text = repr(value)
    except Exception as exc:  # a broken __repr__ must not lose the event
        text = f"<{type(value).__name__} (repr failed: {type(exc).__name__})>"
    if len(text) > _MAX_REPR:
        text = text[:_MAX_REPR] + TRUNCATION_MARKER
    return text


def to_json_safe(value: Any, *, scrub: bool = True) -> Any:
    """Return `value` as plain JSON types: dict, list, str, int, float, bool, None.

    Handles pydantic models, dataclasses, datetimes, UUIDs, bytes, sets, Decimals, enums, NaN,
    cycles and anything else (by repr). Base64 images become a short placeholder.

    >>> to_json_safe({"when": _dt.date(2025, 1, 30), "ids": {1}, "x": float("nan")})
    {'when': '2025-01-30', 'ids': [1], 'x': 'NaN'}
    """
    return _convert(value, scrub, set(), 0)


def _convert(value: Any, scrub: bool, seen: set[int], depth: int) -> Any:
    if value is None or value is True or value is False:
        return value
    cls = type(value)
    if cls is str:
        return _scrub_str(value) if scrub else value
    if cls is int:
        return value
    if cls is float:
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if depth > _MAX_DEPTH:
        return "[max depth reached]"
    if isinstance(value, (dict, list, tuple, set, frozenset)) or _is_container_like(value):
        key = id(value)
        if key in seen:
            return "[cycle]"
        seen.add(key)
        try:
            return _convert_container(value, scrub, seen, depth + 1)
        finally:
            seen.discard(key)
    return _convert_scalar(value, scrub, seen, depth)


def _is_container_like(value: Any) -> bool:
    return (
        isinstance(value, Mapping)
        or dataclasses.is_dataclass(value)
        or hasattr(value, "model_dump")
    )


def _convert_container(value: Any, scrub: bool, seen: set[int], depth: int) -> Any:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        try:
            items = list(value.items())
        except Exception:
            return _safe_repr(value)
        for k, v in items:
            out[k if type(k) is str else _key(k)] = _convert(v, scrub, seen, depth)
        return out
    if isinstance(value, (list, tuple)):
        return [_convert(v, scrub, seen, depth) for v in value]
    if isinstance(value, (set, frozenset)):
        items = [_convert(v, scrub, seen, depth) for v in value]
        try:
            return sorted(items)
        except TypeError:
            return items
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        try:
            fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        except Exception:
            return _safe_repr(value)
        return {k: _convert(v, scrub, seen, depth) for k, v in fields.items()}
    model_dump = getattr(value, "model_dump", None)
    if callable(model_dump) and not isinstance(value, type):
        try:
            dumped = model_dump(mode="json")
        except Exception:
            try:
                dumped = model_dump()
            except Exception:
                return _safe_repr(value)
        return _convert(dumped, scrub, seen, depth)
    return _safe_repr(value)


def _key(key: Any) -> str:
    if isinstance(key, enum.Enum):
        key = key.value
    if isinstance(key, (str, int, float, bool)) or key is None:
        return str(key)
    return _safe_repr(key)


def _convert_scalar(value: Any, scrub: bool, seen: set[int], depth: int) -> Any:
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, enum.Enum):
        return _convert(value.value, scrub, seen, depth + 1)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return _convert(float(value), scrub, seen, depth)
    if isinstance(value, str):
        return _scrub_str(str(value)) if scrub else str(value)
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, _dt.timedelta):
        return value.total_seconds()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, decimal.Decimal):
        if value.is_finite():
            as_int = int(value)
            return as_int if value == as_int else float(value)
        return "NaN" if value.is_nan() else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return f"[{len(raw)} bytes]" if scrub else base64.b64encode(raw).decode("ascii")
        return _scrub_str(text) if scrub else text
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, BaseException):
        return f"{type(value).__name__}: {value}"
    for attr in ("to_dict", "dict", "to_json_dict"):
        method = getattr(value, attr, None)
        if callable(method) and not isinstance(value, type):
            try:
                return _convert(method(), scrub, seen, depth + 1)
            except Exception:
                break
    numpy_item = getattr(value, "item", None)
    if callable(numpy_item) and type(value).__module__ == "numpy":
        try:
            return _convert(numpy_item(), scrub, seen, depth + 1)
        except Exception:
            pass
    tolist = getattr(value, "tolist", None)
    if callable(tolist) and type(value).__module__ == "numpy":
        try:
            return _convert(tolist(), scrub, seen, depth + 1)
        except Exception:
            pass
    return _safe_repr(value)


def dumps(value: Any) -> str:
    """Compact JSON of an already JSON-safe value."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


# Properties trimmed first when an event is too large: content, never ids or usage.
_CONTENT_FIRST = (
    "$ai_input",
    "$ai_output_choices",
    "$ai_input_state",
    "$ai_output_state",
    "$ai_tools",
    "$ai_error",
)


def _shrink(value: Any, limit: int) -> Any:
    """Cut every string longer than `limit` characters and every list longer than `limit` items."""
    if isinstance(value, str):
        if len(value) > limit:
            return value[:limit] + TRUNCATION_MARKER
        return value
    if isinstance(value, list):
        items = [_shrink(v, limit) for v in value[: max(limit, 1)]]
        if len(value) > max(limit, 1):
            items.append(f"{TRUNCATION_MARKER} {len(value) - len(items)} more items")
        return items
    if isinstance(value, dict):
        return {k: _shrink(v, limit) for k, v in value.items()}
    return value


def fit_event(event: dict[str, Any], max_bytes: int = MAX_EVENT_BYTES) -> bytes:
    """Serialize a JSON-safe event dict, truncating content until it fits in `max_bytes`.

    The event is never dropped: content fields are shortened with a visible marker, then other
    large properties, and as a last resort replaced by the marker alone.
    """
    data = dumps(event).encode("utf-8")
    if len(data) <= max_bytes:
        return data
    props: dict[str, Any] = dict(event.get("properties") or {})
    event = dict(event, properties=props)
    by_size = sorted(props, key=lambda k: len(dumps(props[k])), reverse=True)
    order = [k for k in _CONTENT_FIRST if k in props] + [
        k for k in by_size if k not in _CONTENT_FIRST
    ]
    limit = 100_000
    while limit >= 64:
        for key in order:
            props[key] = _shrink(props[key], limit)
        data = dumps(event).encode("utf-8")
        if len(data) <= max_bytes:
            return data
        limit //= 4
    for key in order:
        if key.startswith("$ai_") and key not in _CONTENT_FIRST:
            continue
        props[key] = TRUNCATION_MARKER
        data = dumps(event).encode("utf-8")
        if len(data) <= max_bytes:
            return data
    return data
