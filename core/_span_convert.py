"""One span's `$ai_*` properties: GenAI semantic conventions, OpenInference, OpenLLMetry, Vercel.

Pure functions over a `SpanRecord`; they run on the sender's worker thread (processor) or in
the collector (OTLP), never on the instrumented code's hot path. Content is not even read in
privacy mode, and error text always goes through the kernel's `error_text` (secrets scrubbed).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ._errors import error_text
from ._events import (
    EMBEDDING,
    GENERATION,
    SPAN,
    TRACE,
    embedding_properties,
    generation_properties,
    provider_name,
    span_properties,
    trace_properties,
)
from ._openai_format import function_call
from ._span_records import SpanRecord, is_ai_span
from ._usage import input_tokens_for, token_count, whole_number

__all__ = [
    "kind_of",
    "span_event",
    "trace_event",
    "distinct_id_of",
    "session_id_of",
    "first_of",
    "IDENTITY_KEYS",
]

GENERATION_KIND = "generation"
EMBEDDING_KIND = "embedding"
SPAN_KIND = "span"

# Semantic Kernel's model diagnostics name their operations `chat.completions`,
# `chat.streaming_completions`, `text.completions` and `text.streaming_completions`.
_STREAMING_OPS = frozenset({"chat.streaming_completions", "text.streaming_completions"})
_GENERATION_OPS = _STREAMING_OPS | {
    "chat",
    "text_completion",
    "completion",
    "generate_content",
    "chat.completions",
    "text.completions",
}
_EMBEDDING_OPS = frozenset({"embeddings", "embedding"})
_SPAN_TYPES = {
    "execute_tool": "tool",
    "invoke_agent": "agent",
    "create_agent": "agent",
    "TOOL": "tool",
    "AGENT": "agent",
    "CHAIN": "chain",
    "RETRIEVER": "retriever",
    "RERANKER": "reranker",
    "GUARDRAIL": "guardrail",
    "EVALUATOR": "evaluator",
    "tool": "tool",
    "agent": "agent",
    "workflow": "workflow",
    "task": "task",
}
_VERCEL_GENERATION = re.compile(r"^ai\.\w+\.(doGenerate|doStream)$")
_VERCEL_EMBEDDING = re.compile(r"^ai\.\w+\.doEmbed$")
_INDEXED = re.compile(r"^(\d+)\.(.+)$")

_loads: Callable[[str], Any]
try:
    from orjson import loads as _loads
except ImportError:  # pragma: no cover - orjson is a dependency; the stdlib is the fallback
    _loads = json.loads


# -- what a span is ----------------------------------------------------------------------------


def kind_of(rec: SpanRecord) -> str:
    """ "generation", "embedding", "span" for AI work, "" for anything else."""
    attrs = rec.attributes
    op = attrs.get("gen_ai.operation.name")
    if isinstance(op, str):
        if op in _GENERATION_OPS:
            return GENERATION_KIND
        if op in _EMBEDDING_OPS:
            return EMBEDDING_KIND
        return SPAN_KIND
    oi = attrs.get("openinference.span.kind")
    if isinstance(oi, str):
        upper = oi.upper()
        if upper == "LLM":
            return SPAN_KIND if _prepares_a_call(rec) else GENERATION_KIND
        if upper == "EMBEDDING":
            return EMBEDDING_KIND
        return SPAN_KIND
    request_type = attrs.get("llm.request.type")  # OpenLLMetry
    if isinstance(request_type, str):
        if request_type in ("chat", "completion"):
            return GENERATION_KIND
        if request_type in ("embedding", "embeddings"):
            return EMBEDDING_KIND
    if rec.name.startswith("ai."):  # the Vercel AI SDK's span names (the regexes cost more)
        if _VERCEL_GENERATION.match(rec.name):
            return GENERATION_KIND
        if _VERCEL_EMBEDDING.match(rec.name):
            return EMBEDDING_KIND
    if "gen_ai.request.model" in attrs or "gen_ai.response.model" in attrs:
        return GENERATION_KIND
    return SPAN_KIND if rec.reported_inside or is_ai_span(rec.name, attrs) else ""


# What an OpenInference span of a model call records of the call itself.
_MODEL_CALL_PREFIXES = (
    "llm.input_messages.",
    "llm.output_messages.",
    "llm.prompts",
    "llm.token_count.",
)


def _prepares_a_call(rec: SpanRecord) -> bool:
    """An OpenInference "LLM" span of a private method that recorded no model input, output or
    tokens: LlamaIndex's dispatcher makes a span of every abstract method of an LLM class and
    OpenInference calls each an LLM span, but `_prepare_chat_with_tools` only builds the
    arguments of the `chat` that follows (its own LLM span, the call)."""
    if not rec.name.rpartition(".")[2].startswith("_"):
        return False
    return not any(key.startswith(_MODEL_CALL_PREFIXES) for key in rec.attributes)


def _first(attrs: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        value = attrs.get(key)
        if value is not None and value != "":
            return value
    return None


def _json(value: Any) -> Any:
    """A JSON text attribute as its value; anything else (or unparsable text) unchanged."""
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("utf-8", "replace")
    if isinstance(value, str):
        text = value.strip()
        if text[:1] in ("{", "[", '"'):
            try:
                return _loads(text)
            except ValueError:
                try:  # what the C parser refuses (NaN, integers over 64 bits) the stdlib reads
                    return json.loads(text)
                except (ValueError, RecursionError):  # nested deeper than a message can be
                    return value
    if isinstance(value, tuple):
        return list(value)
    return value


def _indexed(attrs: Mapping[str, Any], prefix: str) -> list[dict[str, Any]]:
    """`prefix.0.role`, `prefix.0.content`, ... as a list of dicts, in index order."""
    items: dict[int, dict[str, Any]] = {}
    for key, value in attrs.items():
        if not key.startswith(prefix):
            continue
        match = _INDEXED.match(key[len(prefix) :])
        if match:
            items.setdefault(int(match.group(1)), {})[match.group(2)] = value
    return [items[i] for i in sorted(items)]


# -- identity ----------------------------------------------------------------------------------


_USER_KEYS = ("posthog.distinct_id", "user.id", "enduser.id")
_SESSION_KEYS = ("gen_ai.conversation.id", "session.id", "$session_id", "posthog.session_id")
# Any of these on a span: it may carry the trace's identity (one set test per span first).
IDENTITY_KEYS = frozenset(_USER_KEYS + _SESSION_KEYS)


def distinct_id_of(rec: SpanRecord) -> str | None:
    value = _first(rec.attributes, *_USER_KEYS)
    return str(value) if value is not None else None


def session_id_of(rec: SpanRecord) -> str | None:
    value = _first(rec.attributes, *_SESSION_KEYS)
    return str(value) if value is not None else None


PRIVACY_ATTRIBUTE = "posthog.privacy_mode"
# What asks for privacy as text: OpenTelemetry SDKs read `OTEL_RESOURCE_ATTRIBUTES` as strings,
# so `posthog.privacy_mode=true` there is "true". Any other value asks for nothing: it never
# turns privacy off where something else turned it on.
_PRIVACY_TEXTS = frozenset({"true", "1", "yes"})


def _asks_privacy(value: Any) -> bool:
    if value is None or value is False:
        return False
    if value is True:
        return True
    return isinstance(value, str) and value.strip().lower() in _PRIVACY_TEXTS


def privacy_requested(records: Iterable[SpanRecord]) -> bool:
    """Whether a span or its resource asks for its trace without content
    (`posthog.privacy_mode` true, or the text "true", "1" or "yes" in any case): no prompts,
    outputs or error messages."""
    return any(asks_privacy(rec.attributes, rec.resource) for rec in records)


def asks_privacy(*attribute_maps: Mapping[str, Any] | None) -> bool:
    """`privacy_requested` for a span's attributes and its resource's, before it ended."""
    return any(m is not None and _asks_privacy(m.get(PRIVACY_ATTRIBUTE)) for m in attribute_maps)


# -- facts -------------------------------------------------------------------------------------


def _provider(attrs: Mapping[str, Any]) -> str | None:
    value = _first(
        attrs,
        "gen_ai.provider.name",
        "gen_ai.system",
        "llm.provider",
        "llm.system",
        "ai.model.provider",
    )
    name = provider_name(value)
    if name is None:
        return None
    if name.endswith((".chat", ".completion", ".responses")):  # the Vercel AI SDK's "openai.chat"
        name = provider_name(name.split(".", 1)[0])
    return name


def _model(attrs: Mapping[str, Any], invocation: Any = None) -> str | None:
    """The span's model; else the one its OpenInference invocation parameters asked for (a
    failed call has no `llm.model_name`)."""
    value = _first(
        attrs,
        "gen_ai.response.model",
        "gen_ai.request.model",
        "llm.model_name",
        "embedding.model_name",
        "ai.response.model",
        "ai.model.id",
    )
    if value is None and isinstance(invocation, dict):
        value = _first(invocation, "model", "model_name")
    return str(value) if value is not None else None


def _base_url(attrs: Mapping[str, Any]) -> str | None:
    host = attrs.get("server.address")
    if not isinstance(host, str) or not host:
        return None
    if host.startswith(("https://", "http://")):  # Semantic Kernel puts its service's URL here
        return host.rstrip("/")
    port = whole_number(attrs.get("server.port"))
    loopback = host in ("localhost", "127.0.0.1", "::1")
    scheme = "http" if loopback or port == 80 else "https"
    shown = f"[{host}]" if ":" in host else host
    if port is None or (scheme == "https" and port == 443) or (scheme == "http" and port == 80):
        return f"{scheme}://{shown}"
    return f"{scheme}://{shown}:{port}"


_REQUEST_PARAMETERS = {
    "gen_ai.request.temperature": "temperature",
    "gen_ai.request.max_tokens": "max_tokens",
    "gen_ai.request.top_p": "top_p",
    "gen_ai.request.top_k": "top_k",
    "gen_ai.request.frequency_penalty": "frequency_penalty",
    "gen_ai.request.presence_penalty": "presence_penalty",
    "gen_ai.request.stop_sequences": "stop",
    "gen_ai.request.seed": "seed",
    "gen_ai.request.choice.count": "n",
    "gen_ai.request.encoding_formats": "encoding_format",
    "gen_ai.embeddings.dimension.count": "dimensions",
    "ai.settings.temperature": "temperature",
    "ai.settings.maxOutputTokens": "max_tokens",
    "ai.settings.topP": "top_p",
}


def _model_parameters(attrs: Mapping[str, Any], invocation: Any) -> dict[str, Any]:
    """`invocation` is OpenInference's `llm.invocation_parameters` already parsed."""
    params: dict[str, Any] = {}
    if isinstance(invocation, dict):
        params.update(invocation)
    for key, name in _REQUEST_PARAMETERS.items():
        value = attrs.get(key)
        if value is not None:
            params[name] = list(value) if isinstance(value, tuple) else value
    return params


