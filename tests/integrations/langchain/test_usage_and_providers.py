"""Token usage, model and provider from what each provider's LangChain integration reports."""

from __future__ import annotations

import pytest

pytest.importorskip("langchain_core")

from langchain_core.messages import AIMessage  # noqa: E402
from langchain_core.outputs import ChatGeneration, Generation, LLMResult  # noqa: E402
from posthog_llm.integrations.langchain._usage import (  # noqa: E402
    Usage,
    extract_usage,
    normalise_provider,
    served_model,
    stop_reason,
)

from tests.integrations.langchain.fakes import chain, model, reply  # noqa: E402


def _result(message: AIMessage | None = None, *, info=None, llm_output=None) -> LLMResult:
    if message is not None:
        generation = ChatGeneration(message=message, generation_info=info)
    else:
        generation = Generation(text="ok", generation_info=info)
    return LLMResult(generations=[[generation]], llm_output=llm_output)


def test_openai_usage_metadata_keeps_cached_tokens_in_the_input():
    message = AIMessage(
        "ok",
        usage_metadata={
            "input_tokens": 1000,
            "output_tokens": 300,
            "total_tokens": 1300,
            "input_token_details": {"cache_read": 800},
            "output_token_details": {"reasoning": 200},
        },
    )
    assert extract_usage(_result(message), "openai", "gpt-4o") == Usage(1000, 300, 800, None, 200)


def test_anthropic_usage_metadata_excludes_cache_reads_and_writes_from_the_input():
    message = AIMessage(
        "ok",
        usage_metadata={
            "input_tokens": 1500,  # LangChain's total: 100 fresh + 1000 read + 400 written
            "output_tokens": 50,
            "total_tokens": 1550,
            "input_token_details": {"cache_read": 1000, "cache_creation": 400},
        },
    )
    assert extract_usage(_result(message), "anthropic", "claude-sonnet-4") == Usage(
        100, 50, 1000, 400, None
    )
    # A Claude model served through another provider (Bedrock, Vertex) follows the same rule.
    assert (
        extract_usage(_result(message), "bedrock", "anthropic.claude-3-haiku").input_tokens == 100
    )


def test_anthropic_raw_usage_is_already_exclusive():
    message = AIMessage(
        "ok",
        response_metadata={
            "usage": {
                "input_tokens": 100,
                "output_tokens": 50,
                "cache_read_input_tokens": 1000,
                "cache_creation_input_tokens": 400,
            }
        },
    )
    assert extract_usage(_result(message), "anthropic", "claude-sonnet-4") == Usage(
        100, 50, 1000, 400, None
    )


def test_openai_llm_output_token_usage():
    result = _result(
        AIMessage("ok"),
        llm_output={
            "token_usage": {
                "prompt_tokens": 12,
                "completion_tokens": 7,
                "prompt_tokens_details": {"cached_tokens": 4},
                "completion_tokens_details": {"reasoning_tokens": 3},
            },
            "model_name": "gpt-4o-2024-08-06",
        },
    )
    assert extract_usage(result, "openai", "gpt-4o") == Usage(12, 7, 4, None, 3)
    assert served_model(result) == "gpt-4o-2024-08-06"


def test_bedrock_invocation_metrics_summed_when_streamed():
    message = AIMessage(
        "ok",
        response_metadata={
            "amazon-bedrock-invocationMetrics": {
                "inputTokenCount": [10, 5],
                "outputTokenCount": [3, 4],
            }
        },
    )
    assert extract_usage(_result(message), "bedrock", "amazon.titan") == Usage(15, 7)


def test_google_usage_in_generation_info():
    info = {
        "usage_metadata": {
            "prompt_token_count": 30,
            "candidates_token_count": 9,
            "cached_content_token_count": 20,
            "thoughts_token_count": 5,
        },
        "finish_reason": "STOP",
    }
    result = _result(None, info=info)
    assert extract_usage(result, "google", "gemini-2.0-flash") == Usage(30, 9, 20, None, 5)
    assert stop_reason(result) == "STOP"


