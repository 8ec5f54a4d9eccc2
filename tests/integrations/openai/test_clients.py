"""Async and Azure clients, wrap(), errors, posthog-python as destination, secrets, import guard."""

from __future__ import annotations

import importlib
import json
import logging
import sys

import pytest

openai = pytest.importorskip("openai")

import posthog_llm  # noqa: E402
from posthog_llm.integrations.openai import (  # noqa: E402
    AsyncAzureOpenAI,
    AsyncOpenAI,
    AzureOpenAI,
    OpenAI,
    wrap,
)
from posthog_llm.local.openai_standin import OpenAIStandIn  # noqa: E402

from tests.support.echo_gateway import EchoGateway  # noqa: E402
from tests.support.events import only  # noqa: E402

from .conftest import API_KEY  # noqa: E402

HELLO = [{"role": "user", "content": "hello from a test"}]


# -- async -------------------------------------------------------------------------------------


async def test_async_chat_stream_responses_embeddings_parse(make_client, events):
    import pydantic

    class Answer(pydantic.BaseModel):
        text: str

    llm = make_client(AsyncOpenAI)
    reply = await llm.chat.completions.create(
        model="gpt-4o-mini", messages=HELLO, posthog_distinct_id="a"
    )
    stream = await llm.chat.completions.create(model="gpt-4o-mini", messages=HELLO, stream=True)
    assert type(stream) is openai.AsyncStream
    chunks = [chunk async for chunk in stream]
    response = await llm.responses.create(model="gpt-4o-mini", input="async responses")
    parsed = await llm.chat.completions.parse(
        model="gpt-4o-mini", messages=HELLO, response_format=Answer
    )
    await llm.embeddings.create(model="text-embedding-3-small", input="async")
    await llm.close()

    assert reply.choices[0].message.content == "Echo: hello from a test"
    assert all(chunk.choices for chunk in chunks)
    assert parsed.choices[0].message.parsed == Answer(text="hello from a test")
    chat, streamed, resp, parse = (e["properties"] for e in events("$ai_generation"))
    assert chat["$ai_output_choices"][0]["content"] == "Echo: hello from a test"
    assert streamed["$ai_stream"] is True and streamed["$ai_output_tokens"] == 6
    assert streamed["$ai_time_to_first_token"] <= streamed["$ai_latency"]
    assert resp["$ai_output_choices"][0]["content"] == response.output_text
    assert parse["$ai_model_parameters"]["response_format"]["json_schema"]["name"] == "Answer"
    assert len(events("$ai_embedding")) == 1


async def test_async_stream_closed_early_and_failing(make_client, events):
    llm = make_client(AsyncOpenAI)
    stream = await llm.chat.completions.create(model="gpt-4o-mini", messages=HELLO, stream=True)
    async for _ in stream:
        break
    await stream.close()
    async with await llm.responses.create(
        model="gpt-4o-mini", input="x", stream=True
    ) as events_stream:
        async for _ in events_stream:
            pass
    with pytest.raises(openai.InternalServerError):
        await llm.chat.completions.create(model="error-500", messages=HELLO, stream=True)
    failing = await llm.chat.completions.create(
        model="error-midstream", messages=HELLO, stream=True
    )
    with pytest.raises(openai.APIError):
        async for _ in failing:
            pass
    await llm.close()

    closed, responses, refused, broken = (e["properties"] for e in events("$ai_generation"))
    assert "$ai_stop_reason" not in closed and "$ai_is_error" not in closed
    assert responses["$ai_stop_reason"] == "stop"
    assert refused["$ai_http_status"] == 500 and refused["$ai_is_error"] is True
    assert broken["$ai_is_error"] is True and broken["$ai_http_status"] == 200


async def test_async_stream_helper(make_client, events):
    llm = make_client(AsyncOpenAI)
    async with llm.chat.completions.stream(model="gpt-4o-mini", messages=HELLO) as stream:
        async for _ in stream:
            pass
    assert only(events("$ai_generation"))["$ai_output_tokens"] == 6
    async with llm.chat.completions.stream(model="gpt-4o-mini", messages=HELLO) as stream:
        async for _ in stream:
            break
    await llm.close()
    left_early = events("$ai_generation")[1]["properties"]  # sent on exit, no GC needed
    assert "$ai_stop_reason" not in left_early


