"""The open observation: which span (or generation) the running code is inside.

One contextvar shared by every integration and by `posthog_llm.span`, so work started inside
another integration's step joins that trace with the innermost open span as its parent. It
follows asyncio tasks and threads started with a copied context, like `posthog_llm.context`.

A closed observation is skipped rather than trusted to have been reset: framework hooks do not
always end in the context they started in (generators, callbacks on another thread), and a stale
entry must never pull later, unrelated work into a finished trace.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from ._context import Scope, current_scope, named_trace

if TYPE_CHECKING:
    from ._deferred import DeferredCalls

__all__ = [
    "Observation",
    "current_observation",
    "open_observation",
    "close_observation",
    "inherited_client",
    "report_to_trace",
    "activated",
    "StepPlace",
    "nested_in",
    "model_call_reported",
    "reporting_model_call",
    "done_reporting_model_call",
    "register_resolver",
    "register_outside_tracer",
    "register_model_call_check",
    "framework_model_call_running",
    "outside_span",
    "UNKNOWN",
    "OUTSIDE",
    "TRACE_KIND",
    "SPAN_KIND",
    "GENERATION_KIND",
]

TRACE_KIND = "trace"
SPAN_KIND = "span"
GENERATION_KIND = "generation"


class Observation:
    """An open span, trace root or generation that nested work parents itself under.

    `span_id` is what children use as `$ai_parent_id`; for a trace root it is the trace id.
    It may be given as any object whose `str()` is the id (LangChain's run UUID): it is turned
    into a string the first time someone reads it, and most observations are never read.
    `error` and `session_id`: what work that joined a trace root reported to it
    (`report_to_trace`), for the root's own event; None when nothing was.
    `deferred`: on a framework's generation, the provider drop-in calls made inside it, which
    it reports (`DeferredCalls`: their privacy, facts and `posthog_*` arguments); None when
    there were none.
    """

    __slots__ = (
        "kind",
        "trace_id",
        "_span_id",
        "scope",
        "framework",
        "parent",
        "closed",
        "error",
        "session_id",
        "joined_by",
        "client",
        "deferred",
    )

    def __init__(
        self,
        kind: str,
        trace_id: str,
        span_id: Any,
        scope: Scope,
        framework: str | None,
        parent: Observation | None,
    ) -> None:
        self.kind = kind
        self.trace_id = trace_id
        self._span_id = span_id
        self.scope = scope
        self.framework = framework
        self.parent = parent
        self.closed = False
        self.error: str | None = None
        self.session_id: str | None = None
        # A framework with a resolver whose trace root joined this observation, or in whose
        # step it opened (set only on a framework-less one, a user span): reading this one as
        # current asks that resolver too.
        self.joined_by: str | None = None
        # The client its events go to, when one was given to it or to an observation it is
        # nested in: work inside it that names no client sends there too (one trace, one
        # destination), not to the default client.
        self.client: Any = getattr(parent, "client", None) if parent is not None else None
        self.deferred: DeferredCalls | None = None

    @property
    def span_id(self) -> str:
        span_id = self._span_id
        if type(span_id) is not str:
            span_id = self._span_id = str(span_id)
        return span_id

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        # The id as given: reading `span_id` of another tracer's span joins it (`outside_span`).
        span_id = self._span_id if type(self._span_id) is str else "(not read)"
        return f"<Observation {self.kind} {span_id} of {self.trace_id} ({state})>"


_current: ContextVar[Observation | None] = ContextVar("posthog_llm_observation", default=None)


# A framework whose hooks cannot keep the contextvar exact (LangChain starts every run of a batch
# in the caller's context before any of them runs) registers a resolver that reads the
# framework's own notion of "the run executing here". It answers an open Observation, UNKNOWN (no
# opinion: trust the contextvar) or OUTSIDE (no run of this framework is executing here).
UNKNOWN: Any = object()
OUTSIDE: Any = object()
_resolvers: dict[str, Callable[[], Any]] = {}
# Tracers outside posthog-llm (OpenTelemetry) whose open span the work runs in when no
# observation of ours is open here: each answers an Observation for that span, or None.
_outside: dict[str, Callable[[], Observation | None]] = {}


def register_resolver(framework: str, resolve: Callable[[], Any]) -> None:
    """Let `framework` say which of its observations is current (see UNKNOWN, OUTSIDE)."""
    _resolvers[framework] = resolve


# Frameworks whose model call may run here with none of their observations open (a stream the
# framework returned, read after its span ended): each answers whether one is running here.
_model_call_checks: dict[str, Callable[[], Observation | bool]] = {}


def register_model_call_check(framework: str, running: Callable[[], Observation | bool]) -> None:
    """Let `framework` say that one of its model calls, which it reports, is running here
    although no observation of its own is open (a provider call made lazily inside a stream it
    returned): a provider drop-in then leaves that call to it (reported once).

    `running()` answers False, or the generation's observation (the drop-in call hands it its
    privacy and facts: `Observation.deferred`), or True when it cannot name one."""
    _model_call_checks[framework] = running


def framework_model_call_running() -> Observation | bool:
    """Whether a framework's model call (see `register_model_call_check`) is running here: its
    generation's observation when the framework names it, else True or False."""
    for running in list(_model_call_checks.values()):
        try:
            answer = running()
        except Exception:
            continue
        if answer:
            return answer
    return False