def _tools(attrs: Mapping[str, Any]) -> Any:
    tools = _tool_list(attrs.get("gen_ai.tool.definitions"))
    if tools:
        return tools
    if "llm.tools.0.tool.json_schema" in attrs:  # OpenInference numbers its tools from 0
        listed = [_json(t.get("tool.json_schema")) for t in _indexed(attrs, "llm.tools.")]
        listed = [t for t in listed if t]
        if listed:
            return listed
    tools = _tool_list(attrs.get("ai.prompt.tools"))
    if tools:
        return tools
    return _openllmetry_tools(attrs)


def _tool_list(value: Any) -> Any:
    """Tool definitions as one JSON text, or as an array of JSON texts, one per tool (the Vercel
    AI SDK's `ai.prompt.tools`; a `string[]` attribute): parsed either way."""
    tools = _json(value)
    if isinstance(tools, list):
        return [_json(tool) if isinstance(tool, str) else tool for tool in tools]
    return tools


def _openllmetry_tools(attrs: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """`llm.request.functions.N.name` / `.description` / `.parameters` (JSON text) in the flat
    `{"type": "function", "name", ...}` shape `gen_ai.tool.definitions` has; a function without
    a name is not a definition, and parameters that are not a JSON object are left out."""
    if "llm.request.functions.0.name" not in attrs:  # one lookup before scanning every key
        return None
    tools = []
    for item in _indexed(attrs, "llm.request.functions."):
        name = item.get("name")
        if not isinstance(name, str) or not name:
            continue
        tool: dict[str, Any] = {"type": "function", "name": name}
        if item.get("description"):
            tool["description"] = str(item["description"])
        parameters = _json(item.get("parameters"))
        if isinstance(parameters, dict):
            tool["parameters"] = parameters
        tools.append(tool)
    return tools or None


_USAGE_KEYS = (
    (
        "input_tokens",
        (
            "gen_ai.usage.input_tokens",
            "gen_ai.usage.prompt_tokens",
            "llm.token_count.prompt",
            "ai.usage.inputTokens",
            "ai.usage.promptTokens",
        ),
    ),
    (
        "output_tokens",
        (
            "gen_ai.usage.output_tokens",
            "gen_ai.usage.completion_tokens",
            "llm.token_count.completion",
            "ai.usage.outputTokens",
            "ai.usage.completionTokens",
        ),
    ),
    (
        "cache_read_input_tokens",
        (
            "gen_ai.usage.cache_read.input_tokens",
            "gen_ai.usage.cache_read_input_tokens",
            "llm.token_count.prompt_details.cache_read",
            "ai.usage.cachedInputTokens",
        ),
    ),
    (
        "cache_creation_input_tokens",
        (
            "gen_ai.usage.cache_creation.input_tokens",
            "gen_ai.usage.cache_write.input_tokens",
            "gen_ai.usage.cache_creation_input_tokens",
            "llm.token_count.prompt_details.cache_write",
        ),
    ),
    (
        "reasoning_tokens",
        (
            "gen_ai.usage.reasoning.output_tokens",
            "gen_ai.usage.reasoning_tokens",
            "llm.token_count.completion_details.reasoning",
            "ai.usage.reasoningTokens",
        ),
    ),
)


# Conventions whose input count includes cache reads and writes (the GenAI conventions: cache
# counts "SHOULD be included in gen_ai.usage.input_tokens"; OpenInference's prompt count is the
# whole prompt, its `prompt_details` a breakdown of it), by their keys' first segment. The
# Vercel AI SDK's `ai.usage.*` is left as it comes.
_CACHE_INCLUDED_IN_INPUT = frozenset({"gen_ai", "llm"})


def _usage(
    attrs: Mapping[str, Any], provider: str | None, model: str | None = None
) -> dict[str, Any]:
    """Token counts as PostHog reads them for `provider` and `model`: an input count that
    includes the cache is given without it where PostHog wants that (Anthropic, and Claude on
    Bedrock or Vertex), by the core's rule."""
    usage: dict[str, Any] = {}
    found: dict[str, str] = {}  # name -> the key its count came from
    for name, keys in _USAGE_KEYS:
        value = None
        for key in keys:
            value = attrs.get(key)
            if value is not None and value != "":
                found[name] = key
                break
        usage[name] = token_count(value)
    source = found.get("input_tokens", "").split(".", 1)[0]
    if source in _CACHE_INCLUDED_IN_INPUT:
        # Only cache counts of the input's own convention are part of its total.
        read, write = (
            usage[name] if found.get(name, "").split(".", 1)[0] == source else None
            for name in ("cache_read_input_tokens", "cache_creation_input_tokens")
        )
        usage["input_tokens"] = input_tokens_for(
            provider, usage["input_tokens"], read, write, model
        )
    return usage


def _stop_reason(rec: SpanRecord, output_messages: Any) -> str | None:
    """The first finish reason the span states, from the newest convention to the oldest.

    `output_messages` is `gen_ai.output.messages` already parsed (None in privacy mode, where
    that content is not read)."""
    attrs = rec.attributes
    reasons = attrs.get("gen_ai.response.finish_reasons")
    if isinstance(reasons, (list, tuple)) and reasons:
        return str(reasons[0])
    if isinstance(reasons, str) and reasons:
        return reasons
    value = _first(
        attrs,
        "gen_ai.response.finish_reason",  # Semantic Kernel's, one reason
        "ai.response.finishReason",
        "llm.finish_reason",
        "anthropic.message.stop_reason",
    )
    if value is not None:
        # Semantic Kernel writes its enum member ("FinishReason.STOP"): the reason is its value.
        text = str(value)
        return text[len("FinishReason.") :].lower() if text.startswith("FinishReason.") else text
    if isinstance(output_messages, dict):
        output_messages = [output_messages]
    if isinstance(output_messages, list) and output_messages:
        last = output_messages[-1]
        if isinstance(last, dict) and last.get("finish_reason"):
            return str(last["finish_reason"])
    if "gen_ai.completion.0.finish_reason" in attrs:  # one lookup before scanning every key
        for choice in _indexed(attrs, "gen_ai.completion."):
            if choice.get("finish_reason"):
                return str(choice["finish_reason"])
    for event in rec.events:
        if event.name == "gen_ai.choice":
            reason = _event_attributes(event).get("finish_reason")
            if reason:
                return str(reason)
    return None


_FIRST_TOKEN_EVENT = "First Token Stream Event"  # OpenInference's, when the first chunk came


def _stream(rec: SpanRecord, invocation: Any) -> tuple[bool | None, float | None]:
    """Whether the call streamed, and its time to first token in seconds: OpenLLMetry's
    `gen_ai.is_streaming`, the Anthropic SDK's `gen_ai.request.stream` and
    `gen_ai.response.time_to_first_chunk`, OpenInference's invocation parameters and its first
    token event (its time after the span's start)."""
    attrs = rec.attributes
    stream = _first(attrs, "gen_ai.is_streaming", "llm.is_streaming", "gen_ai.request.stream")
    if stream is None and attrs.get("gen_ai.operation.name") in _STREAMING_OPS:
        stream = True
    if stream is None and isinstance(invocation, dict) and invocation.get("stream") is True:
        # Only true counts: LangChain states its model's `stream=False` setting even for a
        # call made with `.stream()`.
        stream = True
    if isinstance(stream, str):
        stream = stream.strip().lower() == "true"
    first = attrs.get("gen_ai.response.time_to_first_chunk")
    seconds = (
        float(first) if isinstance(first, (int, float)) and not isinstance(first, bool) else None
    )
    if seconds is None and rec.start_ns:
        for event in rec.events:
            if event.name == _FIRST_TOKEN_EVENT and event.time_ns:
                seconds = max(0, event.time_ns - rec.start_ns) / 1e9
                break
    if seconds is not None and stream is None:
        stream = True  # only a streamed call has a first token apart from its end
    return (bool(stream) if stream is not None else None), seconds


# The OpenAI and Anthropic SDKs' error classes (and their names in `error.type`) by the status
# their API answered; a timeout or a lost connection has none.
_ERROR_STATUSES = {
    "BadRequestError": 400,
    "AuthenticationError": 401,
    "PermissionDeniedError": 403,
    "NotFoundError": 404,
    "ConflictError": 409,
    "UnprocessableEntityError": 422,
    "RateLimitError": 429,
    "InternalServerError": 500,
}
_ERROR_CODE = re.compile(r"^Error code: (\d{3})\b")  # how those SDKs' messages start


def _exception(rec: SpanRecord) -> tuple[Any, Any]:
    """The type and message of the span's first exception event (None, None without one)."""
    for event in rec.events:
        if event.name == "exception":
            return event.attributes.get("exception.type"), event.attributes.get("exception.message")
    return None, None


def _http_status(rec: SpanRecord, error: str | None) -> int | None:
    """The call's HTTP status: the span's `http.response.status_code`, else 200 for a call that
    did not fail (as every other route sends); for a failed one, the `Error code: NNN` its
    exception's message starts with, else the status its SDK error class stands for, else
    unknown. The message is only matched, never sent, so privacy mode reads it too."""
    status = whole_number(rec.attributes.get("http.response.status_code"))
    if status is not None:
        return status
    if error is None:
        return 200
    kind, message = _exception(rec)
    if isinstance(message, str):
        match = _ERROR_CODE.match(message)
        if match:
            return int(match.group(1))
    for name in (kind, rec.attributes.get("error.type")):
        if isinstance(name, str) and name:
            found = _ERROR_STATUSES.get(name.rsplit(".", 1)[-1])
            if found is not None:
                return found
    return None


def _error(rec: SpanRecord, privacy: bool) -> str | None:
    """`Type: message` from the exception event, status or `error.type`; None without an error."""
    kind, message = _exception(rec)
    error_type = rec.attributes.get("error.type")
    if not rec.is_error and kind is None and error_type is None:
        return None
    kind = kind or error_type or "Error"
    message = message or rec.status_message
    if privacy or not message:
        return error_text(str(kind), privacy=privacy)
    text = str(message)
    if not text.startswith(str(kind)):
        text = f"{kind}: {text}"
    return error_text(text, privacy=False)


# -- messages ----------------------------------------------------------------------------------


def _parts_message(message: Mapping[str, Any]) -> dict[str, Any]:
    """A semantic-conventions message (`role`, `parts`) as PostHog's `{"role", "content"}`, in
    the shape the OpenAI drop-in sends: tool calls as the message's `tool_calls`, a lone tool
    result as a `tool` message answering its call."""
    role = message.get("role") or "user"
    parts = message.get("parts")
    if not isinstance(parts, list):
        return {"role": role, "content": message.get("content")}
    content: list[Any] = []
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for part in parts:
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind in ("text", "reasoning"):
            text = part.get("content", "")
            if text == "":
                continue  # an empty text part beside a tool call says nothing
            texts.append(str(text))
            content.append({"type": "text", "text": text})
        elif kind == "tool_call":
            calls.append(function_call(part.get("id"), part.get("name"), part.get("arguments")))
        elif kind == "tool_call_response":
            # PydanticAI names the tool's answer `result`, the conventions `response`.
            response = part.get("response")
            response = part.get("result") if response is None else response
            result = {"type": "tool_result", "id": part.get("id"), "content": response}
            results.append(result)
            content.append(result)
        else:
            content.append(part)
    if len(results) == 1 and len(content) == 1:
        result = results[0]
        answer: dict[str, Any] = {"role": "tool", "content": result["content"]}
        if result["id"] is not None:
            answer["tool_call_id"] = result["id"]
        return answer
    out: dict[str, Any]
    if len(texts) == len(content):
        out = {"role": role, "content": "".join(texts) if texts or not calls else None}
    else:
        out = {"role": role, "content": content}
    if calls:
        out["tool_calls"] = calls
    return out


def _messages(value: Any, role: str) -> list[dict[str, Any]] | None:
    """Semantic-conventions messages; plain text (not JSON) is kept as one message of `role`
    rather than lost."""
    value = _json(value)
    if isinstance(value, str):
        return [{"role": role, "content": value}] if value.strip() else None
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        return None
    return [
        _parts_message(m) if isinstance(m, dict) else {"role": "user", "content": m} for m in value
    ]


def _openinference_messages(attrs: Mapping[str, Any], prefix: str) -> list[dict[str, Any]] | None:
    found = _indexed(attrs, prefix)
    if not found:
        return None
    out = []
    for item in found:
        content = item.get("message.content")
        if content is None and "message.contents.0.message_content.type" in item:
            content = _openinference_contents(item)
        message: dict[str, Any] = {"role": item.get("message.role") or "user", "content": content}
        if item.get("message.tool_call_id"):  # a tool result answers this call
            message["tool_call_id"] = str(item["message.tool_call_id"])
        calls = [
            function_call(
                call.get("tool_call.id"),
                call.get("tool_call.function.name"),
                call.get("tool_call.function.arguments"),
            )
            for call in _indexed(item, "message.tool_calls.")
        ]
        if calls:
            message["tool_calls"] = calls
        out.append(message)
    return out


def _openinference_contents(item: Mapping[str, Any]) -> Any:
    """`message.contents.N.message_content.{type,text,image.image.url}` (the Responses API's
    output, multimodal input): its texts joined, or a list of parts when one is not text."""
    texts: list[str] = []
    parts: list[dict[str, Any]] = []
    for part in _indexed(item, "message.contents."):
        kind = part.get("message_content.type") or "text"
        if kind == "text":
            text = str(part.get("message_content.text") or "")
            texts.append(text)
            parts.append({"type": "text", "text": text})
        elif kind == "image":
            url = part.get("message_content.image.image.url")
            parts.append({"type": "image_url", "image_url": {"url": url}})
        else:
            parts.append({"type": str(kind)})
    if len(texts) == len(parts):
        return "".join(texts) if texts else None
    return parts


_EVENT_ROLES = {
    "gen_ai.system.message": "system",
    "gen_ai.user.message": "user",
    "gen_ai.assistant.message": "assistant",
    "gen_ai.tool.message": "tool",
}


def _flat_message(message: Mapping[str, Any], role: str) -> dict[str, Any]:
    """An indexed message (`gen_ai.prompt.N.*`, as OpenLLMetry writes them): role and content,
    with its `tool_calls.M.{id,name,arguments}` as the message's tool calls and the
    `tool_call_id` a tool result answers."""
    content = message.get("content")
    if content is None and "user" in message:
        # OpenLLMetry's legacy completions write their prompt as `gen_ai.prompt.0.user`.
        role, content = "user", message["user"]
    out: dict[str, Any] = {"role": message.get("role") or role, "content": content}
    calls = [
        function_call(call.get("id"), call.get("name"), call.get("arguments"))
        for call in _indexed(message, "tool_calls.")
        if call.get("name") is not None
    ]
    if calls:
        out["tool_calls"] = calls
    if message.get("tool_call_id") is not None:
        out["tool_call_id"] = message["tool_call_id"]
    return out


def _event_attributes(event: Any) -> Mapping[str, Any]:
    """A span event's attributes, with those in its `gen_ai.event.content` (the Azure AI
    Inference and Agents SDKs put a message event's whole body there, as a JSON object)."""
    attributes: Mapping[str, Any] = event.attributes
    body = _json(attributes.get("gen_ai.event.content"))
    if isinstance(body, dict):
        return {**attributes, **body}
    return attributes


def _event_message(attributes: Mapping[str, Any], role: str) -> dict[str, Any]:
    """A message from a `gen_ai.*.message` span event: content, its `tool_calls` (JSON text or
    a list) and, for a tool result, the call it answers (`id`)."""
    content = _json(attributes.get("content"))
    out: dict[str, Any] = {"role": role, "content": content}
    if _is_blocks(content) and role != "tool":  # a tool's input is its own
        out = _blocks_message(content, role)
    calls = _json(attributes.get("tool_calls"))
    if isinstance(calls, list) and calls:
        out["tool_calls"] = [_json(c) if isinstance(c, str) else c for c in calls]
    answers = attributes.get("id")
    if role == "tool" and answers is not None:
        out["tool_call_id"] = answers
    return out


def _event_messages(rec: SpanRecord) -> list[dict[str, Any]]:
    """The messages of the span's `gen_ai.*.message` events, in order."""
    return [
        _event_message(attributes, attributes.get("role") or _EVENT_ROLES[e.name])
        for e in rec.events
        if e.name in _EVENT_ROLES
        for attributes in (_event_attributes(e),)
    ]


def _input(rec: SpanRecord) -> Any:
    attrs = rec.attributes
    messages = _messages(attrs.get("gen_ai.input.messages"), "user")
    if messages is not None:
        system = _json(attrs.get("gen_ai.system_instructions"))
        if system:
            parts = system if isinstance(system, list) else [{"type": "text", "content": system}]
            messages.insert(0, _parts_message({"role": "system", "parts": parts}))
        return messages
    indexed = _indexed(attrs, "gen_ai.prompt.")
    if indexed:
        return [_flat_message(m, "user") for m in indexed]
    from_events = _event_messages(rec)
    if from_events:
        return from_events
    for event in rec.events:
        if event.name == "gen_ai.content.prompt" and "gen_ai.prompt" in event.attributes:
            return _json(event.attributes["gen_ai.prompt"])
    oi = _openinference_messages(attrs, "llm.input_messages.")
    if oi is not None:
        return oi
    prompts = attrs.get("llm.prompts")  # OpenInference's completion prompts (LlamaIndex complete)
    if isinstance(prompts, (list, tuple)) and prompts:
        return [{"role": "user", "content": str(p)} for p in prompts]
    value = _first(attrs, "ai.prompt.messages", "ai.prompt", "gen_ai.prompt", "input.value")
    return _json(value)


def _output(rec: SpanRecord, output_messages: Any) -> Any:
    """The span's output; `output_messages` is `gen_ai.output.messages` already parsed."""
    attrs = rec.attributes
    messages = _messages(output_messages, "assistant")
    if messages is not None:
        return messages
    indexed = _indexed(attrs, "gen_ai.completion.")
    if indexed:
        return [_flat_message(m, "assistant") for m in indexed]
    choices = []
    for event in rec.events:
        if event.name == "gen_ai.choice":
            choice = _choice(_event_attributes(event))
            if choice is not None:
                choices.append(choice)
        elif event.name == "gen_ai.content.completion" and "gen_ai.completion" in event.attributes:
            return _json(event.attributes["gen_ai.completion"])
    if choices:
        return choices
    oi = _openinference_messages(attrs, "llm.output_messages.")
    if oi is not None:
        return oi
    text = _first(attrs, "ai.response.text", "gen_ai.completion")
    calls = _vercel_tool_calls(attrs.get("ai.response.toolCalls"))
    if calls:
        return [{"role": "assistant", "content": _json(text), "tool_calls": calls}]
    if text is not None:
        return [{"role": "assistant", "content": _json(text)}]
    value = attrs.get("output.value")
    return None if value is None else [{"role": "assistant", "content": _json(value)}]


def _vercel_tool_calls(value: Any) -> list[dict[str, Any]]:
    """The Vercel AI SDK's `ai.response.toolCalls` (JSON: `toolCallId`, `toolName` and `args`,
    `input` in its version 5) as OpenAI-style tool calls; a call without a name is left out."""
    calls = _json(value)
    if not isinstance(calls, list):
        return []
    return [
        function_call(
            call.get("toolCallId"),
            call["toolName"],
            call["args"] if "args" in call else call.get("input"),
        )
        for call in calls
        if isinstance(call, dict) and isinstance(call.get("toolName"), str)
    ]


def _choice(attributes: Mapping[str, Any]) -> dict[str, Any] | None:
    """The answer in a `gen_ai.choice` event: its `message` (an object, or Strands' list of
    content blocks), else its `content`; None without either."""
    message = _json(attributes.get("message"))
    if isinstance(message, dict):
        return {"role": message.get("role") or "assistant", **message}
    if _is_blocks(message):
        return _blocks_message(message, "assistant")
    if message is not None:
        return {"role": "assistant", "content": message}
    if "content" in attributes:
        return {"role": "assistant", "content": attributes["content"]}
    return None


def _is_blocks(value: Any) -> bool:
    """Strands' content blocks: a list of objects keyed by their kind (`{"text": ...}`), unlike
    the conventions' parts, which say their `type`."""
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(b, dict) and "type" not in b for b in value)
    )


