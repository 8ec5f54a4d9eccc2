"""`PostHogCallbackHandler`: LangChain runs as `$ai_trace`, `$ai_span` and `$ai_generation` events.

The hooks run on the user's thread (or event loop) for every step of every chain, so they only
record references and a timestamp. Messages, usage and state are converted in a zero-argument
replay of the trace's log that `Emitter.emit_many` hands to our client once the trace's last open
run has ended, and which runs on its worker thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.runnables.config import var_child_runnable_config
from posthog_llm.instrumentation import (
    GENERATION,
    GENERATION_KIND,
    OUTSIDE,
    SPAN,
    SPAN_KIND,
    TRACE,
    TRACE_KIND,
    UNKNOWN,
    Emitter,
    Scope,
    close_observation,
    current_observation,
    current_scope,
    detached_error,
    keep_deferred,
    lenient_scope,
    nested_in,
    open_observation,
    read_deferred_calls,
    register_model_call_check,
    register_resolver,
    report_internal_error,
    safely,
    scope_opened_inside,
    snapshot,
    stopped_by_caller,
    with_trace_id,
)

from ._builders import generation_builder, span_builder, trace_builder
from ._model_calls import model_call_running, track_handler
from ._runs import (
    CHAIN,
    CHAT,
    END,
    FRAMEWORK,
    LLM,
    RETRIEVER,
    START_WIDTH,
    TOOL,
    UNENDED,
    Hidden,
    RunMap,
    Trace,
    key_of,
    record_positions,
    replay,
    tracked_elsewhere,
)

__all__ = ["PostHogCallbackHandler"]

_HIDDEN_TAG = "langsmith:hidden"  # LangGraph's internal plumbing (channel writes, branches)
_perf_counter = time.perf_counter


class PostHogCallbackHandler(BaseCallbackHandler):
    """Sends every LangChain trace, step and LLM call to PostHog as `$ai_*` events.

    >>> from posthog_llm.integrations.langchain import PostHogCallbackHandler
    >>> handler = PostHogCallbackHandler(distinct_id="user_123")
    >>> # chain.invoke({"topic": "owls"}, config={"callbacks": [handler]})

    Per run, LangChain config metadata overrides the handler's options:
    `posthog_distinct_id`, `posthog_trace_id`, `posthog_session_id`, `posthog_properties`,
    `posthog_groups`, `posthog_privacy_mode`; `posthog_llm.context(...)` applies too.
    """

    # Called directly on the event loop for async runs instead of through a thread pool: the
    # hooks only touch a dict under a short lock, so this is both cheaper and order-preserving.
    run_inline = True
    raise_error = False

    #: Strings in `$ai_span` input and output states are cut to this many characters (None: no
    #: limit). A step's large text is almost always also the input of a generation or of the
    #: trace, which are sent whole; repeating a 200 KB prompt in every step that passes it on
    #: would multiply what is serialized and sent for nothing.
    max_span_state_chars: int | None = 10_000

    def __init__(
        self,
        client: Any = None,
        *,
        distinct_id: Any = None,
        trace_id: Any = None,
        session_id: Any = None,
        properties: Mapping[str, Any] | None = None,
        groups: Mapping[str, Any] | None = None,
        privacy_mode: bool = False,
    ) -> None:
        super().__init__()
        self._emitter = Emitter(
            client,
            framework=FRAMEWORK,
            distinct_id=distinct_id,
            trace_id=trace_id,
            session_id=session_id,
            properties=properties,
            groups=groups,
            privacy_mode=privacy_mode,
        )
        self._runs = RunMap()
        track_handler(self)
        self._runs.on_trace_done = self._hand_over
        self._runs.client_of = _client_of(self._emitter)
        # A trace whose runs never end (a stream the caller stopped reading, an `astream` whose
        # chat run LangChain leaves open until its event loop closes) is sent as it is when the
        # client shuts down, or the process exits, rather than lost.
        self._emitter.on_shutdown(self._hand_over_open)

    def __repr__(self) -> str:
        return f"<PostHogCallbackHandler runs={len(self._runs)}>"

    # A handler is a shared sink for runs: configs that get copied keep pointing at it.
    def __copy__(self) -> PostHogCallbackHandler:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> PostHogCallbackHandler:
        return self

    # -- limits on live run state ----------------------------------------------------------------

    @property
    def max_runs(self) -> int:
        """How many unfinished runs are kept at most (oldest are forgotten first)."""
        return self._runs.max_runs

    @max_runs.setter
    def max_runs(self, value: int) -> None:
        self._runs.max_runs = int(value)

    @property
    def max_run_age(self) -> float:
        """Seconds after which an unfinished run is forgotten (an abandoned stream)."""
        return self._runs.max_age

    @max_run_age.setter
    def max_run_age(self, value: float) -> None:
        self._runs.max_age = float(value)

    # -- starts: append raw facts to the trace's log -------------------------------------------

    def _start(
        self,
        kind: str,
        serialized: Any,
        inputs: Any,
        run_id: Any,
        parent_run_id: Any,
        tags: Any,
        metadata: Any,
        name: Any,
        extra1: Any,
        extra2: Any,
    ) -> None:
        now = _perf_counter()
        key = run_id.int if type(run_id) is UUID else run_id
        if parent_run_id is None:
            self._start_trace(
                kind, key, run_id, serialized, inputs, metadata, name, extra1, extra2, now
            )
            return
        runs = self._runs
        parent_key = parent_run_id.int if type(parent_run_id) is UUID else parent_run_id
        trace = runs._live.get(parent_key)
        parent_span = None
        late = False
        if type(trace) is not Trace:
            if trace is None:
                # The parent ended already (a late child), or this handler never saw it.
                trace = runs.ended(parent_key)
                if trace is None:
                    self._start_trace(
                        kind, key, run_id, serialized, inputs, metadata, name, extra1, extra2, now
                    )
                    return
                late = True
            if type(trace) is Hidden:
                # LangGraph's plumbing stands for its visible ancestor.
                parent_key, parent_span, trace = trace.parent_key, trace.parent_span, trace.trace
        asked = trace.asked
        if not late and (asked is None or parent_key not in asked):
            # The common case, without asking the resolver: the step runs in a context
            # LangChain made for its (live) parent, a copy of the one its trace's root started
            # in, and nothing nested in the parent asked for its observation, so no one else's
            # span can have been opened inside it.
            outer = _SEEN if var_child_runnable_config.get() is not None else current_observation()
        else:
            outer = current_observation()
            if (
                outer is not None
                and outer.framework != FRAMEWORK
                and not late
                and _opened_inside(outer, trace, parent_key)
            ):
                # Someone else's span (a user span, a LlamaIndex step) opened inside the parent
                # run is the nearer parent.
                parent_span = outer.span_id
        if tags and kind == CHAIN and _HIDDEN_TAG in tags:
            runs.add(key, Hidden(trace, parent_key, parent_span, now))
            return
        # A `posthog_llm.context(...)` opened inside the run: its identity and privacy for this
        # step, beneath the run's metadata and the step's own.
        scope = scope_opened_inside(trace.scope, trace.context, trace.overrides)
        base = trace.scope if scope is None else scope
        if metadata:
            extra = metadata.get("posthog_properties")
            private = metadata.get("posthog_privacy_mode") is True and not base.privacy_mode
            if (extra is not None and extra is not trace.properties_ref) or private:
                scope = _run_scope(base, extra, private)
        if outer is None or (outer is not _SEEN and outer.trace_id != trace.trace_id):
            # No observation of this trace is visible here (a thread started without the
            # caller's context): this step opens its own. Elsewhere a step's observation is
            # made only when something nested asks for it (`RunMap.observation`).
            trace.observation_map()[key] = (
                open_observation(
                    GENERATION_KIND if kind in (CHAT, LLM) else SPAN_KIND,
                    trace_id=trace.trace_id,
                    span_id=run_id,
                    scope=with_trace_id(scope or trace.scope, trace.trace_id),
                    framework=FRAMEWORK,
                    parent=outer,
                    client=self._emitter._client,
                ),
                True,
            )
        record = (
            kind,
            key,
            parent_key,
            parent_span,
            name,
            serialized,
            inputs,
            now,
            extra1,
            extra2,
            scope,
        )
        if late:
            with self._runs.handover_lock:  # the trace may be handing its log over right now
                trace.open.add(key)
                trace.log.extend(record)
        else:
            trace.open.add(key)
            trace.log.extend(record)
        runs.add(key, trace)

    def _start_trace(
        self,
        kind: str,
        key: Any,
        run_id: Any,
        serialized: Any,
        inputs: Any,
        metadata: Any,
        name: Any,
        extra1: Any,
        extra2: Any,
        now: float,
    ) -> None:
        """A root (or a run whose parent this handler never saw): a new trace starts here,
        unless it runs inside another integration's step or a user span: then it joins that
        trace as a span under it."""
        outer = current_observation()
        if (
            outer is not None
            and outer.framework == FRAMEWORK
            and tracked_elsewhere(key, self._runs)
        ):
            # Another of our handlers reports this run already (a handler given to a model at
            # construction, beside one given at invoke or the global one): one event, not two.
            return
        overrides = _metadata_overrides(metadata)
        scope = self._emitter.scope(overrides)
        joined = outer is not None and scope.trace_id == outer.trace_id
        trace_id = scope.trace_id or str(run_id)
        # The trace keeps the scope as resolved (with no overrides: the handler's own, shared by
        # every trace); observations get one with the trace id.
        trace = Trace(
            trace_id,
            key,
            scope,
            metadata.get("posthog_properties") if metadata else None,
            joined,
        )
        parent_span = outer.span_id if joined and outer is not None else None
        # The root's observation is opened here, in the caller's context, so the contexts its
        # steps run in (copies of this one) see it; which step is executing there is
        # LangChain's resolver's answer (`_executing_run`), not the contextvar's.
        trace.root_obs = open_observation(
            GENERATION_KIND
            if kind in (CHAT, LLM)
            else (TRACE_KIND if parent_span is None else SPAN_KIND),
            trace_id=trace_id,
            span_id=trace_id if parent_span is None else run_id,
            scope=with_trace_id(scope, trace_id),
            framework=FRAMEWORK,
            parent=outer,
            client=self._emitter._client,
        )
        trace.client = trace.root_obs.client
        trace.context = current_scope()
        trace.overrides = overrides
        trace.open.add(key)
        # `extend`, never `+=`: that would store the list back and could undo a hand-over.
        trace.log.extend(
            (kind, key, None, parent_span, name, serialized, inputs, now, extra1, extra2, None)
        )
        self._runs.add(key, trace)

    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not self._emitter.enabled:
            return
        try:
            self._start(
                CHAIN,
                serialized,
                snapshot(inputs),
                run_id,
                parent_run_id,
                tags,
                metadata,
                kwargs.get("name"),
                kwargs.get("run_type"),
                None,
            )
        except Exception as exc:
            report_internal_error(exc)

    def on_tool_start(
        self,
        serialized: dict[str, Any] | None,
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        inputs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not self._emitter.enabled:
            return
        try:
            self._start(
                TOOL,
                serialized,
                snapshot(inputs) if inputs is not None else input_str,
                run_id,
                parent_run_id,
                tags,
                metadata,
                kwargs.get("name"),
                None,
                None,
            )
        except Exception as exc:
            report_internal_error(exc)

    def on_retriever_start(
        self,
        serialized: dict[str, Any] | None,
        query: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not self._emitter.enabled:
            return
        try:
            self._start(
                RETRIEVER,
                serialized,
                query,
                run_id,
                parent_run_id,
                tags,
                metadata,
                kwargs.get("name"),
                None,
                None,
            )
        except Exception as exc:
            report_internal_error(exc)

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[Any]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not self._emitter.enabled:
            return
        try:
            # Copy the lists: agents append to the same history list after the call.
            rows = [list(row) for row in messages] if messages else messages
            self._start_model(CHAT, serialized, rows, run_id, parent_run_id, tags, metadata, kwargs)
        except Exception as exc:
            report_internal_error(exc)

    def on_llm_start(
        self,
        serialized: dict[str, Any],
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not self._emitter.enabled:
            return
        try:
            inputs = list(prompts) if prompts else prompts
            self._start_model(
                LLM, serialized, inputs, run_id, parent_run_id, tags, metadata, kwargs
            )
        except Exception as exc:
            report_internal_error(exc)

    def _start_model(
        self,
        kind: str,
        serialized: Any,
        inputs: Any,
        run_id: Any,
        parent_run_id: Any,
        tags: Any,
        metadata: Any,
        kwargs: dict[str, Any],
    ) -> None:
        """A chat or text model's start: its metadata and invocation params go with it."""
        self._start(
            kind,
            serialized,
            inputs,
            run_id,
            parent_run_id,
            tags,
            metadata,
            kwargs.get("name"),
            metadata,
            kwargs.get("invocation_params"),
        )

    def on_llm_new_token(  # type: ignore[override]  # every argument but run_id is unused
        self, token: str, *, run_id: UUID, **kwargs: Any
    ) -> None:
        try:
            key = run_id.int if type(run_id) is UUID else run_id
            trace = self._runs._live.get(key)
            if type(trace) is Trace:
                now = _perf_counter()
                tokens = trace.tokens
                if tokens is None:
                    tokens = trace.tokens = {}
                times = tokens.get(key)
                if times is None:
                    tokens[key] = [now, now, token]
                else:
                    times[1] = now
                    # The text so far: a stream its caller abandons is sent with it.
                    times.append(token)
        except Exception as exc:
            report_internal_error(exc)

    # -- ends: log the end; the trace's last open run hands the log over -------------------------

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id, outputs, None, kwargs.get("inputs"), True)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id, None, error, kwargs.get("inputs"), True)

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id, output, None, kwargs.get("inputs"), True)

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id, None, error, kwargs.get("inputs"), True)

    def on_retriever_end(self, documents: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id, documents, None, kwargs.get("inputs"), True)

    def on_retriever_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id, None, error, kwargs.get("inputs"), True)

    def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id, response, None, None, False)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        # Streams that fail or are abandoned pass what they produced so far.
        self._end(run_id, kwargs.get("response"), error, None, False)

    # Agent actions and finishes arrive with the agent chain's own run id. They are steps of
    # that chain, not runs: the chain's span (with its real input and output) comes from its
    # own start and end, so nothing here may replace it.
    def on_agent_action(self, action: Any, *, run_id: UUID, **kwargs: Any) -> None:
        return None

    def on_agent_finish(self, finish: Any, *, run_id: UUID, **kwargs: Any) -> None:
        return None

    def _end(
        self, run_id: Any, output: Any, error: BaseException | None, inputs: Any, step: bool
    ) -> None:
        """Log a run's end. A step (not a model call) keeps copies of its state, is remembered
        for children that start after it, and may be handed its input only now (streamed
        chains start with a placeholder)."""
        end = _perf_counter()
        try:
            key = run_id.int if type(run_id) is UUID else run_id
            runs = self._runs
            trace = runs._live.pop(key, None)
            if trace is None:
                return
            if type(trace) is not Trace:
                runs.remember_ended(key, trace)  # a hidden run: its late children attach above
                return
            # Nothing joins an ended run: its observation is closed and let go.
            if key == trace.root_key:
                obs = trace.root_obs
                if obs is not None:
                    trace.root_obs = None
                    if obs.deferred is not None:
                        keep_deferred(trace, key, obs)
                    close_observation(obs)
            elif trace.observations is not None:
                made = trace.observations.pop(key, None)
                if made is not None:
                    if made[0].deferred is not None:
                        keep_deferred(trace, key, made[0])
                    if made[1]:
                        close_observation(made[0])
                    else:
                        made[0].closed = True
            if step:
                runs.remember_ended(key, trace)
                # As they are now, nested lists and `AddableDict`s too: AgentExecutor extends
                # `intermediate_steps` in place after the step, and the event is built later.
                output = snapshot(output)
                if inputs is not None:
                    inputs = snapshot(inputs)
            if error is not None:
                # Not the error itself: its frames hold the chain's stream generators, which
                # LangChain ends only once they are let go (the trace's other runs with them).
                error = detached_error(error)
            trace.log.extend((END, key, output, error, end, inputs))
            still_open = trace.open
            still_open.discard(key)
            if still_open and key == trace.root_key and stopped_by_caller(error):
                # The root was cancelled (a timeout around `ainvoke`) or closed: LangChain ends
                # none of the runs still open inside it. They end with it, and the trace is
                # sent now rather than at shutdown.
                for child in list(still_open):
                    self._end(child, None, error, UNENDED, False)
                return
            if not still_open:
                self._hand_over(trace)
            elif len(trace.log) > _SPILL_AT:
                self._spill(trace)
        except Exception as exc:
            report_internal_error(exc)

    def _hand_over_open(self) -> None:
        if self._runs._live:
            self._runs.hand_over_all()

    def _hand_over(self, trace: Trace) -> None:
        """Queue a trace's log once none of its runs is open (all ended, or evicted)."""
        with self._runs.handover_lock:
            log = trace.log
            if trace.open or not log:
                return
            trace.log = []
        self._queue(trace, log)

    def _spill(self, trace: Trace) -> None:
        """A long trace hands over what ended so far; the starts of open runs stay in its log."""
        with self._runs.handover_lock:
            log = trace.log
            n = len(log)
            if n <= _SPILL_AT:
                return
            handed = log[:n]
            # A start goes on with the live log unless its end is in the part handed over (not:
            # unless its run is still open: a step on another thread may end it, after `n`, while
            # this runs, and its end would then be in the live log without its start).
            ended: set[Any] = set()
            starts: list[int] = []
            for at, is_end in record_positions(handed, n):
                if is_end:
                    ended.add(handed[at + 1])
                else:
                    starts.append(at)
            carried: list[Any] = []
            for at in starts:
                if handed[at + 1] not in ended:
                    carried += handed[at : at + START_WIDTH]
            # In place, one list operation: the log stays the same list, so a step on another
            # thread that read `trace.log` before this and appends after it still appends to
            # the live log (a new list left such records in the part handed over, apart from
            # their start or end: the run was lost). Records appended meanwhile stay, after
            # the starts carried over.
            log[:n] = carried
        self._queue(trace, handed)

    def _queue(self, trace: Trace, log: list[Any]) -> None:
        """One queued item: the worker replays `log` into the trace's events."""
        self._emitter.emit_many(
            _Replay(trace, log, self._emitter, self.max_span_state_chars),
            trace.scope,
            trace_id=trace.trace_id,
            client=trace.client,
        )

    def _observation_of(self, run_id: Any) -> Any:
        """The observation of live run `run_id` (made now if none was), or None."""
        key = key_of(run_id)
        trace = self._runs._live.get(key)
        if trace is None:
            return None
        if type(trace) is Hidden:
            key, trace = trace.parent_key, trace.trace
        asked = trace.asked
        if asked is None:
            asked = trace.asked = set()
        # From now on a step starting under this run asks too: something nested in it may
        # have opened a span its steps belong under.
        asked.add(key)
        return self._runs.observation(trace, key)


