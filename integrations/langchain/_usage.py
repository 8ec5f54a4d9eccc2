"""Model, provider, usage and stop reason from what LangChain hands to `on_llm_end`.

Runs on the sender's worker thread (inside the event builder), never in a hook.

Token semantics follow PostHog's cost model: `$ai_input_tokens` includes cached tokens for
OpenAI-style providers, and excludes cache reads and writes for Anthropic models. LangChain's
standard `usage_metadata.input_tokens` always includes them, so for Anthropic models read from
it we subtract; Anthropic's and Bedrock's raw usage already excludes them, so those are kept.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

from posthog_llm._events import clean_base_url, provider_from_base_url

__all__ = [
    "Usage",
    "normalise_provider",
    "base_url_of",
    "requested_model",
    "served_model",
    "extract_usage",
    "stop_reason",
    "is_anthropic_model",
]

# LangSmith `ls_provider` values (and class-name fallbacks) -> PostHog provider names.
_PROVIDER_ALIASES = {
    "openai": "openai",
    "azure": "azure",
    "azure_openai": "azure",
    "azureopenai": "azure",
    "azure_ai": "azure",
    "azureaichatcompletionsmodel": "azure",
    "anthropic": "anthropic",
    "google": "google",
    "google_genai": "google",
    "googlegenerativeai": "google",
    "google_vertexai": "google",
    "vertexai": "google",
    "vertex": "google",
    "google_anthropic_vertex": "google",
    "gemini": "google",
    "bedrock": "bedrock",
    "amazon_bedrock": "bedrock",
    "bedrock_converse": "bedrock",
    "bedrockconverse": "bedrock",
    "aws": "bedrock",
    "ollama": "ollama",
    "mistral": "mistral",
    "mistralai": "mistral",
    "groq": "groq",
    "deepseek": "deepseek",
    "xai": "xai",
    "fireworks": "fireworks",
    "together": "together",
    "cohere": "cohere",
    "huggingface": "huggingface",
    "perplexity": "perplexity",
    "openrouter": "openrouter",
    "cerebras": "cerebras",
}

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
    'google'
    >>> normalise_provider("openai", "https://api.groq.com/openai/v1")
    'groq'
    """
    provider = None
    if isinstance(ls_provider, str) and ls_provider:
        key = ls_provider.strip().lower()
        provider = _PROVIDER_ALIASES.get(key, key)
    if base_url and provider in (None, "openai", "azure"):
        guess = provider_from_base_url(base_url, default=provider or "openai")
        if guess != "local":
            provider = guess
    return provider


def base_url_of(serialized: Any, invocation_params: Any) -> str | None:
    """The endpoint a chat model talks to, without credentials."""
    sources = []
    if isinstance(serialized, Mapping):
        kwargs = serialized.get("kwargs")
        if isinstance(kwargs, Mapping):
            sources.append(kwargs)
    if isinstance(invocation_params, Mapping):
        sources.append(invocation_params)
    for source in sources:
        for key in _BASE_URL_KEYS:
            value = source.get(key)
            if isinstance(value, str) and value:
                return clean_base_url(value)
    return None


def requested_model(invocation_params: Any, metadata: Any) -> str | None:
    if isinstance(invocation_params, Mapping):
        for key in ("model", "model_name", "model_id", "deployment_name", "azure_deployment"):
            value = invocation_params.get(key)
            if isinstance(value, str) and value:
                return value
    if isinstance(metadata, Mapping):
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
            if isinstance(source, Mapping):
                for key in ("model_name", "model", "model_id"):
                    value = source.get(key)
                    if isinstance(value, str) and value:
                        return value
    llm_output = getattr(response, "llm_output", None)
    if isinstance(llm_output, Mapping):
        for key in ("model_name", "model", "model_id"):
            value = llm_output.get(key)
            if isinstance(value, str) and value:
                return value
    return None


def is_anthropic_model(provider: str | None, model: str | None) -> bool:
    if provider == "anthropic":
        return True
    lowered = (model or "").lower()
    return "claude" in lowered or "anthropic" in lowered


class Usage(NamedTuple):
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    reasoning_tokens: int | None = None


def _count(value: Any) -> int | None:
    cls = type(value)
    if cls is int:
        return value
    if value is None or cls is bool:
        return None
    # Bedrock streams counts as lists of per-chunk numbers.
    if isinstance(value, (list, tuple)):
        total = 0
        for item in value:
            item = _count(item)
            if item is None:
                return None
            total += item
        return total
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _get(source: Any, key: str) -> Any:
    if type(source) is dict:  # the common case, without the slower Mapping check
        return source.get(key)
    if isinstance(source, Mapping):
        return source.get(key)
    return getattr(source, key, None)


def _first_count(source: Any, *keys: str) -> int | None:
    for key in keys:
        value = _count(_get(source, key))
        if value is not None:
            return value
    return None


