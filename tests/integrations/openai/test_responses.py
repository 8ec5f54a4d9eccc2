"""The Responses API (create, stream, parse, tools) and embeddings on the stand-in."""

from __future__ import annotations

import pytest

openai = pytest.importorskip("openai")

import pydantic  # noqa: E402

from tests.support.events import only  # noqa: E402

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}


def test_response_becomes_one_generation(make_client, events, standin):
    llm = make_client()
    response = llm.responses.create(
        model="o4-mini",
        input="What is a hedgehog?",
        instructions="Answer briefly.",
        max_output_tokens=100,
        reasoning={"effort": "low"},
        posthog_distinct_id="user_1",
    )

    assert isinstance(response, openai.types.responses.Response)
    assert "posthog_distinct_id" not in standin.last_request().body
    event = only(events("$ai_generation"))
    assert event["$ai_model"] == "o4-mini-2024-08-06"
    assert event["$ai_input"] == [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "What is a hedgehog?"},
    ]
    assert event["$ai_output_choices"] == [{"role": "assistant", "content": response.output_text}]
    assert event["$ai_input_tokens"] == response.usage.input_tokens
    assert event["$ai_output_tokens"] == response.usage.output_tokens
    assert (
        event["$ai_reasoning_tokens"] == response.usage.output_tokens_details.reasoning_tokens > 0
    )
    assert event["$ai_cache_read_input_tokens"] == 0
    assert event["$ai_model_parameters"] == {
        "max_output_tokens": 100,
        "reasoning": {"effort": "low"},
    }
    assert event["$ai_stop_reason"] == "stop"
    assert event["$ai_http_status"] == 200 and event["$ai_stream"] is False


def test_response_function_calls_in_openai_function_format(make_client, events):
    llm = make_client()
    response = llm.responses.create(model="gpt-4o-mini", input="Weather in Rome?", tools=[WEATHER])
    call = response.output[0]

    props = only(events("$ai_generation"))
    assert props["$ai_tools"] == [WEATHER]
    assert props["$ai_stop_reason"] == "tool_calls"
    assert props["$ai_output_choices"] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "type": "function",
                    "id": call.call_id,
                    "function": {"name": "get_weather", "arguments": call.arguments},
                }
            ],
        }
    ]


def test_function_calls_and_their_outputs_read_as_chat_messages_in_the_input(make_client, events):
    """The same tool round trip reads the same as through Chat Completions."""
    llm = make_client()
    items = [
        {"role": "user", "content": "Weather in Rome and Paris?"},
        {"type": "reasoning", "id": "rs_1", "summary": []},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{}"},
        {"type": "function_call", "call_id": "call_2", "name": "get_weather", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
        {"type": "function_call_output", "call_id": "call_2", "output": "rainy"},
    ]
    response = llm.responses.create(model="gpt-4o-mini", input=items, tools=[WEATHER])
    assert response.output_text.startswith("The tool returned")
    call = {"type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    assert only(events("$ai_generation"))["$ai_input"] == [
        {"role": "user", "content": "Weather in Rome and Paris?"},
        {"type": "reasoning", "id": "rs_1", "summary": []},  # other typed items as given
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{**call, "id": "call_1"}, {**call, "id": "call_2"}],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_2", "content": "rainy"},
    ]


def test_incomplete_response_reports_the_reason(make_client, events):
    llm = make_client()
    llm.responses.create(model="gpt-4o-mini", input="one two three four five", max_output_tokens=2)
    assert only(events("$ai_generation"))["$ai_stop_reason"] == "max_output_tokens"


def test_streamed_response_events_pass_unchanged_and_are_summed_up(make_client, events):
    llm = make_client()
    stream = llm.responses.create(model="gpt-4o-mini", input="stream this please", stream=True)
    seen = [event.type for event in stream]

    assert seen[0] == "response.created" and seen[-1] == "response.completed"
    assert "response.output_text.delta" in seen
    props = only(events("$ai_generation"))
    assert props["$ai_stream"] is True
    assert props["$ai_output_choices"] == [
        {"role": "assistant", "content": "Echo: stream this please"}
    ]
    assert props["$ai_input_tokens"] > 0 and props["$ai_output_tokens"] == 5
    assert 0 < props["$ai_time_to_first_token"] <= props["$ai_latency"]
    assert props["$ai_model"] == "gpt-4o-mini-2024-08-06"


