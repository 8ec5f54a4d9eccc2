"""`posthog-llm demo`: the whole product in a few seconds, offline and without any key.

First, with nothing but the core package (`pip install posthog-llm`), a small app captured by
hand: `client.capture()` with the `posthog_llm.*_properties` helpers, then nested
`posthog_llm.span(...)` blocks. Then three small apps, each captured by one
integration, into the local store:

1. LangChain: `ChatPromptTemplate | chat model | StrOutputParser`, with a tool call and a
   streamed call (`PostHogCallbackHandler`).
2. LlamaIndex: a query over a small `VectorStoreIndex` (`posthog_li.set_global_handler`).
3. OpenAI: chat, a stream and embeddings through the drop-in `OpenAI` client.

Then every trace is printed as a tree, with a summary table and how to open the viewer.

The models are fakes from the frameworks themselves (langchain-core's `GenericFakeChatModel`,
LlamaIndex's `MockLLM` and `MockEmbedding`) and the OpenAI part talks to a local stand-in of
OpenAI's REST API on the loopback interface, so nothing leaves the machine. With
`OPENAI_API_KEY` set the OpenAI part calls the real API; with `POSTHOG_API_KEY` set the events
also go to PostHog (`POSTHOG_HOST`, default PostHog US Cloud).

A part whose framework is not installed is skipped with the `pip install` line that adds it,
and the demo still exits 0; `pip install 'posthog-llm[all]'` adds every part. A part that fails
prints one line (the traceback only with POSTHOG_LLM_DEBUG=1) and the demo exits 1.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import sqlite3
import sys
import textwrap
import time
import traceback
import uuid
import zlib
from collections.abc import Callable, Iterator
from typing import Any

from .._client import Client
from .._context import context
from .._errors import error_text
from .._events import (
    GENERATION,
    SPAN,
    TRACE,
    generation_properties,
    span_properties,
    trace_properties,
)
from .._optional import require
from .._spans import span
from .._store import EventStore, default_db_path
from ..destinations import SQLiteDestination

__all__ = ["run_demo"]

VIEWER_PORT = 8010
_OPENAI_CHAT_MODEL = "gpt-4o-mini"
_OPENAI_EMBEDDING_MODEL = "text-embedding-3-small"
_WORD = re.compile(r"\w+|[^\w\s]")
_WIDTH = 100
_ALL_EXTRAS = "pip install 'posthog-llm[all]'"


# -- output ----------------------------------------------------------------------------------------


class _Out:
    """Prints the demo's story; bold headings only on a terminal that wants colour."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stdout
        isatty = getattr(self.stream, "isatty", lambda: False)()
        self.color = isatty and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"

    def _style(self, text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.color else text

    def line(self, text: str = "") -> None:
        print(text, file=self.stream, flush=True)

    def heading(self, text: str) -> None:
        self.line()
        self.line(self.bold(text))

    def bold(self, text: str) -> str:
        return self._style(text, "1")

    def dim(self, text: str) -> str:
        return self._style(text, "2")

    def write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()


# -- where events go -------------------------------------------------------------------------------


class _LocalAndPostHog:
    """A destination that writes each batch to the local store and forwards a copy to PostHog.

    The copy goes through a second `Client` with its own queue and retries, so a slow or
    unreachable PostHog never holds back the local store the demo reads from.
    """

    def __init__(self, local: SQLiteDestination, posthog: Client) -> None:
        self.local = local
        self.posthog = posthog
        self.description = f"{local.description} and {posthog.destination.description}"

    def send(self, events: list[bytes], *, timeout: float) -> None:
        self.local.send(events, timeout=timeout)
        for raw in events:
            event = json.loads(raw)
            # Same uuid and timestamp: PostHog sees exactly the events of the local store.
            self.posthog.capture(
                event["event"],
                distinct_id=event["distinct_id"],
                properties=event["properties"],
                timestamp=event["timestamp"],
                uuid=event["uuid"],
            )

    def close(self) -> None:
        self.local.close()


# -- the run ---------------------------------------------------------------------------------------


class _Demo:
    """State shared by the three parts: the client, identities, the traces made."""

    def __init__(self, client: Client, out: _Out) -> None:
        self.client = client
        self.out = out
        self.run = uuid.uuid4().hex[:6]
        self.session_id = f"demo-session-{self.run}"
        self.traces: list[tuple[str, str]] = []  # (trace id, label)
        self.failed: list[str] = []

    def trace_id(self, name: str, label: str) -> str:
        trace_id = f"demo-{self.run}-{name}"
        self.traces.append((trace_id, label))
        return trace_id

    def scope(self, distinct_id: str, trace_id: str) -> Any:
        return context(
            distinct_id=distinct_id,
            trace_id=trace_id,
            session_id=self.session_id,
            properties={"demo_run": self.run},
        )

    def say(self, label: str, text: str) -> None:
        """One step of a part: a short label, then the text wrapped under itself."""
        self.out.line(
            textwrap.fill(
                " ".join(str(text).split()) or "(empty)",
                width=_WIDTH,
                initial_indent=f"    {label:<8} ",
                subsequent_indent=" " * 13,
            )
        )

    def stream(self, label: str, pieces: Iterator[str]) -> str:
        """Print streamed text as it arrives, wrapped like `say`; returns the whole text."""
        indent = 13
        self.out.write(f"    {label:<8} ")
        column, space, text = indent, False, []
        for piece in pieces:
            text.append(piece)
            for word in re.split(r"(\s+)", piece):
                if not word:
                    continue
                if word.isspace():
                    space = column > indent
                    continue
                if space and column + 1 + len(word) > _WIDTH:
                    self.out.write("\n" + " " * indent)
                    column = indent
                elif space:
                    self.out.write(" ")
                    column += 1
                space = False
                self.out.write(word)
                column += len(word)
        self.out.line()
        return "".join(text)


def _tokens(text: str) -> int:
    return len(_WORD.findall(text))


def _short(text: str, limit: int = 100) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- 0. No framework: manual capture and posthog_llm.span -------------------------------------------


def _retrieve(question: str, documents: list[str], k: int = 2) -> list[str]:
    """The documents sharing most words with the question (a keyword retriever)."""
    wanted = set(re.findall(r"\w+", question.lower()))
    ranked = sorted(documents, key=lambda d: -len(wanted & set(re.findall(r"\w+", d.lower()))))
    return ranked[:k]


def _manual_part(demo: _Demo) -> None:
    """A retrieve-then-answer app instrumented by hand: three `client.capture()` calls."""
    demo.out.line(
        demo.out.dim(
            "    no framework: client.capture() with posthog_llm.span_properties(), "
            "generation_properties() and trace_properties()"
        )
    )
    question = "Where do events go without a PostHog account?"
    trace_id = demo.trace_id("manual", "Manual capture: a trace, a span and a generation")
    started = time.perf_counter()
    with demo.scope("demo-user-marie", trace_id):
        demo.say("ask", question)

        step = time.perf_counter()
        documents = _retrieve(question, _DOCUMENTS)
        time.sleep(0.02)  # a visible step on the timeline
        demo.client.capture(
            SPAN,
            properties=span_properties(
                trace_id=trace_id,
                span_id=f"{trace_id}-retrieve",
                span_name="retrieve_documents",
                input_state={"query": question},
                output_state={"documents": documents},
                latency=time.perf_counter() - step,
            ),
        )
        demo.say("span", f"retrieve_documents -> {len(documents)} documents ($ai_span)")

        step = time.perf_counter()
        context_text = "\n".join(documents)
        messages = [
            {"role": "system", "content": "Answer from the context only."},
            {
                "role": "user",
                "content": f"---------------------\n{context_text}\n---------------------\n"
                f"Query: {question}",
            },
        ]
        time.sleep(0.05)  # the "model" call: quotes the best-matching sentence of its context
        answer = _quote_best_sentence(str(messages[1]["content"]))
        demo.client.capture(
            GENERATION,
            properties=generation_properties(
                trace_id=trace_id,
                span_id=f"{trace_id}-answer",
                parent_id=trace_id,
                span_name="answer",
                model="demo-quoting-model",
                provider="demo",
                input=messages,
                output_choices=[{"role": "assistant", "content": answer}],
                input_tokens=sum(_tokens(str(m["content"])) for m in messages),
                output_tokens=_tokens(answer),
                latency=time.perf_counter() - step,
                stop_reason="stop",
            ),
        )
        demo.say("answer", f"{_short(answer, 200)} ($ai_generation)")

        demo.client.capture(
            TRACE,
            properties=trace_properties(
                trace_id=trace_id,
                span_name="answer_from_documents",
                input_state={"question": question},
                output_state={"answer": answer},
                latency=time.perf_counter() - started,
            ),
        )
        demo.say("trace", "answer_from_documents, the root of both ($ai_trace)")


def _span_part(demo: _Demo) -> None:
    """Nested `with posthog_llm.span(...)` blocks: the same kind of tree, without building events."""
    demo.out.line(
        demo.out.dim("    no framework: with posthog_llm.span(name, input=...) as s: ...")
    )
    trace_id = demo.trace_id("span", "posthog_llm.span: nested steps of your own code")
    with demo.scope("demo-user-marie", trace_id):
        city = "Lisbon"
        demo.say("ask", f"Plan a rainy-day-proof afternoon in {city}.")
        with span("plan_afternoon", input={"city": city}, client=demo.client) as plan:
            with span("get_weather", input={"city": city}, client=demo.client) as weather:
                forecast = _WEATHER.get(city, "mild and cloudy")
                time.sleep(0.02)
                weather.set_output({"forecast": forecast})
            demo.say("span", f"get_weather -> {forecast}")
            with span("pick_places", input={"forecast": forecast}, client=demo.client) as pick:
                places = ["Miradouro da Graça", "LX Factory", "a pastelaria in Belém"]
                time.sleep(0.02)
                pick.set_output({"places": places})
            demo.say("span", f"pick_places -> {', '.join(places)}")
            plan.set_output({"forecast": forecast, "places": places})
        demo.say("trace", "plan_afternoon ($ai_trace), with get_weather and pick_places inside")


# -- 1. LangChain ----------------------------------------------------------------------------------

_WEATHER = {"Paris": "14°C and light rain", "Lisbon": "22°C and sunny"}


def _fake_chat_model(replies: list[Any], delay: float) -> Any:
    """langchain-core's GenericFakeChatModel, reporting what real chat models report.

    The base class replays scripted messages; this subclass adds a model name, token usage
    (words of prompt and reply), tool binding and usage at the end of a stream.
    """
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage, AIMessageChunk
    from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
    from langchain_core.utils.function_calling import convert_to_openai_tool

    class ScriptedChatModel(GenericFakeChatModel):
        model_name: str = "fake-chat-model"
        delay: float = 0.0

        @property
        def _llm_type(self) -> str:
            return "fake-chat-model"

        def _get_ls_params(self, stop: Any = None, **kwargs: Any) -> Any:
            params = super()._get_ls_params(stop=stop, **kwargs)
            params["ls_provider"] = "fake"
            params["ls_model_name"] = self.model_name
            return params

        def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
            return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)

        def _generate(
            self, messages: Any, stop: Any = None, run_manager: Any = None, **kwargs: Any
        ) -> Any:
            time.sleep(self.delay)  # a fake, but with a visible latency on the timeline
            reply = next(self.messages)
            message = AIMessage(content=reply) if isinstance(reply, str) else reply
            prompt_tokens = sum(_tokens(str(m.content)) + 3 for m in messages)
            output_tokens = _tokens(str(message.content)) + 8 * len(message.tool_calls)
            message = message.model_copy(
                update={
                    "usage_metadata": {
                        "input_tokens": prompt_tokens,
                        "output_tokens": output_tokens,
                        "total_tokens": prompt_tokens + output_tokens,
                    },
                    "response_metadata": {
                        "model_name": self.model_name,
                        "finish_reason": "tool_calls" if message.tool_calls else "stop",
                    },
                }
            )
            return ChatResult(generations=[ChatGeneration(message=message)])

        def _stream(
            self, messages: Any, stop: Any = None, run_manager: Any = None, **kwargs: Any
        ) -> Iterator[Any]:
            result = self._generate(messages, stop=stop, **kwargs)
            message = result.generations[0].message
            for piece in re.split(r"(\s+)", str(message.content)):
                if not piece:
                    continue
                time.sleep(self.delay / 10)
                chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece, id=message.id))
                if run_manager:
                    run_manager.on_llm_new_token(piece, chunk=chunk)
                yield chunk
            # Like OpenAI's `include_usage`: the last chunk carries usage and the stop reason.
            yield ChatGenerationChunk(
                message=AIMessageChunk(
                    content="",
                    id=message.id,
                    usage_metadata=message.usage_metadata,
                    response_metadata=message.response_metadata,
                )
            )

    return ScriptedChatModel(messages=iter(replies), delay=delay)


