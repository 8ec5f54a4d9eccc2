"""`models.generate_content` / `_stream` / `embed_content`, sync and `aio`, and chats."""

from __future__ import annotations

import asyncio
import json
import urllib.request
import uuid

import pytest

genai = pytest.importorskip("google.genai")

import posthog_llm  # noqa: E402
from google.genai import errors, types  # noqa: E402

from tests.support.echo_gateway import EchoGateway  # noqa: E402
from tests.support.events import only  # noqa: E402

from .conftest import API_KEY, MODEL  # noqa: E402

HEDGEHOGS = "Tell me a fun fact about hedgehogs"
ECHO = "Echo: " + HEDGEHOGS


def test_generate_content_becomes_one_generation(make_client, events, standin):
    llm = make_client()
    reply = llm.models.generate_content(
        model=MODEL,
        contents=HEDGEHOGS,
        config=types.GenerateContentConfig(
            system_instruction="You are terse.",
            temperature=0.2,
            max_output_tokens=100,
            stop_sequences=["###"],
            thinking_config=types.ThinkingConfig(thinking_budget=64),
        ),
    )

    assert reply.text == ECHO
    usage = reply.usage_metadata
    props = only(events("$ai_generation"))
    assert props["$ai_model"] == "gemini-2.5-flash-001"  # modelVersion: as served
    assert props["$ai_provider"] == "gemini"
    assert props["$ai_base_url"] == standin.url
    assert props["$ai_input"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": HEDGEHOGS},
    ]
    assert props["$ai_output_choices"] == [{"role": "assistant", "content": ECHO}]
    assert props["$ai_input_tokens"] == usage.prompt_token_count
    assert props["$ai_output_tokens"] == usage.candidates_token_count
    assert props["$ai_reasoning_tokens"] == usage.thoughts_token_count == 7
    assert "$ai_cache_read_input_tokens" not in props  # not reported: omitted, not 0
    assert props["$ai_model_parameters"] == {
        "temperature": 0.2,
        "max_output_tokens": 100,
        "stop_sequences": ["###"],
        "thinking": {"thinking_budget": 64},
    }
    assert props["$ai_stop_reason"] == "STOP"
    assert props["$ai_http_status"] == 200
    assert props["$ai_stream"] is False
    assert "$ai_is_error" not in props
    uuid.UUID(props["$ai_trace_id"])


def test_contents_in_every_shape_become_role_content_messages(make_client, events):
    llm = make_client()
    llm.models.generate_content(model=MODEL, contents=["Describe", "this"])
    llm.models.generate_content(
        model=MODEL,
        contents=[
            types.Content(role="user", parts=[types.Part(text="Hi")]),
            {"role": "model", "parts": [{"text": "Hello!"}]},
            types.Content(
                role="user",
                parts=[
                    types.Part(text="What is on this picture?"),
                    types.Part.from_bytes(data=b"\x89PNG....", mime_type="image/png"),
                ],
            ),
        ],
    )
    llm.models.generate_content(model=MODEL, contents=types.Part(text="a single part"))

    loose, conversation, single = (e["properties"]["$ai_input"] for e in events("$ai_generation"))
    # Two loose texts are one user message of two parts, kept apart (not "Describethis").
    assert loose == [
        {
            "role": "user",
            "content": [{"type": "text", "text": "Describe"}, {"type": "text", "text": "this"}],
        }
    ]
    assert conversation == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is on this picture?"},
                {"type": "image", "mime_type": "image/png"},
            ],
        },
    ]
    assert single == [{"role": "user", "content": "a single part"}]
    assert "iVBOR" not in json.dumps(events())  # no image bytes in any event


def test_a_python_function_as_a_tool_is_recorded_with_its_parameters(
    make_client, events, caplog, monkeypatch
):
    def get_weather(city: str) -> str:
        """Weather for a city."""
        return "sunny"

    # google-genai warns once per process when a callable is declared its older way.
    flag = "_from_callable_with_api_option_warning_logged"
    if hasattr(types, flag):
        monkeypatch.setattr(types, flag, False)
    caplog.set_level("WARNING")
    llm = make_client()
    llm.models.generate_content(
        model=MODEL,
        contents="Weather in Paris?",
        config=types.GenerateContentConfig(
            tools=[get_weather],
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
        ),
    )
    (tool,) = only(events("$ai_generation"))["$ai_tools"]
    assert (tool["name"], tool["description"]) == ("get_weather", "Weather for a city.")
    schema = tool.get("parameters_json_schema") or tool.get("parameters")
    assert "city" in json.dumps(schema)
    # Declaring it for the event logs nothing the plain SDK would not.
    assert not [r for r in caplog.records if r.name.startswith("google")], caplog.records


