"""LangGraph: node spans under the graph's trace; interrupts are control flow, not errors."""

from __future__ import annotations

from typing import Annotated, TypedDict

import pytest

pytest.importorskip("langchain_core")
pytest.importorskip("langgraph")

from langchain_core.messages import AnyMessage, HumanMessage  # noqa: E402
from langgraph.checkpoint.memory import InMemorySaver  # noqa: E402
from langgraph.graph import END, START, StateGraph  # noqa: E402
from langgraph.graph.message import add_messages  # noqa: E402
from langgraph.types import Command, interrupt  # noqa: E402

from tests.integrations.langchain.fakes import assert_well_formed, model, reply  # noqa: E402


class State(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    approved: str


def _graph(checkpointer=None):
    llm = model(reply("Owls hunt at night."))

    def think(state: State) -> dict:
        return {"messages": [llm.invoke(state["messages"])]}

    def approve(state: State) -> dict:
        return {"approved": interrupt("Send this answer?")}

    builder = StateGraph(State)
    builder.add_node("think", think)
    builder.add_node("approve", approve)
    builder.add_edge(START, "think")
    builder.add_edge("think", "approve")
    builder.add_edge("approve", END)
    return builder.compile(checkpointer=checkpointer)


def test_graph_nodes_and_llm_calls_nest_under_the_graph_trace(handler, events):
    graph = _graph(InMemorySaver())
    config = {"callbacks": [handler], "configurable": {"thread_id": "t1"}}
    graph.invoke({"messages": [HumanMessage("When do owls hunt?")]}, config)
    assert graph.get_state(config).next == ("approve",)  # paused at the interrupt

    sent = events()
    assert_well_formed(sent)
    (trace,) = [e for e in sent if e["event"] == "$ai_trace"]
    trace_id = trace["properties"]["$ai_trace_id"]
    assert trace["properties"]["$ai_span_name"] == "LangGraph"
    assert "$ai_is_error" not in trace["properties"]
    spans = {
        e["properties"]["$ai_span_name"]: e["properties"] for e in sent if e["event"] == "$ai_span"
    }
    assert spans["think"]["$ai_parent_id"] == trace_id
    # The interrupt is LangGraph's control flow: the node is not an error, and says why it stopped.
    assert "$ai_is_error" not in spans["approve"]
    assert spans["approve"]["$ai_output_state"]["__interrupt__"][0]["value"] == "Send this answer?"
    (generation,) = [e["properties"] for e in sent if e["event"] == "$ai_generation"]
    assert generation["$ai_parent_id"] == spans["think"]["$ai_span_id"]
    assert generation["$ai_input"] == [{"role": "user", "content": "When do owls hunt?"}]
    # LangGraph's hidden plumbing (channel writes, branches) sends nothing.
    assert all(not name.startswith(("ChannelWrite", "Branch")) for name in spans)
    assert len(handler._runs) == 0

    resumed = graph.invoke(Command(resume="yes"), config)
    assert resumed["approved"] == "yes"
    after = events()
    resumed_trace = [e for e in after if e["event"] == "$ai_trace"][-1]["properties"]
    assert resumed_trace["$ai_trace_id"] != trace_id
    assert resumed_trace["$ai_output_state"]["approved"] == "yes"
    assert len(handler._runs) == 0


def test_node_errors_are_errors(handler, events):
    def broken(state: State) -> dict:
        raise RuntimeError("node failed")

    builder = StateGraph(State)
    builder.add_node("broken", broken)
    builder.add_edge(START, "broken")
    builder.add_edge("broken", END)
    graph = builder.compile()
    with pytest.raises(RuntimeError, match="node failed"):
        graph.invoke({"messages": []}, {"callbacks": [handler]})

    sent = events()
    (trace,) = [e["properties"] for e in sent if e["event"] == "$ai_trace"]
    (node,) = [e["properties"] for e in sent if e["properties"].get("$ai_span_name") == "broken"]
    assert trace["$ai_error"] == node["$ai_error"] == "RuntimeError: node failed"


async def test_graph_astream(handler, events):
    graph = _graph(InMemorySaver())
    config = {"callbacks": [handler], "configurable": {"thread_id": "t2"}}
    updates = [u async for u in graph.astream({"messages": [HumanMessage("Owls?")]}, config)]
    assert any("think" in u for u in updates)

    sent = events()
    assert_well_formed(sent)
    (trace,) = [e["properties"] for e in sent if e["event"] == "$ai_trace"]
    assert trace["$ai_input_state"]["messages"][0] == {"role": "user", "content": "Owls?"}
    assert len([e for e in sent if e["event"] == "$ai_generation"]) == 1


def test_pydantic_and_dataclass_state_and_commands_read_as_dict_state(handler, events):
    # LangGraph state may be a TypedDict, a pydantic model or a dataclass, and nodes may return
    # a Command: all read alike (messages as role/content, long strings capped).
    import dataclasses

    import pydantic
    from langchain_core.messages import AIMessage

    class ModelState(pydantic.BaseModel):
        messages: Annotated[list[AnyMessage], add_messages]
        doc: str = ""

    @dataclasses.dataclass
    class DataState:
        messages: Annotated[list[AnyMessage], add_messages]
        doc: str = ""

    def node(state):
        return Command(update={"messages": [AIMessage("done")]})

    for state in (ModelState, DataState):
        graph = StateGraph(state)
        graph.add_node("node", node)
        graph.add_edge(START, "node")
        graph.add_edge("node", END)
        graph.compile().invoke(
            state(messages=[HumanMessage("hello")], doc="x" * 50_000),
            config={"callbacks": [handler]},
        )
    spans = [
        e["properties"]
        for e in events()
        if e["event"] == "$ai_span" and e["properties"]["$ai_span_name"] == "node"
    ]
    assert len(spans) == 2
    for span in spans:
        assert span["$ai_input_state"]["messages"][0] == {"role": "user", "content": "hello"}
        assert len(span["$ai_input_state"]["doc"]) < 11_000
        update = span["$ai_output_state"]["update"]
        assert update["messages"] == [{"role": "assistant", "content": "done"}]
