"""`PostHogTracingProcessor`: the Agents SDK's traces and spans as `$ai_*` events.

The hooks run on the agent's own thread or event loop, so they only record ids, times and
references; the events are built on the sender's worker thread (`_facts`). Every hook body runs
inside one guard: a fault of ours is logged, never raised into the run.

- An Agents trace is one `$ai_trace` (workflow name; group id as the session). When it starts
  inside another observation (`posthog_llm.span(...)`, a LangChain run ...), it joins that trace
  and the run becomes a `$ai_span` under it instead; the run's error and group id are then
  reported to the trace it joined (`report_to_trace`), whose root event carries them.
- The trace's top-level task span (the run itself) is folded into the trace; its children hang
  from the trace. A task span nested inside another span (an agent run as a tool) is folded
  into that span, so the inner run stays under the tool that ran it.
- Generation and response spans are open "generation" observations while the model is called,
  so a tracked OpenAI client used by the SDK does not report the same call a second time.
- A model call made through the SDK's `Model.stream_response` (a streamed run) is
  `$ai_stream: true`, one through `get_response` false: read from the calls the span starts in.
  Its time to first token is not known here: the SDK tells a processor only when a model
  span starts and ends, and records no first-chunk time on it.
- An error on any span marks that span and the run. Where the exception a span closes on is at
  hand (a failed model call, and the agent span and run it ends), the error is that exception
  as the core's `error_text` says it (class and message; only the class under privacy mode),
  with the HTTP status it carries on each event it marks; otherwise it is the SDK's error
  record (`{"message", "data"}`), which names no class. A tripped guardrail is an error of its
  own span (the SDK marks only the turn or agent it stopped), and so is a guardrail that
  raised (the SDK marks neither: read from the exception its span closes on).
- A model's refusal (`ModelRefusalError`, raised after its model call ended) marks the turn
  and the agent it ends, and the run: read from the exception they close on, as for a
  guardrail (older SDK versions mark nothing; newer ones only the agent, generically).
"""

from __future__ import annotations

import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from agents import ModelRefusalError
from agents.tracing import Span, Trace, TracingProcessor

from . import _facts
from ._kernel import (
    GENERATION,
    GENERATION_KIND,
    SPAN,
    SPAN_KIND,
    TRACE,
    TRACE_KIND,
    DeferredCalls,
    Emitter,
    Observation,
    Scope,
    capture_internal_exceptions,
    close_observation,
    current_observation,
    error_text,
    http_status_of,
    make_scope,
    open_observation,
    read_deferred_calls,
    report_to_trace,
)

__all__ = ["PostHogTracingProcessor"]

OBSERVATION_FRAMEWORK = "openai_agents"
# A model call the SDK makes through our OpenAI drop-in is reported by its span's event, which
# takes the call's privacy and `posthog_*` arguments (`Observation.deferred`).
read_deferred_calls(OBSERVATION_FRAMEWORK)
# Runs whose end never comes (a crashed worker) are forgotten oldest first beyond this many.
MAX_OPEN_RUNS = 10_000
MAX_OPEN_SPANS = 100_000

_MODEL_SPANS = frozenset({"generation", "response"})
# Spans a refusal ends (the turn it happened in, if the SDK makes turn spans, and its agent).
_REFUSAL_SPANS = frozenset({"turn", "agent"})
# Spans whose exception is read even when the SDK recorded no error on them: a guardrail's
# (it raised), a refusal's, and a user's `custom_span` that an exception left.
_READ_EXCEPTION = _REFUSAL_SPANS | {"guardrail", "custom"}
# `$ai_error` of a tripped guardrail. Its span data does not say whether it guarded the input
# or the output, so not the SDK's exception name; the text is the SDK's own for the run.
TRIPWIRE_ERROR = "GuardrailTripwireTriggered: Guardrail tripwire triggered"
# Calls between a model's `with` opening its span and `on_span_start` (`__enter__` -> `start`
# -> the SDK's processor list -> here), with room for a wrapper or two.
_ENTER_DEPTH = 8
# The SDK's `Model` interface: the method a model call's span is opened in says if it streams.
_MODEL_METHODS = {"stream_response": True, "get_response": False}
# Calls between the SDK's `with` holding a span and this processor's `on_span_end`
# (`__exit__` -> `finish` -> the SDK's processor list -> here), with room for a wrapper or two.
_EXIT_DEPTH = 8


