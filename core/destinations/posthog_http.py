"""PostHog's capture API over one keep-alive session.

`$ai_*` events go to `POST {host}/i/v0/ai/batch/`, PostHog's LLM-analytics intake (8 MiB per
event), as posthog-python 7.x sends them; other events to `POST {host}/batch/` (~1 MB per event).
A PostHog that answers the AI intake 404 (one from before it) gets that batch at `/batch/`, and
every `$ai_*` event once it answered 404 three times in a row.
Both take the same body: `{"api_key", "batch": [...], "sent_at"}`.
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
import logging
import os
import threading
import zlib
from typing import TYPE_CHECKING, Any, NamedTuple
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


log = logging.getLogger("posthog_llm")

_USER_AGENT = f"posthog-llm/{__version__}"
_RETRY_STATUSES = frozenset({408, 429})
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS = 3
_AI_INTAKE_MISSES = 3
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
        self._ai_intake_missing = 0  # 404s from the AI intake in a row
        self.gzip = gzip
        # A self-hosted PostHog behind HTTP basic auth: `https://user:password@host`. Requests
        # carry the credentials as a header; logs and messages never show the password.
        shown, self._basic_auth = _split_userinfo(self.host)
        self.description = f"PostHog at {shown}"
        self._session: requests.Session | None = None
        # How each origin is reached, decided on its first request: our own `http.client`
        # connections, or, when a proxy applies to it, the proxies requests should use (the
        # requests session speaks to proxies). The configured host's origin, then the origins
        # redirects lead to (a few at most).
        self._transports: dict[tuple[str, Any, Any], ConnectionPool | _Proxied] = {}
        self._transport_lock = threading.Lock()
        self._prefix = b'{"api_key":' + json.dumps(api_key).encode() + b',"batch":['
        # Imported now, by the thread configuring the client, not by the worker at its first
        # send: a process forked while the worker was importing it would find a half-made
        # module in the child, and no send there could ever work.
        import requests  # noqa: F401
        import requests.utils  # noqa: F401

    def lane(self, event: bytes) -> str:
        return AI_LANE if is_ai_event(event) else EVENTS_LANE

    def _get_session(self) -> requests.Session:
        if self._session is None:
            # Imported on first use: `import posthog_llm` stays light for local-store users.
            import requests

            session = requests.Session()
            session.headers["User-Agent"] = _USER_AGENT
            # requests reads the proxy and CA-bundle environment variables (and ~/.netrc) again
            # for every request, ~0.3 ms of a ~1.2 ms request: read them once, here, and each
            # origin's proxies once (`_new_transport`).
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

    def _transport_for(self, url: str) -> ConnectionPool | _Proxied:
        """How to reach `url`'s origin (ValueError when it is not an http(s) URL)."""
        origin = url_origin(url)
        transport = self._transports.get(origin)
        if transport is None:
            # The first two requests may start together (the worker and its helper thread).
            with self._transport_lock:
                transport = self._transports.get(origin)
                if transport is None:
                    if len(self._transports) > _MAX_REDIRECT_ORIGINS:
                        old = self._transports.pop(
                            next(iter(self._transports.keys() - {self._home}))
                        )
                        if isinstance(old, ConnectionPool):
                            old.close()
                    transport = self._transports[origin] = self._new_transport(url)
        return transport

    def _new_transport(self, url: str) -> ConnectionPool | _Proxied:
        """Our own connections, or the proxies to use when one applies to `url` (read as
        requests reads the environment: `HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`, `NO_PROXY`)."""
        # Imported on first use: `import posthog_llm` stays light for local-store users.
        import requests

        proxies = requests.utils.get_environ_proxies(url)
        if requests.utils.select_proxy(url, proxies) is not None:
            return _Proxied(proxies)
        return ConnectionPool(url, user_agent=_USER_AGENT)  # it reads the origin only

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
        status, retry_after, text = self._post(url, data, headers, timeout)
        if url == self.ai_url != self.url:
            if status != 404:
                self._ai_intake_missing = 0
            else:
                # A PostHog from before the AI intake: this batch goes where all events go,
                # and so do all `$ai_*` events once it says so three times in a row (a single
                # 404, from a proxy in the middle of a deploy, does not decide it).
                self._ai_intake_missing += 1
                if self._ai_intake_missing >= _AI_INTAKE_MISSES:
                    log.warning(
                        "posthog-llm: %s has no AI intake (HTTP 404 from %s); sending $ai_* "
                        "events to %s instead",
                        self.description,
                        _split_userinfo(url)[0],
                        _split_userinfo(self.url)[0],
                    )
                    self.ai_url = self.url
                url = self.url
                status, retry_after, text = self._post(url, data, headers, timeout)
        if 200 <= status < 300:
            return
        detail = f"HTTP {status} from {_split_userinfo(url)[0]}: {text[:200]!r}"
        if status == 413:
            raise BatchTooLargeError(detail)
        if status in _RETRY_STATUSES or status >= 500:
            raise RetryableError(detail, retry_after=_retry_after(retry_after))
        raise PermanentError(detail, status=status)

    def _post(
        self, url: str, data: bytes, headers: dict[str, str], timeout: float
    ) -> tuple[int, str | None, str]:
        """POST, following redirects with the same POST and body (a host that moved, or http
        sent on to https): requests would turn a 301 or 302 into a GET and lose the batch.
        Each hop goes the way its origin is reached: directly, or through its proxy."""
        if self._basic_auth is not None:
            headers = {**headers, "Authorization": self._basic_auth}
        try:
            transport = self._transport_for(url)
        except ValueError as exc:
            raise PermanentError(f"cannot send to {_split_userinfo(url)[0]}: {exc}") from None
        for _ in range(_MAX_REDIRECTS + 1):
            if isinstance(transport, ConnectionPool):
                status, answer = self._post_direct(transport, url, data, headers, timeout)
            else:
                status, answer = self._post_with_requests(transport, url, data, headers, timeout)
            location = answer.location
            if status not in _REDIRECTS or not location:
                return status, answer.retry_after, answer.text
            try:
                target = urljoin(url, location)
                transport = self._transport_for(target)
            except ValueError:  # not http(s), or not a URL: not followed
                return status, None, f"redirected to {location!r}"
            if not _same_host(self._home, url_origin(target)):
                # The credentials are for the configured host only (an http -> https hop on
                # it keeps them, as requests does).
                headers = {k: v for k, v in headers.items() if k != "Authorization"}
            url = target
        return status, None, f"more than {_MAX_REDIRECTS} redirects"

    @staticmethod
    def _post_direct(
        pool: ConnectionPool, url: str, data: bytes, headers: dict[str, str], timeout: float
    ) -> tuple[int, _Answer]:
        try:
            # The host may carry a path (a self-hosted PostHog behind a prefix).
            status, answer, content = pool.post(_path_of(url), data, headers, timeout)
        except NETWORK_ERRORS as exc:
            # The connection may be half-dead: the next try starts a fresh one.
            pool.close()
            raise RetryableError(f"{type(exc).__name__}: {exc}") from None
        except (ValueError, UnicodeError) as exc:  # a URL http.client cannot send
            raise PermanentError(f"cannot send to {_split_userinfo(url)[0]}: {exc}") from None
        return status, _Answer(
            answer.get("Location"),
            answer.get("Retry-After"),
            content[:400].decode("utf-8", "replace"),
        )

    def _post_with_requests(
        self, proxied: _Proxied, url: str, data: bytes, headers: dict[str, str], timeout: float
    ) -> tuple[int, _Answer]:
        import requests

        try:
            response: Any = self._get_session().post(
                url,
                data=data,
                headers=headers,
                timeout=timeout,
                proxies=proxied.proxies,
                allow_redirects=False,  # followed by `_post`, with the same POST
            )
        except requests.RequestException as exc:
            # The connection may be half-dead: start a fresh one on the next try. Closing the
            # session closes its idle connections only; one the other request in flight is
            # using is closed when that request hands it back.
            self._close_session()
            raise RetryableError(f"{type(exc).__name__}: {exc}") from None
        return response.status_code, _Answer(
            response.headers.get("Location"),
            response.headers.get("Retry-After"),
            response.text[:400],
        )

    def after_fork_in_child(self) -> None:
        """A forked child makes its own connections: the parent's stay the parent's (two
        processes writing requests on one keep-alive socket would mix their answers)."""
        self._session = None
        self._transport_lock = threading.Lock()
        for transport in self._transports.values():
            if isinstance(transport, ConnectionPool):
                transport.forget()

    def close(self) -> None:
        for transport in list(self._transports.values()):
            if isinstance(transport, ConnectionPool):
                transport.close()
        self._close_session()

    def _close_session(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            try:
                session.close()
            except Exception:
                pass


class _Proxied:
    """An origin reached through a proxy, by the requests session."""

    __slots__ = ("proxies",)

    def __init__(self, proxies: dict[str, str]) -> None:
        self.proxies = proxies


class _Answer(NamedTuple):
    location: str | None
    retry_after: str | None
    text: str
