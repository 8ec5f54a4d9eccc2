"""OpenAI Agents SDK benchmark: what a PostHog tracing processor adds to an agent run.

One run measures, interleaved round by round, the Agents SDK with no processor (bare),
posthog-llm's processor (`posthog_llm.integrations.openai_agents.instrument`) and PostHog's
`posthog.ai.openai_agents.PostHogTracingProcessor`. Both trackers send to the same loopback
capture sink; the sink and the OpenAI stand-in each run in their own process. Each round ends
with the tracker's flush, so building and delivering the events counts.

Two workloads, each one run of a triage agent that hands off to a specialist who calls a tool
(3 model calls, 12 spans and a trace):

- spans: the run's spans made with the SDK's own tracing API, without model calls: the
  processors' cost, measured precisely;
- run: a real `Runner.run_sync` against the loopback OpenAI stand-in (Chat Completions).

    python bench/bench_agents.py            # full run, writes bench/results/agents.md
    python bench/bench_agents.py --quick    # fewer runs, same table
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _servers import Servers  # noqa: E402

CONTENDERS = ["bare", "posthog-llm", "posthog-python"]
SYSTEM = "You route questions to the right specialist."
QUESTION = "What is the weather in Paris?"


class Contender:
    def __init__(self, name: str, processors: list[Any], flush: Any, stop: Any) -> None:
        self.name, self.processors, self.flush, self.stop = name, processors, flush, stop


def make_contender(name: str, sink_url: str) -> Contender:
    if name == "bare":
        return Contender(name, [], lambda: None, lambda: None)
    if name == "posthog-llm":
        from posthog_llm import Client
        from posthog_llm.integrations.openai_agents import PostHogTracingProcessor

        client = Client(api_key="phc_bench", host=sink_url)
        processor = PostHogTracingProcessor(client)
        return Contender(
            name, [processor], lambda: client.flush(timeout=300), lambda: client.shutdown(5)
        )
    if name == "posthog-python":
        import posthog
        from posthog.ai.openai_agents import PostHogTracingProcessor as TheirProcessor

        client = posthog.Posthog("phc_bench", host=sink_url)
        return Contender(name, [TheirProcessor(client=client)], client.flush, client.shutdown)
    raise ValueError(name)


def _message(role: str, content: str) -> dict[str, Any]:
    return {"role": role, "content": content}


def run_spans() -> None:
    """The spans of one handoff-and-tool run, made with the SDK's tracing API."""
    from agents.tracing import (
        agent_span,
        function_span,
        generation_span,
        handoff_span,
        task_span,
        trace,
        turn_span,
    )

    usage = {"input_tokens": 40, "output_tokens": 12}
    history = [_message("system", SYSTEM), _message("user", QUESTION)]
    call = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "transfer", "arguments": "{}"}}
        ],
    }
    config = {"temperature": 0.2, "base_url": "https://api.openai.com/v1"}
    with trace("Agent workflow"), task_span("Agent workflow"):
        with agent_span("Triage", handoffs=["Specialist"], tools=[], output_type="str"):
            with turn_span(1, "Triage"):
                with generation_span(
                    input=history, model="gpt-4o-mini", model_config=config
                ) as gen:
                    gen.span_data.output, gen.span_data.usage = [call], usage
                with handoff_span(from_agent="Triage", to_agent="Specialist"):
                    pass
        with agent_span("Specialist", handoffs=[], tools=["get_weather"], output_type="str"):
            with turn_span(2, "Specialist"):
                with generation_span(
                    input=history, model="gpt-4o-mini", model_config=config
                ) as gen:
                    gen.span_data.output, gen.span_data.usage = [call], usage
                with function_span("get_weather", input='{"city": "Paris"}') as tool:
                    tool.span_data.output = "sunny in Paris"
            with turn_span(3, "Specialist"):
                with generation_span(
                    input=history, model="gpt-4o-mini", model_config=config
                ) as gen:
                    gen.span_data.output = [_message("assistant", "It is sunny in Paris.")]
                    gen.span_data.usage = usage


def make_run(openai_url: str) -> Any:
    import openai
    from agents import (
        Agent,
        Runner,
        function_tool,
        handoff,
        set_default_openai_api,
        set_default_openai_client,
    )
    from agents.extensions import handoff_filters

    set_default_openai_client(
        openai.AsyncOpenAI(base_url=openai_url, api_key="sk-bench-not-a-key", max_retries=0),
        use_for_tracing=False,
    )
    set_default_openai_api("chat_completions")

    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}"

    def specialist_input(data: Any) -> Any:
        data = handoff_filters.remove_all_tools(data)
        history = data.input_history
        if isinstance(history, str):
            history = ({"role": "user", "content": history},)
        return data.clone(input_history=tuple(history) + ({"role": "user", "content": "Paris"},))

    specialist = Agent(name="Specialist", instructions="Weather.", tools=[get_weather])
    triage = Agent(
        name="Triage",
        instructions=SYSTEM,
        handoffs=[handoff(specialist, input_filter=specialist_input)],
    )

    def run() -> None:
        result = Runner.run_sync(triage, QUESTION)
        assert result.final_output == "The tool returned: sunny in Paris", result.final_output

    return run


