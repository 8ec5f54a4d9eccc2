"""The loopback PostHog receiver the tests use: the package's own, shared with the benchmarks."""

from __future__ import annotations

from posthog_llm.local.posthog_sink import PostHogSink

__all__ = ["PostHogSink"]
