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

from ._events import (
    PROP_ERROR,
    PROP_INPUT,
    PROP_INPUT_STATE,
    PROP_OUTPUT_CHOICES,
    PROP_OUTPUT_STATE,
    PROP_PARENT_ID,
    PROP_SPAN_ID,
    PROP_TOOLS,
    PROP_TRACE_ID,
)

_orjson: Any
try:  # A fast encoder for the one-pass path; the stdlib encoder does the same job without it.
    import orjson as _orjson_module

    _orjson = _orjson_module
except ImportError:  # pragma: no cover - orjson is a dependency, but an optional speed-up here
    _orjson = None

__all__ = [
    "MAX_EVENT_BYTES",
    "MAX_AI_EVENT_BYTES",
    "MAX_ID_CHARS",
    "estimate_size",
    "repair_text",
    "TRUNCATION_MARKER",
    "BASE64_PLACEHOLDER",
    "to_json_safe",
    "dumps",
    "fit_event",
    "encode_plain_message",
]

# PostHog answers 413 above ~1 MB per event; keep a margin for the batch envelope.
MAX_EVENT_BYTES = 900_000
# `$ai_*` events go to PostHog's AI intake, which takes 8 MiB per event (posthog-python 7.x).
MAX_AI_EVENT_BYTES = 8 * 1024 * 1024 - 16 * 1024
# Longer distinct ids and event names are cut: PostHog refuses them, and they are never useful.
MAX_ID_CHARS = 200
TRUNCATION_MARKER = "…[truncated by posthog-llm]"
BASE64_PLACEHOLDER = "[base64 data removed by posthog-llm]"
_MAX_DEPTH = 64
_MAX_REPR = 2_000
# Ints within this bound have at most 603 digits: under any int-to-str digit limit (Python's
# `sys.set_int_max_str_digits` accepts 640 at least, or 0 for none). Beyond it, `_json_int`.
_SAFE_INT = 1 << 2000

_DATA_URL = re.compile(r"^data:[\w.+-]+/[\w.+-]+;base64,", re.IGNORECASE)
_BASE64_BLOB = re.compile(r"^[A-Za-z0-9+/=_-]{1024,}$")
_BASE64_MIN_SYMBOLS = 32


def _scrub_str(value: str) -> str:
    if len(value) < 64:
        return value
    if value.startswith("data:") and _DATA_URL.match(value):
        head = value[: value.index(",")]
        return f"{head},{BASE64_PLACEHOLDER}"
    if (
        len(value) >= 1024
        and " " not in (head := value[:1024])
        # Base64 of binary data uses most of its 64 symbols within a few hundred characters;
        # a long run of a few letters (`"a" * n`, a hex digest) is text, cut by size if at all.
        and len(set(head)) >= _BASE64_MIN_SYMBOLS
        and _BASE64_BLOB.match(value)
    ):
        return BASE64_PLACEHOLDER
    return value


def _json_int(value: int) -> int | str:
    """`value` itself, or a short marker when it has more digits than Python writes as text
    (4300 by default): json cannot encode it, and the event must not be lost for it.

    >>> _json_int(10**5000)
    '[int of 5001 digits: 10000000…00000000]'
    """
    if -_SAFE_INT < value < _SAFE_INT:
        return value
    try:
        str(value)
    except ValueError:
        return _long_int_marker(value)
    return value


def _long_int_marker(value: int) -> str:
    sign = "-" if value < 0 else ""
    value = abs(value)
    digits = int(value.bit_length() * 0.30102999566398120) + 1  # or one less
    if value < 10 ** (digits - 1):
        digits -= 1
    head = value // 10 ** (digits - 8)
    tail = value % 10**8
    return f"[int of {digits} digits: {sign}{head}…{tail:08d}]"


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
        return value if -_SAFE_INT < value < _SAFE_INT else _json_int(value)
    if cls is float:
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if depth > _MAX_DEPTH:
        return "[max depth reached]"
    try:
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
    except RecursionError:
        raise  # cut by depth above; a deeper recursion is not this value's doing
    except Exception:
        # A value whose very attribute lookups raise (werkzeug's LocalProxy outside a request
        # raises RuntimeError even from `isinstance`): its text, never the whole event.
        return _safe_repr(value)


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
    if isinstance(key, int) and not isinstance(key, bool):
        return str(_json_int(int(key)))
    if isinstance(key, (str, float, bool)) or key is None:
        return str(key)
    return _safe_repr(key)


