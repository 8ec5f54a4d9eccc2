"""A loopback gateway that refuses every request with a 401 quoting the headers it was sent.

Some gateways echo what they rejected: the case error-text scrubbing is for.
"""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from typing import Any

from .loopback import LoopbackServer

__all__ = ["EchoGateway"]


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return None

    def _refuse(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        headers = dict(self.headers.items())
        message = f"unauthorized: headers={json.dumps(headers)}"
        body = json.dumps(
            {
                "error": {
                    "message": message,
                    "type": "authentication_error",
                    "code": 401,
                    "status": "UNAUTHENTICATED",
                }
            }
        ).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _refuse


class EchoGateway(LoopbackServer):
    """`with EchoGateway() as gateway:` then point a client at `gateway.base_url`."""

    def __init__(self) -> None:
        super().__init__(_Handler)
