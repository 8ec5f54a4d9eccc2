"""What one chain call sends: the trace, its spans and its generation, with every fact."""

from __future__ import annotations

import sys

import pytest

pytest.importorskip("langchain_core")

from langchain_core.messages import (  # noqa: E402
    AIMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.runnables import RunnableLambda  # noqa: E402
from posthog_llm._serialize import BASE64_PLACEHOLDER  # noqa: E402

from tests.integrations.langchain.fakes import (  # noqa: E402
    ProviderChatModel,
    StatusError,
    assert_well_formed,
    chain,
    model,
    reply,
)


def test_invoke_sends_trace_spans_and_generation(handler, events):
    result = chain().invoke({"question": "What do owls eat?"}, config={"callbacks": [handler]})

    assert result == "Owls eat mice."
    sent = events()
    assert [e["event"] for e in sent] == ["$ai_span", "$ai_generation", "$ai_span", "$ai_trace"]
    assert_well_formed(sent)
    prompt, generation, parser, trace = sent
    trace_id = trace["properties"]["$ai_trace_id"]

    assert trace["properties"]["$ai_span_name"] == "RunnableSequence"
    assert trace["properties"]["$ai_input_state"] == {"question": "What do owls eat?"}
    assert trace["properties"]["$ai_output_state"] == "Owls eat mice."
    assert "$ai_parent_id" not in trace["properties"]
    assert trace["properties"]["$ai_latency"] > 0

    assert prompt["properties"]["$ai_span_name"] == "ChatPromptTemplate"
    assert prompt["properties"]["$ai_parent_id"] == trace_id
    assert prompt["properties"]["$ai_output_state"] == [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What do owls eat?"},
    ]
    assert parser["properties"]["$ai_span_name"] == "StrOutputParser"
    assert parser["properties"]["$ai_input_state"] == {
        "role": "assistant",
        "content": "Owls eat mice.",
    }

    g = generation["properties"]
    assert g["$ai_parent_id"] == trace_id
    assert g["$ai_span_id"] not in (trace_id, prompt["properties"]["$ai_span_id"])
    assert g["$ai_span_name"] == "ProviderChatModel"
    assert g["$ai_provider"] == "openai"
    assert g["$ai_model"] == "gpt-4o-mini"
    assert g["$ai_model_parameters"] == {"temperature": 0.2, "max_tokens": 256}
    assert g["$ai_input"] == [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What do owls eat?"},
    ]
    assert g["$ai_output_choices"] == [{"role": "assistant", "content": "Owls eat mice."}]
    assert (g["$ai_input_tokens"], g["$ai_output_tokens"]) == (25, 10)
    assert g["$ai_http_status"] == 200
    assert g["$ai_stream"] is False
    assert "$ai_time_to_first_token" not in g
    assert 0 < g["$ai_latency"] < trace["properties"]["$ai_latency"]
    assert "sk-secret-never-sent" not in str(sent)


def test_a_root_llm_call_is_one_generation_alone(handler, events):
    llm = model(reply("Hoot.", response_metadata={"model_name": "gpt-4o-mini-2024-07-18"}))
    assert llm.invoke("Say hoot", config={"callbacks": [handler]}).content == "Hoot."

    sent = events()
    assert [e["event"] for e in sent] == ["$ai_generation"]
    props = sent[0]["properties"]
    assert props["$ai_trace_id"] == props["$ai_span_id"] == sent[0]["distinct_id"]
    assert "$ai_parent_id" not in props
    assert props["$ai_model"] == "gpt-4o-mini-2024-07-18"  # the served snapshot
    assert props["$ai_input"] == [{"role": "user", "content": "Say hoot"}]


def test_stream_reports_real_input_stream_flag_and_time_to_first_token(handler, events):
    llm = model(reply("Owls eat mice and voles.", response_metadata={"finish_reason": "stop"}))
    chunks = list(chain(llm).stream({"question": "Owls?"}, config={"callbacks": [handler]}))

    assert "".join(chunks) == "Owls eat mice and voles."
    sent = events()
    assert_well_formed(sent)
    (trace,) = [e for e in sent if e["event"] == "$ai_trace"]
    # LangChain starts a streamed chain with a placeholder input and delivers it at the end.
    assert trace["properties"]["$ai_input_state"] == {"question": "Owls?"}
    assert trace["properties"]["$ai_output_state"] == "Owls eat mice and voles."
    (generation,) = [e["properties"] for e in sent if e["event"] == "$ai_generation"]
    assert generation["$ai_stream"] is True
    assert 0 <= generation["$ai_time_to_first_token"] <= generation["$ai_latency"]
    assert generation["$ai_output_choices"] == [
        {"role": "assistant", "content": "Owls eat mice and voles."}
    ]
    assert (generation["$ai_input_tokens"], generation["$ai_output_tokens"]) == (25, 10)
    assert generation["$ai_stop_reason"] == "stop"
    parser = [e for e in sent if e["properties"].get("$ai_span_name") == "StrOutputParser"]
    assert parser[0]["properties"]["$ai_input_state"]["content"] == "Owls eat mice and voles."


def test_messages_tool_calls_and_multimodal_parts_in_openai_form(handler, events):
    tool_call = {"name": "get_weather", "args": {"city": "Paris"}, "id": "call_1"}
    llm = model(reply("", tool_calls=[tool_call]))
    image = "data:image/png;base64," + "iVBORw0KGgo" * 500
    history = [
        SystemMessage("Be brief."),
        HumanMessage(
            content=[
                {"type": "text", "text": "What is in this picture?"},
                {"type": "image_url", "image_url": {"url": image}},
                {
                    "type": "image",
                    "source_type": "base64",
                    "data": "AAAA" * 400,
                    "mime_type": "image/jpeg",
                },
            ]
        ),
        AIMessage("", tool_calls=[{"name": "lookup", "args": {"q": "owl"}, "id": "call_0"}]),
        ToolMessage("An owl.", tool_call_id="call_0"),
    ]
    llm.invoke(history, config={"callbacks": [handler]})

    (generation,) = events("$ai_generation")
    messages = generation["properties"]["$ai_input"]
    assert messages[0] == {"role": "system", "content": "Be brief."}
    parts = messages[1]["content"]
    assert parts[0] == {"type": "text", "text": "What is in this picture?"}
    assert parts[1]["image_url"]["url"] == f"data:image/png;base64,{BASE64_PLACEHOLDER}"
    assert parts[2] == {
        "type": "image_url",
        "image_url": {"url": f"data:image/jpeg;base64,{BASE64_PLACEHOLDER}"},
    }
    assert messages[2] == {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "type": "function",
                "id": "call_0",
                "function": {"name": "lookup", "arguments": '{"q": "owl"}'},
            }
        ],
    }
    assert messages[3] == {"role": "tool", "content": "An owl.", "tool_call_id": "call_0"}
    (choice,) = generation["properties"]["$ai_output_choices"]
    assert choice["tool_calls"] == [
        {
            "type": "function",
            "id": "call_1",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        }
    ]
    assert "iVBORw0KGgo" not in str(generation)


