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

import marshal
from typing import Any

__all__ = ["freeze_values", "snapshot", "thaw_values"]

# Containers copied per snapshot at most, and how deep: past either, the rest is shared (an
# unusually large or deep value costs the caller no more than this).
_MAX_CONTAINERS = 10_000
_MAX_DEPTH = 32


def snapshot(value: Any) -> Any:
    """`value` with its dicts, lists, tuples and sets copied (deeply, within bounds)."""
    cls = type(value)
    if cls is dict or cls is list or cls is tuple or cls is set:
        return _copy(value, 0, [_MAX_CONTAINERS])
    return value


def _copy(value: Any, depth: int, budget: list[int]) -> Any:
    cls = type(value)
    if cls is not dict and cls is not list and cls is not tuple and cls is not set:
        return value
    if depth >= _MAX_DEPTH or budget[0] <= 0:
        return value
    budget[0] -= 1
    depth += 1
    if cls is dict:
        return {key: _copy(item, depth, budget) for key, item in value.items()}
    items = [_copy(item, depth, budget) for item in value]
    return items if cls is list else cls(items)


# What `freeze_values` leaves in place of what it took out.
_TAKEN = ("\x00posthog_llm_taken",)  # a tuple of a string: never tracked by the collector


def freeze_values(props: dict[str, Any]) -> bytes | None:
    """Take the containers among `props`' values (a copy the caller made) out, as they are
    now: returns them all as one `marshal` text, where they hold only Python's plain types
    (dicts, lists, tuples, sets, strings, numbers, bytes: kept exactly, NaN and tuples
    included), else copies them in place and returns None. `thaw_values` puts them back.

    One C call and one bytes object, not objects of ours: a queued event stays one container
    for the garbage collector (the properties dict), which keeps a burst cheap to track, and
    the text is written to its exact size (nothing held beyond it while the event waits)."""
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
    try:
        data = marshal.dumps([props[key] for key in keys])
    except ValueError:  # an object of another type inside (a str subclass, a model ...)
        for key in keys:
            props[key] = _copy(props[key], 0, [_MAX_CONTAINERS])
        return None
    for key in keys:
        props[key] = _TAKEN
    return data


def thaw_values(props: dict[str, Any], data: bytes) -> None:
    """Put back what `freeze_values` took out of `props` as `data` (worker side)."""
    values = iter(marshal.loads(data))
    for key, value in props.items():
        if value is _TAKEN:
            props[key] = next(values)
