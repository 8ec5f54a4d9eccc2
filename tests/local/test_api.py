"""The viewer's JSON API and pages, over real HTTP, on traces sent through our own Client."""

from __future__ import annotations

import urllib.parse

import pytest
import requests
from posthog_llm import SPAN, Client, span_properties

from .conftest import XSS


def get(server, path: str, **kwargs) -> requests.Response:
    return requests.get(server.url + path, timeout=10, **kwargs)


def test_traces_newest_first_with_tokens_cost_latency_and_errors(server, sample_traces):
    traces = get(server, "/api/traces").json()["traces"]
    assert [t["trace_id"] for t in traces] == [
        sample_traces["xss"],
        sample_traces["error"],
        sample_traces["chat"],
    ]
    chat = traces[2]
    assert chat["name"] == "support-chat"
    assert chat["input_tokens"] == 132 and chat["output_tokens"] == 40
    assert chat["latency"] == pytest.approx(1.2)
    assert chat["errors"] == 0
    assert chat["models"] == ["gpt-4o-mini-2024-07-18", "text-embedding-3-small"]
    # gpt-4o-mini: 120 × $0.15/1M + 40 × $0.60/1M; text-embedding-3-small: 12 × $0.02/1M.
    assert chat["cost_usd"] == pytest.approx(120 * 0.15e-6 + 40 * 0.6e-6 + 12 * 0.02e-6)
    error = traces[1]
    assert error["errors"] == 1 and error["cost_usd"] is None  # no token counts: no estimate


@pytest.mark.parametrize(
    ("search", "expected"),
    [("trace-chat", "chat"), ("user_7", "error"), ("claude-3-5", "error"), ("gpt-4o-mini", "chat")],
)
def test_search_by_trace_id_distinct_id_and_model(server, sample_traces, search, expected):
    found = get(server, "/api/traces?search=" + urllib.parse.quote(search)).json()["traces"]
    assert [t["trace_id"] for t in found] == [sample_traces[expected]]
    assert get(server, "/api/traces?search=no-such-thing").json()["traces"] == []


def test_one_trace_as_a_tree_with_timing_cost_and_content(server, sample_traces):
    data = get(server, "/api/traces/" + sample_traces["chat"]).json()
    nodes = data["nodes"]
    assert [(n["depth"], n["kind"], n["name"]) for n in nodes] == [
        (0, "trace", "support-chat"),
        (1, "span", "retrieve"),
        (2, "embedding", "OpenAIEmbeddings"),
        (1, "generation", "ChatOpenAI"),
    ]
    assert [n["parent"] for n in nodes] == [None, 0, 1, 0]
    trace, span, embedding, generation = nodes
    # Waterfall: each bar ends at the event's timestamp and starts `latency` earlier.
    assert trace["end"] - trace["start"] == pytest.approx(1.2)
    assert span["start"] == pytest.approx(trace["start"] + 0.05, abs=1e-3)
    assert embedding["start"] >= span["start"] and embedding["end"] <= span["end"]
    assert generation["cost"]["model"] == "gpt-4o-mini"
    assert generation["properties"]["$ai_input"][1]["content"] == "How do hedgehogs sleep?"
    assert generation["properties"]["$ai_output_choices"][1]["function"]["name"] == "lookup"
    assert data["distinct_id"] == "user_42"
    assert data["cost_usd"] == pytest.approx(120 * 0.15e-6 + 40 * 0.6e-6 + 12 * 0.02e-6)
    missing = get(server, "/api/traces/nope")
    assert missing.status_code == 404 and "nope" in missing.json()["detail"]


def test_a_trace_without_a_root_event_gets_a_placeholder_spanning_its_children(
    server, sample_traces
):
    data = get(server, "/api/traces/" + sample_traces["error"]).json()
    root, generation = data["nodes"]
    assert root["synthetic"] and root["start"] == generation["start"]
    assert generation["is_error"] and data["errors"] == 1
    assert generation["properties"]["$ai_error"] == "RateLimitError: slow down"


