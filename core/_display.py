"""Rich HTML for a trace, for Jupyter (`Trace._repr_html_`) and simple pages."""

from __future__ import annotations

import html
import json
from typing import TYPE_CHECKING, Any

from ._events import (
    EMBEDDING,
    GENERATION,
    PROP_ERROR,
    PROP_INPUT,
    PROP_INPUT_STATE,
    PROP_INPUT_TOKENS,
    PROP_IS_ERROR,
    PROP_LATENCY,
    PROP_MODEL,
    PROP_OUTPUT_CHOICES,
    PROP_OUTPUT_STATE,
    PROP_OUTPUT_TOKENS,
)
from ._store_summary import is_truthy

if TYPE_CHECKING:
    from ._trace_tree import Trace

__all__ = ["trace_html"]

_COLORS = {"trace": "#1d4aff", "span": "#6b7280", "generation": "#f54e00", "embedding": "#0a8a4a"}
_CONTENT = (
    ("input", PROP_INPUT),
    ("output", PROP_OUTPUT_CHOICES),
    ("input state", PROP_INPUT_STATE),
    ("output state", PROP_OUTPUT_STATE),
)
# Past this depth rows stop moving right (a 10,000-deep chain would be 180,000 px wide).
_MAX_INDENT = 30


def _short(value: Any, limit: int = 2000) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, indent=1)
    if len(text) > limit:
        text = text[:limit] + " …"
    return html.escape(text)


def trace_html(trace: Trace) -> str:
    """A self-contained HTML block: one row per event, indented by depth, content folded."""
    rows = []
    for depth, node in trace.root.walk():
        props = node.properties
        color = _COLORS.get(node.kind, "#333")
        facts = []
        if depth > _MAX_INDENT:
            facts.append(f"depth {depth}")
        model = props.get(PROP_MODEL)
        if node.event.get("event") in (GENERATION, EMBEDDING) and model and model != node.name:
            facts.append(html.escape(str(model)))
        tokens_in, tokens_out = props.get(PROP_INPUT_TOKENS), props.get(PROP_OUTPUT_TOKENS)
        if node.event.get("event") == EMBEDDING and tokens_out is None:
            if tokens_in is not None:
                facts.append(f"{html.escape(str(tokens_in))} tokens")
        elif tokens_in is not None or tokens_out is not None:
            shown_in = "?" if tokens_in is None else tokens_in
            shown_out = "?" if tokens_out is None else tokens_out
            facts.append(html.escape(f"{shown_in} → {shown_out} tokens"))
        latency = props.get(PROP_LATENCY)
        if isinstance(latency, (int, float)) and not isinstance(latency, bool):
            facts.append(f"{latency * 1000:.1f} ms")
        if is_truthy(props.get(PROP_IS_ERROR)):
            facts.append(
                f"<b style='color:#c00'>{html.escape(str(props.get(PROP_ERROR) or 'error'))}</b>"
            )
        details = "".join(
            f"<details><summary>{html.escape(label)}</summary><pre style='white-space:pre-wrap;margin:0'>"
            f"{_short(props[key])}</pre></details>"
            for label, key in _CONTENT
            if key in props
        )
        indent = min(depth, _MAX_INDENT) * 18
        rows.append(
            f"<div style='margin-left:{indent}px;padding:2px 0;border-left:3px solid {color};"
            f"padding-left:6px'><span style='color:{color};font-weight:600'>{html.escape(node.kind)}</span> "
            f"{html.escape(node.name)} <span style='color:#666'>{' · '.join(facts)}</span>{details}</div>"
        )
    title = html.escape(trace.trace_id)
    return (
        f"<div class='posthog-llm-trace' style='font-family:system-ui,sans-serif;font-size:13px'>"
        f"<div style='font-weight:600;margin-bottom:4px'>trace {title} · {len(trace.events)} events</div>"
        + "".join(rows)
        + "</div>"
    )
