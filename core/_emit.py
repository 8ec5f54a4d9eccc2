"""What integrations hold: one object that resolves the client and the scope, and ships events.

Integrations translate framework hooks into the builders of `_events` and call `Emitter.emit`.
With our own `Client`, properties may be passed as a zero-argument callable: it runs on the
sender's worker thread, which keeps message conversion off the user's hot path. With a
posthog-python client (a `posthog.Posthog` instance or the `posthog` module) the event is
built at once and handed to its `capture(event, distinct_id=..., properties=..., groups=...)`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, Union

from ._client import Client, get_client, on_shutdown, watch_foreign_client
from ._context import EMPTY_SCOPE, Scope, current_scope, id_text, make_scope
from ._events import PROP_SESSION_ID, apply_privacy
from ._observation import current_observation, inherited_client
from ._serialize import MAX_EVENT_BYTES, dumps, fit_event, to_json_safe

__all__ = [
    "Emitter",
    "capture_internal_exceptions",
    "report_internal_error",
    "safely",
    "check_client",
    "PropertiesOrBuilder",
]

log = logging.getLogger("posthog_llm")

PropertiesOrBuilder = Union[dict[str, Any], Callable[[], dict[str, Any]]]

# Tests set this to collect internal errors that were swallowed, so they can fail loudly.
_internal_error_hooks: list[Callable[[BaseException], None]] = []


class capture_internal_exceptions:
    """`with capture_internal_exceptions(): ...` logs and swallows our own errors.

    Telemetry must never break the user's code; the user's own exceptions are re-raised by the
    integrations outside this guard.
    """

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        if exc is None:
            return False
        if not isinstance(exc, Exception):
            return False  # KeyboardInterrupt, SystemExit, GeneratorExit pass through
        report_internal_error(exc)
        return True


def report_internal_error(exc: BaseException) -> None:
    log.debug("posthog-llm internal error (ignored)", exc_info=exc)
    for hook in list(_internal_error_hooks):
        try:
            hook(exc)
        except Exception:
            pass


_T = TypeVar("_T")


def safely(read: Callable[..., _T], *args: Any) -> _T | None:
    """One fact of an event: if reading it fails, the event goes out without it.

    >>> safely(int, "3"), safely(int, "three")
    (3, None)
    """
    try:
        return read(*args)
    except Exception as exc:
        report_internal_error(exc)
        return None


def check_client(client: Any) -> Any:
    """Validate a `client=` argument at configuration time."""
    if client is None or isinstance(client, Client):
        return client
    if not callable(getattr(client, "capture", None)):
        raise TypeError(
            "client must be a posthog_llm.Client, a posthog-python client (posthog.Posthog or the "
            f"posthog module), or None; got {type(client).__name__} without a capture() method"
        )
    watch_foreign_client(client)
    return client


class Emitter:
    """Resolves identity (per call > `posthog_llm.context` > integration defaults) and ships events."""

    def __init__(
        self,
        client: Any = None,
        *,
        framework: str | None = None,
        distinct_id: Any = None,
        trace_id: Any = None,
        session_id: Any = None,
        properties: Mapping[str, Any] | None = None,
        groups: Mapping[str, Any] | None = None,
        privacy_mode: bool | None = False,
    ) -> None:
        self._client = check_client(client)
        self.framework = framework
        self.defaults = make_scope(
            distinct_id=distinct_id,
            trace_id=trace_id,
            session_id=session_id,
            properties=properties,
            groups=groups,
            privacy_mode=privacy_mode if privacy_mode else None,
        )

    @property
    def client(self) -> Any:
        """Where this emitter's events go now: its own client, else the one of the span open
        here (one trace, one destination), else the default client."""
        client = self.destination()
        return client if client is not None else get_client()

    def destination(self) -> Any:
        """Where work starting now sends when it ends, wherever that is: this emitter's own
        client, else the client of the span open here; None for the default client, found
        when it is sent. (A stream read after its span has ended still goes where the span's
        trace went.)"""
        client = self._client
        return client if client is not None else inherited_client()

    def on_shutdown(self, callback: Callable[[], None]) -> None:
        """Have `callback()` hand over what the integration still holds (queue it through this
        emitter) when the client it sends to shuts down, and at process exit, before the queue
        is drained; held weakly, bounded by the shutdown's deadline (see `Client.shutdown`)."""
        on_shutdown(callback, self._client)

    def scope(self, overrides: Scope | None = None) -> Scope:
        """The scope for a new event or trace, innermost last: the integration's defaults, the
        open observation's (the enclosing trace's identity and trace id), the active context, a
        posthog-python client's context identity, then per-call overrides."""
        scope = self.defaults
        obs = current_observation()
        if obs is not None:
            scope = scope.merged(obs.scope)
        ctx = current_scope()
        if ctx is not EMPTY_SCOPE:
            scope = scope.merged(ctx)
        if self._client is not None and not isinstance(self._client, Client):
            scope = _with_posthog_context(scope)
        if overrides is not None and overrides is not EMPTY_SCOPE:
            scope = scope.merged(overrides)
        return scope

    def privacy(self, scope: Scope) -> bool:
        """Privacy mode from the scope or the client (ours, or posthog-python's `privacy_mode`)."""
        if scope.privacy_mode:
            return True
        client = self.client
        return bool(getattr(client, "privacy_mode", False))

    @property
    def enabled(self) -> bool:
        """False while capture is off, or while the default client cannot be built from the
        environment (`get_client` says why, once): every hook then calls straight through."""
        client = self.destination()
        if client is None:
            try:
                client = get_client()
            except Exception:
                return False
        return not getattr(client, "disabled", False)

    def emit(
        self,
        event: str,
        properties: PropertiesOrBuilder,
        scope: Scope,
        *,
        trace_id: Any = None,
        client: Any = None,
    ) -> None:
        """Ship one `$ai_*` event. Never raises. `client`: where it goes when the work that
        made it named its client at its start (`destination`); by default, `self.client`.

        Anonymous events (no distinct id in scope) use the trace id as distinct id and are
        personless, so every event of one trace belongs to the same anonymous id.
        """
        # try/except rather than the context manager: nothing to set up on the hot path.
        try:
            if client is None:
                client = self.client
            distinct_id, anonymous, tid, privacy, groups = _identity(client, scope, trace_id)
            build = _Finish(properties, scope, anonymous, privacy)
            if type(client) is Client or isinstance(client, Client):
                client._capture_lazy(event, distinct_id, build, groups, privacy, tid)
                return
            _capture_foreign(client, event, distinct_id, build(), groups)
        except Exception as exc:  # KeyboardInterrupt, SystemExit pass through
            report_internal_error(exc)

    def emit_many(
        self,
        build: Callable[[], list[Any]],
        scope: Scope,
        *,
        trace_id: Any = None,
        client: Any = None,
    ) -> None:
        """Ship several events of one trace, built together later. Never raises.

        `build()` returns `(event name, properties)` pairs; a third item is the event's own
        scope (None: the trace's), when it adds properties or privacy to the trace's (a step
        with its own metadata); a fourth the event's own time (`time.time()` seconds; None: when
        the trace was queued). With our own `Client` it runs once on the worker thread, so a
        whole trace costs the caller one queued item (the OpenTelemetry processor and the
        LangChain handler hand over finished traces this way). The events share the scope's
        identity, exactly as if each had gone through `emit`.
        """
        try:
            if client is None:
                client = self.client
            distinct_id, anonymous, tid, privacy, groups = _identity(client, scope, trace_id)
            finish = _FinishMany(build, scope, anonymous, privacy)
            if type(client) is Client or isinstance(client, Client):
                client._capture_lazy_many(distinct_id, finish, groups, privacy, tid)
                return
            for event, props, _, own_id, own_groups in finish():
                _capture_foreign(client, event, own_id or distinct_id, props, own_groups or groups)
        except Exception as exc:  # KeyboardInterrupt, SystemExit pass through
            report_internal_error(exc)


