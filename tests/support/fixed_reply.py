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
    """`with FixedReply({...}) as server:` then point a client at `server.base_url`.

    A list of bodies is answered as a stream of server-sent events, as OpenAI streams."""

    def __init__(self, body: dict[str, Any] | list[dict[str, Any]]) -> None:
        if isinstance(body, list):
            events = [f"data: {json.dumps(chunk)}\n\n" for chunk in body] + ["data: [DONE]\n\n"]
            data, kind = "".join(events).encode(), "text/event-stream"
        else:
            data, kind = json.dumps(body).encode(), "application/json"

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return None

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        super().__init__(Handler, "/v1")
