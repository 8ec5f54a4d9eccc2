"""LangChain messages, prompts, documents and results in OpenAI's role/content form.

Runs on the sender's worker thread (inside the event builder). Binary payloads (base64 images,
audio, files) are replaced by a short placeholder; everything else keeps its shape, and
`posthog_llm.to_json_safe` takes care of whatever is left that JSON cannot hold.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from langchain_core.documents import Document
from langchain_core.messages import BaseMessage
from langchain_core.prompt_values import PromptValue
from posthog_llm.instrumentation import BASE64_PLACEHOLDER, TRUNCATION_MARKER, function_call

__all__ = [
    "message_to_dict",
    "messages_to_dicts",
    "prompts_to_dicts",
    "output_choices",
    "to_state",
    "cap_strings",
    "long_texts",
]

_ROLES = {
    "human": "user",
    "user": "user",
    "ai": "assistant",
    "assistant": "assistant",
    "system": "system",
    "developer": "system",
    "tool": "tool",
    "function": "function",
}

# Content blocks that duplicate `tool_calls` (Anthropic puts tool use in the content too).
_TOOL_USE_BLOCKS = frozenset({"tool_use", "tool_call", "server_tool_use", "function_call"})
_MAX_STATE_DEPTH = 6


def _role(message: BaseMessage) -> str:
    kind = message.type
    role = _ROLES.get(kind)
    if role is not None:
        return role
    if kind in ("chat", "ChatMessageChunk"):  # ChatMessage carries its own role
        role = message.role  # type: ignore[attr-defined]
        return str(_ROLES.get(role, role))
    if kind.endswith("MessageChunk"):  # "AIMessageChunk" -> "ai"
        kind = kind[: -len("MessageChunk")].lower()
    return _ROLES.get(kind, kind)


def _data_url(mime: Any) -> str:
    return f"data:{mime or 'application/octet-stream'};base64,{BASE64_PLACEHOLDER}"


def _part(part: Any) -> Any:
    """One content block in OpenAI's form, with binary data replaced."""
    if isinstance(part, str):
        return {"type": "text", "text": part}
    if not (type(part) is dict or isinstance(part, Mapping)):
        return part
    kind = part.get("type")
    if kind == "text":
        return {"type": "text", "text": part.get("text", "")}
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if (type(image) is dict or isinstance(image, Mapping)) else image
        if isinstance(url, str) and url.startswith("data:") and "," in url:
            url = url[: url.index(",")] + "," + BASE64_PLACEHOLDER
        out = dict(part)
        out["image_url"] = (
            {**image, "url": url}
            if (type(image) is dict or isinstance(image, Mapping))
            else {"url": url}
        )
        return out
    if kind == "image":
        source = part.get("source")
        if type(source) is dict or isinstance(source, Mapping):  # Anthropic's own format
            if source.get("type") == "base64":
                return {
                    "type": "image_url",
                    "image_url": {"url": _data_url(source.get("media_type"))},
                }
            if source.get("url"):
                return {"type": "image_url", "image_url": {"url": source["url"]}}
        mime = part.get("mime_type")
        if part.get("base64") or part.get("source_type") == "base64" or part.get("data"):
            return {"type": "image_url", "image_url": {"url": _data_url(mime)}}
        if part.get("url"):
            return {"type": "image_url", "image_url": {"url": part["url"]}}
        return dict(part)
    if kind in ("audio", "input_audio", "file", "video", "document"):
        out = {}
        for key, value in part.items():
            if key in ("base64", "data") and isinstance(value, str):
                value = BASE64_PLACEHOLDER
            elif (type(value) is dict or isinstance(value, Mapping)) and "data" in value:
                value = {**value, "data": BASE64_PLACEHOLDER}
            elif (type(value) is dict or isinstance(value, Mapping)) and "file_data" in value:
                value = {**value, "file_data": BASE64_PLACEHOLDER}
            out[key] = value
        return out
    return dict(part)


def _content(content: Any, *, drop_tool_use: bool = False) -> Any:
    if isinstance(content, str) or content is None:
        return content or ""
    if isinstance(content, (list, tuple)):
        parts = [
            _part(part)
            for part in content
            if not (
                drop_tool_use
                and (type(part) is dict or isinstance(part, Mapping))
                and part.get("type") in _TOOL_USE_BLOCKS
            )
        ]
        if parts and all(
            (type(p) is dict or isinstance(p, Mapping)) and p.get("type") == "text" for p in parts
        ):
            if len(parts) == 1:
                return parts[0]["text"]
        return parts
    return content


