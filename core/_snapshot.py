"""Values as they were when they were handed over.

Events are built on the worker thread, after the caller has moved on: a chat loop that appends
to its `messages` list, or rewrites a dict it passed, would otherwise change what an event says
was sent. The containers a value holds are copied when it is recorded; the strings, numbers and
other objects inside are shared (strings and numbers cannot change).

>>> messages = [{"role": "user", "content": "hi"}]
>>> kept = snapshot(messages)
>>> messages.append({"role": "assistant", "content": "hello"})
>>> kept
[{'role': 'user', 'content': 'hi'}]
"""

from __future__ import annotations

from typing import Any

# The one-pass encoder's orjson and options: anything orjson would not write as the exact path
# does (numpy values, str subclasses, dates, dataclasses, sets, bytes ...) raises instead.
from ._serialize import _ORJSON_OPTIONS as _STRICT
from ._serialize import _orjson

__all__ = ["bounded_weight", "freeze_values", "snapshot", "snapshot_items", "thaw_values"]

# Containers copied per snapshot at most, and how deep: past either, the rest is shared (an
# unusually large or deep value costs the caller no more than this).
_MAX_CONTAINERS = 10_000
_MAX_DEPTH = 32
# Containers and the items in them, copied per snapshot at most: a container that would take
# the count past this is shared (a million-item list costs the caller nothing, not 100 ms).
_MAX_ITEMS = 20_000


# What a container that holds itself holds in its copy: the serializer's own marker.
_CYCLE = "[cycle]"


class _TooDeep(Exception):
    """A value nested past `_MAX_DEPTH`: a cycle, or unusually deep data."""


def snapshot(value: Any) -> Any:
    """`value` with its dicts, lists, tuples and sets copied (deeply, within bounds).

    >>> node = {"name": "root"}
    >>> node["self"] = node
    >>> snapshot(node)
    {'name': 'root', 'self': '[cycle]'}
    """
    cls = type(value)
    if cls is dict or cls is list or cls is tuple or cls is set:
        try:
            return _copy(value, 0, [_MAX_CONTAINERS, _MAX_ITEMS])
        except _TooDeep:
            # Copied again, minding the path: a container that holds itself was copied once
            # per level (33 times) before the serializer could see the cycle.
            return _copy_on_path(value, 0, [_MAX_CONTAINERS, _MAX_ITEMS], set())
    return value


def snapshot_items(items: list[Any]) -> list[Any]:
    """A list of messages as sent: the list and every dict in it copied whatever its length (a
    chat loop appends to its history and edits its newest message), what they hold deeper
    within `snapshot`'s bounds.

    >>> history = [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    >>> kept = snapshot_items(history)
    >>> history[0]["content"][0]["text"] = "changed"
    >>> kept[0]["content"][0]["text"]
    'hi'
    """
    deep = snapshot(items)
    copied: list[Any] = list(items) if deep is items else deep
    for index, (item, given) in enumerate(zip(copied, items)):
        if item is given and type(given) is dict:  # past the bounds: still one level copied
            copied[index] = dict(given)
    return copied


def bounded_weight(value: Any, limit: int) -> int:
    """About how many characters `value` takes as JSON, counted until past `limit` (then a
    number above it): strings and bytes by their length, everything else a little. The walk
    costs no more than the size it counts, up to the limit.

    >>> bounded_weight({"messages": ["ab" * 10] * 3}, 1_000)
    85
    >>> bounded_weight(["x" * 500] * 10, 1_000) > 1_000
    True
    """
    total = 0
    stack = [value]
    seen: set[int] = set()
    while stack:
        item = stack.pop()
        cls = type(item)
        if cls is str or cls is bytes or cls is bytearray:
            total += len(item) + 2
        elif cls is dict or cls is list or cls is tuple or cls is set:
            if id(item) in seen:  # shared or cyclic: counted once
                continue
            seen.add(id(item))
            total += 2 + len(item)
            if cls is dict:
                for key, inner in item.items():
                    stack.append(inner)
                    total += len(key) + 3 if type(key) is str else 8
            else:
                stack.extend(item)
        else:
            total += 8
        if total > limit:
            return total
    return total


def _copy(value: Any, depth: int, budget: list[int]) -> Any:
    cls = type(value)
    if cls is not dict and cls is not list and cls is not tuple and cls is not set:
        return value
    if depth >= _MAX_DEPTH:
        raise _TooDeep
    if budget[0] <= 0 or budget[1] < len(value):
        return value
    budget[0] -= 1
    budget[1] -= len(value)
    depth += 1
    if cls is dict:
        return {key: _copy(item, depth, budget) for key, item in value.items()}
    items = [_copy(item, depth, budget) for item in value]
    return items if cls is list else cls(items)


def _copy_on_path(value: Any, depth: int, budget: list[int], path: set[int]) -> Any:
    """`_copy` for values nested past `_MAX_DEPTH`: a container already being copied (a cycle)
    is the serializer's marker; past the depth, the rest is shared."""
    cls = type(value)
    if cls is not dict and cls is not list and cls is not tuple and cls is not set:
        return value
    if id(value) in path:
        return _CYCLE
    if depth >= _MAX_DEPTH or budget[0] <= 0 or budget[1] < len(value):
        return value
    budget[0] -= 1
    budget[1] -= len(value)
    depth += 1
    path.add(id(value))
    try:
        if cls is dict:
            return {key: _copy_on_path(item, depth, budget, path) for key, item in value.items()}
        items = [_copy_on_path(item, depth, budget, path) for item in value]
        return items if cls is list else cls(items)
    finally:
        path.discard(id(value))


# What `freeze_values` leaves in place of what it took out.
_TAKEN = ("\x00posthog_llm_taken",)  # a tuple of a string: never tracked by the collector


def freeze_values(props: dict[str, Any]) -> bytes | None:
    """Take the containers among `props`' values (a copy the caller made) out, as they are
    now: returns them all as one JSON text where they hold only dicts, lists, strings and
    numbers (orjson; NaN and infinities in them become null, as JSON has no such numbers: a
    check for them measured 0.6 µs per event, a sixth of `capture`), else copies them in place
    and returns None. `thaw_values` puts them back.

    One C call and one bytes object, not objects of ours: a queued event stays one container
    for the garbage collector (the properties dict), which keeps a burst cheap to track.
    (Not `marshal`: it writes numpy values and other buffers as raw bytes, without a word.)"""
    keys = None
    for key, value in props.items():  # (a plain loop: a comprehension costs a function call)
        cls = type(value)
        if cls is dict or cls is list or cls is tuple or cls is set:
            if keys is None:
                keys = [key]
            else:
                keys.append(key)
    if keys is None:
        return None
    if _orjson is not None:
        try:
            data = _orjson.dumps([props[key] for key in keys], option=_STRICT)
        except (TypeError, ValueError):
            pass
        else:
            for key in keys:
                props[key] = _TAKEN
            # A tight copy: orjson's own result keeps its whole working buffer (a few KB,
            # held as long as the event waits); freed now, the next call reuses it.
            return bytes(memoryview(data))
    for key in keys:
        props[key] = snapshot(props[key])
    return None


def thaw_values(props: dict[str, Any], data: bytes) -> None:
    """Put back what `freeze_values` took out of `props` as `data` (worker side)."""
    values = iter(_orjson.loads(data))
    for key, value in props.items():
        if value is _TAKEN:
            props[key] = next(values)