def test_tools_given_to_the_model_are_reported(handler, events):
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    mcp = {"type": "mcp", "server_url": "https://mcp.example", "headers": {"Authorization": "x"}}
    model().bind(tools=[*tools, mcp]).invoke("hi", config={"callbacks": [handler]})

    (generation,) = events("$ai_generation")
    reported = generation["properties"]["$ai_tools"]
    assert reported[0] == tools[0]
    assert reported[1]["server_url"] == "https://mcp.example"
    assert reported[1]["headers"] == "[REDACTED]"


def test_provider_is_named_by_an_openai_compatible_base_url(handler, events):
    llm = model(base_url="https://user:secret@api.groq.com/openai/v1?key=abc")
    llm.invoke("hi", config={"callbacks": [handler]})

    props = events("$ai_generation")[0]["properties"]
    assert props["$ai_provider"] == "groq"
    assert props["$ai_base_url"] == "https://api.groq.com/openai/v1"
    assert "secret" not in str(props)


def test_chain_error_reaches_the_user_untouched_and_is_reported(handler, events):
    def explode(_: object) -> str:
        raise ValueError("boom")

    failing = chain() | RunnableLambda(explode)
    with pytest.raises(ValueError, match="^boom$"):
        failing.invoke({"question": "Owls?"}, config={"callbacks": [handler]})

    sent = events()
    (trace,) = [e for e in sent if e["event"] == "$ai_trace"]
    assert trace["properties"]["$ai_is_error"] is True
    assert trace["properties"]["$ai_error"] == "ValueError: boom"
    (step,) = [e for e in sent if e["properties"].get("$ai_span_name") == "explode"]
    assert step["properties"]["$ai_is_error"] is True
    assert step["properties"]["$ai_parent_id"] == trace["properties"]["$ai_trace_id"]
    assert len(handler._runs) == 0


