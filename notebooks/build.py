"""Writes the tutorial notebooks of this folder and runs them, so they are committed with their
outputs (trace trees and plots show on GitHub).

The notebooks are generated so that their code stays readable and reviewable here. After a
change, run `python notebooks/build.py` (needs `pip install -e '.[all]'`; offline, about a
minute) and commit the .ipynb files with it; `--no-execute` writes the sources with no outputs.
The test suite (tests/test_notebooks.py) checks that the committed notebooks' cells are the ones
written here and executes every notebook top to bottom.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import textwrap
from collections.abc import Iterator

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = os.path.dirname(os.path.abspath(__file__))


def md(text: str) -> nbformat.NotebookNode:
    return new_markdown_cell(textwrap.dedent(text).strip())


def code(text: str) -> nbformat.NotebookNode:
    return new_code_cell(textwrap.dedent(text).strip())


SETUP = """
import os
import uuid

import posthog_llm

# The local store: one SQLite file. `posthog-llm serve --db <this path>` opens it in the viewer.
DB = os.environ.get("POSTHOG_LLM_DB", ".posthog-llm/events.db")
client = posthog_llm.Client(destination=posthog_llm.SQLiteDestination(DB))
RUN = uuid.uuid4().hex[:6]  # makes this run's trace ids unique


def show(trace_id):
    \"\"\"Deliver the captured events, then return the trace: Jupyter displays it as a tree.\"\"\"
    client.flush()
    with posthog_llm.EventStore(DB) as store:
        return store.trace(trace_id)
"""

SETUP_MD = """
## 1. A client that writes to the local store

`posthog_llm.Client` queues events and ships them in the background. Here they go to a local
SQLite file, so nothing leaves this machine. To send them to PostHog instead, build the client
with your project key; the capture code stays the same (only the `show(...)` cells below read
the local store):

```python
client = posthog_llm.Client(api_key="phc_...", host="https://us.i.posthog.com")
```

`show(trace_id)` flushes the queue and reads one trace back from the store; as the last
expression of a cell, Jupyter shows it as a tree (click *input* / *output* to unfold content).
"""

NEXT_LOCAL = """
Everything captured above is in the local store. To browse it in the trace viewer, run this
in a terminal from this folder (or pass the path in `DB` if you set `POSTHOG_LLM_DB`):

