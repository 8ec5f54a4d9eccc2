"""Model, provider, usage and stop reason from what LangChain hands to `on_llm_end`.

Runs on the sender's worker thread (inside the event builder), never in a hook.

Token semantics follow PostHog's cost model: `$ai_input_tokens` includes cached tokens for
OpenAI-style providers, and excludes cache reads and writes for Anthropic models. LangChain's
standard `usage_metadata.input_tokens` always includes them, so for Anthropic models read from
it we subtract; Anthropic's and Bedrock's raw usage already excludes them, so those are kept.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from posthog_llm.instrumentation import (
    Usage,
    clean_base_url,
    input_tokens_for,
    normalize_usage,
    output_tokens_for,
    provider_from_base_url,
    provider_name,
    responses_stop_reason,
)

__all__ = [
    "Usage",
    "normalise_provider",
    "base_url_of",
    "requested_model",
    "served_model",
    "extract_usage",
    "stop_reason",
    "service_tier",
]

# Where chat model classes keep their endpoint (serialized kwargs or invocation params).
_BASE_URL_KEYS = (
    "openai_api_base",
    "base_url",
    "azure_endpoint",
    "anthropic_api_url",
    "api_base",
    "endpoint_url",
    "endpoint",
)


def normalise_provider(ls_provider: Any, base_url: str | None) -> str | None:
    """PostHog's provider name; OpenAI-compatible endpoints are named by their host.

    >>> normalise_provider("google_genai", None)
    'gemini'
    >>> normalise_provider("openai", "https://api.groq.com/openai/v1")
    'groq'
    >>> normalise_provider("azure", "http://10.0.0.5:8080/openai")
    'azure'
    """
    provider = provider_name(ls_provider)
    if base_url and provider in (None, "openai", "azure"):
        guess = provider_from_base_url(base_url, default=provider or "openai")
        # An Azure deployment behind a private address is still Azure (as the drop-in says).
        if not (provider == "azure" and guess == "local"):
            provider = guess
    return provider


def base_url_of(serialized: Any, invocation_params: Any) -> str | None:
    """The endpoint a chat model talks to, without credentials."""
    sources = []
    if type(serialized) is dict or isinstance(serialized, Mapping):
        kwargs = serialized.get("kwargs")
        if type(kwargs) is dict or isinstance(kwargs, Mapping):
            sources.append(kwargs)
    if type(invocation_params) is dict or isinstance(invocation_params, Mapping):
        sources.append(invocation_params)
    for source in sources:
        for key in _BASE_URL_KEYS:
            value = source.get(key)
            if isinstance(value, str) and value:
                return clean_base_url(value)
    return None


def requested_model(invocation_params: Any, metadata: Any) -> str | None:
    if type(invocation_params) is dict or isinstance(invocation_params, Mapping):
        for key in ("model", "model_name", "model_id", "deployment_name", "azure_deployment"):
            value = invocation_params.get(key)
            if isinstance(value, str) and value:
                return value
    if type(metadata) is dict or isinstance(metadata, Mapping):
        value = metadata.get("ls_model_name")
        if isinstance(value, str) and value:
            return value
    return None


def _generations(response: Any) -> Iterator[Any]:
    for candidates in getattr(response, "generations", None) or ():
        yield from candidates or ()


def served_model(response: Any) -> str | None:
    """The model the provider says it served (a dated snapshot), when it says so."""
    for generation in _generations(response):
        message = getattr(generation, "message", None)
        metadata = getattr(message, "response_metadata", None)
        for source in (metadata, getattr(generation, "generation_info", None)):
            if type(source) is dict or isinstance(source, Mapping):
                for key in ("model_name", "model", "model_id"):
                    value = source.get(key)
                    if isinstance(value, str) and value:
                        return value
    llm_output = getattr(response, "llm_output", None)
    if type(llm_output) is dict or isinstance(llm_output, Mapping):
        for key in ("model_name", "model", "model_id"):
            value = llm_output.get(key)
            if isinstance(value, str) and value:
                return value
    return None


# `UsageMetadata` without token details: read directly, the rest by the core's normaliser.
_PLAIN_USAGE_KEYS = frozenset({"input_tokens", "output_tokens", "total_tokens"})


def _standard_usage(usage: Any, provider: str | None, model: str | None) -> Usage | None:
    """LangChain's `UsageMetadata`: input_tokens counts every prompt token, cached or not, and
    output_tokens every generated one, thinking included."""
    if type(usage) is dict and usage.keys() <= _PLAIN_USAGE_KEYS:
        input_tokens, output_tokens = usage.get("input_tokens"), usage.get("output_tokens")
        if type(input_tokens) is int and type(output_tokens) is int:
            # What `normalize_usage` reads from these keys; no cache counts to subtract.
            return Usage(input_tokens, output_tokens)
    parsed = normalize_usage(usage)
    if parsed.input_tokens is None and parsed.output_tokens is None:
        return None
    if parsed.input_tokens is not None and (
        parsed.cache_read_input_tokens or parsed.cache_creation_input_tokens
    ):
        # Claude on any host (Bedrock and Vertex too): PostHog reads its input without the cache.
        parsed = parsed._replace(
            input_tokens=input_tokens_for(
                provider,
                parsed.input_tokens,
                parsed.cache_read_input_tokens,
                parsed.cache_creation_input_tokens,
                model,
            )
        )
    if parsed.reasoning_tokens:
        # Gemini: PostHog adds the thinking to the output it reads, as Google counts it apart.
        parsed = parsed._replace(
            output_tokens=output_tokens_for(
                provider, parsed.output_tokens, parsed.reasoning_tokens, model
            )
        )
    return parsed


def _web_searches(metadata: Any) -> int | None:
    """Anthropic's server-side web searches (`response_metadata["usage"]["server_tool_use"]`),
    which LangChain's `usage_metadata` leaves out."""
    if not (type(metadata) is dict or isinstance(metadata, Mapping)):
        return None
    block = metadata.get("usage")
    if not (type(block) is dict or isinstance(block, Mapping)) or "server_tool_use" not in block:
        return None
    return normalize_usage(block).web_search_count


