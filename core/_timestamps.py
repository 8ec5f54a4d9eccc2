"""Event timestamps: ISO 8601 text, or the capture time when the given one cannot be read."""

from __future__ import annotations

import datetime as _dt
import re
from typing import Any

__all__ = ["ORIGINAL_TIMESTAMP", "event_timestamp", "utc_text"]

_MAX_ORIGINAL_CHARS = 200


def _iso(ts: float) -> str:
    return _dt.datetime.fromtimestamp(ts, _dt.timezone.utc).isoformat()


# A timestamp that cannot be read is replaced by the capture time; the original is kept here.
ORIGINAL_TIMESTAMP = "posthog_llm_invalid_timestamp"
# ISO 8601 text that older `datetime.fromisoformat` refuses (e.g. 4-digit fractions on 3.10).
_ISO_LIKE = re.compile(
    r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?)?(Z|[+-]\d{2}(:?\d{2})?)?$"
)


def event_timestamp(value: Any, captured_at: float) -> tuple[str, Any]:
    """ISO 8601 text for `value`, or (capture time, the original) when it cannot be read."""
    try:
        if isinstance(value, bool):
            raise TypeError("a bool is not a timestamp")
        if isinstance(value, (int, float)):
            return _iso(value), None
        if isinstance(value, _dt.datetime):
            aware = value if value.tzinfo is not None else value.replace(tzinfo=_dt.timezone.utc)
            text = aware.isoformat()
            if not _ISO_LIKE.match(text):  # a subclass's missing value (pandas' NaT: "NaT")
                raise ValueError(text)
            return text, None
        if isinstance(value, _dt.date):
            return _dt.datetime(
                value.year, value.month, value.day, tzinfo=_dt.timezone.utc
            ).isoformat(), None
        text = str(value).strip()
        if _ISO_LIKE.match(text) and not text[:4] == "0000":
            try:
                _dt.datetime.fromisoformat(text[:19])
            except ValueError:
                raise ValueError(text) from None
            return text, None
        parsed = _dt.datetime.fromisoformat(
            text.replace("Z", "+00:00") if text.endswith("Z") else text
        )
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=_dt.timezone.utc)
        return parsed.isoformat(), None
    except (TypeError, ValueError, OverflowError, OSError):
        original = value if isinstance(value, str) else repr(value)
        if isinstance(original, str) and len(original) > _MAX_ORIGINAL_CHARS:
            original = original[:_MAX_ORIGINAL_CHARS]
        return _iso(captured_at), original


def utc_text(value: Any) -> Any:
    """ISO 8601 text in UTC, so that stored timestamps sort and compare as text in time order.

    What is not ISO 8601 text comes back as it is.

    >>> utc_text("2025-01-30T14:00:00.5+02:00"), utc_text("2025-01-30T12:00:00Z")
    ('2025-01-30T12:00:00.500000+00:00', '2025-01-30T12:00:00+00:00')
    """
    if not isinstance(value, str) or value.endswith("+00:00"):
        return value  # what our own client writes: already the stored form
    try:
        parsed = _dt.datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith("Z") else value)
    except ValueError:
        return value
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=_dt.timezone.utc)
    return parsed.astimezone(_dt.timezone.utc).isoformat()