def _usage_of_each(standin, suffix):
    """What each request the stand-in answered cost, [input, output] in all: the same bodies
    answered again, read as raw JSON."""
    totals = [0, 0]
    for request in [r for r in standin.requests if r["path"].endswith(suffix)]:
        answer = urllib.request.urlopen(
            urllib.request.Request(
                standin.base_url.rstrip("/") + request["path"].replace(suffix, ":generateContent"),
                data=json.dumps(request["body"]).encode(),
                headers={"Content-Type": "application/json", "x-goog-api-key": API_KEY},
            ),
            timeout=10,
        )
        usage = json.loads(answer.read())["usageMetadata"]
        totals[0] += usage["promptTokenCount"]
        totals[1] += usage["candidatesTokenCount"]
    return totals


@pytest.mark.parametrize("run", ["sync", "async"])
def test_automatic_function_calling_counts_every_request_of_the_call(
    make_client, events, standin, run
):
    # google-genai runs the Python function the model asked for, then asks again: two paid
    # requests for one `generate_content`, and one event that counts both.
    def get_weather(city: str) -> str:
        """Weather for a city."""
        return f"sunny in {city}"

    llm = make_client()
    config = types.GenerateContentConfig(tools=[get_weather])
    if run == "sync":
        llm.models.generate_content(model=MODEL, contents="Weather in Paris?", config=config)
    else:
        asyncio.run(
            llm.aio.models.generate_content(
                model=MODEL, contents="Weather in Paris?", config=config
            )
        )
    sent = [r for r in standin.requests if r["path"].endswith(":generateContent")]
    assert len(sent) == 2  # the function's result went back in a second request
    totals = _usage_of_each(standin, ":generateContent")
    generation = only(events("$ai_generation"))
    assert [generation["$ai_input_tokens"], generation["$ai_output_tokens"]] == totals


# Releases before automatic continuation (1.23 among them) keep a stream's function-call
# round to themselves, and end a call whose later round fails differently.
_ROUNDS_SHOWN = hasattr(genai.models.Models, "_generate_content_with_continuation")
needs_rounds_shown = pytest.mark.skipif(
    not _ROUNDS_SHOWN, reason="this google-genai release hides a stream's first round"
)


@needs_rounds_shown
@pytest.mark.parametrize("run", ["sync", "async"])
def test_a_streamed_call_with_automatic_function_calling_counts_every_round(
    make_client, events, standin, run
):
    def get_weather(city: str) -> str:
        """Weather for a city."""
        return f"sunny in {city}"

    llm = make_client()
    config = types.GenerateContentConfig(tools=[get_weather])
    if run == "sync":
        text = "".join(
            chunk.text or ""
            for chunk in llm.models.generate_content_stream(
                model=MODEL, contents="Weather in Paris?", config=config
            )
        )
    else:

        async def read() -> str:
            stream = await llm.aio.models.generate_content_stream(
                model=MODEL, contents="Weather in Paris?", config=config
            )
            return "".join([chunk.text or "" async for chunk in stream])

        text = asyncio.run(read())
    assert text
    totals = _usage_of_each(standin, ":streamGenerateContent")
    assert totals[0] > 0
    generation = only(events("$ai_generation"))
    assert [generation["$ai_input_tokens"], generation["$ai_output_tokens"]] == totals


@needs_rounds_shown
def test_a_call_whose_second_round_fails_keeps_the_first_rounds_tokens(
    make_client, events, standin
):
    # The model asked for the function; the request with its result fails (503): the first
    # request was answered and paid for, and the event says so.
    from posthog_llm.local.anthropic_standin import StandInError

    def overloaded(request: dict) -> None:
        raise StandInError(503, "The model is overloaded.")

    def get_weather(city: str) -> str:
        """Weather for a city."""
        paid.extend(_usage_of_each(standin, ":generateContent"))
        standin.handle = overloaded  # the stand-in's answer to every later request
        return "sunny"

    paid: list[int] = []
    llm = make_client()
    with pytest.raises(errors.ServerError):
        llm.models.generate_content(
            model=MODEL,
            contents="Weather in Paris?",
            config=types.GenerateContentConfig(tools=[get_weather]),
        )
    generation = only(events("$ai_generation"))
    assert generation["$ai_is_error"] is True
    assert [generation["$ai_input_tokens"], generation["$ai_output_tokens"]] == paid


