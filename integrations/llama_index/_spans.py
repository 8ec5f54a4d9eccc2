"""Which LlamaIndex spans people recognise, and what their inputs and outputs look like.

A single query opens ~20 instrumented spans (`_query`, nested `get_response`, `split_text` ...).
Only the steps a user knows by name become `$ai_span` events; the others are walked through so
their children still nest under the right visible ancestor.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Mapping
from typing import Any

__all__ = [
    "FRAMEWORK",
    "NOISE",
    "LLM",
    "EMBEDDING",
    "VISIBLE",
    "QUERY",
    "CUSTOM",
    "WORKFLOW",
    "STEP",
    "Kind",
    "classify",
    "step_kind",
    "USERS_FUNCTION",
    "is_users_function",
    "function_kind",
    "span_input",
    "span_output",
    "snapshot_result",
    "light_arguments",
    "COUNTED",
    "call_arguments",
    "text_of",
    "is_stream",
]

# Kinds. Everything >= VISIBLE is emitted as an `$ai_span` (or is the trace itself).
FRAMEWORK = "llama-index"

NOISE = 0
LLM = 1
EMBEDDING = 2
VISIBLE = 10
QUERY = 10
RETRIEVE = 11
SYNTHESIZE = 12
POSTPROCESS = 13
SUB_QUESTION = 14
TOOL = 15
CHAT = 16
WORKFLOW = 17
STEP = 18
INGESTION = 19
SELECTOR = 20
QUERY_TRANSFORM = 21
CUSTOM = 22  # a method of the user's own code under `@dispatcher.span`

_SPAN_TYPES = {
    QUERY: "query",
    RETRIEVE: "retrieve",
    SYNTHESIZE: "synthesize",
    POSTPROCESS: "rerank",
    SUB_QUESTION: "sub_question",
    TOOL: "tool",
    CHAT: "chat",
    WORKFLOW: "workflow",
    STEP: "step",
    INGESTION: "ingestion",
    SELECTOR: "selector",
    QUERY_TRANSFORM: "query_transform",
    CUSTOM: "custom",
}
# Packages whose instrumented methods are LlamaIndex's own machinery, not the user's code.
_LIBRARY_PACKAGES = frozenset(
    {
        "llama_index",
        "llama_index_instrumentation",
        "llama_parse",
        "llama_cloud",
        "llama_cloud_services",
        "workflows",
    }
)

# Workflow-agent bookkeeping steps that say nothing a user would look for.
_QUIET_STEPS = frozenset(
    {"init_run", "setup_agent", "parse_agent_output", "aggregate_tool_results"}
)


class Kind:
    """What a (class, method) pair is: kind, `$ai_span_type` and display name."""

    __slots__ = ("kind", "span_type", "name")

    def __init__(self, kind: int, span_type: str | None, name: str) -> None:
        self.kind = kind
        self.span_type = span_type
        self.name = name


_rules: list[tuple[type, frozenset[str], int]] | None = None
_llm_types: tuple[type, ...] = ()
_embedding_types: tuple[type, ...] = ()
_workflow_types: tuple[type, ...] = ()
_agent_types: tuple[type, ...] = ()
_text_node_type: Any = None


def _load() -> list[tuple[type, frozenset[str], int]]:
    """Import the base classes once; a missing optional module just drops its rule."""
    global _rules, _llm_types, _embedding_types, _workflow_types, _agent_types, _text_node_type
    import importlib

    def get(module: str, name: str) -> type | None:
        try:
            found: type | None = getattr(importlib.import_module(module), name)
            return found
        except Exception:
            return None

    specs = [
        ("llama_index.core.base.base_query_engine", "BaseQueryEngine", ("query", "aquery"), QUERY),
        (
            "llama_index.core.base.base_retriever",
            "BaseRetriever",
            ("retrieve", "aretrieve"),
            RETRIEVE,
        ),
        (
            "llama_index.core.response_synthesizers.base",
            "BaseSynthesizer",
            ("synthesize", "asynthesize"),
            SYNTHESIZE,
        ),
        (
            "llama_index.core.postprocessor.types",
            "BaseNodePostprocessor",
            (
                "_postprocess_nodes",
                "postprocess_nodes",
                "apostprocess_nodes",
                "_apostprocess_nodes",
            ),
            POSTPROCESS,
        ),
        (
            "llama_index.core.question_gen.types",
            "BaseQuestionGenerator",
            ("generate", "agenerate"),
            SUB_QUESTION,
        ),
        ("llama_index.core.tools.types", "BaseTool", ("call", "acall", "__call__"), TOOL),
        (
            "llama_index.core.chat_engine.types",
            "BaseChatEngine",
            ("chat", "achat", "stream_chat", "astream_chat"),
            CHAT,
        ),
        ("llama_index.core.ingestion.pipeline", "IngestionPipeline", ("run", "arun"), INGESTION),
        (
            "llama_index.core.base.base_selector",
            "BaseSelector",
            ("select", "aselect", "_select", "_aselect"),
            SELECTOR,
        ),
        (
            "llama_index.core.indices.query.query_transform.base",
            "BaseQueryTransform",
            ("run", "_run"),
            QUERY_TRANSFORM,
        ),
    ]
    rules = []
    for module, name, methods, kind in specs:
        cls = get(module, name)
        if cls is not None:
            rules.append((cls, frozenset(methods), kind))
    _llm_types = tuple(
        c
        for c in (
            get("llama_index.core.base.llms.base", "BaseLLM"),
            get("llama_index.core.multi_modal_llms.base", "MultiModalLLM"),
        )
        if c is not None
    )
    _embedding_types = tuple(
        c
        for c in (
            get("llama_index.core.base.embeddings.base", "BaseEmbedding"),
            get("llama_index.core.base.embeddings.base_sparse", "BaseSparseEmbedding"),
        )
        if c is not None
    )
    _workflow_types = tuple(c for c in (get("workflows", "Workflow"),) if c is not None)
    _agent_types = tuple(
        c
        for c in (
            get("llama_index.core.agent.workflow.base_agent", "BaseWorkflowAgent"),
            get("llama_index.core.agent.workflow.multi_agent_workflow", "AgentWorkflow"),
        )
        if c is not None
    )
    _text_node_type = get("llama_index.core.schema", "TextNode")
    _rules = rules
    return rules


def classify(instance: Any, name: str) -> Kind:
    """Kind of a span on `instance` named `Class.method` (cache the result per class and name)."""
    rules = _rules if _rules is not None else _load()
    cls_name, _, method = name.rpartition(".")
    display = (
        f"{cls_name}.{method.lstrip('_')}"
        if method.startswith("_") and not method.startswith("__")
        else name
    )
    if isinstance(instance, _llm_types):
        return Kind(LLM, None, name)
    if isinstance(instance, _embedding_types):
        return Kind(EMBEDDING, None, name)
    if _workflow_types and isinstance(instance, _workflow_types) and method == "run":
        span_type = "agent" if _agent_types and isinstance(instance, _agent_types) else "workflow"
        return Kind(WORKFLOW, span_type, name)
    for cls, methods, kind in rules:
        if method in methods and isinstance(instance, cls):
            span_type = _SPAN_TYPES[kind]
            if kind == POSTPROCESS and "rerank" not in cls_name.lower():
                span_type = "postprocess"  # a filter or transform, not a reranker
            return Kind(kind, span_type, display)
    if _is_users_own(instance, method):
        return Kind(CUSTOM, _SPAN_TYPES[CUSTOM], name)
    return Kind(NOISE, None, name)


def _is_users_own(instance: Any, method: str) -> bool:
    """Whether the instrumented method was written outside LlamaIndex: a span the user put
    on their own code with `@dispatcher.span` is one they want to see (an inherited LlamaIndex
    method of the user's subclass is not)."""
    function = getattr(type(instance), method, None)
    module = getattr(function, "__module__", None)
    if not isinstance(module, str) or not module:
        return False
    return module.partition(".")[0] not in _LIBRARY_PACKAGES


class _UsersFunction:
    """What the hook log holds as the instance of a span on a plain function of the user's own
    code (LlamaIndex hands the hooks None for every function)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<the user's function>"


USERS_FUNCTION = _UsersFunction()
# Frames above a span hook in which to look for the dispatcher's span wrapper: the hooks are
# called by `Dispatcher.span_enter`, from the wrapper, through our span handler.
_WRAPPER_DEPTH = 12
_wrapper_codes: frozenset[Any] | None = None


def _load_wrapper_codes() -> frozenset[Any]:
    global _wrapper_codes
    codes: frozenset[Any] = frozenset()
    try:
        from llama_index.core.instrumentation.dispatcher import (  # type: ignore[attr-defined]
            Dispatcher,
        )

        span = getattr(Dispatcher.span, "__code__", None)
        codes = frozenset(
            c
            for c in (span.co_consts if span is not None else ())
            if isinstance(c, types.CodeType) and c.co_name in ("wrapper", "async_wrapper")
        )
    except Exception:
        pass
    _wrapper_codes = codes
    return codes


def is_users_function() -> bool:
    """Hot path, for a span without instance only: whether the function LlamaIndex's span
    wrapper (a caller of this hook) instrumented was written outside LlamaIndex's packages.

    The span id only names the function (`qualname-uuid`, the same for `run_jobs` of LlamaIndex
    and of the user's); the wrapper's frame holds the function itself, and its module says whose
    it is. Unknown (no wrapper frame found): not the user's, as before."""
    codes = _wrapper_codes if _wrapper_codes is not None else _load_wrapper_codes()
    if not codes:
        return False
    frame: Any = sys._getframe(1)
    for _ in range(_WRAPPER_DEPTH):
        if frame is None:
            return False
        if frame.f_code in codes:
            module = getattr(frame.f_locals.get("func"), "__module__", None)
            if not isinstance(module, str) or not module:
                return False
            return module.partition(".")[0] not in _LIBRARY_PACKAGES
        frame = frame.f_back
    return False


def function_kind(name: str) -> Kind:
    """A span on a plain function of the user's own code, named by its qualified name without
    `<locals>`."""
    return Kind(CUSTOM, _SPAN_TYPES[CUSTOM], name.replace(".<locals>", ""))


def step_kind(name: str) -> Kind:
    """A workflow step (its span has no instance; its parent is the workflow run)."""
    method = name.rpartition(".")[2]
    if method in _QUIET_STEPS:
        return Kind(NOISE, None, name)
    return Kind(STEP, "step", name)


# -- inputs and outputs (built on the worker thread) ---------------------------------------------


def text_of(value: Any) -> Any:
    """The text a user would call the result: Response.response, AgentChatResponse.response ..."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    for attr in ("response", "response_txt", "content", "text"):
        text = getattr(value, attr, None)
        if isinstance(text, str):
            return text
    result = getattr(value, "result", None)  # a workflow StopEvent
    if result is not None and type(value).__name__.endswith("StopEvent"):
        return text_of(result)
    return None


def _query_text(value: Any) -> Any:
    query = getattr(value, "query_str", None)  # a QueryBundle
    return query if isinstance(query, str) else value


def _nodes(snapshot: Any) -> list[dict[str, Any]]:
    out = []
    for entry in snapshot:
        if len(entry) == 3:  # a plain text node, read when the step ended
            node_id, text, score = entry
            item: dict[str, Any] = {"id": node_id}
            if score is not None:
                item["score"] = score
            item["text"] = text
            out.append(item)
            continue
        node, score = entry
        item = {"id": getattr(node, "node_id", None)}
        if score is not None:
            item["score"] = score
        get_content = getattr(node, "get_content", None)
        try:
            item["text"] = get_content() if callable(get_content) else str(node)
        except Exception:
            item["text"] = None
        out.append(item)
    return out


def snapshot_result(kind: int, result: Any) -> Any:
    """Hot path: copy what may change after the span ends (node lists, scores).

    A plain `TextNode` is read at once (its id and text: what `get_content()` gives without
    metadata), so the node itself need not stay alive until the worker builds the event."""
    if kind in (RETRIEVE, POSTPROCESS) and isinstance(result, list):
        if _rules is None:
            _load()
        return _NodeSnapshot(_node_entry(n, _text_node_type) for n in result)
    return result


def _node_entry(item: Any, text_node: Any) -> tuple[Any, ...]:
    node = getattr(item, "node", item)
    score = getattr(item, "score", None)
    if type(node) is text_node:
        return (node.id_, node.text, score)
    return (node, score)


class _NodeSnapshot(list[Any]):
    """(node, score) pairs captured when a retriever or reranker returned."""


def _arguments(bound_args: Any) -> dict[str, Any]:
    # The hooks keep `BoundArguments.arguments` (see `call_arguments`); a BoundArguments is
    # read the same way.
    arguments = (
        bound_args if isinstance(bound_args, Mapping) else getattr(bound_args, "arguments", None)
    )
    if not isinstance(arguments, Mapping):
        return {}
    out: dict[str, Any] = {}
    for key, value in arguments.items():
        if key in ("self", "cls"):
            continue
        if key == "kwargs" and isinstance(value, Mapping):
            out.update((k, v) for k, v in value.items() if not _is_workflow_context(v))
            continue
        if key == "args" and not value:
            continue
        if _is_workflow_context(value):
            continue  # a workflow's `ctx`: machinery, whose repr says nothing
        out[key] = value
    return out


def _is_workflow_context(value: Any) -> bool:
    cls = type(value)
    return cls.__name__ == "Context" and cls.__module__.startswith("workflows")


def call_arguments(bound_args: Any) -> Any:
    """Hot path: what a span's input is made from. The arguments mapping, not the
    BoundArguments around it, which holds a fresh `inspect.Signature` per call."""
    arguments = getattr(bound_args, "arguments", None)
    return arguments if arguments is not None else bound_args


class _Count(int):
    """How many items a list argument had: all its span's input reads of it."""

    __slots__ = ()  # no instance dict: nothing for the garbage collector to track


# Kinds whose input only counts one list argument, and which argument.
COUNTED = {
    SYNTHESIZE: "nodes",
    POSTPROCESS: "nodes",
    EMBEDDING: "texts",
    INGESTION: "documents",
}


def light_arguments(kind: int, args: Any) -> Any:
    """Hot path: the arguments with a counted list replaced by its length, so the nodes (or
    texts) need not stay alive until the worker builds the event."""
    key = COUNTED.get(kind)
    if key is None or type(args) is not dict:
        return args
    value = args.get(key)
    if type(value) is not list and type(value) is not tuple:
        return args
    light = dict(args)
    light[key] = _Count(len(value))
    return light


def _count(value: Any) -> int:
    return int(value) if isinstance(value, _Count) else len(value or ())


def display_name(kind: Kind, instance: Any, bound_args: Any) -> str:
    """The name a user recognises: a tool's own name (`add`, not `FunctionTool.acall`); an
    agent step under the agent running it (`Worker.run_agent_step`); else `Class.method`."""
    if kind.kind == TOOL:
        name = getattr(getattr(instance, "metadata", None), "name", None)
        if isinstance(name, str) and name:
            return name
    elif kind.kind == STEP and kind.name.endswith(".run_agent_step"):
        agent = getattr(instance, "name", None)
        if not isinstance(agent, str) or not agent:
            # A multi-agent workflow's step: the agent is the one its event names.
            event = _arguments(bound_args).get("ev")
            agent = getattr(event, "current_agent_name", None)
        if isinstance(agent, str) and agent:
            return f"{agent}.run_agent_step"
    return kind.name


def span_input(kind: int, bound_args: Any, tags: Mapping[str, Any] | None) -> Any:
    args = _arguments(bound_args)
    if kind == EMBEDDING:  # an index build: say how much, not every text again
        texts = args.get("texts")
        return {"texts": _count(texts)} if isinstance(texts, (list, tuple, _Count)) else None
    if kind in (QUERY, RETRIEVE, SUB_QUESTION, QUERY_TRANSFORM):
        for key in ("str_or_query_bundle", "query_bundle", "query", "query_str", "str_or_query"):
            if key in args:
                return _query_text(args[key])
    if kind == SYNTHESIZE:
        return {"query": _query_text(args.get("query")), "nodes": _count(args.get("nodes"))}
    if kind == POSTPROCESS:
        return {
            "query": _query_text(args.get("query_bundle")),
            "nodes": _count(args.get("nodes")),
        }
    if kind == CHAT:
        return args.get("message", args)
    if kind == INGESTION:  # like an index build: how much went in, not every document again
        given = {k: args.get(k) for k in ("documents", "nodes")}
        counted = {k: _count(v) for k, v in given.items() if isinstance(v, (list, tuple, _Count))}
        return counted or None
    if kind in (WORKFLOW, STEP) and tags:
        for key in ("llamaindex.start_event", "llamaindex.step.input_summary"):
            if key in tags:
                return tags[key]
        return None
    if kind == WORKFLOW:
        start = args.get("start_event")
        if start is None:
            # `workflow.run(question=...)`: the keyword arguments the StartEvent is made of.
            keywords = args.get("kwargs")
            return dict(keywords) if isinstance(keywords, Mapping) and keywords else None
        return _event_fields(start)
    return args or None


def _event_fields(event: Any) -> Any:
    """A workflow event as its fields: a typed event's declared ones, else the free-form data
    it was given (a StartEvent(question=...) keeps it in private storage)."""
    dump = getattr(event, "model_dump", None)
    if not callable(dump):
        return event
    try:
        fields = dump()
    except Exception:  # an event that cannot dump itself: as it is
        return event
    if isinstance(fields, dict) and set(fields) == {"_data"}:
        data = fields["_data"]
        return dict(data) if isinstance(data, Mapping) else data
    return fields


def is_stream(value: Any) -> bool:
    """A streaming response whose text only exists once the consumer has read it."""
    cls = type(value)
    return any(hasattr(cls, a) for a in ("response_gen", "async_response_gen")) or isinstance(
        getattr(value, "response_gen", None), (types.GeneratorType, types.AsyncGeneratorType)
    )


def span_output(kind: int, result: Any) -> Any:
    if isinstance(result, _NodeSnapshot):
        return _nodes(result)
    if result is None or kind == EMBEDDING:
        return None if result is None else {"embeddings": _len(result)}
    if is_stream(result) and not (
        getattr(result, "response", None) or getattr(result, "response_txt", None)
    ):
        return None
    if kind == TOOL:
        content = getattr(result, "content", None)
        return content if content is not None else result
    if kind == INGESTION and isinstance(result, (list, tuple)):
        return {"nodes": len(result)}  # their texts and vectors went to the index
    if kind == WORKFLOW:  # StopEvent(result=...); an agent's result is an AgentOutput
        inner = getattr(result, "result", None)
        # A typed StopEvent (`class Answer(StopEvent): answer: str`) holds its result in its
        # own fields.
        result = inner if inner is not None else _event_fields(result)
        message = getattr(result, "response", None)
        content = getattr(message, "content", None)
        if isinstance(content, str):
            return content
    if kind == SUB_QUESTION and isinstance(result, list):
        return [
            {
                "sub_question": getattr(q, "sub_question", None),
                "tool_name": getattr(q, "tool_name", None),
            }
            for q in result
        ]
    text = text_of(result)
    if text is not None:
        return text
    return result


def _len(value: Any) -> int | None:
    try:
        return len(value)
    except TypeError:
        return None
