"""Keep-alive HTTP(S) connections to one origin, on the standard library's `http.client`.

The PostHog destination's requests go through these when no proxy applies to the host.
`requests` spends ~0.4 ms of CPU on each POST (its session, adapter and hook machinery);
this spends ~0.07 ms. That CPU is taken from the application's threads (the GIL), once per
batch. With a proxy configured, the destination keeps using `requests`, which knows proxies.

>>> pool = ConnectionPool("http://127.0.0.1:8000", user_agent="posthog-llm")
>>> # status, retry_after, body = pool.post("/batch/", b"{}", {"Content-Type": "application/json"}, 10)
"""

from __future__ import annotations

import http.client
import math
import os
import select
import socket
import ssl
import threading
import time
from typing import Any
from urllib.parse import urlsplit

__all__ = ["ConnectionPool", "NETWORK_ERRORS", "url_origin"]

# What a failed exchange raises: socket errors, timeouts and TLS errors are OSErrors; a
# malformed or cut-short answer is an HTTPException.
NETWORK_ERRORS = (OSError, http.client.HTTPException)

# A connection the server closed while it sat idle fails on its next request in one of these
# ways, before any answer: that request is sent again once, on a new connection.
_STALE = (
    http.client.RemoteDisconnected,
    ConnectionResetError,
    BrokenPipeError,
    ssl.SSLEOFError,  # a TLS connection closed without a close_notify
    ssl.SSLZeroReturnError,
)

# Two requests are in flight at most (the sender's worker and its second-request helper).
_MAX_IDLE = 2


_DEFAULT_PORTS = {"http": 80, "https": 443}


def url_origin(url: str) -> tuple[str, str | None, int | None]:
    """Scheme, host and port (the scheme's own when none is written) of `url`: what tells two
    URLs apart as origins, their userinfo and path aside. A port that is not a number raises
    ValueError."""
    parts = urlsplit(url)
    return parts.scheme, parts.hostname, parts.port or _DEFAULT_PORTS.get(parts.scheme)


def tls_context() -> ssl.SSLContext:
    """Verification as `requests` does it: `REQUESTS_CA_BUNDLE` or `CURL_CA_BUNDLE` (a file or
    a directory), else certifi's bundle, else the system's certificates."""
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        if os.path.isdir(bundle):
            return ssl.create_default_context(capath=bundle)
        return ssl.create_default_context(cafile=bundle)
    try:
        import certifi
    except ImportError:
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=certifi.where())


class ConnectionPool:
    """Up to two idle keep-alive connections to `origin` (scheme, host and port), thread safe.

    `post` takes an idle connection (one the server has closed is dropped unused), sends, reads
    the whole answer and gives the connection back unless either side asked to close it.
    """

    def __init__(self, origin: str, *, user_agent: str) -> None:
        scheme, host, port = url_origin(origin)
        if scheme not in ("http", "https") or not host or port is None:
            raise ValueError(f"not an http(s) URL: {origin!r}")
        self.https = scheme == "https"
        self.host = host
        self.port = port
        self.user_agent = user_agent
        self._context: ssl.SSLContext | None = None
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._generation = 0

    def _new(self, timeout: float) -> http.client.HTTPConnection:
        if self.https:
            if self._context is None:
                self._context = tls_context()
            return http.client.HTTPSConnection(
                self.host, self.port, timeout=timeout, context=self._context
            )
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def _take(self, timeout: float) -> tuple[http.client.HTTPConnection, bool, int]:
        """An idle connection that is still open, or a new one; and whether it was reused."""
        while True:
            with self._lock:
                generation = self._generation
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                return self._new(timeout), False, generation
            sock = conn.sock
            if sock is not None and not _closed_by_peer(sock):
                sock.settimeout(timeout)
                return conn, True, generation
            conn.close()

    def _give_back(self, conn: http.client.HTTPConnection, generation: int) -> None:
        with self._lock:
            if generation == self._generation and len(self._idle) < _MAX_IDLE:
                self._idle.append(conn)
                return
        conn.close()

    def post(
        self, path: str, body: bytes, headers: dict[str, str], timeout: float
    ) -> tuple[int, http.client.HTTPMessage, bytes]:
        """POST `body`; the answer's status, headers and body.

        `timeout` bounds each wait for the server; the whole exchange is bounded too (twice
        that, plus the body's time at 64 KB/s), so an answer trickled a byte at a time cannot
        hold the sender. Raises one of `NETWORK_ERRORS` when no answer came.
        """
        headers = {"User-Agent": self.user_agent, **headers}
        conn, reused, generation = self._take(timeout)
        watch = _watchdog.watch(2 * timeout + len(body) / 65_536)
        try:
            try:
                _watchdog.connected(watch, conn)
                response = _exchange(conn, path, body, headers)
            except _STALE:
                if not reused or watch.expired:
                    raise
                # Closed by the server between our check and the request: once more, on a
                # new connection.
                conn.close()
                conn = self._new(timeout)
                _watchdog.connected(watch, conn)
                response = _exchange(conn, path, body, headers)
            content = _body(response)
        except BaseException as exc:
            conn.close()
            if watch.expired and isinstance(exc, Exception):
                raise TimeoutError(
                    f"no whole answer within {watch.seconds:.3g} s ({type(exc).__name__})"
                ) from None
            raise
        finally:
            _watchdog.release(watch)
        if watch.expired:
            # Cut short: what was read may look whole (headers ended by the cut, a body read
            # to the end of the connection), so it is never taken for the server's answer.
            conn.close()
            raise TimeoutError(f"no whole answer within {watch.seconds:.3g} s")
        if 100 <= response.status < 200:
            # An interim answer (103 Early Hints) that http.client hands over as if final: the
            # final answer is still to come on this connection, which no request may reuse.
            conn.close()
            raise http.client.HTTPException(f"interim answer {response.status} with no final one")
        if response.will_close:
            conn.close()
        else:
            self._give_back(conn, generation)
        return response.status, response.headers, content

    def close(self) -> None:
        """Close the idle connections; one in use is closed when its request is over."""
        with self._lock:
            idle, self._idle = self._idle, []
            self._generation += 1
        for conn in idle:
            try:
                conn.close()
            except Exception:
                pass

    def forget(self) -> None:
        """In a forked child: drop the parent's connections without touching their sockets."""
        self._idle = []
        self._lock = threading.Lock()
        self._generation += 1


