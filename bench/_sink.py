"""A loopback HTTP sink for benchmarks: accepts any POST, answers 200, optionally counts events."""

from __future__ import annotations

import gzip
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Sink:
    """`Sink(count=True).start()`; `.url`; `.events` (count) ; `.close()`.

    With `delay` seconds each request is answered late (a slow endpoint).
    """

    def __init__(self, *, count: bool = False, delay: float = 0.0) -> None:
        self.count = count
        self.delay = delay
        self.events = 0
        self.requests = 0
        self.bytes = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.url = ""

    def start(self) -> Sink:
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
                n = 0
                if sink.count:
                    try:
                        data = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
                        body = json.loads(data)
                        n = (
                            len(body.get("batch", []))
                            if isinstance(body, dict) and "batch" in body
                            else 1
                        )
                    except Exception:
                        n = 0
                if sink.delay:
                    threading.Event().wait(sink.delay)
                with sink._lock:
                    sink.events += n
                    sink.requests += 1
                    sink.bytes += len(raw)
                body_out = b'{"status":1}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body_out)))
                self.end_headers()
                self.wfile.write(body_out)

            do_PUT = do_POST

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