def test_llm_error_carries_http_status(handler, events):
    llm = model(error=StatusError("rate limited", 429))
    with pytest.raises(StatusError):
        chain(llm).invoke({"question": "Owls?"}, config={"callbacks": [handler]})

    (generation,) = events("$ai_generation")
    props = generation["properties"]
    assert props["$ai_is_error"] is True
    assert props["$ai_error"] == "StatusError: rate limited"
    assert props["$ai_http_status"] == 429
    assert props["$ai_input"][1] == {"role": "user", "content": "Owls?"}


def test_completion_llm_prompts_become_user_messages(handler, events):
    from langchain_core.language_models.fake import FakeListLLM

    llm = FakeListLLM(responses=["Hoot hoot."])
    assert llm.invoke("Say hoot", config={"callbacks": [handler]}) == "Hoot hoot."

    (generation,) = events("$ai_generation")
    assert generation["properties"]["$ai_input"] == [{"role": "user", "content": "Say hoot"}]
    assert generation["properties"]["$ai_output_choices"] == [
        {"role": "assistant", "content": "Hoot hoot."}
    ]


def test_history_appended_after_the_call_does_not_rewrite_the_input(handler, events):
    history = [HumanMessage("first")]
    model().invoke(history, config={"callbacks": [handler]})
    history.append(HumanMessage("second"))  # agents reuse and extend the same list

    (generation,) = events("$ai_generation")
    assert generation["properties"]["$ai_input"] == [{"role": "user", "content": "first"}]


def test_tool_and_retriever_runs_are_spans(handler, events):
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever
    from langchain_core.tools import tool

    @tool
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    class Shelf(BaseRetriever):
        def _get_relevant_documents(self, query: str, *, run_manager=None) -> list[Document]:
            return [Document(page_content=f"About {query}", metadata={"id": 1})]

    pipeline = RunnableLambda(lambda q: Shelf().invoke(q)) | RunnableLambda(
        lambda docs: add.invoke({"a": len(docs), "b": 1})
    )
    assert pipeline.invoke("owls", config={"callbacks": [handler]}) == 2

    spans = {e["properties"]["$ai_span_name"]: e["properties"] for e in events("$ai_span")}
    assert spans["Shelf"]["$ai_span_type"] == "retriever"
    assert spans["Shelf"]["$ai_input_state"] == "owls"
    assert spans["Shelf"]["$ai_output_state"] == [
        {"page_content": "About owls", "metadata": {"id": 1}}
    ]
    assert spans["add"]["$ai_span_type"] == "tool"
    assert spans["add"]["$ai_input_state"] == {"a": 1, "b": 1}
    assert spans["add"]["$ai_output_state"] == 2
    # The tool runs inside the second lambda: its parent is that lambda's span.
    lambdas = [
        p for name, p in spans.items() if name.startswith("RunnableLambda") or name == "<lambda>"
    ]
    assert spans["add"]["$ai_parent_id"] in {p["$ai_span_id"] for p in lambdas}


class _HTTPResponse:
    """What langchain-core reads from a provider error's `response` (httpx's shape)."""

    status_code = 500
    headers = {"content-type": "application/json"}

    def json(self) -> dict:
        return {"error": {"message": "server error"}}


def test_a_failed_call_has_no_output_even_with_langchains_stand_in_message(handler, events):
    # langchain-core hands on_llm_error an empty AIMessage built from the HTTP error.
    error = StatusError("server error", 500)
    error.response = _HTTPResponse()  # type: ignore[attr-defined]
    with pytest.raises(StatusError):
        model(error=error).invoke("Owls?", config={"callbacks": [handler]})
    (generation,) = events("$ai_generation")
    props = generation["properties"]
    assert props["$ai_is_error"] is True
    assert props["$ai_http_status"] == 500
    assert "$ai_output_choices" not in props


