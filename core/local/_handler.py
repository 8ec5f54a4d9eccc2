"""The HTTP side of `posthog-llm serve`: one request handler that routes SDK traffic to the
collector and GETs to the viewer, and the threading server it runs in.

SDK paths (capture, flags, remote config) answer CORS requests from loopback origins and those
given with --cors-origin; viewer paths check the Host name on loopback and the viewer password
off it (see `_auth`). Capture bodies are decoded within a shared memory budget (`_budget`).
"""

from __future__ import annotations

import json
import math
import socket
import socketserver
import sqlite3
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from .._version import __version__
from ._api import answer
from ._app import App
from ._auth import host_allowed, viewer_secret
from ._budget import Reservation
from ._ingest import BadRequest
from ._otlp import OTLP_PATHS, receive_otlp
from ._static import PAGE_HEADERS, is_page

__all__ = ["CAPTURE_PATHS", "FLAGS_PATHS", "Handler", "Server", "Server6", "is_sdk_path"]

# The paths PostHog's SDKs post events to, without their trailing slash.
CAPTURE_PATHS = frozenset({"/batch", "/capture", "/e", "/track", "/i/v0/e", "/i/v0/ai/batch"})
# posthog-js asks for feature flags and its remote config on load; empty answers keep it quiet.
FLAGS_PATHS = frozenset({"/decide", "/flags"})
_DRAIN_LIMIT = 64 * 1024 * 1024
# Longest chunk-size or trailer line read from a chunked body.
_CHUNK_LINE_LIMIT = 1024


def is_sdk_path(path: str) -> bool:
    return path in CAPTURE_PATHS or path in FLAGS_PATHS or path.startswith("/array/")


def _flags_answer() -> dict[str, Any]:
    return {
        "featureFlags": {},
        "featureFlagPayloads": {},
        "flags": {},
        "errorsWhileComputingFlags": False,
        "sessionRecording": False,
        "supportedCompression": ["gzip", "gzip-js"],
        "autocapture_opt_out": True,
        "capturePerformance": False,
        "surveys": False,
        "heatmaps": False,
        "siteApps": [],
    }


