"""The one token-usage normaliser: any provider's usage block -> `Usage`.

Counts keep the provider's own meaning, which is what PostHog's cost model expects per
provider: OpenAI's and Gemini's input counts include cached tokens, Anthropic's and Bedrock's
exclude cache reads and writes. A count the source does not report is None (omitted from the
event), never guessed and never 0; a reported 0 stays 0.

Shapes read:

- OpenAI chat (`prompt_tokens`, `completion_tokens`, `prompt_tokens_details.cached_tokens`,
  `completion_tokens_details.reasoning_tokens`), Responses (`input_tokens`, `output_tokens`,
  `input_tokens_details`, `output_tokens_details`) and embeddings (`prompt_tokens`);
- Anthropic (`input_tokens`, `output_tokens`, `cache_read_input_tokens`,
  `cache_creation_input_tokens`, `cache_creation.ephemeral_5m_input_tokens` / `_1h_`,
  `server_tool_use.web_search_requests`);
- Gemini `usageMetadata` in camelCase (REST) or snake_case (google-genai types);
- Bedrock camelCase (`inputTokens`, `cacheReadInputTokens`, invocation metrics' `...Count`);
- LangChain `usage_metadata` (`input_token_details.cache_read` ...) and `response_metadata`;
- LlamaIndex raw responses (`raw.usage`, `raw.usage_metadata`, Ollama's top-level counters).

>>> normalize_usage({"prompt_tokens": 10, "completion_tokens": 2}).input_tokens
10
>>> normalize_usage({"promptTokenCount": 7, "thoughtsTokenCount": 3}).reasoning_tokens
3
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from ._openai_format import field_of, plain_item

__all__ = [
    "Usage",
    "normalize_usage",
    "EMPTY_USAGE",
    "whole_number",
    "token_count",
    "input_tokens_for",
    "output_tokens_for",
    "thinking_counted_apart",
    "is_anthropic_model",
    "modality_usage",
    "total_usage",
]


class Usage(NamedTuple):
    """Token counts of one call; None means unknown."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    reasoning_tokens: int | None = None
    cache_creation_5m_input_tokens: int | None = None
    cache_creation_1h_input_tokens: int | None = None
    web_search_count: int | None = None

    def __bool__(self) -> bool:
        return any(value is not None for value in self)


EMPTY_USAGE = Usage()


def total_usage(usages: list[Usage]) -> Usage:
    """The counts of several requests made for one call, added up (a count none of them knows
    stays unknown).

    >>> total_usage([Usage(input_tokens=4, output_tokens=26), Usage(input_tokens=4)])
    Usage(input_tokens=8, output_tokens=26, cache_read_input_tokens=None, cache_creation_input_tokens=None, reasoning_tokens=None, cache_creation_5m_input_tokens=None, cache_creation_1h_input_tokens=None, web_search_count=None)
    """
    fields = []
    for counts in zip(*usages):
        known = [count for count in counts if count is not None]
        fields.append(sum(known) if known else None)
    return Usage(*fields) if usages else EMPTY_USAGE


_INPUT = (
    "input_tokens",
    "prompt_tokens",
    "prompt_token_count",
    "promptTokenCount",
    "inputTokens",
    "inputTokenCount",
    "prompt_eval_count",
    "input_token_count",
)
_OUTPUT = (
    "output_tokens",
    "completion_tokens",
    "candidates_token_count",
    "candidatesTokenCount",
    "outputTokens",
    "outputTokenCount",
    "eval_count",
    "generated_token_count",
)
_CACHE_READ = (
    "cache_read_input_tokens",
    "cached_content_token_count",
    "cachedContentTokenCount",
    "cacheReadInputTokens",
    "cacheReadInputTokenCount",
)
_CACHE_WRITE = (
    "cache_creation_input_tokens",
    "cacheWriteInputTokens",
    "cacheCreationInputTokenCount",
    "cacheWriteInputTokenCount",
)
_REASONING = ("reasoning_tokens", "thoughts_token_count", "thoughtsTokenCount")
_TOOL_USE_INPUT = ("tool_use_prompt_token_count", "toolUsePromptTokenCount")
# (details block, key inside it) read when the flat keys above say nothing.
_CACHE_READ_DETAILS = (
    ("prompt_tokens_details", "cached_tokens"),
    ("input_tokens_details", "cached_tokens"),
    ("input_token_details", "cache_read"),  # LangChain's UsageMetadata
)
_REASONING_DETAILS = (
    ("completion_tokens_details", "reasoning_tokens"),
    ("output_tokens_details", "reasoning_tokens"),
    ("output_token_details", "reasoning"),  # LangChain's UsageMetadata
    ("output_tokens_details", "thinking_tokens"),  # Anthropic's extended thinking
)
_TTL_5M = "ephemeral_5m_input_tokens"
_TTL_1H = "ephemeral_1h_input_tokens"
# Where usage sits inside a response or metadata object, when that is what we were given.
_CONTAINERS = (
    "usage",
    "usage_metadata",
    "usageMetadata",
    "token_usage",
    "amazon-bedrock-invocationMetrics",
    "_raw_response",
)