class _StreamingSetting(ProviderChatModel):
    streaming: bool = False

    @property
    def _identifying_params(self) -> dict:
        return {**super()._identifying_params, "stream": self.streaming}


def test_stream_on_a_model_built_without_streaming_says_it_streamed(handler, events):
    llm = _StreamingSetting(messages=iter([reply()]))
    assert "".join(c.content for c in llm.stream("Owls?", config={"callbacks": [handler]}))
    (generation,) = events("$ai_generation")
    props = generation["properties"]
    assert props["$ai_stream"] is True
    assert props["$ai_model_parameters"]["stream"] is True
    llm = _StreamingSetting(messages=iter([reply()]))
    llm.invoke("Owls?", config={"callbacks": [handler]})
    props = events("$ai_generation")[-1]["properties"]
    assert props["$ai_model_parameters"]["stream"] is False


def test_a_structured_output_class_is_named_as_the_openai_drop_in_names_it(handler, events):
    from pydantic import BaseModel

    class Person(BaseModel):
        name: str
        age: int

    # What `ChatOpenAI.with_structured_output(Person)` binds (its default json_schema method).
    llm = model(reply('{"name": "Ada", "age": 36}')).bind(response_format=Person)
    llm.invoke("a person", config={"callbacks": [handler]})
    (generation,) = events("$ai_generation")
    assert generation["properties"]["$ai_model_parameters"]["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "Person"},
    }


class _SlotsError(Exception):
    __slots__ = ("status_code",)

    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


def _not_an_int() -> Exception:
    import pydantic

    class Person(pydantic.BaseModel):
        age: int

    try:
        Person(age="old")  # type: ignore[arg-type]
    except pydantic.ValidationError as exc:
        return exc
    raise AssertionError("validated")


_FAILURES = [
    pytest.param(lambda: ValueError("rejected"), "ValueError: rejected", id="plain"),
    # Errors a copy made without their __init__ cannot stand for: stood for by their text.
    pytest.param(
        lambda: UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad"),
        "UnicodeDecodeError: ",
        id="builtin-init",
    ),
    pytest.param(_not_an_int, "ValidationError: 1 validation error", id="pydantic"),
    pytest.param(
        lambda: _SlotsError("upstream overloaded", 503), "_SlotsError: upstream", id="slots"
    ),
]
if sys.version_info >= (3, 11):  # a group's members keep their own frames
    _FAILURES.append(
        pytest.param(
            lambda: ExceptionGroup("checks", [ValueError("a")]),  # noqa: F821
            "ExceptionGroup: checks",
            id="group",
        )
    )


@pytest.mark.parametrize(("make_error", "expected"), _FAILURES)
def test_a_stream_failing_in_a_later_step_is_sent_once_the_caller_lets_the_error_go(
    handler, events, make_error, expected
):
    import threading

    from langchain_core.callbacks import BaseCallbackHandler
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.runnables import RunnableGenerator

    ended_on: list[str] = []

    class Watch(BaseCallbackHandler):
        def on_llm_end(self, *args: object, **kwargs: object) -> None:
            ended_on.append(threading.current_thread().name)

    def guard(chunks):  # a check on the streamed text that rejects it midway
        for i, chunk in enumerate(chunks):
            if i == 2:
                raise make_error()
            yield chunk

    streamed = model(reply("a b c d e")) | StrOutputParser() | RunnableGenerator(guard)
    try:
        for _ in streamed.stream("hi", config={"callbacks": [handler, Watch()]}):
            pass
    except Exception as exc:
        status = getattr(exc, "status_code", None)
    # LangChain ends the model's run when its stream generator is let go, as without us: the
    # trace holds no frame of the failed stream, so the whole trace is sent by this flush.
    sent = events()
    assert ended_on == [threading.current_thread().name]
    (trace,) = [e["properties"] for e in sent if e["event"] == "$ai_trace"]
    assert trace["$ai_error"].startswith(expected)
    assert trace.get("$ai_http_status") == status  # what the error says of it, slots too
    assert len(events("$ai_generation")) == 1
    assert len(handler._runs) == 0
