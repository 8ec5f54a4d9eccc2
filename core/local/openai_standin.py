"""A local stand-in for OpenAI's REST API: a real HTTP server on the loopback interface.

It answers the official `openai` SDK well enough to run chat completions (JSON and server-sent
event streams, tool calls, structured output), the Responses API (JSON and event streams),
embeddings and model listing, also under Azure-style paths — without network access or an API
key worth anything. Replies are deterministic and echo the prompt, so demos and tests can run
offline. It is **not** a model: label its output as coming from a local stand-in.

>>> from posthog_llm.local.openai_standin import OpenAIStandIn
>>> import openai
>>> with OpenAIStandIn() as server:                                     # doctest: +SKIP
...     client = openai.OpenAI(base_url=server.base_url, api_key="sk-local")
...     reply = client.chat.completions.create(
...         model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}])
...     reply.choices[0].message.content, reply.model
('Echo: hello', 'gpt-4o-mini-2024-08-06')

Endpoints: `POST /v1/chat/completions`, `POST /v1/responses`, `POST /v1/embeddings`,
`GET /v1/models[/{id}]`, and the same under Azure's `/openai/deployments/{name}/…?api-version=…`
and `/openai/…` paths. Unknown paths answer 404 with an OpenAI-style error body.

What it answers:

- `Echo: <last user message>`. With function tools it calls the first tool (or the one
  `tool_choice` names) with arguments filled in from the tool's JSON schema; after a tool result
  it answers `The tool returned: <result>`. With a `json_schema` response format (`parse()`) it
  answers a JSON object that fits the schema. `max_tokens` / `max_output_tokens` cut the answer
  (`finish_reason` "length", or an incomplete response). Embeddings are unit vectors derived
  from a hash of the text (8 dimensions unless `dimensions` says otherwise).

Behaviour worth knowing:

- Usage is reported like OpenAI does, including `prompt_tokens_details.cached_tokens` (a prompt
  whose leading messages were sent before counts them as cached) and
  `completion_tokens_details.reasoning_tokens` (for reasoning-style model names such as `o4-mini`
  or `gpt-5`). Tokens are counted as words and punctuation marks, not with a real tokenizer.
- The reply names a dated snapshot of the requested model (`gpt-4o-mini` -> `gpt-4o-mini-2024-08-06`),
  as OpenAI does; pass `snapshot=None` to echo the model name unchanged.
- Errors on demand: a model (or Azure deployment) named `error-429`, `error-500`, or any
  `error-<status>` answers with that status and an OpenAI-style error body; `error-midstream`
  streams two chunks and then an error event.
- Every request is recorded in `server.requests` (method, path, query, headers, JSON body), newest last.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import itertools
import json
import re
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["OpenAIStandIn", "ReceivedRequest"]

DEFAULT_SNAPSHOT = "2024-08-06"
EMBEDDING_DIMENSIONS = 8
_MAX_TEXT = 200
_CACHE_LIMIT = 10_000

_TOKEN = re.compile(r"\w+|[^\w\s]")
_PIECE = re.compile(r"\s*\S+")
_DATED = re.compile(r"-\d{4}-\d{2}-\d{2}$")
_REASONING_MODEL = re.compile(r"^(o\d|gpt-5)")
_ERROR_MODEL = re.compile(r"^error-(\d{3})$")

_POST_ROUTES = frozenset({"/chat/completions", "/responses", "/embeddings"})
_MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "o4-mini", "text-embedding-3-small")

_ERROR_TYPES = {
    400: ("invalid_request_error", None, "The request was rejected by the local stand-in."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("permission_denied", None, "You are not allowed to use this model."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached; please try again later."),
    500: ("server_error", None, "The server had an error while processing your request."),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}


class ReceivedRequest(dict[str, Any]):
    """One recorded request: `method`, `path`, `query` (dict of lists), `headers` (lower-case names), `body` (JSON or None)."""

    @property
    def body(self) -> Any:
        return self["body"]


class _HTTPError(Exception):
    def __init__(self, status: int, message: str, *, type: str | None = None, code: Any = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code


class OpenAIStandIn:
    """A threaded loopback HTTP server that speaks enough of OpenAI's REST API for the SDK.

    Args:
        host: interface to bind (default loopback only).
        port: TCP port; 0 picks a free one.
        snapshot: date suffix for the served model name, or None to echo the requested model.
        api_key: when set, requests must carry this key (`Authorization: Bearer` or Azure's `api-key`
            header); otherwise any non-empty key is accepted.
        latency: seconds to wait before answering each request (for demos).
        chunk_delay: seconds to wait between streamed chunks (for demos).
        max_recorded: how many requests `requests` keeps.

    Use `start()` / `close()`, or a `with` block. `base_url` ends in `/v1` (for `openai.OpenAI`);
    `azure_endpoint` is the server root (for `openai.AzureOpenAI(azure_endpoint=...)`).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        snapshot: str | None = DEFAULT_SNAPSHOT,
        api_key: str | None = None,
        latency: float = 0.0,
        chunk_delay: float = 0.0,
        max_recorded: int = 1000,
    ) -> None:
        self.host = host
        self.port = port
        self.snapshot = snapshot
        self.api_key = api_key
        self.latency = latency
        self.chunk_delay = chunk_delay
        self.requests: collections.deque[ReceivedRequest] = collections.deque(maxlen=max_recorded)
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._seen_prefixes: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> OpenAIStandIn:
        """Bind and serve in a background thread. Returns self."""
        if self._server is not None:
            return self
        server = _Server((self.host, self.port), _make_handler(self))
        self._server = server
        self.port = server.server_address[1]
        # A short poll interval makes close() return in ~50 ms instead of half a second.
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.05,), name="openai-standin", daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving and release the port."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def __enter__(self) -> OpenAIStandIn:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def url(self) -> str:
        """The server root, e.g. `http://127.0.0.1:54321`."""
        if self._server is None:
            raise RuntimeError("OpenAIStandIn is not started; call start() or use a with block")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI-style API base, e.g. `http://127.0.0.1:54321/v1`."""
        return self.url + "/v1"

    @property
    def azure_endpoint(self) -> str:
        """The endpoint to give `openai.AzureOpenAI(azure_endpoint=...)`."""
        return self.url

    def last_request(self, path_suffix: str = "") -> ReceivedRequest:
        """The newest recorded request whose path ends with `path_suffix`."""
        with self._lock:
            for request in reversed(self.requests):
                if request["path"].endswith(path_suffix):
                    return request
        raise LookupError(f"no request to a path ending in {path_suffix!r} was recorded")

    # -- helpers shared by the endpoints ---------------------------------------------------------

    def _next_id(self, prefix: str) -> str:
        return f"{prefix}standin{next(self._ids):06d}"

    def _served_model(self, model: str) -> str:
        if not self.snapshot or _DATED.search(model):
            return model
        return f"{model}-{self.snapshot}"

    def _cached_tokens(self, units: list[Any], unit_tokens: list[int]) -> int:
        """Tokens of the longest leading run of messages already sent in an earlier request."""
        cached = 0
        digest = hashlib.sha256()
        keys = []
        for unit in units:
            digest.update(json.dumps(unit, sort_keys=True, default=str).encode())
            keys.append(digest.hexdigest())
        with self._lock:
            for i, key in enumerate(keys):
                if key not in self._seen_prefixes:
                    break
                cached = sum(unit_tokens[: i + 1])
            for key in keys:
                self._seen_prefixes[key] = None
                self._seen_prefixes.move_to_end(key)
            while len(self._seen_prefixes) > _CACHE_LIMIT:
                self._seen_prefixes.popitem(last=False)
        return cached


# -- request handling ------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default 5 resets connections when many clients connect at once

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # a client that hung up mid-request (an early-closed stream) is not news
        super().handle_error(request, client_address)


def _make_handler(standin: OpenAIStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        server_state = standin

    return Handler


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "OpenAIStandIn/1.0"
    server_state: OpenAIStandIn

    def setup(self) -> None:
        super().setup()
        # Answers go out in several writes (headers, body, stream chunks): without TCP_NODELAY,
        # Nagle's algorithm and delayed ACKs add ~40 ms to every request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: tests and demos read the recorded requests instead

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        state = self.server_state
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        body: Any = None
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            if raw:
                try:
                    body = json.loads(raw)
                except ValueError:
                    raise _HTTPError(400, "The request body is not valid JSON.") from None
            with state._lock:
                state.requests.append(
                    ReceivedRequest(
                        method=method,
                        path=parts.path,
                        query=query,
                        headers={k.lower(): v for k, v in self.headers.items()},
                        body=body,
                    )
                )
            if state.latency:
                time.sleep(state.latency)
            self._check_auth()
            route, deployment = _route(parts.path, query)
            if method == "GET":
                if route == "/models":
                    self._send_json(200, _models_list())
                    return
                if route.startswith("/models/"):
                    self._send_json(200, _model_object(route[len("/models/") :]))
                    return
                raise _HTTPError(404, f"Unknown path: GET {parts.path}", code="unknown_url")
            if route not in _POST_ROUTES:
                raise _HTTPError(404, f"Unknown path: POST {parts.path}", code="unknown_url")
            if not isinstance(body, dict):
                raise _HTTPError(400, "Expected a JSON object as request body.")
            model = deployment or body.get("model")
            if not isinstance(model, str) or not model:
                raise _HTTPError(400, "you must provide a model parameter", code="missing_model")
            match = _ERROR_MODEL.match(model)
            if match:
                error = _error_for_status(int(match.group(1)), model)
                if error.status == 401:
                    # Like the real API once did: the rejected key is quoted in the message.
                    auth = self.headers.get("Authorization") or self.headers.get("api-key") or ""
                    error.message = f"{error.message} Key: {auth.removeprefix('Bearer ')}"
                raise error
            if route == "/chat/completions":
                self._chat(body, model)
            elif route == "/responses":
                self._responses(body, model)
            else:
                self._send_json(200, _embeddings(state, body, model))
        except _HTTPError as exc:
            self._send_error(exc)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _check_auth(self) -> None:
        state = self.server_state
        bearer = self.headers.get("Authorization") or ""
        key = bearer[7:].strip() if bearer.lower().startswith("bearer ") else ""
        key = key or (self.headers.get("api-key") or "").strip()
        if not key:
            raise _HTTPError(
                401,
                "You didn't provide an API key. Send it in an Authorization: Bearer header.",
                type="invalid_request_error",
            )
        if state.api_key is not None and key != state.api_key:
            raise _HTTPError(
                401,
                f"Incorrect API key provided: {_mask(key)}.",
                type="invalid_request_error",
                code="invalid_api_key",
            )

    # -- chat completions ---------------------------------------------------------------------------

    def _chat(self, body: dict[str, Any], model: str) -> None:
        state = self.server_state
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _HTTPError(400, "messages must be a non-empty array", code="invalid_messages")
        served = state._served_model(model)
        reply = _chat_reply(body, messages)
        usage = _usage(state, messages, reply, served, body.get("reasoning_effort"))
        ident = state._next_id("chatcmpl-")
        created = int(time.time())
        n = body.get("n") or 1
        if model == "error-midstream":
            if not body.get("stream"):
                raise _error_for_status(500, model)
            self._stream_error(ident, created, served)
            return
        if not body.get("stream"):
            choices = [
                {
                    "index": i,
                    "message": reply.message(),
                    "finish_reason": reply.finish_reason,
                    "logprobs": None,
                }
                for i in range(n)
            ]
            self._send_json(
                200,
                {
                    "id": ident,
                    "object": "chat.completion",
                    "created": created,
                    "model": served,
                    "choices": choices,
                    "usage": usage.chat(),
                    "service_tier": _served_tier(body),
                    "system_fingerprint": "fp_standin",
                },
            )
            return
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        base = {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": created,
            "model": served,
            "service_tier": _served_tier(body),
            "system_fingerprint": "fp_standin",
        }

        def chunk(choices: list[dict[str, Any]]) -> dict[str, Any]:
            out = {**base, "choices": choices}
            if include_usage:
                out["usage"] = None
            return out

        def events() -> Iterator[dict[str, Any]]:
            for i in range(n):
                for delta in reply.deltas():
                    yield chunk(
                        [{"index": i, "delta": delta, "finish_reason": None, "logprobs": None}]
                    )
                yield chunk([{"index": i, "delta": {}, "finish_reason": reply.finish_reason}])
            if include_usage:
                yield {**base, "choices": [], "usage": usage.chat()}

        self._send_sse((None, event) for event in events())

    def _stream_error(self, ident: str, created: int, served: str) -> None:
        base = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": served}

        def events() -> Iterator[tuple[str | None, dict[str, Any]]]:
            yield (
                None,
                {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
            )
            yield None, {**base, "choices": [{"index": 0, "delta": {"content": "Partial"}}]}
            yield (
                None,
                {
                    "error": {
                        "message": "The stream was interrupted by the local stand-in.",
                        "type": "server_error",
                        "param": None,
                        "code": None,
                    }
                },
            )

        self._send_sse(events(), done=False)

    # -- responses ------------------------------------------------------------------------------------

    def _responses(self, body: dict[str, Any], model: str) -> None:
        state = self.server_state
        items = _response_input_messages(body)
        if not items:
            raise _HTTPError(400, "input must be a non-empty string or array", code="invalid_input")
        served = state._served_model(model)
        reply = _responses_reply(body, items)
        reasoning = body.get("reasoning") or None
        usage = _usage(state, items, reply, served, reasoning)
        response = _response_object(state, body, served, reply, usage)
        if model == "error-midstream":
            if not body.get("stream"):
                raise _error_for_status(500, model)
            self._send_sse(
                iter(
                    [
                        (
                            "response.created",
                            {
                                "type": "response.created",
                                "sequence_number": 0,
                                "response": {
                                    **response,
                                    "status": "in_progress",
                                    "output": [],
                                    "usage": None,
                                },
                            },
                        ),
                        (
                            "error",
                            {
                                "type": "error",
                                "sequence_number": 1,
                                "code": "server_error",
                                "message": "The stream was interrupted by the local stand-in.",
                                "param": None,
                            },
                        ),
                    ]
                ),
                done=False,
            )
            return
        if not body.get("stream"):
            self._send_json(200, response)
            return
        self._send_sse(_response_events(response), done=False)

    # -- wire helpers ----------------------------------------------------------------------------------

    def _send_json(
        self, status: int, payload: Any, headers: Mapping[str, str] | None = None
    ) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-request-id", f"req_standin{int(time.time() * 1000)}")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _send_error(self, exc: _HTTPError) -> None:
        payload = {
            "error": {
                "message": exc.message,
                "type": exc.type,
                "param": None,
                "code": exc.code,
            }
        }
        headers = {"retry-after-ms": "10"} if exc.status == 429 else {}
        try:
            self._send_json(exc.status, payload, headers)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _send_sse(
        self, events: Iterator[tuple[str | None, dict[str, Any]]] | Any, *, done: bool = True
    ) -> None:
        """Server-sent events over chunked transfer encoding, flushed one event at a time."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        delay = self.server_state.chunk_delay
        try:
            for item in events:
                name, payload = item if isinstance(item, tuple) else (None, item)
                text = f"event: {name}\n" if name else ""
                text += f"data: {json.dumps(payload)}\n\n"
                self._write_chunk(text.encode())
                if delay:
                    time.sleep(delay)
            if done:
                self._write_chunk(b"data: [DONE]\n\n")
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            self.close_connection = True  # the client closed the stream early

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%X\r\n%s\r\n" % (len(data), data))