def test_function_calls_in_the_output_and_tools(make_client, events):
    llm = make_client()
    weather = types.FunctionDeclaration(
        name="get_weather",
        description="Weather for a city",
        parameters={"type": "OBJECT", "properties": {"city": {"type": "STRING"}}},
    )
    reply = llm.models.generate_content(
        model=MODEL,
        contents="Weather in Paris?",
        config={"tools": [types.Tool(function_declarations=[weather])]},
    )

    call = reply.function_calls[0]
    props = only(events("$ai_generation"))
    assert props["$ai_tools"][0]["function_declarations"][0]["name"] == "get_weather"
    assert props["$ai_output_choices"] == [
        {
            "role": "assistant",
            "content": [
                {  # no id: Gemini gave none
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": json.dumps(call.args)},
                }
            ],
        }
    ]


def test_stream_reports_once_with_text_usage_and_first_token(make_client, events):
    llm = make_client()
    stream = llm.models.generate_content_stream(model=MODEL, contents=HEDGEHOGS)
    assert events("$ai_generation") == []
    chunks = list(stream)

    assert "".join(c.text for c in chunks) == ECHO
    props = only(events("$ai_generation"))
    assert props["$ai_stream"] is True
    assert props["$ai_output_choices"] == [{"role": "assistant", "content": ECHO}]
    assert props["$ai_output_tokens"] == chunks[-1].usage_metadata.candidates_token_count
    assert props["$ai_model"] == "gemini-2.5-flash-001"
    assert props["$ai_stop_reason"] == "STOP"
    assert 0 < props["$ai_time_to_first_token"] <= props["$ai_latency"]


@pytest.mark.parametrize("sync", [True, False])
def test_a_stream_never_read_is_no_call_and_one_half_read_is_sent_at_shutdown(
    make_client, client, sink, standin, sync
):
    # google-genai sends a stream's request when it is first read: one never read made no
    # call, and must not be reported as one when the client shuts down.
    import asyncio

    llm = make_client()

    async def open_both() -> tuple[object, object]:
        never = await llm.aio.models.generate_content_stream(model=MODEL, contents=HEDGEHOGS)
        half = await llm.aio.models.generate_content_stream(model=MODEL, contents=HEDGEHOGS)
        await half.__anext__()
        return never, half

    if sync:
        never = llm.models.generate_content_stream(model=MODEL, contents=HEDGEHOGS)
        half = llm.models.generate_content_stream(model=MODEL, contents=HEDGEHOGS)
        next(half)
    else:
        loop = asyncio.new_event_loop()
        never, half = loop.run_until_complete(open_both())
    assert client.shutdown(5) is True
    assert len(standin.requests) == 1
    (props,) = [e["properties"] for e in sink.named("$ai_generation")]
    assert props["$ai_stream"] is True and props["$ai_output_choices"][0]["content"]
    if not sync:
        loop.run_until_complete(half.aclose())  # (hands its connection back)
        loop.close()


def test_embed_content_becomes_an_embedding(make_client, events):
    llm = make_client()
    result = llm.models.embed_content(
        model="text-embedding-004",
        contents=["first text", "second text"],
        config=types.EmbedContentConfig(output_dimensionality=8),
        posthog_distinct_id="user_5",
    )

    assert len(result.embeddings) == 2
    event = events("$ai_embedding")[0]
    props = event["properties"]
    assert event["distinct_id"] == "user_5"
    assert props["$ai_model"] == "text-embedding-004"
    assert props["$ai_provider"] == "gemini"
    assert props["$ai_input"] == ["first text", "second text"]
    assert props["$ai_embedding_input_count"] == 2
    assert props["$ai_model_parameters"] == {"dimensions": 8}
    assert "$ai_input_tokens" not in props  # the Gemini API does not report it


def test_chats_are_tracked_through_the_models_calls(make_client, events):
    llm = make_client()
    chat = llm.chats.create(model=MODEL)
    chat.send_message("first question")
    for _ in chat.send_message_stream("second question"):
        pass

    first, second = (e["properties"] for e in events("$ai_generation"))
    assert first["$ai_input"] == [{"role": "user", "content": "first question"}]
    assert second["$ai_input"] == [
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "Echo: first question"},
        {"role": "user", "content": "second question"},
    ]
    assert second["$ai_stream"] is True


