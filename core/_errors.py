"""Error text: the one place that decides what an `$ai_error` may say.

Every integration passes exceptions through `error_text`, so secrets are scrubbed the same way
everywhere and privacy mode keeps only the exception's type (as PostHog's own privacy mode does;
the HTTP status is reported separately and kept).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["error_text", "scrub_secrets", "REDACTED"]

REDACTED = "[redacted]"

# Credentials that error messages of LLM SDKs are known to quote: provider keys, bearer tokens,
# and key-like query or header values.
_SECRET_PATTERNS = re.compile(
    r"""
      sk-ant-[A-Za-z0-9_\-]{8,}            # Anthropic
    | sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{16,}   # OpenAI and compatibles
    | AIza[0-9A-Za-z_\-]{20,}              # Google API keys
    | phc_[A-Za-z0-9]{16,}                 # PostHog project keys
    """,
    re.VERBOSE,
)
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=\-]{6,}")
_KEY_VALUES = re.compile(
    r"""(?ix)
    (
      ["']?(?:x-api-key|x-goog-api-key|api[_-]?key|apikey|access[_-]?token|secret|password|key|token)["']?
      \s*[:=]\s*["']?
    )
    (?!\[redacted\])[^\s"'&,;}\]]{4,}
    """
)


def scrub_secrets(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with API keys, bearer tokens, `key=` values and the given secrets replaced.

    >>> scrub_secrets("401: Incorrect API key provided: sk-abc123def456ghi789jkl")
    '401: Incorrect API key provided: [redacted]'
    >>> scrub_secrets("GET /v1/models?key=AIzaSyA1234567890abcdefghij")
    'GET /v1/models?key=[redacted]'
    """
    for secret in secrets:
        if secret and len(secret) >= 6 and secret in text:
            text = text.replace(secret, REDACTED)
    if not text:
        return text
    text = _SECRET_PATTERNS.sub(REDACTED, text)
    text = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    return _KEY_VALUES.sub(lambda m: m.group(1) + REDACTED, text)


def error_text(
    error: BaseException | str | None, *, privacy: bool = False, secrets: Iterable[str] = ()
) -> str | None:
    """What `$ai_error` says about `error`.

    `"ExceptionType: message"` with secrets scrubbed; under privacy mode only the type, since a
    message can quote the prompt.

    >>> error_text(ValueError("bad key sk-ant-api03-abcdefghijklmnop"))
    'ValueError: bad key [redacted]'
    >>> error_text(ValueError("the prompt was: my password"), privacy=True)
    'ValueError'
    """
    if error is None:
        return None
    if isinstance(error, BaseException):
        name = type(error).__name__
        if privacy:
            return name
        try:
            message = str(error)
        except Exception:
            message = ""
        text = f"{name}: {message}" if message else name
    else:
        text = str(error)
        if privacy:
            # A string error has no type: keep what looks like one ("RateLimitError: ...").
            head = text.split(":", 1)[0].strip()
            return head if head.isidentifier() else "error"
    return scrub_secrets(text, secrets)
