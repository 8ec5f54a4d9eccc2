"""Estimated cost of LLM calls, for display in the local viewer and notebooks.

A bundled, dated table (`pricing.json`: USD per 1M tokens) of common OpenAI, Anthropic and
Google models. Dated snapshots match their family by prefix (`gpt-4o-2024-08-06` -> `gpt-4o`),
provider prefixes are ignored (`openai/gpt-4o`, `models/gemini-2.0-flash`).

Override or extend it with a JSON file of the same shape (or a flat `{model: prices}` object),
named by `POSTHOG_LLM_PRICING=path.json` or passed as `pricing=`:

    {"models": {"my-finetune": {"input": 1.0, "output": 2.0, "cache_read": 0.5}}}

The estimate is not added to captured events (PostHog prices events itself) unless the client
opted in with `Client(send_estimated_cost=True)`.

>>> cost = estimate_cost("gpt-4o-2024-08-06", input_tokens=1000, output_tokens=500)
>>> cost["model"], cost["total_cost_usd"]
('gpt-4o', 0.0075)
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any, Union

from .._events import (
    PROP_CACHE_CREATION_1H_INPUT_TOKENS,
    PROP_CACHE_CREATION_INPUT_TOKENS,
    PROP_CACHE_READ_INPUT_TOKENS,
    PROP_INPUT_TOKENS,
    PROP_MODEL,
    PROP_OUTPUT_TOKENS,
    PROP_PROVIDER,
    PROP_REASONING_TOKENS,
    PROP_SERVICE_TIER,
)
from .._store_summary import as_count, own_cost
from .._usage import is_anthropic_model, thinking_counted_apart
from ._prices_package import package_available, package_label, package_price

__all__ = [
    "ModelPrice",
    "PricingTable",
    "PricingSource",
    "load_pricing",
    "default_pricing",
    "estimate_cost",
    "event_cost",
    "PRICING_ENV",
]

PRICING_ENV = "POSTHOG_LLM_PRICING"

# A path to a JSON file, an already parsed table, or a PricingTable.
PricingSource = Union[str, "os.PathLike[str]", Mapping[str, Any], "PricingTable"]

_PER_TOKENS = 1_000_000
# What may follow a family name in a dated or tagged snapshot: "-2024-08-06", ":free", "@001".
_SNAPSHOT_SEPARATORS = ("-", ":", "@", "_")


@dataclass(frozen=True)
class ModelPrice:
    """USD per 1M tokens. `cache_read`/`cache_write` default to the input price when unknown."""

    input: float
    output: float
    cache_read: float | None = None
    cache_write: float | None = None
    provider: str | None = None
    source: str | None = None  # where the price came from: "bundled 2025-10-01", a file, a package


def _price(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"{what} must be a number >= 0 (USD per 1M tokens), got {value!r}")
    return float(value)


def _parse_models(
    data: Mapping[str, Any], origin: str, source: str | None = None
) -> dict[str, ModelPrice]:
    models = data.get("models", data)
    if not isinstance(models, Mapping):
        raise ValueError(f"{origin}: 'models' must be an object of model name -> prices")
    out: dict[str, ModelPrice] = {}
    for name, entry in models.items():
        if name in ("as_of", "unit", "note", "replace") and "models" not in data:
            continue
        where = f"{origin}: model {name!r}"
        if not isinstance(entry, Mapping) or "input" not in entry or "output" not in entry:
            raise ValueError(f"{where} needs at least 'input' and 'output' prices")
        optional = {
            key: _price(entry[key], f"{where} {key}")
            for key in ("cache_read", "cache_write")
            if entry.get(key) is not None
        }
        provider = entry.get("provider")
        out[str(name).strip().lower()] = ModelPrice(
            input=_price(entry["input"], f"{where} input"),
            output=_price(entry["output"], f"{where} output"),
            provider=str(provider).lower() if provider else None,
            source=source or origin,
            **optional,
        )
    return out


def _candidates(model: str) -> list[str]:
    """The model name and the forms a gateway or cloud wraps it in, most specific first."""
    name = model.strip().lower()
    names = [name]
    if "/" in name:  # "openai/gpt-4o", "models/gemini-2.0-flash", "anthropic/claude-3.5-sonnet"
        names.append(name.rsplit("/", 1)[1])
    for candidate in list(names):
        if "anthropic." in candidate:  # Bedrock: "us.anthropic.claude-3-5-sonnet-20240620-v1:0"
            names.append(candidate.split("anthropic.", 1)[1])
    for candidate in list(names):
        if candidate.startswith("claude") and "." in candidate:  # "claude-3.5-sonnet"
            names.append(candidate.replace(".", "-"))
    return names


# `$ai_provider` values whose genai-prices provider id differs; "local" names no provider.
_PACKAGE_PROVIDERS: dict[str, str | None] = {
    "gemini": "google",
    "vertex": "google",
    "bedrock": "aws",
    "local": None,
    "": None,
}


class PricingTable:
    """Model prices with snapshot-aware lookup. Build one with `load_pricing()`."""

    def __init__(
        self,
        models: Mapping[str, ModelPrice],
        as_of: str | None = None,
        source: str | None = None,
        *,
        package: bool = False,
    ) -> None:
        self.models = dict(models)
        self.as_of = as_of
        # Where the table came from, for display: "bundled table (2025-10-01) + prices.json".
        self.source = source or (f"bundled table ({as_of})" if as_of else "bundled table")
        # The maintained genai-prices data, when installed: before the bundled table, after
        # the user's own prices.
        self.package = package and package_available()
        if self.package:
            self.source = f"{package_label()}, then {self.source}"
        # Longest names first, so "gpt-4o-mini-2024-07-18" finds "gpt-4o-mini", not "gpt-4o".
        self._by_length = sorted(self.models, key=len, reverse=True)
        self._cache: dict[tuple[str, str | None], tuple[str, ModelPrice] | None] = {}

    def __repr__(self) -> str:
        return f"<PricingTable {len(self.models)} models, as of {self.as_of}>"

    def lookup(
        self, model: str | None, provider: str | None = None
    ) -> tuple[str, ModelPrice] | None:
        """`(table name, prices)` for a model name, or None when no source knows it.

        The user's prices first, then genai-prices (when installed), then the bundled table.
        `provider` (an event's `$ai_provider`) lets genai-prices find models it knows only
        by provider (Groq's, Perplexity's).
        """
        if not model or not isinstance(model, str):
            return None
        key = (model, provider)
        if key in self._cache:
            return self._cache[key]
        found = self._table_lookup(model)
        if self.package and (found is None or found[1].source in (None, _BUNDLED_SOURCE[0])):
            maintained = package_price(model, _PACKAGE_PROVIDERS.get(provider or "", provider))
            exact = found[0] if found is not None and found[0] in _candidates(model) else None
            if maintained is not None and exact is not None and maintained["name"] != exact:
                # The table names this very model while the package matched another one (it
                # prices gemini-1.5-flash-8b as gemini-1.5-flash): the exact name wins.
                maintained = None
            if maintained is not None:
                found = (
                    maintained["name"],
                    ModelPrice(
                        input=maintained["input"],
                        output=maintained["output"],
                        cache_read=maintained["cache_read"],
                        cache_write=maintained["cache_write"],
                        provider=maintained["provider"],
                        source=package_label(),
                    ),
                )
        if len(self._cache) < 10_000:
            self._cache[key] = found
        return found

    def _table_lookup(self, model: str) -> tuple[str, ModelPrice] | None:
        for name in _candidates(model):
            if name in self.models:
                return (name, self.models[name])
            for known in self._by_length:
                if name.startswith(known) and name[len(known)] in _SNAPSHOT_SEPARATORS:
                    return (known, self.models[known])
        return None

    def estimate_event(self, props: Mapping[str, Any]) -> dict[str, Any] | None:
        """`estimate` for an event's properties, read as the viewer and the client's
        `send_estimated_cost` both read them: counts as `as_count` reads stored values, and
        no estimate for a call served at a tier the table has no price for."""
        if not standard_tier(props.get(PROP_SERVICE_TIER)):
            return None
        model = props.get(PROP_MODEL)
        provider = props.get(PROP_PROVIDER)
        return self.estimate(
            model if isinstance(model, str) else None,
            as_count(props.get(PROP_INPUT_TOKENS)),
            as_count(props.get(PROP_OUTPUT_TOKENS)),
            as_count(props.get(PROP_CACHE_READ_INPUT_TOKENS)),
            cache_write_tokens=as_count(props.get(PROP_CACHE_CREATION_INPUT_TOKENS)),
            provider=provider if isinstance(provider, str) else None,
            cache_write_1h_tokens=as_count(props.get(PROP_CACHE_CREATION_1H_INPUT_TOKENS)),
            reasoning_tokens=as_count(props.get(PROP_REASONING_TOKENS)),
        )

    def estimate(
        self,
        model: str | None,
        input_tokens: int | None,
        output_tokens: int | None,
        cache_read_tokens: int | None = 0,
        *,
        cache_write_tokens: int | None = 0,
        provider: str | None = None,
        cache_write_1h_tokens: int | None = 0,
        reasoning_tokens: int | None = 0,
    ) -> dict[str, Any] | None:
        """See `estimate_cost`."""
        match = self.lookup(model, provider)
        if match is None or (input_tokens is None and output_tokens is None):
            return None
        name, price = match
        tokens_in = max(0, int(input_tokens or 0))
        cache_read = max(0, int(cache_read_tokens or 0))
        cache_write = max(0, int(cache_write_tokens or 0))
        # Of the cache writes, those kept an hour (Anthropic: twice the input price, where
        # five minutes cost 1.25 times it).
        write_1h = min(cache_write, max(0, int(cache_write_1h_tokens or 0)))
        tokens_out = max(0, int(output_tokens or 0))
        # Anthropic reports cached tokens apart from input_tokens; OpenAI, Google and most
        # gateways count them inside it. PostHog's $ai_input_tokens follows the same split,
        # and prices Claude on any host (Bedrock, Vertex) Anthropic's way.
        convention = (provider or price.provider or "").lower()
        if not is_anthropic_model(convention, model or name):
            tokens_in = max(0, tokens_in - cache_read)
            cache_write = write_1h = 0
        if thinking_counted_apart(convention, model or name):
            # Gemini counts thinking tokens apart from the candidates' and bills them as output.
            tokens_out += max(0, int(reasoning_tokens or 0))
        read_price = price.cache_read if price.cache_read is not None else price.input
        write_price = price.cache_write if price.cache_write is not None else price.input
        input_cost = (
            tokens_in * price.input
            + cache_read * read_price
            + (cache_write - write_1h) * write_price
            + write_1h * price.input * _ONE_HOUR_WRITE
        ) / _PER_TOKENS
        output_cost = tokens_out * price.output / _PER_TOKENS
        return {
            "model": name,
            "provider": price.provider,
            "input_cost_usd": round(input_cost, 10),
            "output_cost_usd": round(output_cost, 10),
            "total_cost_usd": round(input_cost + output_cost, 10),
            # The package's prices are dated by its version (the source), not the table's date.
            "as_of": None if self.package and price.source == package_label() else self.as_of,
            "price_source": price.source,
        }


_STANDARD_TIERS = ("default", "auto", "standard", "on_demand")


def standard_tier(tier: Any) -> bool:
    """Whether a call served at `tier` (`$ai_service_tier`; None: not said) is priced by the
    table: flex, priority and the like are priced apart, which it does not know."""
    return not isinstance(tier, str) or tier.lower() in _STANDARD_TIERS


_ONE_HOUR_WRITE = 2.0  # Anthropic's price of an hour-long cache write, in input prices


def _read(source: PricingSource) -> tuple[dict[str, ModelPrice], str | None, bool, str]:
    if isinstance(source, PricingTable):
        return dict(source.models), source.as_of, True, source.source
    if isinstance(source, Mapping):
        data, origin = source, "pricing"
    else:
        origin = os.fspath(source)
        try:
            with open(origin, encoding="utf-8") as fh:
                data = json.load(fh)
        except OSError as exc:
            raise ValueError(f"cannot read pricing file {origin}: {exc.strerror or exc}") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"pricing file {origin} is not valid JSON: {exc}") from None
    if not isinstance(data, Mapping):
        raise ValueError(f"{origin}: expected a JSON object")
    as_of = data.get("as_of")
    label = os.path.basename(origin) if origin != "pricing" else "pricing= mapping"
    return (
        _parse_models(data, origin, label),
        str(as_of) if as_of else None,
        bool(data.get("replace")),
        label,
    )


def _bundled() -> tuple[dict[str, ModelPrice], str | None]:
    text = resources.files(__package__).joinpath("pricing.json").read_text(encoding="utf-8")
    data = json.loads(text)
    as_of = data.get("as_of")
    _BUNDLED_SOURCE[0] = f"bundled table ({as_of})"
    return _parse_models(data, "bundled pricing.json", _BUNDLED_SOURCE[0]), as_of


# The bundled table's source label, as its prices carry it (set when the table is read).
_BUNDLED_SOURCE: list[str | None] = [None]


def load_pricing(
    source: PricingSource | None = None,
    *,
    use_env: bool = True,
    package: bool = True,
) -> PricingTable:
    """The bundled table, updated by `$POSTHOG_LLM_PRICING` and then by `source`.

    A file or mapping adds or replaces models; with `"replace": true` it replaces the whole
    table (and genai-prices is not consulted). With `package=True` (the default) and the
    `genai-prices` package installed, its maintained prices come before the bundled table's.
    Raises ValueError for a missing or malformed file.

    >>> table = load_pricing({"models": {"my-model": {"input": 1, "output": 2}}})
    >>> table.estimate("my-model", 1_000_000, 0)["total_cost_usd"]
    1.0
    """
    models, as_of = _bundled()
    sources = [f"bundled table ({as_of})"]
    layers: list[PricingSource] = []
    env_path = os.environ.get(PRICING_ENV, "").strip() if use_env else ""
    if env_path:
        layers.append(env_path)
    if source is not None:
        layers.append(source)
    for layer in layers:
        extra, extra_as_of, replace, label = _read(layer)
        if replace:
            models, sources, package = {}, [], False
        models.update(extra)
        sources.append(label)
        as_of = extra_as_of or as_of
    return PricingTable(models, as_of, " + ".join(sources), package=package)


_default_lock = threading.Lock()
_default: tuple[tuple[str, float], PricingTable] | None = None


def default_pricing() -> PricingTable:
    """`load_pricing()`, cached until `$POSTHOG_LLM_PRICING` or the file it names changes."""
    global _default
    env_path = os.environ.get(PRICING_ENV, "").strip()
    try:
        stamp = os.path.getmtime(env_path) if env_path else 0.0
    except OSError:
        stamp = -1.0
    key = (env_path, stamp)
    with _default_lock:
        if _default is None or _default[0] != key:
            _default = (key, load_pricing())
        return _default[1]


def estimate_cost(
    model: str | None,
    input_tokens: int | None,
    output_tokens: int | None,
    cache_read_tokens: int | None = 0,
    *,
    cache_write_tokens: int | None = 0,
    provider: str | None = None,
    pricing: PricingSource | None = None,
    cache_write_1h_tokens: int | None = 0,
    reasoning_tokens: int | None = 0,
) -> dict[str, Any] | None:
    """Estimated USD cost of one call, or None for an unknown model or unknown token counts.

    `input_tokens` counts cached tokens too, except for `provider="anthropic"` or a Claude
    model on any host (Anthropic reports them apart), as in PostHog's `$ai_input_tokens`. `cache_write_1h_tokens` are the
    cache writes kept an hour (of `cache_write_tokens`); `reasoning_tokens` are added to the
    output of Gemini models only (the others count them in their output already). Returns
    `{"model", "provider", "input_cost_usd", "output_cost_usd", "total_cost_usd", "as_of",
    "price_source"}`: `as_of` is the price table's date, None when the price came from the
    genai-prices package (its version, in `price_source`, dates it).

    >>> estimate_cost("claude-3-5-haiku-20241022", 1_000_000, 1_000_000)["total_cost_usd"]
    4.8
    >>> estimate_cost("my-local-llama", 10, 10) is None
    True
    """
    table = _table(pricing)
    return table.estimate(
        model,
        input_tokens,
        output_tokens,
        cache_read_tokens,
        cache_write_tokens=cache_write_tokens,
        provider=provider,
        cache_write_1h_tokens=cache_write_1h_tokens,
        reasoning_tokens=reasoning_tokens,
    )


def event_cost(
    properties: Mapping[str, Any], pricing: PricingSource | None = None
) -> dict[str, Any] | None:
    """The cost of one stored `$ai_generation` or `$ai_embedding`, as the viewer shows it: the
    cost the event states itself (its total, its input and output costs, or its tokens at its
    own prices, as PostHog reads them), else the table's estimate (cache writes, Gemini's
    thinking tokens and the served tier included); None when neither is known.

    `{"total_cost_usd", "source": "event"}`, or the estimate's fields with `"source": "estimate"`.

    >>> event_cost({"$ai_total_cost_usd": 0.25})
    {'total_cost_usd': 0.25, 'source': 'event'}
    >>> event_cost({"$ai_model": "gpt-4o", "$ai_input_tokens": 1_000_000})["total_cost_usd"]
    2.5
    """
    total = own_cost(properties)
    if total is not None:
        return {"total_cost_usd": total, "source": "event"}
    table = _table(pricing)
    estimate = table.estimate_event(properties)
    if estimate is not None:
        estimate["source"] = "estimate"
    return estimate


def _table(pricing: PricingSource | None) -> PricingTable:
    """The table `pricing` names: the default one, a table given, or one loaded."""
    if pricing is None:
        return default_pricing()
    if isinstance(pricing, PricingTable):
        return pricing
    return load_pricing(pricing)
