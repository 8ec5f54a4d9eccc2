"""Event builders for LlamaIndex: they run on the sender's worker thread.

The hooks record raw references in `_records`; these functions turn them into the properties of
`$ai_trace`, `$ai_span`, `$ai_generation` and `$ai_embedding` events.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from posthog_llm.instrumentation import (
    embedding_properties,
    generation_properties,
    safely,
    span_properties,
    trace_properties,
)

from . import _llm, _spans
from ._spans import FRAMEWORK

if TYPE_CHECKING:  # the records call these builders: no import cycle at run time
    from ._records import Emb, Gen, Node, Trace

_T = TypeVar("_T")

__all__ = ["span_event", "trace_event", "joined_root_event", "generation_event", "embedding_event"]


def _latency(start: float, end: float | None) -> float | None:
    return None if end is None else max(0.0, end - start)


def span_event(
    node: Node, result: Any, error: BaseException | None, end: float | None
) -> dict[str, Any]:
    trace = node.trace
    kind = node.kind.kind
    privacy = trace.privacy
    return span_properties(
        trace_id=trace.id,
        span_id=node.uid,
        parent_id=node.pvis,
        span_name=safely(_spans.display_name, node.kind, node.instance, node.args)
        or node.kind.name,
        span_type=node.kind.span_type,
        input_state=None if privacy else _spans.span_input(kind, node.args, node.tags),
        output_state=None if privacy or error else _spans.span_output(kind, result),
        latency=_latency(node.start, end),
        error=error,
        framework=FRAMEWORK,
        privacy_mode=privacy,
        secrets=trace.secrets,
    )


def trace_event(trace: Trace) -> dict[str, Any]:
    kind = trace.kind
    privacy = trace.privacy
    input_state = output_state = None
    if not privacy and kind is not None:
        input_state = _spans.span_input(kind.kind, trace.args, trace.tags)
        if trace.stream_output is not None:
            output_state = _llm.output_text(trace.stream_output)
        if output_state is None and trace.error is None:
            output_state = _spans.span_output(kind.kind, trace.result)
            if output_state is trace.result and output_state is not None:
                text = _spans.text_of(output_state)
                output_state = text if text is not None else _safe_output(output_state)
    return trace_properties(
        trace_id=trace.id,
        span_name=trace.name
        or (
            (safely(_spans.display_name, kind, trace.instance, trace.args) or kind.name)
            if kind is not None
            else None
        ),
        input_state=input_state,
        output_state=output_state,
        latency=_latency(trace.start, trace.end),
        error=trace.error,
        framework=FRAMEWORK,
        privacy_mode=privacy,
        secrets=trace.secrets,
    )


def joined_root_event(trace: Trace) -> dict[str, Any]:
    """The root of an operation that ran inside another trace, as an `$ai_span` of it."""
    props = trace_event(trace)
    props.update(
        span_properties(
            trace_id=trace.id,
            span_id=trace.key[-36:],
            parent_id=trace.parent,
            span_type=trace.kind.span_type if trace.kind is not None else None,
            framework=FRAMEWORK,
            privacy_mode=trace.privacy,
        )
    )
    return props


def _safe_output(value: Any) -> Any:
    # A streaming response object that nobody read: no text to show, and its repr says nothing.
    return None if _spans.is_stream(value) else value


def _read(read: Callable[..., _T], *args: Any) -> _T:
    return read(*args)


def _generation_facts(gen: Gen, privacy: bool, read: Any = _read) -> tuple[Any, ...]:
    """A generation's facts: read directly (the common case), or each through `safely`."""
    response = gen.response
    usage = read(_llm.usage_of, response)
    if not usage and gen.inner is not None:
        usage = read(_llm.usage_of, gen.inner)
    # A call folded into a wrapper's (a CustomLLM's chat() calling complete(), a structured
    # LLM calling its model): the facts of the LLM that ran, where the wrapper has none.
    instance = gen.instance
    ran = gen.inner_instance if gen.inner_instance is not None else instance
    served = read(_llm.served_model_of, response)
    if not served and gen.inner is not None:
        served = read(_llm.served_model_of, gen.inner)
    model = served or read(_llm.model_of, ran, None, gen.model_dict)
    stop = read(_llm.stop_reason_of, response) or read(_llm.stop_reason_of, gen.inner)
    input_ = output = None
    if not privacy:
        input_ = read(_generation_input, gen)
        # A stream that failed midway: what it returned so far (its last chunk holds it).
        if gen.error is None or response is not None:
            output = read(_llm.response_to_output, response)
            text = gen.text
            if text is not None and output and type(output[0].get("content")) is str:
                output[0]["content"] = text  # as returned, before anyone rewrote it
    return (
        usage,
        model,
        stop,
        input_,
        output,
        read(_llm.model_parameters_of, ran, gen.kwargs),
        read(_llm.provider_of, ran) or read(_llm.provider_of, instance),
        read(_llm.base_url_of, ran) or read(_llm.base_url_of, instance),
        read(_llm.tools_of, gen.kwargs),
    )