def measure(
    workload: Any, contenders: list[Contender], runs: int, rounds: int
) -> dict[str, tuple[float, float]]:
    """Median (wall µs, CPU µs) per run, rounds interleaved, each round ending with a flush."""
    from agents.tracing import set_trace_processors

    samples: dict[str, list[tuple[float, float]]] = {c.name: [] for c in contenders}
    for round_number in range(rounds + 1):
        for contender in contenders:
            set_trace_processors(contender.processors)
            n = runs if round_number else max(10, runs // 10)  # round 0 warms up
            gc.collect()
            start, cpu = time.perf_counter(), time.process_time()
            for _ in range(n):
                workload()
            contender.flush()
            if round_number:
                wall = (time.perf_counter() - start) / n * 1e6
                samples[contender.name].append((wall, (time.process_time() - cpu) / n * 1e6))
    set_trace_processors([])
    return {
        name: (statistics.median(w for w, _ in values), statistics.median(c for _, c in values))
        for name, values in samples.items()
    }


def _ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.2f}x" if theirs > 0 else "n/a"


def write_report(
    path: str,
    quick: bool,
    results: dict[str, dict[str, tuple[float, float]]],
    delivered: dict[str, int],
    settings: dict[str, Any],
) -> None:
    from importlib.metadata import version

    import posthog

    lines = [
        "# OpenAI Agents SDK processor benchmark",
        "",
        f"openai-agents {version('openai-agents')}, python {platform.python_version()}, "
        f"{os.cpu_count()} cores, posthog {posthog.VERSION}{' (--quick)' if quick else ''}. "
        "Both trackers send to one loopback capture sink; sink and OpenAI stand-in each run in "
        "their own process.",
        "Per-run cost = median over interleaved rounds (spans: "
        f"{settings['rounds']} x {settings['runs']} runs; run: {settings['rounds']} x "
        f"{settings['real_runs']} runs), each round ending with the tracker's flush, so building "
        "and delivering the events counts. Added = contender minus the SDK with no processor. "
        "CPU = this process's CPU time, all threads.",
        "",
        "| workload | contender | µs/run | added µs | added vs posthog-python | CPU µs/run | added CPU µs | added CPU vs posthog-python |",
        "|---|---|---|---|---|---|---|---|",
    ]
    verdicts = []
    for mode, numbers in results.items():
        base = numbers["bare"]
        theirs = [numbers["posthog-python"][i] - base[i] for i in (0, 1)]
        for name in CONTENDERS:
            cells = [f"{v:,.0f}" for v in numbers[name]]
            row = [mode, name, cells[0], "", "", cells[1], "", ""]
            if name != "bare":
                added = [numbers[name][i] - base[i] for i in (0, 1)]
                row[3], row[4] = f"{added[0]:+,.0f}", _ratio(added[0], theirs[0])
                row[6], row[7] = f"{added[1]:+,.0f}", _ratio(added[1], theirs[1])
            lines.append("| " + " | ".join(row) + " |")
        ours = numbers["posthog-llm"]
        verdicts.append(
            f"{_ratio(ours[0] - base[0], theirs[0])} wall, "
            f"{_ratio(ours[1] - base[1], theirs[1])} CPU ({mode})"
        )
    lines += [
        "",
        "Target: posthog-llm adds at most 1/3 of what posthog-python adds. Measured: "
        + "; ".join(verdicts)
        + ".",
        "",
        "Each run: a trace, a task span, two agents, three turns, three model calls, a handoff "
        "and a tool call. posthog-llm sends 11 events per run (the task span is folded into the "
        "`$ai_trace`), posthog-python 13.",
        "",
        f"Sink totals for the whole run: {delivered['requests']:,} requests, "
        f"{delivered['events']:,} events. Load average (1 min) at start / end: "
        f"{settings['load_start']:.1f} / {os.getloadavg()[0]:.1f}; wall times move with other "
        "work on the machine, CPU times much less.",
        "",
    ]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs and rounds")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "agents.md"))
    args = parser.parse_args()
    runs, real_runs, rounds = (100, 20, 3) if args.quick else (500, 60, 7)

    load_start = os.getloadavg()[0]
    servers = Servers("sink", "openai")
    try:
        contenders = [make_contender(name, servers.urls["sink"]) for name in CONTENDERS]
        results = {}
        print("spans ...", flush=True)
        results["spans"] = measure(run_spans, contenders, runs, rounds)
        print({k: [round(x) for x in v] for k, v in results["spans"].items()}, flush=True)
        print("run ...", flush=True)
        results["run"] = measure(make_run(servers.urls["openai"]), contenders, real_runs, rounds)
        print({k: [round(x) for x in v] for k, v in results["run"].items()}, flush=True)
        for c in contenders:
            c.stop()
        delivered = servers.stats()
    finally:
        servers.close()
    write_report(
        args.out,
        args.quick,
        results,
        delivered,
        {"runs": runs, "real_runs": real_runs, "rounds": rounds, "load_start": load_start},
    )


if __name__ == "__main__":
    main()
