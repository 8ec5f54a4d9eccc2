"""What the OpenAI Agents integration takes from the kernel API (one import site).

Placeholder until `posthog_llm.instrumentation` lands: without it, observations are not shared
with other integrations and error text falls back to a local scrubber.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from posthog_llm import (
    GENERATION,
    SPAN,
    TRACE,
    Emitter,
    Scope,
    capture_internal_exceptions,
    generation_properties,
    span_properties,
    trace_properties,
)

try:  # pragma: no cover - the branch taken depends on the kernel being merged
    from posthog_llm.instrumentation import (
        close_observation,
        current_observation,
        error_text,
        open_observation,
        provider_from_base_url,
    )
except ImportError:  # pragma: no cover
    from posthog_llm._events import provider_from_base_url

    _SECRET = re.compile(
        r"(sk-ant-[A-Za-z0-9_\-]{8,}|sk-[A-Za-z0-9_\-]{8,}|AIza[0-9A-Za-z_\-]{20,}"
        r"|Bearer\s+[A-Za-z0-9._\-~+/=]{8,}"
        r"|(?:api[_-]?key|x-api-key|key)\s*[=:]\s*['\"]?[^\s'\"&,;]+)",
        re.IGNORECASE,
    )

    def error_text(
        error: BaseException | str | None, *, privacy: bool = False, secrets: Iterable[str] = ()
    ) -> str | None:
        if error is None:
            return None
        if isinstance(error, BaseException):
            if privacy:
                return type(error).__name__
            message = str(error)
            text = f"{type(error).__name__}: {message}" if message else type(error).__name__
        else:
            text = str(error)
            if privacy:
                return text.split(":", 1)[0].strip() or "Error"
        text = _SECRET.sub("[REDACTED]", text)
        for secret in secrets:
            if secret:
                text = text.replace(secret, "[REDACTED]")
        return text

    def current_observation() -> Any:
        return None

    def open_observation(kind: str, **kwargs: Any) -> Any:
        return None

    def close_observation(obs: Any) -> None:
        return None


__all__ = [
    "GENERATION",
    "SPAN",
    "TRACE",
    "generation_properties",
    "provider_from_base_url",
    "span_properties",
    "trace_properties",
    "Emitter",
    "Scope",
    "capture_internal_exceptions",
    "close_observation",
    "current_observation",
    "error_text",
    "open_observation",
]