def _standard_usage(usage: Any, anthropic: bool) -> Usage | None:
    """LangChain's `UsageMetadata`: input_tokens counts every prompt token, cached or not."""
    input_tokens = _count(_get(usage, "input_tokens"))
    output_tokens = _count(_get(usage, "output_tokens"))
    if input_tokens is None and output_tokens is None:
        return None
    input_details = _get(usage, "input_token_details") or {}
    output_details = _get(usage, "output_token_details") or {}
    cache_read = _count(_get(input_details, "cache_read"))
    cache_creation = _count(_get(input_details, "cache_creation"))
    if cache_creation is None:
        # Newer langchain-anthropic splits cache writes by TTL.
        parts = [
            _count(_get(input_details, key))
            for key in ("ephemeral_5m_input_tokens", "ephemeral_1h_input_tokens")
        ]
        if any(p is not None for p in parts):
            cache_creation = sum(p or 0 for p in parts)
    reasoning = _count(_get(output_details, "reasoning"))
    if anthropic and input_tokens is not None:
        input_tokens = max(0, input_tokens - (cache_read or 0) - (cache_creation or 0))
    return Usage(input_tokens, output_tokens, cache_read, cache_creation, reasoning)


def _raw_usage(usage: Any) -> Usage | None:
    """A provider's own usage block, as it sent it (no cache arithmetic needed).

    OpenAI (`prompt_tokens` include cached), Anthropic and Bedrock (input excludes cache),
    Google (`prompt_token_count` includes cached content, like OpenAI), Ollama, IBM.
    """
    if not isinstance(usage, Mapping) and not hasattr(usage, "__dict__"):
        return None
    input_tokens = _first_count(
        usage,
        "input_tokens",
        "prompt_tokens",
        "prompt_token_count",
        "inputTokens",
        "inputTokenCount",
        "prompt_eval_count",
        "input_token_count",
    )
    output_tokens = _first_count(
        usage,
        "output_tokens",
        "completion_tokens",
        "candidates_token_count",
        "outputTokens",
        "outputTokenCount",
        "eval_count",
        "generated_token_count",
    )
    if input_tokens is None and output_tokens is None:
        return None
    cache_read = _first_count(
        usage,
        "cache_read_input_tokens",
        "cached_content_token_count",
        "cacheReadInputTokens",
        "cacheReadInputTokenCount",
    )
    if cache_read is None:
        cache_read = _count(_get(_get(usage, "prompt_tokens_details"), "cached_tokens"))
    cache_creation = _first_count(
        usage,
        "cache_creation_input_tokens",
        "cacheWriteInputTokens",
        "cacheCreationInputTokenCount",
        "cacheWriteInputTokenCount",
    )
    reasoning = _first_count(usage, "reasoning_tokens", "thoughts_token_count")
    if reasoning is None:
        reasoning = _count(_get(_get(usage, "completion_tokens_details"), "reasoning_tokens"))
    return Usage(input_tokens, output_tokens, cache_read, cache_creation, reasoning)


def extract_usage(response: Any, provider: str | None, model: str | None) -> Usage:
    """Token counts of one LLM call, from the best source LangChain gives us.

    Order: the message's standard `usage_metadata`, then provider blocks in the message's
    `response_metadata` or `generation_info`, then the call's `llm_output`.
    """
    anthropic = is_anthropic_model(provider, model)
    fallback: Usage | None = None
    for generation in _generations(response):
        message = getattr(generation, "message", None)
        usage = getattr(message, "usage_metadata", None)
        if usage:
            standard = _standard_usage(usage, anthropic)
            if standard is not None:
                return standard
        if fallback is None:
            fallback = _metadata_usage(getattr(message, "response_metadata", None))
        if fallback is None:
            info = getattr(generation, "generation_info", None)
            if isinstance(info, Mapping):
                if info.get("usage_metadata"):
                    fallback = _raw_usage(info["usage_metadata"])
                if fallback is None:
                    fallback = _metadata_usage(info)
    if fallback is not None:
        return fallback
    llm_output = getattr(response, "llm_output", None)
    if isinstance(llm_output, Mapping):
        for key in ("token_usage", "usage", "usage_metadata"):
            block = llm_output.get(key)
            if block:
                parsed = _raw_usage(block)
                if parsed is not None:
                    return parsed
    return Usage()


def _metadata_usage(metadata: Any) -> Usage | None:
    if not isinstance(metadata, Mapping) or not metadata:
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


def stop_reason(response: Any) -> str | None:
    for generation in _generations(response):
        message = getattr(generation, "message", None)
        for source in (
            getattr(message, "response_metadata", None),
            getattr(generation, "generation_info", None),
        ):
            if isinstance(source, Mapping):
                for key in ("finish_reason", "stop_reason", "done_reason", "stopReason"):
                    value = source.get(key)
                    if value is not None:
                        return str(value)
    return None