```bash
posthog-llm serve --db .posthog-llm/events.db    # then open http://127.0.0.1:8010
```
"""


# -- LangChain -------------------------------------------------------------------------------------

LANGCHAIN = [
    md(
        """
        # LangChain → PostHog LLM analytics

        This notebook captures LangChain runs with posthog-llm's `PostHogCallbackHandler` and
        shows each captured trace right here. It runs offline: the chat model is a fake from
        `langchain-core` and the events go to a local store instead of PostHog.

        Needs `pip install 'posthog-llm[langchain,notebooks]'`.
        """
    ),
    md(SETUP_MD),
    code(SETUP),
    md(
        """
        ## 2. A chat model

        In your app this is `ChatOpenAI(model="gpt-4o-mini")`, `ChatAnthropic(...)` or any other
        LangChain chat model. Here it is `langchain-core`'s `GenericFakeChatModel`, which replays
        scripted replies. The small subclass makes it report what real providers report — a
        model name, token usage (here: words), tools — so the events have something to show.
        """
    ),
    code(
        """
        from langchain_core.language_models import GenericFakeChatModel
        from langchain_core.messages import AIMessage, AIMessageChunk
        from langchain_core.outputs import ChatGenerationChunk
        from langchain_core.utils.function_calling import convert_to_openai_tool


        def word_usage(messages, text):
            prompt = sum(len(str(m.content).split()) for m in messages)
            reply = len(text.split())
            return {"input_tokens": prompt, "output_tokens": reply, "total_tokens": prompt + reply}


        class FakeChatModel(GenericFakeChatModel):
            model_name: str = "fake-chat-model"

            def _get_ls_params(self, stop=None, **kwargs):
                params = super()._get_ls_params(stop=stop, **kwargs)
                return {**params, "ls_provider": "fake", "ls_model_name": self.model_name}

            def bind_tools(self, tools, **kwargs):
                return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)

            def _generate(self, messages, stop=None, run_manager=None, **kwargs):
                result = super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)
                message = result.generations[0].message
                calls = " ".join(str(call["args"]) for call in message.tool_calls)
                message.usage_metadata = word_usage(messages, f"{message.content} {calls}")
                return result

            def _stream(self, messages, stop=None, run_manager=None, **kwargs):
                text = ""
                for chunk in super()._stream(messages, stop=stop, run_manager=run_manager, **kwargs):
                    text += chunk.text
                    yield chunk
                # Like OpenAI with stream_options.include_usage: usage comes in a last chunk.
                yield ChatGenerationChunk(
                    message=AIMessageChunk(content="", usage_metadata=word_usage(messages, text))
                )
        """
    ),
    md(
        """
        ## 3. Capture a chain

        Pass a `PostHogCallbackHandler` in the run's `callbacks`. The chain becomes one trace:
        `$ai_trace` for the chain, `$ai_span` for the prompt and the parser, `$ai_generation`
        for the model call (model, messages, answer, tokens, latency).

        `distinct_id` ties the events to a person in PostHog. Per run, `posthog_*` keys in the
        config metadata override the handler's options — here the trace id, so we can find it.
        """
    ),
    code(
        """
        from langchain_core.output_parsers import StrOutputParser
        from langchain_core.prompts import ChatPromptTemplate
        from posthog_llm.integrations.langchain import PostHogCallbackHandler

        handler = PostHogCallbackHandler(client, distinct_id="user_123", properties={"plan": "pro"})

        prompt = ChatPromptTemplate.from_messages(
            [("system", "You answer in one sentence."), ("user", "{question}")]
        )
        model = FakeChatModel(messages=iter(["Hedgehogs sleep curled up in a tight ball."]))
        chain = prompt | model | StrOutputParser()

        hello_trace = f"langchain-hello-{RUN}"
        chain.invoke(
            {"question": "How do hedgehogs sleep?"},
            config={"callbacks": [handler], "metadata": {"posthog_trace_id": hello_trace}},
        )
        """
    ),
    code("show(hello_trace)"),
    md(
        """
        ## 4. A tool call

        An agent-style step: the model asks for a tool, the tool runs, the model answers with its
        result. `@chain` turns the function into one runnable, so all steps land in one trace.
        Instead of metadata, `posthog_llm.context(...)` sets the identity for everything inside
        the `with` block — LangChain, LlamaIndex and OpenAI calls alike.
        """
    ),
    code(
        """
        from langchain_core.runnables import chain as as_chain
        from langchain_core.tools import tool


        @tool
        def get_weather(city: str) -> str:
            \"\"\"Current weather in a city.\"\"\"
            return {"Paris": "14°C, light rain"}.get(city, "mild and cloudy")


        model = FakeChatModel(
            messages=iter(
                [
                    AIMessage(
                        content="",
                        tool_calls=[{"name": "get_weather", "args": {"city": "Paris"}, "id": "call_1"}],
                    ),
                    "Take an umbrella: it is 14°C with light rain in Paris.",
                ]
            )
        )


        @as_chain
        def weather_assistant(question: str) -> str:
            messages = prompt.invoke({"question": question}).to_messages()
            decision = model.bind_tools([get_weather]).invoke(messages)
            messages.append(decision)
            for call in decision.tool_calls:
                messages.append(get_weather.invoke(call))  # a ToolMessage with the result
            return (model | StrOutputParser()).invoke(messages)


        tool_trace = f"langchain-tool-{RUN}"
        with posthog_llm.context(distinct_id="user_123", trace_id=tool_trace, session_id="chat-42"):
            answer = weather_assistant.invoke(
                "Do I need an umbrella in Paris?", config={"callbacks": [handler]}
            )
        answer
        """
    ),
    code("show(tool_trace)"),
    md(
        """
        ## 5. Streaming

        Streamed runs are captured too: the generation carries `$ai_stream` and the time to the
        first token, and is sent once the stream ends.
        """
    ),
    code(
        """
        model = FakeChatModel(
            messages=iter(["Musée d'Orsay, the covered passages, then hot chocolate in the Marais."])
        )
        stream_chain = prompt | model | StrOutputParser()
        stream_trace = f"langchain-stream-{RUN}"
        config = {"callbacks": [handler], "metadata": {"posthog_trace_id": stream_trace}}
        for piece in stream_chain.stream({"question": "Rainy day in Paris?"}, config=config):
            print(piece, end="", flush=True)
        """
    ),
    code("show(stream_trace)"),
    md(
        """
        ## 6. Privacy mode

        With `privacy_mode=True` (on the handler, the client, a `context`, or per run with the
        `posthog_privacy_mode` metadata key) no prompt, answer or chain state leaves your
        process; model, tokens and latency still do.
        """
    ),
    code(
        """
        private_handler = PostHogCallbackHandler(client, privacy_mode=True)
        model = FakeChatModel(messages=iter(["A secret answer."]))
        private_trace = f"langchain-private-{RUN}"
        (prompt | model | StrOutputParser()).invoke(
            {"question": "Something confidential"},
            config={"callbacks": [private_handler], "metadata": {"posthog_trace_id": private_trace}},
        )
        trace = show(private_trace)
        generation = next(e for e in trace.events if e["event"] == "$ai_generation")
        # Tokens, model and latency are there; $ai_input and $ai_output_choices are not.
        sorted(key for key in generation["properties"] if key.startswith("$ai_"))
        """
    ),
    md(
        """
        ## Next

        - Capture every run in the process without passing callbacks:
          `posthog_llm.integrations.langchain.set_global_handler(client)`.
        - Send to PostHog: build the client with `api_key=` (see step 1) and look at the traces
          in PostHog's LLM analytics.
        """
        + NEXT_LOCAL
    ),
]


# -- LlamaIndex ------------------------------------------------------------------------------------

LLAMA_INDEX = [
    md(
        """
        # LlamaIndex → PostHog LLM analytics

        One line, `posthog_li.set_global_handler(client)`, captures every LlamaIndex query, LLM
        call and embedding. This notebook builds a small `VectorStoreIndex`, queries it, and shows
        the captured traces here. It runs offline with LlamaIndex's mock models.

        Needs `pip install 'posthog-llm[llama-index,notebooks]'`.
        """
    ),
    md(SETUP_MD),
    code(SETUP),
    md(
        """
        ## 2. Models

        In your app these are e.g. `OpenAIEmbedding()` and `OpenAI(model="gpt-4o-mini")`. Here
        they are subclasses of LlamaIndex's `MockEmbedding` and `MockLLM`: the embedding counts
        words into buckets (so texts that share words are close and retrieval finds the right
        document), and the LLM answers with the context sentence closest to the question and
        reports token usage like a real provider does.
        """
    ),
    code(
        """
        import re
        import zlib

        from llama_index.core.base.llms.types import CompletionResponse, LLMMetadata
        from llama_index.core.embeddings import MockEmbedding
        from llama_index.core.llms import MockLLM
        from llama_index.core.llms.callbacks import llm_completion_callback


        def words(text):
            return re.findall(r"\\w+", text.lower())


        class WordEmbedding(MockEmbedding):
            def _embed(self, text):
                vector = [0.0] * self.embed_dim
                for word in words(text):
                    vector[zlib.crc32(word.encode()) % self.embed_dim] += 1.0
                norm = sum(v * v for v in vector) ** 0.5 or 1.0
                return [v / norm for v in vector]

            def _get_text_embedding(self, text):
                return self._embed(text)

            def _get_query_embedding(self, query):
                return self._embed(query)


        class QuotingLLM(MockLLM):
            @property
            def metadata(self):
                return LLMMetadata(model_name="fake-llm")

            def _answer(self, prompt):
                # LlamaIndex's QA prompt: context between dashed lines, then "Query: ...".
                context = prompt.split("---------------------")[1] if "-----" in prompt else prompt
                query = set(words(prompt.rsplit("Query:", 1)[-1]))
                sentences = [s.strip() for s in re.split(r"(?<=\\.)\\s+", context) if s.strip()]
                return max(sentences, key=lambda s: len(query & set(words(s))))

            def _usage(self, prompt, answer):
                usage = {"prompt_tokens": len(prompt.split()), "completion_tokens": len(answer.split())}
                return {"usage": usage}

            @llm_completion_callback()
            def complete(self, prompt, formatted=False, **kwargs):
                answer = self._answer(prompt)
                return CompletionResponse(text=answer, raw=self._usage(prompt, answer))

            @llm_completion_callback()
            def stream_complete(self, prompt, formatted=False, **kwargs):
                answer = self._answer(prompt)

                def pieces():
                    text = ""
                    for word in answer.split(" "):
                        delta = word if not text else " " + word
                        text += delta
                        done = text == answer
                        yield CompletionResponse(
                            text=text, delta=delta, raw=self._usage(prompt, answer) if done else None
                        )

                return pieces()


        embed_model = WordEmbedding(embed_dim=64, model_name="fake-embedding")
        llm = QuotingLLM()
        """
    ),
    md(
        """
        ## 3. One line to capture everything

        Call it before or after configuring `Settings`, building indexes or engines — it hooks
        LlamaIndex's instrumentation, so order does not matter. Calling it again replaces the
        earlier registration; `remove_global_handler()` stops capture.
        """
    ),
    code(
        """
        from posthog_llm.integrations import llama_index as posthog_li

        posthog_li.set_global_handler(client, properties={"app": "notebook"})
        """
    ),
    md(
        """
        ## 4. Build an index and query it

        Building the index is a trace of its own (the documents' embeddings). The query gives a
        trace with the retrieval (and the query's embedding), the synthesis, and the LLM call.
        `posthog_llm.context(...)` sets who asked and the trace id.
        """
    ),
    code(
        """
        from llama_index.core import Document, VectorStoreIndex

        documents = [
            Document(text="Hedgehogs are nocturnal and sleep curled up in a ball during the day."),
            Document(text="In winter, hedgehogs hibernate in nests of leaves for several months."),
            Document(text="A hedgehog has about five thousand spines, which are hollow hairs."),
        ]
        index = VectorStoreIndex.from_documents(documents, embed_model=embed_model)
        engine = index.as_query_engine(llm=llm, similarity_top_k=2)

        query_trace = f"llama-index-query-{RUN}"
        with posthog_llm.context(distinct_id="user_123", trace_id=query_trace):
            response = engine.query("What do hedgehogs do in winter?")
        str(response)
        """
    ),
    code("show(query_trace)"),
    md(
        """
        ## 5. A streamed query

        The LLM call of a streamed query runs while you read `response_gen`; it stays in the
        query's trace, and the trace is sent once the stream is consumed.
        """
    ),
    code(
        """
        stream_engine = index.as_query_engine(llm=llm, similarity_top_k=2, streaming=True)
        stream_trace = f"llama-index-stream-{RUN}"
        with posthog_llm.context(distinct_id="user_123", trace_id=stream_trace):
            streaming = stream_engine.query("How many spines does a hedgehog have?")
            for piece in streaming.response_gen:
                print(piece, end="", flush=True)
        """
    ),
    code("show(stream_trace)"),
    md(
        """
        ## 6. Stop capturing

        `remove_global_handler()` unregisters everything (useful in tests and notebooks).
        """
    ),
    code("posthog_li.remove_global_handler()"),
    md("## Next\n" + NEXT_LOCAL),
]


# -- OpenAI ----------------------------------------------------------------------------------------

OPENAI = [
    md(
        """
        # OpenAI → PostHog LLM analytics

        Swap `openai.OpenAI` for `posthog_llm.integrations.openai.OpenAI`, pass `posthog_client`,
        and every chat completion, stream, Responses call and embedding becomes a PostHog event.
        This notebook runs offline against a **local stand-in of OpenAI's API** (a loopback
        server that echoes prompts deterministically — not a model, and no API calls).

        Needs `pip install 'posthog-llm[openai,notebooks]'`.
        """
    ),
    md(SETUP_MD),
    code(SETUP),
    md(
        """
        ## 2. The OpenAI client

        The stand-in listens on `127.0.0.1`. With a real key you would write
        `OpenAI(posthog_client=client)` (the key from `OPENAI_API_KEY`) and leave out `base_url`.
        """
    ),
    code(
        """
        from posthog_llm.integrations.openai import OpenAI
        from posthog_llm.local.openai_standin import OpenAIStandIn

        standin = OpenAIStandIn().start()
        print("local stand-in OpenAI endpoint at", standin.base_url, "— no real API calls")

        openai_client = OpenAI(base_url=standin.base_url, api_key="sk-local", posthog_client=client)
        """
    ),
    md(
        """
        ## 3. A chat completion

        The `posthog_*` arguments are optional and removed before the request is sent: who asked,
        which trace the call belongs to, extra properties, groups, privacy mode.
        """
    ),
    code(
        """
        chat_trace = f"openai-{RUN}"
        reply = openai_client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[
                {"role": "system", "content": "You are a friendly copywriter."},
                {"role": "user", "content": "A tagline for a hedgehog café, please."},
            ],
            temperature=0.7,
            posthog_distinct_id="user_123",
            posthog_trace_id=chat_trace,
            posthog_properties={"feature": "tagline"},
        )
        reply.choices[0].message.content
        """
    ),
    code("show(chat_trace)"),
    md(
        """
        ## 4. Streams and embeddings

        A stream is sent once it ends, with `$ai_stream` and the time to the first token; usage
        is requested from the API for you. Here `posthog_llm.context(...)` puts the calls in the
        same trace instead of passing `posthog_*` arguments to each.
        """
    ),
    code(
        """
        with posthog_llm.context(distinct_id="user_123", trace_id=chat_trace):
            stream = openai_client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "Now a welcome sign for the café."}],
                stream=True,
            )
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    print(chunk.choices[0].delta.content, end="", flush=True)
            print()
            vectors = openai_client.embeddings.create(
                model="text-embedding-3-small", input=["hedgehog", "café", "welcome"]
            )
        len(vectors.data), len(vectors.data[0].embedding)
        """
    ),
    code("show(chat_trace)"),
    md(
        """
        ## 5. Errors

        The SDK's exception reaches your code unchanged; the event records it with
        `$ai_is_error`, `$ai_error` and the HTTP status. (The stand-in answers a model named
        `error-429` with a rate-limit error.)
        """
    ),
    code(
        """
        import openai

        error_trace = f"openai-error-{RUN}"
        try:
            openai_client.with_options(max_retries=0).chat.completions.create(
                model="error-429",
                messages=[{"role": "user", "content": "hello"}],
                posthog_trace_id=error_trace,
            )
        except openai.RateLimitError as exc:
            print("the SDK raised", type(exc).__name__)
        show(error_trace)
        """
    ),
    md("## 6. Clean up"),
    code(
        """
        openai_client.close()
        standin.close()
        """
    ),
    md("## Next\n" + NEXT_LOCAL),
]


# -- exploring the store ---------------------------------------------------------------------------

EXPLORE = [
    md(
        """
        # Explore your LLM events with pandas

        The local store is a SQLite file; `posthog_llm.EventStore` reads it as plain dicts. This
        notebook loads the events into a pandas DataFrame, estimates cost from the bundled
        pricing table, and plots latency, tokens and cost by model.

        Needs `pip install 'posthog-llm[all]'` (the demo below uses every integration).
        """
    ),
    code(
        """
        import os
        import subprocess
        import sys

        import posthog_llm

        DB = os.environ.get("POSTHOG_LLM_DB", ".posthog-llm/events.db")
        """
    ),
    md(
        """
        ## 1. Some events to look at

        If you ran the other notebooks, the store already has events. To be sure, this runs
        `posthog-llm demo` into it (offline: fake models and a local OpenAI stand-in), and then
        calls a few OpenAI model names on the stand-in so the cost chart has several bars.
        """
    ),
    code(
        """
        # Offline whatever keys this shell has: the demo would call the real APIs, and send to
        # PostHog, with them.
        KEYS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY",
                "POSTHOG_API_KEY", "POSTHOG_PROJECT_API_KEY", "POSTHOG_HOST")
        offline = {k: v for k, v in os.environ.items() if k not in KEYS}
        demo = subprocess.run(
            [sys.executable, "-m", "posthog_llm", "demo", "--db", DB],
            capture_output=True, text=True, env=offline,
        )
        print(demo.stdout[-1500:])
        assert demo.returncode == 0, demo.stderr
        """
    ),
    code(
        """
        from posthog_llm.integrations.openai import OpenAI
        from posthog_llm.local.openai_standin import OpenAIStandIn

        client = posthog_llm.Client(destination=posthog_llm.SQLiteDestination(DB))
        questions = ["Name a hedgehog.", "Why do hedgehogs hibernate?", "Write a haiku about spines."]
        with OpenAIStandIn(latency=0.01) as standin:
            openai_client = OpenAI(base_url=standin.base_url, api_key="sk-local", posthog_client=client)
            for model in ["gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "o4-mini"]:
                for question in questions:
                    openai_client.chat.completions.create(
                        model=model,
                        messages=[{"role": "user", "content": question}],
                        posthog_distinct_id="explorer",
                    )
        client.shutdown()  # delivers everything to the store
        with posthog_llm.EventStore(DB) as store:
            print("events in the store:", store.count())
        """
    ),
    md(
        """
        ## 2. Into a DataFrame

        One row per LLM call (`$ai_generation`) or embedding (`$ai_embedding`). The cost is the
        one the local viewer shows (`event_cost`): what the event states itself, else an
        **estimate** from posthog-llm's dated pricing table (cache reads and writes, thinking
        tokens); models it does not know (the fakes) get no cost. PostHog computes its own costs
        for events sent there.
        """
    ),
    code(
        """
        import pandas as pd
        from posthog_llm.local.pricing import event_cost

        with posthog_llm.EventStore(DB) as store:
            events = store.events()

        rows = []
        for event in events:
            if event["event"] not in ("$ai_generation", "$ai_embedding"):
                continue
            p = event["properties"]
            cost = event_cost(p)
            rows.append(
                {
                    "time": pd.Timestamp(event["timestamp"]),
                    "event": event["event"].removeprefix("$ai_"),
                    "trace_id": p.get("$ai_trace_id"),
                    "distinct_id": event["distinct_id"],
                    "framework": p.get("$ai_framework", "openai"),
                    "model": p.get("$ai_model") or "unknown",
                    "latency_ms": (p.get("$ai_latency") or 0) * 1000,
                    "input_tokens": p.get("$ai_input_tokens") or 0,
                    "output_tokens": p.get("$ai_output_tokens") or 0,
                    "cost_usd": cost["total_cost_usd"] if cost else None,
                    "error": p.get("$ai_is_error") in (True, 1, "true"),
                }
            )
        calls = pd.DataFrame(rows)
        calls.tail()
        """
    ),
    md("## 3. By model"),
    code(
        """
        by_model = (
            calls.groupby("model")
            .agg(
                calls=("event", "size"),
                mean_latency_ms=("latency_ms", "mean"),
                input_tokens=("input_tokens", "sum"),
                output_tokens=("output_tokens", "sum"),
                cost_usd=("cost_usd", lambda s: s.sum(min_count=1)),
                errors=("error", "sum"),
            )
            .sort_values("calls", ascending=False)
        )
        by_model
        """
    ),
    code(
        """
        %matplotlib inline
        import matplotlib.pyplot as plt

        fig, (ax_latency, ax_tokens, ax_cost) = plt.subplots(1, 3, figsize=(15, 4), sharey=True)
        models = by_model.iloc[::-1]  # barh draws bottom-up: keep the busiest model on top

        models["mean_latency_ms"].plot.barh(ax=ax_latency, color="#1d4aff")
        ax_latency.set(title="Mean latency", xlabel="ms", ylabel="")

        models[["input_tokens", "output_tokens"]].plot.barh(
            ax=ax_tokens, stacked=True, color=["#f54e00", "#f9bd2b"]
        )
        ax_tokens.set(title="Tokens", xlabel="tokens")

        # Models without a known price (the fakes) get no bar.
        (models["cost_usd"] / models["calls"] * 1000).fillna(0).plot.barh(ax=ax_cost, color="#0a8a4a")
        ax_cost.set(title="Estimated cost", xlabel="USD per 1,000 calls")

        fig.tight_layout()
        plt.show()
        """
    ),
    md(
        """
        ## 4. Over time, and the slowest trace

        Latency of each call over time, then the trace that took longest, as a tree.
        """
    ),
    code(
        """
        fig, ax = plt.subplots(figsize=(10, 3.5))
        for model, group in calls.groupby("model"):
            ax.scatter(group["time"], group["latency_ms"], label=model, s=18)
        ax.set(title="Latency per call", ylabel="ms")
        ax.legend(fontsize=8, ncol=2)
        fig.autofmt_xdate()
        plt.show()
        """
    ),
    code(
        """
        slowest = calls.sort_values("latency_ms").iloc[-1]["trace_id"]
        with posthog_llm.EventStore(DB) as store:
            trace = store.trace(slowest)
        trace
        """
    ),
    md(
        """
        ## Next

        The same numbers, live, in the local viewer's dashboard:

        ```bash
        posthog-llm serve --db .posthog-llm/events.db    # then open http://127.0.0.1:8010
        ```

        In PostHog, the LLM analytics dashboards show them for events sent there.
        """
    ),
]


# -- OpenAI Agents SDK and OpenTelemetry ------------------------------------------------------------

AGENTS = [
    md(
        """
        # Agents and OpenTelemetry → PostHog LLM analytics

        Two ways agent frameworks reach posthog-llm:

        - the **OpenAI Agents SDK**: `posthog_llm.integrations.openai_agents.instrument()` adds a
          tracing processor, and every run becomes a trace of agents, turns, model calls, tool
          calls and handoffs;
        - **OpenTelemetry**: `PostHogSpanProcessor` turns spans that follow the GenAI semantic
          conventions (PydanticAI, CrewAI, OpenLLMetry, OpenInference ...) into the same events.

        Everything runs offline: the agents talk to a **local stand-in of OpenAI's API** (a
        loopback server that echoes prompts deterministically — not a model, no API calls).

        Needs `pip install 'posthog-llm[openai-agents,otel,notebooks]'`.
        """
    ),
    md(SETUP_MD),
    code(SETUP),
    md(
        """
        ## 2. The Agents SDK on the local stand-in

        With a real key you would leave the default client alone. Offline, we point the SDK at
        the stand-in and switch off its own export of traces to OpenAI's dashboard.
        `instrument()` adds posthog-llm's processor next to the SDK's own processors.
        """
    ),
    code(
        """
        import openai
        from agents import (
            Agent, RunConfig, Runner, function_tool, handoff,
            set_default_openai_api, set_default_openai_client, set_trace_processors,
        )
        from agents.extensions import handoff_filters
        from agents.tracing import gen_trace_id
        from posthog_llm.integrations import openai_agents as posthog_agents
        from posthog_llm.local.openai_standin import OpenAIStandIn

        standin = OpenAIStandIn().start()
        print("local stand-in OpenAI endpoint at", standin.base_url, "— no real API calls")
        set_default_openai_client(
            openai.AsyncOpenAI(base_url=standin.base_url, api_key="sk-local"), use_for_tracing=False
        )
        set_default_openai_api("chat_completions")
        set_trace_processors([])  # offline: no trace export to OpenAI

        processor = posthog_agents.instrument(client, properties={"app": "weather-desk"})
        """
    ),
    md(
        """
        ## 3. A triage agent hands off to a specialist who calls a tool

        (The stand-in calls the first tool it is offered; the handoff filter gives the
        specialist a fresh question so its tool call gets an id of its own.)
        """
    ),
    code(
        """
        @function_tool
        def get_weather(city: str) -> str:
            \"\"\"The weather in a city.\"\"\"
            return f"sunny in {city}"


        def fresh_question(data):
            data = handoff_filters.remove_all_tools(data)
            history = data.input_history
            history = ({"role": "user", "content": history},) if isinstance(history, str) else tuple(history)
            return data.clone(input_history=history + ({"role": "user", "content": "Paris"},))


        specialist = Agent(name="Specialist", instructions="Answer with get_weather.", tools=[get_weather])
        triage = Agent(
            name="Triage",
            instructions="Route weather questions to the specialist.",
            handoffs=[handoff(specialist, input_filter=fresh_question)],
        )

        agents_trace = gen_trace_id()
        with posthog_llm.context(distinct_id="user_123"):
            result = await Runner.run(  # Runner.run_sync outside Jupyter's event loop
                triage,
                "What is the weather in Paris?",
                run_config=RunConfig(workflow_name="Weather desk", trace_id=agents_trace, group_id=f"chat-{RUN}"),
            )
        result.final_output
        """
    ),
    code("show(agents_trace)"),
    md(
        """
        ## 4. A run inside your own span

        `posthog_llm.span(...)` around `Runner.run` makes the run a child of your span: one
        trace for the whole request, the Agents run as a `$ai_span` in it.
        """
    ),
    code(
        """
        with posthog_llm.span("handle request", input={"question": "Weather in Paris?"}, client=client) as request:
            result = await Runner.run(triage, "What is the weather in Paris?")
            request.set_output(result.final_output)
        show(request.trace_id)
        """
    ),
    md(
        """
        ## 5. OpenTelemetry spans

        Any instrumentation that follows the OpenTelemetry GenAI semantic conventions produces
        spans like these. The request span becomes the `$ai_trace`; a database span that is not
        between AI spans stays out.
        """
    ),
    code(
        """
        import json

        from opentelemetry.sdk.trace import TracerProvider
        from posthog_llm.integrations.otel import PostHogSpanProcessor

        provider = TracerProvider()
        provider.add_span_processor(PostHogSpanProcessor(client))
        tracer = provider.get_tracer("notebook")

        with tracer.start_as_current_span("POST /ask") as request_span:
            with tracer.start_as_current_span(
                "invoke_agent Weather",
                attributes={"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "Weather"},
            ):
                with tracer.start_as_current_span(
                    "chat gpt-4o-mini",
                    attributes={
                        "gen_ai.operation.name": "chat",
                        "gen_ai.provider.name": "openai",
                        "gen_ai.request.model": "gpt-4o-mini",
                        "gen_ai.usage.input_tokens": 21,
                        "gen_ai.usage.output_tokens": 6,
                        "gen_ai.input.messages": json.dumps(
                            [{"role": "user", "parts": [{"type": "text", "content": "Weather in Paris?"}]}]
                        ),
                        "gen_ai.output.messages": json.dumps(
                            [{"role": "assistant", "parts": [{"type": "text", "content": "Sunny."}]}]
                        ),
                    },
                ):
                    pass
                with tracer.start_as_current_span(
                    "execute_tool get_weather",
                    attributes={
                        "gen_ai.operation.name": "execute_tool",
                        "gen_ai.tool.name": "get_weather",
                        "gen_ai.tool.call.arguments": '{"city": "Paris"}',
                        "gen_ai.tool.call.result": "sunny",
                    },
                ):
                    pass
            with tracer.start_as_current_span("SELECT history", attributes={"db.system": "sqlite"}):
                pass

        otel_trace = format(request_span.get_span_context().trace_id, "032x")
        show(otel_trace)
        """
    ),
    md(
        """
        ## 6. Spans from another process: OTLP into `posthog-llm serve`

        The local collector also accepts OTLP/HTTP traces (protobuf or JSON) at `/v1/traces`
        and at PostHog's `/i/v0/ai/otel`, through the same conversion. Point any OTLP exporter
        (or posthog-python's own OpenTelemetry processor) at it:

        ```python
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint="http://127.0.0.1:8010/v1/traces"))
        )
        ```
        """
    ),
    md("## 7. Clean up"),
    code(
        """
        posthog_agents.uninstrument()
        provider.shutdown()
        standin.close()
        """
    ),
    md("## Next\n" + NEXT_LOCAL),
]


PROVIDERS = [
    md(
        """
        # Anthropic and Gemini → PostHog LLM analytics

        Swap `anthropic.Anthropic` for `posthog_llm.integrations.anthropic.Anthropic` and
        `google.genai.Client` for `posthog_llm.integrations.gemini.Client`, pass
        `posthog_client`, and every message, stream and generation becomes a PostHog
        `$ai_generation`. This notebook runs offline against **local stand-ins of both APIs**
        (loopback servers that echo prompts deterministically — not models, and no API calls),
        or against the real APIs when `ANTHROPIC_API_KEY` / `GEMINI_API_KEY` (or
        `GOOGLE_API_KEY`) is set.

        Needs `pip install 'posthog-llm[anthropic,gemini,notebooks]'`.
        """
    ),
    md(SETUP_MD),
    code(SETUP),
    md(
        """
        ## 2. Anthropic

        With `ANTHROPIC_API_KEY` set this is `Anthropic(posthog_client=client)` against the real
        API; without it, the same client pointed at the stand-in with `base_url`. The
        `posthog_*` arguments are optional and removed before the request is sent.
        """
    ),
    code(
        """
        import os

        from posthog_llm.integrations.anthropic import Anthropic
        from posthog_llm.local.anthropic_standin import AnthropicStandIn

        anthropic_standin = None
        if os.environ.get("ANTHROPIC_API_KEY"):
            print("ANTHROPIC_API_KEY is set: calling the real Anthropic API")
            claude = Anthropic(posthog_client=client)
        else:
            anthropic_standin = AnthropicStandIn().start()
            print("local stand-in Anthropic endpoint at", anthropic_standin.base_url, "— no real API calls")
            claude = Anthropic(
                base_url=anthropic_standin.base_url, api_key="sk-ant-local", posthog_client=client
            )

        claude_trace = f"anthropic-{RUN}"
        reply = claude.messages.create(
            model="claude-haiku-4-5",
            max_tokens=200,
            system="You are a friendly copywriter.",
            messages=[{"role": "user", "content": "A tagline for a hedgehog café, please."}],
            posthog_distinct_id="user_123",
            posthog_trace_id=claude_trace,
        )
        with claude.messages.stream(
            model="claude-haiku-4-5",
            max_tokens=200,
            messages=[{"role": "user", "content": "Now a welcome sign for the café."}],
            posthog_distinct_id="user_123",
            posthog_trace_id=claude_trace,
        ) as stream:
            for text in stream.text_stream:
                print(text, end="", flush=True)
        """
    ),
    code("show(claude_trace)"),
    md(
        """
        ## 3. Gemini

        With `GEMINI_API_KEY` (or `GOOGLE_API_KEY`) set this is
        `Client(api_key=..., posthog_client=client)` against the real API; without it, the same
        client pointed at the stand-in with `http_options`. `posthog_llm.span(...)` groups the
        two calls into one trace of your own.
        """
    ),
    code(
        """
        from posthog_llm.integrations.gemini import Client as GeminiClient
        from posthog_llm.local.gemini_standin import GeminiStandIn

        gemini_standin = None
        gemini_key = os.environ.get("GEMINI_API_KEY") or os.environ.get("GOOGLE_API_KEY")
        if gemini_key:
            print("a Gemini API key is set: calling the real Gemini API")
            gemini = GeminiClient(api_key=gemini_key, posthog_client=client)
        else:
            gemini_standin = GeminiStandIn().start()
            print("local stand-in Gemini endpoint at", gemini_standin.base_url, "— no real API calls")
            gemini = GeminiClient(
                api_key="local-key", http_options={"base_url": gemini_standin.base_url},
                posthog_client=client,
            )

        with posthog_llm.context(distinct_id="user_123"):
            with posthog_llm.span("cafe_copy", client=client) as copy:
                tagline = gemini.models.generate_content(
                    model="gemini-2.5-flash", contents="A tagline for a hedgehog café."
                ).text
                sign = "".join(
                    chunk.text or ""
                    for chunk in gemini.models.generate_content_stream(
                        model="gemini-2.5-flash", contents="A welcome sign for the café."
                    )
                )
                copy.set_output({"tagline": tagline, "sign": sign})
        gemini_trace = copy.trace_id
        """
    ),
    code("show(gemini_trace)"),
    code(
        """
        for standin in (anthropic_standin, gemini_standin):
            if standin is not None:
                standin.close()
        """
    ),
    md(NEXT_LOCAL),
]


NOTEBOOKS = {
    "langchain.ipynb": LANGCHAIN,
    "llama_index.ipynb": LLAMA_INDEX,
    "openai.ipynb": OPENAI,
    "explore.ipynb": EXPLORE,
    "agents.ipynb": AGENTS,
    "providers.ipynb": PROVIDERS,
}


def notebook(name: str) -> nbformat.NotebookNode:
    """The notebook `name` as written here: its cells, no outputs."""
    notebook = new_notebook(
        cells=[nbformat.from_dict(cell) for cell in NOTEBOOKS[name]],  # fresh copies
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"},
        },
    )
    stem = name.removesuffix(".ipynb").replace("_", "-")
    for number, cell in enumerate(notebook.cells):
        cell.id = f"{stem}-{number}"  # stable ids: rebuilding gives no spurious diff
    nbformat.validate(notebook)
    return notebook


# Keys that switch a notebook from its stand-in to a real API.
API_KEYS = (
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "POSTHOG_API_KEY",
    "POSTHOG_PROJECT_API_KEY",
    "POSTHOG_HOST",
)


@contextlib.contextmanager
def _kernel_here() -> Iterator[str]:
    """A scratch folder to run in, and a `python3` kernel that is this interpreter.

    The notebooks' local store lands in the scratch folder (relative path `.posthog-llm/...`,
    as a reader gets it), never in the repository.
    """
    saved = {k: os.environ.get(k) for k in ("JUPYTER_PATH", "POSTHOG_LLM_DB", "MPLBACKEND", *API_KEYS)}
    with tempfile.TemporaryDirectory(prefix="posthog-llm-notebooks-") as scratch:
        spec_dir = os.path.join(scratch, "jupyter", "kernels", "python3")
        os.makedirs(spec_dir)
        spec = {
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python 3",
            "language": "python",
        }
        with open(os.path.join(spec_dir, "kernel.json"), "w") as fh:
            json.dump(spec, fh)
        os.environ["JUPYTER_PATH"] = os.path.join(scratch, "jupyter")
        os.environ.pop("POSTHOG_LLM_DB", None)
        os.environ.pop("MPLBACKEND", None)  # the kernel's inline backend makes the PNGs
        for key in API_KEYS:  # the committed outputs come from the stand-ins, offline
            os.environ.pop(key, None)
        os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
        run_dir = os.path.join(scratch, "run")
        os.makedirs(run_dir)
        try:
            yield run_dir
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def execute(notebook: nbformat.NotebookNode, cwd: str) -> None:
    """Run every cell in a fresh kernel; raises nbclient's CellExecutionError when one fails."""
    import nbclient

    nbclient.NotebookClient(
        notebook,
        kernel_name="python3",
        timeout=180,
        record_timing=False,  # no timestamps in the committed files
        resources={"metadata": {"path": cwd}},
    ).execute()
    notebook.metadata["kernelspec"]["display_name"] = "Python 3"


def build(folder: str = HERE, *, run: bool = True) -> list[str]:
    """Write every notebook into `folder`, executed (with outputs) unless `run` is False."""
    written = []
    with contextlib.ExitStack() as stack:
        cwd = stack.enter_context(_kernel_here()) if run else ""
        for name in NOTEBOOKS:
            nb = notebook(name)
            if run:
                print("running", name, flush=True)
                execute(nb, cwd)
            path = os.path.join(folder, name)
            nbformat.write(nb, path)
            written.append(path)
    return written


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-execute", action="store_true", help="write the cells, no outputs")
    args = parser.parse_args()
    for path in build(run=not args.no_execute):
        print("wrote", os.path.relpath(path))
