from __future__ import annotations

import pytest
from posthog_llm import (
    embedding_properties,
    generation_properties,
    span_properties,
    trace_properties,
)
from posthog_llm._errors import error_text
from posthog_llm._events import (
    clean_base_url,
    http_status_of,
    provider_from_base_url,
    provider_name,
    strip_content,
)


def test_generation_has_schema_names_and_omits_unknown_usage():
    props = generation_properties(
        trace_id="t1",
        span_id="s1",
        parent_id="t1",
        model="gpt-4o-2024-08-06",
        provider="openai",
        base_url="https://user:secret@api.openai.com/v1/?key=abc",
        model_parameters={"temperature": 0.2, "api_key": "sk-nope", "max_tokens": 10},
        input=[{"role": "user", "content": "hi"}],
        output_choices=[{"role": "assistant", "content": "hello"}],
        input_tokens=3,
        output_tokens=None,
        latency=0.25,
        stream=True,
        time_to_first_token=0.05,
        stop_reason="stop",
    )
    assert props["$ai_trace_id"] == "t1"
    assert props["$ai_span_id"] == "s1"
    assert props["$ai_parent_id"] == "t1"
    assert props["$ai_model"] == "gpt-4o-2024-08-06"
    assert props["$ai_base_url"] == "https://api.openai.com/v1"
    assert props["$ai_model_parameters"] == {"temperature": 0.2, "max_tokens": 10}
    assert props["$ai_input_tokens"] == 3
    assert "$ai_output_tokens" not in props  # unknown is omitted, never 0
    assert props["$ai_latency"] == 0.25
    assert props["$ai_stream"] is True and props["$ai_time_to_first_token"] == 0.05
    assert props["$ai_stop_reason"] == "stop"
    assert props["$ai_lib"] == "posthog-llm"
    assert "$ai_is_error" not in props


def test_privacy_mode_drops_content_keeps_usage_model_latency():
    props = generation_properties(
        trace_id="t",
        model="m",
        input=[{"role": "user", "content": "secret"}],
        output_choices=[{"role": "assistant", "content": "secret"}],
        input_tokens=1,
        output_tokens=2,
        latency=1.0,
        privacy_mode=True,
    )
    assert "$ai_input" not in props and "$ai_output_choices" not in props
    assert (props["$ai_input_tokens"], props["$ai_output_tokens"], props["$ai_model"]) == (
        1,
        2,
        "m",
    )
    span = span_properties(
        trace_id="t", span_id="s", input_state={"q": "x"}, output_state="y", privacy_mode=True
    )
    assert "$ai_input_state" not in span and "$ai_output_state" not in span
    assert strip_content({"$ai_input": 1, "$ai_model": "m"}) == {"$ai_model": "m"}


def test_error_fields_from_exception():
    class RateLimited(Exception):
        status_code = 429

    props = generation_properties(trace_id="t", error=RateLimited("slow down"))
    assert props["$ai_is_error"] is True
    assert props["$ai_error"] == "RateLimited: slow down"
    assert props["$ai_http_status"] == 429
    assert error_text(ValueError()) == "ValueError"
    assert http_status_of(ValueError("x")) is None


def test_span_parent_defaults_to_trace_and_trace_has_no_parent():
    span = span_properties(trace_id="t", span_id="s", span_name="retrieve", latency=0.1)
    assert span["$ai_parent_id"] == "t" and span["$ai_span_name"] == "retrieve"
    trace = trace_properties(
        trace_id="t", span_name="query", input_state="q", output_state="a", latency=2
    )
    assert (
        "$ai_parent_id" not in trace
        and trace["$ai_input_state"] == "q"
        and trace["$ai_latency"] == 2.0
    )
    emb = embedding_properties(
        trace_id="t",
        model="text-embedding-3-small",
        input=["a", "b"],
        input_count=2,
        input_tokens=4,
    )
    assert emb["$ai_input"] == ["a", "b"] and emb["$ai_input_tokens"] == 4


@pytest.mark.parametrize(
    "url,provider",
    [
        ("https://api.openai.com/v1", "openai"),
        ("https://my-resource.openai.azure.com/openai", "azure"),
        ("https://api.groq.com/openai/v1", "groq"),
        ("https://api.deepseek.com", "deepseek"),
        ("https://api.together.xyz/v1", "together"),
        ("https://openrouter.ai/api/v1", "openrouter"),
        ("http://localhost:11434/v1", "ollama"),
        # A model served on this machine or network (vLLM, LM Studio, a stand-in).
        ("http://127.0.0.1:8000/v1", "local"),
        ("http://10.0.0.7:4000/v1", "local"),
        ("http://gpu-box.local:8000/v1", "local"),
        ("http://127.0.0.2:8000/v1", "local"),
        ("http://host.docker.internal:11435/v1", "local"),
        ("http://[fd00::5]:8000/v1", "local"),
        ("http://localhost.localdomain:8000/v1", "local"),
        ("http://172.32.0.1:8000/v1", "openai"),  # public, just past the private range
        ("https://generativelanguage.googleapis.com/v1beta", "gemini"),
        ("https://us-central1-aiplatform.googleapis.com/v1", "vertex"),
        (None, "openai"),
    ],
)
def test_provider_from_base_url(url, provider):
    assert provider_from_base_url(url) == provider


@pytest.mark.parametrize(
    "spellings,name",
    [
        # LangChain's ls_provider, LlamaIndex's package, OpenTelemetry's gen_ai.provider.name
        (["google_genai", "gemini", "google", "gcp.gemini", "gcp.gen_ai"], "gemini"),
        (["google_vertexai", "vertex", "vertex_ai", "gcp.vertex_ai"], "vertex"),
        (["azure_openai", "azure_inference", "az.ai.openai", "azure.ai.inference"], "azure"),
        (["amazon_bedrock", "bedrock_converse", "aws.bedrock"], "bedrock"),
        (["mistralai", "mistral_ai", "Mistral"], "mistral"),
        (["google_anthropic_vertex", "anthropic", " Anthropic "], "anthropic"),
    ],
)
def test_every_spelling_of_a_provider_is_one_posthog_name(spellings, name):
    assert {provider_name(s) for s in spellings} == {name}


def test_an_unknown_provider_is_kept_and_no_provider_is_none():
    assert provider_name("SomeNewLab") == "somenewlab"
    assert provider_name("") is None and provider_name("  ") is None and provider_name(3) is None


def test_clean_base_url_removes_credentials_and_query():
    assert clean_base_url("http://u:p@[::1]:8080/v1/?api-key=x#f") == "http://[::1]:8080/v1"
    assert clean_base_url(None) is None
