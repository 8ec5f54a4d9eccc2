"""`capture_feedback` and `capture_metric`: what users say about a trace, as PostHog events."""

from __future__ import annotations

from typing import Any

from ._client import Client, get_client
from ._context import current_scope
from ._emit import check_client
from ._events import FEEDBACK, METRIC, feedback_properties, metric_properties

__all__ = ["capture_feedback", "capture_metric"]


def _capture_is_off(client: Any) -> bool:
    """With capture turned off (`Client(disabled=True)`), spans have no trace id: feedback on
    one is nothing to send, not an error in the caller's code."""
    target = check_client(client)
    if target is None:
        target = get_client()
    return bool(getattr(target, "disabled", False))


def _trace_id(trace_id: Any) -> str:
    if trace_id is None or (isinstance(trace_id, str) and not trace_id.strip()):
        raise ValueError("trace_id must be the id of a trace, got an empty value")
    return str(trace_id)


def _send(event: str, trace_id: str, props: dict[str, Any], distinct_id: Any, client: Any) -> Any:
    client = check_client(client)
    target = client if client is not None else get_client()
    if isinstance(target, Client):
        # Our client applies the context and the anonymous-id rule (the trace id) itself.
        return target.capture(event, distinct_id=distinct_id, properties=props)
    if distinct_id is None:
        distinct_id = current_scope().distinct_id
    if distinct_id is None:
        distinct_id = trace_id
        props["$process_person_profile"] = False
    return target.capture(event, distinct_id=str(distinct_id), properties=props)


def capture_feedback(
    trace_id: Any, text: str, *, distinct_id: Any = None, client: Any = None
) -> Any:
    """Send a user's feedback on a trace as `$ai_feedback`.

    >>> import posthog_llm
    >>> posthog_llm.capture_feedback("trace_123", "Great answer!", distinct_id="user_123")  # doctest: +SKIP
    """
    if _capture_is_off(client):
        return None
    tid = _trace_id(trace_id)
    if not isinstance(text, str):
        raise TypeError(f"text must be a string, got {type(text).__name__}")
    return _send(FEEDBACK, tid, feedback_properties(trace_id=tid, text=text), distinct_id, client)


def capture_metric(
    trace_id: Any, name: str, value: Any, *, distinct_id: Any = None, client: Any = None
) -> Any:
    """Send a named metric about a trace (a score, a rating, a label) as `$ai_metric`.

    >>> import posthog_llm
    >>> posthog_llm.capture_metric("trace_123", "helpfulness", 4, distinct_id="user_123")  # doctest: +SKIP
    """
    if _capture_is_off(client):
        return None
    tid = _trace_id(trace_id)
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    props = metric_properties(trace_id=tid, name=name, value=value)
    return _send(METRIC, tid, props, distinct_id, client)
