"""PostHog's capture API over one keep-alive session.

`$ai_*` events go to `POST {host}/i/v0/ai/batch/`, PostHog's LLM-analytics intake (8 MiB per
event), as posthog-python 7.x sends them; other events to `POST {host}/batch/` (~1 MB per event).
Both take the same body: `{"api_key", "batch": [...], "sent_at"}`.
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
import os
import threading
import zlib
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urljoin, urlsplit

from .._version import __version__
from ._base import BatchTooLargeError, PermanentError, RetryableError
from ._connections import NETWORK_ERRORS, ConnectionPool, url_origin

if TYPE_CHECKING:
    import requests

__all__ = ["PostHogHTTPDestination", "AI_LANE", "EVENTS_LANE", "is_ai_event", "gzip_body"]

AI_LANE = "ai"
EVENTS_LANE = "events"
_AI_PREFIX = b'{"event":"$ai_'
_EVENT_PREFIX = b'{"event":"'


def is_ai_event(data: bytes) -> bool:
    """Whether a serialized event is an `$ai_*` event (the client writes `event` first)."""
    if data.startswith(_AI_PREFIX):
        return True
    if data.startswith(_EVENT_PREFIX):
        return False
    try:
        return str(json.loads(data).get("event", "")).startswith("$ai_")
    except Exception:
        return False


_USER_AGENT = f"posthog-llm/{__version__}"
_RETRY_STATUSES = frozenset({408, 429})
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS = 3
_MAX_REDIRECT_ORIGINS = 4

# gzip container (what `Content-Encoding: gzip` means), written by the compressor in one pass.
_GZIP_WBITS = 31
_deflate: Any
try:  # ISA-L's deflate: 3-4x cheaper than zlib's level 1 on prompts, no larger (`[fast]` extra)
    from isal import isal_zlib as _isal_zlib

    _deflate = _isal_zlib
except ImportError:
    _deflate = zlib


def gzip_body(data: bytes) -> bytes:
    """`data` gzipped at level 1: CPU on the user's machine is the scarcer resource here.

    With `isal` installed, ISA-L's deflate; else the stdlib's zlib. Both write the same wire
    format (RFC 1952), which PostHog accepts.
    """
    return bytes(_deflate.compress(data, 1, _GZIP_WBITS))


def _split_userinfo(host: str) -> tuple[str, str | None]:
    """`host` as it may be shown (no password), and the basic-auth header its userinfo asks for."""
    parts = urlsplit(host)
    if parts.username is None and parts.password is None:
        return host, None
    user, password = unquote(parts.username or ""), unquote(parts.password or "")
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    netloc = parts.netloc.rpartition("@")[2]
    shown = parts._replace(netloc=f"{parts.username}:***@{netloc}").geturl()
    return shown, f"Basic {token}"


def _path_of(url: str) -> str:
    """The request target; characters HTTP cannot carry as they are (a non-ASCII path prefix)
    are percent-encoded, as requests does."""
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return target if target.isascii() and " " not in target else quote(target, safe=_URL_SAFE)


_URL_SAFE = "/?&=%:@!$'()*+,;~[]"


def _same_host(home: tuple[str, Any, Any], target: tuple[str, Any, Any]) -> bool:
    """Whether a redirect (origins as `url_origin` gives them) stays with the configured host:
    the same origin, or its http -> https (as requests keeps credentials for)."""
    if home == target:
        return True
    (home_scheme, home_host, home_port), (scheme, host, port) = home, target
    if home_host != host or (home_scheme, scheme) != ("http", "https"):
        return False
    return (home_port, port) == (80, 443) or home_port == port


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = _dt.datetime.strptime(value, "%a, %d %b %Y %H:%M:%S GMT").replace(
            tzinfo=_dt.timezone.utc
        )
    except ValueError:
        return None
    return max(0.0, (when - _dt.datetime.now(_dt.timezone.utc)).total_seconds())


class PostHogHTTPDestination:
    """Sends batches to PostHog Cloud or a self-hosted PostHog (or `posthog-llm serve`)."""

    # The sender may have two requests out at once: the endpoint's handling of one overlaps
    # the compression of the next (the session's connection pool gives each its connection).
    concurrent_requests = 2

    def __init__(self, api_key: str, host: str, *, gzip: bool = True) -> None:
        self.api_key = api_key
        self.host = host.rstrip("/")
        self._home = url_origin(self.host)
        self.url = self.host + "/batch/"
        self.ai_url = self.host + "/i/v0/ai/batch/"
        self.gzip = gzip
        # A self-hosted PostHog behind HTTP basic auth: `https://user:password@host`. Requests
        # carry the credentials as a header; logs and messages never show the password.
        shown, self._basic_auth = _split_userinfo(self.host)
        self.description = f"PostHog at {shown}"
        self._session: requests.Session | None = None
        # Set on the first request: `http.client` connections when no proxy applies to the
        # host, else None (the requests session, which knows proxies). `False` until decided.
        self._pool: ConnectionPool | None | bool = False
        self._pool_lock = threading.Lock()
        self._redirect_pools: dict[tuple[str, Any, Any], ConnectionPool] = {}
        self._prefix = b'{"api_key":' + json.dumps(api_key).encode() + b',"batch":['

    def lane(self, event: bytes) -> str:
        return AI_LANE if is_ai_event(event) else EVENTS_LANE

    def _get_session(self) -> requests.Session:
        if self._session is None:
            # Imported on first use: `import posthog_llm` stays light for local-store users.
            import requests

            session = requests.Session()
            session.headers["User-Agent"] = _USER_AGENT
            # requests reads the proxy and CA-bundle environment variables (and ~/.netrc) again
            # for every request, ~0.3 ms of a ~1.2 ms request: read them once, here (a session
            # is made again after a failed request, so a changed environment is picked up then).
            session.proxies.update(requests.utils.get_environ_proxies(self.url))
            bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
            if bundle:
                session.verify = bundle
            session.trust_env = False
            self._session = session
        return self._session

    def body(self, events: list[bytes]) -> bytes:
        sent_at = _dt.datetime.now(_dt.timezone.utc).isoformat()
        # One join: the events are copied once (a 200 KB prompt is not copied three times).
        parts = [self._prefix]
        for data in events:
            parts.append(data)
            parts.append(b",")
        if events:
            parts[-1] = b'],"sent_at":"'
        else:
            parts.append(b'],"sent_at":"')
        parts.append(sent_at.encode())
        parts.append(b'"}')
        return b"".join(parts)

    def _get_pool(self) -> ConnectionPool | None:
        pool = self._pool
        if pool is False:
            # The first two requests may start together (the worker and its helper thread).
            with self._pool_lock:
                pool = self._pool
                if pool is False:
                    pool = self._pool = self._direct_pool()
        return pool if isinstance(pool, ConnectionPool) else None

    def _direct_pool(self) -> ConnectionPool | None:
        """Our own connections, or None when a proxy applies to the host (read as requests
        reads the environment: `HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`, `NO_PROXY`)."""
        # Imported on first use: `import posthog_llm` stays light for local-store users.
        import requests

        proxies = requests.utils.get_environ_proxies(self.url)
        if requests.utils.select_proxy(self.url, proxies) is not None:
            return None
        return ConnectionPool(self.host, user_agent=_USER_AGENT)

    def send(self, events: list[bytes], *, timeout: float) -> None:
        """POST one batch; the sender never mixes lanes, so the first event picks the URL."""
        url = self.ai_url if events and is_ai_event(events[0]) else self.url
        data = self.body(events)
        headers = {"Content-Type": "application/json"}
        if self.gzip:
            # Level 1: about 5x cheaper than the default level 6 on large prompts, for ~40% more
            # bytes.
            data = gzip_body(data)
            headers["Content-Encoding"] = "gzip"
        pool = self._get_pool()
        if pool is not None:
            status, retry_after, text = self._post_direct(pool, url, data, headers, timeout)
        else:
            status, retry_after, text = self._send_with_requests(url, data, headers, timeout)
        if 200 <= status < 300:
            return
        detail = f"HTTP {status} from {_split_userinfo(url)[0]}: {text[:200]!r}"
        if status == 413:
            raise BatchTooLargeError(detail)
        if status in _RETRY_STATUSES or status >= 500:
            raise RetryableError(detail, retry_after=_retry_after(retry_after))
        raise PermanentError(detail, status=status)

    def _post_direct(
        self, pool: ConnectionPool, url: str, data: bytes, headers: dict[str, str], timeout: float
    ) -> tuple[int, str | None, str]:
        """POST over our own connections, following redirects with the same POST and body (a
        host that moved, or http sent on to https): requests would turn a 301 or 302 into a
        GET and lose the batch."""
        if self._basic_auth is not None:
            headers = {**headers, "Authorization": self._basic_auth}
        for _ in range(_MAX_REDIRECTS + 1):
            try:
                # The host may carry a path (a self-hosted PostHog behind a prefix).
                status, answer, content = pool.post(_path_of(url), data, headers, timeout)
            except NETWORK_ERRORS as exc:
                # The connection may be half-dead: the next try starts a fresh one.
                pool.close()
                raise RetryableError(f"{type(exc).__name__}: {exc}") from None
            except (ValueError, UnicodeError) as exc:  # a URL http.client cannot send
                raise PermanentError(f"cannot send to {_split_userinfo(url)[0]}: {exc}") from None
            location = answer.get("Location")
            if status not in _REDIRECTS or not location:
                return status, answer.get("Retry-After"), content[:400].decode("utf-8", "replace")
            try:
                target = urljoin(url, location)
                pool = self._pool_for(target)
            except ValueError:  # not http(s), or not a URL: not followed
                return status, None, f"redirected to {location!r}"
            if not _same_host(self._home, url_origin(target)):
                # The credentials are for the configured host only (an http -> https hop on
                # it keeps them, as requests does).
                headers = {k: v for k, v in headers.items() if k != "Authorization"}
            url = target
        return status, None, f"more than {_MAX_REDIRECTS} redirects"

    def _pool_for(self, url: str) -> ConnectionPool:
        """The connections to `url`'s origin: a redirect's target keeps its own."""
        origin = url_origin(url)
        if origin == self._home and isinstance(self._pool, ConnectionPool):
            return self._pool
        with self._pool_lock:
            pool = self._redirect_pools.get(origin)
            if pool is None:
                if len(self._redirect_pools) >= _MAX_REDIRECT_ORIGINS:
                    self._redirect_pools.popitem()[1].close()
                pool = ConnectionPool(url, user_agent=_USER_AGENT)  # it reads the origin only
                self._redirect_pools[origin] = pool
            return pool

    def _send_with_requests(
        self, url: str, data: bytes, headers: dict[str, str], timeout: float
    ) -> tuple[int, str | None, str]:
        import requests

        try:
            response: Any = self._get_session().post(
                url, data=data, headers=headers, timeout=timeout
            )
        except requests.RequestException as exc:
            # The connection may be half-dead: start a fresh one on the next try. Closing the
            # session closes its idle connections only; one the other request in flight is
            # using is closed when that request hands it back.
            self.close()
            raise RetryableError(f"{type(exc).__name__}: {exc}") from None
        return response.status_code, response.headers.get("Retry-After"), response.text

    def after_fork_in_child(self) -> None:
        """A forked child makes its own connections: the parent's stay the parent's (two
        processes writing requests on one keep-alive socket would mix their answers)."""
        self._session = None
        self._pool_lock = threading.Lock()
        for pool in (self._pool, *self._redirect_pools.values()):
            if isinstance(pool, ConnectionPool):
                pool.forget()

    def close(self) -> None:
        for pool in (self._pool, *self._redirect_pools.values()):
            if isinstance(pool, ConnectionPool):
                pool.close()
        session, self._session = self._session, None
        if session is not None:
            try:
                session.close()
            except Exception:
                pass
