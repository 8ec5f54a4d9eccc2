"""Text rendering of the local store's contents: trace trees, trace tables and event lines.

Pure functions over the store's values; the SQL lives in `_store`, the HTML in `_display`.

>>> from posthog_llm._trace_tree import build_tree
>>> root = build_tree("t", [{"event": "$ai_span", "properties": {"$ai_span_name": "step"}}])
>>> print(tree_text(root))  # no $ai_trace event: the root is named after its first step
trace  step
└─ span  step
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ._events import (
    EMBEDDING,
    EVENT_PREFIX,
    GENERATION,
    PROP_ERROR,
    PROP_INPUT_TOKENS,
    PROP_IS_ERROR,
    PROP_LATENCY,
    PROP_MODEL,
    PROP_OUTPUT_TOKENS,
    PROP_PROVIDER,
    PROP_SPAN_NAME,
    PROP_STREAM,
    PROP_TIME_TO_FIRST_TOKEN,
    PROP_TRACE_ID,
)
from ._store_summary import is_truthy

if TYPE_CHECKING:
    from ._store import TraceSummary
    from ._trace_tree import TraceNode

__all__ = [
    "describe_node",
    "event_line",
    "json_line",
    "printable",
    "traces_table",
    "tree_text",
    "MAX_DRAWN_DEPTH",
]

# Deeper levels are not drawn one by one: a 10,000-deep chain would print ~100 MB of spaces.
MAX_DRAWN_DEPTH = 24

# C0 controls, DEL and C1 controls: in a terminal, ESC and CSI start sequences that can clear the
# screen, set the window title or write the clipboard; newlines and tabs break the one-line rows.
# Also the format characters that reorder or break what a terminal shows (bidirectional marks,
# overrides and isolates, line and paragraph separators).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u2028-\u202e\u2066-\u2069]")
_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}
_JSON_UNSAFE = re.compile("[\x7f-\x9f\u200e\u200f\u2028-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    return _ESCAPES.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def printable(text: str) -> str:
    r"""`text` with every control character shown as an escape, safe to print to a terminal.

    >>> print(printable("red\x1b[31m\tname\n\x9b\u202e"))
    red\x1b[31m\tname\n\x9b\u202e
    """
    return _CONTROL.sub(_escape, text) if _CONTROL.search(text) else text


def json_line(value: Any, *, compact: bool = True) -> str:
    """JSON on one line; DEL, C1 controls and the bidirectional and separator format characters
    are written as `\\uXXXX` escapes (the same JSON value), as `json` already does for the C0
    controls, so a terminal sees none of them."""
    separators = (",", ":") if compact else (", ", ": ")
    text = json.dumps(value, ensure_ascii=False, separators=separators)
    if _JSON_UNSAFE.search(text):
        text = _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    return text


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def describe_node(node: TraceNode, depth: int = 0) -> str:
    """One line of the tree without its guides: kind, name, model, tokens, latency, error."""
    props = node.properties
    parts = [node.kind, node.name]
    if node.event.get("event") in (GENERATION, EMBEDDING):
        model = props.get(PROP_MODEL)
        provider = props.get(PROP_PROVIDER)
        if model and model != node.name:
            parts.append(f"model={model}")
        elif model:
            parts[-1] = f"model={model}"
        if provider:
            parts.append(f"provider={provider}")
    tokens_in, tokens_out = props.get(PROP_INPUT_TOKENS), props.get(PROP_OUTPUT_TOKENS)
    if node.event.get("event") == EMBEDDING and tokens_in is not None and tokens_out is None:
        parts.append(f"tokens={tokens_in}")
    elif tokens_in is not None or tokens_out is not None:
        shown_in = tokens_in if tokens_in is not None else "?"
        shown_out = tokens_out if tokens_out is not None else "?"
        parts.append(f"tokens={shown_in}→{shown_out}")
    latency = _num(props.get(PROP_LATENCY))
    if latency is not None:
        parts.append(f"{latency * 1000:.1f}ms")
    if props.get(PROP_STREAM):
        ttft = _num(props.get(PROP_TIME_TO_FIRST_TOKEN))
        parts.append("stream" + (f" ttft={ttft * 1000:.1f}ms" if ttft is not None else ""))
    if is_truthy(props.get(PROP_IS_ERROR)):
        parts.append(f"ERROR {props.get(PROP_ERROR) or ''}".rstrip())
    return printable("  ".join(parts))


def _guides(lasts: Sequence[bool]) -> str:
    """`│  ` / `   ` for each ancestor level, then `├─ ` or `└─ ` for the node itself."""
    if not lasts:
        return ""
    if len(lasts) > MAX_DRAWN_DEPTH:
        hidden = len(lasts) - MAX_DRAWN_DEPTH
        head = f"┆ +{hidden} levels "
        lasts = lasts[-MAX_DRAWN_DEPTH:]
    else:
        head = ""
    body = "".join("   " if last else "│  " for last in lasts[:-1])
    return head + body + ("└─ " if lasts[-1] else "├─ ")


def tree_text(root: TraceNode) -> str:
    """The trace as an indented tree with `├─`/`└─` guides, one line per event."""
    return "\n".join(_guides(lasts) + describe_node(node) for _, node, lasts in root.walk_lines())


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def traces_table(rows: Iterable[TraceSummary]) -> str:
    """Trace summaries as an aligned text table, as `posthog-llm traces` prints it."""
    header = ("trace_id", "name", "start", "events", "gens", "in_tok", "out_tok", "latency")
    table = [(*header, "errors")] + [
        (
            printable(r.trace_id),
            _cut(printable(r.name or ""), 28),
            printable((r.start or "")[:19].replace("T", " ")),
            str(r.events),
            str(r.generations),
            str(r.input_tokens),
            str(r.output_tokens),
            "-" if r.latency is None else f"{r.latency:.3f}s",
            str(r.errors),
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in table
    )


def _time_column(value: Any) -> str:
    """A stored timestamp in UTC, to the millisecond, as one fixed-width column.

    >>> _time_column("2025-01-30T14:00:00.5+02:00"), _time_column("2025-01-30T12:00:00Z")
    ('2025-01-30 12:00:00.500', '2025-01-30 12:00:00.000')
    """
    text = str(value or "-")
    try:
        moment = _dt.datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    except ValueError:
        return text[:23].replace("T", " ")  # not ISO 8601: shown as stored
    if moment.tzinfo is not None:
        moment = moment.astimezone(_dt.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def event_line(event: dict[str, Any]) -> str:
    """One readable line per event: time, name, trace, model/name, tokens, latency, error."""
    props = event.get("properties") or {}
    name = str(event.get("event") or "")
    shown = name[len(EVENT_PREFIX) :] if name.startswith(EVENT_PREFIX) else name
    parts = [_time_column(event.get("timestamp")), f"{shown:<10}"]
    trace_id = props.get(PROP_TRACE_ID)
    parts.append(f"trace={_cut(str(trace_id), 24)}" if trace_id is not None else "trace=-")
    label = props.get(PROP_MODEL) or props.get(PROP_SPAN_NAME)
    if label:
        parts.append(_cut(str(label), 40))
    tokens_in, tokens_out = props.get(PROP_INPUT_TOKENS), props.get(PROP_OUTPUT_TOKENS)
    if tokens_in is not None or tokens_out is not None:
        parts.append(
            f"tokens={tokens_in if tokens_in is not None else '?'}"
            f"→{tokens_out if tokens_out is not None else '?'}"
        )
    latency = _num(props.get(PROP_LATENCY))
    if latency is not None:
        parts.append(f"{latency:.3f}s")
    if is_truthy(props.get(PROP_IS_ERROR)):
        parts.append(_cut(f"ERROR {props.get(PROP_ERROR) or ''}".rstrip(), 80))
    if not name.startswith(EVENT_PREFIX):
        extra = {k: v for k, v in props.items() if not str(k).startswith("$")}
        if extra:
            parts.append(_cut(json.dumps(extra, ensure_ascii=False, default=str), 80))
    parts.append(f"distinct_id={_cut(str(event.get('distinct_id')), 40)}")
    return printable("  ".join(parts))