def _langchain_part(demo: _Demo) -> None:
    require("langchain_core", "langchain")
    from langchain_core.messages import AIMessage
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_core.runnables import RunnableConfig, RunnableLambda
    from langchain_core.tools import tool
    from posthog_llm.integrations.langchain import PostHogCallbackHandler

    demo.out.line(
        demo.out.dim(
            "    models: a fake chat model (langchain-core's GenericFakeChatModel), scripted replies"
        )
    )

    @tool
    def get_weather(city: str) -> str:
        """Current weather in a city."""
        return _WEATHER.get(city, "mild and cloudy")

    prompt = ChatPromptTemplate.from_messages(
        [
            ("system", "You are a concise travel assistant. Use tools when they help."),
            ("user", "{question}"),
        ]
    )
    model = _fake_chat_model(
        [
            AIMessage(
                content="",
                tool_calls=[
                    {"name": "get_weather", "args": {"city": "Paris"}, "id": "call_demo_weather"}
                ],
            ),
            "Yes: it is 14°C with light rain in Paris, so take an umbrella.",
            "Visit the Musée d'Orsay, climb to the covered passages near the Palais-Royal, "
            "and finish with hot chocolate at a café in the Marais.",
        ],
        delay=0.05,
    )
    handler = PostHogCallbackHandler(demo.client)

    # A two-step chain with a tool call in between, as agents do.
    def weather_assistant(inputs: dict[str, Any], config: RunnableConfig) -> str:
        messages = prompt.invoke(inputs, config).to_messages()
        decision = (model.bind_tools([get_weather])).invoke(messages, config)
        messages.append(decision)
        for call in decision.tool_calls:
            result = get_weather.invoke(call, config)
            arguments = ", ".join(f"{k}={v!r}" for k, v in call["args"].items())
            demo.say("tool", f"{call['name']}({arguments}) -> {result.content}")
            messages.append(result)
        return str((model | StrOutputParser()).invoke(messages, config))

    assistant = RunnableLambda(weather_assistant).with_config(run_name="weather_assistant")
    question = "Do I need an umbrella in Paris today?"
    trace_id = demo.trace_id("langchain-tool-call", "LangChain: a chain with a tool call")
    demo.say("ask", question)
    with demo.scope("demo-user-ada", trace_id):
        answer = assistant.invoke({"question": question}, config={"callbacks": [handler]})
    demo.say("answer", answer)

    # The streamed call: prompt | model | parser, chunks printed as they arrive.
    chain = prompt | model | StrOutputParser()
    question = "Three things to do in Paris on a rainy day?"
    trace_id = demo.trace_id("langchain-stream", "LangChain: a streamed chain")
    demo.say("ask", question)
    with demo.scope("demo-user-ada", trace_id):
        demo.stream(
            "stream",
            chain.stream(
                {"question": question},
                config={"callbacks": [handler], "run_name": "rainy_day_ideas"},
            ),
        )