@dataclass
class _Run:
    trace_id: str  # our $ai_trace_id
    root_id: str  # the parent of the run's top-level spans
    joined_parent: str | None  # the user's open observation, when the run joined one
    joined: Observation | None  # that observation itself (None when the run is its own trace)
    scope: Scope
    privacy: bool
    session_id: str | None
    started: float
    observation: Any = None
    # A folded task span -> the parent its children get instead (the root, or the span it runs in).
    folded: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    http_status: int | None = None  # the HTTP status of the failure `error` tells, if known
    first_input: Any = None
    last_output: Any = None

    def parent_of(self, sdk_parent: str | None) -> str:
        """Our parent id for a span whose SDK parent is `sdk_parent` (folded tasks skipped)."""
        if sdk_parent is None:
            return self.root_id
        return self.folded.get(sdk_parent, sdk_parent)


@dataclass(slots=True)
class _Open:
    started: float
    parent_id: str | None
    observation: Any = None
    agent: Any = None  # an agent span's data: the SDK fills its tool list after the start
    stream: bool | None = None  # a model call: streamed or not, when known
    model: str | None = None  # a model call: the model its `Model` was made for, when known
    offered: tuple[Any, ...] = ()  # a model call: the SDK's tool and handoff objects it offers
    base_url: Any = None  # a model call: the base URL of the client its `Model` calls through