def _view(source: Any) -> Any:
    """A pydantic model's fields as a dict: many lookups of absent keys on the model itself would
    each raise and catch an AttributeError inside pydantic, which dominated the cost."""
    if source is None or type(source) is dict or isinstance(source, Mapping):
        return source
    if hasattr(type(source), "__pydantic_fields__"):
        fields = getattr(source, "__dict__", None)
        if type(fields) is dict:
            extra = getattr(source, "__pydantic_extra__", None)
            return {**fields, **extra} if extra else fields
    return source


def whole_number(value: Any) -> int | None:
    """An integer from a count, status code or port that may come as a number or as text.

    None for a missing value, a bool, or anything `int()` refuses.

    >>> whole_number("31"), whole_number(9.0), whole_number(True), whole_number("n/a")
    (31, 9, None, None)
    """
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def token_count(value: Any) -> int | None:
    """A token count from a number or text: a negative one is a bug upstream, not a count, so
    unknown (None), like a missing one.

    >>> token_count("12"), token_count(-5), token_count(0)
    (12, None, 0)
    """
    count = whole_number(value)
    return count if count is not None and count >= 0 else None


def _count(value: Any) -> int | None:
    cls = type(value)
    if cls is int:
        return value if value >= 0 else None
    if value is None or cls is bool:
        return None
    if isinstance(value, (list, tuple)):  # Bedrock streams counts as per-chunk lists
        total = 0
        for item in value:
            counted = _count(item)
            if counted is None:
                return None
            total += counted
        return total
    if isinstance(value, int):
        return int(value) if value >= 0 else None
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    return None


def _first(source: Any, keys: tuple[str, ...]) -> int | None:
    for key in keys:
        value = _count(field_of(source, key))
        if value is not None:
            return value
    return None


def _detail(source: Any, paths: tuple[tuple[str, str], ...]) -> int | None:
    for block, key in paths:
        value = _count(field_of(_view(field_of(source, block)), key))
        if value is not None:
            return value
    return None


def _read(source: Any) -> Usage:
    source = _view(source)
    input_tokens = _first(source, _INPUT)
    if input_tokens is not None:
        # Gemini counts what its tools fetched (URL context, search results) apart from the
        # prompt and bills it as input, as PostHog prices it.
        tool_use = _first(source, _TOOL_USE_INPUT)
        if tool_use:
            input_tokens += tool_use
    output_tokens = _first(source, _OUTPUT)
    cache_read = _first(source, _CACHE_READ)
    if cache_read is None:
        cache_read = _detail(source, _CACHE_READ_DETAILS)
    cache_write = _first(source, _CACHE_WRITE)
    # Anthropic's `cache_creation` object, or LangChain's `input_token_details`.
    split_source = _view(field_of(source, "cache_creation"))
    if split_source is None or isinstance(split_source, (int, float)):
        split_source = _view(field_of(source, "input_token_details"))
    write_5m = _count(field_of(split_source, _TTL_5M))
    write_1h = _count(field_of(split_source, _TTL_1H))
    if cache_write is None:
        cache_write = _count(
            field_of(_view(field_of(source, "input_token_details")), "cache_creation")
        )
    if write_5m is not None or write_1h is not None:
        # LangChain's Anthropic models say `cache_creation: 0` beside the split they count the
        # writes in: the split is the count.
        split = (write_5m or 0) + (write_1h or 0)
        if cache_write is None or cache_write < split:
            cache_write = split
    reasoning = _first(source, _REASONING)
    if reasoning is None:
        reasoning = _detail(source, _REASONING_DETAILS)
    web_search = _count(field_of(_view(field_of(source, "server_tool_use")), "web_search_requests"))
    return Usage(
        input_tokens,
        output_tokens,
        cache_read,
        cache_write,
        reasoning,
        write_5m,
        write_1h,
        web_search,
    )