def _blocks_message(blocks: list[Any], role: str) -> dict[str, Any]:
    """A message from Strands' content blocks (`{"text"}`, `{"toolUse": {toolUseId, name,
    input}}`, ...): its texts joined, its tool uses as tool calls; other blocks kept as they are,
    as the content, when the message is not all text."""
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    others: list[Any] = []
    for block in blocks:
        use = block.get("toolUse") if isinstance(block, dict) else None
        if isinstance(block, dict) and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif isinstance(use, dict):
            calls.append(function_call(use.get("toolUseId"), use.get("name"), use.get("input")))
        else:
            others.append(block)
    out: dict[str, Any] = {"role": role, "content": blocks if others else "".join(texts) or None}
    if calls:
        out["tool_calls"] = calls
    return out


def _embedding_texts(attrs: Mapping[str, Any]) -> list[Any]:
    """What an embedding span embedded: OpenInference's `embedding.embeddings.N.embedding.text`,
    else OpenLLMetry's `gen_ai.prompt.N.content` (one per text; what its instrumentations of
    the OpenAI and other SDKs write) or the messages its newest releases put in
    `gen_ai.input.messages` (one per text)."""
    texts = [t.get("embedding.text") for t in _indexed(attrs, "embedding.embeddings.")]
    if texts:
        return texts
    if "gen_ai.prompt.0.content" in attrs:  # one lookup before scanning every key
        return [p.get("content") for p in _indexed(attrs, "gen_ai.prompt.")]
    messages = _messages(attrs.get("gen_ai.input.messages"), "user")
    return [m.get("content") for m in messages] if messages else []


