"""What the OpenTelemetry integration takes from the kernel API (one import site).

Placeholder until `posthog_llm.instrumentation` lands: the fallbacks below are replaced by the
kernel's own `error_text` / `scrub_secrets` when it is importable.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from posthog_llm import Emitter, Scope, capture_internal_exceptions, current_scope

try:  # pragma: no cover - the branch taken depends on the kernel being merged
    from posthog_llm.instrumentation import error_text, make_scope, scrub_secrets
except ImportError:  # pragma: no cover
    from posthog_llm._context import make_scope

    _SECRET = re.compile(
        r"(sk-ant-[A-Za-z0-9_\-]{8,}|sk-[A-Za-z0-9_\-]{8,}|AIza[0-9A-Za-z_\-]{20,}"
        r"|Bearer\s+[A-Za-z0-9._\-~+/=]{8,}"
        r"|(?:api[_-]?key|x-api-key|key)\s*[=:]\s*['\"]?[^\s'\"&,;]+)",
        re.IGNORECASE,
    )

    def scrub_secrets(text: str, secrets: Iterable[str] = ()) -> str:
        out = _SECRET.sub("[REDACTED]", text)
        for secret in secrets:
            if secret:
                out = out.replace(secret, "[REDACTED]")
        return out

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
        return scrub_secrets(text, secrets)


__all__ = [
    "Emitter",
    "Scope",
    "capture_internal_exceptions",
    "current_scope",
    "error_text",
    "make_scope",
    "scrub_secrets",
]
