"""Shared fixtures: an in-memory client, a loopback PostHog server, and a guard that fails any
test in which posthog-llm swallowed an internal error."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

import posthog_llm
import pytest
from posthog_llm import Client, InMemoryDestination
from posthog_llm._emit import _internal_error_hooks

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.support.posthog_sink import PostHogSink  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "allow_internal_errors: the test provokes internal errors on purpose"
    )


@pytest.fixture(autouse=True)
def _fail_on_swallowed_internal_errors(request: pytest.FixtureRequest) -> Iterator[list]:
    """Internal errors are logged and swallowed in production; in tests they are failures."""
    errors: list[BaseException] = []
    _internal_error_hooks.append(errors.append)
    try:
        yield errors
    finally:
        _internal_error_hooks.remove(errors.append)
    if errors and not request.node.get_closest_marker("allow_internal_errors"):
        pytest.fail(f"posthog-llm swallowed internal errors: {errors!r}")


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path) -> Iterator[None]:
    """No test sees the developer's PostHog or provider keys (no real API is ever called), and
    the default client writes under tmp."""
    for name in (
        "POSTHOG_API_KEY",
        "POSTHOG_PROJECT_API_KEY",
        "POSTHOG_HOST",
        "OPENAI_API_KEY",
        "ANTHROPIC_API_KEY",
        "GEMINI_API_KEY",
        "GOOGLE_API_KEY",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("POSTHOG_LLM_DB", str(tmp_path / "default-events.db"))
    # The disk spool of PostHog clients goes under tmp too, never the user's cache.
    monkeypatch.setenv("POSTHOG_LLM_SPOOL_DIR", str(tmp_path / "spool"))
    posthog_llm.set_client(None)
    # "The default client cannot be built" is said once a minute: each test may expect it.
    monkeypatch.setattr(posthog_llm._client._environment_warning, "_last", 0.0)
    yield
    posthog_llm.set_client(None)


@pytest.fixture
def sink() -> InMemoryDestination:
    return InMemoryDestination()


@pytest.fixture
def client(sink: InMemoryDestination) -> Iterator[Client]:
    """Our Client delivering into memory; call `client.flush()` before reading `sink.events`."""
    c = Client(destination=sink, flush_interval=0.05)
    yield c
    c.shutdown(timeout=5)


@pytest.fixture
def events(client: Client, sink: InMemoryDestination) -> Callable[..., list[dict[str, Any]]]:
    """`events()` flushes the client and returns every event; `events("$ai_generation")` only
    those."""

    def read(name: str | None = None) -> list[dict[str, Any]]:
        assert client.flush(5)
        return sink.named(name) if name else sink.events

    return read


@pytest.fixture
def posthog_server() -> Iterator[PostHogSink]:
    """A real loopback HTTP server speaking PostHog's `/batch/` and `/capture/` API."""
    server = PostHogSink()
    yield server
    server.close()


@pytest.fixture(autouse=True)
def _no_observation_left_open() -> Iterator[None]:
    """Work that ended must not leave its span open: later, unrelated work would join it."""
    from posthog_llm.instrumentation import current_observation

    yield
    left = current_observation()
    if left is not None:
        from posthog_llm._observation import _current

        _current.set(None)
        pytest.fail(f"an observation was left open after the test: {left!r} ({left.framework})")
