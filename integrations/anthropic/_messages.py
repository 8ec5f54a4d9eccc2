"""Messages calls as `$ai_generation` properties (worker side), and what a stream event adds."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import anthropic
from posthog_llm.instrumentation import (
    Usage,
    allowed_model_parameters,
    function_call,
    generation_properties,
    normalize_usage,
)

if TYPE_CHECKING:
    from posthog_llm.instrumentation import TrackedCall

__all__ = ["build", "observe_event"]

# `Omit` is newer than `NotGiven` in the SDK; either marks an argument that was not given.
_UNSET = tuple({getattr(anthropic, "Omit", anthropic.NotGiven), anthropic.NotGiven})
_USAGE_FIELDS = Usage._fields


def given(value: Any) -> bool:
    return value is not None and not isinstance(value, _UNSET)


def observe_event(call: TrackedCall, event: Any) -> bool:
    """Hot path, once per stream event: keep plain facts only. Hides none."""
    kind = event.type
    if kind == "content_block_delta":
        delta = event.delta
        dtype = delta.type
        if dtype == "text_delta":
            call.chunks.append((event.index, "text", delta.text))
        elif dtype == "input_json_delta":
            call.chunks.append((event.index, "json", delta.partial_json))
        elif dtype == "thinking_delta":
            call.chunks.append((event.index, "thinking", delta.thinking))
        elif dtype == "signature_delta":
            call.chunks.append((event.index, "signature", delta.signature))
        else:
            return True
        if call.ttft is None:
            call.ttft = call.busy
    elif kind == "content_block_start":
        call.chunks.append((event.index, "start", event.content_block))
    elif kind == "message_start":
        message = event.message
        call.model = message.model
        call.usage = message.usage
    elif kind == "message_delta":
        call.stop_reason = event.delta.stop_reason
        call.result = event.usage  # the final counts (output, and cache/web search when sent)
    return True


def build(call: TrackedCall) -> dict[str, Any]:
    params = call.params
    if call.stream:
        model = call.model
        usage = _merged(normalize_usage(call.usage), normalize_usage(call.result))
        output = None if call.privacy else _streamed_output(call.chunks)
        stop_reason = call.stop_reason
        tier = getattr(call.usage, "service_tier", None)  # message_start's usage names it
    else:
        result = call.result
        model = getattr(result, "model", None)
        tier = getattr(getattr(result, "usage", None), "service_tier", None)
        usage = normalize_usage(getattr(result, "usage", None))
        output = None if call.privacy else _output(getattr(result, "content", None))
        stop_reason = getattr(result, "stop_reason", None)
    tools = params.get("tools")
    requested = params.get("model")
    return generation_properties(
        trace_id=call.trace_id,
        parent_id=call.parent_id,
        model=model or (str(requested) if given(requested) else None),
        provider=call.provider_name(),
        base_url=call.base_url(),
        model_parameters=model_parameters(params, call.stream),
        tools=list(tools) if given(tools) and tools else None,
        input=None if call.privacy else request_input(params),
        output_choices=output or None,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_read_input_tokens=usage.cache_read_input_tokens,
        cache_creation_input_tokens=usage.cache_creation_input_tokens,
        cache_creation_5m_input_tokens=usage.cache_creation_5m_input_tokens,
        cache_creation_1h_input_tokens=usage.cache_creation_1h_input_tokens,
        reasoning_tokens=usage.reasoning_tokens,
        web_search_count=usage.web_search_count,
        latency=call.latency,
        time_to_first_token=call.ttft,
        stream=call.stream,
        stop_reason=stop_reason,
        service_tier=tier,
        http_status=call.http_status(),
        error=call.error_text(),
        is_error=True if call.error is not None else None,
        privacy_mode=call.privacy,
    )


def _merged(start: Usage, final: Usage) -> Usage:
    """A stream's usage: the last report of each count wins (message_delta after message_start)."""
    return Usage(*(f if f is not None else s for s, f in zip(start, final)))


def model_parameters(params: Mapping[str, Any], stream: bool) -> dict[str, Any]:
    chosen = allowed_model_parameters({k: v for k, v in params.items() if given(v)})
    if stream:
        chosen["stream"] = True
    return chosen  # (an `output_format` given as a pydantic class is named by the kernel)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(exclude_none=True)
    return value


def request_input(params: Mapping[str, Any]) -> list[Any] | None:
    """The system prompt (as a system message) and the messages as role/content dicts."""
    items: list[Any] = []
    system = params.get("system")
    if given(system) and system:
        if isinstance(system, str):
            items.append({"role": "system", "content": system})
        else:
            items.append({"role": "system", "content": [_plain(b) for b in system]})
    messages = params.get("messages")
    if given(messages) and isinstance(messages, Iterable):
        for message in messages:
            data = _plain(message)
            if not isinstance(data, dict):
                items.append(data)
                continue
            content = data.get("content")
            if isinstance(content, (list, tuple)):
                content = [_plain(block) for block in content]
            items.append({"role": data.get("role", "user"), "content": content})
    return items or None


def _block(block: Any) -> dict[str, Any] | None:
    kind = getattr(block, "type", None)
    if kind == "text":
        return {"type": "text", "text": block.text}
    if kind == "tool_use":
        return function_call(block.id, block.name, block.input)
    if kind == "thinking":
        return {"type": "thinking", "thinking": block.thinking}
    if kind == "redacted_thinking":
        return {"type": "redacted_thinking"}
    plain = _plain(block)
    return plain if isinstance(plain, dict) else None


def _output(content: Any) -> list[dict[str, Any]]:
    blocks = [b for b in (_block(block) for block in content or ()) if b is not None]
    return [{"role": "assistant", "content": blocks}] if blocks else []


def _streamed_output(chunks: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """Fold the stream's block starts and deltas into the message's content blocks."""
    blocks: dict[int, dict[str, Any]] = {}
    for index, what, value in chunks:
        if what == "start":
            block = _block(value) or {"type": getattr(value, "type", "unknown")}
            if block.get("type") == "function":
                block["function"]["arguments"] = ""
                block["_json"] = True
            blocks[index] = block
            continue
        block = blocks.setdefault(index, {"type": "text", "text": ""})
        if what == "text":
            block["text"] = block.get("text", "") + value
        elif what == "json":
            if "function" in block:
                block["function"]["arguments"] += value
            else:  # a server tool's input (web search, code execution, MCP) streams the same way
                block["_partial"] = block.get("_partial", "") + value
        elif what == "thinking":
            block["thinking"] = (block.get("thinking") or "") + value
    content = []
    for index in sorted(blocks):
        block = blocks[index]
        if block.pop("_json", False) and not block["function"]["arguments"]:
            block["function"]["arguments"] = "{}"  # a tool called with no arguments
        partial = block.pop("_partial", None)
        if partial:
            try:
                block["input"] = json.loads(partial)
            except ValueError:
                block["input"] = partial  # cut short: what arrived
        content.append(block)
    return [{"role": "assistant", "content": content}] if content else []