class _Replay:
    """Worker side: a handed-over log as `(event, properties, scope, time)` for `emit_many`.

    Each event keeps the wall-clock time its run ended: the log's `perf_counter` times are
    placed on the wall clock read once when the log was handed over.
    """

    __slots__ = ("trace", "log", "emitter", "max_chars", "wall_offset")

    def __init__(self, trace: Trace, log: list[Any], emitter: Any, max_chars: int | None):
        self.trace = trace
        self.log = log
        self.emitter = emitter
        self.max_chars = max_chars
        self.wall_offset = time.time() - _perf_counter()

    def __call__(self) -> list[Any]:
        trace = self.trace
        base = trace.scope
        offset = self.wall_offset
        events: list[Any] = []
        for run in replay(trace, self.log, self.emitter, self.max_chars, _BUILDERS):
            builder = run.builder
            try:
                props = run()
            except Exception as exc:  # one event is lost, not its trace's others
                report_internal_error(exc)
                continue
            event = (
                GENERATION
                if builder is generation_builder
                else (TRACE if builder is trace_builder else SPAN)
            )
            scope = run.scope
            if run.deferred is not None:
                # The drop-in calls' own `posthog_*` arguments and privacy, for this event.
                scope = safely(run.deferred.scope, scope) or scope
            events.append((event, props, None if scope is base else scope, run.end + offset))
        return events


