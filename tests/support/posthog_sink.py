"""A real loopback HTTP server that speaks PostHog's capture API, and can misbehave on purpose."""

from __future__ import annotations

import base64
import gzip
import json
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class PostHogSink:
    """Records accepted events. `behaviour(request_number) -> action` picks a failure per request.

    Actions: "ok", ("status", code, headers), "drop" (close without answering),
    ("stall", seconds) (sleep, then answer 200 without recording), "store_then_drop" (record the
    events, then close without answering: the client retries what was stored).

    `rejects(event) -> bool` answers 400 for a whole batch holding any such event, as PostHog's
    capture does for an invalid event. Paths: `/batch/`, `/capture/`, `/e/`, `/i/v0/e/` and
    `/i/v0/ai/batch/` (PostHog's AI intake) all take the same bodies; `requests[i]["path"]`
    tells which one was used.
    """

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []
        self.behaviour: Callable[[int], Any] = lambda n: "ok"
        self.rejects: Callable[[dict[str, Any]], bool] | None = None
        self._lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                # Answer without waiting on Nagle + delayed ACK, as production servers do.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                with sink._lock:
                    number = len(sink.requests)
                    sink.requests.append(
                        {"path": self.path, "headers": dict(self.headers), "bytes": len(raw)}
                    )
                action = sink.behaviour(number)
                if action == "drop":
                    self.close_connection = True
                    try:
                        self.connection.shutdown(2)
                    except OSError:
                        pass
                    return
                if isinstance(action, tuple) and action[0] == "stall":
                    time.sleep(action[1])
                    self._answer(200, {})
                    return
                if isinstance(action, tuple) and action[0] == "status":
                    self._answer(action[1], action[2] if len(action) > 2 else {})
                    return
                try:
                    body = sink.decode(raw, self.headers)
                except Exception as exc:  # a bad body is a 400, as PostHog answers
                    self._answer(400, {}, str(exc).encode())
                    return
                batch = body.get("batch") if isinstance(body, dict) else None
                if batch is None:
                    batch = [body]
                rejects = sink.rejects
                if rejects is not None and any(rejects(e) for e in batch):
                    self._answer(400, {}, b'{"error":"invalid event"}')
                    return
                with sink._lock:
                    for event in batch:
                        event.setdefault("api_key", body.get("api_key"))
                        sink.events.append(event)
                if action == "store_then_drop":
                    self.close_connection = True
                    try:
                        self.connection.shutdown(2)
                    except OSError:
                        pass
                    return
                self._answer(200, {}, b'{"status":1}')

            def _answer(self, code: int, headers: dict[str, str], body: bytes = b"{}") -> None:
                self.send_response(code)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.host = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    @staticmethod
    def decode(raw: bytes, headers: Any) -> Any:
        if headers.get("Content-Encoding") == "gzip" or raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        if (headers.get("Content-Type") or "").startswith("application/x-www-form-urlencoded"):
            form = urllib.parse.parse_qs(raw.decode())
            raw = base64.b64decode(form["data"][0])
        return json.loads(raw)

    def named(self, event: str) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.events if e.get("event") == event]

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.events) >= count:
                    return list(self.events)
            time.sleep(0.02)
        with self._lock:
            return list(self.events)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
