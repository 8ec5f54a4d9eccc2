"""Who may talk to the collector: loopback addresses, Host names and project api keys.

>>> is_loopback("localhost"), is_loopback("[::1]"), is_loopback("10.0.0.2")
(True, True, False)
>>> viewer_secret("Basic dXNlcjpwaGNfa2V5")  # user:phc_key
'phc_key'
>>> host_allowed("localhost:8010", bound_host="127.0.0.1"), host_allowed("evil.test", bound_host="")
(True, False)
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress

__all__ = ["bearer_token", "host_allowed", "is_loopback", "key_matches", "viewer_secret"]


def is_loopback(host: str) -> bool:
    name = host.strip().strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def key_matches(key: str | None, expected: str | None) -> bool:
    """True when no key is expected, or `key` is it (compared in constant time)."""
    if expected is None:
        return True
    return isinstance(key, str) and hmac.compare_digest(key.encode(), expected.encode())


def bearer_token(authorization: str) -> str | None:
    """The token of an `Authorization: Bearer <token>` header value, else None."""
    if authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return None


def viewer_secret(authorization: str) -> str | None:
    """The HTTP Basic password (the user name is ignored) or the Bearer token of a header value."""
    if authorization.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(authorization[6:].strip()).decode("utf-8")
            return decoded.split(":", 1)[-1]
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
    return bearer_token(authorization)


def host_allowed(host: str, bound_host: str) -> bool:
    """Whether a loopback server answers a request for `host` (a lower-case Host header value).

    Only loopback names and the address the server is bound to: a DNS-rebinding page, whose
    requests carry its own Host name, must not read the store.
    """
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    if host.startswith("[") and "]" in host:
        name = host[1 : host.index("]")]
    return not name or is_loopback(name) or name == bound_host
