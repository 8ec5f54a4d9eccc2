"""OpenAI's message formats, read the same way on every route that meets them.

The OpenAI drop-in and the Agents SDK both send Responses API input; PostHog shows `$ai_input`
as `{"role", "content"}` messages, with tool calls in the function format the Chat Completions
API uses.

>>> responses_input_messages("Be brief.", [
...     {"role": "user", "content": "Weather in Paris?"},
...     {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": "{}"},
...     {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
... ])[2:]
[{'role': 'assistant', 'content': None, 'tool_calls': [{'type': 'function', 'id': 'c1', \
'function': {'name': 'weather', 'arguments': '{}'}}]}, {'role': 'tool', 'tool_call_id': 'c1', \
'content': 'sunny'}]
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = [
    "field_of",
    "function_call",
    "responses_input_messages",
    "responses_stop_reason",
    "plain_item",
]


def function_call(call_id: Any, name: Any, arguments: Any) -> dict[str, Any]:
    """A tool call in OpenAI's function format, whichever API it came from: its arguments as
    JSON text (Anthropic and Gemini give a dict), its id only when the provider gave one.

    >>> function_call(None, "weather", {"city": "Paris"})
    {'type': 'function', 'function': {'name': 'weather', 'arguments': '{"city": "Paris"}'}}
    """
    if arguments is not None and not isinstance(arguments, str):
        try:
            arguments = json.dumps(arguments, ensure_ascii=False, default=str)
        except (TypeError, ValueError):
            pass  # not JSON: the value as it is, made JSON-safe with the rest of the event
    call: dict[str, Any] = {"type": "function"}
    if call_id is not None:
        call["id"] = call_id
    call["function"] = {"name": name, "arguments": arguments}
    return call


def plain_item(value: Any) -> Any:
    """A message or item as a dict (the SDK's pydantic models from earlier responses too)."""
    if isinstance(value, Mapping):
        return value
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        try:
            return dump(exclude_none=True)
        except TypeError:
            return dump()
    return value


def responses_input_messages(instructions: Any, raw: Any) -> list[Any] | None:
    """A Responses API call's instructions and input as messages; None when there are none.

    Function calls become an assistant message's `tool_calls` (consecutive ones share it) and
    their outputs `tool` messages, as the same exchange reads through Chat Completions; other
    typed items (reasoning, built-in tool calls) are kept as given.
    """
    items: list[Any] = []
    if isinstance(instructions, str) and instructions:
        items.append({"role": "system", "content": instructions})
    if isinstance(raw, str):
        items.append({"role": "user", "content": raw})
    elif isinstance(raw, (list, tuple)):
        calls: list[Any] | None = None  # the tool calls of the assistant message being built
        for item in raw:
            data = plain_item(item)
            kind = data.get("type") if isinstance(data, Mapping) else None
            if kind == "function_call":
                call = function_call(data.get("call_id"), data.get("name"), data.get("arguments"))
                if calls is None:
                    calls = [call]
                    items.append({"role": "assistant", "content": None, "tool_calls": calls})
                else:
                    calls.append(call)
                continue
            calls = None
            if kind == "function_call_output":
                items.append(
                    {
                        "role": "tool",
                        "tool_call_id": data.get("call_id"),
                        "content": data.get("output"),
                    }
                )
            elif isinstance(data, Mapping) and "role" in data:
                items.append({"role": data.get("role"), "content": data.get("content")})
            else:
                items.append(data)
    return items or None


def responses_stop_reason(response: Any, called_tools: bool) -> str | None:
    """A Responses API answer's stop reason, from its `status` and `incomplete_details.reason`
    (attributes of the SDK's `Response`, or keys of its dump, as LangChain's `response_metadata`
    holds it): why an incomplete answer was cut, "stop" or "tool_calls" for a completed one (as
    the Chat Completions API names them), the status of a failed or cancelled one, else None.

    >>> responses_stop_reason({"status": "incomplete",
    ...                        "incomplete_details": {"reason": "max_output_tokens"}}, False)
    'max_output_tokens'
    >>> responses_stop_reason({"status": "completed"}, True)
    'tool_calls'
    >>> responses_stop_reason({"status": "in_progress"}, False) is None
    True
    """
    status = field_of(response, "status")
    if status == "completed":
        return "tool_calls" if called_tools else "stop"
    if status == "incomplete":
        reason = field_of(field_of(response, "incomplete_details"), "reason")
        return str(reason) if reason else status
    return status if status in ("failed", "cancelled") else None


def field_of(source: Any, key: str) -> Any:
    """`source[key]` of a mapping, else `source.key`; None when it has neither (or is None):
    the shapes SDK objects and their dumps come in."""
    if source is None:
        return None
    if type(source) is dict or isinstance(source, Mapping):
        return source.get(key)
    return getattr(source, key, None)
