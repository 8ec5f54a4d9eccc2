"""Error text: the one place that decides what an `$ai_error` may say.

Every integration passes exceptions through `error_text`, so secrets are scrubbed the same way
everywhere and privacy mode keeps only the exception's type (as PostHog's own privacy mode does;
the HTTP status is reported separately and kept).
"""

from __future__ import annotations

import builtins
import os
import re
import sys
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "detached_error",
    "error_text",
    "error_type",
    "scrub_secrets",
    "header_secrets",
    "secrets_in",
    "REDACTED",
]

REDACTED = "[redacted]"

# Credentials that error messages of LLM SDKs are known to quote: provider keys, bearer tokens,
# and key-like query or header values. Prefixed keys need a realistic length after the prefix,
# so ordinary words that happen to start the same way stay.
_SECRET_PATTERNS = re.compile(
    r"""
      (?<![A-Za-z]{2})sk-ant-[A-Za-z0-9_\-]{8,}      # Anthropic (not inside a word: task-...)
    | (?<![A-Za-z]{2})sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{16,}   # OpenAI and compatibles
    | AIza[0-9A-Za-z_\-]{20,}              # Google API keys
    | \b(?:phc|phx)_[A-Za-z0-9]{16,}       # PostHog project and personal keys
    | \bgsk_[A-Za-z0-9]{20,}               # Groq
    | \bxai-[A-Za-z0-9]{20,}               # xAI
    | \bhf_[A-Za-z0-9]{20,}                # Hugging Face
    | \b(?:AKIA|ASIA)[0-9A-Z]{16}\b        # AWS access key ids
    | \bgh[pousr]_[A-Za-z0-9]{30,}         # GitHub tokens
    | \bgithub_pat_[A-Za-z0-9_]{22,}       # GitHub fine-grained tokens
    | \beyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{8,}   # JWTs
    """,
    re.VERBOSE,
)
# What each of those starts with: a text holding none of them skips that (slowest) pattern.
_PREFIXES = (
    "sk-",
    "AIza",
    "phc_",
    "phx_",
    "gsk_",
    "xai-",
    "hf_",
    "AKIA",
    "ASIA",
    "gh",
    "github_pat_",
    "eyJ",
)
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=\-]{6,}")
_KEY_VALUES = re.compile(
    r"""(?ix)
    (
      (?<![A-Za-z0-9])["']?(?:x-api-key|x-goog-api-key|api[_-]?key|apikey|access[_-]?token|secret|password|key|token)["']?
      \s*[:=]\s*["']?
    )
    (?!\[redacted\])[^\s"'&,;}\]]{4,}
    """
)
# `Authorization: <credentials>`, with or without a scheme in front of them. A quoted value is
# data, whatever it looks like; an unquoted one must look like a credential, not a word of prose
# ("Authorization: expected a token"): a digit in it, mixed case, or 20 characters and more.
_AUTHORIZATION = re.compile(
    r"""(?x)
    (
      \b(?i:proxy-)?(?i:authorization)["']?\s*[:=]\s*(?P<q>["'])?
      (?:(?i:bearer|basic|token|digest|negotiate|apikey|sharedkey)\s+)?
    )
    (?!\[redacted\]|(?i:bearer|basic|token|digest|negotiate|apikey|sharedkey)(?:\s|$|["']))
    (?(q)[^\s"'&,;}\]]{4,}
      |(?:(?=[^\s"'&,;}\]]*\d)[^\s"'&,;}\]]{6,}
        |(?=[^\s"'&,;}\]]*[a-z])(?=[^\s"'&,;}\]]*[A-Z])[^\s"'&,;}\]]{8,}
        |[^\s"'&,;}\]]{20,}))
    """
)
# Credentials in a URL: `scheme://user:password@host`, and signed-URL signatures (Azure SAS,
# AWS presigned URLs).
# A user name alone (`ssh://git@host`) is no secret, unless it looks like a token (a digit and
# 8 characters, or 20 characters).
_USERINFO = re.compile(
    r"(?i)\b([a-z][a-z0-9+.\-]*://)(?!\[redacted\]@)"
    r"(?:[^\s/?#@:\"'<>]*:[^\s/?#@\"'<>]*"
    r"|(?=[^\s/?#@:\"'<>]*\d)[^\s/?#@:\"'<>]{8,}"
    r"|[^\s/?#@:\"'<>]{20,})@"
)
_SIGNATURES = re.compile(
    r"(?i)([?&](?:sig|signature|x-amz-signature|x-amz-credential|x-amz-security-token)=)"
    r"(?!\[redacted\])[^\s&#\"'<>]+"
)