class PostHogTracingProcessor(TracingProcessor):
    """Registered with the Agents SDK by `instrument()`; see the module docs."""

    def __init__(
        self,
        client: Any = None,
        *,
        distinct_id: Any = None,
        privacy_mode: bool | None = None,
        properties: Any = None,
        groups: Any = None,
    ) -> None:
        if privacy_mode is not None and not isinstance(privacy_mode, bool):
            raise TypeError(f"privacy_mode must be a bool, got {type(privacy_mode).__name__}")
        self._emitter = Emitter(
            client,
            framework=_facts.FRAMEWORK,
            distinct_id=distinct_id,
            properties=properties,
            groups=groups,
            privacy_mode=privacy_mode,
        )
        self._runs: OrderedDict[str, _Run] = OrderedDict()
        self._spans: dict[str, _Open] = {}
        self._lock = threading.Lock()
        self.active = True

    # -- traces ------------------------------------------------------------------------------

    def on_trace_start(self, trace: Trace) -> None:
        if not self.active or not self._emitter.enabled:
            return
        with capture_internal_exceptions():
            outer = current_observation()
            scope = self._emitter.scope()
            # The enclosing observation's trace, else the one `posthog_llm.context(trace_id=)`
            # names (as every integration takes it), else the SDK's own.
            trace_id = outer.trace_id if outer is not None else (scope.trace_id or trace.trace_id)
            if scope.trace_id != trace_id:
                # Set once here: every observation of the run carries it (no merge per span).
                scope = scope.merged(make_scope(trace_id=trace_id))
            group_id = getattr(trace, "group_id", None)
            if outer is not None:
                run = _Run(
                    trace_id=outer.trace_id,
                    root_id=trace.trace_id,
                    joined_parent=outer.span_id,
                    joined=outer,
                    scope=scope,
                    privacy=self._emitter.privacy(scope),
                    session_id=str(group_id) if group_id else None,
                    started=time.perf_counter(),
                )
            else:
                run = _Run(
                    trace_id=trace_id,
                    root_id=trace_id,
                    joined_parent=None,
                    joined=None,
                    scope=scope,
                    privacy=self._emitter.privacy(scope),
                    session_id=str(group_id) if group_id else None,
                    started=time.perf_counter(),
                )
            run.observation = open_observation(
                SPAN_KIND if outer is not None else TRACE_KIND,
                trace_id=run.trace_id,
                span_id=run.root_id,
                scope=scope,
                framework=OBSERVATION_FRAMEWORK,
                client=self._emitter._client,
            )
            with self._lock:
                self._runs[trace.trace_id] = run
                if len(self._runs) > MAX_OPEN_RUNS:
                    self._runs.popitem(last=False)

    def on_trace_end(self, trace: Trace) -> None:
        with capture_internal_exceptions():
            with self._lock:
                run = self._runs.pop(trace.trace_id, None)
            if run is None:
                return
            if run.observation is not None:
                close_observation(run.observation)
            if not self.active or not self._emitter.enabled:
                return
            if run.joined is not None:
                report_to_trace(run.joined, error=run.error, session_id=run.session_id)
            latency = time.perf_counter() - run.started
            name = trace.name or "Agent workflow"
            joined = run.joined_parent is not None
            metadata = getattr(trace, "metadata", None)
            metadata = dict(metadata) if isinstance(metadata, Mapping) and metadata else None

            def build() -> dict[str, Any]:
                return _facts.run_props(
                    trace_id=run.trace_id,
                    span_id=run.root_id if joined else None,
                    parent_id=run.joined_parent,
                    name=name,
                    latency=latency,
                    error=run.error,
                    http_status=run.http_status,
                    session_id=run.session_id,
                    privacy=run.privacy,
                    first_input=run.first_input,
                    last_output=run.last_output,
                    metadata=metadata,
                )

            self._emitter.emit(SPAN if joined else TRACE, build, run.scope, trace_id=run.trace_id)

    # -- spans -------------------------------------------------------------------------------

    def on_span_start(self, span: Span[Any]) -> None:
        if not self.active:
            return
        with capture_internal_exceptions():
            run = self._runs.get(span.trace_id)
            if run is None:
                return
            data = span.span_data
            kind = data.type
            if kind == "task":
                run.folded[span.span_id] = run.parent_of(span.parent_id)
                return
            entry = _Open(started=time.perf_counter(), parent_id=span.parent_id)
            if kind == "agent":
                entry.agent = data
            elif kind in _MODEL_SPANS:
                entry.stream, entry.model, entry.offered, entry.base_url = _model_call()
            entry.observation = open_observation(
                GENERATION_KIND if kind in _MODEL_SPANS else SPAN_KIND,
                trace_id=run.trace_id,
                span_id=span.span_id,
                scope=run.scope,
                framework=OBSERVATION_FRAMEWORK,
                client=self._emitter._client,
            )
            if len(self._spans) >= MAX_OPEN_SPANS:
                self._spans.clear()  # abandoned spans: forget them rather than grow
            self._spans[span.span_id] = entry

    def on_span_end(self, span: Span[Any]) -> None:
        with capture_internal_exceptions():
            entry = self._spans.pop(span.span_id, None)
            deferred = None
            if entry is not None and entry.observation is not None:
                close_observation(entry.observation)
                deferred = entry.observation.deferred
            run = self._runs.get(span.trace_id)
            if run is None or entry is None or not self.active:
                return
            data = span.span_data
            kind = data.type
            raw_error = span.error
            raised = _closing_exception() if raw_error or kind in _READ_EXCEPTION else None
            error, status = _error_of(kind, raw_error, raised, data, run.privacy)
            if error and run.error is None:
                run.error, run.http_status = error, status
            facts = _facts.SpanFacts(
                trace_id=run.trace_id,
                span_id=span.span_id,
                parent_id=run.parent_of(span.parent_id),
                latency=time.perf_counter() - entry.started,
                error=error,
                session_id=run.session_id,
                privacy=run.privacy,
                agent_tools=self._agent_tools(entry) if kind == "generation" else (),
                http_status=status,
                stream=entry.stream,
                requested_model=entry.model,
                offered_tools=entry.offered,
                client_base_url=entry.base_url,
            )
            if raised is not None and kind in _MODEL_SPANS:
                facts.failed_request = _request_of(raised)
            if kind == "generation":
                if run.first_input is None:
                    run.first_input = data.input
                if data.output:
                    run.last_output = data.output[-1]
                event, build = GENERATION, _bind(_facts.generation_props, data, facts)
            elif kind == "response":
                if run.first_input is None:
                    run.first_input = data.input
                if data.response is not None:
                    run.last_output = getattr(data.response, "output_text", None)
                event, build = GENERATION, _bind(_facts.response_props, data, facts)
            else:
                event, build = SPAN, _bind(_facts.span_props, data, facts)
            scope = run.scope
            if deferred is not None and event == GENERATION:
                build, scope = _with_calls(build, deferred), deferred.scope(scope)
            if self._emitter.enabled:
                self._emitter.emit(event, build, scope, trace_id=run.trace_id)

    def _agent_tools(self, entry: _Open) -> tuple[str, ...]:
        """The function tools of the agent a model call belongs to (names only)."""
        parent = entry.parent_id
        for _ in range(8):  # generation -> turn -> agent; a few levels are plenty
            if parent is None:
                return ()
            found = self._spans.get(parent)
            if found is None:
                return ()
            if found.agent is not None:
                return tuple(found.agent.tools or ())
            parent = found.parent_id
        return ()

    # -- lifecycle ---------------------------------------------------------------------------

    def shutdown(self) -> None:
        self.force_flush()

    def force_flush(self) -> None:
        with capture_internal_exceptions():
            client = self._emitter.client
            flush = getattr(client, "flush", None)
            if callable(flush):
                flush()


def _with_calls(build: Any, deferred: DeferredCalls) -> Any:
    """`build` with what the drop-in calls the model span reports knew (their privacy)."""

    def built() -> dict[str, Any]:
        return deferred.fill(build())

    return built


