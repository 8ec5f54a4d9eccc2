"""Fault soak: a loopback PostHog that fails 30% of requests in every way, plus an outage.

A capturing process sends `$ai_generation` events with 1 KB inputs at a steady rate to a
loopback endpoint that answers 5xx, 429 + Retry-After, drops connections, stalls, and stores a
batch then drops the connection (so the client retries what was stored: the only allowed
duplicates, with the same uuid). In the middle of the run the endpoint goes away entirely
(connection refused). The first capturing process exits during the outage (its exit hook spools
what it holds); a second one for the same host and key starts, captures on, and replays the
spool once the endpoint is back. Every captured uuid is logged by the capturer as it goes.

Target: 0 lost; duplicates only from stored-then-dropped answers; RSS flat.

    python bench/bench_soak.py                      # 10 minutes, 5-minute outage
    python bench/bench_soak.py --quick              # 60 s, 20 s outage
    python bench/bench_soak.py --duration 8 --outage 3 --rate 100 --json   # the test's variant
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from typing import Any

from posthog_llm.local.posthog_sink import PostHogSink

HERE = os.path.dirname(os.path.abspath(__file__))
FAULTS = ("5xx", "429", "drop", "stall", "stored_then_dropped")


class FaultyPostHog:
    """Loopback PostHog capture endpoint failing `fault_rate` of requests; `down()`/`up()`.

    The package's `PostHogSink`, with a behaviour that draws one of FAULTS for `fault_rate` of
    requests, and a record of every uuid it stored.
    """

    def __init__(self, fault_rate: float = 0.3, stall: float = 2.0, seed: int = 7) -> None:
        self.fault_rate = fault_rate
        self.stall = stall
        self.random = random.Random(seed)
        self.received: Counter[str] = Counter()
        self.stored_then_dropped: set[str] = set()
        self.faults: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._sink = PostHogSink(keep=False, behaviour=self._behaviour, on_batch=self._stored)
        self.port = self._sink.port
        self.host = self._sink.host

    @property
    def requests(self) -> int:
        return self._sink.request_count

    def _behaviour(self, number: int) -> Any:
        with self._lock:
            roll = self.random.random()
        if roll >= self.fault_rate:
            return "ok"
        fault = FAULTS[int(roll / self.fault_rate * len(FAULTS))]
        with self._lock:
            self.faults[fault] += 1
        return {
            "5xx": ("status", 503),
            "429": ("status", 429, {"Retry-After": "1"}),
            "drop": "drop",
            # A stalled request that ends in a 503: nothing stored.
            "stall": ("stall", self.stall, 503),
            "stored_then_dropped": "store_then_drop",
        }[fault]

    def _stored(self, batch: list[dict[str, Any]], dropped: bool) -> None:
        uuids = [e["uuid"] for e in batch]
        with self._lock:
            self.received.update(uuids)
            if dropped:
                self.stored_then_dropped.update(uuids)

    def up(self) -> None:
        self._sink.up()

    def down(self) -> None:
        """The endpoint goes away: connections are refused until `up()`."""
        self._sink.down()

    def close(self) -> None:
        self.down()


CAPTURER = r"""
import os, sys, time
from posthog_llm import Client

host, seconds, rate, log_path = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
text = ("The quick brown fox jumps over the lazy dog. " * 24)[:1024]
client = Client(api_key="phc_soak", host=host)
log = open(log_path, "a", buffering=1)
start = time.monotonic()
i = 0
while True:
    now = time.monotonic() - start
    if now >= seconds:
        break
    due = int(now * rate) + 1
    while i < due:
        uuid = client.capture("$ai_generation", distinct_id=f"user-{i % 50}", properties={
            "$ai_trace_id": f"trace-{os.getpid()}-{i // 10}",
            "$ai_model": "gpt-4o-mini",
            "$ai_input": [{"role": "user", "content": text}],
            "$ai_output_choices": [{"role": "assistant", "content": "ok"}],
            "$ai_input_tokens": 256,
        })
        log.write(uuid + "\n")
        i += 1
    time.sleep(0.005)
if len(sys.argv) > 5 and sys.argv[5] == "flush":
    client.flush(120)
