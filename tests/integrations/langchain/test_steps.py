"""Span details: agent actions, hidden plumbing, and long texts that are not sent four times."""

from __future__ import annotations

import uuid

import pytest

pytest.importorskip("langchain_core")

from langchain_core.agents import AgentAction, AgentFinish  # noqa: E402
from posthog_llm._serialize import TRUNCATION_MARKER  # noqa: E402

from tests.integrations.langchain.fakes import chain  # noqa: E402


def test_agent_actions_do_not_overwrite_the_agent_chains_own_state(handler, events):
    root, agent = uuid.uuid4(), uuid.uuid4()
    handler.on_chain_start(None, {"input": "plan a trip"}, run_id=root, name="Executor")
    handler.on_chain_start(
        None, {"input": "plan a trip"}, run_id=agent, parent_run_id=root, name="Agent"
    )
    action = AgentAction(tool="search", tool_input="trains", log="searching")
    handler.on_agent_action(action, run_id=agent, parent_run_id=root)
    handler.on_agent_finish(AgentFinish({"output": "done"}, "done"), run_id=agent)
    handler.on_chain_end({"output": "done"}, run_id=agent, parent_run_id=root)
    handler.on_chain_end({"output": "done"}, run_id=root)

    spans = events("$ai_span")
    assert len(spans) == 1
    props = spans[0]["properties"]
    assert props["$ai_span_name"] == "Agent"
    assert props["$ai_input_state"] == {"input": "plan a trip"}
    assert props["$ai_output_state"] == {"output": "done"}
    assert props["$ai_parent_id"] == str(root)


def test_hidden_runs_send_nothing_and_their_children_attach_above(handler, events):
    root, hidden, child = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    handler.on_chain_start(None, {}, run_id=root, name="Graph")
    handler.on_chain_start(
        None, {}, run_id=hidden, parent_run_id=root, tags=["langsmith:hidden"], name="Branch"
    )
    handler.on_chain_start(None, {}, run_id=child, parent_run_id=hidden, name="Visible")
    for run_id in (child, hidden, root):
        handler.on_chain_end({}, run_id=run_id)

    sent = events()
    assert [e["properties"]["$ai_span_name"] for e in sent] == ["Visible", "Graph"]
    assert sent[0]["properties"]["$ai_parent_id"] == str(root)


def test_a_long_prompt_is_sent_whole_in_the_generation_and_not_repeated(handler, events):
    long_text = "owl " * 50_000  # 200,000 characters
    chain().invoke({"question": long_text}, config={"callbacks": [handler]})

    sent = events()
    (generation,) = [e["properties"] for e in sent if e["event"] == "$ai_generation"]
    assert generation["$ai_input"][1]["content"] == long_text

    (trace,) = [e["properties"] for e in sent if e["event"] == "$ai_trace"]
    question = trace["$ai_input_state"]["question"]
    assert question.startswith(long_text[: handler.max_span_state_chars])
    assert "sent whole in this trace's generation" in question
    assert len(question) < 11_000

    (prompt,) = [
        e["properties"]
        for e in sent
        if e["properties"].get("$ai_span_name") == "ChatPromptTemplate"
    ]
    assert prompt["$ai_input_state"]["question"].startswith("owl owl")
    assert TRUNCATION_MARKER[:-1] in prompt["$ai_input_state"]["question"]
    assert len(str(prompt)) < 30_000
    # Everything sent for the call: one whole copy of the text, not four.
    assert len(str(sent)) < len(long_text) * 1.2


def test_a_long_input_nowhere_else_stays_whole_in_the_trace(handler, events):
    from langchain_core.runnables import RunnableLambda

    long_text = "owl " * 5_000
    RunnableLambda(len).invoke(long_text, config={"callbacks": [handler]})

    (trace,) = events("$ai_trace")
    assert trace["properties"]["$ai_input_state"] == long_text
    assert trace["properties"]["$ai_output_state"] == 20_000


def test_span_state_limit_can_be_lifted(handler, events):
    handler.max_span_state_chars = None
    long_text = "owl " * 5_000
    chain().invoke({"question": long_text}, config={"callbacks": [handler]})

    (prompt,) = [
        e["properties"]
        for e in events()
        if e["properties"].get("$ai_span_name") == "ChatPromptTemplate"
    ]
    assert prompt["$ai_input_state"]["question"] == long_text
