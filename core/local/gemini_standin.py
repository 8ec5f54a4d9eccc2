"""A local stand-in for the Gemini API: a real HTTP server on the loopback interface.

It answers the official `google-genai` SDK well enough for `models.generate_content` (JSON),
`models.generate_content_stream` (server-sent events), `models.embed_content`, chats built on
them, and function calling — in Gemini API and Vertex (express) mode, offline, with any API key.
Replies are deterministic and echo the prompt. It is **not** a model: label its output as
coming from a local stand-in.

>>> from posthog_llm.local.gemini_standin import GeminiStandIn
>>> from google import genai
>>> with GeminiStandIn() as server:                                     # doctest: +SKIP
...     client = genai.Client(api_key="local", http_options={"base_url": server.base_url})
...     client.models.generate_content(model="gemini-2.5-flash", contents="hello").text
'Echo: hello'

What it answers:

- `Echo: <last user text>`. With function declarations it calls the first function with
  arguments filled in from its schema; after a function response it answers
  `The tool returned: <response>`. `maxOutputTokens` cuts the answer (`MAX_TOKENS`).
- `usageMetadata` like Gemini's: `promptTokenCount` (includes cached content),
  `candidatesTokenCount`, `totalTokenCount`, `thoughtsTokenCount` for 2.5+ models or when a
  thinking budget is set, `cachedContentTokenCount` when `cachedContent` is named. The served
  model is a dated version (`modelVersion`: `gemini-2.5-flash` -> `gemini-2.5-flash-001`).
- Errors on demand: a model named `error-<status>` answers that status with a Google-style
  error body (`RESOURCE_EXHAUSTED` for 429...); `error-midstream` streams, then breaks off;
  `error-key` answers 400 quoting the API key it was sent.
- Every request is recorded in `server.requests`, newest last.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from collections.abc import Iterator
from typing import Any

from .anthropic_standin import LoopbackStandIn, StandInError, example_for, pieces, tokens

__all__ = ["GeminiStandIn"]

_ROUTE = re.compile(
    r"models/([^/:]+):(generateContent|streamGenerateContent|batchEmbedContents|embedContent)$"
)
_ERROR_MODEL = re.compile(r"^error-(\d{3})$")
_THINKING_MODEL = re.compile(r"gemini-(2\.5|[3-9])")
_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


class GeminiStandIn(LoopbackStandIn):
    """A loopback server that speaks enough of the Gemini REST API for `google-genai`.

    Point the SDK at it with `genai.Client(api_key=..., http_options={"base_url": server.base_url})`.
    """

    name = "gemini-standin"

    @property
    def base_url(self) -> str:
        return self.url + "/"

    def error_body(self, error: StandInError) -> dict[str, Any]:
        status = error.kind or _STATUS.get(error.status, "UNKNOWN")
        return {"error": {"code": error.status, "message": error.message, "status": status}}

    def handle(self, request: dict[str, Any]) -> tuple[int, Any, bool]:
        headers = request["headers"]
        if not (headers.get("x-goog-api-key") or headers.get("authorization")):
            raise StandInError(401, "API key not valid. Please pass a valid API key.")
        route = _ROUTE.search(request["path"])
        if request["method"] != "POST" or route is None:
            raise StandInError(404, f"Unknown path: {request['method']} {request['path']}")
        model, method = route.groups()
        body = request["body"]
        if not isinstance(body, dict):
            raise StandInError(400, "Expected a JSON object as request body.")
        match = _ERROR_MODEL.match(model)
        if match:
            status = int(match.group(1))
            raise StandInError(status, f"The local stand-in answers {status} for model {model}.")
        if model == "error-key":
            # A proxy that quotes the key it rejected: the case secret scrubbing is for.
            key = headers.get("x-goog-api-key") or headers.get("authorization", "")
            raise StandInError(400, f"API key not valid: {key}")
        if method == "batchEmbedContents":
            items = body.get("requests") or []
            return (
                200,
                {"embeddings": [{"values": _vector(_text(r.get("content")))} for r in items]},
                False,
            )
        if method == "embedContent":
            return 200, {"embedding": {"values": _vector(_text(body.get("content")))}}, False
        response = self._generate(body, model)
        if method == "generateContent":
            if model == "error-midstream":
                raise StandInError(500, "An internal error has occurred.")
            return 200, response, False
        return 200, _chunks(response, model == "error-midstream"), True

    def _generate(self, body: dict[str, Any], model: str) -> dict[str, Any]:
        contents = body.get("contents")
        if not isinstance(contents, list) or not contents:
            raise StandInError(400, "* GenerateContentRequest.contents: contents is not specified")
        last = contents[-1] if isinstance(contents[-1], dict) else {}
        parts = last.get("parts") or []
        function_response = next(
            (
                p["functionResponse"]
                for p in parts
                if isinstance(p, dict) and "functionResponse" in p
            ),
            None,
        )
        text = _text(last)
        config = body.get("generationConfig") or {}
        declarations = [
            d
            for tool in body.get("tools") or ()
            if isinstance(tool, dict)
            for d in tool.get("functionDeclarations") or ()
        ]
        finish = "STOP"
        out_parts: list[dict[str, Any]]
        if declarations and function_response is None:
            declaration = declarations[0]
            schema = (
                declaration.get("parameters")
                or declaration.get("parametersJsonSchema")
                or declaration.get("parameters_json_schema")  # as some SDK versions write it
                or {}
            )
            args = example_for(_lower_types(schema), schema, text or "example")
            out_parts = [{"functionCall": {"name": declaration.get("name"), "args": args}}]
        else:
            if function_response is not None:
                reply = f"The tool returned: {json.dumps(function_response.get('response'))}"
            elif isinstance(config.get("responseSchema") or config.get("responseJsonSchema"), dict):
                schema = config.get("responseSchema") or config.get("responseJsonSchema")
                reply = json.dumps(example_for(_lower_types(schema), schema, text))
            else:
                reply = f"Echo: {text}"
            limit = config.get("maxOutputTokens")
            if isinstance(limit, int) and tokens(reply) > limit:
                reply = "".join(pieces(reply)[: max(1, limit)])
                finish = "MAX_TOKENS"
            out_parts = [{"text": reply}]
        prompt = sum(tokens(_text(c)) for c in contents if isinstance(c, dict))
        system = body.get("systemInstruction")
        if isinstance(system, dict):
            prompt += tokens(_text(system))
        output = sum(tokens(p.get("text") or json.dumps(p.get("functionCall"))) for p in out_parts)
        usage: dict[str, Any] = {
            "promptTokenCount": prompt,
            "candidatesTokenCount": output,
            "totalTokenCount": prompt + output,
        }
        thinking = config.get("thinkingConfig") or {}
        if _THINKING_MODEL.search(model) or thinking.get("thinkingBudget"):
            usage["thoughtsTokenCount"] = 7
            usage["totalTokenCount"] += 7
        if body.get("cachedContent"):
            usage["cachedContentTokenCount"] = min(prompt, 10)
        return {
            "candidates": [
                {
                    "content": {"role": "model", "parts": out_parts},
                    "finishReason": finish,
                    "index": 0,
                }
            ],
            "usageMetadata": usage,
            "modelVersion": model if re.search(r"-\d{3}$", model) else f"{model}-001",
            "responseId": self.next_id("resp-"),
        }


def _lower_types(schema: Any) -> Any:
    """Gemini schemas spell types in capitals (`STRING`); the example filler wants JSON Schema."""
    if isinstance(schema, dict):
        return {
            k: (v.lower() if k == "type" and isinstance(v, str) else _lower_types(v))
            for k, v in schema.items()
        }
    if isinstance(schema, list):
        return [_lower_types(v) for v in schema]
    return schema


def _text(content: Any) -> str:
    if not isinstance(content, dict):
        return ""
    texts = [
        str(p["text"]) for p in content.get("parts") or () if isinstance(p, dict) and "text" in p
    ]
    return " ".join(texts)


def _chunks(response: dict[str, Any], fail: bool) -> Iterator[tuple[None, Any]]:
    candidate = response["candidates"][0]
    parts = candidate["content"]["parts"]
    base = {"modelVersion": response["modelVersion"], "responseId": response["responseId"]}
    usage = response["usageMetadata"]
    if "text" not in parts[0]:
        yield None, {**base, "candidates": [candidate], "usageMetadata": usage}
        return
    words = pieces(parts[0]["text"])
    for i, word in enumerate(words):
        chunk: dict[str, Any] = {
            "candidates": [{"content": {"role": "model", "parts": [{"text": word}]}, "index": 0}],
            **base,
            "usageMetadata": {
                "promptTokenCount": usage["promptTokenCount"],
                "totalTokenCount": usage["promptTokenCount"],
            },
        }
        if i == len(words) - 1:
            chunk["candidates"][0]["finishReason"] = candidate["finishReason"]
            chunk["usageMetadata"] = usage
        yield None, chunk
        if fail and i == 1:
            yield (
                None,
                {"error": {"code": 500, "message": "Stream broken off", "status": "INTERNAL"}},
            )
            return


def _vector(text: str, dimensions: int = 8) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    raw = [struct.unpack_from(">h", digest, 2 * i)[0] / 32768 for i in range(dimensions)]
    norm = sum(v * v for v in raw) ** 0.5 or 1.0
    return [v / norm for v in raw]