def _convert_scalar(value: Any, scrub: bool, seen: set[int], depth: int) -> Any:
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, enum.Enum):
        return _convert(value.value, scrub, seen, depth + 1)
    if isinstance(value, int):
        return _json_int(int(value))
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
            return _json_int(as_int) if value == as_int else float(value)
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
    # A numpy scalar is its value; an array (`ndim` > 0, even of one element) is a list.
    if callable(numpy_item) and type(value).__module__ == "numpy" and not getattr(value, "ndim", 0):
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
_CONTENT_FIRST = frozenset(
    {
        PROP_INPUT,
        PROP_OUTPUT_CHOICES,
        PROP_INPUT_STATE,
        PROP_OUTPUT_STATE,
        PROP_TOOLS,
        PROP_ERROR,
    }
)
_SURROGATE = re.compile("[\ud800-\udfff]")
# Below this many bytes a property is not worth cutting: it is removed instead.
_MIN_CUT = 256
REMOVED_PROPERTIES = "posthog_llm_removed_properties"


def repair_text(text: str) -> str:
    """Replace lone surrogates (which UTF-8 cannot encode) with U+FFFD."""
    return _SURROGATE.sub("\ufffd", text)


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
# In the JSON of a plain event, what `to_json_safe` would have changed: a string it scrubs (a data
# URL or a long base64 blob), or a dict key json writes differently from `to_json_safe` (True,
# False, None, NaN and infinite floats). A match only sends the event down the exact slow path.
_DATA_URL_IN_JSON = re.compile(r'"data:[\w.+-]+/[\w.+-]+;base64,', re.IGNORECASE)
_BLOB_IN_JSON = re.compile(r'"[A-Za-z0-9+/=_-]{1024,}"')
_ODD_KEYS = ('"true":', '"false":', '"null":', '"NaN":', 'Infinity":')


# orjson hands every subclass of a builtin (str-like enums, OrderedDict...), dataclass and date
# to `default` (`_plain_str`: plain str subclasses only; the rest raise and take the exact path); NaN and infinities it writes as
# null, so an event with a null is re-encoded by the stdlib encoder, which refuses them.
_ORJSON_OPTIONS = (
    (
        _orjson.OPT_PASSTHROUGH_SUBCLASS
        | _orjson.OPT_PASSTHROUGH_DATETIME
        | _orjson.OPT_PASSTHROUGH_DATACLASS
    )
    if _orjson is not None
    else 0
)


def _plain_str(value: Any) -> str:
    """orjson's `default`: a str subclass as `to_json_safe` writes it (`str(value)`).

    LangChain's `TextAccessor` (what `StrOutputParser` returns) is one; without this every
    chain's output would leave the one-pass path. Anything else (str enums included, which
    `to_json_safe` writes as their value) raises, and the event takes the exact path. The
    strings it returns are checked like every other by `_plain_container`.
    """
    if isinstance(value, str) and not isinstance(value, enum.Enum):
        text = str(value)
        if type(text) is str:
            return text
    raise TypeError


def encode_plain_message(message: dict[str, Any], max_bytes: int) -> bytes | None:
    """The JSON of an event the client assembled, in one pass, when it holds plain JSON values
    only; else None.

    When this returns bytes they hold exactly what `fit_event(to_json_safe(message), max_bytes)`
    holds: anything the conversion would change (other types, NaN, cycles, deep nesting, base64,
    odd keys, lone surrogates, an oversized event or id) returns None for the exact, slower path.
    Only `properties` is walked: the envelope's other values are strings the client made
    (`event` and `distinct_id` are checked for the length `fit_event` would cut them to).
    """
    for name in ("event", "distinct_id"):
        value = message[name]
        if type(value) is not str or len(value) > MAX_ID_CHARS:
            return None
    if _orjson is None:
        return _encode_plain_stdlib(message, max_bytes)
    try:
        data: bytes = _orjson.dumps(message, default=_plain_str, option=_ORJSON_OPTIONS)
    except (TypeError, ValueError):
        return None
    props = message["properties"]
    if len(data) > max_bytes or type(props) is not dict:
        return None
    # The values themselves say whether `to_json_safe` would change any of them: a walk over
    # them (~0.1 µs each; a string's checks stop at its first bytes) costs less than scanning
    # the JSON's bytes for what is usually not there (measured: 1.2 µs of scans for a 370-byte
    # event, 3.2 µs for 1.4 KB; its walk 0.4 and 1.4 µs).
    return data if _plain_container(props, 1) else None


