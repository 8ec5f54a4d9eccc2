"""Prices from the `genai-prices` package (pydantic's maintained, dated price data), if installed.

`pip install genai-prices` (Python 3.11+) and the viewer prices models the bundled table does
not know, and uses current prices for those it does; `POSTHOG_LLM_PRICES_PACKAGE=0` turns it
off. Per-token prices are read at a small usage (1,000 tokens), so long-context tiers do not
apply, and cached per model name. Only the package's bundled snapshot is used: nothing is
fetched.
"""

from __future__ import annotations

import os
import threading
from typing import Any

__all__ = ["PACKAGE_ENV", "package_available", "package_price", "package_label"]

PACKAGE_ENV = "POSTHOG_LLM_PRICES_PACKAGE"
_PROBE = 1000  # tokens per probe; prices are scaled to per 1M tokens
_lock = threading.Lock()
_cache: dict[tuple[str, str | None], dict[str, Any] | None] = {}
_module: Any = None
_checked = False


def _load() -> Any:
    global _module, _checked
    if not _checked:
        _checked = True
        try:
            import genai_prices

            _module = genai_prices
        except Exception:  # not installed, or it fails to import on this Python
            _module = None
    return _module


def package_available() -> bool:
    if os.environ.get(PACKAGE_ENV, "").strip().lower() in ("0", "false", "no", "off"):
        return False
    return _load() is not None


def package_label() -> str | None:
    module = _load()
    if module is None:
        return None
    return f"genai-prices {getattr(module, '__version__', '')}".strip()


def _per_million(module: Any, model: str, provider: str | None, **usage: int) -> tuple[float, Any]:
    kwargs = {"provider_id": provider} if provider else {}
    result = module.calc_price(module.Usage(**usage), model, **kwargs)
    return float(result.total_price) * (1_000_000 / _PROBE), result


def package_price(model: str, provider: str | None = None) -> dict[str, Any] | None:
    """`{"name", "provider", "input", "output", "cache_read", "cache_write"}` per 1M tokens."""
    if not package_available():
        return None
    key = (model, provider)
    with _lock:
        if key in _cache:
            return _cache[key]
    module = _load()
    found: dict[str, Any] | None = None
    for provider_id in [provider, None] if provider else [None]:
        try:
            input_price, result = _per_million(module, model, provider_id, input_tokens=_PROBE)
            output_price, _ = _per_million(module, model, provider_id, output_tokens=_PROBE)
            cache_read, _ = _per_million(
                module, model, provider_id, input_tokens=_PROBE, cache_read_tokens=_PROBE
            )
            cache_write, _ = _per_million(
                module, model, provider_id, input_tokens=_PROBE, cache_write_tokens=_PROBE
            )
        except Exception:  # an unknown model or provider: LookupError, or the data's own errors
            continue
        found = {
            "name": str(getattr(result.model, "id", model)),
            "provider": str(getattr(result.provider, "id", provider_id or "")) or None,
            "input": input_price,
            "output": output_price,
            "cache_read": cache_read,
            "cache_write": cache_write,
        }
        break
    with _lock:
        if len(_cache) < 10_000:
            _cache[key] = found
    return found
