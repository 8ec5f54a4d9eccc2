"""User code written against the public API, checked by `.ci/typecheck` with `mypy --strict`:
our annotations must not make a typed user's code fail (`-> Any` returned into a typed function,
an untyped decorator). Not collected by pytest (no test functions); it runs nothing on import."""

from __future__ import annotations

import posthog_llm


def rate(trace_id: str, score: int) -> str | None:
    posthog_llm.capture_metric(trace_id, "helpfulness", score)
    return posthog_llm.capture_feedback(trace_id, "Great answer!")


def capture(client: posthog_llm.Client) -> str | None:
    return client.capture("$ai_metric", distinct_id="user_123", properties={"score": 1})


@posthog_llm.observe(name="plan")
def plan(question: str) -> str:
    with posthog_llm.context(distinct_id="user_123"), posthog_llm.span("step"):
        return question.upper()


@posthog_llm.observe
async def answer(question: str) -> str:
    return plan(question)