async def test_async_models_and_chats(make_client, events):
    llm = make_client()
    reply = await llm.aio.models.generate_content(model=MODEL, contents=HEDGEHOGS)
    streamed = [
        chunk.text
        async for chunk in await llm.aio.models.generate_content_stream(
            model=MODEL, contents=HEDGEHOGS
        )
    ]
    await llm.aio.models.embed_content(model="text-embedding-004", contents="one text")
    chat = llm.aio.chats.create(model=MODEL)
    await chat.send_message("async chat")

    assert reply.text == "".join(streamed) == ECHO
    plain, stream, chatted = (e["properties"] for e in events("$ai_generation"))
    assert plain["$ai_stream"] is False and stream["$ai_stream"] is True
    assert plain["$ai_output_choices"] == stream["$ai_output_choices"]
    assert chatted["$ai_input"] == [{"role": "user", "content": "async chat"}]
    assert only(events("$ai_embedding"))["$ai_input"] == "one text"


@pytest.mark.parametrize(
    "status, error",
    [(429, errors.ClientError), (500, errors.ServerError), (400, errors.ClientError)],
)
def test_api_errors_reach_the_caller_untouched_and_are_reported(make_client, events, status, error):
    llm = make_client()
    with pytest.raises(error) as caught:
        llm.models.generate_content(model=f"error-{status}", contents=HEDGEHOGS)
    with pytest.raises(error):
        for _ in llm.models.generate_content_stream(model=f"error-{status}", contents=HEDGEHOGS):
            pass

    assert caught.value.code == status
    for props in (e["properties"] for e in events("$ai_generation")):
        assert props["$ai_is_error"] is True
        assert props["$ai_http_status"] == status
        assert props["$ai_error"].startswith(f"{error.__name__}: {status}")
        assert "$ai_output_choices" not in props


async def test_async_errors_carry_their_http_status(make_client, events):
    # Under client.aio, google-genai sends through aiohttp when it is installed: the error's
    # status is its own `code` (the response is aiohttp's, with `status`, not `status_code`).
    llm = make_client()
    with pytest.raises(errors.ClientError):
        await llm.aio.models.generate_content(model="error-429", contents=HEDGEHOGS)
    with pytest.raises(errors.ServerError):
        async for _ in await llm.aio.models.generate_content_stream(
            model="error-500", contents=HEDGEHOGS
        ):
            pass
    with pytest.raises(errors.ServerError):
        await llm.aio.models.embed_content(model="error-503", contents="one text")
    statuses = [e["properties"]["$ai_http_status"] for e in events("$ai_generation")]
    assert statuses == [429, 500]  # the refused stream is not a 200
    assert only(events("$ai_embedding"))["$ai_http_status"] == 503


def test_api_key_never_reaches_an_event_and_posthog_arguments_never_reach_google(
    make_client, events, standin
):
    llm = make_client()
    llm.models.generate_content(
        model=MODEL,
        contents=HEDGEHOGS,
        posthog_trace_id="trace_9",
        posthog_properties={"team": "search"},
        posthog_groups={"company": "acme"},
    )
    with pytest.raises(errors.ClientError) as caught:
        llm.models.generate_content(model="error-key", contents="x")

    assert API_KEY in str(caught.value)  # the caller sees what the server said ...
    sent = standin.last_request(":generateContent")
    assert sent["headers"]["x-goog-api-key"] == API_KEY
    assert not [key for key in sent["body"] if "posthog" in key.lower()]
    first = events("$ai_generation")[0]["properties"]
    assert first["$ai_trace_id"] == "trace_9" and first["team"] == "search"
    assert first["$groups"] == {"company": "acme"}
    assert API_KEY not in json.dumps(events(), default=str)  # ... no event repeats it
    assert "[redacted]" in events("$ai_generation")[1]["properties"]["$ai_error"]


def test_custom_header_values_a_gateway_quotes_are_scrubbed(make_client, events):
    gateway_token = "gw" + "-" + "custom-auth-0123456789"  # no known key shape: only the header
    with EchoGateway() as gateway:
        llm = make_client(
            http_options={
                "base_url": gateway.base_url,
                "headers": {"X-Gateway": gateway_token},
                "retry_options": {"attempts": 1},
            }
        )
        with pytest.raises(errors.ClientError) as caught:
            llm.models.generate_content(model=MODEL, contents=HEDGEHOGS)
    assert gateway_token in str(caught.value)
    error = only(events("$ai_generation"))["$ai_error"]
    assert gateway_token not in error and "[redacted]" in error


