"""Gemini requests and responses as `$ai_generation` / `$ai_embedding` properties (worker side).

`contents` comes in any shape the SDK accepts — a string, a list of strings and parts, `Content`
objects or dicts, pydantic types — and is normalised to role/content messages here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from posthog_llm.instrumentation import (
    embedding_properties,
    function_call,
    generation_properties,
    modality_usage,
    normalize_usage,
    total_usage,
)

if TYPE_CHECKING:
    from posthog_llm.instrumentation import TrackedCall

__all__ = ["build", "build_embedding", "observe_chunk", "contents_input"]

# GenerateContentConfig fields -> the parameter names PostHog shows (allow-listed).
_PARAMETERS = {
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "max_output_tokens": "max_output_tokens",
    "stop_sequences": "stop_sequences",
    "candidate_count": "n",
    "seed": "seed",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
    "thinking_config": "thinking",
    "response_mime_type": "response_format",
    "tool_config": "tool_choice",
    "output_dimensionality": "dimensions",
}
_ROLES = {"model": "assistant"}


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(exclude_none=True, mode="json")
    return value


def _get(obj: Any, *names: str) -> Any:
    for name in names:
        value = obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)
        if value is not None:
            return value
    return None


# -- the request -------------------------------------------------------------------------------


def _part(part: Any) -> dict[str, Any] | None:
    """One part as a typed content item; binary data never goes into the event."""
    if isinstance(part, str):
        return {"type": "text", "text": part}
    text = _get(part, "text")
    if text is not None:
        if _get(part, "thought"):
            return {"type": "thinking", "thinking": text}
        return {"type": "text", "text": text}
    call = _get(part, "function_call", "functionCall")
    if call is not None:
        return function_call(_get(call, "id"), _get(call, "name"), _plain(_get(call, "args")))
    response = _get(part, "function_response", "functionResponse")
    if response is not None:
        return {
            "type": "function_response",
            "name": _get(response, "name"),
            "response": _plain(_get(response, "response")),
        }
    data = _get(part, "inline_data", "inlineData", "file_data", "fileData")
    if data is not None:
        return _file_item(_get(data, "mime_type", "mimeType"), _get(data, "file_uri", "fileUri"))
    code = _get(part, "executable_code", "executableCode")
    if code is not None:  # the code-execution tool's code and what running it gave
        return {
            "type": "executable_code",
            "language": _plain(_get(code, "language")),
            "code": _get(code, "code"),
        }
    ran = _get(part, "code_execution_result", "codeExecutionResult")
    if ran is not None:
        return {
            "type": "code_execution_result",
            "outcome": _plain(_get(ran, "outcome")),
            "output": _get(ran, "output"),
        }
    for name in _OTHER_PARTS:
        value = _get(part, *name)
        if value is not None:  # a server-side tool's call or response: its fields, as sent
            return {"type": name[0], name[0]: _plain(value)}
    if not isinstance(part, Mapping) and _get(part, "uri") and _get(part, "mime_type"):
        # An uploaded file (`client.files.upload(...)`) given as a part: sent as its URI.
        return _file_item(_get(part, "mime_type"), _get(part, "uri"))
    if isinstance(part, Mapping) or hasattr(part, "model_dump"):
        return None
    return {"type": type(part).__name__}  # an image object or file: its kind, not its bytes


# Parts of the tools Gemini runs itself, kept by their field's name (snake case first).
_OTHER_PARTS = (("tool_call", "toolCall"), ("tool_response", "toolResponse"))


def _file_item(mime: Any, uri: Any) -> dict[str, Any]:
    """A file part by its kind, type and URI (never its bytes)."""
    mime = mime if isinstance(mime, str) else ""
    item: dict[str, Any] = {"type": mime.split("/", 1)[0] or "file", "mime_type": mime}
    if uri:
        item["url"] = uri
    return item


def _content_of(parts: list[dict[str, Any]]) -> Any:
    # One text part is the message's text; several stay apart (`contents=["a", "b"]` is two
    # texts the model reads as such, not "ab").
    if len(parts) == 1 and parts[0]["type"] == "text":
        return parts[0]["text"]
    return parts


def _is_content(item: Any) -> bool:
    return _get(item, "parts") is not None or (isinstance(item, Mapping) and "role" in item)


def _message(item: Any) -> dict[str, Any]:
    role = _get(item, "role") or "user"
    parts = [p for p in (_part(x) for x in _get(item, "parts") or ()) if p is not None]
    return {"role": _ROLES.get(role, role), "content": _content_of(parts)}


def contents_input(contents: Any) -> list[dict[str, Any]]:
    """`contents` as role/content messages; loose strings and parts make one user message."""
    if contents is None:
        return []
    if isinstance(contents, str) or not isinstance(contents, (list, tuple)):
        contents = [contents]
    messages: list[dict[str, Any]] = []
    loose: list[dict[str, Any]] = []
    for item in contents:
        if _is_content(item):
            if loose:
                messages.append({"role": "user", "content": _content_of(loose)})
                loose = []
            messages.append(_message(item))
        else:
            part = _part(item)
            if part is not None:
                loose.append(part)
    if loose:
        messages.append({"role": "user", "content": _content_of(loose)})
    return messages


def _system(config: Any) -> Any:
    instruction = _get(config, "system_instruction", "systemInstruction")
    if instruction is None:
        return None
    if isinstance(instruction, str):
        return instruction
    if _is_content(instruction):
        return _message(instruction)["content"]
    if isinstance(instruction, (list, tuple)):
        return _content_of([p for p in (_part(x) for x in instruction) if p is not None])
    part = _part(instruction)
    return _content_of([part]) if part else None


def request_input(params: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    messages = contents_input(params.get("contents"))
    system = _system(params.get("config"))
    if system:
        messages.insert(0, {"role": "system", "content": system})
    return messages or None


def model_parameters(config: Any, stream: bool) -> dict[str, Any]:
    chosen: dict[str, Any] = {}
    if config is not None:
        for field, name in _PARAMETERS.items():
            value = _get(config, field)
            if value is not None:
                chosen[name] = _plain(value)
    if stream:
        chosen["stream"] = True
    return chosen


def _tools(config: Any) -> list[Any] | None:
    tools = _get(config, "tools") if config is not None else None
    if not tools:
        return None
    out = []
    for tool in tools:
        if callable(tool) and not hasattr(tool, "model_dump"):
            out.append(_function_tool(tool))
        else:
            out.append(_plain(tool))
    return out


def _function_tool(tool: Callable[..., Any]) -> Any:
    """A Python function for automatic function calling, as the declaration the SDK makes of it
    (its name, description and parameter schema); its name and description if that fails."""
    try:
        from google.genai import types

        declare = getattr(types.FunctionDeclaration, "from_callable_with_api_option", None)
        if declare is not None:
            try:
                # As the SDK declares it (a JSON schema), and without the warning the SDK
                # logs for the other parsing, which the user never asked for.
                return _plain(declare(callable=tool, use_json_schema=True))
            except TypeError:  # an SDK before `use_json_schema`
                return _plain(declare(callable=tool))
    except Exception:  # a signature the SDK cannot declare: the fact left out, not the tool
        pass
    return {"name": getattr(tool, "__name__", str(tool)), "description": tool.__doc__}


# -- the response ------------------------------------------------------------------------------


def observe_chunk(call: TrackedCall, chunk: Any) -> bool:
    """Hot path, once per streamed response: keep the text and calls it adds. Hides none."""
    version = chunk.model_version
    if version:
        call.model = version
    usage = chunk.usage_metadata
    candidates = chunk.candidates
    # The first candidate decides rounds, usage and stop reason; the others (`candidate_count`:
    # a chunk may carry one of them alone) only add their parts, as choices of their own.
    candidate = candidates[0] if candidates else None
    if candidate is not None and candidate.index not in (None, 0):
        candidate = None
    if candidates and (candidate is None or len(candidates) > 1):
        _other_candidates(call, candidates)
    content = candidate.content if candidate is not None else None
    parts = content.parts if content is not None else None
    response_id = chunk.response_id
    if (
        candidate is not None
        and call.stop_reason is not None
        and call.usage is not None
        # Another response: its id says so; without ids, a prompt of another size (the next
        # request holds the function's result; a closing chunk of the same response repeats
        # its prompt count).
        and (
            response_id != call.model_response_id
            if response_id
            else usage is not None and usage.prompt_token_count != call.usage.prompt_token_count
        )
    ):
        # The first candidate after it finished, in another response: the SDK asked again
        # (automatic function calling ran the functions the model asked for). That request's
        # usage is kept, to be added.
        rounds = call.requests
        if rounds is None:
            rounds = call.requests = []
        rounds.append(call.usage)
        call.usage = None
        call.stop_reason = None
    if response_id:
        call.model_response_id = response_id
    if usage is not None:
        call.usage = usage
    if candidate is not None:
        if candidate.grounding_metadata is not None and _grounded(candidate):
            call.web_searches = 1
        if candidate.finish_reason is not None:
            call.stop_reason = candidate.finish_reason
        if parts:
            call.chunks.extend(parts)
            if call.ttft is None:
                call.ttft = call.busy
    return True


def _grounded(candidate: Any) -> bool:
    """Whether the answer was grounded in a Google Search: Gemini bills that per request."""
    metadata = getattr(candidate, "grounding_metadata", None)
    return bool(
        metadata is not None
        and (
            getattr(metadata, "web_search_queries", None)
            or getattr(metadata, "grounding_chunks", None)
        )
    )


def _other_candidates(call: TrackedCall, candidates: Any) -> None:
    """Keep the parts of a streamed chunk's candidates other than the first, by index."""
    for other in candidates:
        index = other.index
        if not index:
            continue
        content = other.content
        parts = content.parts if content is not None else None
        if parts:
            kept = call.other_choices
            if kept is None:
                kept = call.other_choices = {}
            kept.setdefault(int(index), []).extend(parts)