# -- 2. LlamaIndex ---------------------------------------------------------------------------------

_DOCUMENTS = [
    "PostHog is an open-source product analytics platform with LLM analytics built in.",
    "posthog-llm turns LangChain, LlamaIndex and OpenAI calls into $ai_generation, $ai_embedding, "
    "$ai_span and $ai_trace events.",
    "Without a PostHog account, posthog-llm keeps events in a local SQLite store that the "
    "posthog-llm serve command shows in a trace viewer.",
    "Privacy mode keeps prompts and completions out of every event while tokens, model and "
    "latency are still captured.",
]


def _llama_index_models(delay: float) -> tuple[Any, Any]:
    """A MockEmbedding that embeds words (so retrieval finds the right document) and a MockLLM
    that answers by quoting the best-matching sentence of its context, both reporting usage."""
    from llama_index.core.base.llms.types import CompletionResponse, LLMMetadata
    from llama_index.core.embeddings import MockEmbedding
    from llama_index.core.llms import MockLLM
    from llama_index.core.llms.callbacks import llm_completion_callback

    class WordEmbedding(MockEmbedding):
        def _embed(self, text: str) -> list[float]:
            vector = [0.0] * self.embed_dim
            for word in re.findall(r"\w+", text.lower()):
                vector[zlib.crc32(word.encode()) % self.embed_dim] += 1.0
            norm = sum(v * v for v in vector) ** 0.5 or 1.0
            return [v / norm for v in vector]

        def _get_text_embedding(self, text: str) -> list[float]:
            return self._embed(text)

        def _get_query_embedding(self, query: str) -> list[float]:
            return self._embed(query)

    class QuotingLLM(MockLLM):
        model_name: str = "fake-llm"
        delay: float = 0.0

        @property
        def metadata(self) -> LLMMetadata:
            return LLMMetadata(model_name=self.model_name, num_output=256, context_window=4096)

        @llm_completion_callback()
        def complete(
            self, prompt: str, formatted: bool = False, **kwargs: Any
        ) -> CompletionResponse:
            time.sleep(self.delay)
            text = _quote_best_sentence(prompt)
            usage = {"prompt_tokens": _tokens(prompt), "completion_tokens": _tokens(text)}
            usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
            return CompletionResponse(text=text, raw={"model": self.model_name, "usage": usage})

    llm = QuotingLLM(max_tokens=None)
    llm.delay = delay  # MockLLM's __init__ takes no extra fields
    return WordEmbedding(embed_dim=64, model_name="fake-embedding"), llm