def test_privacy_mode_keeps_only_counts_and_error_type(make_client, events):
    llm = make_client()
    llm.models.generate_content(model=MODEL, contents=HEDGEHOGS, posthog_privacy_mode=True)
    with posthog_llm.context(privacy_mode=True):
        with pytest.raises(errors.ClientError):
            llm.models.generate_content(model="error-429", contents=HEDGEHOGS)

    ok, failed = (e["properties"] for e in events("$ai_generation"))
    assert "hedgehogs" not in json.dumps([ok, failed])
    assert ok["$ai_output_tokens"] > 0
    assert failed["$ai_error"] == "ClientError" and failed["$ai_http_status"] == 429


def test_vertex_mode_reports_vertex(make_client, events, standin):
    llm = make_client(vertexai=True)
    llm.models.generate_content(model=MODEL, contents=HEDGEHOGS)

    assert "publishers/google/models" in standin.last_request(":generateContent")["path"]
    assert only(events("$ai_generation"))["$ai_provider"] == "vertex"


def test_wrap_existing_client(client, events, standin):
    from posthog_llm.integrations.gemini import wrap

    options = {"base_url": standin.base_url}
    raw = genai.Client(api_key=API_KEY, http_options=options)
    untouched = genai.Client(api_key=API_KEY, http_options=options)
    assert wrap(raw, posthog_client=client) is raw
    raw.models.generate_content(model=MODEL, contents="tracked")
    untouched.models.generate_content(model=MODEL, contents="not tracked")

    assert only(events("$ai_generation"))["$ai_input"] == [{"role": "user", "content": "tracked"}]
    with pytest.raises(TypeError, match="google.genai.Client"):
        wrap(object(), posthog_client=client)


def test_calls_inside_a_span_join_its_trace(make_client, events, client):
    llm = make_client()
    with posthog_llm.span("answer", client=client) as outer:
        llm.models.generate_content(model=MODEL, contents=HEDGEHOGS)
        for _ in llm.models.generate_content_stream(model=MODEL, contents=HEDGEHOGS):
            pass
        llm.models.embed_content(model="text-embedding-004", contents="x")

    trace_id = only(events("$ai_trace"))["$ai_trace_id"]
    joined = events("$ai_generation") + events("$ai_embedding")
    assert len(joined) == 3
    for event in joined:
        assert event["properties"]["$ai_trace_id"] == trace_id
        assert event["properties"]["$ai_parent_id"] == outer.span_id


def test_demo_call_on_the_standin(standin, client, events):
    from posthog_llm.local.demo import gemini_standin_call as demo_call

    assert demo_call(standin, client, "hello demo") == "Echo: hello demo"
    assert only(events("$ai_generation"))["$ai_provider"] == "gemini"


def test_call_inside_a_llama_index_tool_joins_its_trace(make_client, events, client):
    pytest.importorskip("llama_index.core")
    from llama_index.core.tools import FunctionTool
    from posthog_llm.integrations import llama_index as posthog_li

    llm = make_client()

    def answer(question: str) -> str:
        """Answer a question with Gemini."""
        return str(llm.models.generate_content(model=MODEL, contents=question).text)

    tool = FunctionTool.from_defaults(fn=answer, name="ask_gemini")
    posthog_li.set_global_handler(client)
    try:
        assert tool.call(question="hi").raw_output == "Echo: hi"
    finally:
        posthog_li.remove_global_handler()

    generation = only(events("$ai_generation"))
    root = only(events("$ai_trace"))
    assert root["$ai_framework"] == "llama-index"
    assert generation["$ai_trace_id"] == root["$ai_trace_id"]
    assert generation["$ai_parent_id"] == root["$ai_trace_id"]
    assert generation["$ai_provider"] == "gemini" and "$ai_framework" not in generation


def test_cached_content_tokens_and_a_per_call_distinct_id(make_client, events, standin):
    llm = make_client()
    reply = llm.models.generate_content(
        model=MODEL,
        contents=HEDGEHOGS,
        config=types.GenerateContentConfig(cached_content="cachedContents/hedgehog-facts"),
        posthog_distinct_id="user_42",
    )
    cached = reply.usage_metadata.cached_content_token_count
    assert cached  # the stand-in reports cachedContentTokenCount, as Gemini does
    (event,) = events("$ai_generation")
    assert event["distinct_id"] == "user_42"
    props = event["properties"]
    assert props["$ai_cache_read_input_tokens"] == cached
    # Gemini's promptTokenCount includes the cached tokens, as PostHog's input tokens do.
    assert props["$ai_input_tokens"] == reply.usage_metadata.prompt_token_count
    assert standin.last_request(":generateContent")["body"]["cachedContent"] == (
        "cachedContents/hedgehog-facts"
    )