def scrub_secrets(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with API keys, bearer tokens, `key=` values and the given secrets replaced.

    >>> scrub_secrets("401: Incorrect API key provided: sk-abc123def456ghi789jkl")
    '401: Incorrect API key provided: [redacted]'
    >>> scrub_secrets("GET /v1/models?key=AIzaSyA1234567890abcdefghij")
    'GET /v1/models?key=[redacted]'
    >>> scrub_secrets("ConnectError: https://admin:pw1234@gateway.internal/v1")
    'ConnectError: https://[redacted]@gateway.internal/v1'
    """
    for secret in secrets:
        if secret and len(secret) >= 6 and secret in text:
            text = text.replace(secret, REDACTED)
    if not text:
        return text
    for prefix in _PREFIXES:
        if prefix in text:
            text = _SECRET_PATTERNS.sub(REDACTED, text)
            break
    text = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    # Cheap checks first: most error texts have no URL, signature or Authorization header.
    if "://" in text:
        text = _USERINFO.sub(lambda m: m.group(1) + REDACTED + "@", text)
    if "=" in text:
        text = _SIGNATURES.sub(lambda m: m.group(1) + REDACTED, text)
    if "uthorization" in text or "UTHORIZATION" in text:
        text = _AUTHORIZATION.sub(lambda m: m.group(1) + REDACTED, text)
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
            return error_type(text, secrets)
    return scrub_secrets(text, secrets)


def error_type(text: object, secrets: Iterable[str] = ()) -> str:
    """What privacy mode keeps of an error given as text: its type, else a neutral marker.

    A string error has no type: what comes before the first colon is kept when it looks like
    one (`"RateLimitError: ..."`); anything else may be the prompt and becomes `"error"`.
    Applying it again changes nothing.

    >>> error_type("Boom: the prompt was ...")
    'Boom'
    >>> error_type("the prompt was: my password")
    'error'
    """
    if not isinstance(text, str):
        return "error"
    head = text.split(":", 1)[0].strip()
    # An identifier can still be a key (`hf_...: unauthorized`): never keep more than the
    # scrubbed text would.
    return head if head.isidentifier() and scrub_secrets(head, secrets) == head else "error"


# -- secrets a client or model object holds ---------------------------------------------------

# Request headers that carry no credential: their values are not treated as secrets.
_HARMLESS_HEADERS = frozenset(
    {
        "accept",
        "accept-encoding",
        "accept-language",
        "anthropic-beta",
        "anthropic-version",
        "cache-control",
        "connection",
        "content-length",
        "content-type",
        "host",
        "openai-beta",
        "openai-organization",
        "openai-project",
        "user-agent",
        "x-goog-api-client",
        "x-request-id",
    }
)
_HARMLESS_HEADER_PREFIXES = ("x-stainless-",)
# Names of fields and keyword arguments that hold a credential.
_SECRET_NAME = re.compile(
    r"(?i)(?:^|_)(?:api_?key|token|secret|password|passwd|credentials?)(?:$|_)"
    r"|(?<!cache)(?<!idempotency)(?:^|_)key(?:$|_)"  # not prompt_cache_key
    r"|access_key|secret_key|private_key|session_token|azure_ad_token"
)
# Header names that say their value is a credential; other custom headers count only when
# their value looks like a token (`x-title: My App` and `x-portkey-provider: openai` do not).
_CREDENTIAL_HEADER = re.compile(
    r"(?i)(?:^|[-_])(?:key|apikey|sig|signature|cookie|session)(?:$|[-_])"
    r"|auth|token|secret|passw|credential"
)
_HEADER_FIELDS = ("default_headers", "headers", "additional_headers", "extra_headers")
_NESTED_FIELDS = ("additional_kwargs", "model_kwargs", "client_kwargs", "kwargs")
_SCHEMES = ("bearer ", "basic ", "token ")


def _secret_value(value: object) -> str | None:
    """`value` as the secret text it is (a str, or a pydantic `SecretStr`), else None."""
    if isinstance(value, str):
        return value
    reveal = getattr(value, "get_secret_value", None)
    if reveal is not None and callable(reveal):
        try:
            revealed = reveal()
        except Exception:
            return None
        return revealed if isinstance(revealed, str) else None
    return None


def _add(found: list[str], value: object) -> None:
    text = _secret_value(value)
    if text is None or len(text) < 6 or text in found:
        return
    found.append(text)
    lowered = text[:7].lower()
    for scheme in _SCHEMES:
        if lowered.startswith(scheme):  # "Bearer <token>": the token alone, too
            token = text[len(scheme) :].strip()
            if len(token) >= 6 and token not in found:
                found.append(token)


def header_secrets(headers: object) -> list[str]:
    """Values of the request headers a client sends that may be credentials.

    A gateway's auth header can have any name: a header counts when its name says credential
    (auth, key, token, secret, password ...) or its value looks like one (`Bearer ...`, an
    opaque token); well-known harmless ones (content type, user agent, `x-stainless-*`, API
    versions and betas ...) never do, nor do values of words (`x-title: My app`).
    """
    found: list[str] = []
    if not isinstance(headers, Mapping):
        return found
    try:
        items = list(headers.items())
    except Exception:
        return found
    for name, value in items:
        if not isinstance(name, str):
            continue
        lowered = name.lower()
        if lowered in _HARMLESS_HEADERS or lowered.startswith(_HARMLESS_HEADER_PREFIXES):
            continue
        if _CREDENTIAL_HEADER.search(lowered) or _looks_like_token(value):
            _add(found, value)
    return found


def _looks_like_token(value: object) -> bool:
    """A credential scheme (`Bearer ...`), or an opaque token rather than a word: no spaces,
    and 16 characters with letters and digits, or 20 in mixed case."""
    text = _secret_value(value)
    if text is None:
        return False
    if text[:7].lower().startswith(_SCHEMES):
        return True
    if len(text) < 16 or any(c.isspace() for c in text):
        return False
    letters = any(c.isalpha() for c in text)
    if letters and any(c.isdigit() for c in text):
        return True
    return len(text) >= 20 and not text.islower() and not text.isupper()


def _env_secret(marker: Mapping[str, Any]) -> str | None:
    # LangChain's serialized form of a secret: {"lc": 1, "type": "secret", "id": ["ENV_NAME"]}.
    ids = marker.get("id")
    if isinstance(ids, (list, tuple)) and len(ids) == 1 and isinstance(ids[0], str):
        return os.environ.get(ids[0])
    return None


def _collect(found: list[str], fields: Mapping[str, Any], depth: int) -> None:
    for name, value in fields.items():
        if not isinstance(name, str):
            continue
        if isinstance(value, Mapping):
            if value.get("lc") == 1 and value.get("type") == "secret":
                _add(found, _env_secret(value))
            elif name in _HEADER_FIELDS:
                for secret in header_secrets(value):
                    _add(found, secret)
            elif depth and (name in _NESTED_FIELDS or _SECRET_NAME.search(name)):
                _collect(found, value, depth - 1)
        elif _SECRET_NAME.search(name):
            _add(found, value)


def secrets_in(obj: object) -> list[str]:
    """Credentials a model object or its settings hold: to scrub from that model's errors.

    `obj` is a mapping (a LangChain model's serialized kwargs or invocation params) or an
    object with fields (a LlamaIndex LLM). Values of key-like names (`api_key`,
    `openai_api_key`, `*_token`, `secret` ...), plain or `SecretStr`, values of custom headers
    (`default_headers`), the same inside `additional_kwargs` / `model_kwargs`, and the
    environment variable a LangChain secret marker names. Never raises.
    """
    found: list[str] = []
    try:
        if isinstance(obj, Mapping):
            fields: Mapping[str, Any] = obj
        else:
            fields = _fields_of(obj)
        _collect(found, fields, 2)
    except Exception:
        pass
    return found


def _fields_of(obj: object) -> dict[str, Any]:
    """An object's own fields: pydantic's, else its instance attributes."""
    names = getattr(type(obj), "__pydantic_fields__", None)
    values: dict[str, Any] = {}
    if isinstance(names, Mapping):
        for name in names:
            values[name] = getattr(obj, name, None)
        private = getattr(obj, "__pydantic_private__", None)
        if isinstance(private, Mapping):
            values.update((k.lstrip("_"), v) for k, v in private.items() if isinstance(v, str))
        return values
    own = getattr(obj, "__dict__", None)
    if isinstance(own, Mapping):
        values.update((str(k).lstrip("_"), v) for k, v in own.items())
    return values


def detached_error(error: BaseException) -> BaseException:
    """`error` for an event built later: a copy of the same type, arguments and attributes,
    without the traceback, context and cause, which hold the frames of the failed work.

    Kept while other runs of a trace are still open, the error itself would keep those frames,
    and the stream generators in them, alive: the framework could not end the runs they hold
    until the error was let go. The copy is made without calling the class's `__init__` (it may
    want other arguments). An error that cannot be copied so, whose copy would say something
    else, or that holds other errors (a group, whose members keep their frames) is stood for by
    an error of its class's name with its text and HTTP status: what an event says of it.

    >>> try:
    ...     raise KeyError("gone")
    ... except KeyError as exc:
    ...     kept = detached_error(exc)
    >>> type(kept).__name__, kept.args, kept.__traceback__
    ('KeyError', ('gone',), None)
    """
    cls = type(error)
    try:
        if not _holds_errors(error):
            copy = cls.__new__(cls, *error.args)
            copy.args = error.args
            own = getattr(error, "__dict__", None)
            if own:
                copy.__dict__.update(own)
            for name in _slot_names(cls):
                try:
                    setattr(copy, name, getattr(error, name))
                except AttributeError:
                    continue  # a slot the error never filled
            # Some built-in errors read fields only their `__init__` sets (UnicodeDecodeError).
            if type(copy) is cls and str(copy) == str(error):
                return copy
    except Exception:
        pass
    try:
        return _stand_in(error)
    except Exception:
        return error


# Exception groups (Python 3.11+) hold other errors, with their own frames.
_GROUP: type | None = getattr(builtins, "BaseExceptionGroup", None)


def _holds_errors(error: BaseException) -> bool:
    return _GROUP is not None and isinstance(error, _GROUP)


def _slot_names(cls: type) -> list[str]:
    names: list[str] = []
    for klass in cls.__mro__:
        slots = klass.__dict__.get("__slots__", ())
        for name in (slots,) if isinstance(slots, str) else slots:
            if name not in ("__dict__", "__weakref__") and name not in names:
                names.append(name)
    return names


class DetachedError(Exception):
    """Stands for an error that could not be copied: its class's name, text and HTTP status."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


# One stand-in class per error class (named as it is), for as many classes as a process meets.
_STAND_IN_CLASSES: dict[type, type[DetachedError]] = {}


def _stand_in(error: BaseException) -> DetachedError:
    from ._events import http_status_of  # (the event builders use this module)

    cls = type(error)
    stand_in_cls = _STAND_IN_CLASSES.get(cls)
    if stand_in_cls is None:
        stand_in_cls = type(
            cls.__name__, (DetachedError,), {"__module__": cls.__module__, "__slots__": ()}
        )
        if len(_STAND_IN_CLASSES) < 256:
            _STAND_IN_CLASSES[cls] = stand_in_cls
    try:
        text = str(error)
    except Exception:
        text = ""
    stand_in = stand_in_cls(text)
    status = http_status_of(error)
    if status is not None:
        stand_in.status_code = status  # type: ignore[attr-defined]
    return stand_in


def stopped_by_caller(error: BaseException | None) -> bool:
    """Whether `error` is the caller stopping work it started, not the work failing: a
    generator or stream closed early (`GeneratorExit`), or cancelled (asyncio: a timeout, a
    client gone from a streamed reply, a generator abandoned when the event loop ends)."""
    if error is None:
        return False
    if isinstance(error, GeneratorExit):
        return True
    asyncio = sys.modules.get("asyncio")  # not imported for this: without it, nothing cancels
    return asyncio is not None and isinstance(error, asyncio.CancelledError)
