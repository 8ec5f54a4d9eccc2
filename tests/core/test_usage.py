"""The one usage normaliser: every provider's shape, unknown counts omitted, never guessed."""

from __future__ import annotations

from types import SimpleNamespace as ns

import pytest
from posthog_llm.instrumentation import (
    Usage,
    generation_properties,
    normalize_usage,
    whole_number,
)


@pytest.mark.parametrize(
    "raw, expected",
    [
        pytest.param(
            {
                "prompt_tokens": 100,
                "completion_tokens": 20,
                "prompt_tokens_details": {"cached_tokens": 60},
                "completion_tokens_details": {"reasoning_tokens": 5},
            },
            Usage(100, 20, 60, None, 5),
            id="openai-chat",
        ),
        pytest.param(
            ns(
                input_tokens=50,
                output_tokens=9,
                input_tokens_details=ns(cached_tokens=0),
                output_tokens_details=ns(reasoning_tokens=3),
            ),
            Usage(50, 9, 0, None, 3),
            id="openai-responses",
        ),
        pytest.param({"prompt_tokens": 8, "total_tokens": 8}, Usage(8), id="openai-embeddings"),
        pytest.param(
            {
                "input_tokens": 12,
                "output_tokens": 30,
                "cache_read_input_tokens": 400,
                "cache_creation_input_tokens": 100,
                "cache_creation": {
                    "ephemeral_5m_input_tokens": 40,
                    "ephemeral_1h_input_tokens": 60,
                },
                "server_tool_use": {"web_search_requests": 2},
            },
            Usage(12, 30, 400, 100, None, 40, 60, 2),
            id="anthropic",
        ),
        pytest.param(
            {
                "promptTokenCount": 70,
                "candidatesTokenCount": 11,
                "cachedContentTokenCount": 64,
                "thoughtsTokenCount": 9,
            },
            Usage(70, 11, 64, None, 9),
            id="gemini-rest",
        ),
        pytest.param(
            ns(
                prompt_token_count=70,
                candidates_token_count=11,
                cached_content_token_count=None,
                thoughts_token_count=None,
            ),
            Usage(70, 11),
            id="gemini-sdk",
        ),
        pytest.param(
            {
                "inputTokens": 5,
                "outputTokens": 6,
                "cacheReadInputTokens": 2,
                "cacheWriteInputTokens": 1,
            },
            Usage(5, 6, 2, 1),
            id="bedrock",
        ),
        pytest.param(
            {"inputTokenCount": [3, 4], "outputTokenCount": [5]}, Usage(7, 5), id="bedrock-stream"
        ),
        pytest.param(
            {
                "input_tokens": 1000,
                "output_tokens": 300,
                "total_tokens": 1300,
                "input_token_details": {
                    "cache_read": 800,
                    "ephemeral_5m_input_tokens": 20,
                    "ephemeral_1h_input_tokens": 0,
                },
                "output_token_details": {"reasoning": 200},
            },
            Usage(1000, 300, 800, 20, 200, 20, 0),
            id="langchain-usage-metadata",
        ),
        pytest.param(
            {"token_usage": {"prompt_tokens": 4, "completion_tokens": 2}},
            Usage(4, 2),
            id="langchain-response-metadata",
        ),
        pytest.param(
            ns(
                _raw_response=ns(
                    usage_metadata={"prompt_token_count": 6, "candidates_token_count": 9}
                )
            ),
            Usage(6, 9),
            id="llama-index-gemini-raw",
        ),
        pytest.param({"prompt_eval_count": 10, "eval_count": 4}, Usage(10, 4), id="ollama"),
        pytest.param({"total_tokens": 10}, Usage(), id="only-a-total"),
        pytest.param(None, Usage(), id="none"),
        pytest.param("12 tokens", Usage(), id="text"),
        pytest.param({"input_tokens": True, "output_tokens": 2.5}, Usage(), id="not-counts"),
    ],
)
def test_normalize_usage(raw, expected):
    assert normalize_usage(raw) == expected