def test_a_stream_of_two_candidates_counts_its_one_request_once(client, events):
    # With candidate_count=2 the first candidate may finish while the second goes on, in
    # chunks of its own: one request, counted once, and each candidate a choice of its own.
    from posthog_llm.integrations.gemini import Client as Gemini
    from posthog_llm.local.gemini_standin import GeminiStandIn

    def usage(out: int | None = None) -> dict:
        counts = {"promptTokenCount": 10, "totalTokenCount": 10}
        if out is not None:
            counts.update(candidatesTokenCount=out, totalTokenCount=10 + out)
        return counts

    def candidate(index: int, text: str, finish: str | None = None) -> dict:
        found = {"content": {"role": "model", "parts": [{"text": text}]}, "index": index}
        return found | ({"finishReason": finish} if finish else {})

    class TwoCandidates(GeminiStandIn):
        def handle(self, request):
            base = {"modelVersion": "gemini-2.5-flash-001", "responseId": "r1"}
            chunks = [
                {**base, "candidates": [candidate(0, "Hi "), candidate(1, "Hello ")]}
                | {"usageMetadata": usage()},
                {**base, "candidates": [candidate(0, "there", "STOP"), candidate(1, "dear ")]}
                | {"usageMetadata": usage(5)},
                {**base, "candidates": [candidate(1, "friend", "STOP")], "usageMetadata": usage(8)},
                {**base, "candidates": [{"index": 0}], "usageMetadata": usage(8)},  # a closing one
            ]
            return 200, iter([(None, chunk) for chunk in chunks]), True

    with TwoCandidates() as server:
        llm = Gemini(
            api_key=API_KEY,
            posthog_client=client,
            http_options={"base_url": server.base_url, "retry_options": {"attempts": 1}},
        )
        list(
            llm.models.generate_content_stream(
                model=MODEL, contents="hi", config=types.GenerateContentConfig(candidate_count=2)
            )
        )
    generation = only(events("$ai_generation"))
    assert (generation["$ai_input_tokens"], generation["$ai_output_tokens"]) == (10, 8)
    assert generation["$ai_output_choices"] == [
        {"role": "assistant", "content": "Hi there"},
        {"role": "assistant", "content": "Hello dear friend"},
    ]


def test_two_candidates_are_two_choices(client, events):
    # Only the first candidate was reported (the OpenAI drop-in reports every choice of n=2).
    from posthog_llm.integrations.gemini import Client as Gemini
    from posthog_llm.local.gemini_standin import GeminiStandIn

    class TwoCandidates(GeminiStandIn):
        def handle(self, request):
            candidates = [
                {"content": {"role": "model", "parts": [{"text": text}]}, "index": i}
                | {"finishReason": "STOP"}
                for i, text in enumerate(["first answer", "second answer"])
            ]
            usage = {"promptTokenCount": 3, "candidatesTokenCount": 4, "totalTokenCount": 7}
            body = {"candidates": candidates, "usageMetadata": usage, "modelVersion": MODEL}
            return 200, body, False

    with TwoCandidates() as server:
        llm = Gemini(
            api_key=API_KEY,
            posthog_client=client,
            http_options={"base_url": server.base_url, "retry_options": {"attempts": 1}},
        )
        reply = llm.models.generate_content(
            model=MODEL, contents="hi", config=types.GenerateContentConfig(candidate_count=2)
        )
    assert len(reply.candidates) == 2
    generation = only(events("$ai_generation"))
    assert generation["$ai_output_choices"] == [
        {"role": "assistant", "content": "first answer"},
        {"role": "assistant", "content": "second answer"},
    ]
    assert (generation["$ai_input_tokens"], generation["$ai_output_tokens"]) == (3, 4)


