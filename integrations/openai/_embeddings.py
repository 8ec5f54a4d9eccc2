"""`embeddings.create` as `$ai_embedding` properties."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from posthog_llm._events import embedding_properties

from ._common import http_status, model_parameters, requested_model, usage_count

if TYPE_CHECKING:
    from ._track import Call

__all__ = ["build"]


def build(call: Call) -> dict[str, Any]:
    params = call.params
    result = call.result
    raw = params.get("input")
    base_url = call.base_url()
    model = getattr(result, "model", None) or requested_model(params)
    return embedding_properties(
        trace_id=call.trace_id,
        parent_id=call.parent_id,
        model=model,
        provider=call.provider_name(),
        base_url=base_url,
        model_parameters=model_parameters(params),
        input=None if call.privacy else raw,
        input_count=_count(raw),
        input_tokens=usage_count(getattr(result, "usage", None), "prompt_tokens"),
        latency=call.latency,
        http_status=http_status(call),
        error=call.error_text(),
        is_error=True if call.error is not None else None,
        privacy_mode=call.privacy,
    )


def _count(raw: Any) -> int | None:
    """How many texts were embedded: a string or one token array is one; a list of them is many."""
    if isinstance(raw, str):
        return 1
    if isinstance(raw, list):
        if raw and all(isinstance(x, int) for x in raw):
            return 1
        return len(raw)
    return None
