"""Chat engines (one trace per turn) and workflow agents (steps, tools, tool definitions)."""

from __future__ import annotations

import pytest

pytest.importorskip("llama_index.core")

from .fakes import ANSWER, events  # noqa: E402


def by_event(evts, name):
    return [e["properties"] for e in evts if e["event"] == name]


def test_condense_plus_context_chat_gives_one_trace_per_turn(index, handler, client, sink):
    engine = index.as_chat_engine(chat_mode="condense_plus_context")
    assert str(engine.chat("Tell me about cats")) == ANSWER
    assert str(engine.chat("And how long do they sleep?")) == ANSWER

    evts = events(client, sink)
    traces = by_event(evts, "$ai_trace")
    assert [t["$ai_span_name"] for t in traces] == ["CondensePlusContextChatEngine.chat"] * 2
    assert [t["$ai_input_state"] for t in traces] == [
        "Tell me about cats",
        "And how long do they sleep?",
    ]
    assert all(t["$ai_output_state"] == ANSWER for t in traces)
    first, second = (t["$ai_trace_id"] for t in traces)
    assert first != second
    gens = by_event(evts, "$ai_generation")
    # Turn 1 answers directly; turn 2 first condenses the question, then answers.
    assert sorted(g["$ai_trace_id"] for g in gens) == sorted([first, second, second])
    condense = next(g for g in gens if g["$ai_trace_id"] == second and g["$ai_parent_id"] == second)
    assert "Follow Up Input: And how long do they sleep?" in condense["$ai_input"][0]["content"]
    assert all(g["$ai_input_tokens"] > 0 for g in gens)
    for trace_id in (first, second):
        names = sorted(
            s["$ai_span_type"] for s in by_event(evts, "$ai_span") if s["$ai_trace_id"] == trace_id
        )
        assert names == ["retrieve", "synthesize"]


async def test_function_agent_steps_tools_and_tool_definitions(settings, handler, client, sink):
    from llama_index.core.agent.workflow import FunctionAgent
    from llama_index.core.llms.mock import MockFunctionCallingLLM
    from llama_index.core.tools import FunctionTool

    def add(a: int = 1, b: int = 2) -> int:
        """Add two numbers."""
        return a + b

    agent = FunctionAgent(tools=[FunctionTool.from_defaults(add)], llm=MockFunctionCallingLLM())
    result = await agent.run("add 1 and 2")
    assert "Tool calls complete" in str(result)

    evts = events(client, sink)
    (trace,) = by_event(evts, "$ai_trace")
    assert trace["$ai_span_name"] == "FunctionAgent.run"
    assert trace["$ai_input_state"]["user_msg"] == "add 1 and 2"
    assert trace["$ai_output_state"] == "Tool calls complete."
    trace_id = trace["$ai_trace_id"]
    spans = by_event(evts, "$ai_span")
    assert all(s["$ai_trace_id"] == trace_id for s in spans)
    step_names = [s["$ai_span_name"] for s in spans if s["$ai_span_type"] == "step"]
    # Agent steps under the agent's name, the tool under its own.
    assert sorted(step_names) == [
        "Agent.run_agent_step",
        "Agent.run_agent_step",
        "BaseWorkflowAgent.call_tool",
    ]
    (tool,) = [s for s in spans if s["$ai_span_type"] == "tool"]
    call_tool = next(s for s in spans if s["$ai_span_name"] == "BaseWorkflowAgent.call_tool")
    assert tool["$ai_span_name"] == "add"
    assert tool["$ai_input_state"] == {"a": 1, "b": 2}
    assert tool["$ai_parent_id"] == call_tool["$ai_span_id"]
    assert tool["$ai_output_state"] == "3"
    gens = by_event(evts, "$ai_generation")
    assert len(gens) == 2
    steps = {s["$ai_span_id"] for s in spans if s["$ai_span_name"].endswith("run_agent_step")}
    assert {g["$ai_parent_id"] for g in gens} == steps
    first = min(gens, key=lambda g: len(g["$ai_input"]))
    assert first["$ai_tools"][0]["function"]["name"] == "add"
    (call,) = first["$ai_output_choices"][0]["tool_calls"]
    assert call["type"] == "function" and call["function"]["name"] == "add"
    assert len(evts) <= 12