def _generation_input(gen: Gen) -> Any:
    return _llm.messages_to_input(gen.messages) if gen.chat else _llm.prompt_to_input(gen.prompt)


def generation_event(gen: Gen) -> dict[str, Any]:
    trace = gen.trace
    privacy = trace.privacy
    deferred = gen.deferred  # provider drop-in calls the LLM made: reported here, once
    if deferred is not None and not privacy:
        privacy = deferred.private  # a private call keeps the generation private
    # One guard for the group, and one per fact only when something in it fails: the policy
    # (a fact that cannot be read is left out, not the event) at the cost of one `try`.
    try:
        facts = _generation_facts(gen, privacy)
    except Exception:
        facts = _generation_facts(gen, privacy, safely)
    usage, model, stop, input_, output, params, provider, base_url, tools = facts
    if params is None:
        params = {}
    if gen.stream:
        params["stream"] = True
    end = gen.last if gen.stream and gen.last is not None else gen.end
    props = generation_properties(
        trace_id=trace.id,
        span_id=gen.uid,
        parent_id=gen.parent,
        span_name=gen.name,
        model=model,
        provider=provider,
        base_url=base_url,
        model_parameters=params,
        tools=tools,
        input=input_,
        output_choices=output,
        latency=_latency(gen.start, end),
        time_to_first_token=_latency(gen.start, gen.first),
        stream=gen.stream,
        stop_reason=stop,
        http_status=None if gen.error is not None else 200,
        error=gen.error,
        framework=FRAMEWORK,
        privacy_mode=privacy,
        secrets=trace.secrets,
        **(usage or {}),
    )
    if deferred is not None:
        # What the calls read that LlamaIndex does not say (a CustomLLM's model, provider and
        # tokens); its own facts win, but not a model named only after the LLM's class.
        guessed = model is not None and model == _class_name(gen)
        props = safely(_fill, deferred, props, guessed) or props
    return props


def _class_name(gen: Gen) -> str | None:
    """The name `model_of` falls back to: the class of the LLM that ran."""
    ran = gen.inner_instance if gen.inner_instance is not None else gen.instance
    return type(ran).__name__ if ran is not None else None


def _fill(deferred: Any, props: dict[str, Any], guessed: bool) -> dict[str, Any]:
    filled: dict[str, Any] = deferred.fill(props, model_guessed=guessed)
    return filled


def _embedding_facts(emb: Emb, end_event: Any, read: Any = _read) -> tuple[Any, ...]:
    instance = emb.instance
    return (
        read(_llm.embedding_model_of, instance, emb.model_dict),
        read(_llm.provider_of, instance),
        read(_llm.base_url_of, instance),
        read(_llm.embedding_tokens_of, end_event) if end_event is not None else None,
    )


def embedding_event(
    emb: Emb, chunks: Any, end_event: Any, error: BaseException | None, end: float | None
) -> dict[str, Any]:
    trace = emb.trace
    privacy = trace.privacy
    try:
        model, provider, base_url, tokens = _embedding_facts(emb, end_event)
    except Exception:
        model, provider, base_url, tokens = _embedding_facts(emb, end_event, safely)
    return embedding_properties(
        trace_id=trace.id,
        span_id=emb.uid,
        parent_id=emb.parent,
        span_name=emb.name,
        model=model,
        provider=provider,
        base_url=base_url,
        input=None if privacy or chunks is None else list(chunks),
        input_count=None if chunks is None else len(chunks),
        input_tokens=tokens,
        latency=_latency(emb.start, end),
        http_status=None if error is not None else 200,
        error=error,
        framework=FRAMEWORK,
        privacy_mode=privacy,
        secrets=trace.secrets,
    )