def _quote_best_sentence(prompt: str) -> str:
    """The context sentence sharing most words with the query (LlamaIndex's QA prompt layout)."""
    parts = prompt.split("---------------------")
    context_text = parts[1] if len(parts) >= 3 else prompt
    query = prompt.rsplit("Query:", 1)[-1]
    wanted = set(re.findall(r"\w+", query.lower()))
    sentences = [s.strip() for s in re.split(r"(?<=\.)\s+|\n+", context_text) if s.strip()]
    if not sentences:
        return "I could not find that in the documents."
    best = max(sentences, key=lambda s: len(wanted & set(re.findall(r"\w+", s.lower()))))
    return f"According to the documents: {best}"


def _llama_index_part(demo: _Demo) -> None:
    require("llama_index.core", "llama-index")
    from llama_index.core import Document, VectorStoreIndex
    from posthog_llm.integrations import llama_index as posthog_li

    demo.out.line(demo.out.dim("    models: MockEmbedding and MockLLM subclasses (no API calls)"))
    embed_model, llm = _llama_index_models(delay=0.08)
    posthog_li.set_global_handler(demo.client)
    try:
        trace_id = demo.trace_id("llama-index-build", "LlamaIndex: building the index")
        with demo.scope("demo-user-grace", trace_id):
            index = VectorStoreIndex.from_documents(
                [Document(text=text) for text in _DOCUMENTS], embed_model=embed_model
            )
        demo.say("index", f"{len(_DOCUMENTS)} documents embedded into a VectorStoreIndex")
        engine = index.as_query_engine(llm=llm, similarity_top_k=2)
        question = "Where do events go without a PostHog account?"
        trace_id = demo.trace_id("llama-index-query", "LlamaIndex: a query")
        demo.say("ask", question)
        with demo.scope("demo-user-grace", trace_id):
            response = engine.query(question)
        demo.say("answer", _short(str(response), 300))
    finally:
        # The demo leaves no global registration behind.
        posthog_li.remove_global_handler()


