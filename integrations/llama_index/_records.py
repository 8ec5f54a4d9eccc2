"""What the hooks record, and the objects the worker rebuilds from it.

The calling thread keeps one `Trace` per root operation with an append-only hook log: each
dispatcher hook adds a few flat values (a tag, the references LlamaIndex handed over and a
`perf_counter` timestamp) to `Trace.log`. Flat values rather than a tuple per hook: the log grows
by references only, so a query leaves the garbage collector no new objects to track per hook.

`Node`, `Gen` and `Emb` are made from the log on the sender's worker thread (`_replay`); each one
that ends in an event is handed to its builder in `_builders`.
"""

from __future__ import annotations

import uuid
from typing import Any

from posthog_llm.instrumentation import DeferredCalls, Observation, Scope

from ._spans import Kind

__all__ = [
    "Trace",
    "Node",
    "Gen",
    "Emb",
    "StreamFrame",
    "Inner",
    "SPENT",
    "ENTER",
    "LAZY",
    "INNER",
    "EXIT",
    "DROP",
    "CHAT_START",
    "COMPLETION_START",
    "LLM_END",
    "LLM_ERROR",
    "EMBEDDING_START",
    "EMBEDDING_END",
    "SCOPE",
    "WIDTH",
    "TIME_AT",
]

# Log entries: a tag, then a fixed number of values (WIDTH[tag] counts the tag).
ENTER = 0  # span id, parent span id, instance, arguments mapping, tags, time
LAZY = 1  # same, for a span a returned generator ran later: parent = the span that returned it
INNER = 2  # span id, parent span id, time: an internal span (`_query`, `split_text` ...)
EXIT = 3  # span id, result, time
DROP = 4  # span id, error, time
# Events: the event, time, the LLM call's slot (see `_replay.gen_slot`), copied chat messages.
CHAT_START = 5
COMPLETION_START = 6
LLM_END = 7
LLM_ERROR = 8  # an ExceptionEvent: a streamed call failed or its consumer closed it
EMBEDDING_START = 9
EMBEDDING_END = 10
# After a span's ENTER, when it started in another `posthog_llm.context(...)` than its trace's
# root (one opened inside a step): span id, that scope, time.
SCOPE = 11
WIDTH = (7, 7, 4, 4, 4, 5, 5, 5, 5, 5, 5, 4)
TIME_AT = (6, 6, 3, 3, 3, 2, 2, 2, 2, 2, 2, 3)  # where the entry's timestamp is


class Trace:
    """One root operation (query, chat turn, agent run ...): its hook log and what is open.

    The caller's thread appends to `log`, `opened` (span ids entered, LLM calls started) and
    `closed` (spans ended, LLM calls finished); the trace is complete when its root has ended
    and both have the same length. List appends need no lock; lengths are read under the
    handler's lock only when the trace may be complete.
    """

    __slots__ = (
        "id",
        "key",
        "scope",
        "privacy",
        "context",
        "kind",
        "pvis",
        "joining",
        "name",
        "emit",
        "parent",
        "start",
        "last",
        "log",
        "opened",
        "closed",
        "root_done",
        "awaiting",
        "done",
        "evicted",
        "streams",
        "obs",
        "client",
        "nested",
        "foreign",
        "inner",
        # Filled on the worker by the replay, read by the builders.
        "instance",
        "args",
        "tags",
        "end",
        "result",
        "error",
        "stream_output",
        # LLM call span id -> the provider drop-in calls made inside it, which its generation
        # reports (set when the trace is sent, read by the replay); None: there were none.
        "deferred",
        # Credentials the trace's failed LLM and embedding instances hold: set by the replay
        # (never on the caller's thread), scrubbed from the error text of every event.
        "secrets",
        # Set when the trace is handed over: `time.time() - perf_counter()` then, which places
        # the log's `perf_counter` times on the wall clock (each event's own time).
        "wall_offset",
    )

    secrets: list[str] | tuple[()]

    def __init__(
        self, trace_id: str, key: str, scope: Scope, privacy: bool, kind: Kind, now: float
    ) -> None:
        self.id = trace_id
        self.key = key  # the root span id: unique even when the user reuses a trace id
        self.scope = scope  # identity (its trace id may be unset: `id` is the trace's)
        self.privacy = privacy
        # The `posthog_llm.context(...)` scope the root started in: a span that starts in
        # another (one opened inside a step) is logged with that one (SCOPE).
        self.context: Any = None
        self.kind = kind  # the root span's kind
        self.pvis: str | None = None  # the root's `$ai_parent_id` for what runs inside it
        # The enclosing observation a root of internal work runs in: its span id (`pvis`) is
        # read only if something inside is sent (another tracer's span joins on that read).
        self.joining: Observation | None = None
        self.name: str | None = None
        self.emit: bool | None = True  # None: only when something inside was emitted
        # Set when the root joined an enclosing trace (a user span, a LangChain step): the
        # root is then sent as an `$ai_span` under this parent instead of as `$ai_trace`.
        self.parent: str | None = None
        self.start = now
        self.last = now  # latest stream progress (the sweeper also reads the log's last time)
        self.log: list[Any] = []
        self.opened: list[Any] = []
        self.closed: list[Any] = []
        self.root_done = False
        self.awaiting = False  # the root returned a stream nobody has started reading
        self.done = False
        self.evicted: float | None = None  # sent before it completed (abandoned stream ...)
        self.streams: list[int] | None = None  # keys of generators its spans returned
        self.obs: Observation | None = None  # the root's observation, for nested work
        self.client: Any = None  # where it goes, named at its start (None: the default client)
        self.nested: Any = None  # `_nesting.Resolved`: observations made for nested work
        # span id -> `$ai_parent_id`: a span opened inside someone else's span (a user span
        # inside a step), which is its nearer parent (`_nesting.foreign_parent`).
        self.foreign: dict[str, str] | None = None
        # What the span map holds for this trace's internal spans (their exits and drops are
        # only counted). Refers back to the trace: the cycle is cut when the trace is sent.
        self.inner: Inner | None = Inner(self)
        self.instance: Any = None
        self.args: Any = None
        self.tags: Any = None
        self.end: float | None = None
        self.result: Any = None
        self.error: BaseException | None = None
        self.stream_output: Any = None  # the response of a lazily run streamed LLM call
        self.deferred: dict[str, DeferredCalls] | None = None
        self.wall_offset: float | None = None

    def __call__(self) -> list[Any]:
        """The trace's events, rebuilt from its log: the builder the worker runs."""
        from ._replay import replay  # the replay reads these records: imported when it runs

        return replay(self)