def register_outside_tracer(name: str, resolve: Callable[[], Observation | None]) -> None:
    """Let a tracer outside posthog-llm name the span work runs in when no observation of ours
    is open in this context (see `outside_span`); `resolve()` answers one or None."""
    _outside[name] = resolve


def outside_span(trace_id: str, span_id: Any, scope: Scope, framework: str) -> Observation:
    """An observation standing for another tracer's open span: work that finds it current
    joins that tracer's trace under that span.

    `span_id` may be an object whose `str()` is the id: it is read only by work that does join
    (as its parent), so the tracer learns which of its spans hold posthog-llm work.

    It is made closed: the tracer, not posthog-llm, opens and ends the span, so an observation
    of ours opened inside it never brings it back as current when it closes."""
    obs = Observation(SPAN_KIND, trace_id, span_id, scope, framework, None)
    obs.closed = True
    return obs


def current_observation(*, outside: bool = True) -> Observation | None:
    """The innermost observation that is still open in this context, or None.

    With none of ours open, a tracer outside posthog-llm may name its open span here
    (`register_outside_tracer`); `outside=False` leaves them out."""
    obs = _current.get()
    while obs is not None and obs.closed:
        obs = obs.parent
    if obs is None:
        return _outside_observation() if _outside and outside else None
    if not _resolvers:
        return obs
    if obs.framework is None:
        if obs.joined_by is None:
            return obs
        return _joined_step(obs, obs.joined_by)
    resolve = _resolvers.get(obs.framework)
    if resolve is None:
        return obs
    try:
        answer = resolve()
    except Exception:
        return obs
    if answer is OUTSIDE:
        framework = obs.framework
        while obs is not None and (obs.closed or obs.framework == framework):
            obs = obs.parent
        if obs is None and _outside and outside:
            # The framework's run started inside another tracer's span (a LangChain batch
            # input whose run executes in a context of its own).
            return _outside_observation()
        return obs
    if isinstance(answer, Observation) and not answer.closed:
        return answer
    return obs


def _named_trace_root() -> Observation | None:
    """Outside every observation, in a `context(trace_id=...)` block whose trace already has
    its root: that trace, as the parent of what starts here (one `$ai_trace` per trace)."""
    named = named_trace()
    if named is None or not named.claimed:
        return None
    scope = current_scope()
    if scope.trace_id != named.trace_id:
        return None
    return outside_span(named.trace_id, named.trace_id, scope, NAMED_TRACE)