# -- Azure --------------------------------------------------------------------------------------


def test_azure_client_reports_provider_azure(make_client, events, standin):
    llm = make_client(AzureOpenAI, azure_deployment="prod-gpt4o")
    reply = llm.chat.completions.create(model="ignored", messages=HELLO)
    llm.embeddings.create(model="emb", input="x")

    chat_request = standin.requests[0]
    assert chat_request["path"] == "/openai/deployments/prod-gpt4o/chat/completions"
    assert chat_request["query"] == {"api-version": ["2024-10-21"]}
    assert chat_request["headers"]["api-key"] == API_KEY
    props = only(events("$ai_generation"))
    assert props["$ai_provider"] == "azure"
    assert props["$ai_model"] == reply.model == "prod-gpt4o-2024-08-06"
    assert props["$ai_base_url"] == standin.azure_endpoint + "/openai/deployments/prod-gpt4o"
    assert only(events("$ai_embedding"))["$ai_provider"] == "azure"


async def test_async_azure_client(make_client, events, standin):
    llm = make_client(AsyncAzureOpenAI)
    await llm.chat.completions.create(model="my-deployment", messages=HELLO)
    await llm.responses.create(model="my-deployment", input="azure responses")
    await llm.close()
    chat, resp = (e["properties"] for e in events("$ai_generation"))
    assert chat["$ai_provider"] == resp["$ai_provider"] == "azure"
    assert chat["$ai_base_url"] == standin.azure_endpoint + "/openai"
    assert standin.requests[0]["path"] == "/openai/deployments/my-deployment/chat/completions"


def test_provider_comes_from_the_base_url_or_the_override(client, sink, standin):
    llm = OpenAI(
        base_url="https://api.groq.com/openai/v1", api_key="gsk-123456789", posthog_client=client
    )
    assert llm.base_url.host == "api.groq.com"
    local = OpenAI(base_url=standin.base_url, api_key=API_KEY, max_retries=0, posthog_client=client)
    local.chat.completions.create(model="m", messages=HELLO, posthog_provider_override="deepseek")
    client.flush(5)
    assert only(sink.named("$ai_generation"))["$ai_provider"] == "deepseek"
    # Not a name: left out (as other posthog_* arguments of the wrong type are), not sent.
    local.chat.completions.create(model="m", messages=HELLO, posthog_provider_override=5)
    client.flush(5)
    assert sink.named("$ai_generation")[-1]["properties"]["$ai_provider"] == "local"  # inferred


# -- wrap() and copies --------------------------------------------------------------------------


def test_wrap_an_existing_client_in_place(standin, client, events):
    plain = openai.OpenAI(base_url=standin.base_url, api_key=API_KEY, max_retries=0)
    untouched = openai.OpenAI(base_url=standin.base_url, api_key=API_KEY, max_retries=0)
    wrapped = wrap(plain, posthog_client=client)
    assert wrapped is plain and type(wrapped) is openai.OpenAI

    wrapped.chat.completions.create(model="gpt-4o-mini", messages=HELLO, posthog_distinct_id="w")
    untouched.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert "posthog_distinct_id" not in standin.requests[0].body
    found = events("$ai_generation")
    assert [e["distinct_id"] for e in found] == ["w"]


async def test_wrap_async_client(standin, client, events):
    plain = openai.AsyncOpenAI(base_url=standin.base_url, api_key=API_KEY, max_retries=0)
    wrap(existing_client=plain, posthog_client=client)  # the names the docs give
    await plain.embeddings.create(model="text-embedding-3-small", input="x")
    await plain.close()
    assert len(events("$ai_embedding")) == 1


def test_wrap_rejects_other_objects():
    with pytest.raises(TypeError, match="openai.OpenAI"):
        wrap(object())


