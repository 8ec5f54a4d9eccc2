"""The PostHog destination's own keep-alive connections (`http.client`, no proxy): reuse, a
connection the server closed, TLS verification as requests does it, and hosts with a path."""

from __future__ import annotations

import base64
import gzip
import json
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from posthog_llm.destinations import (
    BatchTooLargeError,
    PermanentError,
    PostHogHTTPDestination,
    RetryableError,
)
from posthog_llm.destinations._connections import ConnectionPool, _watchdog

EVENT = b'{"event":"$ai_span","distinct_id":"u","properties":{"$ai_trace_id":"t"}}'


def _read_request(conn: socket.socket) -> tuple[str, dict[str, str], bytes] | None:
    """One HTTP/1.1 request from `conn` (None when the client closed it)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        body += conn.recv(65536)
    return lines[0], headers, body


class _RawServer:
    """A loopback HTTP server written on sockets, so a test decides exactly when a kept-alive
    connection is closed. `answer(connection_number, request_number_on_it)` returns "ok",
    "close after" (answer, then close without saying so), "hang up" (close, no answer) or
    "redirect <status> <location>"."""

    def __init__(
        self, answer: Callable[[int, int], str], tls: ssl.SSLContext | None = None
    ) -> None:
        self.answer = answer
        self.tls = tls
        self.requests: list[tuple[int, str, dict[str, str], bytes]] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            number = self.connections
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn, number), daemon=True).start()

    def _handle(self, conn: socket.socket, number: int) -> None:
        try:
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            for nth in range(100):
                request = _read_request(conn)
                if request is None:
                    return
                what = self.answer(number, nth)
                if what == "hang up":
                    return
                self.requests.append((number, *request))
                if what == "early hints":  # an interim 103, then the final answer
                    conn.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n")
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
                    continue
                if what == "huge chunk":  # a chunk size no int can hold
                    conn.sendall(
                        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                        + b"f" * 40
                        + b"\r\n"
                    )
                    return
                if what == "trickle body":  # whole headers saying close, then a slow body
                    conn.sendall(
                        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 400\r\n\r\n"
                    )
                    for _ in range(400):
                        conn.sendall(b"x")
                        time.sleep(0.05)
                    return
                if what == "trickle":  # an answer a byte at a time, never finished
                    for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 10_000:
                        conn.sendall(bytes([byte]))
                        time.sleep(0.05)
                    return
                if what.startswith("redirect "):  # "redirect 308 <location>"
                    _, status, location = what.split(" ", 2)
                    conn.sendall(
                        f"HTTP/1.1 {status} Moved\r\nLocation: {location}\r\n"
                        "Content-Length: 0\r\n\r\n".encode()
                    )
                    continue
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 12\r\n\r\n" + b'{"status":1}'
                )
                if what == "close after":
                    return
        except (OSError, ssl.SSLError):
            return
        finally:
            conn.close()

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def raw_server() -> Iterator[Callable[..., _RawServer]]:
    made: list[_RawServer] = []

    def make(answer: Callable[[int, int], str], tls: ssl.SSLContext | None = None) -> _RawServer:
        server = _RawServer(answer, tls)
        made.append(server)
        return server

    yield make
    for server in made:
        server.close()


def _events(server: _RawServer) -> list[dict]:
    return [json.loads(gzip.decompress(body))["batch"][0] for *_, body in server.requests]


def test_batches_share_one_kept_alive_connection(raw_server):
    server = raw_server(lambda conn, nth: "ok")
    destination = PostHogHTTPDestination("phc_key", f"http://127.0.0.1:{server.port}")
    for _ in range(3):
        destination.send([EVENT], timeout=5)
    assert [number for number, *_ in server.requests] == [0, 0, 0]
    assert server.connections == 1
    first_line, headers = server.requests[0][1], server.requests[0][2]
    assert first_line == "POST /i/v0/ai/batch/ HTTP/1.1"
    assert headers["user-agent"].startswith("posthog-llm/")
    assert headers["content-encoding"] == "gzip"
    assert _events(server)[0]["event"] == "$ai_span"
    destination.close()


@pytest.mark.parametrize(
    "second",
    [
        # A server's keep-alive timeout closes the idle connection between two batches.
        lambda conn, nth: "close after",
        # The server closes the kept-alive connection just as the next request arrives: the
        # request is sent once more, on a new connection.
        lambda conn, nth: "hang up" if nth == 1 else "ok",
    ],
    ids=["closed while idle", "hung up on the next request"],
)
def test_a_kept_alive_connection_the_server_closed_is_replaced_without_an_error(raw_server, second):
    server = raw_server(second)
    destination = PostHogHTTPDestination("phc_key", f"http://127.0.0.1:{server.port}")
    destination.send([EVENT], timeout=5)
    destination.send([EVENT], timeout=5)
    assert [number for number, *_ in server.requests] == [0, 1]
    destination.close()


def test_a_new_connection_the_server_hangs_up_on_is_a_retryable_error(raw_server):
    server = raw_server(lambda conn, nth: "hang up")
    destination = PostHogHTTPDestination("phc_key", f"http://127.0.0.1:{server.port}")
    with pytest.raises(RetryableError, match="RemoteDisconnected|ConnectionReset"):
        destination.send([EVENT], timeout=5)
    assert server.connections == 1  # not repeated: nothing was kept alive
    destination.close()


def test_nothing_listening_is_a_retryable_error():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    destination = PostHogHTTPDestination("phc_key", f"http://127.0.0.1:{port}")
    with pytest.raises(RetryableError, match="ConnectionRefused"):
        destination.send([EVENT], timeout=5)


def test_a_host_with_a_path_keeps_it(raw_server):
    # A self-hosted PostHog behind a path prefix on a reverse proxy.
    server = raw_server(lambda conn, nth: "ok")
    destination = PostHogHTTPDestination("phc_key", f"http://127.0.0.1:{server.port}/posthog/")
    destination.send([b'{"event":"signup","distinct_id":"u","properties":{}}'], timeout=5)
    destination.send([EVENT], timeout=5)
    assert [line for _, line, *_ in server.requests] == [
        "POST /posthog/batch/ HTTP/1.1",
        "POST /posthog/i/v0/ai/batch/ HTTP/1.1",
    ]


@pytest.fixture
def test_ca(tmp_path) -> tuple[ssl.SSLContext, str]:
    """A server TLS context with a certificate for 127.0.0.1, and the file of its test CA."""
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_tls)
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    return server_tls, str(bundle)


def test_https_verifies_the_certificate_against_the_ca_bundle_in_the_environment(
    raw_server, test_ca, monkeypatch
):
    server_tls, bundle = test_ca
    server = raw_server(lambda conn, nth: "ok", tls=server_tls)
    url = f"https://127.0.0.1:{server.port}"

    # An unknown CA (certifi's bundle does not hold the test CA): refused, as requests would.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    untrusting = PostHogHTTPDestination("phc_key", url)
    with pytest.raises(RetryableError, match="SSLCertVerificationError|SSLError"):
        untrusting.send([EVENT], timeout=5)
    assert server.requests == []

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", bundle)
    trusting = PostHogHTTPDestination("phc_key", url)
    trusting.send([EVENT], timeout=5)
    trusting.send([EVENT], timeout=5)
    assert [number for number, *_ in server.requests] == [1, 1]  # one TLS connection, kept
    assert _events(server)[0]["properties"]["$ai_trace_id"] == "t"
    trusting.close()


@pytest.mark.parametrize("second", ["close after", "hang up"])
def test_a_kept_alive_tls_connection_the_server_closed_is_replaced(
    raw_server, test_ca, monkeypatch, second
):
    server_tls, bundle = test_ca
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.setenv("CURL_CA_BUNDLE", bundle)  # read when REQUESTS_CA_BUNDLE is not set
    server = raw_server(
        lambda conn, nth: second if nth == int(second == "hang up") else "ok", tls=server_tls
    )
    destination = PostHogHTTPDestination("phc_key", f"https://127.0.0.1:{server.port}")
    destination.send([EVENT], timeout=5)
    destination.send([EVENT], timeout=5)
    assert [number for number, *_ in server.requests] == [0, 1]
    destination.close()


@pytest.mark.parametrize("what", ["trickle", "trickle body"])
@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_an_answer_trickled_a_byte_at_a_time_is_cut_at_the_requests_deadline(
    raw_server, test_ca, monkeypatch, tls, what
):
    # Each byte comes well within the read timeout: only a deadline for the whole exchange
    # (twice the timeout here, the body being tiny) frees the sender.
    server_tls, bundle = test_ca
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", bundle)
    # "trickle body": http.client lets go of the socket once the headers say it closes.
    server = raw_server(lambda conn, nth: what, tls=server_tls if tls else None)
    scheme = "https" if tls else "http"
    destination = PostHogHTTPDestination("phc_key", f"{scheme}://127.0.0.1:{server.port}")
    start = time.monotonic()
    with pytest.raises(RetryableError, match="no whole answer within 1 s"):
        destination.send([EVENT], timeout=0.5)
    assert time.monotonic() - start < 3
    destination.close()


def test_an_answer_http_client_cannot_parse_is_retryable_not_a_refusal(raw_server):
    # http.client lets an OverflowError through for this one: it is the server's fault, so
    # the batch is tried again (and spooled meanwhile), never dropped as refused.
    server = raw_server(lambda conn, nth: "huge chunk")
    destination = PostHogHTTPDestination("phc_key", f"http://127.0.0.1:{server.port}")
    with pytest.raises(RetryableError, match="malformed answer"):
        destination.send([EVENT], timeout=5)
    destination.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX only")
def test_a_child_forked_while_the_deadline_watch_was_busy_still_sends(raw_server):
    from ._forking import in_forked_child

    server = raw_server(lambda conn, nth: "ok")
    held, go = threading.Event(), threading.Event()

    def busy() -> None:  # a parent thread inside the watchdog's lock at the moment of the fork
        with _watchdog._cond:
            held.set()
            go.wait(10)

    threading.Thread(target=busy, daemon=True).start()
    held.wait(5)

    def child() -> str:
        status, _, _ = ConnectionPool(f"http://127.0.0.1:{server.port}", user_agent="t").post(
            "/batch/", b"{}", {}, 2
        )
        return str(status)

    try:
        assert in_forked_child(child) == "200"
    finally:
        go.set()


def test_the_pool_refuses_what_is_not_an_http_url():
    with pytest.raises(ValueError, match="not an http"):
        ConnectionPool("ftp://example.com", user_agent="x")


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_followed_with_the_same_post_and_body(raw_server, status):
    # requests would turn a 301 or 302 into a GET and lose the batch.
    target = raw_server(lambda conn, nth: "ok")
    moved = raw_server(
        lambda conn, nth: f"redirect {status} http://127.0.0.1:{target.port}/i/v0/ai/batch/"
    )
    destination = PostHogHTTPDestination("phc_key", f"http://127.0.0.1:{moved.port}")
    destination.send([EVENT], timeout=5)
    destination.send([EVENT], timeout=5)
    assert [line for _, line, *_ in target.requests] == ["POST /i/v0/ai/batch/ HTTP/1.1"] * 2
    assert [e["event"] for e in _events(target)] == ["$ai_span", "$ai_span"]
    destination.close()


def test_a_relative_redirect_stays_on_the_host(raw_server):
    server = raw_server(lambda conn, nth: "redirect 308 /moved/batch/" if nth % 2 == 0 else "ok")
    destination = PostHogHTTPDestination("phc_key", f"http://127.0.0.1:{server.port}")
    destination.send([EVENT], timeout=5)
    assert [line for _, line, *_ in server.requests] == [
        "POST /i/v0/ai/batch/ HTTP/1.1",
        "POST /moved/batch/ HTTP/1.1",
    ]
    assert len(server.requests[1][3]) == len(server.requests[0][3])  # the body went along


@pytest.mark.parametrize(
    "location, message", [("/i/v0/ai/batch/", "more than 3 redirects"), ("ftp://x/", "ftp")]
)
def test_a_redirect_loop_or_a_redirect_off_http_is_refused(raw_server, location, message):
    server = raw_server(lambda conn, nth: f"redirect 308 {location}")
    destination = PostHogHTTPDestination("phc_key", f"http://127.0.0.1:{server.port}")
    with pytest.raises(PermanentError, match=message):
        destination.send([EVENT], timeout=5)
    assert len(server.requests) == (4 if location.startswith("/") else 1)


def test_a_413_sent_before_the_body_was_read_is_the_answer_not_a_network_error():
    # A proxy refuses a batch from its Content-Length alone and closes the connection: writing
    # the rest of the body fails, and the 413 it already sent is what counts (the sender then
    # splits the batch) rather than a broken pipe (retried as it is, again and again).
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)

    def refuse() -> None:
        conn, _ = listener.accept()
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(4096)
        conn.sendall(
            b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        conn.close()

    threading.Thread(target=refuse, daemon=True).start()
    destination = PostHogHTTPDestination(
        "phc_key", f"http://127.0.0.1:{listener.getsockname()[1]}", gzip=False
    )
    big = b'{"event":"$ai_span","distinct_id":"u","properties":{"x":"' + b"y" * 8_000_000 + b'"}}'
    try:
        with pytest.raises(BatchTooLargeError, match="413"):
            destination.send([big], timeout=10)
    finally:
        listener.close()


def test_credentials_in_the_host_are_sent_as_basic_auth_and_never_shown(raw_server):
    # A self-hosted PostHog behind HTTP basic auth, configured as https://user:password@host.
    other = raw_server(lambda conn, nth: "ok")
    server = raw_server(
        lambda conn, nth: "ok" if nth == 0 else f"redirect 307 http://127.0.0.1:{other.port}/x/"
    )
    destination = PostHogHTTPDestination(
        "phc_key", f"http://admin:s3cret%40pw@127.0.0.1:{server.port}"
    )
    destination.send([EVENT], timeout=5)
    expected = "Basic " + base64.b64encode(b"admin:s3cret@pw").decode()
    assert server.requests[0][2]["authorization"] == expected
    assert "s3cret" not in destination.description and "admin:***@" in destination.description
    destination.send([EVENT], timeout=5)  # redirected to another host: no credentials there
    assert "authorization" not in other.requests[0][2]


def test_an_interim_answer_never_settles_a_batch_or_the_next(raw_server):
    # http.client hands over a 103 as if it were the answer; the final one is still on the wire.
    server = raw_server(lambda conn, nth: "early hints" if conn == 0 else "ok")
    destination = PostHogHTTPDestination("phc_key", f"http://127.0.0.1:{server.port}")
    with pytest.raises(RetryableError, match="interim answer 103"):
        destination.send([EVENT], timeout=5)
    destination.send([EVENT], timeout=5)  # a new connection, its own answer
    assert [number for number, *_ in server.requests] == [0, 1]


def test_a_redirect_back_to_the_host_keeps_its_credentials_and_odd_paths_are_encoded(
    raw_server,
):
    server = raw_server(
        lambda conn, nth: f"redirect 308 http://127.0.0.1:{server.port}/new/" if nth == 0 else "ok"
    )
    destination = PostHogHTTPDestination("phc_key", f"http://me:pw@127.0.0.1:{server.port}/pré fix")
    destination.send([EVENT], timeout=5)
    lines = [line for _, line, *_ in server.requests]
    assert lines == ["POST /pr%C3%A9%20fix/i/v0/ai/batch/ HTTP/1.1", "POST /new/ HTTP/1.1"]
    assert server.requests[1][2]["authorization"] == server.requests[0][2]["authorization"]
