"""A trace as a tree of its events, nested by `$ai_parent_id`.

Walks are iterative: a chain of 10,000 nested spans renders without touching the recursion limit.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ._events import (
    EMBEDDING,
    EVENT_PREFIX,
    GENERATION,
    PROP_MODEL,
    PROP_PARENT_ID,
    PROP_SPAN_ID,
    PROP_SPAN_NAME,
    PROP_TRACE_ID,
    TRACE,
)

__all__ = ["Trace", "TraceNode", "build_tree"]


@dataclass(eq=False)
class TraceNode:
    """One event of a trace, with its children."""

    event: dict[str, Any]
    children: list[TraceNode] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return str(self.event.get("event", "")).replace(EVENT_PREFIX, "")

    @property
    def properties(self) -> dict[str, Any]:
        props = self.event.get("properties")
        return props if isinstance(props, dict) else {}

    @property
    def name(self) -> str:
        props = self.properties
        if self.event.get("event") in (GENERATION, EMBEDDING):
            return str(props.get(PROP_SPAN_NAME) or props.get(PROP_MODEL) or self.kind)
        return str(props.get(PROP_SPAN_NAME) or self.kind)

    def walk(self, depth: int = 0) -> Iterator[tuple[int, TraceNode]]:
        """`(depth, node)` in depth-first order, this node first."""
        for depth_, node, _ in self.walk_lines(depth):
            yield depth_, node

    def walk_lines(self, depth: int = 0) -> Iterator[tuple[int, TraceNode, tuple[bool, ...]]]:
        """Like `walk`, with whether each ancestor level (and the node) is its parent's last child.

        The flags tuple has one entry per level below this node, for drawing `├─`/`└─` lines.
        """
        stack: list[tuple[int, TraceNode, tuple[bool, ...]]] = [(depth, self, ())]
        while stack:
            level, node, lasts = stack.pop()
            yield level, node, lasts
            count = len(node.children)
            # Reversed onto the stack, so the first child comes out first.
            for index in range(count - 1, -1, -1):
                stack.append((level + 1, node.children[index], (*lasts, index == count - 1)))


@dataclass
class Trace:
    """A trace as a tree; `str(trace)` is the indented text form, `_repr_html_` shows it in Jupyter."""

    trace_id: str
    root: TraceNode
    events: list[dict[str, Any]]

    def to_text(self) -> str:
        from ._render import tree_text

        return tree_text(self.root)

    __str__ = to_text

    def _repr_html_(self) -> str:
        from ._display import trace_html

        return trace_html(self)


def build_tree(trace_id: str, events: list[dict[str, Any]]) -> TraceNode:
    """Nest events by `$ai_parent_id`; orphans and cycles hang from the root so nothing is hidden."""
    root_event = next((e for e in events if e.get("event") == TRACE), None)
    if root_event is None:
        # Named as the store's trace list names it: the least of its events' span names.
        names = [
            name
            for e in events
            if isinstance(name := (e.get("properties") or {}).get(PROP_SPAN_NAME), str) and name
        ]
        root_event = {
            "event": TRACE,
            "properties": {PROP_TRACE_ID: trace_id, PROP_SPAN_NAME: min(names, default="trace")},
            "synthetic": True,
        }
    root = TraceNode(root_event)
    nodes: dict[str, TraceNode] = {trace_id: root}
    ordered = [(e, TraceNode(e)) for e in events if e is not root_event]
    for event, node in ordered:
        span_id = node.properties.get(PROP_SPAN_ID) or event.get("uuid")
        if span_id and str(span_id) not in nodes:
            nodes[str(span_id)] = node
    parent_of: dict[int, TraceNode] = {}
    for _, node in ordered:
        parent_id = node.properties.get(PROP_PARENT_ID)
        parent = nodes.get(str(parent_id)) if parent_id is not None else None
        parent_of[id(node)] = root if parent is None or parent is node else parent
    # A parent chain that loops (a -> b -> a) never reaches the root: hang the loop from the root.
    reaches_root: set[int] = {id(root)}
    for _, node in ordered:
        path: list[TraceNode] = []
        on_path: set[int] = set()
        current = node
        while id(current) not in reaches_root and id(current) not in on_path:
            path.append(current)
            on_path.add(id(current))
            current = parent_of[id(current)]
        if id(current) in on_path:  # a cycle: cut it at the node we came back to
            parent_of[id(current)] = root
        reaches_root.update(on_path)
    for _, node in ordered:
        parent_of[id(node)].children.append(node)
    return root