# The kernel's own: a trace named by `posthog_llm.context(trace_id=...)`.
NAMED_TRACE = "context"
_outside[NAMED_TRACE] = _named_trace_root


def _outside_observation() -> Observation | None:
    for resolve in list(_outside.values()):
        try:
            answer = resolve()
        except Exception as exc:  # the work runs on, in a trace of its own
            from ._emit import report_internal_error  # the emitter imports this module

            report_internal_error(exc)
            continue
        if isinstance(answer, Observation):
            return answer
    return None


def _joined_step(obs: Observation, framework: str) -> Observation:
    """A user span that a framework's trace joined is current here: the framework's run
    executing in this context, when it runs inside that span, is the nearer one.

    A framework whose hooks run where the contextvar is lost (LangChain starts the runs of
    `RunnableSequence.abatch` in tasks of their own) leaves its steps seeing only the user's
    span; its resolver still names the step. An answer that is not nested in `obs` (a run the
    span itself runs inside of) is not taken."""
    resolve = _resolvers.get(framework)
    if resolve is None:
        return obs
    try:
        answer = resolve()
    except Exception:
        return obs
    if not isinstance(answer, Observation) or answer.closed or answer is obs:
        return obs
    if nested_in(answer, obs):
        return answer
    if answer.framework != framework or answer.trace_id != obs.trace_id:
        return obs
    # A framework that makes its observations only when asked (LlamaIndex: each one's parent is
    # its trace's root) answers a step that opened inside `obs`, when `obs` itself opened inside
    # one of its steps, with no link to `obs`: a step among `obs`'s ancestors is the one `obs`
    # runs in, any other one of that trace started in this context after `obs` did.
    node = obs.parent
    inside = False
    for _ in range(256):
        if node is None:
            break
        if node is answer:
            return obs
        if node.framework == framework:
            inside = True
        node = node.parent
    return answer if inside else obs


def nested_in(obs: Observation, outer: Observation, limit: int = 256) -> bool:
    """Whether `outer` is among `obs`'s ancestors (looking at most `limit` levels up)."""
    node = obs.parent
    for _ in range(limit):
        if node is None:
            return False
        if node is outer:
            return True
        node = node.parent
    return False


def open_observation(
    kind: str,
    *,
    trace_id: str,
    span_id: Any,
    scope: Scope,
    framework: str | None = None,
    parent: Any = UNKNOWN,
    client: Any = None,
) -> Observation:
    """Make a new observation the current one; close it with `close_observation`.

    `span_id`: a string, or an object whose `str()` is the id (made only if it is read).
    `parent`: the caller's `current_observation()` when it has just read it (saves reading it
    again on a hot path); by default it is read here. `client`: where the work inside it that
    names no client sends (None: the parent's, if any).
    """
    if scope.trace_id != trace_id:
        # Work that joins this observation reads the trace id from its scope.
        scope = scope.merged(Scope(trace_id=trace_id))
    if parent is UNKNOWN:
        parent = current_observation()
    if parent is None and kind != GENERATION_KIND:  # a lone model call sends no `$ai_trace`
        named = named_trace()
        if named is not None and not named.claimed and named.trace_id == trace_id:
            named.claimed = True  # the first root of a trace a context names: its `$ai_trace`
    obs = Observation(kind, trace_id, span_id, scope, framework, parent)
    if client is not None:
        obs.client = client
    if (
        framework is not None
        and parent is not None
        and parent.framework is None
        and parent.trace_id == trace_id
        and framework in _resolvers
    ):
        # This framework's work joined a user span: later reads of that span as current ask
        # the framework which of its runs is executing (see `_joined_step`).
        parent.joined_by = framework
    elif (
        framework is None
        and parent is not None
        and parent.framework is not None
        and parent.framework in _resolvers
    ):
        # A user span inside a framework's step: that framework's steps may open inside it.
        obs.joined_by = parent.framework
    _current.set(obs)
    return obs


