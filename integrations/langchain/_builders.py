"""Event builders for LangChain runs: they run on the sender's worker thread.

The hooks in `_handler` record raw references; these functions turn a finished run into the
properties of its `$ai_trace`, `$ai_span` or `$ai_generation` event. A fact that cannot be read
is left out (`safely`), never the event.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from posthog_llm.instrumentation import (
    Emitter,
    allowed_model_parameters,
    generation_properties,
    http_status_of,
    safely,
    secrets_in,
    span_properties,
    stopped_by_caller,
    trace_properties,
)

from ._messages import (
    cap_strings,
    long_texts,
    messages_to_dicts,
    output_choices,
    prompts_to_dicts,
    to_state,
)
from ._runs import CHAIN, CHAT, FRAMEWORK, Run
from ._usage import (
    Usage,
    base_url_of,
    extract_usage,
    normalise_provider,
    requested_model,
    served_model,
    service_tier,
    stop_reason,
)

__all__ = ["span_builder", "trace_builder", "generation_builder"]


def _run_name(run: Run) -> str | None:
    if run.name:
        return str(run.name)
    serialized = run.serialized
    if type(serialized) is dict or isinstance(serialized, Mapping):
        name = serialized.get("name")
        if name:
            return str(name)
        ids = serialized.get("id")
        if isinstance(ids, (list, tuple)) and ids:
            return str(ids[-1])
    return None


def _control_flow(error: BaseException | None) -> bool:
    """LangGraph's interrupts and hand-offs, and a consumer leaving a stream early (or
    cancelling: `break` out of `astream_events`), as the core's `stopped_by_caller` says."""
    if error is None:
        return False
    if stopped_by_caller(error):
        return True
    return any(
        cls.__name__ == "GraphBubbleUp" and cls.__module__.startswith("langgraph")
        for cls in type(error).__mro__
    )


def _error_fields(error: BaseException | None) -> tuple[BaseException | None, int | None]:
    # What `$ai_error` may say (scrubbed; only the type under privacy mode) is the core's
    # `error_text` policy, applied by the builders.
    if error is None:
        return None, None
    return error, http_status_of(error)


def _model_secrets(run: Run) -> list[str] | tuple[()]:
    """The trace's known secrets, with those of a failed model run added (worker side).

    What the model's settings hold: `SecretStr` or key-like invocation params, custom
    headers and secret markers in its serialized kwargs. Read only when a call failed: the
    hooks on the caller's thread never look.
    """
    trace = run.trace
    known = trace.secrets
    found = [s for s in secrets_in(run.params) + secrets_in(run.serialized) if s not in known]
    if found:
        known = trace.secrets = [*known, *found]
    return known


def _latency(run: Run, end: float) -> float:
    return end - run.start


def _step_common(
    emitter: Emitter, run: Run, output: Any, error: BaseException | None
) -> tuple[bool, Any, Any, Any, int | None]:
    privacy = emitter.privacy(run.scope)
    if _control_flow(error):
        interrupts = getattr(error, "args", None)
        if interrupts and not stopped_by_caller(error):
            output = {"__interrupt__": interrupts[0]}
        error = None
    err, status = _error_fields(error)
    if privacy:
        return privacy, None, None, err, status
    memo = run.memo
    try:  # one guard for both; one each only when one of them fails
        return privacy, to_state(run.inputs, 0, memo), to_state(output, 0, memo), err, status
    except Exception:
        return (
            privacy,
            safely(to_state, run.inputs, 0, memo),
            safely(to_state, output, 0, memo),
            err,
            status,
        )


def span_builder(
    emitter: Emitter,
    run: Run,
    output: Any,
    error: BaseException | None,
    end: float,
    max_chars: int | None,
) -> dict[str, Any]:
    privacy, input_state, output_state, err, status = _step_common(emitter, run, output, error)
    if max_chars is not None and not privacy:
        input_state = cap_strings(input_state, max_chars)
        output_state = cap_strings(output_state, max_chars)
    if run.kind == CHAIN:
        span_type = run.run_type if isinstance(run.run_type, str) and run.run_type else CHAIN
    else:
        span_type = run.kind
    return span_properties(
        trace_id=run.trace.trace_id,
        span_id=run.span_id(),
        parent_id=run.parent_span,
        span_name=_run_name(run),
        input_state=input_state,
        output_state=output_state,
        latency=_latency(run, end),
        error=err,
        http_status=status,
        framework=FRAMEWORK,
        privacy_mode=privacy,
        span_type=span_type,
        secrets=run.trace.secrets,
    )


