"""`chat.completions.create` / `.parse` (and streams) as `$ai_generation` properties."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ._common import as_dict, function_call, generation, given, usage_count

if TYPE_CHECKING:
    from ._track import Call

__all__ = ["build", "observe_chunk"]

_MESSAGE_EXTRAS = ("tool_calls", "tool_call_id", "name", "refusal")


def observe_chunk(call: Call, chunk: Any) -> bool:
    """Hot path, once per chunk: keep it, note the first token. False hides the chunk."""
    call.chunks.append(chunk)
    choices = chunk.choices
    if call.ttft is None and choices:
        for choice in choices:
            delta = choice.delta
            if delta is not None and (delta.content or delta.tool_calls or delta.refusal):
                call.ttft = call.busy
                break
    # The usage-only chunk we asked for (empty choices) is ours, not the caller's.
    return not (call.hide_usage and not choices and chunk.usage is not None)


def build(call: Call) -> dict[str, Any]:
    if call.stream:
        model, output, stop_reason, usage = _accumulate(call.chunks)
    else:
        result = call.result
        model = getattr(result, "model", None)
        usage = getattr(result, "usage", None)
        output, stop_reason = _output(getattr(result, "choices", None))
    return generation(
        call,
        model=model,
        input_of=lambda params: messages_input(params.get("messages")),
        output=output,
        tokens=(
            usage_count(usage, "prompt_tokens"),
            usage_count(usage, "completion_tokens"),
            usage_count(usage, "prompt_tokens_details", "cached_tokens"),
            usage_count(usage, "completion_tokens_details", "reasoning_tokens"),
        ),
        stop_reason=stop_reason,
        error=call.error_text(),
    )


def messages_input(messages: Any) -> list[Any] | None:
    """The request's messages as plain `{"role", "content", …}` dicts."""
    if not given(messages) or not isinstance(messages, Iterable):
        return None
    result = []
    for message in messages:
        data = as_dict(message)
        if not isinstance(data, dict):
            result.append(data)
            continue
        item = {"role": data.get("role"), "content": data.get("content")}
        for key in _MESSAGE_EXTRAS:
            if data.get(key) is not None:
                item[key] = data[key]
        result.append(item)
    return result


def _output(choices: Any) -> tuple[list[dict[str, Any]], str | None]:
    output = []
    stop_reason = None
    for choice in choices or ():
        message = choice.message
        item: dict[str, Any] = {"role": message.role or "assistant", "content": message.content}
        if message.tool_calls:
            item["tool_calls"] = [_tool_call(tc) for tc in message.tool_calls]
        if getattr(message, "refusal", None):
            item["refusal"] = message.refusal
        output.append(item)
        if stop_reason is None:
            stop_reason = choice.finish_reason
    return output, stop_reason


def _tool_call(tool_call: Any) -> dict[str, Any]:
    function = getattr(tool_call, "function", None)
    if function is not None:
        return function_call(tool_call.id, function.name, function.arguments)
    return as_dict(tool_call)  # custom tools keep their own shape


def _accumulate(chunks: list[Any]) -> tuple[str | None, list[dict[str, Any]], str | None, Any]:
    """Fold stream chunks into the model, one message per choice, the stop reason and usage."""
    model = None
    usage = None
    states: dict[int, dict[str, Any]] = {}
    for chunk in chunks:
        model = model or getattr(chunk, "model", None) or None
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices or ():
            state = states.get(choice.index)
            if state is None:
                state = states[choice.index] = {
                    "role": "assistant",
                    "content": [],
                    "refusal": [],
                    "tools": {},
                    "finish": None,
                }
            delta = choice.delta
            if delta is not None:
                if delta.role:
                    state["role"] = delta.role
                if delta.content:
                    state["content"].append(delta.content)
                if delta.refusal:
                    state["refusal"].append(delta.refusal)
                for tool_delta in delta.tool_calls or ():
                    _add_tool_delta(state["tools"], tool_delta)
            if choice.finish_reason:
                state["finish"] = choice.finish_reason
    output = []
    stop_reason = None
    for index in sorted(states):
        state = states[index]
        item: dict[str, Any] = {
            "role": state["role"],
            "content": "".join(state["content"]) if state["content"] else None,
        }
        if state["tools"]:
            item["tool_calls"] = [state["tools"][i] for i in sorted(state["tools"])]
        if state["refusal"]:
            item["refusal"] = "".join(state["refusal"])
        if item["content"] is None and not state["tools"] and not state["refusal"]:
            item["content"] = ""
        output.append(item)
        if stop_reason is None:
            stop_reason = state["finish"]
    return model, output, stop_reason, usage


def _add_tool_delta(tools: dict[int, dict[str, Any]], delta: Any) -> None:
    slot = tools.get(delta.index)
    if slot is None:
        slot = tools[delta.index] = function_call(None, "", "")
    if delta.id:
        slot["id"] = delta.id
    function = delta.function
    if function is not None:
        if function.name:
            slot["function"]["name"] += function.name
        if function.arguments:
            slot["function"]["arguments"] += function.arguments