def test_stats_by_model(server, sample_traces):
    stats = get(server, "/api/stats").json()
    by_model = {m["model"]: m for m in stats["models"]}
    assert set(by_model) == {
        "gpt-4o-mini-2024-07-18",
        "text-embedding-3-small",
        "claude-3-5-sonnet-20241022",
        "gpt-4o",
    }
    mini = by_model["gpt-4o-mini-2024-07-18"]
    assert mini["calls"] == 1 and mini["latency_avg"] == pytest.approx(0.8)
    assert mini["input_tokens"] == 120 and mini["output_tokens"] == 40
    assert by_model["claude-3-5-sonnet-20241022"]["errors"] == 1
    assert stats["totals"]["calls"] == 4 and stats["totals"]["errors"] == 1
    assert len(stats["buckets"]) == len(mini["series"]["calls"]) >= 1
    assert sum(mini["series"]["tokens"]) == 160
    assert stats["bucket_seconds"] <= 60  # the sample spans seconds: fine buckets
    # A window that ends before the sample traces is empty.
    assert get(server, "/api/stats?hours=0.001").json()["models"] == []
    # Longer than any store has existed: all time (a year before 1 AD answered 500).
    for hours in ("1e9", "1e20", "1e308"):
        assert get(server, f"/api/stats?hours={hours}").json()["totals"]["calls"] == 4
    bad = get(server, "/api/stats?hours=abc")
    assert bad.status_code == 400 and "number of hours" in bad.json()["detail"]


def test_events_and_info(server, sample_traces):
    events = get(server, "/api/events?limit=3").json()["events"]
    assert len(events) == 3 and events[0]["properties"]["$ai_trace_id"] == sample_traces["xss"]
    info = get(server, "/api/info").json()
    assert info["events"] == 6 and info["pricing_as_of"] and info["remote"] is False


def test_pages_are_served_with_a_strict_content_security_policy(server):
    for path in ("/", "/dashboard", "/events", "/trace/some%20id"):
        page = get(server, path)
        assert page.status_code == 200 and '<main id="app">' in page.text
        csp = page.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    script = get(server, "/static/app.js")
    assert script.status_code == 200 and script.headers["Content-Type"].startswith(
        "text/javascript"
    )
    # The viewer builds its DOM from text only: untrusted LLM output is never parsed as HTML.
    assert "innerHTML" not in script.text.replace("never assigns innerHTML", "")
    assert get(server, "/static/../server.py").status_code == 404
    assert get(server, "/static/pricing.json").status_code == 404
    assert get(server, "/nothing-here").status_code == 404


def test_api_refuses_foreign_host_names(server, sample_traces):
    # A DNS-rebinding page would send its own host name; loopback names are fine.
    assert get(server, "/api/traces", headers={"Host": "evil.example:8010"}).status_code == 403
    assert get(server, "/", headers={"Host": "evil.example"}).status_code == 403
    assert get(server, "/api/traces", headers={"Host": f"localhost:{server.port}"}).ok


def test_stored_content_is_returned_verbatim_as_json(server, sample_traces):
    data = get(server, "/api/traces/" + sample_traces["xss"]).json()
    assert data["nodes"][1]["name"] == XSS
    assert data["distinct_id"] == XSS
    assert (
        get(server, "/api/traces/" + sample_traces["xss"])
        .headers["Content-Type"]
        .startswith("application/json")
    )


def test_a_trace_without_a_root_event_has_the_same_name_in_the_list_and_its_detail(server):
    client = Client(api_key="phc_local_test", host=server.url, flush_interval=0.05)
    for name in ("rerank", "fetch"):
        client.capture(
            SPAN,
            distinct_id="u",
            properties=span_properties(trace_id="rootless-1", span_id=name, span_name=name),
        )
    assert client.shutdown(5)
    [listed] = get(server, "/api/traces").json()["traces"]
    detail = get(server, "/api/traces/rootless-1").json()
    assert listed["name"] == detail["name"] == detail["nodes"][0]["name"] == "fetch"
