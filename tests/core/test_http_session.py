"""The HTTP destination's sessions: the proxy environment is read once, when a session is made,
and each sending thread has its own."""

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


def test_a_failed_request_closes_only_its_own_threads_connection(posthog_server):
    # The sender's worker and its second-request helper send through one destination. A request
    # that fails drops its session; the other thread's connection stays open for its next one.
    posthog_server.behaviour = lambda n: "drop" if n == 1 else "ok"
    destination = PostHogHTTPDestination("phc_test", posthog_server.host)
    event = b'{"event":"e","distinct_id":"u","properties":{},"uuid":"u1"}'
    outcomes: list[str] = []

    def send() -> None:
        try:
            destination.send([event], timeout=5)
            outcomes.append("ok")
        except Exception as exc:
            outcomes.append(type(exc).__name__)

    def in_thread(target) -> None:
        thread = threading.Thread(target=target)
        thread.start()
        thread.join()

    worker_ready = threading.Event()
    worker_go = threading.Event()

    def worker() -> None:  # two requests, with the other thread's failure between them
        send()
        worker_ready.set()
        worker_go.wait(5)
        send()

    thread = threading.Thread(target=worker)
    thread.start()
    worker_ready.wait(5)
    in_thread(send)  # the helper's request: the connection is dropped
    worker_go.set()
    thread.join()
    destination.close()

    assert outcomes == ["ok", "RetryableError", "ok"]
    first, failed, second = (r["client"] for r in posthog_server.requests)
    assert second == first  # the worker's connection was kept alive
    assert failed != first
