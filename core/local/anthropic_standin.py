"""A local stand-in for Anthropic's Messages API: a real HTTP server on the loopback interface.

It answers the official `anthropic` SDK well enough for `messages.create` (JSON and server-sent
event streams), the `messages.stream(...)` helper, `messages.parse` (structured output), tool use,
extended thinking, prompt caching and the server-side web search tool, also under Vertex's
`:rawPredict` / `:streamRawPredict` paths and Bedrock's `/model/{id}/invoke` (JSON only) — offline, with any API key. Replies are deterministic
and echo the prompt. It is **not** a model: label its output as coming from a local stand-in.

>>> from posthog_llm.local.anthropic_standin import AnthropicStandIn
>>> import anthropic
>>> with AnthropicStandIn() as server:                                  # doctest: +SKIP
...     client = anthropic.Anthropic(base_url=server.base_url, api_key="sk-ant-local")
...     reply = client.messages.create(model="claude-haiku-4-5", max_tokens=100,
...                                    messages=[{"role": "user", "content": "hello"}])
...     reply.content[0].text
'Echo: hello'

What it answers:

- `Echo: <last user text>`. With tools it calls the first tool (or the one `tool_choice` names)
  with arguments filled in from its JSON schema; after a tool result it answers
  `The tool returned: <result>`. With `thinking` enabled a thinking block comes first. With a
  JSON-schema output format it answers a JSON object that fits the schema. `max_tokens` cuts the
  answer (`stop_reason` "max_tokens").
- Usage like Anthropic's: `input_tokens` excludes cache reads and writes. Blocks marked with
  `cache_control` are written to the cache the first time (`cache_creation_input_tokens`, split
  into `ephemeral_5m_input_tokens` / `ephemeral_1h_input_tokens` by the block's `ttl`) and read
  from it afterwards (`cache_read_input_tokens`). A `web_search_*` server tool counts one search
  (`server_tool_use.web_search_requests`). Tokens are words and punctuation marks.
- Errors on demand: a model named `error-<status>` (429, 500, 529, 400...) answers that status
  with an Anthropic-style error body; `error-midstream` streams a little, then an error event;
  `error-key` answers 401 quoting the API key it was sent (as some gateways do).
- Every request is recorded in `server.requests`, newest last.
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import json
import re
import socket
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["AnthropicStandIn", "StandInError", "LoopbackStandIn"]

_TOKEN = re.compile(r"\w+|[^\w\s]")
_PIECE = re.compile(r"\s*\S+")
_ERROR_MODEL = re.compile(r"^error-(\d{3})$")
_VERTEX_PATH = re.compile(r"/models/([^/:]+):(rawPredict|streamRawPredict)$")
_BEDROCK_PATH = re.compile(r"^/model/([^/]+)/invoke$")  # JSON only: no AWS event streams

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


class StandInError(Exception):
    """An HTTP error a stand-in answers with."""

    def __init__(self, status: int, message: str, kind: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind


def tokens(text: str) -> int:
    return len(_TOKEN.findall(text))


def pieces(text: str) -> list[str]:
    """The text in streamable pieces (a word with its leading space)."""
    return _PIECE.findall(text) or [text]


def example_for(schema: Any, root: Any, text: str, depth: int = 0) -> Any:
    """A value that fits a JSON schema (for structured output and tool arguments)."""
    if not isinstance(schema, dict) or depth > 6:
        return text
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        return example_for(target, root, text, depth + 1)
    for key in ("anyOf", "oneOf", "allOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            return example_for(schema[key][0], root, text, depth + 1)
    if "enum" in schema and schema["enum"]:
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        return {name: example_for(sub, root, text, depth + 1) for name, sub in props.items()}
    if kind == "array":
        return [example_for(schema.get("items") or {}, root, text, depth + 1)]
    if kind == "integer":
        return 1
    if kind == "number":
        return 1.5
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return text


class LoopbackStandIn:
    """A threaded loopback HTTP server; subclasses implement `handle(request)`.

    Use `start()` / `close()`, or a `with` block. Requests are recorded in `requests`.
    """

    name = "standin"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        latency: float = 0.0,
        chunk_delay: float = 0.0,
        max_recorded: int = 1000,
    ) -> None:
        self.host = host
        self.port = port
        self.latency = latency
        self.chunk_delay = chunk_delay
        self.requests: collections.deque[dict[str, Any]] = collections.deque(maxlen=max_recorded)
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> Any:
        if self._server is None:
            server = _Server((self.host, self.port), _make_handler(self))
            self._server = server
            self.port = server.server_address[1]
            threading.Thread(
                target=server.serve_forever, args=(0.05,), name=self.name, daemon=True
            ).start()
        return self

    def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def url(self) -> str:
        """The server root, e.g. `http://127.0.0.1:54321`."""
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not started; use start() or with")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def last_request(self, path_part: str = "") -> dict[str, Any]:
        """The newest recorded request whose path contains `path_part`."""
        with self._lock:
            for request in reversed(self.requests):
                if path_part in request["path"]:
                    found: dict[str, Any] = request
                    return found
        raise LookupError(f"no request to a path containing {path_part!r} was recorded")

    def next_id(self, prefix: str) -> str:
        return f"{prefix}standin{next(self._ids):06d}"

    # subclasses: return (status, JSON body) or (status, iterable of (event name, data)) for SSE
    def handle(self, request: dict[str, Any]) -> tuple[int, Any, bool]:
        raise NotImplementedError

    def error_body(self, error: StandInError) -> dict[str, Any]:
        raise NotImplementedError


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default 5 resets connections when many clients connect at once

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # a client that hung up mid-stream is not news
        super().handle_error(request, client_address)


def _make_handler(standin: LoopbackStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        state = standin

    return Handler


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: LoopbackStandIn

    def setup(self) -> None:
        super().setup()
        # Several writes per answer: without TCP_NODELAY Nagle adds ~40 ms per request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        state = self.state
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body: Any = None
            if raw:
                try:
                    body = json.loads(raw)
                except ValueError:
                    raise StandInError(400, "The request body is not valid JSON.") from None
            request = {
                "method": method,
                "path": parts.path,
                "query": parse_qs(parts.query),
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body,
            }
            with state._lock:
                state.requests.append(request)
            if state.latency:
                time.sleep(state.latency)
            status, payload, stream = state.handle(request)
            if stream:
                self._send_sse(payload)
            else:
                self._send_json(status, payload)
        except StandInError as exc:
            self._send_json(exc.status, state.error_body(exc))
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _send_json(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("request-id", "req_standin")
        self.end_headers()
        self.wfile.write(data)

    def _send_sse(self, events: Iterable[tuple[str | None, Any]]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        delay = self.state.chunk_delay
        for name, data in events:
            text = f"event: {name}\n" if name else ""
            text += f"data: {json.dumps(data)}\n\n"
            self._chunk(text.encode())
            if delay:
                time.sleep(delay)
        self._chunk(b"")

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


# -- Anthropic -------------------------------------------------------------------------------------


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    texts = []
    for block in content or ():
        if isinstance(block, dict):
            if block.get("type") == "text":
                texts.append(str(block.get("text", "")))
            elif block.get("type") == "tool_result":
                texts.append(_text_of(block.get("content")))
    return " ".join(t for t in texts if t)


def _blocks(content: Any) -> list[Any]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return list(content or ())


class AnthropicStandIn(LoopbackStandIn):
    """A loopback server that speaks enough of Anthropic's Messages API for the SDK.

    `base_url` is the server root (for `anthropic.Anthropic(base_url=...)`); for
    `anthropic.AnthropicVertex(base_url=...)` use `vertex_base_url`.
    """

    name = "anthropic-standin"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._cached: set[str] = set()

    @property
    def base_url(self) -> str:
        return self.url

    @property
    def vertex_base_url(self) -> str:
        return self.url + "/v1"

    def error_body(self, error: StandInError) -> dict[str, Any]:
        kind = error.kind or _ERROR_TYPES.get(error.status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": error.message}}

    def handle(self, request: dict[str, Any]) -> tuple[int, Any, bool]:
        path, body = request["path"], request["body"]
        headers = request["headers"]
        if not (headers.get("x-api-key") or headers.get("authorization")):
            raise StandInError(401, "x-api-key header is required")
        vertex = _VERTEX_PATH.search(path) or _BEDROCK_PATH.search(path)
        if request["method"] != "POST" or not (path == "/v1/messages" or vertex):
            raise StandInError(404, f"Unknown path: {request['method']} {path}")
        if not isinstance(body, dict):
            raise StandInError(400, "Expected a JSON object as request body.")
        model = vertex.group(1) if vertex else body.get("model")
        stream = bool(body.get("stream")) or path.endswith(":streamRawPredict")
        if not isinstance(model, str) or not model:
            raise StandInError(400, "model: Field required")
        match = _ERROR_MODEL.match(model)
        if match:
            status = int(match.group(1))
            raise StandInError(status, f"The local stand-in answers {status} for model {model}.")
        if model == "error-key":
            # Some gateways quote the key they rejected: the case secret scrubbing is for.
            key = headers.get("x-api-key") or headers.get("authorization", "")
            raise StandInError(401, f"invalid x-api-key: {key}")
        if not isinstance(body.get("max_tokens"), int):
            raise StandInError(400, "max_tokens: Field required")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise StandInError(400, "messages: at least one message is required")
        message = self._message(body, model)
        if not stream:
            if model == "error-midstream":
                raise StandInError(500, "Internal server error")
            return 200, message, False
        return 200, _events(message, model == "error-midstream"), True

    def _message(self, body: dict[str, Any], model: str) -> dict[str, Any]:
        messages = body["messages"]
        last = messages[-1] if isinstance(messages[-1], dict) else {}
        content: list[dict[str, Any]] = []
        thinking = body.get("thinking")
        text = _text_of(last.get("content"))
        if isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive"):
            content.append(
                {
                    "type": "thinking",
                    "thinking": f"The user said: {text}",
                    "signature": "c3RhbmRpbg==",
                }
            )
        tools = [t for t in body.get("tools") or () if isinstance(t, dict)]
        searches = sum(1 for t in tools if str(t.get("type", "")).startswith("web_search"))
        functions = [t for t in tools if "input_schema" in t]
        after_tool = any(
            isinstance(b, dict) and b.get("type") == "tool_result"
            for b in _blocks(last.get("content"))
        )
        stop_reason = "end_turn"
        fmt = (body.get("output_config") or {}).get("format") or body.get("output_format")
        if functions and not after_tool and (body.get("tool_choice") or {}).get("type") != "none":
            choice = body.get("tool_choice") or {}
            tool = next((t for t in functions if t.get("name") == choice.get("name")), functions[0])
            schema = tool.get("input_schema") or {}
            content.append(
                {
                    "type": "tool_use",
                    "id": self.next_id("toolu_"),
                    "name": tool.get("name"),
                    "input": example_for(schema, schema, text or "example"),
                }
            )
            stop_reason = "tool_use"
        else:
            if searches:
                # The search the server ran, as its own block before the answer (as the API does).
                content.append(
                    {
                        "type": "server_tool_use",
                        "id": self.next_id("srvtoolu_"),
                        "name": "web_search",
                        "input": {"query": text or "example"},
                    }
                )
            if after_tool:
                reply = f"The tool returned: {text}"
            elif isinstance(fmt, dict) and isinstance(fmt.get("schema"), dict):
                reply = json.dumps(example_for(fmt["schema"], fmt["schema"], text))
            else:
                reply = f"Echo: {text}"
            limit = body["max_tokens"]
            if tokens(reply) > limit:
                reply = "".join(pieces(reply)[: max(1, limit)])
                stop_reason = "max_tokens"
            stops = [s for s in body.get("stop_sequences") or () if isinstance(s, str) and s]
            for stop in stops:
                if stop in reply:
                    reply = reply.split(stop, 1)[0]
                    stop_reason = "stop_sequence"
            content.append({"type": "text", "text": reply})
        usage = self._usage(body, content, searches)
        return {
            "id": self.next_id("msg_"),
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": usage,
        }

    def _usage(
        self, body: dict[str, Any], content: list[dict[str, Any]], searches: int
    ) -> dict[str, Any]:
        total = 0
        cache_read = 0
        write_5m = write_1h = 0
        prefix = hashlib.sha256()
        units: list[Any] = []
        system = body.get("system")
        if system:
            units.extend(_blocks(system))
        for message in body["messages"]:
            if isinstance(message, dict):
                units.extend(_blocks(message.get("content")))
        pending = 0
        for unit in units:
            size = tokens(json.dumps(unit, sort_keys=True)) if isinstance(unit, dict) else 0
            if isinstance(unit, dict) and unit.get("type") == "text":
                size = tokens(str(unit.get("text", "")))
            prefix.update(json.dumps(unit, sort_keys=True, default=str).encode())
            pending += size
            control = unit.get("cache_control") if isinstance(unit, dict) else None
            if isinstance(control, dict):
                key = prefix.hexdigest()
                with self._lock:
                    seen = key in self._cached
                    self._cached.add(key)
                if seen:
                    cache_read += pending
                elif control.get("ttl") == "1h":
                    write_1h += pending
                else:
                    write_5m += pending
                pending = 0
            total += size
        output = 0
        for block in content:
            if block["type"] == "text":
                output += tokens(block["text"])
            elif block["type"] == "thinking":
                output += tokens(block["thinking"])
            else:
                output += tokens(json.dumps(block.get("input")))
        return {
            "input_tokens": max(0, total - cache_read - write_5m - write_1h) + 4,
            "output_tokens": output,
            "cache_creation_input_tokens": write_5m + write_1h,
            "cache_read_input_tokens": cache_read,
            "cache_creation": {
                "ephemeral_5m_input_tokens": write_5m,
                "ephemeral_1h_input_tokens": write_1h,
            },
            "server_tool_use": {"web_search_requests": searches} if searches else None,
            "service_tier": "standard",
        }


def _events(message: dict[str, Any], fail: bool) -> Iterator[tuple[str, Any]]:
    usage = message["usage"]
    start = dict(message, content=[], stop_reason=None)
    start["usage"] = dict(usage, output_tokens=1)
    yield "message_start", {"type": "message_start", "message": start}
    yield "ping", {"type": "ping"}
    for index, block in enumerate(message["content"]):
        kind = block["type"]
        if kind == "text":
            yield "content_block_start", _start(index, {"type": "text", "text": ""})
            for i, piece in enumerate(pieces(block["text"])):
                yield "content_block_delta", _delta(index, {"type": "text_delta", "text": piece})
                if fail and i == 1:
                    error = {"type": "overloaded_error", "message": "Overloaded"}
                    yield "error", {"type": "error", "error": error}
                    return
        elif kind == "thinking":
            yield "content_block_start", _start(index, {"type": "thinking", "thinking": ""})
            delta = {"type": "thinking_delta", "thinking": block["thinking"]}
            yield "content_block_delta", _delta(index, delta)
            delta = {"type": "signature_delta", "signature": block["signature"]}
            yield "content_block_delta", _delta(index, delta)
        else:
            yield "content_block_start", _start(index, dict(block, input={}))
            arguments = json.dumps(block["input"])
            half = len(arguments) // 2
            for part in (arguments[:half], arguments[half:]):
                delta = {"type": "input_json_delta", "partial_json": part}
                yield "content_block_delta", _delta(index, delta)
        yield "content_block_stop", {"type": "content_block_stop", "index": index}
    final = {
        "output_tokens": usage["output_tokens"],
        "input_tokens": usage["input_tokens"],
        "cache_creation_input_tokens": usage["cache_creation_input_tokens"],
        "cache_read_input_tokens": usage["cache_read_input_tokens"],
        "server_tool_use": usage["server_tool_use"],
    }
    delta = {"stop_reason": message["stop_reason"], "stop_sequence": None}
    yield "message_delta", {"type": "message_delta", "delta": delta, "usage": final}
    yield "message_stop", {"type": "message_stop"}


def _start(index: int, block: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_start", "index": index, "content_block": block}


def _delta(index: int, delta: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": index, "delta": delta}