def _identity(
    client: Any, scope: Scope, trace_id: Any
) -> tuple[Any, bool, Any, bool, dict[str, Any] | None]:
    """(distinct id, anonymous, trace id, privacy, groups) of the events of one scope.

    Anonymous events (no distinct id in scope) use the trace id as distinct id."""
    distinct_id = scope.distinct_id
    anonymous = not distinct_id  # a Scope built by hand may still hold ""
    tid = str(trace_id) if trace_id is not None else scope.trace_id
    if anonymous:
        distinct_id = tid
    privacy = True if scope.privacy_mode else bool(getattr(client, "privacy_mode", False))
    groups = dict(scope.groups) if scope.groups else None
    return distinct_id, anonymous, tid, privacy, groups


def _capture_foreign(
    client: Any, event: str, distinct_id: Any, props: dict[str, Any], groups: Any
) -> Any:
    """Hand one built event to a posthog-python client; what its `capture` returns."""
    props = _fit_for_foreign_client(props)
    kwargs: dict[str, Any] = {"distinct_id": distinct_id, "properties": props}
    if groups:
        props["$groups"] = groups
        kwargs["groups"] = groups
    return client.capture(event, **kwargs)


def _with_posthog_context(scope: Scope) -> Scope:
    """posthog-python's `identify_context` / `set_context_session`, beneath our own context."""
    if scope.distinct_id is not None and scope.session_id is not None:
        return scope
    try:
        from posthog import contexts
    except Exception:
        return scope
    distinct_id = safely(contexts.get_context_distinct_id)
    session_id = safely(contexts.get_context_session_id)
    if distinct_id is None and session_id is None:
        return scope
    return Scope(distinct_id=id_text(distinct_id), session_id=id_text(session_id)).merged(scope)


