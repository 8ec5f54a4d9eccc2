"""Chat completions (plain, tools, parse, per-call arguments, context, privacy) on the stand-in."""

from __future__ import annotations

import uuid

import pytest

openai = pytest.importorskip("openai")

import posthog_llm  # noqa: E402
import pydantic  # noqa: E402
from posthog_llm.integrations.openai import OpenAI  # noqa: E402

from tests.support.events import only  # noqa: E402

HELLO = [{"role": "user", "content": "Tell me a fun fact about hedgehogs"}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def test_chat_completion_becomes_one_generation(make_client, events, standin):
    llm = make_client()
    reply = llm.chat.completions.create(
        model="gpt-4o-mini", messages=HELLO, temperature=0.3, max_tokens=50, user="end-user-1"
    )

    assert isinstance(reply, openai.types.chat.ChatCompletion)
    assert reply.choices[0].message.content == "Echo: Tell me a fun fact about hedgehogs"
    props = only(events("$ai_generation"))
    assert props["$ai_model"] == "gpt-4o-mini-2024-08-06"  # served snapshot, not the request
    assert props["$ai_provider"] == "local"  # a model served on this machine
    assert props["$ai_base_url"] == standin.base_url
    assert props["$ai_input"] == HELLO
    assert props["$ai_output_choices"] == [
        {"role": "assistant", "content": "Echo: Tell me a fun fact about hedgehogs"}
    ]
    assert props["$ai_input_tokens"] == reply.usage.prompt_tokens
    assert props["$ai_output_tokens"] == reply.usage.completion_tokens
    assert props["$ai_cache_read_input_tokens"] == 0
    assert props["$ai_reasoning_tokens"] == 0
    assert props["$ai_model_parameters"] == {"temperature": 0.3, "max_tokens": 50}
    assert props["$ai_http_status"] == 200
    assert props["$ai_stop_reason"] == "stop"
    assert props["$ai_stream"] is False
    assert isinstance(props["$ai_latency"], float) and 0 < props["$ai_latency"] < 60
    assert "$ai_framework" not in props
    assert "$ai_is_error" not in props
    uuid.UUID(props["$ai_trace_id"])  # a fresh UUID per call without posthog_trace_id
    assert props["$process_person_profile"] is False


def test_posthog_arguments_are_applied_and_never_sent_to_openai(make_client, events, standin):
    llm = make_client()
    llm.chat.completions.create(
        model="gpt-4o-mini",
        messages=HELLO,
        posthog_distinct_id="user_123",
        posthog_trace_id="trace_123",
        posthog_session_id="session_9",
        posthog_properties={"conversation_id": "abc123", "paid": True},
        posthog_groups={"company": "acme"},
        posthog_privacy_mode=False,
    )

    sent = standin.last_request("/chat/completions")
    assert not [key for key in sent.body if key.startswith("posthog")]
    assert sent.body["messages"] == HELLO
    event = events("$ai_generation")[0]
    props = event["properties"]
    assert event["distinct_id"] == "user_123"
    assert props["$ai_trace_id"] == "trace_123"
    assert props["$ai_session_id"] == "session_9"
    assert props["conversation_id"] == "abc123" and props["paid"] is True
    assert props["$groups"] == {"company": "acme"}
    assert "$process_person_profile" not in props
    assert props["$ai_input"] == HELLO


def test_context_applies_and_per_call_arguments_win(make_client, events):
    llm = make_client()
    with posthog_llm.context(distinct_id="ctx-user", trace_id="ctx-trace", properties={"a": 1}):
        llm.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
        llm.chat.completions.create(
            model="gpt-4o-mini",
            messages=HELLO,
            posthog_distinct_id="call-user",
            posthog_properties={"b": 2},
        )

    first, second = events("$ai_generation")
    assert first["distinct_id"] == "ctx-user"
    assert first["properties"]["$ai_trace_id"] == "ctx-trace"
    assert first["properties"]["a"] == 1
    assert second["distinct_id"] == "call-user"
    assert second["properties"]["$ai_trace_id"] == "ctx-trace"
    assert second["properties"]["a"] == 1 and second["properties"]["b"] == 2


def test_each_call_has_its_own_span_id_and_hangs_from_the_open_span(make_client, events):
    llm = make_client()
    with posthog_llm.context(trace_id="span-ids"):
        llm.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
        with posthog_llm.span("answer") as outer:
            llm.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    bare, nested = (e["properties"] for e in events("$ai_generation"))
    assert bare["$ai_span_id"] != nested["$ai_span_id"]
    assert "$ai_parent_id" not in bare
    assert nested["$ai_parent_id"] == outer.span_id
    assert nested["$ai_span_id"] != outer.span_id


def test_the_served_service_tier_is_sent_for_pricing(make_client, events):
    llm = make_client()
    llm.chat.completions.create(model="gpt-4o-mini", messages=HELLO, service_tier="flex")
    llm.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    stream = llm.chat.completions.create(
        model="gpt-4o-mini", messages=HELLO, service_tier="priority", stream=True
    )
    assert [chunk.service_tier for chunk in stream][0] == "priority"
    flex, default, streamed = (e["properties"] for e in events("$ai_generation"))
    assert flex["$ai_service_tier"] == "flex"  # PostHog prices flex and priority calls by it
    assert default["$ai_service_tier"] == "default"
    assert streamed["$ai_service_tier"] == "priority"  # every chunk names it


@pytest.mark.parametrize("where", ["call", "context", "client"])
def test_privacy_mode_drops_prompt_and_answer(make_client, events, sink, where):
    posthog = posthog_llm.Client(
        destination=sink, flush_interval=0.05, privacy_mode=where == "client"
    )
    llm = make_client(posthog_client=posthog)
    kwargs = {"posthog_privacy_mode": True} if where == "call" else {}
    with posthog_llm.context(privacy_mode=True if where == "context" else None):
        llm.chat.completions.create(model="gpt-4o-mini", messages=HELLO, **kwargs)
    assert posthog.flush(5)

    props = only(sink.named("$ai_generation"))
    assert "$ai_input" not in props and "$ai_output_choices" not in props
    assert props["$ai_input_tokens"] > 0 and props["$ai_model"].startswith("gpt-4o-mini")
    posthog.shutdown(5)


def test_per_call_privacy_false_does_not_undo_context_privacy(make_client, events):
    llm = make_client()
    with posthog_llm.context(privacy_mode=True):
        llm.chat.completions.create(model="gpt-4o-mini", messages=HELLO, posthog_privacy_mode=False)
    assert "$ai_input" not in only(events("$ai_generation"))


def test_tools_and_tool_calls_in_function_format(make_client, events):
    llm = make_client()
    reply = llm.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER_TOOL],
        tool_choice="auto",
    )
    call = reply.choices[0].message.tool_calls[0]

    props = only(events("$ai_generation"))
    assert props["$ai_tools"] == [WEATHER_TOOL]
    assert props["$ai_stop_reason"] == "tool_calls"
    assert props["$ai_model_parameters"] == {"tool_choice": "auto"}
    assert props["$ai_output_choices"] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "type": "function",
                    "id": call.id,
                    "function": {"name": "get_weather", "arguments": call.function.arguments},
                }
            ],
        }
    ]


