"""The bundled pricing table, snapshot matching, cache accounting and user overrides."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
import requests
from posthog_llm import Client, InMemoryDestination
from posthog_llm.local.pricing import (
    PRICING_ENV,
    default_pricing,
    estimate_cost,
    load_pricing,
)
from posthog_llm.local.server import ServeError, start_server

REQUIRED_FAMILIES = [
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1",
    "gpt-4.1-mini",
    "gpt-4.1-nano",
    "o1",
    "o3",
    "o3-mini",
    "o4-mini",
    "gpt-3.5-turbo",
    "text-embedding-3-small",
    "text-embedding-3-large",
    "claude-3-5-sonnet",
    "claude-3-7-sonnet",
    "claude-sonnet-4",
    "claude-3-5-haiku",
    "claude-opus-4",
    "gemini-1.5-flash",
    "gemini-1.5-pro",
    "gemini-2.0-flash",
    "gemini-2.5-flash",
    "gemini-2.5-pro",
]


def test_bundled_table_is_dated_and_covers_the_common_models():
    table = load_pricing(use_env=False)
    assert dt.date.fromisoformat(table.as_of) >= dt.date(2025, 1, 1)
    missing = [m for m in REQUIRED_FAMILIES if m not in table.models]
    assert not missing
    for name, price in table.models.items():
        assert price.provider in ("openai", "anthropic", "google"), name
        assert price.input > 0, name


@pytest.mark.parametrize(
    ("model", "family"),
    [
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("GPT-4o", "gpt-4o"),
        ("openai/gpt-4o", "gpt-4o"),
        ("gpt-4.1-mini-2025-04-14", "gpt-4.1-mini"),
        ("o3-mini-2025-01-31", "o3-mini"),
        ("o1-2024-12-17", "o1"),
        ("claude-3-5-sonnet-20241022", "claude-3-5-sonnet"),
        ("claude-3-5-sonnet-latest", "claude-3-5-sonnet"),
        ("anthropic/claude-3.5-sonnet", "claude-3-5-sonnet"),
        ("us.anthropic.claude-3-7-sonnet-20250219-v1:0", "claude-3-7-sonnet"),
        ("claude-sonnet-4-20250514", "claude-sonnet-4"),
        ("claude-opus-4-1-20250805", "claude-opus-4-1"),
        ("models/gemini-2.0-flash-001", "gemini-2.0-flash"),
        ("gemini-2.5-flash-preview-05-20", "gemini-2.5-flash"),
        ("gemini-1.5-flash-8b", "gemini-1.5-flash-8b"),
    ],
)
def test_snapshots_and_wrapped_names_match_their_family(model, family):
    assert load_pricing(use_env=False, package=False).lookup(model)[0] == family


@pytest.mark.parametrize("model", ["gpt-40", "gpt-4o2", "my-llama", "", None, "claude"])
def test_unknown_models_have_no_estimate(model):
    assert estimate_cost(model, 10, 10) is None


def test_estimate_values():
    cost = estimate_cost("gpt-4o-2024-08-06", 1000, 500)
    assert cost["model"] == "gpt-4o" and cost["provider"] == "openai"
    assert cost["input_cost_usd"] == pytest.approx(0.0025)
    assert cost["output_cost_usd"] == pytest.approx(0.005)
    assert cost["total_cost_usd"] == pytest.approx(0.0075)
    # The bundled table's date, unless the genai-prices package (dated by its version) priced it.
    packaged = str(cost["price_source"]).startswith("genai-prices")
    assert cost["as_of"] == (None if packaged else default_pricing().as_of)
    assert estimate_cost("text-embedding-3-small", 1_000_000, None)["total_cost_usd"] == 0.02
    assert estimate_cost("gpt-4o", None, None) is None
    assert estimate_cost("gpt-4o", 0, 0)["total_cost_usd"] == 0


def test_cached_tokens_follow_each_providers_convention():
    # OpenAI counts cached tokens inside input tokens: 1000 in, 400 of them cached.
    openai = estimate_cost("gpt-4o", 1000, 0, cache_read_tokens=400)
    assert openai["input_cost_usd"] == pytest.approx((600 * 2.5 + 400 * 1.25) / 1e6)
    # Anthropic reports them apart: 1000 uncached + 400 read + 100 written.
    anthropic = estimate_cost(
        "claude-3-5-sonnet-20241022", 1000, 0, cache_read_tokens=400, cache_write_tokens=100
    )
    assert anthropic["input_cost_usd"] == pytest.approx((1000 * 3 + 400 * 0.3 + 100 * 3.75) / 1e6)
    # The event's provider decides for other models: a gateway's GPT counts like OpenAI.
    gateway = estimate_cost("gpt-4o", 1000, 0, cache_read_tokens=400, provider="openrouter")
    assert gateway["input_cost_usd"] == pytest.approx((600 * 2.5 + 400 * 1.25) / 1e6)
    # Claude on any host is priced Anthropic's way, as PostHog prices it (and as the kernel's
    # input_tokens_for reports it): the cache reads are not inside the input count.
    for provider, model in [
        ("bedrock", "us.anthropic.claude-3-5-sonnet-20241022-v2:0"),
        ("vertex", "claude-3-5-sonnet-v2@20241022"),
        ("openai", "claude-3-5-sonnet"),
    ]:
        hosted = estimate_cost(model, 1000, 0, cache_read_tokens=400, provider=provider)
        assert hosted is not None, model
        assert hosted["input_cost_usd"] == pytest.approx((1000 * 3 + 400 * 0.3) / 1e6), provider


def test_user_overrides_by_argument_file_and_environment(tmp_path, monkeypatch):
    mine = {
        "models": {
            "my-finetune": {"input": 1.0, "output": 2.0},
            "gpt-4o": {"input": 1, "output": 1},
        }
    }
    cost = estimate_cost("my-finetune-v2", 1_000_000, 1_000_000, pricing=mine)
    assert cost["model"] == "my-finetune" and cost["total_cost_usd"] == 3.0
    assert estimate_cost("gpt-4o", 1_000_000, 0, pricing=mine)["total_cost_usd"] == 1.0
    # A flat {model: prices} file named by the environment variable.
    path = tmp_path / "prices.json"
    path.write_text(
        json.dumps({"as_of": "2031-01-01", "local-llama": {"input": 0.5, "output": 0.5}})
    )
    monkeypatch.setenv(PRICING_ENV, str(path))
    cost = estimate_cost("local-llama", 2_000_000, 0)
    assert cost["total_cost_usd"] == 1.0 and cost["as_of"] == "2031-01-01"
    assert estimate_cost("gpt-4o", 1000, 0) is not None  # the bundled table is still there
    # "replace": true drops the bundled table.
    path.write_text(json.dumps({"replace": True, "models": {"only": {"input": 1, "output": 1}}}))
    table = load_pricing()
    assert list(table.models) == ["only"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"models": {"m": {"input": 1}}}), "needs at least 'input' and 'output'"),
        (json.dumps({"models": {"m": {"input": -1, "output": 1}}}), "must be a number >= 0"),
        (json.dumps([1]), "expected a JSON object"),
    ],
)
def test_malformed_pricing_files_are_reported(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ValueError) as info:
        load_pricing(str(path))
    assert message in str(info.value)


def test_server_uses_custom_pricing_and_refuses_a_broken_file(db_path, tmp_path):
    with pytest.raises(ServeError) as info:
        start_server(db_path, pricing=str(tmp_path / "missing.json"))
    assert "cannot read pricing file" in str(info.value)
    prices = {"models": {"house-model": {"input": 10, "output": 10}}}
    with start_server(db_path, pricing=prices) as server:
        event = {
            "event": "$ai_generation",
            "distinct_id": "u",
            "properties": {
                "$ai_trace_id": "h",
                "$ai_model": "house-model",
                "$ai_input_tokens": 100_000,
                "$ai_output_tokens": 0,
            },
        }
        assert requests.post(server.url + "/batch/", json=[event], timeout=10).ok
        (trace,) = requests.get(server.url + "/api/traces", timeout=10).json()["traces"]
        assert trace["cost_usd"] == pytest.approx(1.0)


def test_cost_sent_by_the_user_wins_over_the_estimate(server):
    event = {
        "event": "$ai_generation",
        "distinct_id": "u",
        "properties": {
            "$ai_trace_id": "paid",
            "$ai_model": "gpt-4o",
            "$ai_input_tokens": 10,
            "$ai_total_cost_usd": 0.5,
        },
    }
    assert requests.post(server.url + "/batch/", json=[event], timeout=10).ok
    node = requests.get(server.url + "/api/traces/paid", timeout=10).json()["nodes"][1]
    assert node["cost"] == {"total_cost_usd": 0.5, "source": "event"}


@pytest.mark.parametrize(
    ("own", "cost"),
    [
        ({"$ai_input_cost_usd": 4, "$ai_output_cost_usd": 5}, 9.0),
        ({"$ai_input_token_price": 0.1, "$ai_output_token_price": 0.05}, 1.2),
        # Cache reads are in OpenAI's input count: priced once, at half the input price
        # when the event gives no cache price (PostHog's rule).
        (
            {
                "$ai_input_token_price": 0.1,
                "$ai_output_token_price": 0.05,
                "$ai_cache_read_input_tokens": 4,
            },
            1.0,
        ),
    ],
)
def test_custom_costs_and_prices_the_event_states_win_over_the_table(server, own, cost):
    # PostHog reads an event's input/output costs and per-token prices ahead of its table; the
    # viewer read only `$ai_total_cost_usd` and priced the rest from its own table.
    props = {"$ai_trace_id": "custom", "$ai_model": "gpt-4o"}
    props.update({"$ai_input_tokens": 10, "$ai_output_tokens": 4, **own})
    event = {"event": "$ai_generation", "distinct_id": "u", "properties": props}
    assert requests.post(server.url + "/batch/", json=[event], timeout=10).ok
    node = requests.get(server.url + "/api/traces/custom", timeout=10).json()["nodes"][1]
    assert node["cost"] == {"total_cost_usd": pytest.approx(cost), "source": "event"}
    (trace,) = requests.get(server.url + "/api/traces", timeout=10).json()["traces"]
    assert trace["cost_usd"] == pytest.approx(cost)
    stats = requests.get(server.url + "/api/stats", timeout=10).json()
    assert sum(m["cost_usd"] or 0 for m in stats["models"]) == pytest.approx(cost)


def test_one_price_alone_is_not_a_cost_of_the_events_own(server):
    # PostHog uses an event's prices only when it gives both the input and the output one.
    props = {"$ai_trace_id": "half", "$ai_model": "my-finetune", "$ai_input_tokens": 10}
    props.update({"$ai_output_tokens": 4, "$ai_input_token_price": 0.1})
    event = {"event": "$ai_generation", "distinct_id": "u", "properties": props}
    assert requests.post(server.url + "/batch/", json=[event], timeout=10).ok
    node = requests.get(server.url + "/api/traces/half", timeout=10).json()["nodes"][1]
    assert (node.get("cost") or {}).get("source") != "event"


def test_the_viewer_prices_as_the_estimate_sent_to_posthog(server):
    # The same rules where the estimate is shown: thinking as output, hour-long cache writes,
    # and no standard price for a flex call.
    calls = {
        "thinking": {
            "$ai_model": "gemini-2.5-flash",
            "$ai_provider": "gemini",
            "$ai_input_tokens": 0,
            "$ai_output_tokens": 5,
            "$ai_reasoning_tokens": 7,
        },
        "hour": {
            "$ai_model": "claude-3-5-sonnet-20241022",
            "$ai_provider": "anthropic",
            "$ai_input_tokens": 0,
            "$ai_output_tokens": 0,
            "$ai_cache_creation_input_tokens": 400,
            "$ai_cache_creation_5m_input_tokens": 100,
            "$ai_cache_creation_1h_input_tokens": 300,
        },
        "flex": {
            "$ai_model": "gpt-4o",
            "$ai_input_tokens": 1000,
            "$ai_output_tokens": 10,
            "$ai_service_tier": "flex",
        },
    }
    batch = [
        {"event": "$ai_generation", "distinct_id": "u", "properties": {"$ai_trace_id": n, **p}}
        for n, p in calls.items()
    ]
    assert requests.post(server.url + "/batch/", json=batch, timeout=10).ok

    def shown(trace_id: str) -> Any:
        return requests.get(server.url + f"/api/traces/{trace_id}", timeout=10).json()["cost_usd"]

    thinking = estimate_cost("gemini-2.5-flash", 0, 12, provider="gemini")["total_cost_usd"]
    assert shown("thinking") == pytest.approx(thinking)
    hour = estimate_cost(
        "claude-3-5-sonnet-20241022",
        0,
        0,
        cache_write_tokens=400,
        cache_write_1h_tokens=300,
        provider="anthropic",
    )["total_cost_usd"]
    assert shown("hour") == pytest.approx(hour)
    assert shown("flex") is None


def test_hour_long_cache_writes_and_gemini_thinking_are_priced():
    # Anthropic: 400 cache writes, 300 of them kept an hour (twice the input price, where five
    # minutes cost 1.25 times it).
    claude = estimate_cost(
        "claude-3-5-sonnet-20241022", 0, 0, cache_write_tokens=400, cache_write_1h_tokens=300
    )
    assert claude["input_cost_usd"] == pytest.approx((100 * 3.75 + 300 * 6) / 1e6)
    # Gemini counts thinking apart from its output and bills it as output; OpenAI and
    # Anthropic count reasoning inside their output tokens already.
    flash = estimate_cost("gemini-2.5-flash", 0, 5, reasoning_tokens=7)
    assert flash["output_cost_usd"] == pytest.approx(
        estimate_cost("gemini-2.5-flash", 0, 12)["output_cost_usd"]
    )
    prefixed = estimate_cost("models/gemini-2.5-flash", 0, 5, reasoning_tokens=7)
    assert prefixed["output_cost_usd"] == flash["output_cost_usd"]
    gpt = estimate_cost("gpt-4o", 0, 12, reasoning_tokens=7)
    assert gpt == estimate_cost("gpt-4o", 0, 12)


def test_the_estimate_sent_to_posthog_leaves_out_what_it_cannot_price(posthog_server):
    # Sent estimates replace PostHog's own prices: one that ignores a flex or priority tier
    # would be wrong, so none is sent; PostHog prices those calls itself.
    client = Client(
        api_key="phc_x", host=posthog_server.host, flush_interval=0.05, send_estimated_cost=True
    )
    usage = {"$ai_model": "gpt-4o", "$ai_input_tokens": 1000, "$ai_output_tokens": 10}
    for tier in ("default", "flex", "priority"):
        client.capture(
            "$ai_generation", distinct_id="u", properties={**usage, "$ai_service_tier": tier}
        )
    client.capture(
        "$ai_generation",
        distinct_id="u",
        properties={
            "$ai_model": "gemini-2.5-flash",
            "$ai_provider": "gemini",
            "$ai_input_tokens": 0,
            "$ai_output_tokens": 5,
            "$ai_reasoning_tokens": 7,
        },
    )
    assert client.flush(10)
    client.shutdown(5)
    default, flex, priority, gemini = [e["properties"] for e in posthog_server.events]
    assert default["$ai_total_cost_usd"] > 0
    assert not [k for k in flex if "cost" in k] and not [k for k in priority if "cost" in k]
    assert gemini["$ai_output_cost_usd"] == pytest.approx(
        estimate_cost("gemini-2.5-flash", 0, 12, provider="gemini")["output_cost_usd"]
    )


def test_cost_is_not_sent_to_posthog_unless_the_user_opts_in(posthog_server, tmp_path, monkeypatch):
    client = Client(api_key="phc_x", host=posthog_server.host, flush_interval=0.05)
    client.capture(
        "$ai_generation",
        distinct_id="u",
        properties={"$ai_model": "gpt-4o", "$ai_input_tokens": 1000, "$ai_output_tokens": 10},
    )
    assert client.flush(10)
    client.shutdown(5)
    (event,) = posthog_server.events
    assert event["properties"]["$ai_model"] == "gpt-4o"
    assert not [k for k in event["properties"] if "cost" in k]

    # Opted in: the table's estimate (the user's own prices first) goes with each generation
    # and embedding that has no cost of its own; PostHog then uses it instead of its own.
    prices = tmp_path / "prices.json"
    prices.write_text('{"models": {"my-finetune": {"input": 2.0, "output": 8.0}}}')
    monkeypatch.setenv("POSTHOG_LLM_PRICING", str(prices))
    opted = Client(
        api_key="phc_x", host=posthog_server.host, flush_interval=0.05, send_estimated_cost=True
    )
    usage = {"$ai_input_tokens": 1_000_000, "$ai_output_tokens": 500_000}
    opted.capture(
        "$ai_generation", distinct_id="u", properties={"$ai_model": "my-finetune", **usage}
    )
    opted.capture(
        "$ai_generation",
        distinct_id="u",
        properties={"$ai_model": "my-finetune", "$ai_total_cost_usd": 0.5, **usage},
    )
    opted.capture("$ai_generation", distinct_id="u", properties={"$ai_model": "unknown-x", **usage})
    opted.capture("$ai_span", distinct_id="u", properties={"$ai_model": "my-finetune", **usage})
    opted.capture("$ai_generation", distinct_id="u", properties={"$ai_model": "my-finetune"})
    assert opted.flush(10)
    opted.shutdown(5)
    estimated, own, unknown, span, no_tokens = [e["properties"] for e in posthog_server.events[1:]]
    assert (
        estimated["$ai_input_cost_usd"],
        estimated["$ai_output_cost_usd"],
        estimated["$ai_total_cost_usd"],
    ) == (2.0, 4.0, 6.0)
    assert own["$ai_total_cost_usd"] == 0.5 and "$ai_input_cost_usd" not in own  # theirs wins
    assert not [k for k in unknown if "cost" in k]  # no price: no guess
    assert not [k for k in span if "cost" in k]  # spans are not priced
    assert not [k for k in no_tokens if "cost" in k]  # no token counts: no estimate, not 0
    with pytest.raises(TypeError, match="send_estimated_cost"):
        Client(destination=InMemoryDestination(), send_estimated_cost="yes")  # type: ignore[arg-type]


def test_genai_prices_fills_in_models_the_bundled_table_lacks(monkeypatch):
    pytest.importorskip("genai_prices")
    table = load_pricing(use_env=False)
    assert table.source.startswith("genai-prices ") and "bundled table" in table.source
    cost = table.estimate("gpt-5.1", 1_000_000, 0)
    assert cost is not None and cost["total_cost_usd"] == 1.25
    assert cost["price_source"].startswith("genai-prices ")
    assert cost["as_of"] is None  # dated by the package's version, not the bundled table's date
    assert table.estimate("gemini-1.5-flash-8b", 1000, 0)["as_of"] == table.as_of
    # An exact bundled name the package would match to another model keeps its own price.
    assert table.lookup("gemini-1.5-flash-8b")[1].input == 0.0375
    # The user's own price wins over both.
    mine = load_pricing({"models": {"gpt-5.1": {"input": 9, "output": 9}}}, use_env=False)
    assert mine.estimate("gpt-5.1", 1_000_000, 0)["total_cost_usd"] == 9.0
    # Turned off: back to the bundled table alone.
    monkeypatch.setenv("POSTHOG_LLM_PRICES_PACKAGE", "0")
    off = load_pricing(use_env=False)
    assert off.estimate("gpt-5.1", 1000, 0) is None and off.source.startswith("bundled table")


def test_genai_prices_is_asked_with_the_events_provider():
    pytest.importorskip("genai_prices")
    table = load_pricing(use_env=False)
    # Models the package knows only by provider (Groq's, Perplexity's; the OpenAI drop-in
    # names Groq from its base URL), and a provider named as the events name it.
    groq = table.estimate("llama-3.3-70b-versatile", 1_000_000, 0, provider="groq")
    assert groq is not None and groq["total_cost_usd"] == pytest.approx(0.59)
    assert groq["price_source"].startswith("genai-prices ")
    sonar = table.estimate("sonar", 1_000_000, 0, provider="perplexity")
    assert sonar is not None and sonar["price_source"].startswith("genai-prices ")
    gemini = table.estimate("gemini-2.0-flash", 1_000_000, 0, provider="gemini")
    assert gemini is not None and gemini["total_cost_usd"] == pytest.approx(0.1)
    # A provider the package does not know is not a reason to miss the model.
    assert table.estimate("gpt-5.1", 1_000_000, 0, provider="local")["total_cost_usd"] == 1.25


def test_where_a_price_came_from_is_in_the_api(server):
    client = Client(api_key="phc_local_test", host=server.url, flush_interval=0.05)
    client.capture(
        "$ai_generation",
        distinct_id="u",
        properties={"$ai_trace_id": "src", "$ai_model": "gpt-4o", "$ai_input_tokens": 10},
    )
    assert client.flush(10)
    client.shutdown(5)
    info = requests.get(server.url + "/api/info", timeout=10).json()
    assert "bundled table (" in info["pricing_source"]
    node = requests.get(server.url + "/api/traces/src", timeout=10).json()["nodes"][1]
    assert node["cost"]["source"] == "estimate" and node["cost"]["price_source"]
    listed = requests.get(server.url + "/api/traces", timeout=10).json()
    assert listed["pricing_source"] == info["pricing_source"]


def test_event_cost_is_the_viewers_cost_of_a_stored_event(db_path):
    # What the notebooks price an event at is what the viewer shows for it: the event's own
    # cost first, else the estimate with cache writes and Gemini's thinking tokens.
    from posthog_llm.local._api import Reader
    from posthog_llm.local.pricing import default_pricing, event_cost

    viewer = Reader(db_path, default_pricing())
    claude = {
        "$ai_model": "claude-3-5-sonnet-20241022",
        "$ai_provider": "anthropic",
        "$ai_input_tokens": 100,
        "$ai_output_tokens": 10,
        "$ai_cache_creation_input_tokens": 100_000,
    }
    gemini = {
        "$ai_model": "gemini-2.5-flash",
        "$ai_provider": "gemini",
        "$ai_input_tokens": 100,
        "$ai_output_tokens": 10,
        "$ai_reasoning_tokens": 1000,
    }
    stated = {**claude, "$ai_total_cost_usd": 0.5}
    for props in (claude, gemini, stated):
        assert event_cost(props) == viewer.cost(props)
    assert event_cost(claude)["total_cost_usd"] > 100_000 * 3 / 1e6  # the writes are priced
    assert event_cost(stated) == {"total_cost_usd": 0.5, "source": "event"}
    assert event_cost({"$ai_model": "my-local-llama", "$ai_input_tokens": 5}) is None
