"""LLM and embedding facts: model, provider, parameters, messages, usage, stop reason.

Everything here runs inside the event builders, on the sender's worker thread: the hooks only
keep references to LlamaIndex's objects (the LLM instance, messages, the final response).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from posthog_llm.instrumentation import (
    MODEL_PARAMETER_NAMES,
    allowed_model_parameters,
    function_call,
    normalize_usage,
    provider_from_base_url,
    provider_name,
    whole_number,
)

__all__ = [
    "model_of",
    "embedding_model_of",
    "provider_of",
    "base_url_of",
    "model_parameters_of",
    "messages_to_input",
    "prompt_to_input",
    "response_to_output",
    "usage_of",
    "stop_reason_of",
    "tools_of",
    "embedding_tokens_of",
]

# OpenAI-compatible packages: the base URL says who really serves the model.
_OPENAI_COMPATIBLE = frozenset({"openai", "openai_like", "litellm", "vllm"})

_BASE_URL_FIELDS = ("api_base", "base_url", "azure_endpoint", "endpoint", "api_url")
_MODEL_FIELDS = ("model", "model_name", "model_id", "deployment_name", "engine")
_MOCK_MODULES = ("llama_index.core.llms.mock", "llama_index.core.embeddings.mock_embed_model")


def _get(obj: Any, key: str) -> Any:
    if obj is None:
        return None
    if type(obj) is dict or isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


class _ClassFacts:
    """What one LLM / embedding class declares, worked out once per class."""

    __slots__ = ("model_fields", "url_fields", "param_fields", "package", "provider")

    def __init__(self, cls: type) -> None:
        declared = getattr(cls, "__pydantic_fields__", None)
        if isinstance(declared, Mapping):
            names: Any = declared
        else:  # a plain class: attributes that are not computed properties
            names = [n for n in dir(cls) if not isinstance(getattr(cls, n, None), property)]
        self.model_fields = tuple(n for n in _MODEL_FIELDS if n in names)
        self.url_fields = tuple(n for n in _BASE_URL_FIELDS if n in names)
        self.param_fields = tuple(sorted(MODEL_PARAMETER_NAMES.intersection(names)))
        self.package: str | None = None
        self.provider: str | None = None
        for klass in cls.__mro__:
            module = getattr(klass, "__module__", "") or ""
            if module.startswith(_MOCK_MODULES):
                self.provider = "mock"
                break
            parts = module.split(".")
            if len(parts) >= 3 and parts[0] == "llama_index" and parts[1] in ("llms", "embeddings"):
                self.package = parts[2]
                self.provider = provider_name(parts[2])
                break


_facts: dict[type, _ClassFacts] = {}


def _facts_of(instance: Any) -> _ClassFacts:
    cls = type(instance)
    facts = _facts.get(cls)
    if facts is None:
        facts = _ClassFacts(cls)
        if len(_facts) < 1024:
            _facts[cls] = facts
    return facts


def _nonempty_str(value: Any) -> str | None:
    if isinstance(value, str) and value and value != "unknown":
        return value
    return None


def served_model_of(response: Any) -> str | None:
    """The model the provider says served the call, from a response's raw answer."""
    raw = _get(response, "raw")
    return _nonempty_str(_get(raw, "model")) or _nonempty_str(_get(raw, "model_version"))


def model_of(instance: Any, response: Any = None, model_dict: Any = None) -> str | None:
    """The served model from the raw response, else the configured one, else the class name."""
    model = served_model_of(response)
    if model:
        return model
    for name in _facts_of(instance).model_fields:
        model = _nonempty_str(getattr(instance, name, None))
        if model:
            return model
    model = _nonempty_str(_get(model_dict, "model_name")) or _nonempty_str(
        _get(model_dict, "model")
    )
    if model:
        return model
    try:
        model = _nonempty_str(instance.metadata.model_name)
    except Exception:
        model = None
    if model:
        return model
    return type(instance).__name__ if instance is not None else None


def embedding_model_of(instance: Any, model_dict: Any = None) -> str | None:
    model = _nonempty_str(_get(model_dict, "model_name"))
    if model:
        return model
    for name in _facts_of(instance).model_fields:
        model = _nonempty_str(getattr(instance, name, None))
        if model:
            return model
    return type(instance).__name__ if instance is not None else None


def base_url_of(instance: Any) -> str | None:
    for name in _facts_of(instance).url_fields:
        value = getattr(instance, name, None)
        if value:
            return str(value)
    return None