def _state(attrs: Mapping[str, Any], *keys: str) -> Any:
    value = _first(attrs, *keys)
    return None if value is None else _json(value)


def _input_state(rec: SpanRecord) -> Any:
    state = _state(
        rec.attributes,
        "gen_ai.tool.call.arguments",
        "ai.toolCall.args",
        "input.value",
        "traceloop.entity.input",
        "gen_ai.input.messages",
        "ai.prompt",
    )
    if state is None and rec.events:
        return _event_input_state(rec)
    return state


def _output_state(rec: SpanRecord) -> Any:
    attrs = rec.attributes
    state = _state(
        attrs,
        "gen_ai.tool.call.result",
        "ai.toolCall.result",
        "output.value",
        "traceloop.entity.output",
        "gen_ai.output.messages",
        "ai.response.text",
        "final_result",  # PydanticAI's agent run
    )
    if state is None and "retrieval.documents.0.document.content" in attrs:
        return _retrieved(attrs)
    if state is None and rec.events:
        return _event_output_state(rec)
    return state


def _event_input_state(rec: SpanRecord) -> Any:
    """A step's input from its message events (Strands records a tool's arguments as a
    `gen_ai.tool.message`, an agent's prompt as `gen_ai.user.message`): one message's content,
    or the messages."""
    messages = _event_messages(rec)
    if len(messages) == 1:
        return messages[0].get("content")
    return messages or None


