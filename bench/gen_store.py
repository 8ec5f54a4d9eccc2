"""Write a large local store: N traces of 10 events each (1,000,000 events by default).

Each trace is an `$ai_trace` with two spans, six generations over five models (one in 50 an
error) and an embedding, spread over the last `--days` days. Events go through the SQLite
destination's own insert path, so the trace summaries and usage roll-ups are built as on ingest.

    python bench/gen_store.py /tmp/big.db                 # 100,000 traces, 1,000,000 events
    python bench/gen_store.py /tmp/small.db --traces 2000

`--deep N` adds one trace `deep-chain` of N nested spans (for the viewer's deep-trace view).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from posthog_llm.destinations.sqlite import connect, insert_events  # noqa: E402

MODELS = (
    ("gpt-4o-mini-2024-07-18", "openai"),
    ("gpt-4o", "openai"),
    ("claude-3-5-sonnet-20241022", "anthropic"),
    ("gemini-2.0-flash", "google"),
    ("my-local-llama", "ollama"),
)
EVENTS_PER_TRACE = 10


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat()


def _row(uuid: str, event: str, distinct_id: str, ts: float, trace_id: str, props: dict) -> tuple:
    props["$ai_trace_id"] = trace_id
    return (
        uuid,
        event,
        distinct_id,
        _iso(ts),
        trace_id,
        json.dumps(props, separators=(",", ":")),
        ts,
    )


def trace_rows(n: int, t0: float, spread: float, rng: random.Random) -> list[tuple]:
    trace_id = f"trace-{n:07d}-{rng.getrandbits(32):08x}"
    user = f"user_{rng.randrange(5000)}"
    start = t0 + spread * n / max(1, TOTAL[0])
    rows = []
    for s in range(2):
        span_id = f"{trace_id}-s{s}"
        rows.append(
            _row(
                f"{trace_id}-u-s{s}",
                "$ai_span",
                user,
                start + 0.1 + s,
                trace_id,
                {
                    "$ai_span_id": span_id,
                    "$ai_parent_id": trace_id,
                    "$ai_span_name": ("retrieve", "answer")[s],
                    "$ai_latency": 0.9,
                    "$ai_input_state": {"q": "how do hedgehogs sleep?"},
                },
            )
        )
        for g in range(3):
            model, provider = MODELS[(n + g + s) % len(MODELS)]
            error = rng.random() < 0.02
            props = {
                "$ai_span_id": f"{span_id}-g{g}",
                "$ai_parent_id": span_id,
                "$ai_span_name": "ChatModel",
                "$ai_model": model,
                "$ai_provider": provider,
                "$ai_input_tokens": rng.randrange(50, 2000),
                "$ai_output_tokens": rng.randrange(10, 500),
                "$ai_latency": round(rng.lognormvariate(-0.5, 0.6), 4),
                "$ai_input": [{"role": "user", "content": "How do hedgehogs sleep? " * 3}],
                "$ai_output_choices": [{"role": "assistant", "content": "Curled up in a ball."}],
                "$ai_is_error": error,
            }
            if error:
                props["$ai_error"] = "RateLimitError: slow down"
            rows.append(
                _row(
                    f"{trace_id}-u-g{s}{g}",
                    "$ai_generation",
                    user,
                    start + 0.2 + s + g * 0.2,
                    trace_id,
                    props,
                )
            )
    rows.append(
        _row(
            f"{trace_id}-u-e",
            "$ai_embedding",
            user,
            start + 0.05,
            trace_id,
            {
                "$ai_span_id": f"{trace_id}-e",
                "$ai_parent_id": f"{trace_id}-s0",
                "$ai_model": "text-embedding-3-small",
                "$ai_provider": "openai",
                "$ai_input_tokens": 12,
                "$ai_latency": 0.05,
            },
        )
    )
    rows.append(
        _row(
            f"{trace_id}-u-t",
            "$ai_trace",
            user,
            start + 2.5,
            trace_id,
            {
                "$ai_span_name": f"support-chat {n % 97}",
                "$ai_latency": 2.5,
                "$ai_input_state": {"question": "How do hedgehogs sleep?"},
            },
        )
    )
    return rows


def deep_chain_rows(depth: int, ts: float) -> list[tuple]:
    rows = []
    parent = "deep-chain"
    for i in range(depth):
        span_id = f"deep-{i}"
        rows.append(
            _row(
                f"deep-u-{i}",
                "$ai_span",
                "deep-user",
                ts + i * 1e-3,
                "deep-chain",
                {
                    "$ai_span_id": span_id,
                    "$ai_parent_id": parent,
                    "$ai_span_name": f"level {i}",
                    "$ai_latency": 0.001,
                },
            )
        )
        parent = span_id
    return rows


TOTAL = [0]


def generate(path: str, traces: int, days: float, deep: int, seed: int = 7) -> float:
    """Write the store; returns the seconds it took."""
    started = time.perf_counter()
    if os.path.exists(path):
        os.remove(path)
    conn = connect(path)
    conn.execute("PRAGMA synchronous = OFF")  # a generated store: speed over durability
    conn.execute("PRAGMA cache_size = -262144")  # 256 MB of pages: the indexes stay in memory
    rng = random.Random(seed)
    TOTAL[0] = traces
    t0 = time.time() - days * 86400
    batch: list[tuple] = []
    for n in range(traces):
        batch.extend(trace_rows(n, t0, days * 86400 - 60, rng))
        if len(batch) >= 20_000:
            insert_events(conn, batch)
            batch = []
    if deep:
        batch.extend(deep_chain_rows(deep, time.time() - 30))
    if batch:
        insert_events(conn, batch)
    conn.close()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path")
    parser.add_argument("--traces", type=int, default=100_000)
    parser.add_argument("--days", type=float, default=7.0, help="spread over this many days")
    parser.add_argument("--deep", type=int, default=0, help="add a chain of this many spans")
    args = parser.parse_args()
    seconds = generate(args.path, args.traces, args.days, args.deep)
    events = args.traces * EVENTS_PER_TRACE + args.deep
    size = os.path.getsize(args.path) / 1e6
    print(
        f"wrote {events:,} events ({args.traces:,} traces) to {args.path} "
        f"in {seconds:.1f} s ({size:.0f} MB)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
