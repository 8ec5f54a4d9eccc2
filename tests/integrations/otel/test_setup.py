"""Configuration: bad arguments fail at construction, a missing SDK names the extra."""

from __future__ import annotations

import subprocess
import sys

import pytest
from posthog_llm.integrations.otel import PostHogSpanProcessor


def test_bad_configuration_is_refused_at_construction():
    with pytest.raises(TypeError, match="privacy_mode"):
        PostHogSpanProcessor(privacy_mode="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="capture"):
        PostHogSpanProcessor(client=object())


@pytest.mark.parametrize(
    ("blocked", "module", "extra"),
    [
        ("opentelemetry", "posthog_llm.integrations.otel", "otel"),
        ("agents", "posthog_llm.integrations.openai_agents", "openai-agents"),
    ],
)
def test_a_missing_framework_names_the_extra_to_install(blocked, module, extra):
    # A fresh interpreter where the framework cannot be imported.
    code = f"import sys\nsys.modules[{blocked!r}] = None\nimport {module}\n"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert f"pip install 'posthog-llm[{extra}]'" in result.stderr


@pytest.mark.allow_internal_errors  # the default client cannot be built: said, not raised
def test_shutdown_on_a_default_client_the_environment_cannot_build_does_not_raise(monkeypatch):
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.trace import TracerProvider

    monkeypatch.setenv("POSTHOG_HOST", "ftp://example.com")  # refused by Client()
    provider = TracerProvider()
    provider.add_span_processor(PostHogSpanProcessor())
    with provider.get_tracer("t").start_as_current_span("chat gpt-4o") as span:
        span.set_attribute("gen_ai.operation.name", "chat")
    assert provider.force_flush() is True
    provider.shutdown()  # raised ValueError into the caller (and again at exit)