def test_ollama_counters_in_response_metadata():
    message = AIMessage(
        "ok",
        response_metadata={
            "model": "llama3.2",
            "prompt_eval_count": 26,
            "eval_count": 12,
            "done_reason": "stop",
        },
    )
    result = _result(message)
    assert extract_usage(result, "ollama", "llama3.2") == Usage(26, 12)
    assert stop_reason(result) == "stop"
    assert served_model(result) == "llama3.2"


def test_unknown_usage_is_left_out():
    assert extract_usage(_result(AIMessage("ok")), "openai", "gpt-4o") == Usage()


@pytest.mark.parametrize(
    "ls_provider, base_url, expected",
    [
        ("openai", None, "openai"),
        ("azure", None, "azure"),
        ("azure_openai", None, "azure"),
        ("anthropic", None, "anthropic"),
        ("google_genai", None, "gemini"),
        ("google_vertexai", None, "vertex"),
        ("google_anthropic_vertex", None, "anthropic"),
        ("amazon_bedrock", None, "bedrock"),
        ("bedrock_converse", None, "bedrock"),
        ("ollama", None, "ollama"),
        ("mistralai", None, "mistral"),
        ("openai", "https://myres.openai.azure.com/", "azure"),
        ("openai", "https://api.deepseek.com/v1", "deepseek"),
        ("openai", "http://localhost:11434/v1", "ollama"),
        ("openai", "http://localhost:8000/v1", "local"),  # as the drop-ins name it
        ("SomeNewProvider", None, "somenewprovider"),
        (None, None, None),
    ],
)
def test_provider_normalisation(ls_provider, base_url, expected):
    assert normalise_provider(ls_provider, base_url) == expected


def test_anthropic_chain_end_to_end(handler, events):
    llm = model(
        reply(
            "Owls.",
            usage_metadata={
                "input_tokens": 1500,
                "output_tokens": 50,
                "total_tokens": 1550,
                "input_token_details": {"cache_read": 1000, "cache_creation": 400},
            },
            response_metadata={"model_name": "claude-sonnet-4-20250514", "stop_reason": "end_turn"},
        ),
        provider="anthropic",
        model_name="claude-sonnet-4",
        base_url="https://api.anthropic.com",
    )
    chain(llm).invoke({"question": "q"}, config={"callbacks": [handler]})

    (generation,) = events("$ai_generation")
    props = generation["properties"]
    assert props["$ai_provider"] == "anthropic"
    assert props["$ai_model"] == "claude-sonnet-4-20250514"
    assert props["$ai_base_url"] == "https://api.anthropic.com"
    assert props["$ai_input_tokens"] == 100
    assert props["$ai_cache_read_input_tokens"] == 1000
    assert props["$ai_cache_creation_input_tokens"] == 400
    assert props["$ai_output_tokens"] == 50
    assert props["$ai_stop_reason"] == "end_turn"
    assert "$ai_reasoning_tokens" not in props


def test_anthropic_cache_writes_split_by_ttl_and_web_searches_are_priced(handler, events):
    # langchain-anthropic's shape: `cache_creation: 0` beside the split it counts writes in,
    # and the server-side web searches only in the provider's own usage block.
    llm = model(
        reply(
            "News.",
            usage_metadata={
                "input_tokens": 307,
                "output_tokens": 16,
                "total_tokens": 323,
                "input_token_details": {
                    "cache_read": 0,
                    "cache_creation": 0,
                    "ephemeral_5m_input_tokens": 0,
                    "ephemeral_1h_input_tokens": 300,
                },
            },
            response_metadata={
                "model_name": "claude-haiku-4-5",
                "usage": {
                    "input_tokens": 7,
                    "output_tokens": 16,
                    "cache_creation_input_tokens": 300,
                    "server_tool_use": {"web_search_requests": 1, "web_fetch_requests": None},
                },
            },
        ),
        provider="anthropic",
        model_name="claude-haiku-4-5",
    )
    chain(llm).invoke({"question": "q"}, config={"callbacks": [handler]})
    (generation,) = events("$ai_generation")
    props = generation["properties"]
    assert props["$ai_input_tokens"] == 7
    assert props["$ai_cache_creation_input_tokens"] == 300
    assert props["$ai_cache_creation_1h_input_tokens"] == 300
    assert props["$ai_web_search_count"] == 1