def _arguments(args: Any) -> str:
    if isinstance(args, str):
        return args
    try:
        return json.dumps(args, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(args)


def _tool_calls(message: BaseMessage) -> list[dict[str, Any]]:
    calls = []
    for call in list(getattr(message, "tool_calls", None) or ()) + list(
        getattr(message, "invalid_tool_calls", None) or ()
    ):
        if not (type(call) is dict or isinstance(call, Mapping)):
            continue
        calls.append(function_call(call.get("id"), call.get("name"), _arguments(call.get("args"))))
    return calls


def message_to_dict(message: Any) -> Any:
    """One message as `{"role", "content", ...}` in OpenAI's chat format.

    >>> from langchain_core.messages import HumanMessage
    >>> message_to_dict(HumanMessage("hi"))
    {'role': 'user', 'content': 'hi'}
    """
    if not isinstance(message, BaseMessage):
        if (type(message) is dict or isinstance(message, Mapping)) and "role" in message:
            return dict(message)
        if isinstance(message, (tuple, list)) and len(message) == 2 and isinstance(message[0], str):
            return {"role": _ROLES.get(message[0], message[0]), "content": _content(message[1])}
        return {"role": "user", "content": message if isinstance(message, str) else str(message)}
    role = _role(message)
    tool_calls = _tool_calls(message) if role == "assistant" else []
    out: dict[str, Any] = {
        "role": role,
        "content": _content(message.content, drop_tool_use=bool(tool_calls)),
    }
    if tool_calls:
        out["tool_calls"] = tool_calls
    elif role == "assistant":
        function_call = (message.additional_kwargs or {}).get("function_call")
        if function_call:
            out["function_call"] = function_call
    if role == "tool":
        tool_call_id = getattr(message, "tool_call_id", None)
        if tool_call_id:
            out["tool_call_id"] = tool_call_id
    name = getattr(message, "name", None)
    if name:
        out["name"] = name
    refusal = (message.additional_kwargs or {}).get("refusal")
    if refusal:
        out["refusal"] = refusal
    return out


def converted(message: Any, memo: dict[int, Any] | None) -> Any:
    """`message_to_dict(message)`, made once per message within one replay of a trace (`memo`):
    a prompt's output messages are the model's input, and the model's reply is the parser's.

    The memo keeps the message with its dict, so an id is never taken for another object's.
    """
    if memo is None:
        return message_to_dict(message)
    key = id(message)
    seen = memo.get(key)
    if seen is not None and seen[0] is message:
        return seen[1]
    out = message_to_dict(message)
    memo[key] = (message, out)
    return out


def messages_to_dicts(messages: Any, memo: dict[int, Any] | None = None) -> list[Any]:
    """`on_chat_model_start`'s messages (one list per prompt) as one flat list."""
    out: list[Any] = []
    for row in messages or ():
        if isinstance(row, (list, tuple)):
            out.extend(converted(m, memo) for m in row)
        else:
            out.append(converted(row, memo))
    return out


def prompts_to_dicts(prompts: Any) -> list[dict[str, Any]]:
    """A completion model's prompt strings as user messages."""
    if isinstance(prompts, str):
        prompts = [prompts]
    return [{"role": "user", "content": p} for p in prompts or ()]


def output_choices(response: Any, memo: dict[int, Any] | None = None) -> list[Any]:
    """Every candidate of an `LLMResult` as an assistant message."""
    choices: list[Any] = []
    for candidates in getattr(response, "generations", None) or ():
        for generation in candidates or ():
            message = getattr(generation, "message", None)
            if message is not None:
                choices.append(converted(message, memo))
            else:
                choices.append({"role": "assistant", "content": getattr(generation, "text", "")})
    return choices


def to_state(value: Any, depth: int = 0, memo: dict[int, Any] | None = None) -> Any:
    """A chain's input or output with messages, prompts and documents made readable (`memo`:
    see `converted`)."""
    cls = type(value)
    # Exact builtins first: most state is plain dicts, lists and strings.
    if cls is str or value is None or cls is int or cls is float or cls is bool:
        return value
    if depth > _MAX_STATE_DEPTH:
        return value
    if cls is dict:
        return {k: to_state(v, depth + 1, memo) for k, v in value.items()}
    if cls is list:
        return [to_state(v, depth + 1, memo) for v in value]
    if isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, BaseMessage):
        return converted(value, memo)
    if isinstance(value, PromptValue):
        messages = getattr(value, "messages", None)
        if messages is not None:
            return [converted(m, memo) for m in messages]
        return value.to_string()
    if isinstance(value, Document):
        out: dict[str, Any] = {"page_content": value.page_content}
        if value.metadata:
            out["metadata"] = value.metadata
        return out
    if type(value) is dict or isinstance(value, Mapping):
        return {k: to_state(v, depth + 1, memo) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_state(v, depth + 1, memo) for v in value]
    fields = _state_fields(value)
    if fields is not None:
        # LangGraph state as a pydantic model or a dataclass, a `Command(update=...)`: their
        # fields read as a dict state's are (messages made readable, long strings capped).
        return {k: to_state(v, depth + 1, memo) for k, v in fields.items()}
    return value