class _Spent(list[Any]):
    """What a sent trace's `opened` and `closed` become: a late hook's append is a no-op."""

    def append(self, item: Any) -> None:
        return None


SPENT = _Spent()


class Inner:
    """The span map's entry for an internal span: which trace it is in, nothing kept."""

    __slots__ = ("trace",)

    def __init__(self, trace: Trace) -> None:
        self.trace = trace


class Node:
    """A span the worker keeps: the root, a visible step, an LLM or embedding call.

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
        "embs",
        "emb_calls",
        "result",
        "error",
        "end",
        "scope",
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
        self.scope: Any = None  # its own scope, when it started in another context (SCOPE)
        self.instance = instance
        self.args = args
        self.tags = tags
        self.start = start
        self.gen: Gen | None = None
        # The span's embedding calls not ended yet, oldest first (a batch larger than the
        # model's batch size is several calls in one span, concurrent when async).
        self.embs: list[Emb] | None = None
        self.emb_calls = 0
        self.result: Any = None
        self.error: BaseException | None = None
        self.end: float | None = None


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
        "text",
        "inner",
        "inner_instance",
        "error",
        "outer",
        "stream",
        "done",
        "scope",
        "deferred",
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
        self.scope = node.scope
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
        self.text: str | None = None  # the response's text when the call ended
        self.inner: Any = None  # response of a nested call folded into this one (CustomLLM)
        # The LLM that ran the folded call (a wrapper's: `as_structured_llm`'s model).
        self.inner_instance: Any = None
        self.error: BaseException | None = None
        self.outer: Gen | None = None
        self.stream = False
        self.done = False
        # The provider drop-in calls made inside this call (and the calls folded into it).
        self.deferred: DeferredCalls | None = None


class Emb:
    """One embedding call (a batch is one call per Start/End pair)."""

    __slots__ = ("uid", "name", "trace", "parent", "instance", "model_dict", "start")

    def __init__(self, node: Node, model_dict: Any, start: float) -> None:
        # The span's own id for its first call; the others' derived from it (stable, unique).
        calls = node.emb_calls
        node.emb_calls = calls + 1
        self.uid = (
            node.uid if calls == 0 else str(uuid.uuid5(uuid.NAMESPACE_OID, f"{node.uid}/{calls}"))
        )
        self.name = node.kind.name
        self.trace = node.trace
        self.parent = node.pvis
        self.instance = node.instance
        self.model_dict = model_dict
        self.start = start


class StreamFrame:
    """A generator returned by a span: work it runs lazily belongs to that span's trace."""

    __slots__ = ("ref", "key", "trace", "origin", "llm")

    def __init__(self, key: int, trace: Trace, origin: str, llm: bool) -> None:
        self.ref: Any = None  # weak reference to the generator
        self.key = key  # id() of the generator's frame
        self.trace = trace
        self.origin = origin  # the span that returned it
        self.llm = llm  # returned by an LLM call (its End event comes when it is read)

    def frame(self) -> Any:
        g = self.ref()
        if g is None:
            return None
        return getattr(g, "gi_frame", None) or getattr(g, "ag_frame", None)