# -- 3. OpenAI -------------------------------------------------------------------------------------


def _openai_part(demo: _Demo) -> None:
    require("openai", "openai")
    from posthog_llm.integrations.openai import OpenAI

    standin = None
    if os.environ.get("OPENAI_API_KEY"):
        demo.out.line(demo.out.dim("    OPENAI_API_KEY is set: calling the real OpenAI API"))
        openai_client = OpenAI(posthog_client=demo.client, timeout=30.0, max_retries=1)
    else:
        from .openai_standin import OpenAIStandIn

        standin = _started_standin(demo, OpenAIStandIn(latency=0.04, chunk_delay=0.004), "OpenAI")
        openai_client = OpenAI(
            base_url=standin.base_url, api_key="sk-local-standin", posthog_client=demo.client
        )
    try:
        _openai_calls(demo, openai_client)
    finally:
        openai_client.close()
        if standin is not None:
            standin.close()


def _started_standin(demo: _Demo, standin: Any, provider: str) -> Any:
    """Start a loopback stand-in of `provider`'s API and say so: no real API is called."""
    standin.start()
    demo.out.line(
        f"    local stand-in {provider} endpoint at {standin.base_url} — no real API calls"
    )
    return standin


def anthropic_standin_call(standin: Any, client: Any, prompt: str) -> str:
    """One tracked Anthropic call on the stand-in: returns the reply text (the stand-in's echo,
    not a model's answer). `client` is a `posthog_llm.Client` or a posthog-python client."""
    from posthog_llm.integrations.anthropic import Anthropic

    llm = Anthropic(
        base_url=standin.base_url, api_key="sk-ant-local-standin", posthog_client=client
    )
    try:
        reply = llm.messages.create(
            model="claude-haiku-4-5",
            max_tokens=200,
            system="You are a local stand-in.",
            messages=[{"role": "user", "content": prompt}],
        )
    finally:
        llm.close()
    return "".join(getattr(block, "text", "") for block in reply.content)


