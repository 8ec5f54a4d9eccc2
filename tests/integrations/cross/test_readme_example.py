"""The README's "One trace per request" example, run as written against the loopback stand-in."""

from __future__ import annotations

from typing import Any

import posthog_llm
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import tool

from .tree import Tree


def test_the_readme_mixed_example_is_one_trace(
    handler: Any, query_engine: Any, openai_client: Any, events: Any
) -> None:
    openai = openai_client

    @tool
    def fun_fact(topic: str) -> str:
        """A fun fact about a topic."""
        response = openai.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": f"A fun fact about {topic}"}]
        )
        return str(response.choices[0].message.content)

    fact_chain = (RunnableLambda(lambda topic: {"topic": topic}) | fun_fact).with_config(
        run_name="fact_chain"
    )

    @posthog_llm.observe
    def answer(question: str) -> str:
        fact = fact_chain.invoke("hedgehogs", config={"callbacks": [handler]})
        notes = query_engine.query(question)
        return f"{fact} {notes}"

    with posthog_llm.context(distinct_id="user_123"):
        answer("What do hedgehogs eat?")

    tree = Tree(events())
    root = tree.root["properties"]
    assert root["$ai_span_name"].endswith("answer")
    assert {e["distinct_id"] for e in tree.events} == {"user_123"}
    chain = tree.find("$ai_span", "fact_chain")
    assert tree.parent_of(chain) == tree.trace_id
    tool_span = tree.find("$ai_span", "fun_fact")
    assert tree.parent_of(tool_span) == tree.span_id(chain)
    openai_generation = [
        e["properties"]
        for e in tree.events
        if e["event"] == "$ai_generation" and e["properties"].get("$ai_model", "").startswith("gpt")
    ]
    assert len(openai_generation) == 1
    assert tree.parent_of(openai_generation[0]) == tree.span_id(tool_span)
    query = tree.find("$ai_span", "RetrieverQueryEngine.query")
    assert tree.parent_of(query) == tree.trace_id