print(client.stats(), file=sys.stderr)
"""


def _rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def run(duration: float, outage: float, rate: float, verbose: bool = True) -> dict[str, Any]:
    """Run the soak; returns the measured numbers."""
    work = tempfile.mkdtemp(prefix="posthog-llm-soak-")
    env = {**os.environ, "POSTHOG_LLM_SPOOL_DIR": os.path.join(work, "spool")}
    log_path = os.path.join(work, "captured.txt")
    sink = FaultyPostHog()
    outage_start = duration * 0.4
    outage_end = outage_start + outage
    first_ends = (outage_start + outage_end) / 2  # the first process exits during the outage
    t0 = time.monotonic()

    def say(message: str) -> None:
        if verbose:
            print(f"[{time.monotonic() - t0:7.1f}s] {message}", file=sys.stderr, flush=True)

    def start(seconds: float, *extra: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-c", CAPTURER, sink.host, str(seconds), str(rate), log_path, *extra],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )

    first = start(first_ends)
    rss: list[tuple[float, float]] = []  # (seconds, MB) of the first capturing process
    second: subprocess.Popen[str] | None = None
    state = "up"
    while True:
        now = time.monotonic() - t0
        if state == "up" and now >= outage_start:
            sink.down()
            state = "down"
            say("outage starts")
        if state == "down" and now >= outage_end:
            sink.up()
            state = "back"
            say("endpoint back")
        if second is None and first.poll() is not None:
            say(f"first process exited ({first.returncode}); restarting the capturer")
            second = start(duration - now, "flush")
        value = _rss_mb(first.pid) if first.poll() is None else None
        if value is not None and now > 5:
            rss.append((now, value))
        if second is not None and second.poll() is not None and state == "back":
            break
        time.sleep(0.25)
    _, first_err = first.communicate()
    _, second_err = second.communicate() if second else ("", "")
    time.sleep(1.0)
    with open(log_path) as f:
        captured = [line.strip() for line in f if line.strip()]
    received = sink.received
    captured_set = set(captured)
    lost = len(captured_set - set(received))
    duplicates = {u: n - 1 for u, n in received.items() if n > 1}
    unexplained = [u for u in duplicates if u not in sink.stored_then_dropped]
    sink.close()
    result = {
        "duration_s": duration,
        "outage_s": outage,
        "rate": rate,
        "captured": len(captured),
        "delivered_unique": len(captured_set & set(received)),
        "lost": lost,
        "duplicates": sum(duplicates.values()),
        "unexplained_duplicates": len(unexplained),
        "requests": sink.requests,
        "faults": dict(sink.faults),
        "rss_first_mb": _rss_summary(rss),
        "rss_samples": len(rss),
        "first_stats": first_err.strip().splitlines()[-1:] if first_err else [],
        "second_stats": second_err.strip().splitlines()[-1:] if second_err else [],
        "wall_s": round(time.monotonic() - t0, 1),
    }
    return result


def sigkill_loss(rate: float, seconds: float, endpoint_down: bool) -> dict[str, Any]:
    """SIGKILL a capturer after `seconds`; a new process replays the spool: what was lost?"""
    import signal

    work = tempfile.mkdtemp(prefix="posthog-llm-kill-")
    env = {**os.environ, "POSTHOG_LLM_SPOOL_DIR": os.path.join(work, "spool")}
    log_path = os.path.join(work, "captured.txt")
    sink = FaultyPostHog(fault_rate=0.0)
    if endpoint_down:
        sink.down()
    proc = subprocess.Popen(
        [sys.executable, "-c", CAPTURER, sink.host, "3600", str(rate), log_path], env=env
    )
    time.sleep(seconds)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if endpoint_down:
        sink.up()
    replay = subprocess.run(
        [sys.executable, "-c", CAPTURER, sink.host, "0", str(rate), log_path, "flush"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert replay.returncode == 0, replay.stderr
    time.sleep(0.5)
    with open(log_path) as f:
        captured = {line.strip() for line in f if line.strip()}
    from posthog_llm._spool import Spool, spool_path

    # Rows the killed process was retrying stay leased to it for a while, then any sender
    # replays them: they are late, not lost.
    spool = Spool(spool_path(env["POSTHOG_LLM_SPOOL_DIR"], sink.host, "phc_soak"))
    leased = spool.pending()
    lost = len(captured - set(sink.received)) - leased
    sink.close()
    return {
        "endpoint": "down" if endpoint_down else "up",
        "captured": len(captured),
        "lost": lost,
        "in_spool_until_lease_expires": leased,
        "lost_ms_of_traffic": round(lost / rate * 1000),
    }


def _rss_summary(samples: list[tuple[float, float]]) -> dict[str, float] | None:
    """Median RSS over the first and the last fifth of the process's life, and the peak."""
    if len(samples) < 10:
        return None
    fifth = max(1, len(samples) // 5)
    first = sorted(v for _, v in samples[:fifth])
    last = sorted(v for _, v in samples[-fifth:])
    return {
        "early": round(first[len(first) // 2], 1),
        "late": round(last[len(last) // 2], 1),
        "peak": round(max(v for _, v in samples), 1),
    }


def _table(r: dict[str, Any]) -> str:
    faults = ", ".join(f"{k} {v}" for k, v in sorted(r["faults"].items()))
    rss = r["rss_first_mb"]
    return "\n".join(
        [
            f"Fault soak: {r['duration_s'] / 60:.1f} min at {r['rate']:.0f} events/s with 1 KB "
            f"inputs, {r['outage_s'] / 60:.1f}-min outage (connection refused), 30% of requests "
            f"failing otherwise; the capturing process exits during the outage and a new one "
            f"takes over (python {sys.version.split()[0]}, {os.cpu_count()} cores).",
            "",
            "| captured | delivered | lost | duplicates (all from stored-then-dropped) | "
            "requests | faults injected | RSS of the first process MB (early / late / peak) |",
            "|---|---|---|---|---|---|---|",
            f"| {r['captured']:,} | {r['delivered_unique']:,} | {r['lost']} | "
            f"{r['duplicates']} ({'yes' if r['unexplained_duplicates'] == 0 else 'NO'}) | "
            f"{r['requests']:,} | {faults} | "
            f"{_rss_text(rss)} |",
        ]
    )


def _sigkill_table(rate: float) -> str:
    rows = []
    for down in (False, True):
        for seconds in (3.0, 8.0, 20.0):
            row = sigkill_loss(rate, seconds, down)
            row["killed_after_s"] = seconds
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
    lines = [
        f"SIGKILL of a process capturing {rate:.0f} events/s (1 KB inputs, default settings), "
        "with PostHog up, or down since the process started; then a new process for the same "
        "host and key replays the spool.",
        "",
        "| endpoint | killed after s | captured | lost | lost, in ms of traffic | "
        "in the spool, replayed once the dead process's lease expires |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['endpoint']} | {row['killed_after_s']:.0f} | {row['captured']:,} | "
            f"{row['lost']} | {row['lost_ms_of_traffic']} | "
            f"{row['in_spool_until_lease_expires']} |"
        )
    return "\n".join(lines)


def _rss_text(rss: dict[str, float] | None) -> str:
    if not rss:
        return "n/a"
    return f"{rss['early']:.0f} / {rss['late']:.0f} / {rss['peak']:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, help="seconds (default 600; --quick 60)")
    parser.add_argument("--outage", type=float, help="seconds (default 300; --quick 20)")
    parser.add_argument("--rate", type=float, default=200.0, help="events per second")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON only")
    parser.add_argument(
        "--sigkill", action="store_true", help="measure what a SIGKILL loses (up and down)"
    )
    args = parser.parse_args()
    if args.sigkill:
        print(_sigkill_table(args.rate))
        return
    duration = args.duration or (60.0 if args.quick else 600.0)
    outage = args.outage if args.outage is not None else (20.0 if args.quick else 300.0)
    result = run(duration, outage, args.rate, verbose=not args.json)
    if args.json:
        print(json.dumps(result))
        return
    table = _table(result)
    print(table)
    print(json.dumps(result), file=sys.stderr)
    if not args.quick and args.duration is None:
        kill = _sigkill_table(args.rate)
        print(kill)
        os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
        with open(os.path.join(HERE, "results", "soak.md"), "w") as f:
            f.write(table + "\n\n" + kill + "\n")


if __name__ == "__main__":
    main()
