"""`posthog_llm.context(...)`: identity and properties that follow the code that runs inside it.

Built on contextvars, so it follows asyncio tasks and threads started with a copied context
(`contextvars.copy_context().run`, `asyncio.to_thread`, LangChain's executors).
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterator, Mapping
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Scope", "context", "current_scope", "with_trace_id"]

log = logging.getLogger("posthog_llm")


@dataclass(frozen=True)
class Scope:
    """Who an event belongs to and what it carries besides its `$ai_*` facts.

    Every field is optional; `None` means "not set here" so scopes can be layered.
    """

    distinct_id: str | None = None
    trace_id: str | None = None
    session_id: str | None = None
    properties: Mapping[str, Any] = field(default_factory=dict)
    groups: Mapping[str, Any] = field(default_factory=dict)
    privacy_mode: bool | None = None

    def merged(self, inner: Scope | None) -> Scope:
        """`inner` wins for plain fields (but privacy, once on, stays on); properties and groups
        merge key by key."""
        if inner is None or inner is EMPTY_SCOPE:
            return self
        if self is EMPTY_SCOPE:
            return inner
        return Scope(
            distinct_id=_first(inner.distinct_id, self.distinct_id),
            trace_id=_first(inner.trace_id, self.trace_id),
            session_id=_first(inner.session_id, self.session_id),
            properties={**self.properties, **inner.properties}
            if inner.properties
            else self.properties,
            groups={**self.groups, **inner.groups} if inner.groups else self.groups,
            # Privacy is switched on by any level and off by none: a context's `False` (a
            # per-user opt-out flag passed through) does not undo a handler's or client's `True`.
            privacy_mode=True
            if inner.privacy_mode or self.privacy_mode
            else _first(inner.privacy_mode, self.privacy_mode),
        )


def _first(a: Any, b: Any) -> Any:
    return a if a is not None else b


def scope_opened_inside(
    root_scope: Scope, root_context: Scope | None, overrides: Scope | None = None
) -> Scope | None:
    """The scope of framework work starting here, when a `posthog_llm.context(...)` was opened
    inside its trace (a step marking one model call private, naming its user), else None: the
    root's scope with this context's identity, properties and privacy merged in, and the root
    run's own `overrides` (per-run metadata, which the context stack does not hold) again on top.

    `root_context` is `current_scope()` as it was when the root started. Hot path (once per
    framework span): two identity checks when nothing was opened inside.

    >>> root = current_scope()
    >>> scope_opened_inside(Scope(), root) is None
    True
    >>> with context(distinct_id="user_42"):
    ...     scope_opened_inside(Scope(), root).distinct_id
    'user_42'
    """
    here = _current.get()
    if here is root_context or here is EMPTY_SCOPE:
        return None
    return root_scope.merged(here).merged(overrides)


def with_trace_id(scope: Scope, trace_id: str) -> Scope:
    """`scope.merged(Scope(trace_id=trace_id))` for a hot path (once per trace): a copy of the
    frozen dataclass's fields, not two `__init__`s through `object.__setattr__` (~2 µs)."""
    if scope.trace_id == trace_id:
        return scope
    copy = object.__new__(Scope)
    fields = copy.__dict__  # Scope (above) has no slots; its test compares with the merge
    fields.update(scope.__dict__)
    fields["trace_id"] = trace_id
    return copy


EMPTY_SCOPE = Scope()
_current: ContextVar[Scope] = ContextVar("posthog_llm_scope", default=EMPTY_SCOPE)


class NamedTrace:
    """The trace a `context(trace_id=...)` block names, and whether a root (a framework's trace,
    a span) already opened in it: that first root is the trace's `$ai_trace`; later roots in
    the block join it as its children rather than send an `$ai_trace` of their own."""

    __slots__ = ("trace_id", "claimed")

    def __init__(self, trace_id: str) -> None:
        self.trace_id = trace_id
        self.claimed = False


_named: ContextVar[NamedTrace | None] = ContextVar("posthog_llm_named_trace", default=None)


def named_trace() -> NamedTrace | None:
    """The trace the innermost `context(trace_id=...)` block here names, or None."""
    return _named.get()


def current_scope() -> Scope:
    """The scope of the innermost active `context(...)`, or an empty one."""
    return _current.get()


def make_scope(
    *,
    distinct_id: Any = None,
    trace_id: Any = None,
    session_id: Any = None,
    properties: Mapping[str, Any] | None = None,
    groups: Mapping[str, Any] | None = None,
    privacy_mode: bool | None = None,
) -> Scope:
    """A Scope from user-given values, checked: a wrong type is a `TypeError` that names it.

    Ids are strings, ints or UUIDs (made text); property and group names are strings; a group's
    key is a string, an int or a UUID.

    >>> make_scope(distinct_id=["u1"])
    Traceback (most recent call last):
    TypeError: distinct_id must be a string, an int or a UUID, got list: ['u1']
    """
    if privacy_mode is not None and not isinstance(privacy_mode, bool):
        raise TypeError(f"privacy_mode must be a bool, got {type(privacy_mode).__name__}")
    return Scope(
        distinct_id=_checked_id("distinct_id", distinct_id),
        trace_id=_checked_id("trace_id", trace_id),
        session_id=_checked_id("session_id", session_id),
        properties=_checked_names("properties", properties, keys=False),
        groups=_checked_names("groups", groups, keys=True),
        privacy_mode=privacy_mode,
    )