def test_tool_results_and_sdk_messages_in_the_input(make_client, events):
    llm = make_client()
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    first = llm.chat.completions.create(
        model="gpt-4o-mini", messages=messages, tools=[WEATHER_TOOL]
    )
    assistant = first.choices[0].message  # an SDK object, as users pass it back
    messages += [
        assistant,
        {"role": "tool", "tool_call_id": assistant.tool_calls[0].id, "content": "sunny, 21 C"},
    ]
    second = llm.chat.completions.create(
        model="gpt-4o-mini", messages=messages, tools=[WEATHER_TOOL]
    )

    assert second.choices[0].message.content == "The tool returned: sunny, 21 C"
    props = events("$ai_generation")[1]["properties"]
    assert [m["role"] for m in props["$ai_input"]] == ["user", "assistant", "tool"]
    assert props["$ai_input"][1]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert props["$ai_input"][2]["tool_call_id"] == assistant.tool_calls[0].id


def test_cache_read_and_reasoning_tokens(make_client, events):
    llm = make_client()
    llm.chat.completions.create(model="o4-mini", messages=HELLO)
    again = llm.chat.completions.create(model="o4-mini", messages=HELLO)

    first, second = (e["properties"] for e in events("$ai_generation"))
    assert first["$ai_cache_read_input_tokens"] == 0
    assert (
        second["$ai_cache_read_input_tokens"] == again.usage.prompt_tokens_details.cached_tokens > 0
    )
    assert (
        second["$ai_reasoning_tokens"] == again.usage.completion_tokens_details.reasoning_tokens > 0
    )


