"""One trace per request: each integration nests inside the others and inside user spans."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from typing import Any

import posthog_llm
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import tool
from llama_index.core import Settings
from llama_index.core.tools import FunctionTool

from .tree import Tree

MESSAGES = [{"role": "user", "content": "Tell me about owls"}]


def chat(openai_client: Any) -> str:
    response = openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    return str(response.choices[0].message.content)


# -- OpenAI inside LangChain, LangChain inside OpenAI's caller's span -----------------------------


def test_openai_call_inside_a_langchain_lambda_joins_the_chain(
    handler: Any, openai_client: Any, events: Any
) -> None:
    step = RunnableLambda(lambda _: chat(openai_client)).with_config(run_name="ask_openai")
    result = step.invoke({"q": 1}, config={"callbacks": [handler]})
    assert isinstance(result, str) and result

    tree = Tree(events())
    root = tree.find("$ai_trace")
    assert root["$ai_span_name"] == "ask_openai"
    generation = tree.find("$ai_generation")
    assert generation["$ai_framework"] if "$ai_framework" in generation else True
    assert tree.parent_of(generation) == tree.trace_id  # the lambda is the root


async def test_async_openai_call_inside_an_async_langchain_step_joins_it(
    handler: Any, async_openai_client: Any, events: Any
) -> None:
    async def ask(_: Any) -> str:
        response = await async_openai_client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES
        )
        return str(response.choices[0].message.content)

    chain = RunnableLambda(lambda x: x).with_config(run_name="prepare") | RunnableLambda(
        ask
    ).with_config(run_name="ask_openai")
    await chain.ainvoke({"q": 1}, config={"callbacks": [handler]})

    tree = Tree(events())
    step = tree.find("$ai_span", "ask_openai")
    generation = tree.find("$ai_generation")
    assert tree.parent_of(generation) == tree.span_id(step)


# -- LlamaIndex and LangChain, both ways -----------------------------------------------------------


def _assert_one_llama_index_query_with_its_generation_under(tree: Tree, step: Any) -> Any:
    """The LlamaIndex query is one span under `step`, its generation under it; returns that
    generation."""
    query = [
        e["properties"]
        for e in tree.events
        if e["properties"].get("$ai_framework") == "llama-index"
        and e["event"] == "$ai_span"
        and tree.parent_of(e["properties"]) == tree.span_id(step)
    ]
    assert len(query) == 1, "the LlamaIndex query is one span under the LangChain step"
    generation = tree.find("$ai_generation")
    assert generation["$ai_framework"] == "llama-index"
    assert tree.is_under(generation, query[0])
    return generation


def test_llama_index_query_inside_a_langchain_tool_joins_the_chain(
    handler: Any, query_engine: Any, events: Any
) -> None:
    @tool
    def search_notes(question: str) -> str:
        """Search the notes."""
        return str(query_engine.query(question))

    chain = RunnableLambda(lambda x: x["question"]).with_config(run_name="route") | search_notes
    chain.invoke({"question": "What do owls do?"}, config={"callbacks": [handler]})

    tree = Tree(events())
    assert tree.root["properties"]["$ai_framework"] == "langchain"
    tool_span = tree.find("$ai_span", "search_notes")
    generation = _assert_one_llama_index_query_with_its_generation_under(tree, tool_span)
    assert tree.is_under(generation, tool_span)


def test_langchain_chain_inside_a_llama_index_query_joins_it(
    handler: Any, query_engine: Any, events: Any
) -> None:
    chain = RunnableLambda(lambda x: x.upper()).with_config(run_name="shout")

    with posthog_llm.span("request"):
        # A LlamaIndex query whose post-processing calls a LangChain chain, inside the query's
        # own span: the chain joins the query.
        tool_fn = FunctionTool.from_defaults(
            fn=lambda text: chain.invoke(text, config={"callbacks": [handler]}), name="loud"
        )
        response = query_engine.query("What do owls do?")
        shouted = tool_fn.call(text=str(response))
    assert shouted.raw_output == str(response).upper()

    tree = Tree(events())
    assert tree.root["properties"]["$ai_span_name"] == "request"
    shout = tree.find("$ai_span", "shout")
    assert shout["$ai_framework"] == "langchain"
    tool_span = tree.find("$ai_span", "loud")  # the tool's own name
    assert tree.parent_of(shout) == tree.span_id(tool_span)
    assert tree.parent_of(tool_span) == tree.trace_id


def test_langchain_chain_inside_a_llama_index_tool_joins_the_tool(
    handler: Any, query_engine: Any, events: Any
) -> None:
    chain = RunnableLambda(lambda x: x.upper()).with_config(run_name="shout")
    tool_fn = FunctionTool.from_defaults(
        fn=lambda text: chain.invoke(text, config={"callbacks": [handler]}), name="loud"
    )
    assert tool_fn.call(text="owls").raw_output == "OWLS"

    tree = Tree(events())
    assert tree.root["properties"]["$ai_framework"] == "llama-index"
    shout = tree.find("$ai_span", "shout")
    assert shout["$ai_framework"] == "langchain"
    assert tree.parent_of(shout) == tree.trace_id


def test_langchain_chain_inside_a_llama_index_span_is_its_child(
    handler: Any, query_engine: Any, events: Any, default_client: Any
) -> None:
    from llama_index.core.instrumentation import get_dispatcher

    dispatcher = get_dispatcher("tests.cross")
    chain = RunnableLambda(lambda x: x.upper()).with_config(run_name="shout")

    class Pipeline:
        @dispatcher.span
        def run(self, text: str) -> str:
            return str(chain.invoke(text, config={"callbacks": [handler]}))

    with posthog_llm.span("request"):
        query_engine.query("What do owls do?")
        assert Pipeline().run("owls") == "OWLS"

    tree = Tree(events())
    shout = tree.find("$ai_span", "shout")
    assert shout["$ai_framework"] == "langchain"
    # The user's own `@dispatcher.span` is a span of the trace, and the innermost open one.
    pipeline = tree.find("$ai_span", "Pipeline.run")
    assert (pipeline["$ai_framework"], pipeline["$ai_span_type"]) == ("llama-index", "custom")
    assert pipeline["$ai_input_state"] == {"text": "owls"}
    assert pipeline["$ai_output_state"] == "OWLS"
    assert tree.parent_of(pipeline) == tree.trace_id
    assert tree.parent_of(shout) == tree.span_id(pipeline)

    # With nothing open, the user's span is the trace and the chain its child.
    Pipeline().run("bats")
    (trace,) = [e for e in events() if e["event"] == "$ai_trace" and "Pipeline" in str(e)]
    assert trace["properties"]["$ai_span_name"] == "Pipeline.run"
    (bats,) = [
        e["properties"]
        for e in events()
        if e["properties"].get("$ai_span_name") == "shout"
        and e["properties"]["$ai_trace_id"] == trace["properties"]["$ai_trace_id"]
    ]
    assert bats["$ai_parent_id"] == trace["properties"]["$ai_trace_id"]


def test_langchain_and_openai_inside_a_users_llama_index_function_are_one_trace(
    handler: Any, query_engine: Any, openai_client: Any, events: Any
) -> None:
    from llama_index.core.instrumentation import get_dispatcher

    dispatcher = get_dispatcher("tests.cross")
    chain = RunnableLambda(lambda x: x.upper()).with_config(run_name="shout")

    @dispatcher.span
    def handle_request(text: str) -> str:
        return str(chain.invoke(text, config={"callbacks": [handler]})) + chat(openai_client)

    assert handle_request("owls").startswith("OWLS")
    tree = Tree(events())
    assert tree.root["properties"]["$ai_span_name"].endswith("handle_request")
    assert tree.root["properties"]["$ai_framework"] == "llama-index"
    shout = tree.find("$ai_span", "shout")
    assert tree.parent_of(shout) == tree.trace_id
    generation = tree.find("$ai_generation")
    assert tree.parent_of(generation) == tree.trace_id


# -- everything inside a user span ------------------------------------------------------------------


def test_every_integration_inside_one_user_span_is_one_trace(
    handler: Any, query_engine: Any, openai_client: Any, events: Any
) -> None:
    chain = RunnableLambda(lambda x: x * 2).with_config(run_name="double")
    with posthog_llm.span("request", input={"user": "u1"}) as request:
        chain.invoke(21, config={"callbacks": [handler]})
        query_engine.query("What do owls do?")
        chat(openai_client)
        request.set_output("done")

    tree = Tree(events())
    root = tree.root["properties"]
    assert root["$ai_span_name"] == "request"
    assert root["$ai_input_state"] == {"user": "u1"}
    assert root["$ai_output_state"] == "done"
    double = tree.find("$ai_span", "double")
    assert tree.parent_of(double) == tree.trace_id
    openai_generation = [
        e["properties"]
        for e in tree.events
        if e["event"] == "$ai_generation" and e["properties"].get("$ai_framework") != "llama-index"
    ]
    assert len(openai_generation) == 1
    assert tree.parent_of(openai_generation[0]) == tree.trace_id
    llama_spans = [
        e["properties"]
        for e in tree.events
        if e["properties"].get("$ai_framework") == "llama-index"
    ]
    assert llama_spans and all(tree.is_under(p, root) for p in llama_spans)


def test_a_trace_a_context_names_has_one_root_whatever_serves_it(
    handler: Any, query_engine: Any, openai_client: Any, events: Any
) -> None:
    # `context(trace_id=...)` names the request (for feedback): its first root is the trace,
    # the later ones (another framework's, a span, a drop-in call) join it as children.
    chain = RunnableLambda(lambda x: x * 2).with_config(run_name="double")
    with posthog_llm.context(trace_id="request-42", distinct_id="user_1"):
        chain.invoke(21, config={"callbacks": [handler]})
        query_engine.query("What do owls do?")
        with posthog_llm.span("after"):
            chat(openai_client)
    evts = events()
    assert {e["properties"]["$ai_trace_id"] for e in evts} == {"request-42"}
    (root,) = [e["properties"] for e in evts if e["event"] == "$ai_trace"]
    assert root["$ai_span_name"] == "double"
    by_name = {e["properties"].get("$ai_span_name"): e["properties"] for e in evts}
    query = next(p for p in by_name.values() if str(p.get("$ai_span_name", "")).endswith("query"))
    assert query["$ai_parent_id"] == "request-42"
    assert by_name["after"]["$ai_parent_id"] == "request-42"
    (call,) = [
        e["properties"]
        for e in evts
        if e["event"] == "$ai_generation" and e["properties"].get("$ai_framework") != "llama-index"
    ]
    assert call["$ai_parent_id"] == by_name["after"]["$ai_span_id"]
    assert all(e["distinct_id"] == "user_1" for e in evts)
    # A later block naming the same trace again starts it again: its own root, even after a
    # lone model call (which sends no `$ai_trace`).
    with posthog_llm.context(trace_id="request-42"):
        chat(openai_client)
        Settings.llm.complete("Owls?")  # LlamaIndex's lone model call
        with posthog_llm.span("again"):
            pass
    assert [e["properties"]["$ai_span_name"] for e in events() if e["event"] == "$ai_trace"] == [
        "double",
        "again",
    ]


def test_a_context_naming_the_same_trace_again_inside_keeps_its_one_root(
    handler: Any, events: Any
) -> None:
    # Middleware names the request; a handler deeper down names it again to add a property.
    chain = RunnableLambda(lambda x: x * 2).with_config(run_name="double")
    with posthog_llm.context(trace_id="request-7"):
        chain.invoke(1, config={"callbacks": [handler]})
        with posthog_llm.context(trace_id="request-7", properties={"step": "second"}):
            chain.invoke(2, config={"callbacks": [handler]})
        chain.invoke(3, config={"callbacks": [handler]})
    evts = events()
    assert [e["event"] for e in evts].count("$ai_trace") == 1
    spans = [e["properties"] for e in evts if e["event"] == "$ai_span"]
    assert len(spans) == 2 and all(p["$ai_parent_id"] == "request-7" for p in spans)
    assert [p.get("step") for p in spans] == ["second", None]


def test_user_span_inside_a_langchain_step_parents_what_runs_inside_it(
    handler: Any, openai_client: Any, events: Any
) -> None:
    inner_chain = RunnableLambda(lambda x: x + 1).with_config(run_name="increment")

    def step(x: int) -> int:
        with posthog_llm.span("my_code"):
            chat(openai_client)
            return int(inner_chain.invoke(x))  # config propagates from the running step

    RunnableLambda(step).with_config(run_name="outer").invoke(1, config={"callbacks": [handler]})

    tree = Tree(events())
    mine = tree.find("$ai_span", "my_code")
    assert tree.parent_of(mine) == tree.trace_id  # `outer` is the root
    assert tree.parent_of(tree.find("$ai_generation")) == tree.span_id(mine)
    assert tree.parent_of(tree.find("$ai_span", "increment")) == tree.span_id(mine)


def test_user_span_inside_a_llama_index_step_joins_it(query_engine: Any, events: Any) -> None:
    from llama_index.core.instrumentation import get_dispatcher

    dispatcher = get_dispatcher("tests.cross")

    class Pipeline:
        @dispatcher.span
        def run(self) -> str:
            return str(query_engine.query("What do owls do?"))

    @posthog_llm.observe
    def outer() -> str:
        with posthog_llm.span("mine"):
            return Pipeline().run()

    outer()
    tree = Tree(events())
    assert tree.root["properties"]["$ai_span_name"].endswith("outer")
    mine = tree.find("$ai_span", "mine")
    llama = [e["properties"] for e in tree.events if e["properties"].get("$ai_framework")]
    assert llama and all(tree.is_under(p, mine) for p in llama)


# -- async tasks and threads ------------------------------------------------------------------------


async def test_gathered_tasks_inside_a_span_share_its_trace(
    handler: Any, async_openai_client: Any, events: Any
) -> None:
    chain = RunnableLambda(lambda x: x * 2).with_config(run_name="double")

    async def ask() -> str:
        response = await async_openai_client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES
        )
        return str(response.choices[0].message.content)

    async with posthog_llm.span("request"):
        await asyncio.gather(chain.ainvoke(1, config={"callbacks": [handler]}), ask(), ask())

    tree = Tree(events())
    assert len([e for e in tree.events if e["event"] == "$ai_generation"]) == 2
    assert tree.parent_of(tree.find("$ai_span", "double")) == tree.trace_id


def test_threads_started_with_a_copied_context_join_the_span(
    openai_client: Any, events: Any
) -> None:
    with posthog_llm.span("request"):
        threads = [
            threading.Thread(target=contextvars.copy_context().run, args=(chat, openai_client))
            for _ in range(3)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    tree = Tree(events())
    generations = [e["properties"] for e in tree.events if e["event"] == "$ai_generation"]
    assert len(generations) == 3
    assert all(tree.parent_of(g) == tree.trace_id for g in generations)


def test_work_after_a_span_ends_starts_its_own_trace(
    handler: Any, openai_client: Any, events: Any
) -> None:
    with posthog_llm.span("first"):
        chat(openai_client)
    chat(openai_client)
    traces = {e["properties"]["$ai_trace_id"] for e in events()}
    assert len(traces) == 2


def test_a_plain_thread_does_not_join_a_span(openai_client: Any, events: Any) -> None:
    with posthog_llm.span("request"):
        t = threading.Thread(target=chat, args=(openai_client,))
        t.start()
        t.join()
    traces = {e["properties"]["$ai_trace_id"] for e in events()}
    assert len(traces) == 2


def test_each_input_of_a_langchain_batch_keeps_its_own_calls(
    handler: Any, openai_client: Any, events: Any
) -> None:
    def ask(question: str) -> str:
        response = openai_client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": question}]
        )
        return str(response.choices[0].message.content)

    chain = RunnableLambda(lambda x: x).with_config(run_name="prepare") | RunnableLambda(
        ask
    ).with_config(run_name="ask")
    questions = [f"question {i}" for i in range(4)]
    chain.batch(questions, config={"callbacks": [handler]})

    all_events = events()
    traces = {e["properties"]["$ai_trace_id"] for e in all_events}
    assert len(traces) == 4, "one trace per input"
    for trace_id in traces:
        tree = Tree([e for e in all_events if e["properties"]["$ai_trace_id"] == trace_id])
        generation = tree.find("$ai_generation")
        step = tree.find("$ai_span", "ask")
        assert tree.parent_of(generation) == tree.span_id(step)
        assert generation["$ai_input"][0]["content"] == tree.root["properties"]["$ai_input_state"]


def test_a_chain_invoked_with_its_own_callbacks_inside_a_step_joins_the_step(
    handler: Any, events: Any
) -> None:
    inner = RunnableLambda(lambda x: x + 1).with_config(run_name="inner")

    def step(x: int) -> int:
        return int(inner.invoke(x, config={"callbacks": [handler]}))  # no parent run passed

    RunnableLambda(step).with_config(run_name="outer").invoke(1, config={"callbacks": [handler]})
    tree = Tree(events())
    assert tree.root["properties"]["$ai_span_name"] == "outer"
    assert tree.parent_of(tree.find("$ai_span", "inner")) == tree.trace_id


# -- OpenAI inside LlamaIndex, and LlamaIndex async ------------------------------------------------


def test_openai_call_inside_a_llama_index_tool_joins_the_tool(
    query_engine: Any, openai_client: Any, events: Any
) -> None:
    ask = FunctionTool.from_defaults(fn=lambda topic: chat(openai_client), name="ask_openai")
    assert ask.call(topic="owls").raw_output

    tree = Tree(events())
    tool_span = tree.root["properties"]
    assert tool_span["$ai_framework"] == "llama-index"
    generation = tree.find("$ai_generation")  # the drop-in's: the tool itself sends none
    assert generation["$ai_model"].startswith("gpt-4o-mini")
    assert tree.parent_of(generation) == tree.trace_id  # the tool is the trace's root
    assert generation["$ai_trace_id"] == tool_span["$ai_trace_id"]


async def test_async_openai_call_inside_an_async_llama_index_tool_joins_it(
    query_engine: Any, async_openai_client: Any, events: Any
) -> None:
    async def ask(topic: str) -> str:
        response = await async_openai_client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES
        )
        return str(response.choices[0].message.content)

    tool_fn = FunctionTool.from_defaults(async_fn=ask, name="ask_openai")
    with posthog_llm.span("request"):
        assert (await tool_fn.acall(topic="owls")).raw_output

    tree = Tree(events())
    assert tree.root["properties"]["$ai_span_name"] == "request"
    generation = tree.find("$ai_generation")
    tool_span = tree.find("$ai_span", "ask_openai")  # the tool's own name
    assert tree.parent_of(generation) == tree.span_id(tool_span)
    assert tree.parent_of(tool_span) == tree.trace_id


async def test_async_llama_index_query_inside_an_async_langchain_step_joins_it(
    handler: Any, query_engine: Any, events: Any
) -> None:
    async def search(question: str) -> str:
        return str(await query_engine.aquery(question))

    chain = RunnableLambda(lambda x: x["question"]).with_config(run_name="route") | RunnableLambda(
        search
    ).with_config(run_name="search_notes")
    assert await chain.ainvoke({"question": "What do owls do?"}, config={"callbacks": [handler]})

    tree = Tree(events())
    assert tree.root["properties"]["$ai_framework"] == "langchain"
    step = tree.find("$ai_span", "search_notes")
    _assert_one_llama_index_query_with_its_generation_under(tree, step)
    assert len({e["properties"]["$ai_trace_id"] for e in tree.events}) == 1


async def test_work_in_a_step_of_an_abatch_inside_a_user_span_joins_the_step(
    handler: Any, query_engine: Any, async_openai_client: Any, events: Any
) -> None:
    # `RunnableSequence.abatch` starts its runs in tasks of their own, so the contextvar its
    # steps run with names only the user's span: LangChain's resolver names the step.
    async def ask(question: str) -> str:
        await async_openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        async with posthog_llm.span("inside-the-step"):
            pass
        return str(await query_engine.aquery(question))

    chain = (
        RunnableLambda(lambda x: x).with_config(run_name="prep")
        | RunnableLambda(lambda x: x, afunc=ask).with_config(run_name="ask")
    ).with_config(run_name="chain")
    async with posthog_llm.span("request"):
        await chain.abatch(["What do owls do?"], config={"callbacks": [handler]})

    tree = Tree(events())
    assert tree.root["properties"]["$ai_span_name"] == "request"
    step = tree.find("$ai_span", "ask")
    assert tree.parent_of(tree.find("$ai_span", "chain")) == tree.trace_id
    openai_generation = next(
        e["properties"]
        for e in tree.events
        if e["event"] == "$ai_generation" and e["properties"].get("$ai_framework") != "llama-index"
    )
    assert tree.parent_of(openai_generation) == tree.span_id(step)
    assert tree.parent_of(tree.find("$ai_span", "inside-the-step")) == tree.span_id(step)
    query = tree.find("$ai_span", "RetrieverQueryEngine.aquery")
    assert tree.parent_of(query) == tree.span_id(step)
    synthesize = tree.find("$ai_span", "asynthesize")
    assert tree.is_under(synthesize, query)


def test_work_in_a_user_span_a_chain_joined_stays_in_that_span(
    handler: Any, openai_client: Any, events: Any
) -> None:
    # Inside a step, a user span that a second chain joined: a call made in that span after
    # the chain is the span's, not the step's that the span runs in.
    inner = RunnableLambda(lambda x: x).with_config(run_name="inner")

    def step(x: Any) -> Any:
        with posthog_llm.span("mine"):
            inner.invoke(x, config={"callbacks": [handler]})
            chat(openai_client)
        return x

    RunnableLambda(step).with_config(run_name="outer").invoke(1, config={"callbacks": [handler]})

    tree = Tree(events())
    mine = tree.find("$ai_span", "mine")
    assert tree.parent_of(tree.find("$ai_span", "inner")) == tree.span_id(mine)
    assert tree.parent_of(tree.find("$ai_generation")) == tree.span_id(mine)
