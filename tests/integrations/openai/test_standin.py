"""The loopback OpenAI stand-in itself: wire format, determinism, errors, auth."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request

import pytest

openai = pytest.importorskip("openai")

from posthog_llm.local.openai_standin import OpenAIStandIn  # noqa: E402

KEY = "sk-standin-test-key-0001"


def post(url: str, body: dict, headers: dict | None = None) -> tuple[int, bytes, dict]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def sdk(server: OpenAIStandIn) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0)


def test_many_clients_connecting_at_once_are_all_answered(standin):
    # The listen backlog was 5: 200 calls at once saw resets (the SDK's APIConnectionError).
    import asyncio

    async def main() -> list:
        llm = openai.AsyncOpenAI(base_url=standin.base_url, api_key=KEY, max_retries=0)
        calls = [
            llm.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
            )
            for _ in range(200)
        ]
        return await asyncio.gather(*calls, return_exceptions=True)

    failed = [r for r in asyncio.run(main()) if isinstance(r, BaseException)]
    assert failed == []


def test_chat_reply_is_deterministic_and_names_a_snapshot(standin):
    client = sdk(standin)
    ask = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "same words"}]}
    first = client.chat.completions.create(**ask)
    second = client.chat.completions.create(**ask)
    assert (
        first.choices[0].message.content == second.choices[0].message.content == "Echo: same words"
    )
    assert first.model == "gpt-4o-mini-2024-08-06"
    assert first.id != second.id
    assert first.usage.total_tokens == first.usage.prompt_tokens + first.usage.completion_tokens


def test_snapshot_none_echoes_the_model():
    with OpenAIStandIn(snapshot=None) as server:
        reply = sdk(server).chat.completions.create(
            model="my-model", messages=[{"role": "user", "content": "x"}]
        )
    assert reply.model == "my-model"


def test_max_tokens_cuts_the_reply_and_n_repeats_it(standin):
    reply = sdk(standin).chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "a b c d e f"}],
        max_tokens=3,
        n=2,
    )
    assert [c.message.content for c in reply.choices] == ["Echo: a b", "Echo: a b"]
    assert {c.finish_reason for c in reply.choices} == {"length"}


def test_structured_output_follows_the_schema(standin):
    schema = {
        "type": "object",
        "properties": {
            "title": {"type": "string"},
            "count": {"type": "integer"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "kind": {"enum": ["a", "b"]},
            "maybe": {"anyOf": [{"type": "null"}, {"type": "number"}]},
        },
        "required": ["title", "count", "tags", "kind", "maybe"],
    }
    reply = sdk(standin).chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "make it"}],
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
    )
    assert json.loads(reply.choices[0].message.content) == {
        "title": "make it",
        "count": 1,
        "tags": ["make it"],
        "kind": "a",
        "maybe": 1.0,
    }


def test_repeated_prompt_prefix_counts_as_cached(standin):
    client = sdk(standin)
    history = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "hi"}]
    first = client.chat.completions.create(model="gpt-4o-mini", messages=history)
    longer = history + [
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "more"},
    ]
    second = client.chat.completions.create(model="gpt-4o-mini", messages=longer)
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    assert 0 < second.usage.prompt_tokens_details.cached_tokens < second.usage.prompt_tokens


def test_sse_wire_format(standin):
    status, body, headers = post(
        standin.base_url + "/chat/completions",
        {
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "wire"}],
            "stream": True,
            "stream_options": {"include_usage": True},
        },
        {"Authorization": f"Bearer {KEY}"},
    )
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    frames = [f for f in body.decode().split("\n\n") if f]
    assert all(f.startswith("data: ") for f in frames)
    assert frames[-1] == "data: [DONE]"
    usage_chunk = json.loads(frames[-2][6:])
    assert usage_chunk["choices"] == [] and usage_chunk["usage"]["total_tokens"] > 0
    assert json.loads(frames[0][6:])["usage"] is None


def test_responses_stream_names_each_event(standin):
    status, body, _ = post(
        standin.base_url + "/responses",
        {"model": "gpt-4o-mini", "input": "wire", "stream": True},
        {"Authorization": f"Bearer {KEY}"},
    )
    frames = [f.split("\n") for f in body.decode().split("\n\n") if f]
    names = [lines[0].removeprefix("event: ") for lines in frames]
    assert status == 200 and names[0] == "response.created" and names[-1] == "response.completed"
    assert [json.loads(lines[1][6:])["sequence_number"] for lines in frames] == list(
        range(len(frames))
    )


@pytest.mark.parametrize("status", [400, 403, 429, 500, 503])
def test_error_models_answer_with_their_status(standin, status):
    code, body, headers = post(
        standin.base_url + "/chat/completions",
        {"model": f"error-{status}", "messages": [{"role": "user", "content": "x"}]},
        {"Authorization": f"Bearer {KEY}"},
    )
    assert code == status
    error = json.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert ("retry-after-ms" in headers) == (status == 429)


def test_missing_or_wrong_key_is_401_without_echoing_the_key():
    with OpenAIStandIn(api_key="sk-right-key-000000") as server:
        missing, _, _ = post(server.base_url + "/embeddings", {"model": "m", "input": "x"})
        wrong, body, _ = post(
            server.base_url + "/embeddings",
            {"model": "m", "input": "x"},
            {"Authorization": "Bearer sk-wrong-key-123456789"},
        )
        right, _, _ = post(
            server.base_url + "/embeddings",
            {"model": "m", "input": "x"},
            {"Authorization": "Bearer sk-right-key-000000"},
        )
    assert (missing, wrong, right) == (401, 401, 200)
    assert b"sk-wrong-key-123456789" not in body and b"6789" in body


def test_azure_paths_need_an_api_version(standin):
    headers = {"api-key": KEY}
    message = {"messages": [{"role": "user", "content": "x"}]}
    base = standin.url + "/openai/deployments/dep/chat/completions"
    assert post(base, message, headers)[0] == 404
    status, body, _ = post(base + "?api-version=2024-10-21", message, headers)
    assert status == 200 and json.loads(body)["model"] == "dep-2024-08-06"


def test_unknown_paths_are_404_in_openai_style(standin):
    status, body, _ = post(standin.base_url + "/nope", {}, {"Authorization": f"Bearer {KEY}"})
    assert status == 404 and "error" in json.loads(body)


def test_embeddings_are_deterministic_unit_vectors(standin):
    client = sdk(standin)
    a = client.embeddings.create(model="text-embedding-3-small", input="same", dimensions=16)
    b = client.embeddings.create(
        model="text-embedding-3-small",
        input=["same", "other"],
        encoding_format="float",
        dimensions=16,
    )
    vector = a.data[0].embedding  # decoded by the SDK from base64
    assert len(vector) == 16
    assert vector == pytest.approx(b.data[0].embedding, abs=1e-6)
    assert b.data[1].embedding != b.data[0].embedding
    assert sum(v * v for v in vector) == pytest.approx(1.0, abs=1e-4)


def test_models_and_recorded_requests(standin):
    client = sdk(standin)
    assert "gpt-4o-mini" in [m.id for m in client.models.list()]
    request = standin.last_request("/models")
    assert request["method"] == "GET" and request["headers"]["authorization"] == f"Bearer {KEY}"
    with pytest.raises(LookupError):
        standin.last_request("/never")


def test_close_releases_the_port():
    server = OpenAIStandIn().start()
    port = server.port
    assert server.base_url == f"http://127.0.0.1:{port}/v1"
    server.close()
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    with pytest.raises(RuntimeError, match="not started"):
        server.base_url  # noqa: B018
