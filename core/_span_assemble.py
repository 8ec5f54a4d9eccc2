"""Which spans of one trace become events, and under which parent.

- A trace without any AI span produces nothing.
- Every AI span becomes an event; a non-AI span only when it sits between AI spans (an AI
  ancestor above it and an AI descendant below it), so a web app's HTTP and DB spans stay out.
- The local root (no parent, or a parent in another process) becomes the `$ai_trace`; a root
  that is itself a model call is also sent as its generation or embedding.
- A span's `$ai_parent_id` is its nearest ancestor that is sent; the root stands for the trace,
  and a parent that is not among the records (another batch, another process) is kept as is.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from ._span_convert import EMBEDDING_KIND, GENERATION_KIND, SPAN_KIND, kind_of
from ._span_records import SpanRecord

__all__ = ["TracePlan", "plan_trace"]


@dataclass
class TracePlan:
    trace_id: str
    root: SpanRecord | None
    # (record, kind, parent id): kind "" is a plain span kept because it sits between AI spans
    spans: list[tuple[SpanRecord, str, str]] = field(default_factory=list)


def plan_trace(records: Sequence[SpanRecord], ai_outside: Collection[str] = ()) -> TracePlan | None:
    """The events of one trace's records (all of one trace id), or None if none is AI.

    `ai_outside`: span ids of AI work not among the records (the AI root of a trace sent in
    parts, still open): the plain spans between it and AI work below are steps, as they are
    when the trace is sent whole."""
    if not records:
        return None
    kinds = {r.span_id: kind_of(r) for r in records}
    if not any(kinds.values()):
        return None
    by_id = {r.span_id: r for r in records}
    limit = len(records)  # guards against parent cycles in hostile OTLP input

    def parent_of(span_id: str) -> str | None:
        rec = by_id[span_id]
        return None if rec.parent_remote else rec.parent_id

    # A model call around another of its kind is a wrapper (OpenInference's LlamaIndex spans:
    # `predict` around `chat`, `get_query_embedding` around `_get_query_embedding`): the
    # innermost is the call, the ones around it are steps, so one call is one event.
    for rec in records:
        kind = kinds[rec.span_id]
        if kind != GENERATION_KIND and kind != EMBEDDING_KIND:
            continue
        parent = parent_of(rec.span_id)
        steps = 0
        while parent is not None and parent in by_id and steps < limit:
            if kinds[parent] == kind:
                kinds[parent] = SPAN_KIND
            parent = parent_of(parent)
            steps += 1

    # A model-call span that a model call posthog-llm reports itself joined (a provider
    # drop-in's, inside a span an instrumentation made around it) is a wrapper: a step.
    for rec in records:
        if rec.reported_call and kinds[rec.span_id] in (GENERATION_KIND, EMBEDDING_KIND):
            kinds[rec.span_id] = SPAN_KIND

    ai_below: set[str] = set()
    for rec in records:
        if not kinds[rec.span_id]:
            continue
        parent = parent_of(rec.span_id)
        steps = 0
        while parent is not None and parent in by_id and parent not in ai_below and steps < limit:
            ai_below.add(parent)
            parent = parent_of(parent)
            steps += 1

    ai_above: dict[str, bool] = {}

    def has_ai_above(span_id: str) -> bool:
        chain: list[str] = []
        parent = parent_of(span_id)
        found = False
        while parent is not None and parent in by_id and len(chain) < limit:
            if parent in ai_above:
                found = ai_above[parent] or bool(kinds[parent])
                break
            if kinds[parent]:
                found = True
                break
            chain.append(parent)
            parent = parent_of(parent)
        else:
            found = parent is not None and parent in ai_outside
        for span in chain:
            ai_above[span] = found
        return found

    sent = {span_id for span_id, kind in kinds.items() if kind}
    sent.update(span_id for span_id in ai_below if not kinds[span_id] and has_ai_above(span_id))

    root = next((r for r in records if r.parent_id is None or r.parent_remote), None)
    trace_id = records[0].trace_id
    plan = TracePlan(trace_id=trace_id, root=root)

    def nearest_sent(rec: SpanRecord) -> str:
        parent = None if rec.parent_remote else rec.parent_id
        steps = 0
        while parent is not None and parent in by_id and steps < limit:
            if root is not None and parent == root.span_id:
                return trace_id
            if parent in sent:
                return parent
            parent = parent_of(parent)
            steps += 1
        return parent if parent is not None else trace_id

    for rec in records:
        kind = kinds[rec.span_id]
        if rec is root:
            if kind in (GENERATION_KIND, EMBEDDING_KIND):
                plan.spans.append((rec, kind, trace_id))
            continue
        if rec.span_id in sent:
            plan.spans.append((rec, kind, nearest_sent(rec)))
    return plan