def _raw_usage(usage: Any) -> Usage | None:
    """A provider's own usage block, as it sent it (no cache arithmetic needed).

    OpenAI (`prompt_tokens` include cached), Anthropic and Bedrock (input excludes cache),
    Google (`prompt_token_count` includes cached content, like OpenAI), Ollama, IBM: the core's
    one normaliser reads them all.
    """
    if not (type(usage) is dict or isinstance(usage, Mapping)) and not hasattr(usage, "__dict__"):
        return None
    parsed = normalize_usage(usage)
    if parsed.input_tokens is None and parsed.output_tokens is None:
        return None
    return parsed


def extract_usage(response: Any, provider: str | None, model: str | None) -> Usage:
    """Token counts of one LLM call, from the best source LangChain gives us.

    Order: the message's standard `usage_metadata`, then provider blocks in the message's
    `response_metadata` or `generation_info`, then the call's `llm_output`.
    """
    fallback: Usage | None = None
    for generation in _generations(response):
        message = getattr(generation, "message", None)
        usage = getattr(message, "usage_metadata", None)
        if usage:
            standard = _standard_usage(usage, provider, model)
            if standard is not None:
                if standard.web_search_count is None:
                    searches = _web_searches(getattr(message, "response_metadata", None))
                    if searches:
                        standard = standard._replace(web_search_count=searches)
                return standard
        if fallback is None:
            fallback = _metadata_usage(getattr(message, "response_metadata", None))
        if fallback is None:
            info = getattr(generation, "generation_info", None)
            if type(info) is dict or isinstance(info, Mapping):
                if info.get("usage_metadata"):
                    fallback = _raw_usage(info["usage_metadata"])
                if fallback is None:
                    fallback = _metadata_usage(info)
    if fallback is not None:
        return fallback
    llm_output = getattr(response, "llm_output", None)
    if type(llm_output) is dict or isinstance(llm_output, Mapping):
        for key in ("token_usage", "usage", "usage_metadata"):
            block = llm_output.get(key)
            if block:
                parsed = _raw_usage(block)
                if parsed is not None:
                    return parsed
    return Usage()


def _metadata_usage(metadata: Any) -> Usage | None:
    if not (type(metadata) is dict or isinstance(metadata, Mapping)) or not metadata:
        return None
    for key in ("token_usage", "usage", "usage_metadata", "amazon-bedrock-invocationMetrics"):
        block = metadata.get(key)
        if block:
            parsed = _raw_usage(block)
            if parsed is not None:
                return parsed
    # Ollama puts its counters at the top level of the response metadata.
    if "prompt_eval_count" in metadata or "eval_count" in metadata:
        return _raw_usage(metadata)
    return None


def service_tier(response: Any) -> str | None:
    """The tier the provider served the call at (`response_metadata["service_tier"]`)."""
    for generation in _generations(response):
        metadata = getattr(getattr(generation, "message", None), "response_metadata", None)
        if type(metadata) is dict or isinstance(metadata, Mapping):
            tier = metadata.get("service_tier")
            if isinstance(tier, str) and tier:
                return tier
    return None


def stop_reason(response: Any) -> str | None:
    """Why the model stopped: the provider's finish reason, or for OpenAI's Responses API
    (`ChatOpenAI(use_responses_api=True)`), which has none, what its `status` and
    `incomplete_details` say, named as the OpenAI drop-in names them."""
    for generation in _generations(response):
        message = getattr(generation, "message", None)
        metadata = getattr(message, "response_metadata", None)
        for source in (metadata, getattr(generation, "generation_info", None)):
            if type(source) is dict or isinstance(source, Mapping):
                for key in ("finish_reason", "stop_reason", "done_reason", "stopReason"):
                    value = source.get(key)
                    if value is not None:
                        return str(value)
        if not (type(metadata) is dict or isinstance(metadata, Mapping)):
            continue
        if metadata.get("object") == "response":  # OpenAI's Responses API: no finish reason
            called = bool(
                getattr(message, "tool_calls", None) or getattr(message, "invalid_tool_calls", None)
            )
            reason = responses_stop_reason(metadata, called)
            if reason is not None:
                return reason
    return None