def _event_output_state(rec: SpanRecord) -> Any:
    """A step's output from its last `gen_ai.choice` event (Strands': a tool's result, an
    agent's answer): the answer's content, or the answer when it holds tool calls."""
    for event in reversed(rec.events):
        if event.name == "gen_ai.choice":
            choice = _choice(_event_attributes(event))
            if choice is None:
                return None
            return choice if choice.get("tool_calls") else choice.get("content")
    return None


def _retrieved(attrs: Mapping[str, Any]) -> list[dict[str, Any]]:
    """OpenInference's `retrieval.documents.N.document.{id,content,score,metadata}`: what a
    retriever span found, as a list of documents."""
    documents = []
    for item in _indexed(attrs, "retrieval.documents."):
        document = {
            field: _json(item[f"document.{field}"])
            if field == "metadata"
            else item[f"document.{field}"]
            for field in ("id", "content", "score", "metadata")
            if f"document.{field}" in item
        }
        if document:
            documents.append(document)
    return documents


def _span_name(rec: SpanRecord) -> str:
    attrs = rec.attributes
    name = _first(
        attrs,
        "gen_ai.tool.name",
        "tool.name",
        "ai.toolCall.name",  # the Vercel AI SDK's tool call
        "gen_ai.agent.name",
        "traceloop.entity.name",
    )
    if name is not None:
        return str(name)
    return rec.name or "span"


