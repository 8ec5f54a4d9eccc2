"""The HTTP destination reads the proxy environment once, when it makes its session."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest
from posthog_llm.destinations.posthog_http import PostHogHTTPDestination


class _Proxy(http.server.BaseHTTPRequestHandler):
    """A forward proxy that answers every request itself and remembers its request line."""

    seen: list[str] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.seen.append(f"{self.command} {self.path}")
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def proxy() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Proxy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Proxy.seen = []
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_requests_go_through_the_proxy_set_in_the_environment(
    proxy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    destination = PostHogHTTPDestination("phc_key", "http://posthog.example")
    destination.send([b'{"event":"$ai_span","properties":{}}'], timeout=5)
    destination.send([b'{"event":"custom","properties":{}}'], timeout=5)
    assert _Proxy.seen == [
        "POST http://posthog.example/i/v0/ai/batch/",
        "POST http://posthog.example/batch/",
    ]
    destination.close()