def test_response_stream_helper_and_early_close(make_client, events):
    llm = make_client()
    with llm.responses.stream(model="gpt-4o-mini", input="helper stream") as stream:
        for _ in stream:
            pass
        final = stream.get_final_response()
    early = llm.responses.create(model="gpt-4o-mini", input="leave early", stream=True)
    next(iter(early))
    early.close()

    done, closed = (e["properties"] for e in events("$ai_generation"))
    assert done["$ai_output_choices"][0]["content"] == final.output_text
    assert "$ai_output_choices" not in closed and "$ai_stop_reason" not in closed
    assert closed["$ai_model"] == "gpt-4o-mini-2024-08-06"  # from response.created


def test_a_response_stream_closed_after_some_text_reports_the_text_read(make_client, events):
    # Only the last event carries the whole response: the text read was lost.
    llm = make_client()
    stream = llm.responses.create(model="gpt-4o-mini", input="leave after some text", stream=True)
    read = ""
    for event in stream:
        if event.type == "response.output_text.delta":
            read += event.delta
            break
    stream.close()
    props = only(events("$ai_generation"))
    assert read and props["$ai_output_choices"] == [{"role": "assistant", "content": read}]


def test_error_event_in_a_response_stream_is_reported(make_client, events):
    llm = make_client()
    kinds = [e.type for e in llm.responses.create(model="error-midstream", input="x", stream=True)]
    assert kinds == ["response.created", "error"]
    props = only(events("$ai_generation"))
    assert props["$ai_is_error"] is True
    assert "interrupted" in props["$ai_error"]


class Animal(pydantic.BaseModel):
    name: str
    legs: int


def test_responses_parse(make_client, events):
    llm = make_client()
    parsed = llm.responses.parse(model="gpt-4o-mini", input="hedgehog", text_format=Animal)
    assert parsed.output_parsed == Animal(name="hedgehog", legs=1)
    props = only(events("$ai_generation"))
    assert props["$ai_model_parameters"]["text"] == {
        "format": {"type": "json_schema", "name": "Animal"}
    }
    assert props["$ai_output_choices"][0]["content"] == parsed.output_text


async def test_async_responses_parse(make_client, events):
    from posthog_llm.integrations.openai import AsyncOpenAI

    llm = make_client(AsyncOpenAI)
    parsed = await llm.responses.parse(
        model="gpt-4o-mini", input="hedgehog", text_format=Animal, posthog_distinct_id="user_7"
    )
    assert parsed.output_parsed == Animal(name="hedgehog", legs=1)
    (event,) = events("$ai_generation")
    assert event["distinct_id"] == "user_7"
    props = event["properties"]
    assert props["$ai_model_parameters"]["text"] == {
        "format": {"type": "json_schema", "name": "Animal"}
    }
    assert props["$ai_output_choices"][0]["content"] == parsed.output_text
    assert props["$ai_input"] == [{"role": "user", "content": "hedgehog"}]
    await llm.close()


def test_embeddings(make_client, events, standin):
    llm = make_client()
    result = llm.embeddings.create(
        model="text-embedding-3-small", input=["first text", "second"], posthog_trace_id="t-emb"
    )

    assert len(result.data) == 2 and isinstance(result.data[0].embedding[0], float)
    assert standin.last_request().body["encoding_format"] == "base64"  # the SDK's own default
    props = only(events("$ai_embedding"))
    assert props["$ai_model"] == "text-embedding-3-small"
    assert props["$ai_input"] == ["first text", "second"]
    assert props["$ai_embedding_input_count"] == 2
    assert props["$ai_input_tokens"] == result.usage.prompt_tokens
    assert props["$ai_trace_id"] == "t-emb"
    assert props["$ai_http_status"] == 200
    assert events("$ai_generation") == []


def test_embedding_parameters_and_privacy(make_client, events):
    llm = make_client()
    llm.embeddings.create(
        model="text-embedding-3-small",
        input="secret text",
        dimensions=4,
        encoding_format="float",
        posthog_privacy_mode=True,
    )
    props = only(events("$ai_embedding"))
    assert "$ai_input" not in props
    assert props["$ai_model_parameters"] == {"dimensions": 4, "encoding_format": "float"}
    assert props["$ai_embedding_input_count"] == 1