@pytest.mark.parametrize("streaming", [False, True])
async def test_a_react_agents_generation_reports_the_text_the_llm_returned(
    settings, handler, client, sink, streaming
):
    # ReActAgent cuts the final response's text to what follows "Answer:", in place, after
    # the call ended; the event is built later and must still say what the model said.
    from llama_index.core.agent.workflow import ReActAgent
    from llama_index.core.llms import ChatMessage, ChatResponse, LLMMetadata, MockLLM
    from llama_index.core.llms.callbacks import llm_chat_callback
    from llama_index.core.tools import FunctionTool

    final = "Thought: I can answer without using any more tools.\nAnswer: 5"

    class ReactLLM(MockLLM):
        @property
        def metadata(self) -> LLMMetadata:
            return LLMMetadata(is_chat_model=True)

        @llm_chat_callback()
        async def achat(self, messages, **kwargs):
            return ChatResponse(message=ChatMessage(role="assistant", content=final))

        @llm_chat_callback()
        async def astream_chat(self, messages, **kwargs):
            async def gen():
                yield ChatResponse(
                    message=ChatMessage(role="assistant", content=final), delta=final
                )

            return gen()

    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    agent = ReActAgent(tools=[FunctionTool.from_defaults(add)], llm=ReactLLM(), streaming=streaming)
    result = await agent.run("2+3?")
    assert "5" in str(result)
    (gen,) = by_event(events(client, sink), "$ai_generation")
    assert gen["$ai_output_choices"][0]["content"] == final


async def test_a_multi_agent_workflow_names_its_steps_after_the_agent_running_them(
    settings, handler, client, sink
):
    from llama_index.core.agent.workflow import AgentWorkflow, FunctionAgent
    from llama_index.core.llms.mock import MockFunctionCallingLLM
    from llama_index.core.tools import FunctionTool
    from llama_index.core.workflow import Context

    def add(ctx: Context, a: int = 1, b: int = 2) -> int:
        """Add two numbers."""
        return a + b

    worker = FunctionAgent(
        name="Worker",
        description="adds",
        tools=[FunctionTool.from_defaults(add)],
        llm=MockFunctionCallingLLM(),
    )
    await AgentWorkflow(agents=[worker], root_agent="Worker").run("add 1 and 2")
    spans = by_event(events(client, sink), "$ai_span")
    names = {s["$ai_span_name"] for s in spans}
    assert "Worker.run_agent_step" in names and "add" in names
    (tool,) = [s for s in spans if s["$ai_span_name"] == "add"]
    assert tool["$ai_input_state"] == {"a": 1, "b": 2}  # the workflow's ctx left out


async def test_a_workflow_run_is_one_trace_with_its_start_and_typed_stop_fields(
    handler, client, sink
):
    from llama_index.core.workflow import StartEvent, StopEvent, Workflow, step

    class Answer(StopEvent):
        answer: str
        sources: list[str]

    class Rag(Workflow):
        @step
        async def go(self, ev: StartEvent) -> Answer:
            return Answer(answer=f"About {ev.question}", sources=["doc1"])

    result = await Rag(timeout=10).run(question="hedgehogs")
    assert result.answer == "About hedgehogs"
    assert client.flush(5)
    (trace,) = [e["properties"] for e in sink.events if e["event"] == "$ai_trace"]
    assert trace["$ai_input_state"] == {"question": "hedgehogs"}
    assert trace["$ai_output_state"] == {"answer": "About hedgehogs", "sources": ["doc1"]}


def test_a_model_call_that_runs_tools_is_a_trace_holding_them(handler, client, sink):
    # `llm.predict_and_call(tools)` alone: its tool steps need the trace they sit under.
    mock = pytest.importorskip("llama_index.core.llms.mock")
    if not hasattr(mock, "MockFunctionCallingLLM"):
        pytest.skip("this llama-index-core has no tool-calling mock")
    from llama_index.core.tools import FunctionTool

    def add(a: int = 2, b: int = 3) -> int:
        """Add two numbers."""
        return a + b

    llm = mock.MockFunctionCallingLLM()
    result = llm.predict_and_call([FunctionTool.from_defaults(add)], user_msg="add 2 and 3")
    assert str(result) == "5"
    evts = events(client, sink)
    (trace,) = by_event(evts, "$ai_trace")
    (tool,) = [s for s in by_event(evts, "$ai_span") if s["$ai_span_name"] == "add"]
    assert trace["$ai_span_name"].endswith("predict_and_call")
    assert tool["$ai_parent_id"] == trace["$ai_trace_id"] == tool["$ai_trace_id"]
    # A bare model call without steps stays its generation alone.
    sink.clear()
    llm.chat([])
    assert not by_event(events(client, sink), "$ai_trace")
