"""`responses.create` / `.parse` (and event streams) as `$ai_generation` properties."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from posthog_llm.instrumentation import (
    function_call,
    normalize_usage,
    plain_item,
    responses_input_messages,
    responses_stop_reason,
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
    elif kind == "response.output_item.done":
        # A finished output item (a function call the caller may run before the response
        # completes, and close the stream for): kept for a stream that ends early.
        item = getattr(event, "item", None)
        if item is not None:
            call.chunks.append(item)
    elif kind == "error":
        code = getattr(event, "code", None)
        message = getattr(event, "message", None) or "stream error"
        call.stream_error = f"{code}: {message}" if code else message
    return True


def build(call: Call) -> dict[str, Any]:
    response = call.result
    failure = call.stream_error or _failure(response)
    output, stop_reason, searches = _output(response)
    if not output and call.chunks:
        output, searches = _output_read(call.chunks)
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
        raw_usage=usage,
        web_searches=searches,
    )


class _ItemsRead:
    """The output items a stream finished before it ended, read as a response's output."""

    __slots__ = ("output",)
    status = None
    incomplete_details = None

    def __init__(self, output: list[Any]) -> None:
        self.output = output


def _output_read(pieces: list[Any]) -> tuple[list[dict[str, Any]], int]:
    """The answer of a stream that ended before its last response (closed early, failed):
    the items it finished and the text read so far."""
    items = [piece for piece in pieces if type(piece) is not str and piece is not None]
    text = "".join(piece for piece in pieces if type(piece) is str)
    output, _, searches = _output(_ItemsRead(items)) if items else ([], None, 0)
    if text:
        if not output:
            output = [{"role": "assistant", "content": text}]
        else:
            # The deltas hold every message's text, the unfinished one's too.
            message = output[0]
            content = message["content"]
            if isinstance(content, list):
                blocks = [b for b in content if b.get("type") == "text"]
                if blocks:
                    blocks[0]["text"] = text
                else:
                    content.append({"type": "text", "text": text})
            else:
                message["content"] = text
    return output, searches


def request_input(params: dict[str, Any]) -> list[Any] | None:
    """Instructions (as a system message) and the input items as `{"role", "content"}` dicts."""
    instructions = params.get("instructions")
    return responses_input_messages(
        instructions if given(instructions) else None, params.get("input")
    )


# Built-in tools the model ran on OpenAI's side: kept as calls, with what says what they did
# (an image generation's result, base64 image data, is left out).
_HOSTED_CALL_FIELDS = {
    "web_search_call": ("action",),
    "file_search_call": ("queries",),
    "code_interpreter_call": ("code", "container_id"),
    "image_generation_call": ("revised_prompt",),
    "computer_call": ("action",),
    "local_shell_call": ("action",),
}


def _output(response: Any) -> tuple[list[dict[str, Any]], str | None, int]:
    """The answer as one assistant message (text, refusal, the calls it made and its
    reasoning summary), the stop reason, and the number of web searches it ran."""
    if response is None:
        return [], None, 0
    texts: list[str] = []
    refusals: list[str] = []
    reasoning: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    searches = 0
    cited = False
    for item in getattr(response, "output", None) or ():
        kind = getattr(item, "type", None)
        if kind == "message":
            for part in getattr(item, "content", None) or ():
                part_type = getattr(part, "type", None)
                if part_type == "output_text":
                    texts.append(part.text)
                    cited = cited or any(
                        getattr(a, "type", None) == "url_citation"
                        for a in getattr(part, "annotations", None) or ()
                    )
                elif part_type == "refusal":
                    refusals.append(part.refusal)
        elif kind == "function_call":
            tool_calls.append(function_call(item.call_id, item.name, item.arguments))
        elif kind == "custom_tool_call":  # as chat completions' custom tool calls
            tool_calls.append(
                {
                    "type": "custom",
                    "id": getattr(item, "call_id", None),
                    "custom": {"name": item.name, "input": getattr(item, "input", None)},
                }
            )
        elif kind == "mcp_call":
            call = function_call(getattr(item, "id", None), item.name, item.arguments)
            call["server_label"] = getattr(item, "server_label", None)
            tool_calls.append(call)
        elif kind == "reasoning":
            for summary in getattr(item, "summary", None) or ():
                text = getattr(summary, "text", None)
                if isinstance(text, str) and text:
                    reasoning.append(text)
        elif kind in _HOSTED_CALL_FIELDS:
            searches += kind == "web_search_call"
            hosted: dict[str, Any] = {"type": kind, "id": getattr(item, "id", None)}
            for name in ("status", *_HOSTED_CALL_FIELDS[kind]):
                value = getattr(item, name, None)
                if value is not None:
                    hosted[name] = plain_item(value)
            tool_calls.append(hosted)
    output: list[dict[str, Any]] = []
    if texts or tool_calls or refusals or reasoning:
        text = "".join(texts) or None
        content: Any = text
        if reasoning:  # the summary the model gave of its reasoning, before its answer
            content = [{"type": "reasoning", "summary": reasoning}]
            if text:
                content.append({"type": "text", "text": text})
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if tool_calls:
            message["tool_calls"] = tool_calls
        if refusals:
            message["refusal"] = "".join(refusals)
        output.append(message)
    called = any(call.get("type") in ("function", "custom") for call in tool_calls)
    return output, responses_stop_reason(response, called), searches or int(cited)


def _failure(response: Any) -> str | None:
    error = getattr(response, "error", None)
    if error is None:
        return None
    code = getattr(error, "code", None)
    message = getattr(error, "message", None) or ""
    return f"{code}: {message}" if code else message or "response failed"