def _plain_container(container: Any, level: int) -> bool:
    """Whether `to_json_safe` leaves every value (at nesting `level`) orjson could encode as it
    is. orjson already refused what is not a dict (exact), list, tuple, str, int, float, bool or
    None, or a str subclass (`_plain_str`); left to check: non-finite floats, strings
    `_scrub_str` replaces and containers nested deeper than `_MAX_DEPTH`.
    """
    if level > _MAX_DEPTH:
        return False
    for value in container.values() if type(container) is dict else container:
        cls = type(value)
        if cls is str:
            # `_scrub_str` changes only strings of 64+ characters that start with "data:" or
            # hold 1024+ characters.
            if (
                len(value) >= 64
                and (len(value) >= 1024 or value.startswith("data:"))
                and _scrub_str(value) is not value
            ):
                return False
        elif cls is dict or cls is list or cls is tuple:
            if not _plain_container(value, level + 1):
                return False
        elif cls is int or cls is bool or value is None:
            continue
        elif cls is float:
            if not math.isfinite(value):
                return False
        elif isinstance(value, str) and not isinstance(value, enum.Enum):
            text = str(value)
            if len(text) >= 64 and _scrub_str(text) is not text:
                return False
        else:
            return False
    return True


def _encode_plain_stdlib(event: dict[str, Any], max_bytes: int) -> bytes | None:
    try:
        text = _ENCODER.encode(event)
    except (TypeError, ValueError, RecursionError):
        return None
    # Nesting deeper than `_MAX_DEPTH` is cut by `to_json_safe`; fewer brackets than that
    # anywhere in the text (strings included) proves it is not.
    if text.count("[") + text.count("{") > _MAX_DEPTH:
        return None
    # Cheap substring tests first: every data URL ends its prefix with "64,".
    if "64," in text and _DATA_URL_IN_JSON.search(text):
        return None
    if len(text) > 1024 and _BLOB_IN_JSON.search(text):
        return None
    for key in _ODD_KEYS:
        if key in text:
            return None
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return data if len(data) <= max_bytes else None


def _encode(value: Any) -> bytes:
    text = dumps(value)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return repair_text(text).encode("utf-8")


def _size(value: Any) -> int:
    return len(_encode(value))


def estimate_size(props: Mapping[str, Any]) -> int:
    """A cheap estimate of the JSON size of an event's properties (three levels deep at most).

    Strings are what make events large (prompts, outputs); everything else counts a little.
    """
    total = 64
    for value in props.values():
        cls = type(value)
        if cls is str:
            total += len(value)
        elif cls is list or cls is tuple or cls is dict:
            for item in value.values() if cls is dict else value[:64]:
                kind = type(item)
                if kind is str:
                    total += len(item)
                elif kind is dict:
                    for leaf in item.values():
                        total += len(leaf) if type(leaf) is str else 16
                else:
                    total += 16
        else:
            total += 16
    return total


def _cut_string(value: str, budget: int) -> str:
    """`value` cut (with the marker) so that its JSON takes about `budget` bytes at most."""
    keep = max(0, budget - len(TRUNCATION_MARKER.encode()) - 2)
    cut = value[:keep] + TRUNCATION_MARKER
    for _ in range(4):
        size = _size(cut)
        if size <= budget or keep == 0:
            break
        # Multi-byte characters or escapes: shrink in proportion, a few times at most.
        keep = max(0, int(keep * budget / size) - 8)
        cut = value[:keep] + TRUNCATION_MARKER
    return cut


def _cut(value: Any, budget: int, size: int) -> Any:
    """`value` (of JSON size `size`) cut to about `budget` bytes; linear in the value's size."""
    if size <= budget:
        return value
    if isinstance(value, str):
        return _cut_string(value, budget)
    if isinstance(value, list):
        out: list[Any] = []
        used = 2
        for index, item in enumerate(value):
            item_size = _size(item) + 1
            if used + item_size <= budget:
                out.append(item)
                used += item_size
                continue
            room = budget - used - 64
            if room >= _MIN_CUT and isinstance(item, (str, list, dict)):
                out.append(_cut(item, room, item_size))
                index += 1
            if index < len(value):
                out.append(f"{TRUNCATION_MARKER} {len(value) - index} more items")
            return out
        return out
    if isinstance(value, dict):
        result: dict[str, Any] = {}
        used = 2
        items = list(value.items())
        for key, item in items:
            item_size = _size(key) + _size(item) + 2
            if used + item_size <= budget:
                result[key] = item
                used += item_size
                continue
            room = budget - used - _size(key) - 64
            if room >= _MIN_CUT and isinstance(item, (str, list, dict)):
                result[key] = _cut(item, room, item_size)
            elif room >= 0:
                result[key] = TRUNCATION_MARKER
            return result
        return result
    return TRUNCATION_MARKER


