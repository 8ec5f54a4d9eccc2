"""The only module that knows PostHog's `$ai_*` property names.

Builders take plain Python facts and return a properties dict; integrations never spell a
`$ai_` name themselves. Content fields are left out entirely in privacy mode.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ._errors import error_text, error_type
from ._version import __version__

__all__ = [
    "GENERATION",
    "EMBEDDING",
    "SPAN",
    "TRACE",
    "FEEDBACK",
    "METRIC",
    "AI_EVENTS",
    "CONTENT_PROPERTIES",
    "generation_properties",
    "embedding_properties",
    "span_properties",
    "trace_properties",
    "feedback_properties",
    "metric_properties",
    "http_status_of",
    "clean_base_url",
    "provider_from_base_url",
    "provider_name",
    "allowed_model_parameters",
    "strip_content",
    "PRIVATE_PROPERTIES",
    "apply_privacy",
]

GENERATION = "$ai_generation"
EMBEDDING = "$ai_embedding"
SPAN = "$ai_span"
TRACE = "$ai_trace"
FEEDBACK = "$ai_feedback"
METRIC = "$ai_metric"
AI_EVENTS = frozenset({GENERATION, EMBEDDING, SPAN, TRACE})

LIB_NAME = "posthog-llm"

# Prompt, completion and state content: what privacy mode removes.
CONTENT_PROPERTIES = frozenset(
    {"$ai_input", "$ai_output_choices", "$ai_input_state", "$ai_output_state"}
)

# What privacy mode removes outright: that content, and the words of a user's feedback.
PRIVATE_PROPERTIES = CONTENT_PROPERTIES | {"$ai_feedback_text"}

# Request parameters worth recording. An allow-list, so keys and headers never leak.
MODEL_PARAMETER_NAMES = frozenset(
    {
        "temperature",
        "max_tokens",
        "max_completion_tokens",
        "max_output_tokens",
        "max_new_tokens",
        "num_predict",
        "top_p",
        "top_k",
        "min_p",
        "stop",
        "stop_sequences",
        "stream",
        "n",
        "seed",
        "frequency_penalty",
        "presence_penalty",
        "repetition_penalty",
        "logit_bias",
        "logprobs",
        "top_logprobs",
        "response_format",
        "output_format",
        "tool_choice",
        "parallel_tool_calls",
        "reasoning_effort",
        "reasoning",
        "thinking",
        "verbosity",
        "service_tier",
        "output_config",
        "dimensions",
        "encoding_format",
        "context_window",
        "num_ctx",
        "truncation",
        "text",
    }
)


def allowed_model_parameters(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Keep only known, harmless request parameters (never api keys, headers or clients).

    A structured-output format given as a class (a pydantic model: the OpenAI and Anthropic
    SDKs' `parse()`, LangChain's `with_structured_output`) is named as JSON, in the shape of
    the request that sends it, not written as the class's repr.

    >>> class Person: ...
    >>> allowed_model_parameters({"response_format": Person, "api_key": "sk-secret"})
    {'response_format': {'type': 'json_schema', 'json_schema': {'name': 'Person'}}}
    """
    if not params:
        return {}
    chosen = {k: v for k, v in params.items() if k in MODEL_PARAMETER_NAMES and v is not None}
    for key, named in _NAMED_FORMATS:
        value = chosen.get(key)
        if isinstance(value, type):
            chosen[key] = named(value.__name__)
    return chosen


# The parameters that may name a structured-output format as a class, and how a request names it:
# Chat Completions' `response_format` and Anthropic's `output_format`.
_NAMED_FORMATS = (
    ("response_format", lambda name: {"type": "json_schema", "json_schema": {"name": name}}),
    ("output_format", lambda name: {"type": "json_schema", "name": name}),
)


def http_status_of(error: BaseException | None) -> int | None:
    """The HTTP status an exception carries, if any: openai, anthropic, httpx and requests
    (`status_code`), google-genai and urllib (`code`), or its response's (aiohttp's `status`)."""
    if error is None:
        return None
    status = _status_among(error, ("status_code", "http_status", "status", "code"))
    if status is None:
        response = getattr(error, "response", None)
        if response is not None:
            status = _status_among(response, ("status_code", "status"))
    return status


