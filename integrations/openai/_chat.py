"""`chat.completions.create` / `.parse` (and streams) as `$ai_generation` properties."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from posthog_llm.instrumentation import (
    BASE64_PLACEHOLDER,
    function_call,
    normalize_usage,
    plain_item,
    safely,
)

from ._common import generation, given

if TYPE_CHECKING:
    from posthog_llm.instrumentation import TrackedCall as Call

__all__ = ["answer_of_error", "build", "observe_chunk"]

_MESSAGE_EXTRAS = ("tool_calls", "tool_call_id", "name", "refusal", "function_call")


def observe_chunk(call: Call, chunk: Any) -> bool:
    """Hot path, once per chunk: note what it adds, and the first token. False hides the chunk.

    Only plain values are kept (no SDK objects), so a long stream leaves the garbage collector
    nothing to track.
    """
    if call.model is None:
        call.model = chunk.model or None
        # Every chunk names the tier; the first with a model is read.
        call.service_tier = getattr(chunk, "service_tier", None)
    if not call.web_searches and _search_results(chunk):
        call.web_searches = 1
    usage = chunk.usage
    if usage is not None:
        call.usage = usage
    choices = chunk.choices
    if not choices:
        # The usage-only chunk we asked for (empty choices) is ours, not the caller's.
        return not (call.hide_usage and usage is not None)
    for choice in choices:
        delta = choice.delta
        if delta is None:
            call.chunks.append((choice.index, None, None, None, None, choice.finish_reason, None))
            continue
        content, refusal, tool_calls = delta.content, delta.refusal, delta.tool_calls
        legacy = getattr(delta, "function_call", None)
        if legacy is not None and not tool_calls:
            # The legacy function calling's pieces, read as the one tool call they stand for.
            tool_calls = (_LegacyCall(legacy),)
        # An audio answer's pieces (`modalities=["text", "audio"]`; older SDKs keep them as
        # an extra field), a search model's url citations (always an extra field).
        audio = getattr(delta, "audio", None)
        extra = getattr(delta, "__pydantic_extra__", None)
        if extra:
            if not call.web_searches and _cites_urls(extra.get("annotations")):
                call.web_searches = 1
            if audio is None:
                audio = extra.get("audio")
        if audio is not None:
            audio = _audio_delta(audio)
        if tool_calls:
            tool_calls = tuple(_tool_delta(tool_call) for tool_call in tool_calls)
        call.chunks.append(
            (choice.index, delta.role, content, refusal, tool_calls, choice.finish_reason, audio)
        )
        if call.ttft is None and (content or tool_calls or refusal or audio):
            call.ttft = call.busy
    return True


def _audio_delta(audio: Any) -> tuple[Any, Any]:
    """(id, transcript piece) of a streamed audio answer's piece (its data is not kept)."""
    if isinstance(audio, dict):
        audio_id, transcript = audio.get("id"), audio.get("transcript")
    else:
        audio_id, transcript = getattr(audio, "id", None), getattr(audio, "transcript", None)
    return (audio_id, transcript if isinstance(transcript, str) else None)


def _audio_block(audio_id: Any, transcript: Any) -> dict[str, Any]:
    """An audio answer as a content block: its transcript; the audio itself is left out."""
    block: dict[str, Any] = {"type": "audio", "transcript": transcript, "data": BASE64_PLACEHOLDER}
    if audio_id:
        block["id"] = audio_id
    return block


def _with_audio(text: Any, block: dict[str, Any]) -> list[dict[str, Any]]:
    """A message's content with its audio answer: the text first, when there is any."""
    return [{"type": "text", "text": text}, block] if text else [block]


class _LegacyCall:
    """A legacy `function_call` delta in the shape of a tool call's delta (index 0, no id)."""

    __slots__ = ("function",)
    index = 0
    id = None

    def __init__(self, function: Any) -> None:
        self.function = function


def _tool_delta(tool_call: Any) -> tuple[Any, ...]:
    function = tool_call.function
    if function is None:
        return (tool_call.index, tool_call.id, None, None)
    return (tool_call.index, tool_call.id, function.name, function.arguments)


def build(call: Call) -> dict[str, Any]:
    searched = call.web_searches
    if call.stream:
        model, usage, tier = call.model, call.usage, call.service_tier
        output, stop_reason = _accumulate(call.chunks)
    else:
        result = call.result
        model = getattr(result, "model", None)
        usage = getattr(result, "usage", None)
        output, stop_reason = _output(getattr(result, "choices", None))
        tier = getattr(result, "service_tier", None)
        searched = _web_searched(result)
    return generation(
        call,
        model=model,
        input_of=lambda params: messages_input(params.get("messages")),
        output=output,
        usage=normalize_usage(usage),
        stop_reason=stop_reason,
        error=call.error_text(),
        service_tier=tier,
        raw_usage=usage,
        web_searches=searched,
    )