def _choices(first: list[Any], others: Any) -> list[dict[str, Any]] | None:
    """One output choice per candidate, the first one first."""
    choices = _output(first)
    for parts in others:
        choices += _output(parts)
    return choices or None


def _reason(value: Any) -> str | None:
    if value is None:
        return None
    name = getattr(value, "name", None)
    return str(name) if isinstance(name, str) else str(value)


def _output(parts: list[Any]) -> list[dict[str, Any]]:
    items = [p for p in (_part(x) for x in parts) if p is not None]
    merged: list[dict[str, Any]] = []
    for item in items:  # a stream's text pieces become one text block
        if merged and item["type"] == merged[-1]["type"] and item["type"] in ("text", "thinking"):
            key = item["type"] if item["type"] == "thinking" else "text"
            merged[-1] = {**merged[-1], key: merged[-1][key] + item[key]}
        else:
            merged.append(item)
    return [{"role": "assistant", "content": _content_of(merged)}] if merged else []


def build(call: TrackedCall) -> dict[str, Any]:
    params = call.params
    config = params.get("config")
    rounds = None
    others: list[list[Any]] = []
    searched = call.web_searches
    if call.stream:
        model, usage_block, parts, stop = call.model, call.usage, call.chunks, call.stop_reason
        rounds = call.requests  # the usage of each earlier request of the call
        if call.other_choices:
            others = [call.other_choices[i] for i in sorted(call.other_choices)]
    else:
        result = call.result
        model = getattr(result, "model_version", None)
        usage_block = getattr(result, "usage_metadata", None)
        candidates = getattr(result, "candidates", None) or ()
        first = candidates[0] if candidates else None
        content = getattr(first, "content", None)
        parts = list(getattr(content, "parts", None) or ())
        stop = getattr(first, "finish_reason", None)
        searched = int(any(_grounded(candidate) for candidate in candidates))
        for other in candidates[1:]:
            others.append(list(getattr(getattr(other, "content", None), "parts", None) or ()))
    usage = normalize_usage(usage_block)
    requests = None if call.stream else call.requests
    usage_blocks: list[Any] = [usage_block]
    if rounds:
        usage_blocks = [*rounds, usage_block]
        usage = total_usage([normalize_usage(u) for u in usage_blocks])
    elif requests and (len(requests) > 1 or call.error is not None):
        # Automatic function calling: the SDK ran the functions the model asked for and asked
        # again; every request is paid for, so the call's counts are all of them (those
        # answered before one that failed too).
        usage_blocks = [getattr(r, "usage_metadata", None) for r in requests]
        usage = total_usage([normalize_usage(u) for u in usage_blocks])
    requested = params.get("model")
    return generation_properties(
        trace_id=call.trace_id,
        parent_id=call.parent_id,
        model=model or (str(requested) if requested else None),
        provider=call.provider_name(),
        base_url=call.base_url(),
        model_parameters=model_parameters(config, call.stream),
        tools=_tools(config),
        input=None if call.privacy else request_input(params),
        output_choices=None if call.privacy else _choices(parts, others),
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_read_input_tokens=usage.cache_read_input_tokens,
        reasoning_tokens=usage.reasoning_tokens,
        web_search_count=searched or None,
        usage_by_modality=modality_usage(*usage_blocks),
        latency=call.latency,
        time_to_first_token=call.ttft,
        stream=call.stream,
        stop_reason=_reason(stop),
        http_status=call.http_status(),
        error=call.error_text(),
        is_error=True if call.error is not None else None,
        privacy_mode=call.privacy,
    )


def build_embedding(call: TrackedCall) -> dict[str, Any]:
    params = call.params
    contents = params.get("contents")
    items = list(contents) if isinstance(contents, (list, tuple)) else [contents]
    # Each item is embedded on its own: a text, a part or a Content.
    texts = [m["content"] for item in items for m in contents_input(item)]
    count = len(items)
    tokens = None
    for embedding in getattr(call.result, "embeddings", None) or ():
        counted = getattr(getattr(embedding, "statistics", None), "token_count", None)
        if counted is None:
            tokens = None
            break
        tokens = (tokens or 0) + int(counted)
    return embedding_properties(
        trace_id=call.trace_id,
        parent_id=call.parent_id,
        model=str(params.get("model")) if params.get("model") else None,
        provider=call.provider_name(),
        base_url=call.base_url(),
        model_parameters=model_parameters(params.get("config"), False),
        input=None
        if call.privacy
        else (texts[0] if not isinstance(contents, (list, tuple)) and texts else texts),
        input_count=count,
        input_tokens=tokens,
        latency=call.latency,
        http_status=call.http_status(),
        error=call.error_text(),
        is_error=True if call.error is not None else None,
        privacy_mode=call.privacy,
    )