class Handler(BaseHTTPRequestHandler):
    server_version = f"posthog-llm/{__version__}"
    protocol_version = "HTTP/1.1"
    timeout = 120  # idle keep-alive connections end instead of holding a thread forever

    @property
    def app(self) -> App:
        app: App = self.server.app  # type: ignore[attr-defined]
        return app

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # http.server's access log is noise; capture requests are logged in _capture

    # -- plumbing ------------------------------------------------------------------------------

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, value: Any, headers: dict[str, str] | None = None) -> None:
        try:
            body = json.dumps(
                value, ensure_ascii=False, separators=(",", ":"), default=str, allow_nan=False
            )
        except ValueError:  # a sum that overflowed to infinity: the browser's JSON has none
            body = json.dumps(
                _finite(value), ensure_ascii=False, separators=(",", ":"), default=str
            )
        extra = {"Cache-Control": "no-store"}
        extra.update(headers or {})
        self._send(status, body.encode("utf-8"), "application/json; charset=utf-8", extra)

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        # PostHog's error shape: posthog-python shows `detail` in its APIError.
        self._json(status, {"type": "validation_error", "detail": message}, headers)

    def _cors(self) -> dict[str, str]:
        origin = self.headers.get("Origin")
        if origin is not None and not self.app.origin_allowed(origin):
            return {"Vary": "Origin"}  # no CORS grant: the browser keeps the answer from the page
        return {
            "Access-Control-Allow-Origin": origin or "*",
            "Access-Control-Allow-Credentials": "true",
            "Vary": "Origin",
        }

    def _write_allowed(self) -> bool:
        """Whether this capture request may store events, as far as browsers are concerned.

        A web page can post to localhost without any CORS preflight (a text/plain POST, an
        image's GET), so the page's Origin is checked on the request itself: loopback pages
        and --cors-origin ones only. Servers and SDKs outside browsers send no Origin.
        """
        origin = self.headers.get("Origin")
        if origin is not None:
            return self.app.origin_allowed(origin)
        site = (self.headers.get("Sec-Fetch-Site") or "").lower()
        return site != "cross-site" or "*" in self.app.cors_origins

    def write_refusal(self, what: str) -> str | None:
        """Why a cross-origin page may not post `what` here, or None when it may."""
        if self._write_allowed():
            return None
        origin = self.headers.get("Origin") or "a cross-site page"
        return (
            f"{what} from {origin!r} are not accepted: only pages on loopback origins may post "
            "here unless the collector runs with --cors-origin ORIGIN"
        )

    def _route(self) -> tuple[str, dict[str, str]]:
        parts = urlsplit(self.path)
        path = "/" + parts.path.strip("/")
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        return path, query

    def _read_body(self, reservation: Reservation | None = None) -> bytes | None:
        """The request body, or None after answering 400/413/503 for it."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked(reservation)
        try:
            length = int(self.headers.get("Content-Length") or 0)
            if length < 0:
                raise ValueError
        except ValueError:
            self.close_connection = True
            self._error(400, "invalid Content-Length")
            return None
        limit = self.app.max_body_bytes
        if length > limit:
            self._drain(length)
            self._error(413, f"body of {length} bytes is larger than the {limit} byte limit")
            return None
        if reservation is not None:
            try:
                reservation.grow(length)  # before reading: 40 clients cannot flood memory
            except BadRequest as exc:
                self._drain(length)
                extra = {"Retry-After": "1"} if exc.status == 503 else {}
                self._error(exc.status, str(exc), {**self._cors(), **extra})
                return None
        return self.rfile.read(length)

    def _read_chunked(self, reservation: Reservation | None) -> bytes | None:
        """A body sent in chunks (no Content-Length), read up to the same limit: 413 past it."""
        limit = self.app.max_body_bytes
        parts: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(_CHUNK_LINE_LIMIT)
            try:
                digits = line.split(b";", 1)[0].strip()
                if not digits or digits.strip(b"0123456789abcdefABCDEF"):
                    raise ValueError  # hex digits only: no sign, prefix or underscores
                size = int(digits, 16)
            except ValueError:
                self.close_connection = True
                self._error(400, "invalid chunked body")
                return None
            if size == 0:
                break
            total += size
            if total > limit:
                self.close_connection = True  # the rest of the body is not read
                self._error(413, f"chunked body larger than the {limit} byte limit")
                return None
            if reservation is not None:
                try:
                    reservation.grow(size)
                except BadRequest as exc:
                    self.close_connection = True
                    extra = {"Retry-After": "1"} if exc.status == 503 else {}
                    self._error(exc.status, str(exc), {**self._cors(), **extra})
                    return None
            chunk = self.rfile.read(size)
            if len(chunk) < size or self.rfile.readline(_CHUNK_LINE_LIMIT).strip():
                self.close_connection = True
                self._error(400, "invalid chunked body")
                return None
            parts.append(chunk)
        # Trailers, up to the empty line that ends the body.
        for _ in range(100):
            if not self.rfile.readline(_CHUNK_LINE_LIMIT).strip():
                return b"".join(parts)
        self.close_connection = True  # where the next request starts is not known
        self._error(400, "too many trailer lines in a chunked body")
        return None

    def _drain(self, length: int) -> None:
        # Reading the refused body lets the client see the 413 instead of a connection reset.
        if length > _DRAIN_LIMIT:
            self.close_connection = True
            return
        remaining = length
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 1 << 16))
            if not chunk:
                break
            remaining -= len(chunk)

    def _handle(self, method: str) -> None:
        try:
            path, query = self._route()
            if path in OTLP_PATHS:  # OpenTelemetry traces (OTLP/HTTP): see _otlp
                receive_otlp(self, method)
                return
            if is_sdk_path(path):
                self._capture_side(method, path, query)
            elif method in ("GET", "HEAD"):
                self._viewer_side(path, query)
            else:
                self._read_body()
                self._error(404, f"no {method} endpoint at {path}")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:  # the server keeps running whatever one request does
            self.close_connection = True
            if self.app.log:
                self.app.log(f"posthog-llm serve: internal error on {self.path}: {exc!r}")
            try:
                self._error(500, f"internal error: {type(exc).__name__}: {exc}")
            except OSError:
                pass

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def do_GET(self) -> None:  # noqa: N802
        self._handle("GET")

    def do_HEAD(self) -> None:  # noqa: N802
        self._handle("HEAD")

    def do_OPTIONS(self) -> None:  # noqa: N802
        path, _ = self._route()
        if not is_sdk_path(path):
            self._error(404, f"no endpoint at {path}")
            return
        origin = self.headers.get("Origin")
        if origin is not None and not self.app.origin_allowed(origin):
            self._error(
                403, f"origin {origin!r} may not send events here (start with --cors-origin)"
            )
            return
        headers = self._cors()
        headers["Access-Control-Allow-Methods"] = "POST, GET, OPTIONS"
        headers["Access-Control-Allow-Headers"] = (
            self.headers.get("Access-Control-Request-Headers") or "Content-Type"
        )
        headers["Access-Control-Max-Age"] = "86400"
        self._send(204, b"", "text/plain", headers)

    # -- capture -------------------------------------------------------------------------------

    def _capture_side(self, method: str, path: str, query: dict[str, str]) -> None:
        reservation = Reservation(self.app.budget)
        try:
            self._capture(method, path, query, reservation)
        finally:
            reservation.release()

    def _capture(
        self, method: str, path: str, query: dict[str, str], reservation: Reservation
    ) -> None:
        if method == "POST":
            raw = self._read_body(reservation)
            if raw is None:
                return
        elif "data" in query:  # posthog-js's GET fallback: ?data=<base64 JSON>
            raw = query["data"].encode("utf-8")
        else:
            raw = b""
        if path in FLAGS_PATHS:
            self._json(200, _flags_answer(), self._cors())
            return
        if path.startswith("/array/"):
            self._remote_config(path)
            return
        if method not in ("GET", "POST"):
            self._error(405, f"{path} accepts POST")
            return
        refusal = self.write_refusal("events")
        if refusal is not None:
            if self.app.log:
                self.app.log(f"{method} {path} -> 403: {refusal}")
            self._error(403, refusal)
            return
        try:
            count = self.app.ingest(
                raw, headers=self.headers, query=query, reserve=reservation.grow
            )
        except BadRequest as exc:
            if self.app.log:
                self.app.log(f"{method} {path} -> {exc.status}: {exc}")
            extra = {"Retry-After": "1"} if exc.status == 503 else {}
            self._error(exc.status, str(exc), {**self._cors(), **extra})
            return
        except sqlite3.OperationalError as exc:
            self._error(503, f"the local store is busy: {exc}", {"Retry-After": "1"})
            return
        if self.app.log:
            self.app.log(f"{method} {path} -> 200: stored {count} event{'s' * (count != 1)}")
        self._json(200, {"status": 1}, self._cors())

    def _remote_config(self, path: str) -> None:
        """posthog-js's remote config: `/array/<token>/config` (JSON) or `config.js` (script)."""
        parts = path.split("/")
        if len(parts) != 4 or parts[3] not in ("config", "config.js"):
            self._error(404, f"no file {path}", self._cors())
            return
        if parts[3] == "config":
            self._json(200, _flags_answer(), self._cors())
            return
        # JSON is valid JavaScript; escaping "<" keeps a token from closing a script element.
        token = json.dumps(unquote(parts[2])).replace("<", "\\u003c")
        config = json.dumps({"config": _flags_answer(), "siteApps": []})
        script = (
            "(function(){var c=window._POSTHOG_REMOTE_CONFIG=window._POSTHOG_REMOTE_CONFIG||{};"
            f"c[{token}]={config};}})();\n"
        )
        headers = self._cors()
        headers["Cache-Control"] = "no-store"
        self._send(200, script.encode("utf-8"), "text/javascript; charset=utf-8", headers)

    # -- viewer --------------------------------------------------------------------------------

    def _viewer_allowed(self) -> bool:
        app = self.app
        if app.viewer_password is not None:
            # The stored prompts are behind the viewer password (HTTP Basic or Bearer), never
            # the project api key: that one is public, in every posthog-js snippet.
            secret = viewer_secret(self.headers.get("Authorization") or "")
            if not app.viewer_ok(secret):
                self._error(
                    401,
                    "the viewer needs its password (any user name): the one `posthog-llm serve` "
                    "printed at start, or --viewer-password / POSTHOG_LLM_VIEWER_PASSWORD",
                    {"WWW-Authenticate": 'Basic realm="posthog-llm", charset="UTF-8"'},
                )
                return False
            if app.remote:
                return True
        # On loopback, refuse foreign Host names: a DNS-rebinding page must not read the store.
        host = (self.headers.get("Host") or "").strip().lower()
        if not host_allowed(host, app.bound_host):
            self._error(403, f"unexpected Host {host!r}; open the viewer at a localhost address")
            return False
        return True

    def _viewer_side(self, path: str, query: dict[str, str]) -> None:
        if path == "/favicon.ico":
            self._send(204, b"", "image/x-icon")
            return
        if not self._viewer_allowed():
            return
        app = self.app
        if is_page(path):
            body, kind = app.static["index.html"]
            self._send(200, body, kind, PAGE_HEADERS)
            return
        if path.startswith("/static/"):
            entry = app.static.get(path[len("/static/") :])
            if entry is None:
                self._error(404, f"no file {path}")
                return
            self._send(200, entry[0], entry[1], {"Cache-Control": "no-cache"})
            return
        try:
            self._json(200, answer(app.reader, path, query, remote=app.remote))
        except BadRequest as exc:
            self._error(exc.status, str(exc))


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default 5 resets connections when 40 clients send at once
    app: App

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves a fully qualified name (a DNS query); not needed here.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)


class Server6(Server):
    address_family = socket.AF_INET6


def _finite(value: Any) -> Any:
    """`value` with NaN and infinite floats as None (JSON has no such numbers)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value