def _route(path: str, query: Mapping[str, list[str]]) -> tuple[str, str | None]:
    """The endpoint (`/chat/completions` …) and the Azure deployment name, if any."""
    if path.startswith("/openai/"):
        rest = path[len("/openai") :]
        if rest.startswith("/v1/"):
            return rest[len("/v1") :], None
        if "api-version" not in query:
            raise _HTTPError(
                404, "Resource not found: Azure paths need an api-version query parameter."
            )
        match = re.match(r"^/deployments/([^/]+)(/.*)$", rest)
        if match:
            return match.group(2), match.group(1)
        return rest, None
    if path.startswith("/v1/"):
        return path[len("/v1") :], None
    raise _HTTPError(404, f"Unknown path: {path}", code="unknown_url")


def _error_for_status(status: int, model: str) -> _HTTPError:
    kind, code, message = _ERROR_TYPES.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", None, "")
    )
    message = message or f"The local stand-in answered {status} as asked by the model name."
    return _HTTPError(
        status,
        f"{message} (model {model!r} asks the local stand-in for {status})",
        type=kind,
        code=code,
    )


def _mask(key: str) -> str:
    return key[:3] + "*" * 4 + key[-4:] if len(key) > 10 else "*" * len(key)


def _models_list() -> dict[str, Any]:
    return {"object": "list", "data": [_model_object(m) for m in _MODELS]}