class Step(pydantic.BaseModel):
    explanation: str
    output: str


class MathResponse(pydantic.BaseModel):
    steps: list[Step]
    final_answer: str


def test_parse_returns_the_parsed_model_and_is_tracked(make_client, events, standin):
    llm = make_client()
    completion = llm.chat.completions.parse(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "solve 8x + 31 = 2"}],
        response_format=MathResponse,
    )

    parsed = completion.choices[0].message.parsed
    assert isinstance(parsed, MathResponse) and parsed.final_answer == "solve 8x + 31 = 2"
    assert standin.last_request().body["response_format"]["type"] == "json_schema"
    props = only(events("$ai_generation"))
    assert props["$ai_model_parameters"]["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "MathResponse"},
    }
    assert '"final_answer"' in props["$ai_output_choices"][0]["content"]


def test_messages_given_as_an_iterator_reach_both_openai_and_the_event(
    make_client, events, standin
):
    llm = make_client()
    llm.chat.completions.create(model="gpt-4o-mini", messages=(m for m in HELLO))
    assert standin.last_request().body["messages"] == HELLO
    assert only(events("$ai_generation"))["$ai_input"] == HELLO


def test_messages_changed_after_the_call_do_not_change_the_event(make_client, events):
    llm = make_client()
    messages = list(HELLO)
    reply = llm.chat.completions.create(model="gpt-4o-mini", messages=messages)
    messages.append(reply.choices[0].message)  # the usual next step, before the worker runs
    messages.append({"role": "user", "content": "and another"})
    assert only(events("$ai_generation"))["$ai_input"] == HELLO


def test_only_allow_listed_parameters_are_recorded(make_client, events):
    llm = make_client()
    llm.chat.completions.create(
        model="gpt-4o-mini",
        messages=HELLO,
        seed=7,
        metadata={"k": "v"},
        extra_headers={"X-Internal-Token": "tok-should-not-leak"},
        extra_body={"secret_field": "x"},
    )
    props = only(events("$ai_generation"))
    assert props["$ai_model_parameters"] == {"seed": 7}
    assert "tok-should-not-leak" not in str(props)


def test_results_are_the_sdks_own_objects(make_client, standin):
    tracked = make_client()
    plain = openai.OpenAI(base_url=standin.base_url, api_key="sk-plain-key-123", max_retries=0)
    ours = tracked.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    theirs = plain.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert type(ours) is type(theirs)
    assert ours.model_dump(exclude={"id", "created", "usage"}) == theirs.model_dump(
        exclude={"id", "created", "usage"}
    )
    assert isinstance(tracked, openai.OpenAI)
    assert isinstance(tracked.chat.completions, openai.resources.chat.Completions)