def trace_builder(
    emitter: Emitter,
    run: Run,
    output: Any,
    error: BaseException | None,
    end: float,
    max_chars: int | None,
) -> dict[str, Any]:
    privacy, input_state, output_state, err, _ = _step_common(emitter, run, output, error)
    trace = run.trace
    sent_whole, trace.sent_whole = trace.sent_whole, None  # built last: stop collecting
    if sent_whole and max_chars is not None and not privacy:
        # The trace does not repeat in full a long text a generation of it already sent.
        input_state = cap_strings(input_state, max_chars, sent_whole)
        output_state = cap_strings(output_state, max_chars, sent_whole)
    return trace_properties(
        trace_id=run.trace.trace_id,
        span_name=_run_name(run),
        input_state=input_state,
        output_state=output_state,
        latency=_latency(run, end),
        error=err,
        framework=FRAMEWORK,
        privacy_mode=privacy,
        secrets=trace.secrets,
    )


def _model_parameters(params: Any, metadata: Any) -> dict[str, Any]:
    model_parameters = allowed_model_parameters(
        params if (type(params) is dict or isinstance(params, Mapping)) else None
    )
    if type(metadata) is dict or isinstance(metadata, Mapping):
        # LangSmith's standard params fill in what a model's invocation params leave out.
        for ls_key, key in (
            ("ls_temperature", "temperature"),
            ("ls_max_tokens", "max_tokens"),
            ("ls_stop", "stop"),
        ):
            value = metadata.get(ls_key)
            if value is not None and key not in model_parameters:
                model_parameters[key] = value
    return model_parameters


def _tools(params: Any) -> Any:
    if not (type(params) is dict or isinstance(params, Mapping)):
        return None
    tools = params.get("tools") or params.get("functions")
    if not isinstance(tools, (list, tuple)):
        return tools
    # Remote MCP tool definitions carry the server's credentials in headers.
    return [
        {k: ("[REDACTED]" if k in ("headers", "authorization") else v) for k, v in tool.items()}
        if (type(tool) is dict or isinstance(tool, Mapping)) and tool.get("type") == "mcp"
        else tool
        for tool in tools
    ]


def _facts(run: Run, response: Any, params: Mapping[str, Any], metadata: Mapping[str, Any]) -> Any:
    """A generation's facts read directly: the common case, where none of them fails."""
    base_url = base_url_of(run.serialized, params)
    provider = normalise_provider(metadata.get("ls_provider"), base_url)
    model = (served_model(response) if response is not None else None) or requested_model(
        params, metadata
    )
    usage = (extract_usage(response, provider, model) if response is not None else None) or Usage()
    return (
        base_url,
        provider,
        model,
        usage,
        _model_parameters(params, metadata),
        _tools(params),
        stop_reason(response) if response is not None else None,
    )


def _facts_safely(
    run: Run, response: Any, params: Mapping[str, Any], metadata: Mapping[str, Any]
) -> Any:
    """The same facts one by one: one that cannot be read is left out, not the others."""
    base_url = safely(base_url_of, run.serialized, params)
    provider = safely(normalise_provider, metadata.get("ls_provider"), base_url)
    model = (safely(served_model, response) if response is not None else None) or safely(
        requested_model, params, metadata
    )
    usage = (
        safely(extract_usage, response, provider, model) if response is not None else None
    ) or Usage()
    return (
        base_url,
        provider,
        model,
        usage,
        safely(_model_parameters, params, metadata),
        safely(_tools, params),
        safely(stop_reason, response) if response is not None else None,
    )


def _content(run: Run, response: Any, max_chars: int | None, collect: bool) -> Any:
    """Input messages, output choices and their long texts, read directly."""
    memo = run.memo
    input_messages = (
        messages_to_dicts(run.inputs, memo) if run.kind == CHAT else prompts_to_dicts(run.inputs)
    )
    output = (output_choices(response, memo) or None) if response is not None else None
    if output is None and run.streamed is not None:
        output = _streamed_so_far(run.streamed)
    texts: list[str] = []
    if collect and max_chars is not None:
        texts = long_texts(input_messages, max_chars) + long_texts(output, max_chars)
    return input_messages, output, texts


def _streamed_so_far(streamed: list[Any]) -> list[dict[str, Any]] | None:
    """A stream that ended without its response (abandoned, sent at shutdown): its text so far."""
    text = "".join(token for token in streamed[2:] if type(token) is str)
    return [{"role": "assistant", "content": text}] if text else None


