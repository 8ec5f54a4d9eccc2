"""OpenAI benchmark: what tracking adds to one chat completion over the plain openai client.

One run measures, side by side and interleaved round by round: the plain `openai.OpenAI`,
posthog-llm's `posthog_llm.integrations.openai.OpenAI` and PostHog's `posthog.ai.openai.OpenAI`.
All three talk to the same loopback OpenAI stand-in (`posthog_llm.local.openai_standin`), and
both trackers send to the same loopback capture sink; the two servers run in their own process
so their work does not compete with the measured one.

Cost per call includes delivering the block's events (each block ends with the tracker's flush),
so work pushed to a background thread is counted too. Measured for plain and for streamed
(`stream=True`, every chunk read) completions.

    python bench/bench_openai.py            # full run, writes bench/results/openai.md
    python bench/bench_openai.py --quick    # fewer calls, same table
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))

CONTENDERS = ["openai", "posthog-llm", "posthog-python"]
MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Tell me a fun fact about hedgehogs"},
]
OPENAI_KEY = "sk-bench-not-a-real-key"

# The capture sink (bench/_sink.py) and the OpenAI stand-in, together in one child process.
SERVERS = """
import json, sys
sys.path.insert(0, {here!r})
from _sink import Sink
from posthog_llm.local.openai_standin import OpenAIStandIn
sink = Sink(count=True).start()
standin = OpenAIStandIn(max_recorded=10).start()
print(json.dumps({{"sink": sink.url, "openai": standin.base_url}}), flush=True)
for line in sys.stdin:
    if line.strip() != "stats":
        break
    print(json.dumps({{"events": sink.events, "requests": sink.requests}}), flush=True)
standin.close()
sink.close()
"""


class Servers:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVERS.format(here=HERE)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        urls = json.loads(self.proc.stdout.readline())
        self.sink_url: str = urls["sink"]
        self.openai_url: str = urls["openai"]

    def stats(self) -> dict[str, int]:
        self.proc.stdin.write("stats\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=10)
        except Exception:
            self.proc.kill()


class Contender:
    def __init__(self, name: str, llm: Any, flush: Any, stop: Any) -> None:
        self.name = name
        self.llm = llm
        self.flush = flush
        self.stop = stop


def make_contender(name: str, servers: Servers) -> Contender:
    sdk = {"base_url": servers.openai_url, "api_key": OPENAI_KEY, "max_retries": 0}
    if name == "openai":
        import openai

        return Contender(name, openai.OpenAI(**sdk), lambda: None, lambda: None)
    if name == "posthog-llm":
        from posthog_llm import Client
        from posthog_llm.integrations.openai import OpenAI

        client = Client(api_key="phc_bench", host=servers.sink_url)
        llm = OpenAI(posthog_client=client, **sdk)
        return Contender(name, llm, lambda: client.flush(timeout=300), lambda: client.shutdown(5))
    if name == "posthog-python":
        import posthog
        from posthog.ai.openai import OpenAI as PostHogOpenAI

        client = posthog.Posthog("phc_bench", host=servers.sink_url)
        llm = PostHogOpenAI(posthog_client=client, **sdk)
        return Contender(name, llm, client.flush, client.shutdown)
    raise ValueError(name)


def call_plain(llm: Any) -> None:
    reply = llm.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, temperature=0.7)
    assert reply.choices[0].message.content


def call_stream(llm: Any) -> None:
    stream = llm.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    for _ in stream:
        pass


def time_block(call: Any, contender: Contender, calls: int) -> float:
    """Seconds per call for `calls` completions plus delivering the events they produced."""
    gc.collect()
    start = time.perf_counter()
    for _ in range(calls):
        call(contender.llm)
    contender.flush()
    return (time.perf_counter() - start) / calls


def measure(call: Any, contenders: list[Contender], calls: int, rounds: int) -> dict[str, float]:
    """Median µs per call of each contender, rounds interleaved so drift hits all alike."""
    samples: dict[str, list[float]] = {c.name: [] for c in contenders}
    for c in contenders:  # warm-up: imports, first connections, caches
        time_block(call, c, max(20, calls // 10))
    for _ in range(rounds):
        for c in contenders:
            samples[c.name].append(time_block(call, c, calls) * 1e6)
    return {name: statistics.median(values) for name, values in samples.items()}


def _ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.2f}x" if theirs > 0 else "n/a"


def write_report(
    path: str,
    quick: bool,
    results: dict[str, dict[str, float]],
    delivered: dict[str, int],
    settings: dict[str, int],
) -> None:
    import openai
    import posthog

    lines = [
        "# OpenAI wrapper benchmark",
        "",
        f"`chat.completions.create` against the loopback OpenAI stand-in; python "
        f"{platform.python_version()}, {os.cpu_count()} cores, openai {openai.__version__}, "
        f"posthog {posthog.VERSION}{' (--quick)' if quick else ''}. Both trackers send to one "
        "loopback capture sink; sink and stand-in run in their own process.",
        f"Per-call cost = median over {settings['rounds']} interleaved rounds of "
        f"{settings['calls']} calls, each round ending with the tracker's flush, so delivering the "
        "events is counted. Added = contender minus the plain openai client.",
        "",
        "| call | contender | µs/call | added µs | added vs posthog-python |",
        "|---|---|---|---|---|",
    ]
    verdicts = []
    for mode, numbers in results.items():
        base = numbers["openai"]
        theirs = numbers["posthog-python"] - base
        for name in CONTENDERS:
            added = numbers[name] - base
            extra = "" if name == "openai" else f"{added:+,.0f}"
            ratio = "" if name == "openai" else _ratio(added, theirs)
            lines.append(f"| {mode} | {name} | {numbers[name]:,.0f} | {extra} | {ratio} |")
        verdicts.append(f"{_ratio(numbers['posthog-llm'] - base, theirs)} ({mode})")
    lines += [
        "",
        "Target: posthog-llm adds at most 1/3 of what posthog-python adds. Measured: "
        + ", ".join(verdicts)
        + ".",
        "",
        f"Sink totals for the whole run: {delivered['requests']:,} requests, "
        f"{delivered['events']:,} events.",
        "",
    ]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls and rounds")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "openai.md"))
    args = parser.parse_args()
    calls, rounds = (150, 3) if args.quick else (500, 7)

    servers = Servers()
    try:
        contenders = [make_contender(name, servers) for name in CONTENDERS]
        results = {}
        for mode, call in (("plain", call_plain), ("stream=True", call_stream)):
            print(f"{mode} ...", flush=True)
            results[mode] = measure(call, contenders, calls, rounds)
            print({k: round(v) for k, v in results[mode].items()}, flush=True)
        for c in contenders:
            c.stop()
        delivered = servers.stats()
    finally:
        servers.close()
    write_report(args.out, args.quick, results, delivered, {"calls": calls, "rounds": rounds})


if __name__ == "__main__":
    main()