def normalize_usage(raw: Any) -> Usage:
    """Token counts from a usage block, or from a response/metadata object that holds one.

    Never raises for odd input: what cannot be read is simply unknown.
    """
    if raw is None or isinstance(raw, (str, bytes, int, float, bool)):
        return EMPTY_USAGE
    usage = _read(raw)
    if usage.input_tokens is not None or usage.output_tokens is not None:
        return usage
    raw = _view(raw)
    for key in _CONTAINERS:
        inner = field_of(raw, key)
        if inner is None or inner is raw or isinstance(inner, (str, bytes, int, float, bool)):
            continue
        found = _read(inner)
        if found.input_tokens is not None or found.output_tokens is not None:
            return found
        if key == "_raw_response":  # LlamaIndex's Gemini: raw -> _raw_response.usage_metadata
            found = _read(field_of(_view(inner), "usage_metadata"))
            if found.input_tokens is not None or found.output_tokens is not None:
                return found
    return usage


# Providers whose input count, as PostHog's cost model reads it, leaves cache reads and writes
# out (they have fields of their own); the others' (OpenAI, Gemini) include cached tokens.
_INPUT_EXCLUDES_CACHE = frozenset({"anthropic"})


def is_anthropic_model(provider: str | None, model: str | None) -> bool:
    """Whether PostHog prices the call Anthropic's way: the provider is Anthropic, or the model
    is Claude on any host (Bedrock, Vertex, a gateway), as PostHog's own cost model decides.

    >>> is_anthropic_model("bedrock", "anthropic.claude-3-5-sonnet-20240620-v1:0")
    True
    >>> is_anthropic_model("openai", "gpt-4o")
    False
    """
    if provider in _INPUT_EXCLUDES_CACHE:
        return True
    lowered = model.lower() if isinstance(model, str) else ""
    return "claude" in lowered or "anthropic" in lowered


def input_tokens_for(
    provider: str | None,
    total_input: int | None,
    cache_read: int | None,
    cache_creation: int | None,
    model: str | None = None,
) -> int | None:
    """The input count PostHog reads for `provider` and `model`, from a total that includes
    cache reads and writes (the OpenTelemetry GenAI conventions' and OpenInference's,
    LangChain's `usage_metadata`): for Anthropic, or a Claude model on any host, the total less
    the cache, never below 0; the total itself for the others, or when it is unknown.

    >>> input_tokens_for("anthropic", 130, 100, 20), input_tokens_for("openai", 130, 100, None)
    (10, 130)
    >>> input_tokens_for("vertex", 130, 100, 20, model="claude-sonnet-4-5")
    10
    """
    if total_input is None or not is_anthropic_model(provider, model):
        return total_input
    return max(0, total_input - (cache_read or 0) - (cache_creation or 0))


# Providers whose output count leaves the model's thinking out (Gemini's candidates count):
# PostHog adds the reasoning tokens to such a call's output when it prices it.
_THINKING_APART = frozenset({"gemini", "vertex", "google"})


def thinking_counted_apart(provider: str | None, model: str | None) -> bool:
    """Whether PostHog reads a call's `$ai_output_tokens` without its reasoning tokens, and
    adds those when pricing it: Gemini on any host (Claude on Vertex counts its thinking inside
    the output, as Anthropic does).

    >>> thinking_counted_apart("gemini", "gemini-2.5-flash")
    True
    >>> thinking_counted_apart(None, "models/gemini-2.5-pro")
    True
    >>> thinking_counted_apart("vertex", "claude-sonnet-4-5")
    False
    """
    if is_anthropic_model(provider, model):
        return False
    if provider is not None and provider.lower() in _THINKING_APART:
        return True
    return isinstance(model, str) and model.lower().rpartition("/")[2].startswith("gemini")