@needs_rounds_shown
@pytest.mark.parametrize("with_ids", [True, False])
@pytest.mark.parametrize("second", ["starts_without_parts", "max_tokens_without_parts"])
def test_a_streamed_second_round_without_parts_still_counts_both_rounds(
    client, events, second, with_ids
):
    # Thinking models may open (or end) a response with a chunk that has no parts yet: the
    # next request is told by its response id, or without ids by its prompt's count.
    from posthog_llm.integrations.gemini import Client as Gemini
    from posthog_llm.local.gemini_standin import GeminiStandIn

    def usage(prompt: int, out: int | None = None) -> dict:
        counts = {"promptTokenCount": prompt, "totalTokenCount": prompt + (out or 0)}
        return counts | ({"candidatesTokenCount": out} if out is not None else {})

    def get_weather(city: str) -> str:
        """Weather for a city."""
        return f"sunny in {city}"

    later = {
        "starts_without_parts": [
            {"candidates": [{"content": {"role": "model"}}], "usageMetadata": usage(20)},
            {
                "candidates": [
                    {"content": {"role": "model", "parts": [{"text": "Sunny"}]}}
                    | {"finishReason": "STOP"}
                ],
                "usageMetadata": usage(20, 3),
            },
        ],
        "max_tokens_without_parts": [
            {
                "candidates": [{"content": {"role": "model"}, "finishReason": "MAX_TOKENS"}],
                "usageMetadata": usage(20, 3),
            }
        ],
    }[second]
    call = {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}

    class TwoRounds(GeminiStandIn):
        def handle(self, request):
            contents = (request.get("body") or {}).get("contents", [])
            answered = any("functionResponse" in p for c in contents for p in c.get("parts", []))
            base = {"modelVersion": "gemini-2.5-flash-001"}
            if with_ids:
                base["responseId"] = "second" if answered else "first"
            first = {
                "candidates": [
                    {"content": {"role": "model", "parts": [call]}, "finishReason": "STOP"}
                ],
                "usageMetadata": usage(10, 5),
            }
            chunks = later if answered else [first]
            return 200, iter([(None, base | chunk) for chunk in chunks]), True

    with TwoRounds() as server:
        llm = Gemini(
            api_key=API_KEY,
            posthog_client=client,
            http_options={"base_url": server.base_url, "retry_options": {"attempts": 1}},
        )
        config = types.GenerateContentConfig(tools=[get_weather])
        list(llm.models.generate_content_stream(model=MODEL, contents="Weather?", config=config))
        assert len(server.requests) == 2
    generation = only(events("$ai_generation"))
    assert (generation["$ai_input_tokens"], generation["$ai_output_tokens"]) == (30, 8)


def test_identity_given_to_the_client_is_every_calls_default(make_client, events):
    # As posthog-python's Gemini client takes them; a call's own arguments win.
    gemini = make_client(
        posthog_distinct_id="user-42",
        posthog_properties={"app": "support"},
        posthog_groups={"company": "acme"},
        posthog_privacy_mode=True,
    )
    gemini.models.generate_content(model=MODEL, contents="Owls?")
    gemini.models.generate_content(model=MODEL, contents="Cats?", posthog_distinct_id="user-7")
    first, second = events()
    assert first["distinct_id"] == "user-42" and second["distinct_id"] == "user-7"
    props = first["properties"]
    assert props["app"] == "support" and props["$groups"] == {"company": "acme"}
    assert "$ai_input" not in props and "$ai_output_choices" not in props  # privacy
    with pytest.raises(TypeError, match="distinct_id"):
        make_client(posthog_distinct_id=["not", "an", "id"])


def test_an_answer_grounded_in_google_search_counts_one_web_search(client, events):
    # Gemini bills grounding per request: PostHog prices it from `$ai_web_search_count`.
    body = {
        "candidates": [
            {
                "content": {"role": "model", "parts": [{"text": "Owls eat mice."}]},
                "finishReason": "STOP",
                "groundingMetadata": {
                    "webSearchQueries": ["what do owls eat"],
                    "groundingChunks": [{"web": {"uri": "https://example.org", "title": "Owls"}}],
                },
            }
        ],
        "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 4, "totalTokenCount": 9},
        "modelVersion": MODEL,
    }
    grounded = _generation_answered_with(
        body,
        client,
        events,
        lambda gemini: gemini.models.generate_content(
            model=MODEL, contents="What do owls eat?", config={"tools": [{"google_search": {}}]}
        ),
    )
    assert grounded["$ai_web_search_count"] == 1
    assert grounded["$ai_output_choices"] == [{"role": "assistant", "content": "Owls eat mice."}]