class _Finish:
    """`_finish_properties` bound to one event's arguments: what the worker calls.

    One small object per queued event (a `functools.partial` is three: itself, its argument
    tuple and a keyword dict), and queued events live until the worker builds them: fewer
    objects for the garbage collector to walk while a burst is queued.
    """

    __slots__ = ("properties", "scope", "anonymous", "privacy")

    def __init__(
        self, properties: PropertiesOrBuilder, scope: Scope, anonymous: bool, privacy: bool
    ) -> None:
        self.properties = properties
        self.scope = scope
        self.anonymous = anonymous
        self.privacy = privacy

    def __call__(self) -> dict[str, Any]:
        return _finish_properties(self.properties, self.scope, self.anonymous, self.privacy)


def _finish_properties(
    properties: PropertiesOrBuilder, scope: Scope, anonymous: bool, privacy: bool
) -> dict[str, Any]:
    props = properties() if callable(properties) else dict(properties)
    if scope.properties:
        # What the user passes wins over what we computed: this is how custom costs
        # (`$ai_total_cost_usd`, ...) or a gateway's provider name reach PostHog.
        props.update(scope.properties)
    if scope.session_id is not None and PROP_SESSION_ID not in props:
        props[PROP_SESSION_ID] = scope.session_id
    if anonymous:
        props["$process_person_profile"] = False
    if privacy:
        apply_privacy(props)
    return props


# One finished event of a trace: name, properties, own time, own distinct id, own groups.
Finished = tuple[str, dict[str, Any], "float | None", "str | None", "dict[str, Any] | None"]


class _FinishMany:
    """`emit_many`'s finishing step: the built events with the scope's policies applied."""

    __slots__ = ("build", "scope", "anonymous", "privacy")

    def __init__(
        self, build: Callable[[], list[Any]], scope: Scope, anonymous: bool, privacy: bool
    ) -> None:
        self.build = build
        self.scope = scope
        self.anonymous = anonymous
        self.privacy = privacy

    def __call__(self) -> list[Finished]:
        """`(event, properties, own time or None, own distinct id or None, own groups or
        None)` for each built event: a step with a scope of its own (a `posthog_llm.context`
        opened inside the trace naming its user and groups) is that user's, in those groups."""
        scope, anonymous, privacy = self.scope, self.anonymous, self.privacy
        finished: list[Finished] = []
        for item in self.build():
            own = item[2] if len(item) > 2 else None
            when = item[3] if len(item) > 3 else None
            own_id = own_groups = None
            if own is None or own is scope:
                props = _finish_properties(item[1], scope, anonymous, privacy)
            else:
                own_privacy = True if own.privacy_mode else privacy
                if own.distinct_id and own.distinct_id != scope.distinct_id:
                    own_id = str(own.distinct_id)
                if own.groups and own.groups != scope.groups:
                    own_groups = dict(own.groups)
                own_anonymous = anonymous and own_id is None
                props = _finish_properties(item[1], own, own_anonymous, own_privacy)
            finished.append((item[0], props, when, own_id, own_groups))
        return finished


def _fit_for_foreign_client(props: dict[str, Any]) -> dict[str, Any]:
    """posthog-python drops events with values it cannot serialize or over ~1 MB: fix both."""
    import json

    safe: dict[str, Any] = to_json_safe(props)
    if len(dumps(safe)) <= MAX_EVENT_BYTES:
        return safe
    fitted: dict[str, Any] = json.loads(fit_event({"properties": safe}))["properties"]
    return fitted
