"""`capture_feedback` and `capture_metric`: what users say about a trace, as PostHog events."""

from __future__ import annotations

import logging
from typing import Any

from ._client import Client, get_client
from ._context import current_scope
from ._emit import _capture_foreign, _with_posthog_context, check_client
from ._events import (
    FEEDBACK,
    METRIC,
    PROP_SESSION_ID,
    apply_privacy,
    feedback_properties,
    metric_properties,
)
from ._observation import inherited_client

__all__ = ["capture_feedback", "capture_metric"]

log = logging.getLogger("posthog_llm")


def _target(client: Any) -> Any:
    """The client to send through: the one given (checked), else the default one; None when
    the default one cannot be built from the environment (`get_client` warns once)."""
    checked = check_client(client)
    if checked is not None:
        return checked
    inherited = inherited_client()  # inside a span given a client: where its trace goes
    if inherited is not None:
        return inherited
    try:
        return get_client()
    except Exception:
        return None


def _trace_id(trace_id: Any) -> str:
    if trace_id is None or (isinstance(trace_id, str) and not trace_id.strip()):
        raise ValueError("trace_id must be the id of a trace, got an empty value")
    return str(trace_id)


def _send(
    event: str, trace_id: str, props: dict[str, Any], distinct_id: Any, target: Any
) -> str | None:
    if isinstance(target, Client):
        # Our client applies the context, privacy and the anonymous-id rule (the trace id).
        return target.capture(event, distinct_id=distinct_id, properties=props)
    # Our context, then posthog-python's own (`identify_context`), as for every other event:
    # the context's properties beneath the event's own, its groups.
    scope = _with_posthog_context(current_scope())
    if scope.properties:
        props = {**scope.properties, **props}
    if scope.privacy_mode or getattr(target, "privacy_mode", False) is True:
        apply_privacy(props)  # posthog-python's client knows nothing of feedback text
    if scope.session_id is not None:
        props.setdefault(PROP_SESSION_ID, scope.session_id)
    if distinct_id is None:
        distinct_id = scope.distinct_id
    if distinct_id is None:
        distinct_id = trace_id
        props["$process_person_profile"] = False
    groups = dict(scope.groups) if scope.groups else None
    try:
        sent = _capture_foreign(target, event, str(distinct_id), props, groups)
        # posthog-python returns the event's uuid (older versions other values: not a uuid).
        return sent if isinstance(sent, str) else None
    except Exception:  # the client's own failure is not the caller's: logged, not raised
        log.exception("posthog-llm: the client failed to capture %s", event)
        return None


def capture_feedback(
    trace_id: Any, text: str, *, distinct_id: Any = None, client: Any = None
) -> str | None:
    """Send a user's feedback on a trace as `$ai_feedback`; returns the event's uuid (None when
    capture is off or the event was dropped).

    >>> import posthog_llm
    >>> posthog_llm.capture_feedback("trace_123", "Great answer!", distinct_id="user_123")  # doctest: +SKIP
    """
    target = _target(client)
    if target is None or getattr(target, "disabled", False):
        # Capture is off, so spans have no trace id: nothing to send, not the caller's error.
        return None
    tid = _trace_id(trace_id)
    if not isinstance(text, str):
        raise TypeError(f"text must be a string, got {type(text).__name__}")
    return _send(FEEDBACK, tid, feedback_properties(trace_id=tid, text=text), distinct_id, target)


def capture_metric(
    trace_id: Any, name: str, value: Any, *, distinct_id: Any = None, client: Any = None
) -> str | None:
    """Send a named metric about a trace (a score, a rating, a label) as `$ai_metric`; returns
    the event's uuid, as `capture_feedback` does.

    >>> import posthog_llm
    >>> posthog_llm.capture_metric("trace_123", "helpfulness", 4, distinct_id="user_123")  # doctest: +SKIP
    """
    target = _target(client)
    if target is None or getattr(target, "disabled", False):  # as in `capture_feedback`
        return None
    tid = _trace_id(trace_id)
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    props = metric_properties(trace_id=tid, name=name, value=value)
    return _send(METRIC, tid, props, distinct_id, target)
