"""`posthog_llm.Client`: configuration, `capture()`, `flush()`, `shutdown()`, `stats()`."""

from __future__ import annotations

import atexit
import datetime as _dt
import itertools
import logging
import math
import os
import threading
import time
import uuid as _uuid
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

from ._context import EMPTY_SCOPE, Scope, current_scope, id_text
from ._events import (
    EMBEDDING,
    EVENT_PREFIX,
    GENERATION,
    LIB_NAME,
    OWN_COST_PROPERTIES,
    PROP_INPUT_COST_USD,
    PROP_MODEL,
    PROP_OUTPUT_COST_USD,
    PROP_PARENT_ID,
    PROP_SESSION_ID,
    PROP_TOTAL_COST_USD,
    PROP_TRACE_ID,
    TRACE,
    apply_privacy,
)
from ._exit_hooks import register_exit_hooks
from ._ids import uuid4_str
from ._observation import current_observation
from ._sampling import keep_trace
from ._sender import BatchSender, report_skipped_event
from ._sender_stats import RateLimitedWarning
from ._serialize import (
    MAX_AI_EVENT_BYTES,
    MAX_EVENT_BYTES,
    MAX_ID_CHARS,
    encode_plain_message,
    estimate_size,
    fit_event,
    to_json_safe,
)
from ._snapshot import freeze_values, thaw_values
from ._spool import DEFAULT_SPOOL_MAX_BYTES, Spool, default_spool_dir, spool_path
from ._timestamps import ORIGINAL_TIMESTAMP, event_timestamp
from ._version import __version__
from .destinations import Destination, PostHogHTTPDestination, SQLiteDestination
from .destinations.sqlite import DEFAULT_DB_PATH

__all__ = ["Client", "get_client", "set_client", "DEFAULT_HOST"]

log = logging.getLogger("posthog_llm")

DEFAULT_HOST = "https://us.i.posthog.com"

BeforeSend = Callable[[dict[str, Any]], "dict[str, Any] | None"]

_T = TypeVar("_T")
_live_clients: weakref.WeakSet[Client] = weakref.WeakSet()

# What integrations hand over when a client shuts down (`on_shutdown`): key -> (weak reference
# to the callback, the client it sends to, None for the default client). An entry leaves when its
# callback dies (the weak reference's own callback), so adding one costs the same however many
# handlers are alive, and no live one is ever pushed out.
_shutdown_callbacks: dict[int, tuple[Callable[[], Any], Any]] = {}
# The same callback for the same client registered again is the entry it has: (id of the
# bound object or function, id of the method's function, id of the client) -> key.
_shutdown_index: dict[tuple[int, int, int], int] = {}
_shutdown_keys = itertools.count()
_shutdown_lock = threading.Lock()


def on_shutdown(callback: Callable[[], None], client: Any = None) -> None:
    """Call `callback()` before `client` (None: whichever client is the default then) drains at
    `shutdown()`, and before every client drains at process exit.

    For an integration holding work it sends later (a trace waiting for a stream the caller may
    never finish reading): the callback hands it over (queues it) so it is delivered rather than
    lost. It must be quick: it runs within the shutdown's deadline, and callbacks past the
    deadline are skipped. Held weakly (a bound method lives as long as its object); what it
    raises is logged and ignored.
    """
    bound = hasattr(callback, "__self__") and hasattr(callback, "__func__")
    owner = callback.__self__ if bound else callback  # type: ignore[attr-defined]
    ident = (id(owner), id(callback.__func__) if bound else 0, id(client))  # type: ignore[attr-defined]
    key = next(_shutdown_keys)

    def forget(_: Any) -> None:
        # Runs whenever the callback's object is collected, maybe inside another thread's
        # locked section: single dict operations, no lock.
        _shutdown_callbacks.pop(key, None)
        if _shutdown_index.get(ident) == key:
            _shutdown_index.pop(ident, None)

    ref: Callable[[], Any]
    if bound:
        ref = weakref.WeakMethod(callback, forget)
    else:
        ref = weakref.ref(callback, forget)
    with _shutdown_lock:
        known = _shutdown_index.get(ident)
        if known is not None and known in _shutdown_callbacks:
            return  # registered already: called once
        _shutdown_callbacks[key] = (ref, client)
        _shutdown_index[ident] = key


# The core's own hand-overs (open tracked streams, open generator spans): module functions
# called with the client shutting down (None: every client, at process exit), before the
# integrations' callbacks. Each picks what it holds for that client (`sends_to`).
_core_shutdown_hooks: list[Callable[[Any], None]] = []


def on_any_shutdown(hook: Callable[[Any], None]) -> None:
    """Core only: call `hook(client)` at every client's shutdown and `hook(None)` at exit."""
    if hook not in _core_shutdown_hooks:
        _core_shutdown_hooks.append(hook)


