"""Rich HTML for a trace, for Jupyter (`Trace._repr_html_`) and simple pages."""

from __future__ import annotations

import html
import json
from typing import TYPE_CHECKING, Any

from ._events import EMBEDDING, GENERATION

if TYPE_CHECKING:
    from ._store import Trace

__all__ = ["trace_html"]

_COLORS = {"trace": "#1d4aff", "span": "#6b7280", "generation": "#f54e00", "embedding": "#0a8a4a"}
_CONTENT = (
    ("input", "$ai_input"),
    ("output", "$ai_output_choices"),
    ("input state", "$ai_input_state"),
    ("output state", "$ai_output_state"),
)


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
        model = props.get("$ai_model")
        if node.event.get("event") in (GENERATION, EMBEDDING) and model and model != node.name:
            facts.append(html.escape(str(model)))
        if node.event.get("event") == EMBEDDING and props.get("$ai_output_tokens") is None:
            if props.get("$ai_input_tokens") is not None:
                facts.append(f"{props['$ai_input_tokens']} tokens")
        elif (
            props.get("$ai_input_tokens") is not None or props.get("$ai_output_tokens") is not None
        ):
            facts.append(
                f"{props.get('$ai_input_tokens', '?')} → {props.get('$ai_output_tokens', '?')} tokens"
            )
        if isinstance(props.get("$ai_latency"), (int, float)):
            facts.append(f"{props['$ai_latency'] * 1000:.1f} ms")
        if props.get("$ai_is_error"):
            facts.append(
                f"<b style='color:#c00'>{html.escape(str(props.get('$ai_error') or 'error'))}</b>"
            )
        details = "".join(
            f"<details><summary>{label}</summary><pre style='white-space:pre-wrap;margin:0'>"
            f"{_short(props[key])}</pre></details>"
            for label, key in _CONTENT
            if key in props
        )
        rows.append(
            f"<div style='margin-left:{depth * 18}px;padding:2px 0;border-left:3px solid {color};"
            f"padding-left:6px'><span style='color:{color};font-weight:600'>{node.kind}</span> "
            f"{html.escape(node.name)} <span style='color:#666'>{' · '.join(facts)}</span>{details}</div>"
        )
    title = html.escape(trace.trace_id)
    return (
        f"<div class='posthog-llm-trace' style='font-family:system-ui,sans-serif;font-size:13px'>"
        f"<div style='font-weight:600;margin-bottom:4px'>trace {title} · {len(trace.events)} events</div>"
        + "".join(rows)
        + "</div>"
    )