def test_with_options_copies_stay_tracked(make_client, events):
    llm = make_client()
    copy = llm.with_options(timeout=20)
    assert isinstance(copy, OpenAI) and copy is not llm
    copy.chat.completions.create(model="gpt-4o-mini", messages=HELLO, posthog_distinct_id="copy")
    llm.copy(max_retries=0).embeddings.create(model="text-embedding-3-small", input="x")
    assert [e["distinct_id"] for e in events("$ai_generation")] == ["copy"]
    assert len(events("$ai_embedding")) == 1


def test_posthog_client_argument_is_checked():
    with pytest.raises(TypeError, match="capture"):
        OpenAI(api_key="sk-123456789", posthog_client=object())


# -- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "error", "status"),
    [("error-429", "RateLimitError", 429), ("error-500", "InternalServerError", 500)],
)
def test_sdk_errors_are_reraised_unchanged_and_reported(make_client, events, model, error, status):
    llm = make_client()
    with pytest.raises(openai.APIStatusError) as raised:
        llm.chat.completions.create(model=model, messages=HELLO, posthog_distinct_id="u")
    assert type(raised.value).__name__ == error and raised.value.status_code == status

    props = only(events("$ai_generation"))
    assert props["$ai_is_error"] is True
    assert props["$ai_error"].startswith(f"{error}: Error code: {status}")
    assert props["$ai_http_status"] == status
    assert props["$ai_model"] == model  # no response: the requested model
    assert props["$ai_input"] == HELLO
    assert "$ai_output_choices" not in props


def test_connection_error_without_status(client, sink):
    with OpenAIStandIn() as gone:
        url = gone.base_url
    llm = OpenAI(base_url=url, api_key=API_KEY, max_retries=0, timeout=5, posthog_client=client)
    with pytest.raises(openai.APIConnectionError):
        llm.embeddings.create(model="text-embedding-3-small", input="x")
    client.flush(5)
    props = only(sink.named("$ai_embedding"))
    assert props["$ai_is_error"] is True and "$ai_http_status" not in props
    assert props["$ai_error"].startswith("APIConnectionError")


# -- posthog-python as destination ----------------------------------------------------------------


def test_posthog_python_client_as_posthog_client(standin, posthog_server):
    posthog = pytest.importorskip("posthog")
    ph = posthog.Posthog("phc_test_key", host=posthog_server.host, sync_mode=False)
    llm = OpenAI(base_url=standin.base_url, api_key=API_KEY, max_retries=0, posthog_client=ph)
    llm.chat.completions.create(
        model="gpt-4o-mini",
        messages=HELLO,
        posthog_distinct_id="ph-user",
        posthog_groups={"company": "acme"},
    )
    ph.flush()
    posthog_server.wait_for(1)
    ph.shutdown()

    (event,) = posthog_server.named("$ai_generation")
    assert event["distinct_id"] == "ph-user"
    props = event["properties"]
    assert props["$ai_output_choices"][0]["content"] == "Echo: hello from a test"
    assert props["$ai_model"] == "gpt-4o-mini-2024-08-06"
    assert props["$groups"] == {"company": "acme"}
    assert API_KEY not in json.dumps(event)


def test_posthog_module_as_posthog_client(standin, posthog_server, monkeypatch):
    """The product doc's own setup: `posthog_client=posthog` after setting the module's key."""
    posthog = pytest.importorskip("posthog")
    monkeypatch.setattr(posthog, "project_api_key", "phc_module_key")
    monkeypatch.setattr(posthog, "host", posthog_server.host)
    monkeypatch.setattr(posthog, "default_client", None)
    llm = OpenAI(base_url=standin.base_url, api_key=API_KEY, max_retries=0, posthog_client=posthog)
    llm.embeddings.create(model="text-embedding-3-small", input="x", posthog_distinct_id="mod")
    posthog.flush()
    posthog_server.wait_for(1)
    posthog.shutdown()
    (event,) = posthog_server.named("$ai_embedding")
    assert event["distinct_id"] == "mod" and event["api_key"] == "phc_module_key"