def test_gemini_thinking_is_left_out_of_the_output_posthog_adds_it_to(handler, events):
    # langchain-google-genai counts the thinking inside output_tokens; PostHog adds reasoning
    # to a Gemini call's output when it prices it, as the Gemini drop-in reports it.
    usage = {
        "input_tokens": 3,
        "output_tokens": 12,
        "total_tokens": 15,
        "input_token_details": {"cache_read": 0},
        "output_token_details": {"reasoning": 7},
    }
    llm = model(
        reply("Hi.", usage_metadata=usage, response_metadata={"model_name": "gemini-2.5-flash"}),
        provider="google_genai",
        model_name="gemini-2.5-flash",
    )
    chain(llm).invoke({"question": "q"}, config={"callbacks": [handler]})
    (generation,) = events("$ai_generation")
    props = generation["properties"]
    assert props["$ai_provider"] == "gemini"
    assert (props["$ai_output_tokens"], props["$ai_reasoning_tokens"]) == (5, 7)
    # OpenAI's reasoning is part of its output, as PostHog reads it: unchanged.
    message = AIMessage("ok", usage_metadata=usage)
    assert extract_usage(_result(message), "openai", "o3").output_tokens == 12


def test_the_served_service_tier_is_sent_for_pricing(handler, events):
    llm = model(reply("Owls.", response_metadata={"service_tier": "flex"}))
    chain(llm).invoke({"question": "q"}, config={"callbacks": [handler]})
    (generation,) = events("$ai_generation")
    assert generation["properties"]["$ai_service_tier"] == "flex"


def test_streamed_usage_arrives_in_the_last_chunk(handler, events):
    llm = model(
        reply(
            "Owls hunt.",
            usage_metadata={
                "input_tokens": 40,
                "output_tokens": 3,
                "total_tokens": 43,
                "input_token_details": {"cache_read": 32},
                "output_token_details": {"reasoning": 1},
            },
            response_metadata={"model_name": "gpt-4o-mini-2024-07-18", "finish_reason": "stop"},
        )
    )
    assert "".join(chain(llm).stream({"question": "q"}, config={"callbacks": [handler]}))

    props = events("$ai_generation")[0]["properties"]
    assert (props["$ai_input_tokens"], props["$ai_output_tokens"]) == (40, 3)
    assert props["$ai_cache_read_input_tokens"] == 32
    assert props["$ai_reasoning_tokens"] == 1
    assert props["$ai_model"] == "gpt-4o-mini-2024-07-18"
    assert props["$ai_stop_reason"] == "stop"
    assert props["$ai_stream"] is True


def _response_metadata(status: str, reason: str | None = None) -> dict[str, object]:
    """langchain-openai's `response_metadata` for a Responses API call: no finish reason."""
    metadata: dict[str, object] = {
        "id": "resp_1",
        "object": "response",
        "status": status,
        "model_name": "gpt-4o-mini-2024-08-06",
    }
    if reason is not None:
        metadata["incomplete_details"] = {"reason": reason}
    return metadata


def test_responses_api_calls_say_why_they_stopped_as_the_openai_drop_in_does(handler, events):
    # `ChatOpenAI(use_responses_api=True)`: why it stopped is in `status` and
    # `incomplete_details`; the drop-in reports the reason an answer was cut, "stop", or
    # "tool_calls" when the answer calls a function.
    cut = reply("Owls", response_metadata=_response_metadata("incomplete", "max_output_tokens"))
    done = reply("Owls eat mice.", response_metadata=_response_metadata("completed"))
    calls = reply(
        "",
        tool_calls=[{"name": "add", "args": {"a": 1, "b": 2}, "id": "call_1"}],
        response_metadata=_response_metadata("completed"),
    )
    # Another provider's `status` (not a Responses API answer) is not a stop reason.
    other = reply("Owls.", response_metadata={"status": "completed", "model_name": "m-1"})
    config = {"callbacks": [handler]}
    for answer in (cut, done, calls, other):
        model(answer).invoke("q", config=config)
    assert "".join(chain(model(cut)).stream({"question": "q"}, config=config))

    generations = [e["properties"] for e in events("$ai_generation")]
    assert [p.get("$ai_stop_reason") for p in generations] == [
        "max_output_tokens",
        "stop",
        "tool_calls",
        None,
        "max_output_tokens",
    ]
    assert generations[-1]["$ai_stream"] is True