def test_with_raw_response_and_with_streaming_response_are_tracked(make_client, events):
    llm = make_client()
    raw = llm.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=HELLO, posthog_distinct_id="raw-user"
    )
    assert raw.headers["x-request-id"].startswith("req_standin")
    assert raw.parse().choices[0].message.content.startswith("Echo:")
    with llm.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", messages=HELLO, posthog_distinct_id="streamed-user"
    ) as response:
        assert response.parse().choices[0].message.content.startswith("Echo:")

    found = events("$ai_generation")
    assert [e["distinct_id"] for e in found] == ["raw-user", "streamed-user"]


def test_other_endpoints_pass_through_untracked(make_client, events):
    llm = make_client()
    assert "gpt-4o-mini" in [m.id for m in llm.models.list()]
    assert llm.models.retrieve("gpt-4o").id == "gpt-4o"
    assert events() == []


def test_disabled_client_sends_nothing_but_still_strips_arguments(make_client, standin, sink):
    off = posthog_llm.Client(destination=sink, disabled=True)
    llm = make_client(posthog_client=off)
    llm.chat.completions.create(model="gpt-4o-mini", messages=HELLO, posthog_distinct_id="u")
    assert "posthog_distinct_id" not in standin.last_request().body
    off.flush(1)
    assert sink.events == []


def test_default_client_is_used_without_posthog_client(standin, client, sink):
    posthog_llm.set_client(client)
    llm = OpenAI(base_url=standin.base_url, api_key="sk-default-123456", max_retries=0)
    llm.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    client.flush(5)
    assert len(sink.named("$ai_generation")) == 1


def test_a_posthog_argument_of_the_wrong_type_is_left_out_not_raised(
    make_client, standin, events, caplog, monkeypatch
):
    # The call goes out as asked; the bad value is left out (and said in the log), the rest of
    # the call's overrides are kept. The warning's rate limit is process-wide: start afresh.
    from posthog_llm import _tracked
    from posthog_llm._sender_stats import RateLimitedWarning

    monkeypatch.setattr(_tracked, "_argument_warning", RateLimitedWarning(60.0))
    llm = make_client()
    reply = llm.chat.completions.create(
        model="gpt-4o-mini",
        messages=HELLO,
        posthog_properties=["x"],
        posthog_privacy_mode="yes",
        posthog_distinct_id="user-7",
    )
    assert reply.choices[0].message.content
    assert len(standin.requests) == 1
    (event,) = events("$ai_generation")
    assert event["distinct_id"] == "user-7"
    assert "$ai_input" in event["properties"]  # "yes" is not privacy mode
    assert "properties must be a mapping" in caplog.text


def test_the_messages_are_recorded_as_sent_even_if_the_caller_edits_them_after(make_client, events):
    llm = make_client()
    messages = [{"role": "user", "content": "what was sent"}]
    llm.chat.completions.create(model="gpt-4o-mini", messages=messages)
    messages[0]["content"] = "edited after the call"
    messages.append({"role": "user", "content": "appended after the call"})
    (event,) = events("$ai_generation")
    assert event["properties"]["$ai_input"] == [{"role": "user", "content": "what was sent"}]


def test_a_choice_without_a_message_drops_only_the_output(client, events):
    # An OpenAI-compatible server's answer: the model, usage and stop reason are still read.
    from tests.support.fixed_reply import FixedReply

    body = {
        "id": "x",
        "object": "chat.completion",
        "created": 1,
        "model": "served-m",
        "choices": [{"index": 0, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9},
    }
    with FixedReply(body) as server:
        llm = OpenAI(base_url=server.base_url, api_key="sk-x-123", posthog_client=client)
        llm.chat.completions.create(model="asked-m", messages=[{"role": "user", "content": "hi"}])
    props = only(events("$ai_generation"))
    assert props["$ai_model"] == "served-m"
    assert props["$ai_input_tokens"] == 7 and props["$ai_output_tokens"] == 2
    assert props["$ai_stop_reason"] == "stop"
    assert not props.get("$ai_output_choices")