def gemini_standin_call(standin: Any, client: Any, prompt: str) -> str:
    """One tracked Gemini call on the stand-in: returns the reply text (the stand-in's echo)."""
    from posthog_llm.integrations.gemini import Client

    llm = Client(
        api_key="local-standin-key",
        http_options={"base_url": standin.base_url},
        posthog_client=client,
    )
    reply = llm.models.generate_content(model="gemini-2.5-flash", contents=prompt)
    return reply.text or ""


def _ask_standin(
    demo: _Demo,
    standin: Any,
    provider: str,
    demo_call: Callable[[Any, Any, str], str],
    question: str,
) -> str:
    """One tracked call on a stand-in started for it (`anthropic_standin_call`, ...)."""
    _started_standin(demo, standin, provider)
    try:
        return demo_call(standin, demo.client, question)
    finally:
        standin.close()


def _openai_calls(demo: _Demo, openai_client: Any) -> None:
    trace_id = demo.trace_id("openai", "OpenAI: chat, stream and embeddings")
    started = time.perf_counter()
    question = "Write a one-line tagline for a hedgehog café."
    tagline: str | None = None
    failure: BaseException | None = None
    with demo.scope("demo-user-linus", trace_id):
        try:
            demo.say("ask", question)
            reply = openai_client.chat.completions.create(
                model=_OPENAI_CHAT_MODEL,
                messages=[
                    {"role": "system", "content": "You write short, friendly copy."},
                    {"role": "user", "content": question},
                ],
                temperature=0.7,
                max_tokens=60,
            )
            tagline = reply.choices[0].message.content or ""
            demo.say("answer", _short(tagline))

            stream = openai_client.chat.completions.create(
                model=_OPENAI_CHAT_MODEL,
                messages=[
                    {"role": "user", "content": "Now a short welcome sign for the same café."}
                ],
                max_tokens=60,
                stream=True,
            )
            demo.stream(
                "stream",
                (c.choices[0].delta.content or "" for c in stream if c.choices),
            )

            texts = [tagline, "Hedgehogs hibernate in winter.", "Cafés serve coffee."]
            embeddings = openai_client.embeddings.create(model=_OPENAI_EMBEDDING_MODEL, input=texts)
            demo.say(
                "embed",
                f"{len(embeddings.data)} texts -> vectors of "
                f"{len(embeddings.data[0].embedding)} dimensions",
            )
        except BaseException as exc:
            failure = exc
            raise
        finally:
            # Manual capture: a `$ai_trace` event that names the trace and holds its input and
            # output (or the error a call ended it with: the trace keeps its root either way).
            error = None if failure is None else error_text(failure)
            demo.client.capture(
                TRACE,
                properties=trace_properties(
                    trace_id=trace_id,
                    span_name="hedgehog_cafe_copy",
                    input_state={"question": question},
                    output_state=None if tagline is None else {"tagline": tagline},
                    latency=time.perf_counter() - started,
                    error=error,
                    is_error=True if error else None,
                ),
            )


# -- reporting -------------------------------------------------------------------------------------


def _cli_command() -> str:
    """How this shell runs the command line: `posthog-llm` when that is on its PATH, else the
    script beside this interpreter (`.venv/bin/posthog-llm` from a venv not activated, as the
    README's first command uses it), else `python -m posthog_llm`."""
    script = os.path.join(os.path.dirname(sys.executable), "posthog-llm")
    found = shutil.which("posthog-llm")
    if found and os.path.realpath(found) == os.path.realpath(script):
        return "posthog-llm"
    if os.path.exists(script):
        relative = os.path.relpath(script)
        return shlex.quote(script if relative.startswith("..") else relative)
    return f"{shlex.quote(sys.executable)} -m posthog_llm"