def _model_object(model: str) -> dict[str, Any]:
    return {"id": model, "object": "model", "created": 1_700_000_000, "owned_by": "local-standin"}


# -- replies ---------------------------------------------------------------------------------------


def _tokens(text: str) -> int:
    return len(_TOKEN.findall(text))


def _text_of(content: Any) -> str:
    """Plain text of a message content: a string or a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, dict):
                text = part.get("text")
                if isinstance(text, str):
                    texts.append(text)
            elif isinstance(part, str):
                texts.append(part)
        return " ".join(texts)
    return "" if content is None else str(content)


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 1] + "…"


class _Reply:
    """What the stand-in answers: text or tool calls, and why it stopped."""

    def __init__(
        self,
        text: str | None = None,
        tool_calls: list[dict[str, Any]] | None = None,
        finish_reason: str = "stop",
    ) -> None:
        self.text = text
        self.tool_calls = tool_calls or []
        self.finish_reason = finish_reason

    def output_text(self) -> str:
        parts = [self.text or ""] + [c["function"]["arguments"] for c in self.tool_calls]
        return " ".join(p for p in parts if p)

    def message(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": self.text, "refusal": None}
        if self.tool_calls:
            message["tool_calls"] = self.tool_calls
        return message

    def deltas(self) -> Iterator[dict[str, Any]]:
        if self.tool_calls:
            yield {"role": "assistant", "content": None}
            for index, call in enumerate(self.tool_calls):
                yield {
                    "tool_calls": [
                        {
                            "index": index,
                            "id": call["id"],
                            "type": "function",
                            "function": {"name": call["function"]["name"], "arguments": ""},
                        }
                    ]
                }
                for piece in _PIECE.findall(call["function"]["arguments"]):
                    yield {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}
            return
        yield {"role": "assistant", "content": "", "refusal": None}
        for piece in _PIECE.findall(self.text or ""):
            yield {"content": piece}


def _limit(text: str, max_tokens: Any) -> tuple[str, str]:
    """Cut the reply to `max_tokens` words (the stand-in's tokens), reporting `length` if cut."""
    if isinstance(max_tokens, int) and max_tokens > 0:
        pieces = _PIECE.findall(text)
        if len(pieces) > max_tokens:
            return "".join(pieces[:max_tokens]).strip(), "length"
    return text, "stop"


def _chat_reply(body: dict[str, Any], messages: list[Any]) -> _Reply:
    last = messages[-1] if isinstance(messages[-1], dict) else {}
    user_text = ""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            user_text = _short(_text_of(message.get("content")))
            break
    tools = [
        t for t in body.get("tools") or [] if isinstance(t, dict) and t.get("type") == "function"
    ]
    tool_choice = body.get("tool_choice")
    if tools and tool_choice != "none" and last.get("role") != "tool":
        tool = _chosen_tool(tools, tool_choice, lambda t: t.get("function") or {})
        function = tool.get("function") or {}
        arguments = _example(
            function.get("parameters") or {}, function.get("parameters") or {}, user_text
        )
        call = {
            "id": f"call_standin_{hashlib.sha256(user_text.encode()).hexdigest()[:12]}",
            "type": "function",
            "function": {"name": function.get("name", "tool"), "arguments": json.dumps(arguments)},
        }
        return _Reply(tool_calls=[call], finish_reason="tool_calls")
    if last.get("role") == "tool":
        text = f"The tool returned: {_short(_text_of(last.get('content')))}"
    else:
        text = _structured(body.get("response_format"), user_text) or f"Echo: {user_text}"
    text, finish = _limit(text, body.get("max_completion_tokens") or body.get("max_tokens"))
    return _Reply(text=text, finish_reason=finish)


def _chosen_tool(tools: list[dict[str, Any]], tool_choice: Any, spec: Any) -> dict[str, Any]:
    if isinstance(tool_choice, dict):
        wanted = tool_choice.get("name") or (tool_choice.get("function") or {}).get("name")
        for tool in tools:
            if spec(tool).get("name") == wanted:
                return tool
    return tools[0]


def _structured(response_format: Any, text: str) -> str | None:
    if not isinstance(response_format, dict):
        return None
    kind = response_format.get("type")
    if kind == "json_schema":
        spec = response_format.get("json_schema") or response_format
        schema = spec.get("schema") or {}
        return json.dumps(_example(schema, schema, text))
    if kind == "json_object":
        return json.dumps({"echo": text})
    return None


def _example(schema: Any, root: Any, text: str, depth: int = 0) -> Any:
    """A deterministic value that fits a JSON schema (enough for strict structured output)."""
    if not isinstance(schema, dict) or depth > 12:
        return None
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        return _example(target, root, text, depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            typed = [o for o in options if not (isinstance(o, dict) and o.get("type") == "null")]
            return _example((typed or options)[0], root, text, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties") or {}
        return {name: _example(sub, root, text, depth + 1) for name, sub in properties.items()}
    if kind == "array":
        count = max(1, int(schema.get("minItems") or 1))
        return [_example(schema.get("items") or {}, root, text, depth + 1) for _ in range(count)]
    if kind == "integer":
        return int(schema.get("minimum") or 1)
    if kind == "number":
        return float(schema.get("minimum") or 1.0)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    if schema.get("format") == "date-time":
        return "2025-01-01T00:00:00Z"
    if schema.get("format") == "date":
        return "2025-01-01"
    return text or "stand-in"


class _Usage:
    def __init__(self, prompt: int, completion: int, cached: int, reasoning: int) -> None:
        self.prompt = prompt
        self.completion = completion
        self.cached = cached
        self.reasoning = reasoning

    def chat(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt,
            "completion_tokens": self.completion,
            "total_tokens": self.prompt + self.completion,
            "prompt_tokens_details": {"cached_tokens": self.cached, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": self.reasoning,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    def responses(self) -> dict[str, Any]:
        return {
            "input_tokens": self.prompt,
            "input_tokens_details": {"cached_tokens": self.cached},
            "output_tokens": self.completion,
            "output_tokens_details": {"reasoning_tokens": self.reasoning},
            "total_tokens": self.prompt + self.completion,
        }


def _usage(
    state: OpenAIStandIn, units: list[Any], reply: _Reply, model: str, reasoning: Any
) -> _Usage:
    unit_tokens = [
        3 + _tokens(_text_of(u.get("content")) if isinstance(u, dict) else str(u)) for u in units
    ]
    prompt = 3 + sum(unit_tokens)
    cached = state._cached_tokens(units, unit_tokens)
    visible = _tokens(reply.output_text())
    thinking = 0
    if _REASONING_MODEL.match(model) or reasoning:
        thinking = 16 + 2 * visible
    return _Usage(prompt, visible + thinking, min(cached, prompt), thinking)


# -- the Responses API ---------------------------------------------------------------------------


def _response_input_messages(body: dict[str, Any]) -> list[Any]:
    """The request's input as a list of items (instructions first, as a system message)."""
    items: list[Any] = []
    if isinstance(body.get("instructions"), str):
        items.append({"role": "system", "content": body["instructions"]})
    raw = body.get("input")
    if isinstance(raw, str):
        items.append({"role": "user", "content": raw})
    elif isinstance(raw, list):
        items.extend(raw)
    return items


def _responses_reply(body: dict[str, Any], items: list[Any]) -> _Reply:
    user_text = ""
    for item in reversed(items):
        if isinstance(item, dict) and item.get("role") == "user":
            user_text = _short(_text_of(item.get("content")))
            break
    last = items[-1] if isinstance(items[-1], dict) else {}
    tools = [
        t for t in body.get("tools") or [] if isinstance(t, dict) and t.get("type") == "function"
    ]
    tool_choice = body.get("tool_choice")
    if tools and tool_choice != "none" and last.get("type") != "function_call_output":
        tool = _chosen_tool(tools, tool_choice, lambda t: t)
        parameters = tool.get("parameters") or {}
        call = {
            "id": f"call_standin_{hashlib.sha256(user_text.encode()).hexdigest()[:12]}",
            "type": "function",
            "function": {
                "name": tool.get("name", "tool"),
                "arguments": json.dumps(_example(parameters, parameters, user_text)),
            },
        }
        return _Reply(tool_calls=[call], finish_reason="tool_calls")
    if last.get("type") == "function_call_output":
        text = f"The tool returned: {_short(_text_of(last.get('output')))}"
    else:
        text_format = (body.get("text") or {}).get("format")
        text = _structured(text_format, user_text) or f"Echo: {user_text}"
    text, finish = _limit(text, body.get("max_output_tokens"))
    return _Reply(text=text, finish_reason=finish)


def _response_object(
    state: OpenAIStandIn, body: dict[str, Any], served: str, reply: _Reply, usage: _Usage
) -> dict[str, Any]:
    output: list[dict[str, Any]] = []
    if usage.reasoning:
        output.append({"id": state._next_id("rs_"), "type": "reasoning", "summary": []})
    if reply.tool_calls:
        for call in reply.tool_calls:
            output.append(
                {
                    "id": state._next_id("fc_"),
                    "type": "function_call",
                    "call_id": call["id"],
                    "name": call["function"]["name"],
                    "arguments": call["function"]["arguments"],
                    "status": "completed",
                }
            )
    else:
        output.append(
            {
                "id": state._next_id("msg_"),
                "type": "message",
                "status": "completed",
                "role": "assistant",
                "content": [
                    {
                        "type": "output_text",
                        "text": reply.text or "",
                        "annotations": [],
                        "logprobs": [],
                    }
                ],
            }
        )
    incomplete = reply.finish_reason == "length"
    now = time.time()
    return {
        "id": state._next_id("resp_"),
        "object": "response",
        "created_at": int(now),
        "completed_at": None if incomplete else int(now),
        "status": "incomplete" if incomplete else "completed",
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "metadata": body.get("metadata") or {},
        "model": served,
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": body.get("reasoning") or {"effort": None, "summary": None},
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": body.get("text") or {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p", 1.0),
        "truncation": body.get("truncation", "disabled"),
        "usage": usage.responses(),
        "user": body.get("user"),
    }


def _response_events(response: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """The event sequence OpenAI streams for one response."""
    seq = itertools.count()
    pending = {
        **response,
        "status": "in_progress",
        "output": [],
        "usage": None,
        "incomplete_details": None,
        "completed_at": None,
    }

    def event(kind: str, **fields: Any) -> tuple[str, dict[str, Any]]:
        return kind, {"type": kind, "sequence_number": next(seq), **fields}

    yield event("response.created", response=pending)
    yield event("response.in_progress", response=pending)
    for index, item in enumerate(response["output"]):
        kind = item["type"]
        at = {"item_id": item.get("id"), "output_index": index}
        if kind == "message":
            text = item["content"][0]["text"]
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            at["content_index"] = 0
            yield event(
                "response.output_item.added", output_index=index, item={**item, "content": []}
            )
            yield event("response.content_part.added", **at, part=part)
            for piece in _PIECE.findall(text):
                yield event("response.output_text.delta", **at, delta=piece, logprobs=[])
            yield event("response.output_text.done", **at, text=text, logprobs=[])
            yield event("response.content_part.done", **at, part=item["content"][0])
        elif kind == "function_call":
            arguments = item["arguments"]
            yield event(
                "response.output_item.added", output_index=index, item={**item, "arguments": ""}
            )
            for piece in _PIECE.findall(arguments):
                yield event("response.function_call_arguments.delta", **at, delta=piece)
            yield event(
                "response.function_call_arguments.done",
                **at,
                arguments=arguments,
                name=item["name"],
            )
        else:
            yield event("response.output_item.added", output_index=index, item=item)
        yield event("response.output_item.done", output_index=index, item=item)
    final = "response.incomplete" if response["status"] == "incomplete" else "response.completed"
    yield event(final, response=response)


# -- embeddings ------------------------------------------------------------------------------------


def _embeddings(state: OpenAIStandIn, body: dict[str, Any], model: str) -> dict[str, Any]:
    raw = body.get("input")
    inputs = raw if isinstance(raw, list) and raw and not isinstance(raw[0], int) else [raw]
    if raw is None or raw == [] or raw == "":
        raise _HTTPError(400, "input must not be empty", code="invalid_input")
    dimensions = body.get("dimensions") or EMBEDDING_DIMENSIONS
    if not isinstance(dimensions, int) or not 1 <= dimensions <= 4096:
        raise _HTTPError(400, "dimensions must be an integer between 1 and 4096")
    data = []
    tokens = 0
    for index, item in enumerate(inputs):
        text = item if isinstance(item, str) else json.dumps(item)
        tokens += len(item) if isinstance(item, list) else _tokens(text)
        vector = _vector(text, dimensions)
        if body.get("encoding_format") == "base64":
            embedding: Any = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
        else:
            embedding = vector
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _vector(text: str, dimensions: int) -> list[float]:
    """A deterministic unit vector derived from the text's hash."""
    raw: list[float] = []
    counter = 0
    while len(raw) < dimensions:
        digest = hashlib.sha256(f"{counter}:{text}".encode()).digest()
        raw.extend((b - 127.5) / 127.5 for b in digest)
        counter += 1
    raw = raw[:dimensions]
    norm = sum(v * v for v in raw) ** 0.5 or 1.0
    return [round(v / norm, 6) for v in raw]


def _served_tier(body: dict[str, Any]) -> str:
    """The tier a request is served at, as OpenAI answers: the one asked for, else default."""
    asked = body.get("service_tier")
    return asked if asked in ("flex", "priority", "scale") else "default"