def _bind(function: Any, data: Any, facts: _facts.SpanFacts) -> Any:
    def build() -> dict[str, Any]:
        return function(data, facts)  # type: ignore[no-any-return]

    return build


def _model_call() -> tuple[bool | None, str | None, tuple[Any, ...], Any]:
    """What the model call whose span now starts was given, read from the SDK's `Model` method
    that opened it (`stream_response` or `get_response`, the nearest among the calls above):
    whether it streams; the model name that `Model` was made for (what a call that fails before
    its response asked for); the tools and handoffs it offers the model (their definitions,
    which a Chat Completions span does not record); and the base URL of the OpenAI client it
    calls through (which a Responses span does not record). The URL is kept as the client
    holds it: it is made text on the worker."""
    frame: FrameType | None = sys._getframe(2)  # above this and `on_span_start`
    for _ in range(_ENTER_DEPTH):
        if frame is None:
            break
        streamed = _MODEL_METHODS.get(frame.f_code.co_name)
        if streamed is not None:
            local = frame.f_locals
            owner = local.get("self")
            model = getattr(owner, "model", None)
            offered = (*(local.get("tools") or ()), *(local.get("handoffs") or ()))
            base_url = getattr(getattr(owner, "_client", None), "base_url", None)
            model = model if isinstance(model, str) and model else None
            return streamed, model, offered, base_url
        frame = frame.f_back
    return None, None, (), None


def _closing_exception() -> Exception | None:
    """The exception the span now ending is closed by, if it is unwinding through its `with`.

    The SDK ends a span in `Span.__exit__`, which does not record the exception: while it
    runs, that exception is the one being handled. It is only taken when its traceback starts
    a few calls above this hook (in the frame holding the span's `with`), never an older one
    the whole run happens to run inside (a run started in a user's `except` block).
    Cancellation (not an `Exception`) is not a failure of the span.
    """
    error = sys.exc_info()[1]
    if not isinstance(error, Exception) or error.__traceback__ is None:
        return None
    head = error.__traceback__.tb_frame
    frame: FrameType | None = sys._getframe(1)
    for _ in range(_EXIT_DEPTH):
        if frame is None:
            return None
        if frame.f_code.co_name == "__exit__" and "exc_val" in frame.f_code.co_varnames:
            # The span's own `__exit__`: what it was given is the answer, also when the `with`
            # sits in an `except` block handling an older exception and exits normally.
            given = frame.f_locals.get("exc_val")
            return given if isinstance(given, Exception) else None
        if frame is head:
            return error
        frame = frame.f_back
    return None


def _request_of(failure: Exception) -> Any:
    """The HTTP request a failed call sent, if its exception keeps it (openai's and httpx's
    do; httpx's property raises when it has none)."""
    try:
        return getattr(failure, "request", None)
    except Exception:
        return None


def _error_of(
    kind: str, raw: Any, raised: Exception | None, data: Any, privacy: bool
) -> tuple[str | None, int | None]:
    """A span's `$ai_error` and `$ai_http_status`.

    Where the exception the span closes on is at hand, its error is that exception as the
    core's policy says it (class and message, secrets scrubbed; only the class under privacy
    mode), with the HTTP status it carries: a failed model call, and the agent span and run it
    ends, say the same. Otherwise it is the SDK's error record, which names no class.
    """
    if kind == "guardrail":
        if raw:
            return _span_error(raw, privacy), None
        return _guardrail_error(data, raised, privacy), None
    if raised is not None and (
        raw
        or kind == "custom"
        or (kind in _REFUSAL_SPANS and isinstance(raised, ModelRefusalError))
    ):
        return error_text(raised, privacy=privacy), http_status_of(raised)
    if raw:
        return _span_error(raw, privacy), None
    return None, None


def _guardrail_error(data: Any, failure: Exception | None, privacy: bool) -> str | None:
    """A guardrail span's own `$ai_error`: its tripwire, or the exception its function raised."""
    if data.triggered:
        return TRIPWIRE_ERROR
    if failure is not None:
        return error_text(failure, privacy=privacy)
    return None


def _span_error(raw: Any, privacy: bool) -> str | None:
    """An Agents span error (`{"message", "data"}`) as `$ai_error` text, secrets scrubbed.

    The detail in `data` (and some messages) may quote user content: privacy mode leaves
    what the kernel's policy keeps of the message alone.
    """
    if isinstance(raw, dict):
        message = str(raw.get("message") or "Error")
        data = raw.get("data")
    else:
        message, data = str(raw), None
    if privacy or not isinstance(data, dict):
        return error_text(message, privacy=privacy)
    detail = data.get("error") or data.get("message")
    text = f"{message}: {detail}" if detail else message
    return error_text(text)