def _status_among(source: Any, names: tuple[str, ...]) -> int | None:
    """The first of `source`'s attributes `names` that holds an HTTP status code."""
    for name in names:
        value = getattr(source, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
            return value
    return None


def clean_base_url(url: Any) -> str | None:
    """The URL without user info, query or fragment (they may hold credentials)."""
    if not url:
        return None
    return _clean_base_url_text(str(url))


# One client talks to one or a few base URLs: parsing each once saves ~3 µs per generation.
@functools.lru_cache(maxsize=256)
def _clean_base_url_text(text: str) -> str | None:
    try:
        parts = urlsplit(text)
    except ValueError:
        return None
    if not parts.scheme or not parts.hostname:
        return text.split("?", 1)[0]
    host = parts.hostname
    if ":" in host:
        host = f"[{host}]"
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


_PROVIDER_HOSTS: tuple[tuple[str, str], ...] = (
    ("openai.azure.com", "azure"),
    ("azure.com", "azure"),
    ("api.openai.com", "openai"),
    ("anthropic.com", "anthropic"),
    ("groq.com", "groq"),
    ("deepseek.com", "deepseek"),
    ("together.xyz", "together"),
    ("together.ai", "together"),
    ("openrouter.ai", "openrouter"),
    ("mistral.ai", "mistral"),
    ("fireworks.ai", "fireworks"),
    ("perplexity.ai", "perplexity"),
    ("x.ai", "xai"),
    ("cohere.com", "cohere"),
    ("cohere.ai", "cohere"),
    ("generativelanguage.googleapis.com", "gemini"),
    ("aiplatform.googleapis.com", "vertex"),
    ("bedrock", "bedrock"),
    ("amazonaws.com", "bedrock"),
    ("huggingface.co", "huggingface"),
    ("cerebras.ai", "cerebras"),
)


# How frameworks spell a provider (LangSmith's `ls_provider` and class names, LlamaIndex's
# package names, OpenTelemetry's `gen_ai.provider.name` / `gen_ai.system`) -> the name
# posthog-python's own wrappers send. One provider is one value in PostHog's breakdowns,
# whichever integration reported it; names not listed are kept, lower-cased.
_PROVIDER_ALIASES = {
    # Azure OpenAI and Azure AI Inference
    "azure_openai": "azure",
    "azureopenai": "azure",
    "azure_ai": "azure",
    "azure_inference": "azure",
    "azureaichatcompletionsmodel": "azure",
    "az.ai.openai": "azure",
    "azure.ai.openai": "azure",
    "az.ai.inference": "azure",  # the GenAI conventions' older spelling of the next
    "azure.ai.inference": "azure",
    # Google: the Gemini API, and Vertex AI ("vertex", as the Gemini wrapper in Vertex mode)
    "google": "gemini",
    "google_genai": "gemini",
    "googlegenerativeai": "gemini",
    "gcp.gemini": "gemini",
    "gcp.gen_ai": "gemini",
    "google_vertexai": "vertex",
    "vertexai": "vertex",
    "vertex_ai": "vertex",
    "gcp.vertex_ai": "vertex",
    # Claude on Vertex is labelled by its model's maker, as posthog-python's Anthropic wrapper does
    "google_anthropic_vertex": "anthropic",
    # AWS Bedrock
    "amazon_bedrock": "bedrock",
    "bedrock_converse": "bedrock",
    "bedrockconverse": "bedrock",
    "aws": "bedrock",
    "aws.bedrock": "bedrock",
    # others spelled more than one way
    "openai_like": "openai",
    "mistralai": "mistral",
    "mistral_ai": "mistral",
    "x_ai": "xai",
    "togetherai": "together",
    "voyageai": "voyage",
    "huggingface_api": "huggingface",
    "text_embeddings_inference": "huggingface",
}


def provider_name(value: Any) -> str | None:
    """PostHog's name for a provider as a framework spells it; None when there is none.

    >>> provider_name("google_genai")
    'gemini'
    >>> provider_name("Azure_OpenAI")
    'azure'
    >>> provider_name("groq")
    'groq'
    """
    if not isinstance(value, str):
        return None
    key = value.strip().lower()
    if not key:
        return None
    return _PROVIDER_ALIASES.get(key, key)


def provider_from_base_url(url: Any, default: str = "openai") -> str:
    """Guess the provider from an API base URL (OpenAI-compatible providers share one SDK).

    >>> provider_from_base_url("https://api.groq.com/openai/v1")
    'groq'
    >>> provider_from_base_url("http://localhost:11434/v1")
    'ollama'
    """
    if not url:
        return default
    return _provider_from_text(str(url), default)


_LOCAL_NAMES = frozenset(
    {"localhost", "localhost.localdomain", "host.docker.internal", "0.0.0.0", "::"}
)


def _is_local_host(host: str) -> bool:
    """This machine, a container's host, an mDNS name or a private (or link-local) address."""
    if host in _LOCAL_NAMES or host.endswith((".local", ".localhost")):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_private or address.is_link_local


@functools.lru_cache(maxsize=256)
def _provider_from_text(text: str, default: str) -> str:
    try:
        parts = urlsplit(text)
    except ValueError:
        return default
    host = (parts.hostname or "").lower()
    for needle, provider in _PROVIDER_HOSTS:
        if host == needle or host.endswith("." + needle) or needle in host:
            return provider
    if parts.port == 11434 or "ollama" in host:
        return "ollama"
    if _is_local_host(host):
        # A model served on this machine or this network (vLLM, LM Studio, a stand-in): the
        # same value on every route that reads the base URL.
        return "local"
    return default


def _put(props: dict[str, Any], key: str, value: Any) -> None:
    if value is not None:
        props[key] = value


def _common(
    props: dict[str, Any],
    *,
    trace_id: Any,
    span_id: Any,
    parent_id: Any,
    span_name: Any,
    framework: str | None,
    session_id: Any,
    latency: float | None,
    error: BaseException | str | None,
    is_error: bool | None,
    http_status: int | None,
    privacy_mode: bool = False,
    secrets: Iterable[str] = (),
) -> None:
    props["$ai_lib"] = LIB_NAME
    props["$ai_lib_version"] = __version__
    if trace_id is not None:
        props["$ai_trace_id"] = str(trace_id)
    if span_id is not None:
        props["$ai_span_id"] = str(span_id)
    if parent_id is not None:
        props["$ai_parent_id"] = str(parent_id)
    if span_name is not None:
        props["$ai_span_name"] = str(span_name)
    _put(props, "$ai_framework", framework)
    if session_id is not None:
        props["$ai_session_id"] = str(session_id)
    if latency is not None:
        props["$ai_latency"] = max(0.0, float(latency))
    if error is not None or is_error:
        props["$ai_is_error"] = True
        _put(props, "$ai_error", error_text(error, privacy=privacy_mode, secrets=secrets))
        if http_status is None and isinstance(error, BaseException):
            http_status = http_status_of(error)
    elif is_error is False:
        props["$ai_is_error"] = False
    _put(props, "$ai_http_status", http_status)


def _usage(
    props: dict[str, Any],
    input_tokens: int | None,
    output_tokens: int | None,
    cache_read_input_tokens: int | None = None,
    cache_creation_input_tokens: int | None = None,
    reasoning_tokens: int | None = None,
) -> None:
    # Unknown counts are omitted, never sent as 0.
    for key, value in (
        ("$ai_input_tokens", input_tokens),
        ("$ai_output_tokens", output_tokens),
        ("$ai_cache_read_input_tokens", cache_read_input_tokens),
        ("$ai_cache_creation_input_tokens", cache_creation_input_tokens),
        (PROP_REASONING_TOKENS, reasoning_tokens),
    ):
        if value is not None:
            try:
                props[key] = int(value)
            except (TypeError, ValueError):
                continue


def generation_properties(
    *,
    trace_id: Any,
    span_id: Any = None,
    parent_id: Any = None,
    span_name: str | None = None,
    model: str | None = None,
    provider: str | None = None,
    base_url: str | None = None,
    model_parameters: Mapping[str, Any] | None = None,
    tools: Any = None,
    input: Any = None,
    output_choices: Any = None,
    input_tokens: int | None = None,
    output_tokens: int | None = None,
    cache_read_input_tokens: int | None = None,
    cache_creation_input_tokens: int | None = None,
    reasoning_tokens: int | None = None,
    latency: float | None = None,
    time_to_first_token: float | None = None,
    stream: bool | None = None,
    stop_reason: str | None = None,
    http_status: int | None = None,
    error: BaseException | str | None = None,
    is_error: bool | None = None,
    framework: str | None = None,
    session_id: Any = None,
    privacy_mode: bool = False,
    secrets: Iterable[str] = (),
    cost: Mapping[str, float] | None = None,
    cache_creation_5m_input_tokens: int | None = None,
    cache_creation_1h_input_tokens: int | None = None,
    web_search_count: int | None = None,
    service_tier: str | None = None,
    usage_by_modality: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Properties of one `$ai_generation` (an LLM call).

    `usage_by_modality`: the provider's own usage block when it counts audio or image tokens
    (`modality_usage`), sent as `$ai_usage`, from which PostHog prices them at their own rates.

    `service_tier`: the tier the provider served the call at (OpenAI's `flex`, `priority` ...),
    which PostHog prices by.

    `secrets`: credentials the model holds, scrubbed from `error`'s text like known key shapes.

    >>> p = generation_properties(trace_id="t1", model="gpt-4o", input_tokens=3, latency=0.2)
    >>> p["$ai_model"], p["$ai_input_tokens"], p["$ai_latency"]
    ('gpt-4o', 3, 0.2)
    """
    props: dict[str, Any] = {}
    _common(
        props,
        trace_id=trace_id,
        span_id=span_id,
        parent_id=parent_id,
        span_name=span_name,
        framework=framework,
        session_id=session_id,
        latency=latency,
        error=error,
        is_error=is_error,
        http_status=http_status,
        privacy_mode=privacy_mode,
        secrets=secrets,
    )
    _put(props, "$ai_model", model)
    _put(props, "$ai_provider", provider)
    _put(props, "$ai_base_url", clean_base_url(base_url))
    if model_parameters:
        props["$ai_model_parameters"] = allowed_model_parameters(model_parameters)
    if tools:
        props["$ai_tools"] = tools
    if not privacy_mode:
        _put(props, "$ai_input", input)
        _put(props, "$ai_output_choices", output_choices)
    _usage(
        props,
        input_tokens,
        output_tokens,
        cache_read_input_tokens,
        cache_creation_input_tokens,
        reasoning_tokens,
    )
    if cache_creation_5m_input_tokens is not None and cache_creation_1h_input_tokens is not None:
        # PostHog prices cache writes by TTL only when both halves of the split are known.
        props[PROP_CACHE_CREATION_5M_INPUT_TOKENS] = int(cache_creation_5m_input_tokens)
        props[PROP_CACHE_CREATION_1H_INPUT_TOKENS] = int(cache_creation_1h_input_tokens)
    if web_search_count is not None:
        props["$ai_web_search_count"] = int(web_search_count)
    if usage_by_modality:
        props["$ai_usage"] = usage_by_modality
    if isinstance(service_tier, str) and service_tier:
        props[PROP_SERVICE_TIER] = service_tier
    if stream:
        props["$ai_stream"] = True
        if time_to_first_token is not None:
            props["$ai_time_to_first_token"] = max(0.0, float(time_to_first_token))
    elif stream is False:
        props["$ai_stream"] = False
    _put(props, "$ai_stop_reason", stop_reason)
    if cost:
        for key in ("input", "output", "total"):
            if cost.get(key) is not None:
                props[f"$ai_{key}_cost_usd"] = float(cost[key])
    return props


def embedding_properties(
    *,
    trace_id: Any,
    span_id: Any = None,
    parent_id: Any = None,
    span_name: str | None = None,
    model: str | None = None,
    provider: str | None = None,
    base_url: str | None = None,
    model_parameters: Mapping[str, Any] | None = None,
    input: Any = None,
    input_count: int | None = None,
    input_tokens: int | None = None,
    latency: float | None = None,
    http_status: int | None = None,
    error: BaseException | str | None = None,
    is_error: bool | None = None,
    framework: str | None = None,
    session_id: Any = None,
    privacy_mode: bool = False,
    secrets: Iterable[str] = (),
) -> dict[str, Any]:
    """Properties of one `$ai_embedding` (an embedding call)."""
    props: dict[str, Any] = {}
    _common(
        props,
        trace_id=trace_id,
        span_id=span_id,
        parent_id=parent_id,
        span_name=span_name,
        framework=framework,
        session_id=session_id,
        latency=latency,
        error=error,
        is_error=is_error,
        http_status=http_status,
        privacy_mode=privacy_mode,
        secrets=secrets,
    )
    _put(props, "$ai_model", model)
    _put(props, "$ai_provider", provider)
    _put(props, "$ai_base_url", clean_base_url(base_url))
    if model_parameters:
        props["$ai_model_parameters"] = allowed_model_parameters(model_parameters)
    if not privacy_mode:
        _put(props, "$ai_input", input)
    _put(props, "$ai_embedding_input_count", input_count)
    _usage(props, input_tokens, None)
    return props


def span_properties(
    *,
    trace_id: Any,
    span_id: Any,
    parent_id: Any = None,
    span_name: str | None = None,
    input_state: Any = None,
    output_state: Any = None,
    latency: float | None = None,
    error: BaseException | str | None = None,
    is_error: bool | None = None,
    http_status: int | None = None,
    framework: str | None = None,
    session_id: Any = None,
    privacy_mode: bool = False,
    span_type: str | None = None,
    secrets: Iterable[str] = (),
) -> dict[str, Any]:
    """Properties of one `$ai_span` (a chain step, tool, retriever, query step)."""
    props: dict[str, Any] = {}
    _common(
        props,
        trace_id=trace_id,
        span_id=span_id,
        parent_id=parent_id if parent_id is not None else trace_id,
        span_name=span_name,
        framework=framework,
        session_id=session_id,
        latency=latency,
        error=error,
        is_error=is_error,
        http_status=http_status,
        privacy_mode=privacy_mode,
        secrets=secrets,
    )
    _put(props, "$ai_span_type", span_type)
    if not privacy_mode:
        _put(props, "$ai_input_state", input_state)
        _put(props, "$ai_output_state", output_state)
    return props


def trace_properties(
    *,
    trace_id: Any,
    span_name: str | None = None,
    input_state: Any = None,
    output_state: Any = None,
    latency: float | None = None,
    error: BaseException | str | None = None,
    is_error: bool | None = None,
    framework: str | None = None,
    session_id: Any = None,
    privacy_mode: bool = False,
    secrets: Iterable[str] = (),
    http_status: int | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Properties of one `$ai_trace` (the root of a run). It has no parent.

    `http_status`: of the call that failed the run; `metadata`: the run's own (an Agents
    trace's), as `$ai_trace_metadata`."""
    props: dict[str, Any] = {}
    _common(
        props,
        trace_id=trace_id,
        span_id=None,
        parent_id=None,
        span_name=span_name,
        framework=framework,
        session_id=session_id,
        latency=latency,
        error=error,
        is_error=is_error,
        http_status=http_status,
        privacy_mode=privacy_mode,
        secrets=secrets,
    )
    if metadata:
        props["$ai_trace_metadata"] = metadata
    if not privacy_mode:
        _put(props, "$ai_input_state", input_state)
        _put(props, "$ai_output_state", output_state)
    return props


def feedback_properties(*, trace_id: Any, text: str) -> dict[str, Any]:
    """Properties of one `$ai_feedback` (a user's words about a trace)."""
    return {"$ai_trace_id": str(trace_id), "$ai_feedback_text": text}


def metric_properties(*, trace_id: Any, name: str, value: Any) -> dict[str, Any]:
    """Properties of one `$ai_metric` (a named score about a trace)."""
    return {"$ai_trace_id": str(trace_id), "$ai_metric_name": name, "$ai_metric_value": value}


def strip_content(properties: dict[str, Any]) -> dict[str, Any]:
    """The properties without prompt, completion or state content (privacy mode)."""
    if not CONTENT_PROPERTIES.intersection(properties):
        return properties
    return {k: v for k, v in properties.items() if k not in CONTENT_PROPERTIES}


def apply_privacy(properties: dict[str, Any]) -> dict[str, Any]:
    """Privacy mode on an event's finished properties, in place: the one place for it.

    Every route applies it (manual `capture`, the integrations' events, feedback): content and
    feedback text go, `$ai_error` keeps only the exception type (`error_type`: what the
    integrations' own `error_text(..., privacy=True)` gives, so applying it again changes
    nothing); model, usage, latency and `$ai_http_status` stay.
    """
    for key in PRIVATE_PROPERTIES:
        if key in properties:
            del properties[key]
    error = properties.get("$ai_error")
    if error is not None:
        properties["$ai_error"] = error_type(error)
    return properties


def iter_ai_keys(properties: Mapping[str, Any]) -> Iterable[str]:
    return (k for k in properties if k.startswith(EVENT_PREFIX))


# -- property names, for readers (the local store, command line, viewer and its API) -----------
# Builders above spell them in place; readers take them from here so no other module does.
PROP_TRACE_ID = "$ai_trace_id"
PROP_SPAN_ID = "$ai_span_id"
PROP_PARENT_ID = "$ai_parent_id"
PROP_SPAN_NAME = "$ai_span_name"
PROP_SESSION_ID = "$ai_session_id"
PROP_MODEL = "$ai_model"
PROP_PROVIDER = "$ai_provider"
PROP_INPUT_TOKENS = "$ai_input_tokens"
PROP_OUTPUT_TOKENS = "$ai_output_tokens"
PROP_CACHE_READ_INPUT_TOKENS = "$ai_cache_read_input_tokens"
PROP_CACHE_CREATION_INPUT_TOKENS = "$ai_cache_creation_input_tokens"
PROP_TOTAL_COST_USD = "$ai_total_cost_usd"
PROP_INPUT_COST_USD = "$ai_input_cost_usd"
PROP_OUTPUT_COST_USD = "$ai_output_cost_usd"
PROP_INPUT_TOKEN_PRICE = "$ai_input_token_price"
PROP_OUTPUT_TOKEN_PRICE = "$ai_output_token_price"
PROP_CACHE_READ_TOKEN_PRICE = "$ai_cache_read_token_price"
PROP_CACHE_WRITE_TOKEN_PRICE = "$ai_cache_write_token_price"
# What an event may carry of its own pricing (PostHog's custom pricing, ahead of its table).
OWN_COST_PROPERTIES = (
    PROP_TOTAL_COST_USD,
    PROP_INPUT_COST_USD,
    PROP_OUTPUT_COST_USD,
    PROP_INPUT_TOKEN_PRICE,
    PROP_OUTPUT_TOKEN_PRICE,
    PROP_CACHE_READ_TOKEN_PRICE,
    PROP_CACHE_WRITE_TOKEN_PRICE,
)
PROP_TOOLS = "$ai_tools"
PROP_LATENCY = "$ai_latency"
PROP_IS_ERROR = "$ai_is_error"
PROP_ERROR = "$ai_error"
PROP_STREAM = "$ai_stream"
PROP_TIME_TO_FIRST_TOKEN = "$ai_time_to_first_token"
PROP_INPUT = "$ai_input"
PROP_OUTPUT_CHOICES = "$ai_output_choices"
PROP_INPUT_STATE = "$ai_input_state"
PROP_OUTPUT_STATE = "$ai_output_state"
PROP_REASONING_TOKENS = "$ai_reasoning_tokens"
PROP_SERVICE_TIER = "$ai_service_tier"
PROP_CACHE_CREATION_5M_INPUT_TOKENS = "$ai_cache_creation_5m_input_tokens"
PROP_CACHE_CREATION_1H_INPUT_TOKENS = "$ai_cache_creation_1h_input_tokens"
EVENT_PREFIX = "$ai_"
