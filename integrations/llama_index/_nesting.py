"""Which LlamaIndex span nested work runs in, worked out only when something asks.

A trace opens one observation, at its root. Work from another integration started inside one of
its spans (an OpenAI drop-in call made by a LlamaIndex LLM, a `posthog_llm.span`, a LangChain
chain inside a tool) reads `current_observation()`, which finds the root's observation and asks
this module's resolver: LlamaIndex's own active span id says which span is running here, and the
trace's log says which kept span (a visible step or an LLM call) it belongs to. The hooks pay
nothing for this; only the reader does.
"""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING, Any

from posthog_llm.instrumentation import (
    GENERATION_KIND,
    OUTSIDE,
    SPAN_KIND,
    UNKNOWN,
    Observation,
    current_observation,
    keep_deferred,
    register_resolver,
    with_trace_id,
)

from ._records import Inner, Trace
from ._replay import Tree
from ._spans import FRAMEWORK, LLM, VISIBLE

if TYPE_CHECKING:
    from ._handler import PostHogLlamaIndexHandler

__all__ = ["watch", "close_nested", "foreign_parent", "generation_of"]

_handlers: weakref.WeakSet[PostHogLlamaIndexHandler] = weakref.WeakSet()
_lock = threading.Lock()
_active: Any = None  # LlamaIndex's ContextVar of the running span id, imported on first use


class Resolved:
    """What the resolver worked out for one trace: its span tree so far, observations made."""

    __slots__ = ("tree", "observations")

    def __init__(self, tree: Tree) -> None:
        self.tree = tree
        self.observations: dict[str, Observation] = {}


def watch(handler: PostHogLlamaIndexHandler) -> None:
    """Let the resolver look at `handler`'s open traces (registered once per process)."""
    with _lock:
        if not _handlers:
            register_resolver(FRAMEWORK, _resolve)
        _handlers.add(handler)


def _resolve() -> Any:
    global _active
    if _active is None:
        from llama_index.core.instrumentation.span import active_span_id

        _active = active_span_id
    span_id = _active.get()
    if span_id is None:
        return OUTSIDE
    for handler in list(_handlers):
        entry = handler._spans.get(span_id)
        if entry is not None:
            return _observation(entry.trace if isinstance(entry, Inner) else entry, span_id)
    return OUTSIDE


def _kept(trace: Trace, span_id: str) -> tuple[Resolved, Any]:
    """The kept span (a visible step, an LLM call, the root) `span_id` runs in; under `_lock`."""
    resolved = trace.nested
    if resolved is None:
        resolved = trace.nested = Resolved(Tree(trace))
    tree = resolved.tree
    tree.feed()
    node = tree.spans.get(span_id)
    while node is not None and node is not tree.root:
        k = node.kind.kind
        if k >= VISIBLE or k == LLM:
            break
        node = node.parent
    return resolved, node


def _observation(trace: Trace, span_id: str) -> Any:
    with _lock:
        if trace.done:
            return OUTSIDE
        resolved, node = _kept(trace, span_id)
        if node is None:
            return UNKNOWN
        if node is resolved.tree.root:
            root = trace.obs
            return root if root is not None and not root.closed else UNKNOWN
        return _made(trace, resolved, node)


def _made(trace: Trace, resolved: Resolved, node: Any) -> Observation:
    """The observation of kept span `node`, made now if nothing asked before; under `_lock`."""
    obs = resolved.observations.get(node.span_id)
    if obs is None:
        obs = resolved.observations[node.span_id] = Observation(
            SPAN_KIND if node.kind.kind >= VISIBLE else GENERATION_KIND,
            trace.id,
            node.uid,
            trace.obs.scope if trace.obs is not None else with_trace_id(trace.scope, trace.id),
            FRAMEWORK,
            trace.obs,
        )
    return obs


def generation_of(trace: Trace, span_id: str) -> Observation | None:
    """The observation of LLM call `span_id` (made now if nothing asked before), whose span has
    ended but whose stream is being read: a drop-in call made there hands it its facts. None
    when the trace is sent already or `span_id` is not an LLM call."""
    with _lock:
        if trace.done:
            return None
        resolved, node = _kept(trace, span_id)
        if node is None or node.kind.kind != LLM:
            return None
        if node is resolved.tree.root:
            return trace.obs
        return _made(trace, resolved, node)


def foreign_parent(trace: Trace, span_id: str, parent_id: str | None) -> None:
    """A span starts in a trace where nested work ran: if someone else's span (a user span, a
    LangChain step) is open here, opened inside the span this one runs in, it is the nearer
    parent, as for the other integrations. Only called once the trace has nested work."""
    if parent_id is None:
        return
    # The new span is LlamaIndex's active span but not yet ours: the resolver answers OUTSIDE,
    # so the innermost open observation that is not one of this integration's is read.
    outer = current_observation()
    if outer is None or outer.framework == FRAMEWORK or outer.trace_id != trace.id:
        return
    anchor = outer.parent  # where it was opened: the nearest observation of this trace's spans
    for _ in range(64):
        if anchor is None:
            return
        if anchor.framework == FRAMEWORK:
            break
        anchor = anchor.parent
    else:
        return
    with _lock:
        if trace.done:
            return
        resolved, node = _kept(trace, parent_id)
        if node is None:
            return
        mine = trace.obs if node is resolved.tree.root else resolved.observations.get(node.span_id)
        if mine is None or anchor is not mine:
            return  # opened in another span (an enclosing one): this span is inside it already
        foreign = trace.foreign
        if foreign is None:
            foreign = trace.foreign = {}
        if len(foreign) < 10_000:
            foreign[span_id] = outer.span_id


def close_nested(trace: Trace) -> None:
    """The trace is sent: the observations made for nested work are closed; the provider
    drop-in calls made inside its LLM calls go with it (`Trace.deferred`), for their
    generations' builders."""
    with _lock:
        resolved = trace.nested
        trace.nested = None
    if resolved is not None:
        for span_id, obs in resolved.observations.items():
            obs.closed = True
            if obs.deferred is not None:
                keep_deferred(trace, span_id, obs)