def inherited_client() -> Any:
    """The client of the observation open here (given to it or to one it is nested in), or
    None: where work that names no client sends, before the default client."""
    obs = _current.get()
    while obs is not None and obs.closed:  # a stale entry (work that outlived its span)
        obs = obs.parent
    return obs.client if obs is not None else None


def close_observation(obs: Observation) -> None:
    """Mark `obs` closed; if it is current in this context, or an observation opened inside it
    still is, its parent becomes current again."""
    obs.closed = True
    current = _current.get()
    if current is not obs:
        # Something opened inside `obs` in this context is still open: a span in a generator
        # the caller stopped reading. Closing `obs` ends it here too (as leaving an
        # OpenTelemetry span restores the context from before it), or every later request in
        # this context would join `obs`'s finished trace.
        while current is not None and current is not obs:
            current = current.parent
        if current is None:
            return
    # The nearest open ancestor, as stored: every read of `current_observation()` asks its
    # framework's resolver again, so resolving here as well would only be paid twice.
    parent = obs.parent
    while parent is not None and parent.closed:
        parent = parent.parent
    _current.set(parent)


def report_to_trace(
    obs: Observation, *, error: str | None = None, session_id: str | None = None
) -> None:
    """Tell the trace `obs` belongs to what work that joined it found out, for the trace's event.

    For a framework whose own root joined an enclosing trace (and so sends no `$ai_trace`):
    `error` (`error_text` of a failure inside, already in the right privacy) marks the trace,
    as an error on any span marks its trace; `session_id` becomes its `$ai_session_id` when the
    trace has none of its own. The first report of each wins. The root is the nearest trace
    observation above `obs` (or `obs` itself); `posthog_llm.span` and `@observe` send what was
    reported to it, an exception through their own block still winning.
    """
    root: Observation | None = obs
    while root is not None and root.kind != TRACE_KIND:
        root = root.parent
    if root is None:
        return
    if error and root.error is None:
        root.error = error
    if session_id and root.session_id is None:
        root.session_id = session_id


@contextmanager
def activated(obs: Observation) -> Iterator[None]:
    """`obs` is current for the block only (one step of a generator: the consumer's code between
    steps must not run inside the generator's span)."""
    token = _current.set(obs)
    try:
        yield
    finally:
        _current.reset(token)


class StepPlace:
    """Where a suspended generator's steps run: inside its own observation at first, then inside
    whatever span it left open across its last `yield` (its children after the resume belong
    there), while the consumer's code between steps runs outside all of them."""

    __slots__ = ("inside",)

    def __init__(self, obs: Observation) -> None:
        self.inside = obs

    def enter(self) -> Any:
        return _current.set(self.inside)

    def leave(self, token: Any) -> None:
        inside = _current.get()
        _current.reset(token)
        if inside is not None:
            self.inside = inside


# A provider drop-in's model call in progress in this context: what instrumentation inside the
# SDK records of it (an OpenTelemetry span of the SDK's own) is the same call, reported already.
_model_call: ContextVar[bool] = ContextVar("posthog_llm_model_call", default=False)


def reporting_model_call() -> Any:
    """Mark the model call about to run here as reported by posthog-llm; pass the result to
    `_model_call.reset` (through `done_reporting_model_call`) when it returns."""
    return _model_call.set(True)


def done_reporting_model_call(token: Any) -> None:
    _model_call.reset(token)


def model_call_reported() -> bool:
    """Whether a model call starting here is reported by posthog-llm already: a provider
    drop-in's call is in progress, or the open observation is a model call (an integration
    that opens one while its model runs). Another integration seeing the same call (an
    OpenTelemetry span the SDK or an instrumentation makes inside it) leaves it out rather than
    count it twice."""
    if _model_call.get():
        return True
    obs = current_observation(outside=False)  # another tracer's span is never ours to report
    return obs is not None and obs.kind == GENERATION_KIND
