"""`responses.create` / `.parse` (and event streams) as `$ai_generation` properties."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from posthog_llm.instrumentation import (
    function_call,
    normalize_usage,
    responses_input_messages,
)

from ._common import generation, given

if TYPE_CHECKING:
    from posthog_llm.instrumentation import TrackedCall as Call

__all__ = ["build", "observe_event"]

# Stream events that carry the first piece of the answer.
_FIRST_TOKEN_EVENTS = frozenset(
    {
        "response.output_text.delta",
        "response.function_call_arguments.delta",
        "response.refusal.delta",
    }
)
# Stream events that carry the whole response (the last one has its output and usage).
_RESPONSE_EVENTS = frozenset(
    {
        "response.created",
        "response.in_progress",
        "response.completed",
        "response.incomplete",
        "response.failed",
    }
)


def observe_event(call: Call, event: Any) -> bool:
    """Hot path, once per stream event: note the first token and the response. Hides none.

    Only the latest whole response is kept (the final one carries output and usage), not every
    event, so a long stream leaves the garbage collector little to track.
    """
    kind = getattr(event, "type", None)
    if kind in _FIRST_TOKEN_EVENTS:
        if call.ttft is None:
            call.ttft = call.busy
        if kind == "response.output_text.delta":
            # The text read so far: the whole response comes only with the last event, which a
            # stream closed early or failing midway never gets.
            call.chunks.append(getattr(event, "delta", None))
    elif kind in _RESPONSE_EVENTS:
        call.result = getattr(event, "response", None) or call.result
    elif kind == "error":
        code = getattr(event, "code", None)
        message = getattr(event, "message", None) or "stream error"
        call.stream_error = f"{code}: {message}" if code else message
    return True


def build(call: Call) -> dict[str, Any]:
    response = call.result
    failure = call.stream_error or _failure(response)
    output, stop_reason = _output(response)
    if not output and call.chunks:
        text = "".join(piece for piece in call.chunks if type(piece) is str)
        if text:
            output = [{"role": "assistant", "content": text}]
    usage = getattr(response, "usage", None)
    return generation(
        call,
        model=getattr(response, "model", None),
        input_of=request_input,
        output=output,
        usage=normalize_usage(usage),
        stop_reason=stop_reason,
        error=call.error_text() or failure,
        service_tier=getattr(response, "service_tier", None),
    )


def request_input(params: dict[str, Any]) -> list[Any] | None:
    """Instructions (as a system message) and the input items as `{"role", "content"}` dicts."""
    instructions = params.get("instructions")
    return responses_input_messages(
        instructions if given(instructions) else None, params.get("input")
    )


def _output(response: Any) -> tuple[list[dict[str, Any]], str | None]:
    if response is None:
        return [], None
    texts: list[str] = []
    refusals: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for item in getattr(response, "output", None) or ():
        kind = getattr(item, "type", None)
        if kind == "message":
            for part in getattr(item, "content", None) or ():
                part_type = getattr(part, "type", None)
                if part_type == "output_text":
                    texts.append(part.text)
                elif part_type == "refusal":
                    refusals.append(part.refusal)
        elif kind == "function_call":
            tool_calls.append(function_call(item.call_id, item.name, item.arguments))
    output: list[dict[str, Any]] = []
    if texts or tool_calls or refusals:
        message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
        if tool_calls:
            message["tool_calls"] = tool_calls
        if refusals:
            message["refusal"] = "".join(refusals)
        output.append(message)
    return output, _stop_reason(response, bool(tool_calls))


def _stop_reason(response: Any, called_tools: bool) -> str | None:
    status = getattr(response, "status", None)
    reason = getattr(getattr(response, "incomplete_details", None), "reason", None)
    if status == "incomplete" and reason:
        return str(reason)
    if status == "completed":
        return "tool_calls" if called_tools else "stop"
    return status if status in ("failed", "cancelled", "incomplete") else None


def _failure(response: Any) -> str | None:
    error = getattr(response, "error", None)
    if error is None:
        return None
    code = getattr(error, "code", None)
    message = getattr(error, "message", None) or ""
    return f"{code}: {message}" if code else message or "response failed"