# posthog-python clients work is sent to, whose shutdown and exit hand it over first.
_watched_foreign: weakref.WeakSet[Any] = weakref.WeakSet()
_FOREIGN_HAND_OVER_BUDGET = 5.0


def watch_foreign_client(client: Any) -> None:
    """Hand over open work (a stream the caller still holds, an unfinished trace) that sends to
    posthog-python client `client` before it shuts down, as our own clients do.

    posthog-python joins its worker at exit from an `atexit` hook it registers when the client
    is made, which runs before ours (registered at import); one registered now runs before it.
    Its `shutdown()` is wrapped on the instance (never on the `posthog` module)."""
    try:
        if client in _watched_foreign:
            return
        _watched_foreign.add(client)
        ref = weakref.ref(client)
    except TypeError:  # cannot be weakly referenced: exit is handled by our own hook
        return
    atexit.register(_hand_over_to_foreign, ref)
    if isinstance(client, type(os)):  # the `posthog` module: its functions are left alone
        return
    original = getattr(client, "shutdown", None)
    if not callable(original) or getattr(original, "_posthog_llm_hand_over", False):
        return

    def shutdown(*args: Any, **kwargs: Any) -> Any:
        _hand_over_to_foreign(ref)
        return original(*args, **kwargs)

    shutdown._posthog_llm_hand_over = True  # type: ignore[attr-defined]
    try:
        client.shutdown = shutdown
    except Exception:  # a client that refuses attributes: exit is still handled
        pass


def _hand_over_to_foreign(ref: weakref.ref[Any]) -> None:
    client = ref()
    if client is not None:
        try:
            _run_shutdown_callbacks(client, time.monotonic() + _FOREIGN_HAND_OVER_BUDGET)
        except Exception:
            log.debug("posthog-llm: a shutdown hand-over failed (ignored)", exc_info=True)


def sends_to(target: Any, client: Any) -> bool:
    """Whether work sending to `target` (None: the default client) goes out with `client`'s
    shutdown (None: process exit, every client)."""
    if client is None or target is client:
        return True
    return target is None and _default_client is client


def _run_shutdown_callbacks(client: Any, deadline: float) -> None:
    """Run the callbacks for `client` (None: all of them, at process exit) until `deadline`.

    The core's own hand-overs always run: they only queue what is open, and skipping them would
    leave it to be refused by the closed client at exit."""
    for hook in list(_core_shutdown_hooks):
        try:
            hook(client)
        except Exception:
            log.debug("posthog-llm: a shutdown hand-over failed (ignored)", exc_info=True)
    if not _shutdown_callbacks:
        return
    with _shutdown_lock:
        entries = settled_list(_shutdown_callbacks.values())
    for ref, target in entries:
        if not sends_to(target, client):
            continue
        if time.monotonic() >= deadline:
            return
        callback = ref()
        if callback is None:
            continue
        try:
            callback()
        except Exception:
            log.debug("posthog-llm: a shutdown callback failed (ignored)", exc_info=True)


def settled_list(items: Iterable[_T]) -> list[_T]:
    """`list(items)` of a collection that weak references or other threads may change while it
    is read (a `WeakSet`, a dict's view): read again when that happens; empty if it never
    settles."""
    for _ in range(8):
        try:
            return list(items)
        except RuntimeError:  # changed while it was read: read it again
            continue
    return []


def _env(*names: str) -> str | None:
    for name in names:
        value = os.environ.get(name)
        if value and value.strip():
            return value.strip()
    return None


def _check_host(host: str) -> str:
    try:
        parts = urlsplit(host)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError:
        parts = None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        # PostHog's paths are appended to the URL: a query, a fragment or spaces would take
        # them somewhere else (or nowhere).
        or parts.query
        or parts.fragment
        or "?" in host
        or "#" in host
        or any(c.isspace() for c in host)
    ):
        raise ValueError(
            f"host must be an http(s) URL such as {DEFAULT_HOST!r} or 'http://localhost:8010', got {host!r}"
        )
    return host.rstrip("/")


def _is_loopback(host: str | None) -> bool:
    name = (urlsplit(host).hostname or "") if host else ""
    return name in ("localhost", "::1") or name.startswith("127.")


# Seconds a timeout or interval may be at most (about 31 years): beyond the platform's limit
# a thread's wait raises, and the worker would die.
_MAX_SECONDS = 1e9


