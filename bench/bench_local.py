"""Time the local viewer's API on a large store (bench/gen_store.py makes one).

    python bench/gen_store.py /tmp/big.db --deep 10000     # 1,000,000 events, 100,000 traces
    python bench/bench_local.py /tmp/big.db                # prints a Markdown table

Each endpoint is asked over real loopback HTTP, as the viewer asks it; the table shows the
median and worst of `--runs` answers after one warm-up. Targets: trace list and search
<= 100 ms, dashboard <= 300 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from posthog_llm._store import EventStore  # noqa: E402
from posthog_llm.local.server import start_server  # noqa: E402


def _get(url: str) -> tuple[float, bytes]:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as response:
        body = response.read()
    return time.perf_counter() - started, body


def ingest_cost(traces: int = 5_000, batch: int = 100) -> tuple[float, float]:
    """Events per second into a fresh store, with the summaries kept and with a bare INSERT."""
    import random
    import tempfile

    import gen_store  # bench/ is on sys.path
    from posthog_llm.destinations.sqlite import connect, insert_events

    rng = random.Random(3)
    gen_store.TOTAL[0] = traces
    rows = [
        r for n in range(traces) for r in gen_store.trace_rows(n, time.time() - 86400, 86000, rng)
    ]
    rates = []
    with tempfile.TemporaryDirectory() as folder:
        for kept in (True, False):
            conn = connect(os.path.join(folder, f"ingest-{kept}.db"))
            started = time.perf_counter()
            for i in range(0, len(rows), batch):
                chunk = rows[i : i + batch]
                if kept:
                    insert_events(conn, chunk)
                else:
                    conn.execute("BEGIN IMMEDIATE")
                    conn.executemany(
                        "INSERT OR IGNORE INTO events (uuid, event, distinct_id, timestamp, "
                        "trace_id, properties, received_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        chunk,
                    )
                    conn.execute("COMMIT")
            rates.append(len(rows) / (time.perf_counter() - started))
            conn.close()
    return rates[0], rates[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("db")
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument(
        "--ingest", action="store_true", help="also measure what keeping summaries costs writers"
    )
    args = parser.parse_args()
    with EventStore(args.db) as store:
        events, traces = store.count(), store.count_traces()
        some = next(t.trace_id for t in store.traces(limit=5) if t.trace_id != "deep-chain")
    server = start_server(args.db)
    try:
        first = json.loads(_get(server.url + "/api/traces?limit=200")[1])
        cursor = urllib.parse.quote(first["next_cursor"])
        cases = [
            ("trace list, first 200", "/api/traces?limit=200", 100),
            ("trace list, next 200 (cursor)", f"/api/traces?limit=200&cursor={cursor}", 100),
            ("search, many matches (model)", "/api/traces?limit=200&search=claude", 100),
            ("search, one match (trace id)", f"/api/traces?limit=200&search={some}", 100),
            ("search, no match", "/api/traces?limit=200&search=no-such-thing", 100),
            ("header count (/api/info)", "/api/info", 100),
            ("dashboard, all time", "/api/stats", 300),
            ("dashboard, last 24 hours", "/api/stats?hours=24", 300),
            ("dashboard, last hour", "/api/stats?hours=1", 300),
            ("one trace (10 events)", f"/api/traces/{urllib.parse.quote(some)}", 100),
        ]
        cases.append(("deep trace (10,000 nested spans)", "/api/traces/deep-chain", None))
        rows = []
        for label, path, target in cases:
            try:
                _get(server.url + path)
            except Exception as exc:  # the deep chain is optional
                rows.append((label, path, None, None, target, f"{exc}"))
                continue
            times = [_get(server.url + path)[0] * 1000 for _ in range(args.runs)]
            rows.append((label, path, statistics.median(times), max(times), target, ""))
    finally:
        server.close()
    print(f"Store: {events:,} events, {traces:,} traces ({os.path.getsize(args.db) / 1e6:.0f} MB)")
    print(f"Runs per endpoint: {args.runs} after one warm-up, over loopback HTTP.\n")
    print("| endpoint | median ms | worst ms | target ms | |")
    print("| --- | ---: | ---: | ---: | --- |")
    for label, _path, median, worst, target, note in rows:
        if median is None:
            print(f"| {label} | - | - | {target or '-'} | {note} |")
            continue
        ok = "" if target is None else ("ok" if median <= target else "OVER")
        print(f"| {label} | {median:.1f} | {worst:.1f} | {target or '-'} | {ok} |")
    if args.ingest:
        kept, bare = ingest_cost()
        print("\nIngest, batches of 100 events (a Client's batch), fresh store:\n")
        print("| insert | events/s |\n| --- | ---: |")
        print(f"| events + trace summaries + usage roll-ups | {kept:,.0f} |")
        print(f"| events only (bare INSERT, no summaries) | {bare:,.0f} |")
        print(f"| ratio | {kept / bare:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