def _anthropic_part(demo: _Demo) -> None:
    require("anthropic", "anthropic")
    trace_id = demo.trace_id("anthropic", "Anthropic: messages.create")
    question = "Name one thing hedgehogs like to eat."
    with (
        demo.scope("demo-user-linus", trace_id),
        span("claude_snack_idea", input=question, client=demo.client) as step,
    ):
        demo.say("ask", question)
        if os.environ.get("ANTHROPIC_API_KEY"):
            from posthog_llm.integrations.anthropic import Anthropic

            demo.out.line(demo.out.dim("    ANTHROPIC_API_KEY is set: calling the real API"))
            claude = Anthropic(posthog_client=demo.client, max_retries=1, timeout=30.0)
            try:
                reply = claude.messages.create(
                    model="claude-haiku-4-5",
                    max_tokens=100,
                    messages=[{"role": "user", "content": question}],
                )
            finally:
                claude.close()
            text = "".join(getattr(block, "text", "") for block in reply.content)
        else:
            from .anthropic_standin import AnthropicStandIn

            text = _ask_standin(
                demo, AnthropicStandIn(), "Anthropic", anthropic_standin_call, question
            )
        step.set_output(text)
        demo.say("answer", _short(text))


def _gemini_part(demo: _Demo) -> None:
    require("google.genai", "gemini")
    trace_id = demo.trace_id("gemini", "Gemini: models.generate_content")
    question = "Name one place hedgehogs like to sleep."
    with (
        demo.scope("demo-user-linus", trace_id),
        span("gemini_nap_spot", input=question, client=demo.client) as step,
    ):
        demo.say("ask", question)
        variable = next(
            (v for v in ("GEMINI_API_KEY", "GOOGLE_API_KEY") if os.environ.get(v)), None
        )
        if variable is not None:
            from posthog_llm.integrations.gemini import Client as GeminiClient

            key = os.environ[variable]
            demo.out.line(demo.out.dim(f"    {variable} is set: calling the real API"))
            gemini = GeminiClient(api_key=key, posthog_client=demo.client)
            text = gemini.models.generate_content(model="gemini-2.5-flash", contents=question).text
        else:
            from .gemini_standin import GeminiStandIn

            text = _ask_standin(demo, GeminiStandIn(), "Gemini", gemini_standin_call, question)
        step.set_output(text)
        demo.say("answer", _short(text or ""))


_PARTS: list[tuple[str, str, Callable[[_Demo], None]]] = [
    (
        "Manual capture",
        "a trace, a span and a generation with client.capture(), no framework needed",
        _manual_part,
    ),
    (
        "posthog_llm.span",
        "your own steps as nested spans, no framework needed",
        _span_part,
    ),
    (
        "LangChain",
        "prompt | chat model | parser, with a tool call and a streamed call",
        _langchain_part,
    ),
    ("LlamaIndex", "a query over a small VectorStoreIndex", _llama_index_part),
    ("OpenAI", "chat, a stream and embeddings with the drop-in OpenAI client", _openai_part),
    ("Anthropic", "messages.create with the drop-in Anthropic client", _anthropic_part),
    ("Gemini", "models.generate_content with the drop-in Gemini client", _gemini_part),
]


def _print_traces(demo: _Demo, db: str) -> None:
    from .._render import traces_table as _traces_table

    out = demo.out
    if not os.path.exists(db):  # nothing was ever written: no store to read
        out.heading("Captured traces")
        out.line("no traces captured")
        return
    order = {trace_id: n for n, (trace_id, _) in enumerate(demo.traces)}
    with EventStore(db) as store:
        trees = [(label, store.trace(trace_id)) for trace_id, label in demo.traces]
        everything = store.traces(limit=None)
    rows = sorted((r for r in everything if r.trace_id in order), key=lambda r: order[r.trace_id])
    found = [(label, trace) for label, trace in trees if trace is not None]
    out.heading(f"Captured traces ({len(found)}), as `posthog-llm show TRACE_ID` prints them")
    out.line(
        out.dim(
            "trace: one request · span: a step in it · generation: an LLM call · "
            "embedding: an embedding call · tokens=input→output"
        )
    )
    for label, trace in found:
        out.line()
        out.line(out.dim(f"# {label}: {trace.trace_id}"))
        out.line(trace.to_text())
    out.heading("Summary: the table `posthog-llm traces` prints (newest first there), in run order")
    out.line(_traces_table(rows) if rows else "no traces captured")
    if len(everything) > len(rows):
        older = len(everything) - len(rows)
        out.line(out.dim(f"({older} older trace{'s' * (older != 1)} in the store not shown)"))