class Named(pydantic.BaseModel):
    name: str


def test_beta_resources_are_tracked_where_the_sdk_has_them(make_client, events, standin):
    llm = make_client()
    beta = llm.beta
    if not hasattr(type(beta), "chat") and not hasattr(type(beta), "responses"):
        pytest.skip("this openai has neither beta.chat nor beta.responses")
    expected = 0
    if hasattr(type(beta), "chat"):
        reply = beta.chat.completions.parse(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}],
            response_format=Named, posthog_distinct_id="user-beta",
        )  # fmt: skip
        assert reply.choices[0].message.parsed == Named(name="hi")
        expected += 1
    if hasattr(type(beta), "responses"):
        response = beta.responses.create(model="gpt-4o-mini", input="hi", posthog_trace_id="t-b")
        assert response.output[0].content[0].text == "Echo: hi"
        expected += 1

    assert not any("posthog" in str(request) for request in standin.requests)
    found = events("$ai_generation")
    assert len(found) == expected
    for event in found:
        assert (
            event["properties"]["$ai_output_choices"] and event["properties"]["$ai_stream"] is False
        )
    if hasattr(type(beta), "chat"):
        assert found[0]["distinct_id"] == "user-beta"
    if hasattr(type(beta), "responses"):
        assert found[-1]["properties"]["$ai_trace_id"] == "t-b"


def test_hosted_tools_reasoning_and_custom_calls_are_part_of_the_output(client, events):
    # Web searches are counted (PostHog prices them per search); what the model did on OpenAI's
    # side, its reasoning summary and its custom and MCP tool calls are the answer's, as shown.
    body = {
        "id": "resp_1",
        "object": "response",
        "created_at": 1,
        "model": "gpt-5-2025-08-07",
        "status": "completed",
        "output": [
            {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Owls."}]},
            {"type": "web_search_call", "id": "ws_1", "status": "completed",
             "action": {"type": "search", "query": "owls"}},
            {"type": "web_search_call", "id": "ws_2", "status": "completed",
             "action": {"type": "search", "query": "owl diet"}},
            {"type": "custom_tool_call", "id": "ctc_1", "call_id": "call_9", "name": "run_sql",
             "input": "SELECT count(*) FROM owls"},
            {"type": "mcp_call", "id": "mcp_1", "server_label": "github", "name": "search_issues",
             "arguments": '{"q": "owls"}', "output": "[]"},
            {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
             "content": [{"type": "output_text", "text": "Owls eat mice.", "annotations": []}]},
        ],
        "usage": {"input_tokens": 30, "output_tokens": 12, "total_tokens": 42},
    }  # fmt: skip
    props = _generation_answered_with(
        body, client, events, lambda llm: llm.responses.create(model="gpt-5", input="Owls?")
    )
    assert props["$ai_web_search_count"] == 2
    (message,) = props["$ai_output_choices"]
    assert message["content"] == [
        {"type": "reasoning", "summary": ["Owls."]},
        {"type": "text", "text": "Owls eat mice."},
    ]
    calls = message["tool_calls"]
    assert [call["type"] for call in calls] == [
        "web_search_call",
        "web_search_call",
        "custom",
        "function",
    ]
    assert calls[0]["action"] == {"type": "search", "query": "owls"}
    assert calls[2]["custom"] == {"name": "run_sql", "input": "SELECT count(*) FROM owls"}
    assert calls[3]["function"]["name"] == "search_issues"
    assert calls[3]["server_label"] == "github"
    assert props["$ai_stop_reason"] == "tool_calls"  # the custom call is the client's to run


def test_a_search_models_citations_count_one_web_search(client, events):
    body = {
        "id": "x",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-search-preview",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {
                    "role": "assistant",
                    "content": "Owls eat mice.",
                    "annotations": [
                        {
                            "type": "url_citation",
                            "url_citation": {
                                "url": "https://example.org/owls",
                                "title": "Owls",
                                "start_index": 0,
                                "end_index": 4,
                            },
                        }
                    ],
                },
            }
        ],
        "usage": {"prompt_tokens": 7, "completion_tokens": 4, "total_tokens": 11},
    }
    props = _generation_answered_with(
        body,
        client,
        events,
        lambda llm: llm.chat.completions.create(
            model="gpt-4o-search-preview", messages=[{"role": "user", "content": "Owls?"}]
        ),
    )
    assert props["$ai_web_search_count"] == 1