def test_unknown_counts_are_omitted_and_the_cache_write_split_needs_both_halves():
    usage = normalize_usage({"input_tokens": 3, "cache_creation": {"ephemeral_5m_input_tokens": 4}})
    props = generation_properties(
        trace_id="t",
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_creation_input_tokens=usage.cache_creation_input_tokens,
        cache_creation_5m_input_tokens=usage.cache_creation_5m_input_tokens,
        cache_creation_1h_input_tokens=usage.cache_creation_1h_input_tokens,
        web_search_count=usage.web_search_count,
    )

    assert props["$ai_input_tokens"] == 3
    assert props["$ai_cache_creation_input_tokens"] == 4
    for absent in (
        "$ai_output_tokens",
        "$ai_cache_creation_5m_input_tokens",
        "$ai_cache_creation_1h_input_tokens",
        "$ai_web_search_count",
    ):
        assert absent not in props
    assert not Usage() and usage


def test_whole_number_reads_counts_given_as_numbers_or_text():
    assert [whole_number(v) for v in (31, "31", 9.0, " 7 ")] == [31, 31, 9, 7]
    assert [whole_number(v) for v in (None, True, False, "n/a", "", [1])] == [None] * 6


def test_a_negative_count_is_unknown_in_every_usage_shape():
    from posthog_llm._usage import token_count

    usage = normalize_usage({"prompt_tokens": -3, "completion_tokens": 5})
    assert (usage.input_tokens, usage.output_tokens) == (None, 5)
    usage = normalize_usage({"input_tokens": -1.0, "output_tokens": 2.0})
    assert (usage.input_tokens, usage.output_tokens) == (None, 2)
    assert [token_count(v) for v in ("12", -5, 0, "x", True)] == [12, None, 0, None, None]


def test_an_input_total_with_the_cache_in_it_leaves_it_out_for_anthropic_only():
    from posthog_llm._usage import input_tokens_for

    assert input_tokens_for("anthropic", 130, 100, 20) == 10
    assert input_tokens_for("anthropic", 130, 100, None) == 30
    assert input_tokens_for("anthropic", 50, 100, 20) == 0  # never below 0
    assert input_tokens_for("anthropic", None, 100, 20) is None  # unknown stays unknown
    assert input_tokens_for("anthropic", 7, None, None) == 7
    assert input_tokens_for("openai", 130, 100, 20) == 130
    assert input_tokens_for(None, 130, 100, 20) == 130


def test_the_usage_blocks_of_several_requests_add_up_by_modality() -> None:
    # Gemini's automatic function calling: two paid requests for one call, both with audio.
    from posthog_llm.instrumentation import modality_usage

    first = {
        "prompt_token_count": 510,
        "prompt_tokens_details": [
            {"modality": "TEXT", "token_count": 10},
            {"modality": "AUDIO", "token_count": 500},
        ],
    }
    second = {
        "prompt_token_count": 530,
        "prompt_tokens_details": [
            {"modality": "AUDIO", "token_count": 500},
            {"modality": "TEXT", "token_count": 30},
        ],
        "traffic_type": "ON_DEMAND",
    }
    total = modality_usage(first, None, second)
    assert total is not None
    assert total["prompt_token_count"] == 1040
    assert sorted(total["prompt_tokens_details"], key=lambda d: d["modality"]) == [
        {"modality": "AUDIO", "token_count": 1000},
        {"modality": "TEXT", "token_count": 40},
    ]
    assert total["traffic_type"] == "ON_DEMAND"
    text_only = {
        "prompt_token_count": 5,
        "prompt_tokens_details": [{"modality": "TEXT", "token_count": 5}],
    }
    assert modality_usage(text_only, text_only) is None


def test_gemini_tool_use_prompt_tokens_count_as_input():
    # URL context and search results are counted apart from the prompt and billed as input.
    raw = {
        "prompt_token_count": 120,
        "tool_use_prompt_token_count": 8000,
        "candidates_token_count": 30,
        "total_token_count": 8150,
    }
    usage = normalize_usage(raw)
    assert (usage.input_tokens, usage.output_tokens) == (8120, 30)
    assert normalize_usage({"promptTokenCount": 5, "toolUsePromptTokenCount": 7}).input_tokens == 12
    assert normalize_usage({"prompt_token_count": 5}).input_tokens == 5