class _Watch:
    __slots__ = ("sock", "deadline", "seconds", "expired")

    def __init__(self, seconds: float) -> None:
        self.sock: socket.socket | None = None  # once connected
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds
        self.expired = False


class _Watchdog:
    """One thread that cuts a request's connection at its deadline.

    A socket timeout bounds each wait for the server, not the exchange: a server (or a
    middlebox) that sends a byte now and then would hold the sender, and every event queued
    behind it, for as long as it likes. The socket is kept from the moment it connects:
    `http.client` lets go of it once an answer says the connection closes, and reads on.
    """

    def __init__(self) -> None:
        self._after_fork()

    def _after_fork(self) -> None:
        # In a forked child: the parent's lock may have been held at fork time, and its
        # thread does not exist here.
        self._cond = threading.Condition(threading.Lock())
        self._watches: set[_Watch] = set()
        self._pid = -1  # no thread in this process yet
        # When the thread wakes next on its own (infinity: it waits for a first watch). A new
        # watch wakes it only when due sooner: most are not (one timeout for all requests),
        # and a wake-up per request would cost the application's threads CPU for nothing.
        self._next_wake = math.inf

    def watch(self, seconds: float) -> _Watch:
        watch = _Watch(seconds)
        with self._cond:
            if self._pid != os.getpid():  # first use (or a fork that skipped the hook)
                self._pid = os.getpid()
                self._watches = set()
                threading.Thread(
                    target=self._run, name="posthog-llm-deadlines", daemon=True
                ).start()
            self._watches.add(watch)
            if watch.deadline < self._next_wake:
                self._next_wake = watch.deadline
                self._cond.notify()
        return watch

    def connected(self, watch: _Watch, conn: http.client.HTTPConnection) -> None:
        """Connect `conn` (if it is not) and watch its socket; TimeoutError if the deadline
        passed while connecting (a name lookup no socket timeout bounds)."""
        if conn.sock is None:
            conn.connect()
        with self._cond:
            if watch.expired:
                raise TimeoutError(f"not connected within {watch.seconds:.3g} s")
            watch.sock = conn.sock

    def release(self, watch: _Watch) -> None:
        with self._cond:
            self._watches.discard(watch)

    def _run(self) -> None:
        cond = self._cond
        with cond:
            while True:
                if not self._watches:
                    self._next_wake = math.inf
                    cond.wait()
                    continue
                now = time.monotonic()
                for watch in [w for w in self._watches if w.deadline <= now]:
                    self._watches.discard(watch)
                    watch.expired = True
                    if watch.sock is None:
                        continue  # still connecting: `connected` refuses to go on
                    try:
                        # The plain socket's shutdown, also under TLS: the reading thread gets
                        # an error at once, and its SSL object stays as it is.
                        socket.socket.shutdown(watch.sock, socket.SHUT_RDWR)
                    except (OSError, TypeError):
                        pass
                if self._watches:
                    self._next_wake = min(w.deadline for w in self._watches)
                    cond.wait(max(0.0, self._next_wake - now))


_watchdog = _Watchdog()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_watchdog._after_fork)


def _exchange(
    conn: http.client.HTTPConnection, path: str, body: bytes, headers: dict[str, str]
) -> http.client.HTTPResponse:
    try:
        conn.request("POST", path, body=body, headers=headers)
    except (BrokenPipeError, ConnectionResetError, ssl.SSLEOFError) as exc:
        # The server may have answered before reading the whole body and closed (a proxy's
        # 413 from Content-Length alone): its answer, when there is one, is the outcome.
        try:
            return _answer(conn)
        except Exception:
            raise exc from None
    return _answer(conn)


def _answer(conn: http.client.HTTPConnection) -> http.client.HTTPResponse:
    """The answer's status and headers (its body is read by the caller, through `_body`)."""
    try:
        return conn.getresponse()
    except (ValueError, OverflowError) as exc:
        raise _malformed(exc) from None


def _body(response: http.client.HTTPResponse) -> bytes:
    try:
        return response.read()
    except (ValueError, OverflowError) as exc:
        raise _malformed(exc) from None


def _malformed(exc: Exception) -> http.client.HTTPException:
    # What http.client lets through from an answer it cannot parse (a chunk size too large
    # for an int): the server's fault, like a cut-short answer, so the batch is tried again
    # rather than refused as if the request could never be sent.
    return http.client.HTTPException(f"malformed answer ({type(exc).__name__}: {exc})")


def _closed_by_peer(sock: Any) -> bool:
    """Whether an idle keep-alive socket is readable: the server closed it (or broke the
    protocol); either way it cannot carry another request. `poll` where there is one: `select`
    refuses descriptors above 1024, common in busy servers."""
    try:
        if _poll is not None:
            poller = _poll()
            poller.register(sock, select.POLLIN)
            return bool(poller.poll(0))
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


_poll = getattr(select, "poll", None)
