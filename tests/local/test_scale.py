"""Trace summaries and usage roll-ups kept on ingest: equal to a rescan, migrated once, paged."""

from __future__ import annotations

import json
import sqlite3

import pytest
import requests
from posthog_llm import EventStore
from posthog_llm.destinations.sqlite import connect, insert_events
from posthog_llm.local._api import EXACT_STATS_LIMIT, Reader
from posthog_llm.local.pricing import load_pricing

from .conftest import send_sample_traces


def _row(i: int, trace: str, event: str = "$ai_generation", **props) -> tuple:
    props = {"$ai_trace_id": trace, **props}
    ts = f"2025-01-01T{(i // 3600) % 24:02d}:{(i // 60) % 60:02d}:{i % 60:02d}.{i % 1000:03d}000+00:00"
    return (f"u{i}", event, f"user{i % 7}", ts, trace, json.dumps(props), 0.0)


def _rescan(path: str) -> dict[str, dict]:
    """Trace facts computed the slow way, from every event."""
    out: dict[str, dict] = {}
    with EventStore(path) as store:
        for e in store.iter_events():
            p = e["properties"]
            t = p.get("$ai_trace_id")
            if t is None:
                continue
            s = out.setdefault(t, {"events": 0, "in": 0, "out": 0, "errors": 0, "models": set()})
            s["events"] += 1
            s["in"] += p.get("$ai_input_tokens") or 0
            if e["event"] == "$ai_generation":
                s["out"] += p.get("$ai_output_tokens") or 0
            s["errors"] += bool(p.get("$ai_is_error"))
            if p.get("$ai_model"):
                s["models"].add(p["$ai_model"])
    return out


def _summaries(path: str) -> dict[str, dict]:
    with EventStore(path) as store:
        return {
            r.trace_id: {
                "events": r.events,
                "in": r.input_tokens,
                "out": r.output_tokens,
                "errors": r.errors,
                "models": set(r.models),
            }
            for r in store.traces(limit=None)
        }


def test_summaries_match_a_rescan_and_ignore_repeated_batches(server, db_path):
    send_sample_traces(server.url)
    send_sample_traces(server.url)  # same uuids? no: new events, same trace ids
    conn = connect(db_path)
    rows = [_row(i, f"t{i % 5}", **{"$ai_model": "m", "$ai_input_tokens": 3}) for i in range(40)]
    insert_events(conn, rows)
    insert_events(conn, rows[:20] + rows[:5])  # a retried batch, with repeats inside it
    conn.close()
    assert _summaries(db_path) == _rescan(db_path)
    with EventStore(db_path) as store:
        assert store.count() == 40 + 12 and store.count_traces() == 8


def test_a_store_from_an_older_version_gets_its_summaries_built_once(tmp_path):
    path = str(tmp_path / "old.db")
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE events (uuid TEXT PRIMARY KEY, event TEXT NOT NULL, distinct_id TEXT, "
        "timestamp TEXT, trace_id TEXT, properties TEXT NOT NULL, received_at REAL NOT NULL)"
    )
    conn.executemany(
        "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            _row(i, f"old-{i % 3}", **{"$ai_input_tokens": 2, "$ai_model": "gpt-4o"})
            for i in range(9)
        ],
    )
    conn.commit()
    conn.close()
    with EventStore(path) as store:
        rows = store.traces()
        assert {r.trace_id for r in rows} == {"old-0", "old-1", "old-2"}
        assert all(r.events == 3 and r.input_tokens == 6 for r in rows)
        assert store.connection().execute("PRAGMA user_version").fetchone()[0] >= 1
    assert _summaries(path) == _rescan(path)


def test_the_api_pages_through_every_trace_and_counts_them(server, db_path):
    conn = connect(db_path)
    insert_events(conn, [_row(i, f"page-{i:04d}", **{"$ai_model": "gpt-4o"}) for i in range(450)])
    conn.close()
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 200, **({"cursor": cursor} if cursor else {})}
        data = requests.get(server.url + "/api/traces", params=params, timeout=10).json()
        assert data["total"] == 450
        seen += [t["trace_id"] for t in data["traces"]]
        cursor = data["next_cursor"]
        if not cursor:
            break
    assert len(seen) == len(set(seen)) == 450 and seen[0] == "page-0449"
    found = requests.get(
        server.url + "/api/traces", params={"search": "page-01", "limit": 20}, timeout=10
    ).json()
    assert found["total"] == 100 and len(found["traces"]) == 20 and found["next_cursor"]
    literal = requests.get(server.url + "/api/traces", params={"search": "page_0"}, timeout=10)
    assert literal.json()["total"] == 0  # "_" is a character, not a LIKE wildcard
    bad = requests.get(server.url + "/api/traces", params={"cursor": "nonsense"}, timeout=10)
    assert bad.status_code == 400


def test_the_dashboard_roll_up_agrees_with_the_events(tmp_path):
    path = str(tmp_path / "usage.db")
    conn = connect(path)
    models = ("gpt-4o", "claude-3-5-haiku-20241022", "my-own-model")
    rows = [
        _row(
            i,
            f"u-{i // 4}",
            **{
                "$ai_model": models[i % 3],
                "$ai_provider": "anthropic" if i % 3 == 1 else "openai",
                "$ai_input_tokens": 100 + i % 17,
                "$ai_output_tokens": 10 + i % 5,
                "$ai_latency": 0.1 + (i % 10) / 10,
                "$ai_is_error": i % 50 == 0,
                **({"$ai_total_cost_usd": 0.5} if i % 97 == 0 else {}),
            },
        )
        for i in range(EXACT_STATS_LIMIT + 600)
    ]
    insert_events(conn, rows)
    conn.close()
    reader = Reader(path, load_pricing(use_env=False))
    exact = reader._stats_exact(None)
    with sqlite3.connect(path) as raw:
        rolled = reader._stats_rollup(raw, None)
    assert rolled == reader.stats(None)  # above the limit the dashboard reads the roll-up
    assert rolled["approximate_percentiles"] and not exact["approximate_percentiles"]
    for key in ("calls", "errors", "input_tokens", "output_tokens"):
        assert rolled["totals"][key] == exact["totals"][key]
    assert rolled["totals"]["cost_usd"] == pytest.approx(exact["totals"]["cost_usd"], rel=1e-9)
    by_model = {m["model"]: m for m in exact["models"]}
    for m in rolled["models"]:
        e = by_model[m["model"]]
        assert m["errors"] == e["errors"] and sum(m["series"]["errors"]) == e["errors"]
        assert m["latency_avg"] == pytest.approx(e["latency_avg"])
        assert m["latency_p95"] == pytest.approx(e["latency_p95"], rel=0.06)  # histogram bins
        assert (m["cost_usd"] is None) == (e["cost_usd"] is None)