def _said_anything(output: Any) -> bool:
    for choice in output if isinstance(output, list) else (output,):
        if not isinstance(choice, Mapping) or choice.get("content") or choice.get("tool_calls"):
            return True
        if set(choice) - {"role", "content"}:
            return True
    return False


def _content_safely(run: Run, response: Any, max_chars: int | None, collect: bool) -> Any:
    memo = run.memo
    input_messages = (
        safely(messages_to_dicts, run.inputs, memo)
        if run.kind == CHAT
        else safely(prompts_to_dicts, run.inputs)
    )
    output = (safely(output_choices, response, memo) or None) if response is not None else None
    if output is None and run.streamed is not None:
        output = safely(_streamed_so_far, run.streamed)
    texts: list[str] = []
    if collect and max_chars is not None:
        texts.extend(safely(long_texts, input_messages, max_chars) or ())
        texts.extend(safely(long_texts, output, max_chars) or ())
    return input_messages, output, texts


def generation_builder(
    emitter: Emitter,
    run: Run,
    response: Any,
    error: BaseException | None,
    end: float,
    max_chars: int | None,
) -> dict[str, Any]:
    privacy = emitter.privacy(run.scope)
    deferred = run.deferred  # provider drop-in calls the model made: reported here, once
    if deferred is not None and not privacy:
        privacy = deferred.private  # a private call keeps the generation private
    params = run.params if (type(run.params) is dict or isinstance(run.params, Mapping)) else {}
    metadata = (
        run.metadata if (type(run.metadata) is dict or isinstance(run.metadata, Mapping)) else {}
    )
    # One guard for the group, and one per fact only when something in it fails: the policy
    # (a fact that cannot be read is left out, not the event) at the cost of one `try`.
    try:
        facts = _facts(run, response, params, metadata)
    except Exception:
        facts = _facts_safely(run, response, params, metadata)
    base_url, provider, model, usage, model_parameters, tools, stop = facts
    streamed = run.first_token is not None or params.get("stream") is True
    if streamed and type(model_parameters) is dict and model_parameters.get("stream") is False:
        # `.stream()` on a model built without `streaming=True`: its params say the setting.
        model_parameters["stream"] = True
    finished = run.last_token if run.last_token is not None and error is None else end
    if _control_flow(error):
        error = None  # the consumer stopped reading a stream: not a failed call
    err, status = _error_fields(error)
    secrets = safely(_model_secrets, run) if err is not None else ()
    input_messages = output = None
    if not privacy:
        sent_whole = run.trace.sent_whole
        collect = sent_whole is not None
        try:
            input_messages, output, texts = _content(run, response, max_chars, collect)
        except Exception:
            input_messages, output, texts = _content_safely(run, response, max_chars, collect)
        if error is not None and output is not None and not _said_anything(output):
            # LangChain hands a failed call a stand-in empty message (the HTTP error's body
            # and headers in its metadata): the model gave no answer.
            output = None
        if sent_whole is not None and texts:
            if isinstance(sent_whole, list):
                sent_whole.extend(texts)
            else:
                run.trace.sent_whole = texts  # the first long texts of this trace
    props = generation_properties(
        trace_id=run.trace.trace_id,
        span_id=run.span_id(),
        parent_id=run.parent_span,
        span_name=_run_name(run),
        model=model,
        provider=provider,
        base_url=base_url,
        model_parameters=model_parameters,
        tools=tools,
        input=input_messages,
        output_choices=output,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_read_input_tokens=usage.cache_read_input_tokens,
        cache_creation_input_tokens=usage.cache_creation_input_tokens,
        reasoning_tokens=usage.reasoning_tokens,
        cache_creation_5m_input_tokens=usage.cache_creation_5m_input_tokens,
        cache_creation_1h_input_tokens=usage.cache_creation_1h_input_tokens,
        web_search_count=usage.web_search_count,
        latency=max(0.0, finished - run.start),
        time_to_first_token=(run.first_token - run.start) if run.first_token is not None else None,
        stream=streamed,
        stop_reason=stop,
        # No error: 200 when the model answered (a response, or streamed tokens); a call
        # cancelled before any answer has no status.
        http_status=status
        if error is not None
        else (200 if response is not None or run.first_token is not None else None),
        error=err,
        framework=FRAMEWORK,
        privacy_mode=privacy,
        service_tier=safely(service_tier, response) if response is not None else None,
        secrets=secrets or (),
    )
    if deferred is not None:
        # What the calls read that the model's run does not say (a custom model's model,
        # provider and tokens); the run's own facts win.
        props = safely(deferred.fill, props) or props
    return props