def provider_of(instance: Any) -> str | None:
    """Provider from the integration package the class comes from (`llama_index.llms.groq` ...)."""
    if instance is None:
        return None
    facts = _facts_of(instance)
    if facts.provider is not None and facts.package not in _OPENAI_COMPATIBLE:
        return facts.provider
    url = base_url_of(instance)  # OpenAI-compatible: the base URL says who serves the model
    if url:
        return provider_from_base_url(url, default=facts.provider or "openai")
    return facts.provider


def model_parameters_of(instance: Any, call_kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    """Request parameters from an allow-list: declared fields, `additional_kwargs`, call kwargs."""
    params: dict[str, Any] = {}
    for name in _facts_of(instance).param_fields:
        value = getattr(instance, name, None)
        if value is not None:
            params[name] = value
    extra = getattr(instance, "additional_kwargs", None)
    if isinstance(extra, Mapping):
        params.update(allowed_model_parameters(extra))
    if call_kwargs:
        params.update(allowed_model_parameters(call_kwargs))
    return allowed_model_parameters(params)


# -- messages ----------------------------------------------------------------------------------


def _role(message: Any) -> str:
    role = getattr(message, "role", None)
    value = getattr(role, "value", role)
    return str(value) if value is not None else "user"


def _tool_call(call_id: Any, name: Any, args: Any) -> dict[str, Any]:
    if not isinstance(args, str):
        try:
            args = json.dumps(args, default=str, ensure_ascii=False)
        except Exception:  # not JSON: its text, as the model would have read it
            args = str(args)
    return function_call(call_id, name, args)


def _tool_calls_from_kwargs(additional_kwargs: Any) -> list[Any]:
    calls = _get(additional_kwargs, "tool_calls")
    if not calls or not isinstance(calls, Sequence):
        return []
    out = []
    for call in calls:
        function = _get(call, "function")
        if function is not None:
            out.append(
                function_call(_get(call, "id"), _get(function, "name"), _get(function, "arguments"))
            )
        elif _get(call, "tool_name") is not None:  # a ToolSelection
            out.append(
                _tool_call(
                    _get(call, "tool_id"), _get(call, "tool_name"), _get(call, "tool_kwargs")
                )
            )
    return out


def _call_key(call: Any) -> Any:
    """One tool call's identity: its id, else its name (the arguments may be spelled apart)."""
    call_id = _get(call, "id")
    if call_id:
        return ("id", call_id)
    return ("name", _get(_get(call, "function"), "name"))


def _message(message: Any) -> dict[str, Any]:
    """`{"role", "content"}`; text blocks become a string, other blocks typed parts."""
    blocks = getattr(message, "blocks", None)
    out: dict[str, Any] = {"role": _role(message)}
    if blocks is None:
        out["content"] = getattr(message, "content", None) or str(message)
        return out
    texts: list[str] = []
    parts: list[Any] = []
    tool_calls: list[Any] = []
    only_text = True
    for block in blocks:
        kind = getattr(block, "block_type", None)
        if kind == "text":
            texts.append(block.text)
            parts.append({"type": "text", "text": block.text})
        elif kind == "tool_call":
            tool_calls.append(
                _tool_call(
                    getattr(block, "tool_call_id", None),
                    getattr(block, "tool_name", None),
                    getattr(block, "tool_kwargs", None),
                )
            )
        elif kind == "thinking":
            parts.append({"type": "thinking", "thinking": getattr(block, "content", None)})
            only_text = False
        else:
            only_text = False
            part: dict[str, Any] = {"type": kind or type(block).__name__}
            url = getattr(block, "url", None)
            if url:
                part["url"] = str(url)
            parts.append(part)  # binary data never goes into the event
    out["content"] = "\n".join(texts) if only_text else parts
    from_kwargs = _tool_calls_from_kwargs(getattr(message, "additional_kwargs", None))
    if tool_calls and from_kwargs:
        # llama-index-llms-openai 0.8 puts each call both in a block and in the kwargs.
        seen = {_call_key(call) for call in tool_calls}
        from_kwargs = [call for call in from_kwargs if _call_key(call) not in seen]
    tool_calls.extend(from_kwargs)
    if tool_calls:
        out["tool_calls"] = tool_calls
    if out["role"] == "tool":
        tool_call_id = _get(getattr(message, "additional_kwargs", None), "tool_call_id")
        if tool_call_id:
            out["tool_call_id"] = tool_call_id
    return out


def messages_to_input(messages: Sequence[Any] | None) -> list[dict[str, Any]] | None:
    if messages is None:
        return None
    return [_message(m) for m in messages]


def prompt_to_input(prompt: Any) -> list[dict[str, Any]] | None:
    if prompt is None:
        return None
    return [{"role": "user", "content": str(prompt)}]


def response_to_output(response: Any) -> list[dict[str, Any]] | None:
    """`$ai_output_choices` from a ChatResponse or CompletionResponse."""
    if response is None:
        return None
    message = getattr(response, "message", None)
    if message is not None:
        out = _message(message)
        out["role"] = "assistant" if out.get("role") in (None, "user") else out["role"]
        return [out]
    text = getattr(response, "text", None)
    if text is None:
        return None
    choice: dict[str, Any] = {"role": "assistant", "content": text}
    tool_calls = _tool_calls_from_kwargs(getattr(response, "additional_kwargs", None))
    if tool_calls:
        choice["tool_calls"] = tool_calls
    return [choice]


def output_text(response: Any) -> str | None:
    message = getattr(response, "message", None)
    if message is not None:
        return getattr(message, "content", None)
    return getattr(response, "text", None)


def tools_of(call_kwargs: Mapping[str, Any] | None) -> list[Any] | None:
    """Tool definitions passed to a function-calling LLM, in OpenAI's shape."""
    tools = call_kwargs.get("tools") if call_kwargs else None
    if not tools or not isinstance(tools, Sequence):
        return None
    out = []
    for tool in tools:
        metadata = getattr(tool, "metadata", None)
        to_openai = getattr(metadata, "to_openai_tool", None)
        if callable(to_openai):
            try:
                out.append(to_openai(skip_length_check=True))
                continue
            except Exception:
                pass
        out.append(tool if isinstance(tool, Mapping) else str(tool))
    return out


# -- usage and stop reason ---------------------------------------------------------------------


def _first(source: Any, *keys: str) -> int | None:
    for key in keys:
        value = whole_number(_get(source, key))
        if value is not None:
            return value
    return None


_USAGE_KEYS = (
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "reasoning_tokens",
)


def _usage_from(source: Any) -> dict[str, Any]:
    """Token counts from a usage dict/object in any provider's shape (the core's normaliser)."""
    usage = normalize_usage(source)
    return {key: value for key, value in zip(_USAGE_KEYS, usage) if value is not None}


def usage_of(response: Any) -> dict[str, Any]:
    """Usage from `response.raw` (dict or object) or `response.additional_kwargs`."""
    if response is None:
        return {}
    raw = _get(response, "raw")
    for source in (
        _get(raw, "usage"),
        _get(raw, "usage_metadata"),
        _get(_get(raw, "_raw_response"), "usage_metadata"),
        raw,  # Ollama puts prompt_eval_count / eval_count at the top level
        _get(response, "additional_kwargs"),
        _get(_get(response, "message"), "additional_kwargs"),
    ):
        if not source or isinstance(source, (str, bytes, int, float)):
            continue
        usage = _usage_from(source)
        if usage:
            return usage
    return {}


_REASON_KEYS = ("stop_reason", "finish_reason", "stopReason", "finishReason", "done_reason")


def _reason(source: Any) -> str | None:
    for key in _REASON_KEYS:
        value = _get(source, key)
        if isinstance(value, str) and value:
            return value
        name = getattr(value, "name", None)  # enums (google's FinishReason)
        if isinstance(name, str) and name:
            return name
    return None


def stop_reason_of(response: Any) -> str | None:
    if response is None:
        return None
    for source in (_get(response, "raw"), _get(response, "additional_kwargs")):
        if source is None or isinstance(source, (str, bytes)):
            continue
        reason = _reason(source)
        if reason:
            return reason
        for collection_key in ("choices", "candidates", "generations", "outputs"):
            collection = _get(source, collection_key)
            if (
                isinstance(collection, Sequence)
                and not isinstance(collection, (str, bytes))
                and collection
            ):
                reason = _reason(collection[0])
                if reason:
                    return reason
    return None


def embedding_tokens_of(end_event: Any) -> int | None:
    """Token count an embedding integration reported on its end event, if any.

    LlamaIndex's `EmbeddingEndEvent` carries no usage; integrations that know it can dispatch a
    subclass with a `usage` (dict or object, OpenAI's `prompt_tokens`/`total_tokens`) or a
    `token_count` attribute.
    """
    count = whole_number(getattr(end_event, "token_count", None))
    if count is not None:
        return count
    usage = getattr(end_event, "usage", None)
    if usage is None:
        return None
    return _first(usage, "prompt_tokens", "total_tokens", "input_tokens")