def _state_fields(value: Any) -> dict[str, Any] | None:
    """A pydantic model's or a dataclass instance's fields, one level (None for others)."""
    if isinstance(value, type):
        return None
    if dataclasses.is_dataclass(value):
        return {f.name: getattr(value, f.name, None) for f in dataclasses.fields(value)}
    model_fields = getattr(type(value), "model_fields", None)
    if isinstance(model_fields, dict) and hasattr(value, "model_dump"):
        return {name: getattr(value, name, None) for name in model_fields}
    return None


def cap_strings(
    value: Any,
    max_chars: int,
    sent_whole: list[str] | None = None,
    depth: int = 0,
) -> Any:
    """`value` (as made by `to_state`) with strings over `max_chars` cut, with a marker.

    With `sent_whole`, only strings contained in one of those texts are cut: their whole text
    is already in a generation of the same trace. Copy on write: a dict or list is copied only
    when something in it was cut, so `value` itself comes back when nothing was (the usual
    case: one walk, no copy).
    """
    cls = type(value)
    if cls is str or isinstance(value, str):
        if len(value) <= max_chars:
            return value
        if sent_whole is None:
            note = f"{len(value):,} characters in all"
        elif any(_within(value, text) for text in sent_whole):
            note = f"{len(value):,} characters in all, sent whole in this trace's generation"
        else:
            return value
        return f"{value[:max_chars]}{TRUNCATION_MARKER[:-1]}: {note}]"
    if depth > _MAX_STATE_DEPTH * 2:
        return value
    if cls is dict or isinstance(value, dict):
        items: Any = value.items()
    elif cls is list or isinstance(value, list):
        items = enumerate(value)
    else:
        return value
    copy: Any = None
    depth += 1
    for key, item in items:  # a loop with inline checks: no call for the usual small values
        kind = type(item)
        if kind is str:
            if len(item) <= max_chars:
                continue
        elif kind is int or kind is float or kind is bool or item is None:
            continue
        capped = cap_strings(item, max_chars, sent_whole, depth)
        if capped is not item:
            if copy is None:
                copy = dict(value) if isinstance(value, dict) else list(value)
            copy[key] = capped
    return value if copy is None else copy


def _within(value: str, text: str) -> bool:
    """`value in text`; for texts of the same length (the usual case: the prompt itself) a
    comparison, not a substring search (~100x cheaper on a 200 KB prompt)."""
    if len(value) == len(text):
        return value == text
    return value in text


def long_texts(messages: Any, min_chars: int) -> list[str]:
    """The texts of at least `min_chars` in converted messages (`{"role", "content"}` dicts)."""
    found: list[str] = []
    for message in messages or ():
        content = (
            message.get("content")
            if (type(message) is dict or isinstance(message, Mapping))
            else None
        )
        if isinstance(content, str):
            if len(content) >= min_chars:
                found.append(content)
        elif isinstance(content, list):
            for part in content:
                text = (
                    part.get("text") if (type(part) is dict or isinstance(part, Mapping)) else None
                )
                if isinstance(text, str) and len(text) >= min_chars:
                    found.append(text)
    return found
