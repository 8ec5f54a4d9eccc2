"""Raw facts the hooks record: plain slotted objects, no conversion on the caller's thread.

A record that ends in an event is its own builder: calling it (on the sender's worker thread)
makes the event's properties. Queuing the record itself, rather than a `functools.partial`
around it, keeps the hot path to one reference per event and leaves the garbage collector fewer
objects to track while events wait for the worker.
"""

from __future__ import annotations

from typing import Any

from posthog_llm.instrumentation import Observation, Scope

from . import _builders
from ._spans import Kind

__all__ = ["Trace", "Node", "Gen", "Emb", "StreamFrame"]


class Trace:
    """One root operation (query, chat turn, agent run ...) and what is still open in it.

    Nothing a Trace references points back to it, so a finished trace is freed by reference
    counting alone: no work left for the cycle collector on a busy query path.
    """

    __slots__ = (
        "id",
        "key",
        "scope",
        "privacy",
        "kind",
        "args",
        "tags",
        "name",
        "emit",
        "start",
        "end",
        "last",
        "result",
        "error",
        "open",
        "root_done",
        "awaiting",
        "done",
        "has_events",
        "stream_output",
        "streams",
        "ids",
        "parent",
    )

    def __init__(self, trace_id: str, key: str, scope: Scope, privacy: bool, now: float) -> None:
        self.id = trace_id
        self.key = key  # the root span id: unique even when the user reuses a trace id
        self.scope = scope
        self.privacy = privacy
        self.kind: Kind | None = None  # the root span's kind, arguments and tags
        self.args: Any = None
        self.tags: Any = None
        self.name: str | None = None
        self.emit: bool | None = True  # None: only when something inside was emitted
        self.start = now
        self.end: float | None = None
        self.last = now
        self.result: Any = None
        self.error: BaseException | None = None
        self.open = 0
        self.root_done = False
        self.awaiting = False
        self.done = False
        self.has_events = False
        self.stream_output: Any = None  # the response of a lazily run streamed LLM call
        self.streams: list[int] | None = None  # keys of generators its spans returned
        self.ids: list[str] = []  # its span ids, forgotten when the trace is sent
        # Set when the root joined an enclosing trace (a user span, a LangChain step): the
        # root is then sent as an `$ai_span` under this parent instead of as `$ai_trace`.
        self.parent: str | None = None

    def __call__(self) -> dict[str, Any]:
        """The `$ai_trace` event, or the `$ai_span` of a root that joined another trace."""
        if self.parent is not None:
            return _builders.joined_root_event(self)
        return _builders.trace_event(self)


class Node:
    """An instrumented span we keep: the root, a visible step, an LLM or embedding call.

    Internal spans are not given a Node: they map to their nearest kept ancestor.
    """

    __slots__ = (
        "span_id",
        "uid",
        "trace",
        "kind",
        "parent",
        "pvis",
        "vis",
        "instance",
        "args",
        "tags",
        "start",
        "gen",
        "emb",
        "obs",
        "result",
        "error",
        "end",
    )

    def __init__(
        self,
        span_id: str,
        trace: Trace,
        kind: Kind,
        parent: Node | None,
        pvis: str | None,
        instance: Any,
        args: Any,
        tags: Any,
        start: float,
    ) -> None:
        self.span_id = span_id
        self.uid = span_id[-36:]  # the uuid4 LlamaIndex appends to `Class.method-`
        self.trace = trace
        self.kind = kind
        self.parent = parent
        self.pvis = pvis  # the `$ai_parent_id` of this node
        self.vis = self.uid if kind.kind >= 10 else pvis  # what children use as parent
        self.instance = instance
        self.args = args
        self.tags = tags
        self.start = start
        self.gen: Gen | None = None
        self.emb: Emb | None = None
        self.obs: Observation | None = None  # open while the step runs, for nested work
        self.result: Any = None  # how the step ended (set once, just before its event is queued)
        self.error: BaseException | None = None
        self.end: float | None = None

    def __call__(self) -> dict[str, Any]:
        """The step's `$ai_span` event."""
        return _builders.span_event(self, self.result, self.error, self.end)


class Gen:
    """One LLM chat or completion call, from its Start event to its End event."""

    __slots__ = (
        "uid",
        "name",
        "trace",
        "parent",
        "instance",
        "chat",
        "messages",
        "prompt",
        "kwargs",
        "model_dict",
        "start",
        "first",
        "last",
        "end",
        "response",
        "inner",
        "error",
        "outer",
        "stream",
        "done",
        "frame",
    )

    def __init__(
        self,
        node: Node,
        chat: bool,
        messages: Any,
        prompt: Any,
        kwargs: Any,
        model_dict: Any,
        now: float,
    ) -> None:
        self.uid = node.uid
        self.name = node.kind.name
        self.trace = node.trace
        self.parent = node.pvis
        self.instance = node.instance
        self.chat = chat
        self.messages = messages
        self.prompt = prompt
        self.kwargs = kwargs
        self.model_dict = model_dict
        self.start = now
        self.first: float | None = None
        self.last: float | None = None
        self.end: float | None = None
        self.response: Any = None
        self.inner: Any = None  # response of a nested call folded into this one (CustomLLM)
        self.error: BaseException | None = None
        self.outer: Gen | None = None
        self.stream = False
        self.done = False
        self.frame: int | None = None  # key of the stream generator this call returned

    def __call__(self) -> dict[str, Any]:
        """The call's `$ai_generation` event."""
        return _builders.generation_event(self)


class Emb:
    """One embedding call (a batch is one call per Start/End pair)."""

    __slots__ = (
        "uid",
        "name",
        "trace",
        "parent",
        "instance",
        "model_dict",
        "start",
        "chunks",
        "end_event",
        "error",
        "end",
    )

    def __init__(self, node: Node, model_dict: Any, start: float) -> None:
        self.uid = node.uid
        self.name = node.kind.name
        self.trace = node.trace
        self.parent = node.pvis
        self.instance = node.instance
        self.model_dict = model_dict
        self.start = start
        self.chunks: Any = None  # how the call ended (set once, just before its event is queued)
        self.end_event: Any = None
        self.error: BaseException | None = None
        self.end: float | None = None

    def __call__(self) -> dict[str, Any]:
        """The call's `$ai_embedding` event."""
        return _builders.embedding_event(self, self.chunks, self.end_event, self.error, self.end)


class StreamFrame:
    """A generator returned by a span: work it runs lazily belongs to that span's trace."""

    __slots__ = ("ref", "key", "trace", "vis", "gen")

    def __init__(self, key: int, trace: Trace, vis: str | None, gen: Gen | None) -> None:
        self.ref: Any = None  # weak reference to the generator
        self.key = key  # id() of the generator's frame
        self.trace = trace
        self.vis = vis
        self.gen = gen

    def frame(self) -> Any:
        g = self.ref()
        if g is None:
            return None
        return getattr(g, "gi_frame", None) or getattr(g, "ag_frame", None)