def _generation_answered_with(body, client, events, make_call):
    """The generation of one call to a server that answers with `body` (a list: a stream)."""
    from posthog_llm.integrations.openai import OpenAI

    from tests.support.fixed_reply import FixedReply

    before = len(events("$ai_generation"))
    with FixedReply(body) as server:
        make_call(OpenAI(base_url=server.base_url, api_key="sk-x-123", posthog_client=client))
    found = events("$ai_generation")
    assert len(found) == before + 1
    return found[-1]["properties"]


def _chunk(model: str, delta: dict, finish: str | None = None) -> dict:
    """One chat completion chunk with one choice."""
    return {
        "id": "x",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def test_audio_tokens_go_out_in_the_providers_usage_block(client, events, make_client):
    # PostHog prices audio and image tokens at their own rates from `$ai_usage`.
    body = {
        "id": "x",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-audio-preview",
        "choices": [
            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Hi"}}
        ],
        "usage": {
            "prompt_tokens": 520,
            "completion_tokens": 4,
            "total_tokens": 524,
            "prompt_tokens_details": {"audio_tokens": 500, "cached_tokens": 0},
        },
    }
    props = _generation_answered_with(
        body,
        client,
        events,
        lambda llm: llm.chat.completions.create(
            model="gpt-4o-audio-preview", messages=[{"role": "user", "content": "Hi"}]
        ),
    )
    assert props["$ai_usage"]["prompt_tokens_details"]["audio_tokens"] == 500
    assert props["$ai_input_tokens"] == 520
    # A text-only call carries no usage block.
    make_client().chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}]
    )
    assert "$ai_usage" not in events("$ai_generation")[-1]["properties"]


def test_a_streamed_search_providers_citations_count_one_web_search(client, events):
    # Perplexity-style: the search results come on every chunk, streamed or not.
    def chunk(content: str | None, finish: str | None = None) -> dict:
        return {
            **_chunk("sonar", {"content": content}, finish),
            "citations": ["https://example.org/owls"],
        }

    def read(llm):
        stream = llm.chat.completions.create(
            model="sonar", messages=[{"role": "user", "content": "Owls?"}], stream=True
        )
        return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

    props = _generation_answered_with(
        [chunk("Owls "), chunk("eat mice.", "stop")], client, events, read
    )
    assert props["$ai_web_search_count"] == 1
    assert props["$ai_output_choices"] == [{"role": "assistant", "content": "Owls eat mice."}]


def test_a_search_models_streamed_url_citations_count_one_web_search(client, events):
    # Search-preview models stream their url citations in a delta of their own.
    citation = {
        "type": "url_citation",
        "url_citation": {"url": "https://example.org/owls", "title": "Owls"},
    }

    def chunk(delta: dict, finish: str | None = None) -> dict:
        return _chunk("gpt-4o-search-preview", delta, finish)

    def read(llm):
        stream = llm.chat.completions.create(
            model="gpt-4o-search-preview",
            messages=[{"role": "user", "content": "Owls?"}],
            stream=True,
        )
        return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

    props = _generation_answered_with(
        [chunk({"content": "Owls eat mice."}), chunk({"annotations": [citation]}, "stop")],
        client,
        events,
        read,
    )
    assert props["$ai_web_search_count"] == 1
    assert props["$ai_output_choices"] == [{"role": "assistant", "content": "Owls eat mice."}]
    # Without citations, no search is counted.
    plain = [chunk({"content": "Owls eat mice."}), chunk({"annotations": []}, "stop")]
    assert "$ai_web_search_count" not in _generation_answered_with(plain, client, events, read)