def _client_to_posthog() -> Client | None:
    """A client to PostHog when the environment has a key, else None."""
    if not (os.environ.get("POSTHOG_API_KEY") or os.environ.get("POSTHOG_PROJECT_API_KEY")):
        return None
    from .._command_error import CommandError

    try:
        return Client(flush_interval=0.2)
    except ValueError as exc:
        raise CommandError(f"cannot send to PostHog: {exc}") from None


_EXTRAS = {
    "LangChain": "langchain",
    "LlamaIndex": "llama-index",
    "OpenAI": "openai",
    "Anthropic": "anthropic",
    "Gemini": "gemini",
}


def _extra_for(part: str) -> str:
    extra = _EXTRAS.get(part)
    return f"posthog-llm[{extra}]" if extra else "posthog-llm"


def _debug_traceback() -> None:
    """The current exception's traceback, on stderr, only when asked for."""
    if os.environ.get("POSTHOG_LLM_DEBUG"):
        traceback.print_exc()


def run_demo(args: argparse.Namespace) -> int:
    """Run the demo; returns the exit status (0 when every part that could run worked)."""
    out = _Out()
    db = getattr(args, "db", None) or default_db_path()
    started = time.perf_counter()

    posthog = _client_to_posthog()
    try:
        local = SQLiteDestination(db)
        local.open()
    except (OSError, sqlite3.Error) as exc:
        from .._command_error import CommandError

        raise CommandError(f"cannot open the local store {db}: {exc}") from None
    destination: Any = local if posthog is None else _LocalAndPostHog(local, posthog)
    client = Client(destination=destination, flush_interval=0.2)
    demo = _Demo(client, out)

    out.line(out.bold("posthog-llm demo") + ": LLM calls captured as PostHog $ai_* events")
    out.line(f"Events go to the local store {db}")
    if posthog is not None:
        out.line(f"and also to {posthog.destination.description} (POSTHOG_API_KEY is set)")
    else:
        out.line(out.dim("(set POSTHOG_API_KEY to send them to PostHog as well)"))

    skipped = []
    parts = _PARTS
    for number, (name, what, part) in enumerate(parts, 1):
        out.heading(f"{number}/{len(parts)}  {name}: {what}")
        try:
            part(demo)
        except ImportError as exc:
            skipped.append(name)
            if "install it with" in str(exc):  # our `require()`: the framework is missing
                out.line(f"    skipped: {exc}")
            else:  # installed, but too old or broken for this part
                out.line(f"    skipped: {exc}")
                out.line(
                    f"    (upgrading may help: pip install -U {shlex.quote(_extra_for(name))})"
                )
            _debug_traceback()
        except Exception as exc:
            demo.failed.append(name)
            out.line(
                f"    FAILED: the {name} part raised {type(exc).__name__}: {_short(str(exc), 300)}"
            )
            out.line(out.dim("    (run with POSTHOG_LLM_DEBUG=1 to see the traceback)"))
            _debug_traceback()

    delivered = client.flush(timeout=10)
    client.shutdown(timeout=5)
    if not delivered:
        out.line(f"warning: not every event reached the local store: {client.stats()}")
    _print_traces(demo, db)

    if posthog is not None:
        sent_all = posthog.flush(timeout=15)
        stats = posthog.stats()
        posthog.shutdown(timeout=2)
        where = posthog.destination.description
        out.heading("PostHog")
        if sent_all:
            out.line(f"    {stats['sent']} events sent to {where}")
        else:
            out.line(f"    not every event reached {where}: {stats}")

    db_arg = shlex.quote(db)
    cli = _cli_command()
    out.heading("Look at them")
    out.line(f"    {cli} serve --db {db_arg}")
    out.line(f"    then open http://127.0.0.1:{VIEWER_PORT} for the trace viewer and dashboard")
    if demo.traces:
        out.line(f"    or: {cli} show {demo.traces[0][0]} --db {db_arg}")
    if skipped:
        out.heading("More")
        out.line(f"    skipped: {', '.join(skipped)}")
        out.line(f"    {_ALL_EXTRAS} adds every part (or one extra each, as named above)")
    out.line()
    out.line(out.dim(f"done in {time.perf_counter() - started:.1f} s"))
    return 1 if demo.failed else 0
