"""OpenTelemetry: GenAI-instrumented spans as PostHog `$ai_*` events, through our sender.

>>> from opentelemetry.sdk.trace import TracerProvider
>>> from posthog_llm.integrations.otel import PostHogSpanProcessor
>>> provider = TracerProvider()
>>> provider.add_span_processor(PostHogSpanProcessor())                 # doctest: +SKIP

Spans that follow the OpenTelemetry GenAI semantic conventions (`gen_ai.operation.name` chat,
text_completion, embeddings, execute_tool, invoke_agent, create_agent), OpenInference
(`openinference.span.kind`, `llm.*`), OpenLLMetry (`traceloop.*`) or the Vercel AI SDK (`ai.*`)
become `$ai_generation`, `$ai_embedding` and `$ai_span`; each trace's root becomes its
`$ai_trace`, with the OpenTelemetry trace id. Traces without AI spans send nothing. The same
conversion serves `posthog-llm serve`'s OTLP endpoint (`/v1/traces`, `/i/v0/ai/otel`).
"""

from __future__ import annotations

from posthog_llm.instrumentation import require

require("opentelemetry.sdk.trace", "otel")

from ._processor import PostHogSpanProcessor  # noqa: E402

__all__ = ["PostHogSpanProcessor"]