def test_a_parsed_answer_the_sdk_refuses_after_a_200_keeps_its_facts(client, events):
    # Cut at its token limit, `parse` raises LengthFinishReasonError: the call was answered
    # and billed, so its model, tokens, output and stop reason go with the error.
    class Cat(pydantic.BaseModel):
        name: str
        description: str

    body = {
        "id": "x",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {
                "index": 0,
                "finish_reason": "length",
                "message": {"role": "assistant", "content": '{"name": "Tom", "desc'},
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 8, "total_tokens": 20},
    }

    def parse(llm):
        with pytest.raises(openai.LengthFinishReasonError):
            llm.chat.completions.parse(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "Describe a cat"}],
                response_format=Cat,
                max_completion_tokens=8,
            )

    props = _generation_answered_with(body, client, events, parse)
    assert props["$ai_is_error"] is True
    assert "LengthFinishReasonError" in props["$ai_error"]
    assert props["$ai_http_status"] == 200
    assert props["$ai_model"] == "gpt-4o-mini-2024-07-18"
    assert (props["$ai_input_tokens"], props["$ai_output_tokens"]) == (12, 8)
    assert props["$ai_stop_reason"] == "length"
    assert props["$ai_output_choices"][0]["content"] == '{"name": "Tom", "desc'


def test_an_audio_answer_keeps_its_transcript_not_its_audio(client, events):
    wav = "UklGRg" + "A" * 4000  # base64 audio: never sent to PostHog
    message = {
        "role": "assistant",
        "content": None,
        "audio": {"id": "audio_1", "data": wav, "expires_at": 1, "transcript": "It is sunny."},
    }
    body = {
        "id": "x",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-audio-preview",
        "choices": [{"index": 0, "finish_reason": "stop", "message": message}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 30, "total_tokens": 35},
    }

    def chunk(delta: dict, finish: str | None = None) -> dict:
        return _chunk("gpt-4o-audio-preview", delta, finish)

    def ask(stream: bool):
        def call(llm):
            reply = llm.chat.completions.create(
                model="gpt-4o-audio-preview",
                modalities=["text", "audio"],
                audio={"voice": "alloy", "format": "wav"},
                messages=[{"role": "user", "content": "Weather?"}],
                stream=stream,
            )
            if stream:
                list(reply)

        return call

    unstreamed = _generation_answered_with(body, client, events, ask(False))
    streamed_body = [
        chunk({"role": "assistant", "audio": {"id": "audio_1", "transcript": "It is "}}),
        chunk({"audio": {"data": wav[:2000], "transcript": "sunny."}}),
        chunk({"audio": {"data": wav[2000:]}}, "stop"),
    ]
    streamed = _generation_answered_with(streamed_body, client, events, ask(True))
    for props in (unstreamed, streamed):
        [choice] = props["$ai_output_choices"]
        [block] = choice["content"]
        assert block["type"] == "audio" and block["transcript"] == "It is sunny."
        assert block["id"] == "audio_1"
        assert wav[:100] not in str(props)
    assert streamed["$ai_time_to_first_token"] is not None


def test_legacy_function_calling_reads_as_tools_and_a_tool_call(client, events):
    functions = [{"name": "get_weather", "parameters": {"type": "object", "properties": {}}}]
    body = {
        "id": "x",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "finish_reason": "function_call",
                "message": {
                    "role": "assistant",
                    "content": None,
                    "function_call": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                },
            }
        ],
    }

    def chunk(delta: dict, finish: str | None = None) -> dict:
        return _chunk("gpt-4o-mini", delta, finish)

    def ask(stream: bool):
        def call(llm):
            reply = llm.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "Weather in Paris?"}],
                functions=functions,
                function_call="auto",
                stream=stream,
            )
            if stream:
                list(reply)

        return call

    unstreamed = _generation_answered_with(body, client, events, ask(False))
    pieces = [
        chunk({"role": "assistant", "function_call": {"name": "get_weather", "arguments": ""}}),
        chunk({"function_call": {"arguments": '{"city": '}}),
        chunk({"function_call": {"arguments": '"Paris"}'}}, "function_call"),
    ]
    streamed = _generation_answered_with(pieces, client, events, ask(True))
    for props in (unstreamed, streamed):
        assert props["$ai_tools"] == [{"type": "function", "function": functions[0]}]
        [choice] = props["$ai_output_choices"]
        [call] = choice["tool_calls"]
        assert call["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
        assert props["$ai_stop_reason"] == "function_call"
