"""Agents SDK span data -> `$ai_*` properties. Runs on the sender's worker thread.

Everything here reads finished span data (the SDK does not change it after `on_span_end`);
content is not even read in privacy mode.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._kernel import (
    allowed_model_parameters,
    function_call,
    generation_properties,
    provider_from_base_url,
    responses_input_messages,
    responses_stop_reason,
    span_properties,
    trace_properties,
    whole_number,
)

__all__ = ["SpanFacts", "generation_props", "response_props", "span_props", "run_props", "usage_of"]

FRAMEWORK = "openai-agents"  # $ai_framework, as PostHog's own Agents integration names it


@dataclass(slots=True)
class SpanFacts:
    """What the processor knew when a span ended (ids, timing, outcome), beside its data."""

    trace_id: str
    span_id: str
    parent_id: str
    latency: float | None
    error: str | None
    session_id: str | None
    privacy: bool
    agent_tools: tuple[str, ...] = ()
    # A failed model call: the status its exception carries, and the HTTP request it sent
    # (the model it asked for, which a failed Responses call records nowhere else).
    http_status: int | None = None
    failed_request: Any = None
    stream: bool | None = None  # made through the model's streaming call; None: not known
    requested_model: str | None = None  # the model the SDK's `Model` was made for
    offered_tools: tuple[Any, ...] = ()  # the SDK's tool and handoff objects the call offered
    client_base_url: Any = None  # the base URL of the OpenAI client the SDK's `Model` calls


def _plain(value: Any) -> Any:
    """Pydantic models and other SDK objects as plain data."""
    if value is None or isinstance(value, (str, int, float)):
        return value
    if isinstance(value, dict):  # before the Mapping check: ABC checks are slow
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        try:
            return dump(exclude_none=True)
        except Exception:  # a model that cannot dump itself keeps its text
            return str(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _get(obj: Any, name: str) -> Any:
    if isinstance(obj, dict):
        return obj.get(name)
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _count(obj: Any, *path: str) -> int | None:
    for name in path:
        if obj is None:
            return None
        obj = _get(obj, name)
    if obj is None or isinstance(obj, bool):
        return None
    try:
        return int(obj)
    except (TypeError, ValueError):
        return None


def _first(*values: int | None) -> int | None:
    for value in values:
        if value is not None:
            return value
    return None


def usage_of(usage: Any) -> dict[str, Any]:
    """Token counts from Agents usage (a dict or an OpenAI usage object); unknown -> None.

    The SDK records zeros when the provider reported no usage (a Chat Completions stream
    without `include_usage`): no count above zero means none is known, so none is sent.
    It also writes a cache-write count of 0 wherever the provider reported none (every
    OpenAI call): a zero there says nothing, so it is left out, as the drop-ins leave it out.
    """
    if usage is None:
        return {}
    if isinstance(usage, dict):
        counts = _dict_usage(usage)
        total = whole_number(usage.get("total_tokens"))
    else:
        counts = _object_usage(usage)
        total = _count(usage, "total_tokens")
    if not total and not any(counts.values()):
        return {}
    if counts["cache_creation_input_tokens"] == 0:
        counts["cache_creation_input_tokens"] = None
    return counts


def _object_usage(usage: Any) -> dict[str, Any]:
    return {
        "input_tokens": _first(_count(usage, "input_tokens"), _count(usage, "prompt_tokens")),
        "output_tokens": _first(_count(usage, "output_tokens"), _count(usage, "completion_tokens")),
        "cache_read_input_tokens": _first(
            _count(usage, "input_tokens_details", "cached_tokens"),
            _count(usage, "prompt_tokens_details", "cached_tokens"),
            _count(usage, "cached_input_tokens"),
            _count(usage, "cache_read_input_tokens"),
        ),
        "cache_creation_input_tokens": _first(
            _count(usage, "cache_creation_input_tokens"),
            _count(usage, "cache_write_input_tokens"),
            _count(usage, "input_tokens_details", "cache_write_tokens"),
        ),
        "reasoning_tokens": _first(
            _count(usage, "output_tokens_details", "reasoning_tokens"),
            _count(usage, "completion_tokens_details", "reasoning_tokens"),
            _count(usage, "reasoning_tokens"),
        ),
    }


def _dict_usage(usage: dict[str, Any]) -> dict[str, Any]:
    """`usage_of` for the dicts the SDK puts on its spans (the common case, kept cheap)."""
    get = usage.get
    input_details = get("input_tokens_details") or get("prompt_tokens_details") or {}
    output_details = get("output_tokens_details") or get("completion_tokens_details") or {}
    if not isinstance(input_details, dict):
        input_details = _plain(input_details) or {}
    if not isinstance(output_details, dict):
        output_details = _plain(output_details) or {}

    def pick(*values: Any) -> int | None:
        for value in values:
            number = whole_number(value)
            if number is not None:
                return number
        return None

    return {
        "input_tokens": pick(get("input_tokens"), get("prompt_tokens")),
        "output_tokens": pick(get("output_tokens"), get("completion_tokens")),
        "cache_read_input_tokens": pick(
            input_details.get("cached_tokens"),
            get("cached_input_tokens"),
            get("cache_read_input_tokens"),
        ),
        "cache_creation_input_tokens": pick(
            get("cache_creation_input_tokens"),
            get("cache_write_input_tokens"),
            input_details.get("cache_write_tokens"),
        ),
        "reasoning_tokens": pick(output_details.get("reasoning_tokens"), get("reasoning_tokens")),
    }


def _common(facts: SpanFacts) -> dict[str, Any]:
    return {
        "trace_id": facts.trace_id,
        "span_id": facts.span_id,
        "parent_id": facts.parent_id,
        "latency": facts.latency,
        "error": facts.error,
        "is_error": True if facts.error else None,
        "framework": FRAMEWORK,
        "session_id": facts.session_id,
        "privacy_mode": facts.privacy,
    }


def _chat_message(message: Any) -> Any:
    if not isinstance(message, dict):
        message = _plain(message)
    if not isinstance(message, dict):
        return message
    out: dict[str, Any] = {
        "role": message.get("role") or "assistant",
        "content": message.get("content"),
    }
    calls = message.get("tool_calls")
    if calls:
        out["tool_calls"] = [
            function_call(
                _get(call, "id"),
                _get(_get(call, "function"), "name"),
                _get(_get(call, "function"), "arguments"),
            )
            for call in calls
        ]
    if message.get("refusal"):
        out["refusal"] = message["refusal"]
    return out


def _endpoint(recorded: Any, facts: SpanFacts) -> tuple[str, str | None]:
    """A model call's `$ai_provider` and base URL, the same way for both APIs: the URL the SDK
    recorded on the span (a Chat Completions call's `model_config`), else the one of the client
    its `Model` calls through (a Responses span records none); the provider is the core's
    reading of that URL (the client's own, `openai`, for a host that names no provider)."""
    url = recorded or facts.client_base_url
    text = str(url) if url else None
    return provider_from_base_url(text), text


def _tool_names(names: tuple[str, ...]) -> list[dict[str, Any]] | None:
    if not names:
        return None
    return [{"type": "function", "function": {"name": name}} for name in names]


def _tool_definitions(offered: tuple[Any, ...]) -> list[dict[str, Any]] | None:
    """The function tools and handoffs a call offered, as Chat Completions tool definitions;
    a hosted tool (web search, file search ...) by its type and name."""
    found: list[dict[str, Any]] = []
    for tool in offered:
        name = getattr(tool, "tool_name", None) or getattr(tool, "name", None)  # handoff, tool
        schema = getattr(tool, "input_json_schema", None)
        if schema is None:
            schema = getattr(tool, "params_json_schema", None)
        if not isinstance(name, str):
            continue
        if isinstance(schema, Mapping):
            description = getattr(tool, "tool_description", None) or getattr(
                tool, "description", None
            )
            function: dict[str, Any] = {"name": name, "parameters": _plain(schema)}
            if isinstance(description, str) and description:
                function["description"] = description
            found.append({"type": "function", "function": function})
        else:
            kind = getattr(tool, "type", None)
            found.append({"type": kind if isinstance(kind, str) else "hosted", "name": name})
    return found or None


def _status(facts: SpanFacts, error: str | None, answered: Any) -> int | None:
    """A model call's `$ai_http_status`: 200 for one the provider answered (the SDK recorded
    its output or usage, as it does only for a response) without an error, as the provider
    drop-ins send it; a failed call's is the status its exception carried, if any."""
    if error:
        return facts.http_status
    return 200 if answered else None


def generation_props(data: Any, facts: SpanFacts) -> dict[str, Any]:
    """A Chat Completions model call (`GenerationSpanData`)."""
    config = data.model_config
    if not isinstance(config, Mapping):
        config = {}
    provider, base_url = _endpoint(config.get("base_url"), facts)
    # The SDK's config holds its base URL and every setting, unset ones too: the set ones only.
    parameters = allowed_model_parameters(config)
    response = _response_dump(data.output)
    if response is not None:
        output, stop_reason = _dump_output(response, facts.privacy)
    else:
        output, stop_reason = _chat_output(data.output, facts.privacy)
    usage = data.usage if data.usage is not None else _get(response, "usage")
    return generation_properties(
        span_name=data.model or "generation",
        model=data.model,
        provider=provider,
        base_url=base_url,
        model_parameters=parameters or None,
        tools=_tool_definitions(facts.offered_tools) or _tool_names(facts.agent_tools),
        # Chat Completions input is already plain messages; the sender makes it JSON-safe.
        input=None if facts.privacy else data.input,
        output_choices=output,
        stop_reason=stop_reason,
        http_status=_status(facts, facts.error, data.output or data.usage is not None),
        stream=facts.stream,
        **usage_of(usage),
        **_common(facts),
    )


_RESPONSE_PARAMETERS = (
    "temperature",
    "top_p",
    "max_output_tokens",
    "tool_choice",
    "parallel_tool_calls",
    "reasoning",
    "truncation",
    "service_tier",
    "text",
)


def _response_input(data: Any, response: Any) -> list[Any] | None:
    """The call's messages; None when the SDK recorded none (a failed call records no input)."""
    return responses_input_messages(_get(response, "instructions"), data.input)


def _message_texts(item: Any, part_type: str = "output_text", field: str = "text") -> list[str]:
    """The text (or refusal) parts of a Responses output item (none unless it is a message)."""
    if _get(item, "type") != "message":
        return []
    parts = _get(item, "content") or ()
    return [str(_get(part, field) or "") for part in parts if _get(part, "type") == part_type]


def _response_output(response: Any) -> tuple[list[dict[str, Any]], bool]:
    texts: list[str] = []
    refusals: list[str] = []
    calls: list[dict[str, Any]] = []
    for item in _get(response, "output") or ():
        kind = _get(item, "type")
        if kind == "message":
            texts.extend(_message_texts(item))
            # Kept as a Chat Completions message keeps it (`refusal` beside `content`).
            refusals.extend(_message_texts(item, "refusal", "refusal"))
        elif kind == "function_call":
            calls.append(
                function_call(_get(item, "call_id"), _get(item, "name"), _get(item, "arguments"))
            )
    refusal = "".join(refusals)
    if not texts and not calls and not refusal:
        return [], False
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
    if calls:
        message["tool_calls"] = calls
    if refusal:
        message["refusal"] = refusal
    return [message], bool(calls)


def _response_dump(output: Any) -> Any:
    """The Responses-style `Response` a generation span holds instead of chat messages, or None.

    A streamed Chat Completions call goes through the SDK's Responses adapter, and the SDK
    records `[final_response.model_dump()]` as the generation's output.
    """
    if isinstance(output, (list, tuple)) and len(output) == 1:
        output = output[0]
    if _get(output, "object") == "response" and isinstance(_get(output, "output"), (list, tuple)):
        return output
    return None


def _response_text(response: Any) -> str:
    """A Response's output text, as `Response.output_text` reads it (also from its dump)."""
    return "".join(text for item in _get(response, "output") or () for text in _message_texts(item))


def _dump_output(response: Any, privacy: bool) -> tuple[list[dict[str, Any]] | None, str | None]:
    output, called = _response_output(response)
    # The adapter's Response keeps the status of the stream's start (none): the tool calls
    # still tell, as they do for a call that was not streamed.
    stop_reason = responses_stop_reason(response, called) or ("tool_calls" if called else None)
    return (None if privacy or not output else output), stop_reason


def _chat_output(messages: Any, privacy: bool) -> tuple[list[Any] | None, str | None]:
    if not messages:
        return None, None
    output = None if privacy else [_chat_message(m) for m in messages]
    called = any(_get(m, "tool_calls") for m in messages)
    return output, "tool_calls" if called else None


def response_props(data: Any, facts: SpanFacts) -> dict[str, Any]:
    """A Responses API model call (`ResponseSpanData`)."""
    response = data.response
    output, called = _response_output(response) if response is not None else ([], False)
    stop_reason = responses_stop_reason(response, called)
    params = {name: _plain(_get(response, name)) for name in _RESPONSE_PARAMETERS}
    tools = _get(response, "tools")
    usage = data.usage if data.usage is not None else _get(response, "usage")
    provider, base_url = _endpoint(None, facts)
    error = facts.error
    failure = _get(response, "error")
    if error is None and failure is not None:
        error = str(_get(failure, "code") or "response failed")
    props = dict(_common(facts))
    props["error"], props["is_error"] = error, True if error else None
    # The served model; a call that failed has no response, only the model it asked for.
    model = (
        _get(response, "model") or _requested_model(facts.failed_request) or facts.requested_model
    )
    return generation_properties(
        span_name=model or "response",
        model=model,
        provider=provider,
        base_url=base_url,
        model_parameters=allowed_model_parameters(params) or None,
        tools=_plain(tools) if tools else _tool_names(facts.agent_tools),
        input=None if facts.privacy else _response_input(data, response),
        output_choices=None if facts.privacy or not output else output,
        stop_reason=stop_reason,
        http_status=_status(facts, error, response is not None or data.usage is not None),
        stream=facts.stream,
        **usage_of(usage),
        **props,
    )


def _requested_model(request: Any) -> str | None:
    """The `model` of the JSON body an HTTP request sent (an `httpx.Request`), if it reads."""
    if request is None:
        return None
    try:
        body = json.loads(request.content)  # a streamed body that was not read raises
    except Exception:
        return None
    model = body.get("model") if isinstance(body, dict) else None
    return model if isinstance(model, str) and model else None


def _state(value: Any) -> Any:
    """Tool input arrives as JSON text: keep it as data when it parses."""
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return _plain(value)


def span_props(data: Any, facts: SpanFacts) -> dict[str, Any]:
    """Agents, turns, tools, handoffs, guardrails, MCP listings and custom spans."""
    kind = data.type
    name: str = kind
    input_state: Any = None
    output_state: Any = None
    if kind == "agent":
        name = data.name
    elif kind == "turn":
        name = f"{data.agent_name} turn {data.turn}"
    elif kind == "function":
        name, kind = data.name, "tool"
        input_state, output_state = _state(data.input), _state(data.output)
    elif kind == "handoff":
        name = f"{data.from_agent} -> {data.to_agent}"
        input_state, output_state = {"from_agent": data.from_agent}, {"to_agent": data.to_agent}
    elif kind == "guardrail":
        name = data.name
        # A guardrail that raised has no verdict: its `triggered` is only the SDK's default.
        if data.triggered or not facts.error:
            output_state = {"triggered": bool(data.triggered)}
    elif kind == "mcp_tools":
        name = f"mcp:{data.server}"
        output_state = _plain(data.result)
    elif kind == "custom":
        name = data.name
        input_state = _plain(data.data)
    elif kind in ("speech", "transcription", "speech_group"):
        input_state = None if kind == "transcription" else _state(getattr(data, "input", None))
        output_state = _state(getattr(data, "output", None)) if kind == "transcription" else None
    return span_properties(
        span_name=str(name),
        span_type=kind,
        http_status=facts.http_status,
        input_state=None if facts.privacy else input_state,
        output_state=None if facts.privacy else output_state,
        **_common(facts),
    )


def _run_states(privacy: bool, first_input: Any, last_output: Any) -> tuple[Any, Any]:
    """What went into the run's first model call (system prompt left out) and came out last."""
    if privacy:
        return None, None
    input_state = None
    if first_input is not None:
        plain = _plain(first_input)
        if isinstance(plain, list):
            plain = [m for m in plain if not (isinstance(m, dict) and m.get("role") == "system")]
        input_state = plain
    return input_state, _run_output(last_output)


def _run_output(last_output: Any) -> Any:
    """The run's final output; a streamed Chat Completions call left a whole `Response` dump
    there, of which the text is what a run via the Responses API reports."""
    if last_output is None:
        return None
    response = _response_dump(last_output)
    if response is not None:
        return _response_text(response)
    plain = _plain(last_output)
    if isinstance(plain, dict) and "role" in plain:
        # A Chat Completions message: its text, as the other two paths report it.
        return _chat_text(plain.get("content"))
    return plain


def _chat_text(content: Any) -> str:
    """A chat message's content as text (`Response.output_text` gives "" for no text)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(_get(part, "text") or "") for part in content)
    return ""


def run_props(
    *,
    trace_id: str,
    span_id: str | None,
    parent_id: str | None,
    name: str,
    latency: float | None,
    error: str | None,
    session_id: str | None,
    privacy: bool,
    first_input: Any,
    last_output: Any,
    metadata: Mapping[str, Any] | None = None,
    http_status: int | None = None,
) -> dict[str, Any]:
    """The whole run: its `$ai_trace`, or a `$ai_span` when it joined another observation
    (`parent_id` given). The trace's `metadata` is its `$ai_trace_metadata`, as posthog-python
    sends it; `http_status` is the status of the failure its `error` tells, when known."""
    input_state, output_state = _run_states(privacy, first_input, last_output)
    common: dict[str, Any] = {
        "trace_id": trace_id,
        "span_name": name,
        "input_state": input_state,
        "output_state": output_state,
        "latency": latency,
        "error": error,
        "is_error": True if error else None,
        "framework": FRAMEWORK,
        "session_id": session_id,
        "privacy_mode": privacy,
    }
    if parent_id is None:
        return trace_properties(
            **common, metadata=metadata, http_status=http_status if error else None
        )
    return span_properties(
        span_id=span_id,
        parent_id=parent_id,
        span_type="agent_run",
        http_status=http_status if error else None,
        **common,
    )