def answer_of_error(error: BaseException) -> Any:
    """The completion `parse` refused after a 200 (cut at its token limit: the SDK's
    `LengthFinishReasonError` carries it), else None."""
    completion = getattr(error, "completion", None)
    return completion if getattr(completion, "choices", None) is not None else None


def _web_searched(result: Any) -> int:
    """1 when a search model's answer shows a web search (PostHog prices search models' calls
    per search; chat completions give no count): url citations, or a provider's own search
    results (Perplexity's `citations`, `search_results`)."""
    if _search_results(result):
        return 1
    for choice in getattr(result, "choices", None) or ():
        message = getattr(choice, "message", None)
        for annotation in getattr(message, "annotations", None) or ():
            if getattr(annotation, "type", None) == "url_citation":
                return 1
    return 0


def _cites_urls(annotations: Any) -> bool:
    """Whether a streamed delta's annotations hold url citations."""
    if not isinstance(annotations, list):
        return False
    return any(
        (a.get("type") if isinstance(a, dict) else getattr(a, "type", None)) == "url_citation"
        for a in annotations
    )


def _search_results(response: Any) -> bool:
    """Whether a response or chunk carries a search provider's own results (Perplexity's
    `citations`, `search_results`: fields the SDK keeps as extras), streamed or not."""
    extra = getattr(response, "__pydantic_extra__", None)
    return bool(extra and (extra.get("citations") or extra.get("search_results")))


def messages_input(messages: Any) -> list[Any] | None:
    """The request's messages as plain `{"role", "content", …}` dicts."""
    if not given(messages) or not isinstance(messages, Iterable):
        return None
    result = []
    for message in messages:
        data = plain_item(message)
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
    """The choices' messages and the first stop reason. A choice that cannot be read (an
    OpenAI-compatible server's choice without a message) is left out, not the event."""
    output = []
    stop_reason = None
    for choice in choices or ():
        if stop_reason is None:
            stop_reason = getattr(choice, "finish_reason", None)
        item = safely(_choice_message, getattr(choice, "message", None))
        if item is not None:
            output.append(item)
    return output, stop_reason


def _choice_message(message: Any) -> dict[str, Any] | None:
    if message is None:
        return None
    item: dict[str, Any] = {"role": message.role or "assistant", "content": message.content}
    if message.tool_calls:
        item["tool_calls"] = [_tool_call(tc) for tc in message.tool_calls]
    if getattr(message, "refusal", None):
        item["refusal"] = message.refusal
    legacy = getattr(message, "function_call", None)
    if legacy is not None and not message.tool_calls:
        # The legacy function calling (`functions=`), as the tool call it stands for (streamed
        # too), which PostHog shows.
        item["tool_calls"] = [function_call(None, legacy.name, legacy.arguments)]
    audio = getattr(message, "audio", None)
    if audio is not None:
        block = _audio_block(getattr(audio, "id", None), getattr(audio, "transcript", None))
        item["content"] = _with_audio(item["content"], block)
    return item


def _tool_call(tool_call: Any) -> dict[str, Any]:
    function = getattr(tool_call, "function", None)
    if function is not None:
        return function_call(tool_call.id, function.name, function.arguments)
    shape: dict[str, Any] = plain_item(tool_call)  # custom tools keep their own shape
    return shape


def _accumulate(pieces: list[tuple[Any, ...]]) -> tuple[list[dict[str, Any]], str | None]:
    """Fold the stream's pieces into one message per choice, and the stop reason."""
    states: dict[int, dict[str, Any]] = {}
    for index, role, content, refusal, tool_calls, finish_reason, audio in pieces:
        state = states.get(index)
        if state is None:
            state = states[index] = {
                "role": "assistant",
                "content": [],
                "refusal": [],
                "tools": {},
                "finish": None,
                "audio": None,
            }
        if audio is not None:
            if state["audio"] is None:
                state["audio"] = [None, []]
            if audio[0]:
                state["audio"][0] = audio[0]
            if audio[1]:
                state["audio"][1].append(audio[1])
        if role:
            state["role"] = role
        if content:
            state["content"].append(content)
        if refusal:
            state["refusal"].append(refusal)
        for tool_delta in tool_calls or ():
            _add_tool_delta(state["tools"], *tool_delta)
        if finish_reason:
            state["finish"] = finish_reason
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
        if state["audio"] is not None:
            audio_id, pieces_read = state["audio"]
            item["content"] = _with_audio(
                item["content"], _audio_block(audio_id, "".join(pieces_read))
            )
        if item["content"] is None and not state["tools"] and not state["refusal"]:
            item["content"] = ""
        output.append(item)
        if stop_reason is None:
            stop_reason = state["finish"]
    return output, stop_reason


def _add_tool_delta(
    tools: dict[int, dict[str, Any]], index: int, call_id: Any, name: Any, arguments: Any
) -> None:
    slot = tools.get(index)
    if slot is None:
        slot = tools[index] = function_call(None, "", "")
    if call_id:
        slot["id"] = call_id
    if name:
        slot["function"]["name"] += name
    if arguments:
        slot["function"]["arguments"] += arguments
