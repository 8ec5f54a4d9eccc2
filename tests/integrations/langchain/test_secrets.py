"""Credentials a LangChain model holds never reach an event, whatever their shape."""

from __future__ import annotations

import json
from typing import Any

import pytest

pytest.importorskip("langchain_core")

from pydantic import SecretStr  # noqa: E402

from tests.integrations.langchain.fakes import (  # noqa: E402
    ProviderChatModel,
    StatusError,
    chain,
    model,
)

# No known key shape (built from parts): only what the model holds can tell it is a secret.
GATEWAY_KEY = "gw" + "-" + "0a1b2c3d4e5f6a7b"
HEADER_TOKEN = "hdr" + "-" + "9f8e7d6c5b4a"


class KeyedModel(ProviderChatModel):
    """A model whose invocation params carry its key as a `SecretStr`, as some integrations do."""

    gateway_api_key: SecretStr = SecretStr(GATEWAY_KEY)

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {**super()._identifying_params, "gateway_api_key": self.gateway_api_key}


class HeaderModel(ProviderChatModel):
    """A serializable model built with custom headers: they are in its serialized kwargs."""

    default_headers: dict[str, str] | None = None

    @classmethod
    def is_lc_serializable(cls) -> bool:
        return True


def _failing(llm: Any, handler: Any) -> None:
    with pytest.raises(StatusError):
        chain(llm).invoke({"question": "Owls?"}, config={"callbacks": [handler]})


def test_a_key_the_model_holds_is_scrubbed_from_every_event_of_the_failed_trace(handler, events):
    llm = KeyedModel(messages=iter([]), error=StatusError(f"401 invalid key {GATEWAY_KEY}", 401))
    _failing(llm, handler)
    sent = events()
    generation = [e for e in sent if e["event"] == "$ai_generation"][0]["properties"]
    assert generation["$ai_error"] == "StatusError: 401 invalid key [redacted]"
    assert [e["event"] for e in sent if e["properties"].get("$ai_is_error")] == [
        "$ai_generation",
        "$ai_trace",
    ]
    assert GATEWAY_KEY not in json.dumps(sent)  # the chain's trace repeats the error too


def test_custom_header_values_of_the_model_are_scrubbed(handler, events):
    llm = HeaderModel(
        messages=iter([]),
        default_headers={"X-Gateway-Auth": HEADER_TOKEN, "Content-Type": "application/json"},
        error=StatusError(f"401 header X-Gateway-Auth={HEADER_TOKEN!r} refused", 401),
    )
    _failing(llm, handler)
    sent = events()
    assert HEADER_TOKEN not in json.dumps(sent)
    assert any("[redacted]" in str(e["properties"].get("$ai_error")) for e in sent)


def test_a_call_that_succeeds_reads_no_secrets(handler, events, monkeypatch):
    from posthog_llm.integrations.langchain import _builders

    def boom(run: Any) -> Any:
        raise AssertionError("secrets read for a call that did not fail")

    monkeypatch.setattr(_builders, "_model_secrets", boom)
    chain(model()).invoke({"question": "Owls?"}, config={"callbacks": [handler]})
    assert len(events("$ai_generation")) == 1