_BUILDERS = (trace_builder, span_builder, generation_builder)
# Log entries after which a trace that is still running hands over what ended so far (a long
# agent run would otherwise keep every step's references until its end).
_SPILL_AT = 4096


# -- which run is executing here -----------------------------------------------------------------


def _executing_run() -> Any:
    """LangChain's own answer to "which run's code is running in this context".

    Our hooks set the open observation when a run starts, but LangChain starts every run of a
    batch in the caller's context before any of them executes, so the contextvar alone would put
    work of the first input under the last one. LangChain's child config (set in the context each
    run's code executes in) names the run exactly.
    """
    config = var_child_runnable_config.get()
    if config is None:
        return OUTSIDE
    callbacks = config.get("callbacks")
    parent_run_id = getattr(callbacks, "parent_run_id", None)
    if parent_run_id is None:
        return UNKNOWN
    for handler in getattr(callbacks, "handlers", ()):
        if isinstance(handler, PostHogCallbackHandler):
            obs = handler._observation_of(parent_run_id)
            if obs is not None:
                return obs
    return UNKNOWN


register_resolver(FRAMEWORK, _executing_run)
# A model run of ours whose provider client is a posthog-llm drop-in: the run reports the call.
register_model_call_check(FRAMEWORK, model_call_running)
# Its generation builder takes in what such a drop-in call was told and read (`Run.deferred`).
read_deferred_calls(FRAMEWORK)


