"""`PostHogCallbackHandler`: LangChain runs as `$ai_trace`, `$ai_span` and `$ai_generation` events.

The hooks run on the user's thread (or event loop) for every step of every chain, so they only
record references and a timestamp. Messages, usage and state are converted in a zero-argument
builder that `Emitter.emit` hands to our client, which runs it on its worker thread.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
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
    open_observation,
    register_resolver,
    report_internal_error,
    with_trace_id,
)

from ._builders import generation_builder, span_builder, trace_builder
from ._runs import (
    CHAIN,
    CHAT,
    FRAMEWORK,
    LLM,
    RETRIEVER,
    TOOL,
    Run,
    RunMap,
    Trace,
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

    # -- starts: record raw facts only -----------------------------------------------------------

    def _start(
        self,
        kind: str,
        serialized: Any,
        inputs: Any,
        run_id: UUID,
        parent_run_id: UUID | None,
        tags: Any,
        metadata: Any,
        name: Any,
    ) -> Run | None:
        now = _perf_counter()
        runs = self._runs
        if parent_run_id is None:
            known = parent_run = None
        else:
            parent_key = parent_run_id.int if type(parent_run_id) is UUID else parent_run_id
            parent_run = runs._live.get(parent_key)
            if parent_run is not None:
                known = parent_run.trace, parent_run.span_id_for_children()
            else:
                known = runs.parent_of(parent_run_id)
        if known is None:
            # A root (or a run whose parent this handler never saw): a new trace starts here,
            # unless it runs inside another integration's step or a user span: then it joins
            # that trace as a span under it.
            overrides = _metadata_overrides(metadata)
            scope = self._emitter.scope(overrides)
            outer = current_observation()
            joined = outer is not None and scope.trace_id == outer.trace_id
            trace_id = scope.trace_id or str(run_id)
            # The trace keeps the scope as resolved (with no overrides: the handler's own, shared
            # by every trace): events name their trace id themselves, and the memory of ended
            # runs then keeps no per-trace scope alive. Observations get one with the trace id.
            trace = Trace(
                trace_id,
                run_id,
                scope,
                metadata.get("posthog_properties") if metadata else None,
            )
            parent = outer.span_id if joined and outer is not None else None
            run = Run(kind, run_id, trace, parent, name, serialized, inputs, now)
            # The root's observation is opened here, in the caller's context, so the contexts
            # its steps run in (copies of this one) see it; which step is executing there is
            # LangChain's resolver's answer (`_executing_run`), not the contextvar's.
            opened = True
        else:
            trace, parent_span = known
            if (
                parent_run is not None
                and not parent_run.asked
                and var_child_runnable_config.get() is not None
            ):
                # The common case, without asking the resolver: the step runs in a context
                # LangChain made for its (live) parent, a copy of the one its trace's root
                # started in, and nothing nested in the parent asked for its observation, so no
                # one else's span can have been opened inside it.
                outer = _SEEN
            else:
                outer = current_observation()
                if outer is not None and outer.framework != FRAMEWORK and parent_run is not None:
                    # Someone else's span (a user span, a LlamaIndex step) opened inside the
                    # parent run is the nearer parent.
                    if _opened_inside(outer, parent_run):
                        parent_span = outer.span_id
            run = Run(kind, run_id, trace, parent_span, name, serialized, inputs, now)
            run.parent_key = parent_key
            if tags and _HIDDEN_TAG in tags and kind == CHAIN:
                run.hidden = True
            if metadata:
                extra = metadata.get("posthog_properties")
                private = (
                    metadata.get("posthog_privacy_mode") is True and not trace.scope.privacy_mode
                )
                if (extra is not None and extra is not trace.properties_ref) or private:
                    run.scope = _run_scope(trace.scope, extra, private)
            # A child opens an observation only where no observation of its trace is visible
            # (a thread started without the caller's context): elsewhere its observation is
            # made when something nested asks for it (`RunMap.observation`).
            opened = outer is None or (outer is not _SEEN and outer.trace_id != trace.trace_id)
        if opened and not run.hidden:
            # A child's span id is its run id: the observation turns it into a string only if
            # nested work reads it, the builder does on the worker (`Run.span_id`).
            span_id = trace.trace_id if run.parent_span is None else run_id
            run.obs = open_observation(
                GENERATION_KIND
                if kind in (CHAT, LLM)
                else (TRACE_KIND if run.parent_span is None else SPAN_KIND),
                trace_id=trace.trace_id,
                span_id=span_id,
                scope=with_trace_id(run.scope, trace.trace_id),
                framework=FRAMEWORK,
                parent=outer,
            )
            run.own_obs = True
        runs.add(run)
        return run

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
            run = self._start(
                CHAIN,
                serialized,
                _snapshot(inputs),
                run_id,
                parent_run_id,
                tags,
                metadata,
                kwargs.get("name"),
            )
            if run is not None:
                run.run_type = kwargs.get("run_type")
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
                _snapshot(inputs) if inputs is not None else input_str,
                run_id,
                parent_run_id,
                tags,
                metadata,
                kwargs.get("name"),
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
            run = self._start(
                CHAT, serialized, rows, run_id, parent_run_id, tags, metadata, kwargs.get("name")
            )
            if run is not None:
                run.metadata = metadata
                run.params = kwargs.get("invocation_params")
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
            run = self._start(
                LLM,
                serialized,
                list(prompts) if prompts else prompts,
                run_id,
                parent_run_id,
                tags,
                metadata,
                kwargs.get("name"),
            )
            if run is not None:
                run.metadata = metadata
                run.params = kwargs.get("invocation_params")
        except Exception as exc:
            report_internal_error(exc)

    def on_llm_new_token(  # type: ignore[override]  # every argument but run_id is unused
        self, token: str, *, run_id: UUID, **kwargs: Any
    ) -> None:
        run = self._runs.get(run_id)
        if run is not None:
            now = _perf_counter()
            if run.first_token is None:
                run.first_token = now
            run.last_token = now

    # -- ends: pop the run and hand a builder to the emitter -------------------------------------

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._end_step(run_id, outputs, None, kwargs)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._end_step(run_id, None, error, kwargs)

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._end_step(run_id, output, None, kwargs)

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._end_step(run_id, None, error, kwargs)

    def on_retriever_end(self, documents: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._end_step(run_id, documents, None, kwargs)

    def on_retriever_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._end_step(run_id, None, error, kwargs)

    def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._end_generation(run_id, response, None)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        # Streams that fail or are abandoned pass what they produced so far.
        self._end_generation(run_id, kwargs.get("response"), error)

    # Agent actions and finishes arrive with the agent chain's own run id. They are steps of
    # that chain, not runs: the chain's span (with its real input and output) comes from its
    # own start and end, so nothing here may replace it.
    def on_agent_action(self, action: Any, *, run_id: UUID, **kwargs: Any) -> None:
        return None

    def on_agent_finish(self, finish: Any, *, run_id: UUID, **kwargs: Any) -> None:
        return None

    def _end_step(
        self, run_id: UUID, output: Any, error: BaseException | None, kwargs: dict[str, Any]
    ) -> None:
        end = _perf_counter()
        try:
            run = self._runs.pop(run_id)
            if run is None:
                return
            obs = run.obs
            if obs is not None:
                run.obs = None  # nothing joins an ended run: let the observation go
                if run.own_obs:
                    close_observation(obs)
                else:
                    obs.closed = True
            if run.hidden:
                return
            inputs = kwargs.get("inputs")
            if inputs is not None:
                # Streamed chains start with a placeholder and deliver their input at the end.
                run.inputs = _snapshot(inputs)
            emitter = self._emitter
            run.emitter = emitter
            run.output = _snapshot(output)
            run.error = error
            run.end = end
            run.max_chars = self.max_span_state_chars
            if run.parent_span is None:
                run.builder = trace_builder
                event = TRACE
            else:
                run.builder = span_builder
                event = SPAN
            emitter.emit(event, run, run.scope, trace_id=run.trace.trace_id)
        except Exception as exc:
            report_internal_error(exc)

    def _end_generation(self, run_id: UUID, response: Any, error: BaseException | None) -> None:
        end = _perf_counter()
        try:
            run = self._runs.pop(run_id)
            if run is None:
                return
            obs = run.obs
            if obs is not None:
                run.obs = None
                if run.own_obs:
                    close_observation(obs)
                else:
                    obs.closed = True
            emitter = self._emitter
            run.emitter = emitter
            run.builder = generation_builder
            run.output = response
            run.error = error
            run.end = end
            run.max_chars = self.max_span_state_chars
            emitter.emit(GENERATION, run, run.scope, trace_id=run.trace.trace_id)
        except Exception as exc:
            report_internal_error(exc)


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
            runs = handler._runs
            run = runs.get(parent_run_id)
            if run is not None:
                # From now on a step starting under this run asks too: something nested in
                # it may have opened a span its steps belong under.
                run.asked = True
                obs = run.obs
                return obs if obs is not None else runs.observation(run)
    return UNKNOWN


register_resolver(FRAMEWORK, _executing_run)


# A stand-in for "an observation of this trace is visible here" when it was not read.
_SEEN: Any = object()


# -- hot-path helpers ------------------------------------------------------------------------------


def _snapshot(value: Any) -> Any:
    """A shallow copy of a dict or list, so later mutation does not rewrite what we report."""
    cls = type(value)
    if cls is dict:
        return {k: (v.copy() if type(v) is list else v) for k, v in value.items()}
    if cls is list:
        return value.copy()
    return value


def _opened_inside(outer: Any, run: Run) -> bool:
    """Whether observation `outer` was opened while `run` was the current observation."""
    mine = run.obs
    if mine is None or outer.trace_id != run.trace.trace_id:
        return False
    node = outer.parent
    for _ in range(64):
        if node is None:
            return False
        if node is mine:
            return True
        node = node.parent
    return False


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
    return Scope(
        distinct_id=None if distinct_id is None else str(distinct_id),
        trace_id=None if trace_id is None else str(trace_id),
        session_id=None if session_id is None else str(session_id),
        properties=dict(properties) if isinstance(properties, Mapping) else {},
        groups=dict(groups) if isinstance(groups, Mapping) else {},
        privacy_mode=bool(privacy) if privacy is not None else None,
    )


def _run_scope(scope: Scope, extra: Any, private: bool) -> Scope:
    return scope.merged(
        Scope(
            properties=dict(extra) if isinstance(extra, Mapping) else {},
            privacy_mode=True if private else None,
        )
    )
