"""Reading one trace's events as a tree, for assertions."""

from __future__ import annotations

from typing import Any


class Tree:
    """The events of exactly one trace, with lookups by name and parent."""

    def __init__(self, events: list[dict[str, Any]]) -> None:
        ai = [e for e in events if e["event"].startswith("$ai_")]
        trace_ids = {e["properties"]["$ai_trace_id"] for e in ai}
        assert len(trace_ids) == 1, f"expected one trace, got {len(trace_ids)}: {_names(ai)}"
        self.trace_id = trace_ids.pop()
        roots = [e for e in ai if e["event"] == "$ai_trace"]
        assert len(roots) == 1, f"expected one $ai_trace, got {len(roots)}: {_names(ai)}"
        self.root = roots[0]
        self.events = ai
        ids = {self.trace_id} | {
            e["properties"]["$ai_span_id"] for e in ai if "$ai_span_id" in e["properties"]
        }
        for e in ai:
            if e is not self.root:
                parent = e["properties"].get("$ai_parent_id")
                assert parent in ids, f"{_name(e)} has parent {parent!r}, not in the trace"
        distinct = {e["distinct_id"] for e in ai}
        assert len(distinct) == 1, f"one trace, several distinct ids: {distinct}"

    def find(self, event: str, name_part: str | None = None) -> dict[str, Any]:
        found = [
            e
            for e in self.events
            if e["event"] == event
            and (name_part is None or name_part in (e["properties"].get("$ai_span_name") or ""))
        ]
        assert len(found) == 1, (
            f"{event} {name_part!r}: {len(found)} found in {_names(self.events)}"
        )
        return found[0]["properties"]

    def span_id(self, props: dict[str, Any]) -> str:
        if props is self.root["properties"]:
            return self.trace_id
        return str(props["$ai_span_id"])

    def parent_of(self, props: dict[str, Any]) -> str:
        return str(props["$ai_parent_id"])

    def is_under(self, child: dict[str, Any], ancestor: dict[str, Any]) -> bool:
        """Whether `ancestor` is on `child`'s path to the root."""
        by_id = {
            self.span_id(e["properties"]): e["properties"]
            for e in self.events
            if e is self.root or "$ai_span_id" in e["properties"]
        }
        target = self.span_id(ancestor)
        node = child
        for _ in range(100):
            parent = node.get("$ai_parent_id")
            if parent is None:
                return False
            if parent == target:
                return True
            node = by_id.get(parent)  # type: ignore[assignment]
            if node is None:
                return False
        return False


def _name(e: dict[str, Any]) -> str:
    return f"{e['event']}:{e['properties'].get('$ai_span_name')}"


def _names(events: list[dict[str, Any]]) -> list[str]:
    return [_name(e) for e in events]