def test_image_tokens_go_out_in_the_providers_usage_block(client, events):
    body = {
        "candidates": [
            {"content": {"role": "model", "parts": [{"text": "Here."}]}, "finishReason": "STOP"}
        ],
        "usageMetadata": {
            "promptTokenCount": 5,
            "candidatesTokenCount": 1292,
            "totalTokenCount": 1297,
            "candidatesTokensDetails": [
                {"modality": "IMAGE", "tokenCount": 1290},
                {"modality": "TEXT", "tokenCount": 2},
            ],
        },
        "modelVersion": MODEL,
    }
    props = _generation_answered_with(
        body,
        client,
        events,
        lambda gemini: gemini.models.generate_content(model=MODEL, contents="Draw an owl"),
    )
    details = props["$ai_usage"]["candidates_tokens_details"]
    assert {"modality": "IMAGE", "token_count": 1290} in details


def _generation_answered_with(body, client, events, make_call):
    """The generation of one call to a server that answers with `body`."""
    from posthog_llm.integrations.gemini import Client as Gemini

    from tests.support.fixed_reply import FixedReply

    with FixedReply(body) as server:
        make_call(
            Gemini(
                api_key=API_KEY,
                posthog_client=client,
                http_options={"base_url": server.base_url, "retry_options": {"attempts": 1}},
            )
        )
    (props,) = (e["properties"] for e in events("$ai_generation"))
    return props


def test_uploaded_files_and_code_execution_parts_are_kept(client, events):
    from posthog_llm.integrations.gemini import Client as Gemini

    from tests.support.fixed_reply import FixedReply

    parts = [
        {"text": "Let me compute."},
        {"executableCode": {"language": "PYTHON", "code": "print(2 + 2)"}},
        {"codeExecutionResult": {"outcome": "OUTCOME_OK", "output": "4\n"}},
        {"text": "The answer is 4."},
    ]
    body = {
        "candidates": [
            {"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}
        ],
        "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 12},
        "modelVersion": MODEL,
    }
    upload = types.File(
        name="files/abc123",
        uri="https://example.org/v1beta/files/abc123",
        mime_type="audio/mpeg",
    )
    with FixedReply(body) as server:
        llm = Gemini(
            api_key=API_KEY,
            posthog_client=client,
            http_options={"base_url": server.base_url, "retry_options": {"attempts": 1}},
        )
        llm.models.generate_content(
            model=MODEL,
            contents=["Describe this clip, then add 2 and 2", upload],
            config={"tools": [types.Tool(code_execution=types.ToolCodeExecution())]},
        )
    props = only(events("$ai_generation"))
    [message] = props["$ai_input"]
    assert message["content"][1] == {
        "type": "audio",
        "mime_type": "audio/mpeg",
        "url": "https://example.org/v1beta/files/abc123",
    }
    [answer] = props["$ai_output_choices"]
    assert [block["type"] for block in answer["content"]] == [
        "text",
        "executable_code",
        "code_execution_result",
        "text",
    ]
    assert answer["content"][1]["code"] == "print(2 + 2)"
    assert answer["content"][2]["output"] == "4\n"


@pytest.mark.parametrize("run", ["sync", "async"])
def test_a_chat_messages_function_calling_rounds_share_one_trace(
    make_client, events, standin, client, run
):
    # google-genai 3 runs a chat's automatic function calling round by round through
    # `models.generate_content`: the rounds of one message are one trace, not one each.
    def get_weather(city: str) -> str:
        """Weather for a city."""
        return f"sunny in {city}"

    llm = make_client()
    config = types.GenerateContentConfig(tools=[get_weather])

    async def send_async(text: str) -> None:
        await llm.aio.chats.create(model=MODEL, config=config).send_message(text)

    def send(text: str) -> None:
        if run == "sync":
            llm.chats.create(model=MODEL, config=config).send_message(text)
        else:
            asyncio.run(send_async(text))

    send("Weather in Paris?")
    send("Weather in Rome?")
    generations = [e["properties"] for e in events("$ai_generation")]
    requests = [r for r in standin.requests if r["path"].endswith(":generateContent")]
    assert len(requests) == 4  # two rounds per message
    traces = [g["$ai_trace_id"] for g in generations]
    assert len(set(traces)) == 2  # one per message
    assert (
        sum(g["$ai_input_tokens"] for g in generations)
        == _usage_of_each(standin, ":generateContent")[0]
    )
    # Inside a span, the span's trace holds them (no trace of the chat's own).
    with posthog_llm.span("request", client=client) as span:
        send("Weather in Oslo?")
    inside = [e["properties"] for e in events("$ai_generation")][len(generations) :]
    assert inside and {g["$ai_trace_id"] for g in inside} == {span.trace_id}