def _span_type(attrs: Mapping[str, Any]) -> str | None:
    for key in ("gen_ai.operation.name", "openinference.span.kind", "traceloop.span.kind"):
        value = attrs.get(key)
        if isinstance(value, str):
            return _SPAN_TYPES.get(value, value.lower())
    if "ai.toolCall.name" in attrs:  # the Vercel AI SDK's `ai.toolCall` span
        return "tool"
    return None


# -- events ------------------------------------------------------------------------------------


# The GenAI conventions (1.37+) may put a call's messages, system instructions and tool
# definitions on this event instead of the span (content kept apart from the span's own facts).
_DETAILS_EVENT = "gen_ai.client.inference.operation.details"


def _with_details(rec: SpanRecord) -> SpanRecord:
    """`rec` with the attributes of its operation-details events under its own (the span's own
    values win). Strands writes two, the input when the call starts and the output when it ends:
    every one is read."""
    details: dict[str, Any] = {}
    for event in rec.events:
        if event.name == _DETAILS_EVENT and event.attributes:
            details.update(event.attributes)
    if not details:
        return rec
    return dataclasses.replace(rec, attributes={**details, **rec.attributes})


def span_event(
    rec: SpanRecord,
    kind: str,
    *,
    trace_id: str,
    parent_id: str,
    privacy: bool,
    framework: str | None = "opentelemetry",
    session_id: str | None = None,
) -> tuple[str, dict[str, Any]]:
    """The event name and properties of one span (`kind` from `kind_of`, "" for a plain span).

    `session_id` is the trace's (a span's own session attribute wins)."""
    if rec.events:
        rec = _with_details(rec)
    attrs = rec.attributes
    session_id = session_id_of(rec) or session_id
    error = _error(rec, privacy)
    common: dict[str, Any] = {
        "trace_id": trace_id,
        "span_id": rec.span_id,
        "parent_id": parent_id,
        "latency": rec.latency,
        "error": error,
        "is_error": True if error else None,
        "framework": framework,
        "session_id": session_id,
        "privacy_mode": privacy,
    }
    if kind == GENERATION_KIND:
        # Parsed once: both the output and the stop reason read it.
        output_messages = None if privacy else _json(attrs.get("gen_ai.output.messages"))
        provider = _provider(attrs)
        invocation = _json(attrs.get("llm.invocation_parameters"))
        stream, time_to_first_token = _stream(rec, invocation)
        model = _model(attrs, invocation)
        return GENERATION, generation_properties(
            span_name=rec.name or None,
            model=model,
            provider=provider,
            base_url=_base_url(attrs),
            model_parameters=_model_parameters(attrs, invocation),
            tools=_tools(attrs),
            input=None if privacy else _input(rec),
            output_choices=None if privacy else _output(rec, output_messages),
            stop_reason=_stop_reason(rec, output_messages),
            stream=stream,
            time_to_first_token=time_to_first_token,
            http_status=_http_status(rec, error),
            **_usage(attrs, provider, model),
            **common,
        )
    if kind == EMBEDDING_KIND:
        # In privacy mode only indexed texts are counted (their keys say how many);
        # OpenLLMetry's JSON messages are content, not read there.
        if privacy:
            texts = [t.get("embedding.text") for t in _indexed(attrs, "embedding.embeddings.")]
            texts = texts or [p.get("content") for p in _indexed(attrs, "gen_ai.prompt.")]
        else:
            texts = _embedding_texts(attrs)
        return EMBEDDING, embedding_properties(
            span_name=rec.name or None,
            model=_model(attrs),
            provider=_provider(attrs),
            base_url=_base_url(attrs),
            model_parameters=_model_parameters(
                attrs, _json(attrs.get("llm.invocation_parameters"))
            ),
            input=None if privacy or not texts else texts,
            input_count=len(texts) or None,
            input_tokens=_usage(attrs, None)["input_tokens"],
            http_status=_http_status(rec, error),
            **common,
        )
    return SPAN, span_properties(
        span_name=_span_name(rec),
        span_type=_span_type(attrs),
        input_state=None if privacy else _input_state(rec),
        output_state=None if privacy else _output_state(rec),
        **common,
    )


def trace_event(
    rec: SpanRecord,
    *,
    trace_id: str,
    privacy: bool,
    framework: str | None = "opentelemetry",
    session_id: str | None = None,
) -> tuple[str, dict[str, Any]]:
    """The `$ai_trace` of a trace whose local root is `rec`."""
    attrs = rec.attributes
    error = _error(rec, privacy)
    name = _first(attrs, "gen_ai.agent.name", "traceloop.entity.name", "traceloop.workflow.name")
    return TRACE, trace_properties(
        trace_id=trace_id,
        span_name=str(name) if name is not None else (rec.name or "trace"),
        input_state=None if privacy else _input_state(rec),
        output_state=None if privacy else _output_state(rec),
        latency=rec.latency,
        error=error,
        is_error=True if error else None,
        framework=framework,
        session_id=session_id_of(rec) or session_id,
        privacy_mode=privacy,
    )


def first_of(records: Iterable[SpanRecord], read: Any) -> Any:
    for rec in records:
        value = read(rec)
        if value is not None:
            return value
    return None
