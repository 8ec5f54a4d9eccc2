"""Small helpers the chat, responses and embeddings builders share (worker-thread side)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import openai
from posthog_llm.instrumentation import (
    Usage,
    allowed_model_parameters,
    generation_properties,
    modality_usage,
)

if TYPE_CHECKING:
    from posthog_llm.instrumentation import TrackedCall as Call

__all__ = [
    "given",
    "generation",
    "requested_model",
    "model_parameters",
    "http_status",
]

_UNSET = (openai.Omit, openai.NotGiven)


def given(value: Any) -> bool:
    """False for None and for the SDK's `omit` / `NOT_GIVEN` markers."""
    return value is not None and not isinstance(value, _UNSET)


def requested_model(params: Mapping[str, Any]) -> str | None:
    model = params.get("model")
    return str(model) if given(model) else None


def generation(
    call: Call,
    *,
    model: str | None,
    input_of: Callable[[dict[str, Any]], Any],
    output: list[dict[str, Any]],
    usage: Usage,
    stop_reason: str | None,
    error: str | None,
    service_tier: Any = None,
    raw_usage: Any = None,
    web_searches: int = 0,
) -> dict[str, Any]:
    """`$ai_generation` properties from what chat and responses calls have in common.

    `web_searches`: what the answer shows of web searches, where the usage counts none.

    Content is not even built in privacy mode.
    """
    params = call.params
    base_url = call.base_url()
    tools = params.get("tools")
    if not (given(tools) and tools):
        # The legacy function calling (`functions=`), as the tools it stands for.
        functions = params.get("functions")
        if given(functions) and isinstance(functions, list) and functions:
            tools = [{"type": "function", "function": function} for function in functions]
    return generation_properties(
        trace_id=call.trace_id,
        parent_id=call.parent_id,
        model=model or requested_model(params),
        provider=call.provider_name(),
        base_url=base_url,
        model_parameters=model_parameters(params),
        tools=tools if given(tools) and tools else None,
        input=None if call.privacy else input_of(params),
        output_choices=None if call.privacy or not output else output,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_read_input_tokens=usage.cache_read_input_tokens,
        reasoning_tokens=usage.reasoning_tokens,
        web_search_count=usage.web_search_count
        if usage.web_search_count is not None
        else web_searches or None,
        usage_by_modality=modality_usage(raw_usage),
        latency=call.latency,
        time_to_first_token=call.ttft,
        stream=call.stream,
        stop_reason=stop_reason,
        http_status=http_status(call),
        error=error,
        is_error=True if error else None,
        privacy_mode=call.privacy,
        service_tier=service_tier,  # the core keeps text only
    )


def model_parameters(params: Mapping[str, Any]) -> dict[str, Any]:
    """The allow-listed request parameters; a pydantic class given as format shows by name
    (`response_format` named by the kernel, `responses.parse()`'s `text_format` here)."""
    chosen = allowed_model_parameters({k: v for k, v in params.items() if given(v)})
    text_format = params.get("text_format")
    if isinstance(text_format, type):
        chosen["text"] = {"format": {"type": "json_schema", "name": text_format.__name__}}
    return chosen


def http_status(call: Call) -> int | None:
    """200 on success; on error the status the exception carries (200 for a mid-stream error)."""
    return call.http_status()