def _positive(name: str, value: Any, *, integer: bool = False, allow_zero: bool = False) -> Any:
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise TypeError(f"{name} must be a {'whole' if integer else ''} number, got {value!r}")
    if not integer and not (math.isfinite(value) and value <= _MAX_SECONDS):
        raise ValueError(f"{name} must be a finite number of seconds up to 1e9, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return value


_before_send_warning = RateLimitedWarning(60.0)
_environment_warning = RateLimitedWarning(60.0)
_invalid_warning = RateLimitedWarning(10.0)
_uuid_warning = RateLimitedWarning(10.0)
_properties_warning = RateLimitedWarning(10.0)
# The event name of a queued item that holds several events of one trace (`_capture_lazy_many`).
_MANY = "$posthog_llm_many"
# The event name of such an item whose trace the sample rate leaves out: the worker builds it
# only to count its events as `sampled_out`, and sends nothing.
_MANY_SAMPLED_OUT = "$posthog_llm_many_sampled_out"
# What such an item counts for when the worker decides to wake (a trace of the OpenTelemetry
# or LlamaIndex integrations is typically 3-6 events). Counted as one, a trace would wait for
# `flush_at` traces, long enough for its objects to be promoted to the collector's oldest
# generation, which then triggers full collections on the caller's thread.
_EVENTS_PER_TRACE = 4
# The key under which a captured event's properties copy carries the rest of the event (a NUL
# first: no JSON property of anyone's is named like this).
_META = "\x00posthog_llm_event"
# Timestamps (seconds since the epoch) formatted by `_iso_utc`: up to the year 9999.
_MAX_FAST_TIMESTAMP = 253_402_300_799.0
_second_text: tuple[int, str] = (-1, "")


def _valid_uuid(value: Any) -> str:
    """A caller's uuid as PostHog's canonical text; one that is not a uuid is replaced by a new
    one (PostHog refuses a batch over an invalid uuid), with a warning."""
    if isinstance(value, _uuid.UUID):
        return str(value)
    try:
        return str(_uuid.UUID(str(value)))
    except ValueError:
        _uuid_warning.warn("posthog-llm: uuid %r is not a uuid; the event got a new one", value)
        return uuid4_str()


def _iso_utc(timestamp: float) -> str:
    """`datetime.fromtimestamp(timestamp, utc).isoformat()`, from a per-second cache (~0.3 µs
    instead of ~1.4 µs on the worker's per-event path; the same text, microseconds rounded
    half-even as `datetime` does)."""
    global _second_text
    second = int(timestamp)
    micro = round((timestamp - second) * 1e6)
    if micro >= 1_000_000:
        second += 1
        micro -= 1_000_000
    cached, text = _second_text
    if second != cached:
        text = _dt.datetime.fromtimestamp(second, _dt.timezone.utc).isoformat()[:19]
        _second_text = (second, text)
    return f"{text}.{micro:06d}+00:00" if micro else f"{text}+00:00"


# Where `capture` keeps properties given as something other than a mapping.
NOT_A_MAPPING = "posthog_llm_properties"
_PRICED_EVENTS = frozenset({GENERATION, EMBEDDING})


def _add_estimated_cost(props: dict[str, Any]) -> None:
    """The pricing table's estimate as `$ai_*_cost_usd`, unless the event carries a cost (or
    a price) of its own, or its model or tokens are unknown to the table. Token counts are
    read as the local viewer reads them for its own estimate (`as_count`)."""
    if any(key in props for key in OWN_COST_PROPERTIES):
        return
    model = props.get(PROP_MODEL)
    if type(model) is not str or not model:
        return
    # Only for clients that opted in.
    from .local.pricing import default_pricing

    try:
        cost = default_pricing().estimate_event(props)
    except Exception as exc:  # a pricing file that cannot be read: the event goes without
        from ._emit import report_internal_error  # `_emit` imports this module

        report_internal_error(exc)
        return
    if cost is not None:
        props[PROP_INPUT_COST_USD] = cost["input_cost_usd"]
        props[PROP_OUTPUT_COST_USD] = cost["output_cost_usd"]
        props[PROP_TOTAL_COST_USD] = cost["total_cost_usd"]


def _not_a_mapping(properties: Any) -> dict[str, Any]:
    """Properties that are not a mapping, kept whole under one key (the event is never dropped
    for its content), with a warning."""
    _properties_warning.warn(
        "posthog-llm: capture(properties=...) takes a mapping, got %s; it was sent as the "
        "property %r",
        type(properties).__name__,
        NOT_A_MAPPING,
    )
    return {NOT_A_MAPPING: properties}


def _distinct_id_text(distinct_id: Any) -> str | None:
    """The id as text, cut to `MAX_ID_CHARS`; None (personless) when it has no usable text."""
    try:
        text = id_text(distinct_id)
    except Exception:  # its str() raises: the event is still captured, personless
        _invalid_warning.warn("posthog-llm: a distinct_id that cannot be read as text was left out")
        return None
    if text is not None and len(text) > MAX_ID_CHARS:
        text = text[:MAX_ID_CHARS]
    return text


def _groups(groups: Any) -> dict[str, Any] | None:
    """`groups` as a dict, or None (with a warning) when it is not a mapping: the event is sent
    without them rather than lost."""
    try:
        if isinstance(groups, Mapping) or hasattr(groups, "keys"):
            return dict(groups)
    except Exception:
        pass
    _invalid_warning.warn(
        "posthog-llm: groups must be a mapping of group type to key; they were left out"
    )
    return None


def _beneath(
    scope: Scope, event: str, props: dict[str, Any], distinct_id: Any, groups: Any
) -> tuple[dict[str, Any], Any, Any]:
    """`scope`'s identity, session, trace id, properties and groups beneath the call's own
    (which win), and its privacy: returns the properties, distinct id and groups."""
    if distinct_id is None:
        distinct_id = scope.distinct_id
    if scope.properties:
        props = {**scope.properties, **props}
    if scope.session_id is not None:
        props.setdefault(PROP_SESSION_ID, scope.session_id)
    if scope.trace_id is not None and event.startswith(EVENT_PREFIX):
        props.setdefault(PROP_TRACE_ID, scope.trace_id)
    if scope.groups:
        # Groups that are not a mapping are left out (with a warning), the scope's kept.
        groups = {**scope.groups, **(_groups(groups) or {})} if groups else dict(scope.groups)
    if scope.privacy_mode:
        apply_privacy(props)
    return props, distinct_id, groups


class Client:
    """Captures events and ships them in the background to PostHog or the local store.

    With an api key (argument, `POSTHOG_API_KEY` or `POSTHOG_PROJECT_API_KEY`) events go to
    PostHog at `host` (argument or `POSTHOG_HOST`, default PostHog US Cloud). With neither a key
    nor a host they go to the local SQLite store at `db` (or `POSTHOG_LLM_DB`).

    >>> from posthog_llm import Client, InMemoryDestination
    >>> client = Client(destination=InMemoryDestination())
    >>> event_uuid = client.capture("$ai_generation", distinct_id="user_123",
    ...                             properties={"$ai_model": "gpt-4o", "$ai_trace_id": "t1"})
    >>> client.shutdown(timeout=5)
    True
    """

    def __init__(
        self,
        api_key: str | None = None,
        host: str | None = None,
        *,
        flush_at: int = 250,
        flush_interval: float = 0.5,
        max_queue_size: int = 100_000,
        max_queue_bytes: int = 64 * 1024 * 1024,
        gzip: bool = True,
        timeout: float = 10.0,
        max_retries: int = 6,
        privacy_mode: bool = False,
        before_send: BeforeSend | None = None,
        disabled: bool = False,
        db: str | os.PathLike[str] | None = None,
        destination: Destination | None = None,
        shutdown_timeout: float = 5.0,
        max_event_bytes: int = MAX_EVENT_BYTES,
        sample_rate: float = 1.0,
        max_ai_event_bytes: int = MAX_AI_EVENT_BYTES,
        spool: bool = True,
        spool_dir: str | os.PathLike[str] | None = None,
        spool_max_bytes: int = DEFAULT_SPOOL_MAX_BYTES,
        send_estimated_cost: bool = False,
        disable_geoip: bool = True,
    ) -> None:
        _positive("flush_at", flush_at, integer=True)
        _positive("flush_interval", flush_interval)
        _positive("max_queue_size", max_queue_size, integer=True)
        _positive("max_queue_bytes", max_queue_bytes, integer=True)
        _positive("timeout", timeout)
        _positive("max_retries", max_retries, integer=True, allow_zero=True)
        _positive("shutdown_timeout", shutdown_timeout, allow_zero=True)
        _positive("max_event_bytes", max_event_bytes, integer=True)
        if (
            isinstance(sample_rate, bool)
            or not isinstance(sample_rate, (int, float))
            or not 0.0 <= sample_rate <= 1.0
        ):
            raise ValueError(f"sample_rate must be a number from 0.0 to 1.0, got {sample_rate!r}")
        _positive("max_ai_event_bytes", max_ai_event_bytes, integer=True)
        _positive("spool_max_bytes", spool_max_bytes, integer=True)
        if not isinstance(spool, bool):
            raise TypeError(f"spool must be a bool, got {spool!r}")
        if before_send is not None and not callable(before_send):
            raise TypeError("before_send must be a callable taking and returning an event dict")
        # A string such as "no" is truthy: `disabled="no"` would silently turn capture off.
        for name, flag in (
            ("privacy_mode", privacy_mode),
            ("send_estimated_cost", send_estimated_cost),
            ("disable_geoip", disable_geoip),
            ("disabled", disabled),
            ("gzip", gzip),
        ):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be a bool, got {flag!r}")
        if api_key is not None and (not isinstance(api_key, str) or not api_key.strip()):
            raise ValueError("api_key must be a non-empty string")
        if host is not None and not isinstance(host, str):
            raise ValueError(f"host must be an http(s) URL string, got {host!r}")

        if db is not None and (api_key or host):
            raise ValueError(
                "db= is the local store and api_key=/host= send to PostHog: pass one of them"
            )
        explicit_store = db is not None and destination is None
        # `db=` given is the local store, whatever the environment says of PostHog.
        self.api_key = (
            api_key.strip()
            if api_key
            else None
            if explicit_store
            else _env("POSTHOG_API_KEY", "POSTHOG_PROJECT_API_KEY")
        )
        # A destination of the user's (or the store) is where events go: the environment's
        # PostHog host is not read, so a malformed one cannot stop such a client being made.
        env_host = None if db is not None or destination is not None else _env("POSTHOG_HOST")
        if host:
            self.host: str | None = _check_host(host)
        elif env_host:
            try:
                self.host = _check_host(env_host)
            except ValueError as exc:
                raise ValueError(f"POSTHOG_HOST: {exc}") from None
        else:
            self.host = None
        self.privacy_mode = privacy_mode
        self.before_send = before_send
        self.disabled = disabled
        self.shutdown_timeout = shutdown_timeout
        self.max_event_bytes = max_event_bytes
        self.sample_rate = float(sample_rate)
        self._sampled_out = 0
        self._sampled_lock = threading.RLock()
        self.max_ai_event_bytes = max_ai_event_bytes
        # Opt-in: the local pricing table's estimate goes out with each generation and
        # embedding that carries no cost of its own (PostHog then uses it instead of pricing
        # the event itself).
        self.send_estimated_cost = send_estimated_cost
        # As posthog-python's default: PostHog locating events by the sending server's address
        # would put the server's city on every user's events and person profile.
        self.disable_geoip = disable_geoip

        if destination is None:
            if self.api_key or self.host:
                if not self.api_key:
                    if not _is_loopback(self.host):
                        raise ValueError(
                            f"host is set ({self.host}) but no api_key: pass api_key= or set "
                            "POSTHOG_API_KEY"
                        )
                    # `posthog-llm serve` on this machine accepts any key on loopback.
                    self.api_key = "phc_local"
                self.host = self.host or DEFAULT_HOST
                destination = PostHogHTTPDestination(self.api_key, self.host, gzip=gzip)
            else:
                path = os.fspath(db) if db else (_env("POSTHOG_LLM_DB") or DEFAULT_DB_PATH)
                destination = SQLiteDestination(path)
                if not disabled:
                    log.info(
                        "posthog-llm: no PostHog api key or host configured; events go to the local "
                        "store %s (see them with `posthog-llm traces`)",
                        path,
                    )
        self.destination = destination
        # Sent to PostHog (not to the local store or a destination of the user's): the library,
        # and by default that PostHog must not locate events by the sending server's address.
        self._lib_properties: tuple[tuple[str, Any], ...] = ()
        if isinstance(destination, PostHogHTTPDestination):
            self._lib_properties = (("$lib", LIB_NAME), ("$lib_version", __version__))
            if disable_geoip:
                self._lib_properties += (("$geoip_disable", True),)
        # Events that cannot be delivered now wait on disk, one spool per (host, api key). The
        # local store and custom destinations have none.
        self.spool: Spool | None = None
        if spool and not disabled and isinstance(destination, PostHogHTTPDestination):
            base = os.fspath(spool_dir) if spool_dir else default_spool_dir()
            self.spool = Spool(
                spool_path(base, destination.host, destination.api_key), spool_max_bytes
            )
        self._sender = BatchSender(
            destination,
            self._serialize,
            flush_at=flush_at,
            flush_interval=flush_interval,
            max_queue_size=max_queue_size,
            max_queue_bytes=max_queue_bytes,
            timeout=timeout,
            max_retries=max_retries,
            spool=self.spool,
            estimate=_estimate_item,
            count=self._events_in_item,
        )
        _live_clients.add(self)
        register_exit_hooks(_shutdown_all_at_exit)

    def __repr__(self) -> str:
        return f"<posthog_llm.Client to {self.destination.description}>"

    # -- capture -------------------------------------------------------------------------------

    def capture(
        self,
        event: str,
        *,
        distinct_id: Any = None,
        properties: Mapping[str, Any] | None = None,
        groups: Mapping[str, Any] | None = None,
        timestamp: _dt.datetime | str | float | None = None,
        uuid: Any = None,
    ) -> str | None:
        """Queue one event and return its uuid (None when disabled or dropped). Never raises.

        Without `distinct_id` the event is personless (`$process_person_profile: false`).
        """
        if self.disabled:
            return None
        try:
            event = event if type(event) is str else ("" if event is None else str(event))
            if not event or event.isspace():
                self._sender.counters.add("invalid")
                _invalid_warning.warn("posthog-llm: an event without a name was not captured")
                return None
            if len(event) > MAX_ID_CHARS:
                event = event[:MAX_ID_CHARS]
            event_uuid = _valid_uuid(uuid) if uuid is not None else uuid4_str()
            if properties:
                try:  # inline: `capture` is the hot path, and a try costs nothing here
                    props = dict(properties)
                except (TypeError, ValueError):
                    props = _not_a_mapping(properties)
            else:
                props = {}
            scope = current_scope()
            if scope is not EMPTY_SCOPE:
                # Manual capture inside `posthog_llm.context(...)` gets the same identity as
                # the integrations: explicit arguments win.
                props, distinct_id, groups = _beneath(scope, event, props, distinct_id, groups)
            if PROP_TRACE_ID not in props and event.startswith(EVENT_PREFIX) and event != TRACE:
                # Made inside an open span (the user's, a framework's run): part of its trace,
                # under it, with the trace's identity beneath the call's own. (An `$ai_trace`
                # of its own is a trace of its own: the span's trace has one.)
                obs = current_observation()
                if obs is not None:
                    props[PROP_TRACE_ID] = obs.trace_id
                    props.setdefault(PROP_PARENT_ID, str(obs.span_id))
                    props, distinct_id, groups = _beneath(
                        obs.scope, event, props, distinct_id, groups
                    )
            if distinct_id is not None:
                # An empty id makes PostHog refuse the whole batch: personless instead.
                distinct_id = _distinct_id_text(distinct_id)
            trace_id = props.get(PROP_TRACE_ID)
            if trace_id is not None:
                if self.sample_rate < 1.0 and not self._sampled(trace_id):
                    return None
                if distinct_id is None:
                    # The one anonymous-id rule: personless events of a trace share its id
                    # (an empty one names no one: PostHog would refuse the whole batch; the
                    # worker gives such an event its own uuid).
                    anonymous = str(trace_id)[:MAX_ID_CHARS]
                    if anonymous.strip():
                        distinct_id = anonymous
                    props.setdefault("$process_person_profile", False)
            # The queued item is the properties copy itself, the rest of the event in one tuple
            # under a private key: one container per event instead of two for the garbage
            # collector to track (the tuple of strings is untracked at its first collection),
            # which keeps a burst from triggering full collections on the caller's thread.
            props[_META] = (
                event,
                distinct_id,
                _groups(groups) if groups else None,
                timestamp if timestamp is not None else time.time(),
                event_uuid,
                # As they are now: the caller may change a list or dict it passed once this
                # returns (a chat loop appending to its messages). Bytes or None: the tuple
                # stays untracked by the collector.
                freeze_values(props),
            )
            if self._sender.enqueue(props):
                return event_uuid
        except Exception:
            self._sender.counters.add("invalid")
            log.exception("posthog-llm: capture failed; the event was skipped")
        return None

    def _capture_lazy(
        self,
        event: str,
        distinct_id: str | None,
        build: Callable[[], Any],
        groups: Mapping[str, Any] | None,
        privacy_mode: bool,
        trace_id: str | None = None,
        events: int = 1,
    ) -> bool:
        """Queue an event whose properties (and uuid) are made later, on the worker thread.

        The caller only records references and a timestamp; False when it was not queued.
        `events`: how many events the item builds into (the worker wakes by events).
        """
        if self.disabled:
            return False
        if trace_id is not None and self.sample_rate < 1.0:
            if event is _MANY:
                if not keep_trace(trace_id, self.sample_rate):
                    # How many events the trace holds is known once it is built: counted then,
                    # on the worker (here when it takes nothing more: closed, or full).
                    if self._sender.has_room():
                        counted = (_MANY_SAMPLED_OUT, None, build, None, 0.0, None, False)
                        self._sender.enqueue(counted)
                    else:
                        self._count_sampled_out(build)
                    return False
            elif not self._sampled(trace_id):
                return False
        item = (event, distinct_id, build, groups, time.time(), None, privacy_mode)
        if events == 1:
            return self._sender.enqueue(item)
        return self._sender.enqueue_several(item, events)

    def _capture_lazy_many(
        self,
        distinct_id: str | None,
        build: Callable[[], list[Any]],
        groups: Mapping[str, Any] | None,
        privacy_mode: bool,
        trace_id: str | None = None,
    ) -> bool:
        """Queue the events of one trace as one item: `build()` makes `(event, properties,
        time or None, distinct id or None, groups or None)` on the worker thread. False when it
        was not queued."""
        return self._capture_lazy(
            _MANY, distinct_id, build, groups, privacy_mode, trace_id, _EVENTS_PER_TRACE
        )

    def _serialize(self, item: Any) -> bytes | list[bytes] | None:
        if type(item) is dict:
            event, distinct_id, groups, timestamp, event_uuid, frozen = item.pop(_META)
            if frozen is not None:
                thaw_values(item, frozen)
            return self._serialize_one(event, distinct_id, item, groups, timestamp, event_uuid)
        event, distinct_id, props, groups, timestamp, event_uuid, privacy_mode = item
        if event is _MANY_SAMPLED_OUT:
            self._count_sampled_out(props)
            return []
        if event is _MANY:
            kept: list[bytes] = []
            filtered = failed = 0
            built = props()
            for at, (name, fields, when, own_id, own_groups) in enumerate(built):
                until = self._sender.build_until
                if until is not None and time.monotonic() > until:
                    # Shutdown's time is up (`before_send` runs per event): the rest is lost.
                    failed += len(built) - at
                    break
                try:
                    data = self._serialize_one(
                        name,
                        distinct_id if own_id is None else own_id,
                        fields,
                        groups if own_groups is None else own_groups,
                        timestamp if when is None else when,
                        None,
                        privacy_mode,
                    )
                except Exception as exc:  # one event of the trace is lost, not the others
                    report_skipped_event(exc)
                    failed += 1
                    continue
                if data is None:
                    filtered += 1
                else:
                    kept.append(data)
            if filtered:
                self._sender.counters.add("filtered", filtered)
            if failed:
                self._sender.counters.add("failed", failed)
            return kept
        return self._serialize_one(
            event, distinct_id, props, groups, timestamp, event_uuid, privacy_mode
        )

    def _serialize_one(
        self,
        event: str,
        distinct_id: Any,
        props: Any,
        groups: Mapping[str, Any] | None,
        timestamp: Any,
        event_uuid: str | None,
        privacy_mode: bool = False,
    ) -> bytes | None:
        """Worker side: build, clean, filter and size one queued event.

        Plain JSON values (what the integrations' builders make) go to bytes in one C-encoder
        pass; anything else takes the exact path (`to_json_safe`, then `fit_event`).
        """
        if event_uuid is None:
            event_uuid = uuid4_str()
        # `props` is ours to change: a builder's fresh dict, or the copy `capture` made.
        if callable(props):
            props = props()
        if self.privacy_mode or privacy_mode:
            apply_privacy(props)
        if self.send_estimated_cost and event in _PRICED_EVENTS:
            _add_estimated_cost(props)
        if groups:
            props["$groups"] = groups
        for key, value in self._lib_properties:
            if key not in props:
                props[key] = value
        if distinct_id is None:
            distinct_id = props.pop("distinct_id", None)
            if distinct_id is not None:
                distinct_id = to_json_safe(distinct_id)
                if not str(distinct_id).strip():
                    distinct_id = None
        if distinct_id is None:
            distinct_id = event_uuid
            props.setdefault("$process_person_profile", False)
        if type(timestamp) is float and 0.0 < timestamp < _MAX_FAST_TIMESTAMP:
            text = _iso_utc(timestamp)
        else:
            text, original = event_timestamp(timestamp, time.time())
            if original is not None:
                props[ORIGINAL_TIMESTAMP] = original
        message: dict[str, Any] = {
            "event": event,
            "distinct_id": distinct_id if type(distinct_id) is str else str(distinct_id),
            "properties": props,
            "timestamp": text,
            "uuid": event_uuid,
        }
        limit = self.max_ai_event_bytes if event.startswith(EVENT_PREFIX) else self.max_event_bytes
        if self.before_send is None:
            data = encode_plain_message(message, limit)
            if data is not None:
                return data
            message["properties"] = to_json_safe(props)
            return fit_event(message, limit)
        message["properties"] = to_json_safe(props)
        names = {"event": event, "distinct_id": message["distinct_id"]}
        try:
            result = self.before_send(message)
        except Exception:
            log.exception("posthog-llm: before_send raised; the event was sent unchanged")
            result = message
        if result is None:
            return None
        if not isinstance(result, Mapping):
            _before_send_warning.warn(
                "posthog-llm: before_send returned %s, not an event dict or None; the event "
                "was sent as it was",
                type(result).__name__,
            )
            result = message
        message = to_json_safe(result)
        for key, value in names.items():
            # An event without a name or a distinct id makes PostHog refuse the whole batch;
            # another value (an int id) is sent as its text.
            given = message.get(key)
            if given is not None and not isinstance(given, str):
                given = str(given)[:MAX_ID_CHARS]
            message[key] = given if given is not None and given.strip() else value
        # `event` first: destinations route `$ai_*` events by the first bytes.
        message = {"event": message.pop("event"), **message}
        return fit_event(message, limit)

    # -- lifecycle -----------------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Deliver every event captured so far, and the spooled ones.

        True only when all of them were delivered; False when some wait in the spool (PostHog is
        down) or were refused, or when events were lost since the previous flush (a full queue,
        retries that ran out in the background). Always returns by `timeout` seconds, also when PostHog is down or
        stalls; it never waits out an outage (the spool does, in the background). Called on the
        client's own sending threads (`before_send`, a logging handler) it returns at once, False
        unless nothing is pending. After `shutdown()`, False when events were dropped since the
        last flush because the client is shut down.
        """
        try:
            return self._sender.flush(timeout)
        except Exception:
            log.exception("posthog-llm: flush failed")
            return False

    def shutdown(self, timeout: float | None = None) -> bool:
        """Flush within `timeout` seconds (default `shutdown_timeout`) and stop the worker.

        What is still undelivered then goes to the spool, for the next client with the same host
        and api key. True only when every event this client accepted was delivered. Events
        captured once it has started are dropped, counted and warned about.
        """
        try:
            timeout = self.shutdown_timeout if timeout is None else timeout
            if _shutdown_callbacks or _core_shutdown_hooks:
                # What integrations still hold goes into the queue before it is drained.
                start = time.monotonic()
                _run_shutdown_callbacks(self, start + max(0.0, timeout))
                timeout = max(0.0, timeout - (time.monotonic() - start))
            return self._sender.shutdown(timeout)
        except Exception:
            log.exception("posthog-llm: shutdown failed")
            return False

    close = shutdown

    def _events_in_item(self, item: Any) -> int:
        """How many events a queued item would send, without building them (no `before_send`,
        nothing serialized); a sampled-out trace is counted as such here and sends none."""
        if type(item) is dict:
            return 1
        event, build = item[0], item[2]
        if event is _MANY_SAMPLED_OUT:
            self._count_sampled_out(build)
            return 0
        if event is _MANY:
            return len(build())
        return 1

    def _count_sampled_out(self, build: Callable[[], Any]) -> None:
        """Count the events of a trace the sample rate left out (built, never sent)."""
        try:
            count = len(build())
        except Exception:  # it is not sent: a builder's failure is not this event's
            count = 1
        with self._sampled_lock:
            self._sampled_out += count

    def _sampled(self, trace_id: Any) -> bool:
        """Whether a trace is kept under `sample_rate` (counts the event if not)."""
        if keep_trace(trace_id, self.sample_rate):
            return True
        with self._sampled_lock:
            self._sampled_out += 1
        return False

    def stats(self) -> dict[str, int]:
        """Counters: queued, sent, dropped, retried, failed, filtered, invalid, batches, spooled,
        replayed, spool_dropped, spool_pending (see `SenderStats`), and sampled_out."""
        counters = self._sender.stats().as_dict()
        counters["sampled_out"] = self._sampled_out
        return counters

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()


# -- the default client ------------------------------------------------------------------------

_default_client: Client | None = None
_default_lock = threading.RLock()


def get_client() -> Client:
    """The process-wide default client, built from the environment on first use.

    >>> import posthog_llm
    >>> posthog_llm.get_client() is posthog_llm.get_client()
    True
    """
    global _default_client
    client = _default_client
    if client is None:
        with _default_lock:
            client = _default_client
            if client is None:
                try:
                    client = _default_client = Client()
                except Exception as exc:
                    # Every span, `@observe` and integration on the default client asks for it
                    # and captures nothing: said where the user sees it, not only in debug logs.
                    _environment_warning.warn(
                        "posthog-llm: the default client cannot be built from the environment "
                        "(%s); nothing is captured through it",
                        exc,
                    )
                    raise
    return client


def set_client(client: Client | None) -> None:
    """Replace the default client (None: build it again from the environment on next use)."""
    global _default_client
    with _default_lock:
        _default_client = client


def _estimate_item(item: Any) -> int:
    """Bytes a queued item will take once built (a nominal 2 KB for a lazy builder)."""
    if type(item) is dict:
        frozen = item[_META][5]  # the JSON of the containers `capture` took out
        return 200 + estimate_size(item) + (len(frozen) if frozen is not None else 0)
    props = item[2]
    if callable(props):
        return 2048
    return 200 + estimate_size(props) if isinstance(props, dict) else 2048


def _shutdown_all_at_exit(cap: float | None = None) -> None:
    clients = list(_live_clients)
    # One deadline for the whole exit, the longest shutdown timeout (and `cap`): with several
    # clients to a stalled endpoint, each waiting its own in turn multiplied the exit time.
    budget = max([c.shutdown_timeout for c in clients], default=1.0)
    if cap is not None:
        budget = min(budget, cap)
    deadline = time.monotonic() + budget
    if _shutdown_callbacks or _core_shutdown_hooks:
        # Every integration hands over first (those sending to a posthog-python client too).
        try:
            _run_shutdown_callbacks(None, deadline)
        except Exception:
            pass
    for client in clients:
        try:
            left = max(0.0, deadline - time.monotonic())
            client.shutdown(min(client.shutdown_timeout, left))
        except Exception:
            pass


atexit.register(_shutdown_all_at_exit)