# A stand-in for "an observation of this trace is visible here" when it was not read.
_SEEN: Any = object()


# -- hot-path helpers ------------------------------------------------------------------------------


def _opened_inside(outer: Any, trace: Trace, parent_key: Any) -> bool:
    """Whether observation `outer` was opened while run `parent_key` was the current one."""
    if outer.trace_id != trace.trace_id:
        return False
    if parent_key == trace.root_key:
        mine = trace.root_obs
    else:
        made = trace.observations.get(parent_key) if trace.observations else None
        mine = made[0] if made is not None else None
    return mine is not None and nested_in(outer, mine, 64)


def _metadata_overrides(metadata: Any) -> Scope | None:
    """Per-run identity from LangChain config metadata (`posthog_distinct_id` …)."""
    if not metadata:
        return None
    get = metadata.get
    distinct_id = get("posthog_distinct_id")
    trace_id = get("posthog_trace_id")
    session_id = get("posthog_session_id")
    properties = get("posthog_properties")
    groups = get("posthog_groups")
    privacy = get("posthog_privacy_mode")
    if (
        distinct_id is None
        and trace_id is None
        and session_id is None
        and properties is None
        and groups is None
        and privacy is None
    ):
        return None
    # Metadata is read at run time, so what make_scope would refuse is left out, not raised.
    return lenient_scope(
        distinct_id=distinct_id,
        trace_id=trace_id,
        session_id=session_id,
        properties=properties,
        groups=groups,
        privacy_mode=privacy is True or None,  # per run, privacy is only switched on
    )


def _run_scope(scope: Scope, extra: Any, private: bool) -> Scope:
    return scope.merged(
        Scope(
            properties=dict(extra) if isinstance(extra, Mapping) else {},
            privacy_mode=True if private else None,
        )
    )


def _client_of(emitter: Emitter) -> Callable[[], Any]:
    """Reads the client `emitter` sends to (the default client when none was given: that may
    change, so it is read each time)."""
    return lambda: emitter.client
