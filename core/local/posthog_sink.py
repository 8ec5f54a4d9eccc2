"""A loopback HTTP server that speaks PostHog's capture API, and can misbehave on purpose.

The one receiver the tests and the benchmarks use: it records (or only counts) what it is sent
and fails requests on demand, so delivery can be tested against a real socket.

>>> from posthog_llm.local.posthog_sink import PostHogSink
>>> sink = PostHogSink()
>>> sink.host.startswith("http://127.0.0.1:")
True
>>> sink.close()
"""

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

__all__ = ["PostHogSink", "Action"]

# "ok", "drop" (close without answering), ("stall", seconds[, status]) (sleep, then answer 200, or
# `status`, without recording), ("status", code[, headers]) and "store_then_drop" (record, then close without
# answering: the client retries what was stored).
Action = Any


class PostHogSink:
    """Records accepted events. `behaviour(request_number) -> action` picks a failure per request.

    `rejects(event) -> bool` answers 400 for a whole batch holding any such event, as PostHog's
    capture does for an invalid event. Paths: `/batch/`, `/capture/`, `/e/`, `/i/v0/e/` and
    `/i/v0/ai/batch/` (PostHog's AI intake) all take the same bodies; `requests[i]["path"]`
    tells which one was used.

    `keep=False` keeps no events or request records, only the counters `event_count`,
    `request_count` and `bytes` (benchmarks); `count=False` then skips parsing bodies too.
    `on_batch(events, stored_then_dropped)` sees every accepted batch. `delay` answers every
    request late (a slow endpoint). `port` binds a fixed port, so `down()`/`up()` can take the
    endpoint away (connections refused) and bring it back.
    """

    def __init__(
        self,
        *,
        keep: bool = True,
        count: bool = True,
        delay: float = 0.0,
        port: int = 0,
        behaviour: Callable[[int], Action] | None = None,
        on_batch: Callable[[list[dict[str, Any]], bool], None] | None = None,
    ) -> None:
        self.events: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []
        self.behaviour: Callable[[int], Action] = behaviour or (lambda n: "ok")
        self.rejects: Callable[[dict[str, Any]], bool] | None = None
        self.on_batch = on_batch
        self.keep = keep
        self.count = count
        self.delay = delay
        self.event_count = 0
        self.request_count = 0
        self.bytes = 0
        self._lock = threading.Lock()
        if not port:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
        self.port = port
        self.host = f"http://127.0.0.1:{port}"
        self.server: ThreadingHTTPServer | None = None
        self.up()

    @property
    def url(self) -> str:
        return self.host

    # -- the endpoint ----------------------------------------------------------------------------

    def up(self) -> None:
        """Listen (again) on the sink's port."""
        if self.server is not None:
            return
        server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        server.daemon_threads = True
        self.server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()

    def down(self) -> None:
        """The endpoint goes away: connections are refused until `up()`."""
        server, self.server = self.server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    close = down

    def _handler(self) -> type[BaseHTTPRequestHandler]:
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
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with sink._lock:
                    number = sink.request_count
                    sink.request_count += 1
                    sink.bytes += len(raw)
                    if sink.keep:
                        sink.requests.append(
                            {
                                "path": self.path,
                                "headers": dict(self.headers),
                                "bytes": len(raw),
                                "client": self.client_address,  # which connection
                            }
                        )
                action = sink.behaviour(number)
                if sink.delay:
                    time.sleep(sink.delay)
                if action == "drop":
                    return self._drop()
                if isinstance(action, tuple) and action[0] == "stall":
                    time.sleep(action[1])
                    return self._answer(action[2] if len(action) > 2 else 200, {})
                if isinstance(action, tuple) and action[0] == "status":
                    return self._answer(action[1], action[2] if len(action) > 2 else {})
                if not sink.keep and not sink.count and sink.on_batch is None:
                    return self._answer(200, {}, b'{"status":1}')
                if self.headers.get("Content-Type") == "application/x-protobuf":
                    # OTLP from an OpenTelemetry exporter: taken as PostHog's `/i/v0/ai/otel`
                    # takes it (counted in requests and bytes, not decoded into events).
                    return self._answer(200, {})
                try:
                    body = sink.decode(raw, self.headers)
                except Exception as exc:  # a bad body is a 400, as PostHog answers
                    return self._answer(400, {}, str(exc).encode())
                batch = body.get("batch") if isinstance(body, dict) else None
                if batch is None:
                    batch = [body]
                rejects = sink.rejects
                if rejects is not None and any(rejects(e) for e in batch):
                    return self._answer(400, {}, b'{"error":"invalid event"}')
                dropped = action == "store_then_drop"
                with sink._lock:
                    sink.event_count += len(batch)
                    if sink.keep:
                        for event in batch:
                            event.setdefault("api_key", body.get("api_key"))
                            sink.events.append(event)
                if sink.on_batch is not None:
                    sink.on_batch(batch, dropped)
                if dropped:
                    return self._drop()
                self._answer(200, {}, b'{"status":1}')

            do_PUT = do_POST

            def _drop(self) -> None:
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

            def _answer(self, code: int, headers: dict[str, str], body: bytes = b"{}") -> None:
                self.send_response(code)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler

    # -- reading what arrived --------------------------------------------------------------------

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