def _water_level(sizes: list[int], budget: int) -> float:
    """The largest cap L with sum(min(s, L)) <= budget (infinite when everything fits)."""
    if sum(sizes) <= budget:
        return float("inf")
    ordered = sorted(sizes)
    spent = 0
    count = len(ordered)
    for index, size in enumerate(ordered):
        left = count - index
        if spent + size * left > budget:
            return max(0.0, (budget - spent) / left)
        spent += size
    return float("inf")


def fit_event(event: dict[str, Any], max_bytes: int = MAX_EVENT_BYTES) -> bytes:
    """Serialize a JSON-safe event dict, truncating it until it fits in `max_bytes`.

    Never drops the event and never fails: lone surrogates become U+FFFD; too-long event names
    and distinct ids are cut; then content properties are cut (largest first, with a visible
    marker), then other large properties, and small ones are removed (their count is kept in
    `posthog_llm_removed_properties`). Linear in the event's size, whatever its shape; the
    result is always under `max_bytes`.
    """
    for name in ("event", "distinct_id"):
        value = event.get(name)
        if isinstance(value, str) and len(value) > MAX_ID_CHARS:
            event = dict(event)
            event[name] = value[:MAX_ID_CHARS]
    text = dumps(event)
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        data = repair_text(text).encode("utf-8")
        if len(data) > max_bytes:
            event = json.loads(data)  # the repaired text, parsed back once
    if len(data) <= max_bytes:
        return data
    event = dict(event)
    props: dict[str, Any] = dict(event.get("properties") or {})
    event["properties"] = {}
    envelope = _size(event) + 64  # room for the count of removed properties
    sizes = {k: _size(k) + _size(v) + 2 for k, v in props.items()}
    target = max_bytes - envelope
    for _ in range(4):
        trimmed, removed = _fit_properties(props, sizes, target)
        if removed:
            trimmed[REMOVED_PROPERTIES] = removed
        event["properties"] = trimmed
        data = _encode(event)
        if len(data) <= max_bytes:
            return data
        target -= len(data) - max_bytes + max(64, target // 50)
    # Unreachable in practice; the guarantee holds anyway: ids and a marker only.
    event["properties"] = {
        k: v
        for k, v in props.items()
        if k in (PROP_TRACE_ID, PROP_PARENT_ID, PROP_SPAN_ID) and _size(v) < 512
    }
    event["properties"]["posthog_llm_truncated"] = TRUNCATION_MARKER
    return _encode(event)


def _fit_properties(
    props: dict[str, Any], sizes: dict[str, int], target: int
) -> tuple[dict[str, Any], int]:
    """Properties cut to about `target` bytes: content first, then custom, then other `$ai_*`,
    then PostHog's own (`$process_person_profile`, `$groups`, `$session_id`, `$lib`...), which
    say how PostHog files the event: the largest custom property is no reason to lose them."""
    groups = (
        [k for k in props if k in _CONTENT_FIRST],
        [k for k in props if not k.startswith("$")],
        [k for k in props if k.startswith("$ai_") and k not in _CONTENT_FIRST],
        [k for k in props if k.startswith("$") and not k.startswith("$ai_")],
    )
    out = dict(props)
    total = sum(sizes.values())
    removed = 0
    for group in groups:
        if total <= target or not group:
            continue
        rest = total - sum(sizes[k] for k in group)
        budget = target - rest
        level = _water_level([sizes[k] for k in group], max(0, budget))
        if level >= _MIN_CUT:
            for key in group:
                if sizes[key] > level:
                    cut_to = int(level) - _size(key) - 2
                    out[key] = _cut(props[key], cut_to, sizes[key] - _size(key) - 2)
            total = rest + sum(min(sizes[k], int(level)) for k in group)
            continue
        # Too many properties for each to keep something useful: remove the largest first,
        # then shorten nothing further in this group.
        for key in sorted(group, key=sizes.__getitem__, reverse=True):
            if total <= target:
                break
            del out[key]
            total -= sizes[key]
            removed += 1
    return out, removed
