"""A loopback server that answers every POST with one fixed JSON body.

For the odd answers OpenAI-compatible servers give, which the stand-ins never do.
"""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from typing import Any

from .loopback import LoopbackServer

__all__ = ["FixedReply"]


class FixedReply(LoopbackServer):
    """`with FixedReply({...}) as server:` then point a client at `server.base_url`."""

    def __init__(self, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return None

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        super().__init__(Handler, "/v1")