def output_tokens_for(
    provider: str | None, total_output: int | None, reasoning: int | None, model: str | None
) -> int | None:
    """The output count PostHog reads for `provider` and `model`, from a total that includes
    the reasoning tokens (LangChain's `usage_metadata`): for Gemini the total less the
    reasoning, never below 0 (PostHog adds it back when pricing); the total for the others.

    >>> output_tokens_for("gemini", 12, 7, "gemini-2.5-flash")
    5
    >>> output_tokens_for("openai", 12, 7, "o3")
    12
    """
    if total_output is None or not reasoning or not thinking_counted_apart(provider, model):
        return total_output
    return max(0, total_output - reasoning)


# Where providers count audio and image tokens: OpenAI's token details (chat and Responses),
# Gemini's per-modality lists.
_DETAIL_KEYS = (
    "prompt_tokens_details",
    "completion_tokens_details",
    "input_tokens_details",
    "output_tokens_details",
)
_MODALITY_LISTS = (
    "prompt_tokens_details",
    "candidates_tokens_details",
    "cache_tokens_details",
    "tool_use_prompt_tokens_details",
)


def modality_usage(*blocks: Any) -> dict[str, Any] | None:
    """A provider's usage block as plain data when it counts audio or image tokens, else None.

    PostHog prices those tokens at their own rates from the block (`$ai_usage`, as
    posthog-python sends it); text-only calls leave it out. The blocks of several requests of
    one call (Gemini's automatic function calling) are added up, as its token counts are.

    >>> modality_usage({"prompt_tokens": 520, "prompt_tokens_details": {"audio_tokens": 500}})
    {'prompt_tokens': 520, 'prompt_tokens_details': {'audio_tokens': 500}}
    >>> modality_usage({"prompt_tokens": 5, "prompt_tokens_details": {"audio_tokens": 0}}) is None
    True
    """
    plain_blocks = []
    for raw in blocks:
        if raw is None:
            continue
        try:
            plain = plain_item(raw)
        except Exception:  # a usage object the SDK cannot dump: no breakdown, the counts stay
            continue
        if isinstance(plain, dict):
            plain_blocks.append(plain)
    if not any(_counts_modalities(plain) for plain in plain_blocks):
        return None
    total = plain_blocks[0]
    for plain in plain_blocks[1:]:
        total = _added(total, plain)
    return total


def _counts_modalities(plain: dict[str, Any]) -> bool:
    for key in _DETAIL_KEYS:
        details = plain.get(key)
        if isinstance(details, dict) and any(
            details.get(name) for name in ("audio_tokens", "image_tokens")
        ):
            return True
    for key in _MODALITY_LISTS:
        for entry in plain.get(key) or ():
            modality = entry.get("modality") if isinstance(entry, dict) else None
            name = getattr(modality, "name", modality)
            if name not in (None, "TEXT", "MODALITY_UNSPECIFIED") and entry.get("token_count"):
                return True
    return False


def _added(one: Any, other: Any) -> Any:
    """Two usage blocks' counts added up: numbers summed, dicts key by key, per-modality lists
    modality by modality; anything else is the later block's."""
    if type(one) is int and type(other) is int:
        return one + other
    if isinstance(one, dict) and isinstance(other, dict):
        return {
            key: _added(one[key], other[key])
            if key in one and key in other
            else other.get(key, one.get(key))
            for key in {**one, **other}
        }
    if (
        isinstance(one, list)
        and isinstance(other, list)
        and all(isinstance(entry, dict) and "modality" in entry for entry in one + other)
    ):
        by_modality: dict[Any, dict[str, Any]] = {}
        for entry in one + other:
            key = str(entry.get("modality"))
            by_modality[key] = _added(by_modality[key], entry) if key in by_modality else entry
        return list(by_modality.values())
    return other