def lenient_scope(
    *,
    distinct_id: Any = None,
    trace_id: Any = None,
    session_id: Any = None,
    properties: Any = None,
    groups: Any = None,
    privacy_mode: Any = None,
    refused: list[str] | None = None,
) -> Scope:
    """`make_scope` for values read while the user's code runs (a LangChain run's metadata, a
    wrapper call's `posthog_*` arguments): a value it would refuse is left out, never raised
    into that code; why goes into `refused` when given.

    Such a value can switch privacy on, never off: `privacy_mode=False` for one call or run
    leaves the handler's, the wrapper's and the context's choice in charge."""
    if privacy_mode is False:
        privacy_mode = None
    fields = {
        "distinct_id": distinct_id,
        "trace_id": trace_id,
        "session_id": session_id,
        "properties": properties,
        "groups": groups,
        "privacy_mode": privacy_mode,
    }
    try:
        return make_scope(**fields)
    except TypeError:
        pass
    kept = {}
    for name, value in fields.items():
        try:
            make_scope(**{name: value})
        except TypeError as exc:
            log.debug("posthog-llm: left out %s (%s)", name, exc)
            if refused is not None:
                refused.append(str(exc))
            continue
        kept[name] = value
    return make_scope(**kept)


_ID_TYPES = (str, int, uuid.UUID)


def _is_id(value: Any) -> bool:
    return isinstance(value, _ID_TYPES) and not isinstance(value, bool)


def _checked_id(name: str, value: Any) -> str | None:
    if value is None or _is_id(value):
        return id_text(value)
    raise TypeError(
        f"{name} must be a string, an int or a UUID, got {type(value).__name__}: {value!r:.60}"
    )


def _checked_names(name: str, value: Any, *, keys: bool) -> dict[str, Any]:
    """A copy of a properties or groups mapping, its names (and for groups, keys) checked."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a mapping, got {type(value).__name__}")
    copy = dict(value)
    for key, item in copy.items():
        if type(key) is not str and not isinstance(key, str):
            raise TypeError(f"{name} names must be strings, got {type(key).__name__}: {key!r:.60}")
        if keys and not _is_id(item):
            raise TypeError(
                f"groups[{key!r}] must be the group's key (a string, an int or a UUID), got "
                f"{type(item).__name__}"
            )
    return copy


def id_text(value: Any) -> str | None:
    """An id as text, or None when there is none: an empty or blank id counts as not given.

    PostHog refuses a whole batch over one empty distinct id, so `distinct_id=user.id or ""`
    must make events personless, not lose them.

    >>> id_text(42), id_text("  "), id_text(None)
    ('42', None, None)
    """
    if value is None:
        return None
    text = value if type(value) is str else str(value)
    return text if text and not text.isspace() else None


@contextlib.contextmanager
def context(
    *,
    distinct_id: Any = None,
    trace_id: Any = None,
    session_id: Any = None,
    properties: Mapping[str, Any] | None = None,
    groups: Mapping[str, Any] | None = None,
    privacy_mode: bool | None = None,
) -> Iterator[Scope]:
    """Apply identity and properties to every event captured inside the block.

    Nested contexts merge: inner values win, properties and groups are merged key by key.

    >>> import posthog_llm
    >>> with posthog_llm.context(distinct_id="user_123", properties={"plan": "pro"}):
    ...     pass  # chain.invoke(...), client.chat.completions.create(...)
    """
    scope = _current.get().merged(
        make_scope(
            distinct_id=distinct_id,
            trace_id=trace_id,
            session_id=session_id,
            properties=properties,
            groups=groups,
            privacy_mode=privacy_mode,
        )
    )
    token = _current.set(scope)
    named = None
    if trace_id is not None and scope.trace_id:
        outer = _named.get()
        if outer is None or outer.trace_id != scope.trace_id:  # the same trace named again:
            named = _named.set(NamedTrace(scope.trace_id))  # one root for both blocks
    try:
        yield scope
    finally:
        if named is not None:
            try:
                _named.reset(named)
            except ValueError:  # exited in another context: that context's own is left alone
                pass
        try:
            _current.reset(token)
        except ValueError:
            # Exited in another context (a generator finalised elsewhere). Only a context that
            # still has this block's scope (a copy of the one it was entered in) gets the scope
            # from before it back; any other is someone else's request: left as it is.
            if _current.get() is scope:
                old = token.old_value
                _current.set(EMPTY_SCOPE if old is Token.MISSING else old)