# -- secrets ------------------------------------------------------------------------------------


def test_api_key_never_in_events_or_logs(standin, client, sink, caplog):
    caplog.set_level(logging.DEBUG, logger="posthog_llm")
    secret_server = OpenAIStandIn(api_key="sk-the-servers-own-key").start()
    try:
        llm = OpenAI(
            base_url=standin.base_url, api_key=API_KEY, max_retries=0, posthog_client=client
        )
        llm.chat.completions.create(model="gpt-4o-mini", messages=HELLO, stream=True).close()
        llm.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
        llm.responses.create(model="gpt-4o-mini", input="x")
        llm.embeddings.create(model="text-embedding-3-small", input="x")
        with pytest.raises(openai.RateLimitError):
            llm.chat.completions.create(model="error-429", messages=HELLO)
        rejected = OpenAI(
            base_url=secret_server.base_url, api_key=API_KEY, max_retries=0, posthog_client=client
        )
        with pytest.raises(openai.AuthenticationError):
            rejected.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
        azure = AzureOpenAI(
            azure_endpoint=standin.azure_endpoint,
            api_key=API_KEY,
            api_version="2024-10-21",
            max_retries=0,
            posthog_client=client,
        )
        azure.chat.completions.create(model="d", messages=HELLO)
    finally:
        secret_server.close()
    client.flush(5)

    assert len(sink.events) == 7
    assert standin.requests[0]["headers"]["authorization"] == f"Bearer {API_KEY}"
    serialized = json.dumps(sink.events)
    assert API_KEY not in serialized and API_KEY[-12:] not in serialized
    assert API_KEY not in caplog.text


def test_credentials_in_the_base_url_are_not_reported(standin, client, sink):
    url = standin.base_url.replace("http://", "http://someone:hunter2-password@")
    llm = OpenAI(
        base_url=url + "?key=sk-in-query", api_key=API_KEY, max_retries=0, posthog_client=client
    )
    with pytest.raises(openai.APIError):
        # error-404 makes the call fail; the event must still carry a clean base URL.
        llm.chat.completions.create(model="error-404", messages=HELLO)
    client.flush(5)
    props = only(sink.named("$ai_generation"))
    assert "hunter2" not in json.dumps(props) and "sk-in-query" not in json.dumps(props)
    assert props["$ai_base_url"].startswith("http://127.0.0.1:")


def test_custom_header_values_a_gateway_quotes_are_scrubbed(client, sink):
    gateway_token = "gw" + "-" + "custom-auth-0123456789"  # no known key shape: only the header
    with EchoGateway() as gateway:
        llm = OpenAI(
            base_url=gateway.base_url + "/v1",
            api_key="x",
            max_retries=0,
            posthog_client=client,
            default_headers={"X-Custom-Auth": gateway_token, "X-Title": "my-app"},
        )
        with pytest.raises(openai.AuthenticationError) as caught:
            llm.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    client.flush(5)
    assert gateway_token in str(caught.value)  # the gateway quoted it to the caller ...
    error = only(sink.named("$ai_generation"))["$ai_error"]
    assert gateway_token not in error and "[redacted]" in error  # ... no event repeats it
    assert "application/json" in error  # harmless headers stay readable


# -- the import guard ---------------------------------------------------------------------------


def test_missing_openai_says_which_extra_to_install(monkeypatch):
    for name in list(sys.modules):
        if name.startswith("posthog_llm.integrations.openai"):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "openai", None)
    with pytest.raises(ImportError, match=r"pip install 'posthog-llm\[openai\]'"):
        importlib.import_module("posthog_llm.integrations.openai")


def test_default_client_events_for_wrapped_clients(standin, client, sink):
    posthog_llm.set_client(client)
    llm = wrap(openai.OpenAI(base_url=standin.base_url, api_key=API_KEY, max_retries=0))
    llm.responses.create(model="gpt-4o-mini", input="default")
    client.flush(5)
    assert len(sink.named("$ai_generation")) == 1
