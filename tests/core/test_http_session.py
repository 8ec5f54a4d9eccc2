"""The HTTP destination's session: the proxy environment is read once, when it is made, and a
forked child never uses its parent's connections."""

from __future__ import annotations

import http.server
import os
import threading
from collections.abc import Iterator

import pytest
from posthog_llm import Client
from posthog_llm.destinations.posthog_http import PostHogHTTPDestination

from ._forking import in_forked_child


class _Proxy(http.server.BaseHTTPRequestHandler):
    """A forward proxy that answers every request itself and remembers its request line."""

    seen: list[str] = []
    # Answers to give before the 200s, in turn: `(status, location)`.
    redirects: list[tuple[int, str]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.seen.append(f"{self.command} {self.path} {len(body)}")
        if self.redirects:
            status, location = self.redirects.pop(0)
            self.send_response(status)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    do_GET = do_POST

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def proxy() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Proxy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Proxy.seen = []
    _Proxy.redirects = []
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
    assert [line.rsplit(" ", 1)[0] for line in _Proxy.seen] == [
        "POST http://posthog.example/i/v0/ai/batch/",
        "POST http://posthog.example/batch/",
    ]
    destination.close()


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_through_the_proxy_is_followed_with_the_same_post(
    proxy: str, monkeypatch: pytest.MonkeyPatch, status: int
) -> None:
    # requests would follow a 301 or 302 as a GET without the body: the batch lost, or
    # counted as sent if the new location answers the GET.
    monkeypatch.setenv("HTTP_PROXY", proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    _Proxy.redirects = [(status, "http://posthog.example/moved/batch/")]
    destination = PostHogHTTPDestination("phc_key", "http://posthog.example", gzip=False)
    destination.send([b'{"event":"custom","properties":{}}'], timeout=5)
    first, second = _Proxy.seen
    assert first.startswith("POST http://posthog.example/batch/ ")
    assert second == "POST http://posthog.example/moved/batch/ " + first.rsplit(" ", 1)[1]
    destination.close()


def test_a_redirect_to_an_origin_behind_the_proxy_goes_through_it(
    proxy: str, posthog_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The configured host is reached directly (NO_PROXY); the origin it redirects to is not.
    monkeypatch.setenv("HTTP_PROXY", proxy)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.delenv("no_proxy", raising=False)
    posthog_server.behaviour = lambda n: (
        ("status", 308, {"Location": "http://posthog.example/batch/"}) if n == 0 else "ok"
    )
    destination = PostHogHTTPDestination("phc_key", posthog_server.host)
    destination.send([b'{"event":"custom","properties":{}}'], timeout=5)
    assert [line.rsplit(" ", 1)[0] for line in _Proxy.seen] == [
        "POST http://posthog.example/batch/"
    ]
    assert posthog_server.requests[0]["path"] == "/batch/"
    destination.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX only")
def test_a_forked_child_opens_its_own_connection(posthog_server):
    # A web server that creates its client before forking workers: a worker reusing the parent's
    # keep-alive socket would write its requests on the same connection as the parent.
    client = Client(api_key="phc_test", host=posthog_server.host, flush_interval=30)
    client.capture("parent", distinct_id="u")
    assert client.flush(5) is True

    def child() -> str:
        client.capture("child", distinct_id="u")
        return str(client.flush(5))

    assert in_forked_child(child) == "True"
    client.capture("parent again", distinct_id="u")
    assert client.flush(5) is True
    client.shutdown(1)

    by_event = {r["event"]: r["client"] for r in _requests_by_event(posthog_server)}
    assert by_event["child"] != by_event["parent"]
    assert by_event["parent again"] == by_event["parent"]  # the parent keeps its connection


def _requests_by_event(server) -> list[dict]:
    """Each request's connection, named by the one event it carried."""
    return [
        {"event": event["event"], "client": request["client"]}
        for request, event in zip(server.requests, server.events)
    ]
