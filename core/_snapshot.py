"""Values as they were when they were handed over.

Events are built on the worker thread, after the caller has moved on: a chat loop that appends
to its `messages` list, or rewrites a dict it passed, would otherwise change what an event says
was sent. The containers a value holds are copied when it is recorded; the strings, numbers and
other objects inside are shared (strings and numbers cannot change). A dict or list subclass (a
framework's `AddableDict`) is copied as a plain dict or list: the serializer writes it as one.

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

# Classes whose instances hold nothing `snapshot` copies (neither a dict, a list, a tuple nor a
# set, nor a subclass of a dict or a list): a chat history of message objects is copied in one
# call after one look-up per class, not one `isinstance` per message (~0.1 µs each, through
# `__class__` for a pydantic model). Learnt as met, up to `_MAX_LEAF_CLASSES` (classes made per
# call, as `pydantic.create_model` can, stop being learnt: checked each time instead).
_LEAF_CLASSES: set[type] = {str, int, float, bool, bytes, type(None)}
_MAX_LEAF_CLASSES = 512
# Up to this many items, a container's items are checked for leaves in a Python loop (cheaper
# than a C call's set-up); past it, in one C call.
_FEW = 8


class _TooDeep(Exception):
    """A value nested past `_MAX_DEPTH`: a cycle, or unusually deep data."""


def snapshot(value: Any) -> Any:
    """`value` with its dicts, lists, tuples and sets copied (deeply, within bounds); a dict or
    list subclass (a framework's `AddableDict`) is copied as a plain dict or list, as the
    serializer writes it (one whose `len()`, `items()` or iteration raises is shared).

    >>> node = {"name": "root"}
    >>> node["self"] = node
    >>> snapshot(node)
    {'name': 'root', 'self': '[cycle]'}
    """
    cls = type(value)
    if cls in _LEAF_CLASSES:
        return value
    if (cls is dict or cls is list) and len(value) <= _FEW:
        # The usual chain state, a few strings: one shallow copy.
        leaves = _LEAF_CLASSES
        for item in value.values() if cls is dict else value:
            if type(item) not in leaves:
                break
        else:
            return value.copy()
    try:
        if cls is dict or cls is list or cls is tuple or cls is set:
            return _copy_as(cls, value, 0, [_MAX_CONTAINERS, _MAX_ITEMS])
        if _is_leaf(cls):
            return value
        return _copy_subclass(cls, value, 0, [_MAX_CONTAINERS, _MAX_ITEMS])
    except _TooDeep:
        # Copied again, minding the path: a container that holds itself was copied once
        # per level (33 times) before the serializer could see the cycle.
        return _copy_on_path(value, 0, [_MAX_CONTAINERS, _MAX_ITEMS], set())


def _is_leaf(cls: type) -> bool:
    """Whether an instance of `cls` (not an exact dict, list, tuple or set) is shared as it is:
    anything but a dict or list subclass. The class is remembered as a leaf. (Asked of the class,
    not the instance: `isinstance` reads `__class__`, which a proxy forwards or raises from.)"""
    if issubclass(cls, (dict, list)):
        return False
    if len(_LEAF_CLASSES) < _MAX_LEAF_CLASSES:
        _LEAF_CLASSES.add(cls)
    return True


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
    if cls in _LEAF_CLASSES:
        return value
    if cls is dict or cls is list or cls is tuple or cls is set:
        return _copy_as(cls, value, depth, budget)
    if _is_leaf(cls):
        return value
    return _copy_subclass(cls, value, depth, budget)


def _copy_subclass(cls: type, value: Any, depth: int, budget: list[int]) -> Any:
    """A dict or list subclass copied as a plain dict or list."""
    try:  # its own `len()`, `items()` or iteration (the serializer's reading) may raise
        return _copy_as(dict if issubclass(cls, dict) else list, value, depth, budget)
    except _TooDeep:
        raise
    except Exception:
        return value  # shared: the serializer writes what it can read of it


def _copy_as(cls: type, value: Any, depth: int, budget: list[int]) -> Any:
    """`value` copied as a `cls` (its own class, or the dict or list it subclasses)."""
    if depth >= _MAX_DEPTH:
        raise _TooDeep
    size = len(value)
    if budget[0] <= 0 or budget[1] < size:
        return value
    budget[0] -= 1
    budget[1] -= size
    leaves = _LEAF_CLASSES
    inside = value.values() if cls is dict else value
    if size > _FEW:
        flat = leaves.issuperset(map(type, inside))
    else:
        flat = True
        for item in inside:
            if type(item) not in leaves:
                flat = False
                break
    if flat:  # only leaves in it: one shallow copy
        exact = type(value) is cls
        if exact:
            return value if cls is tuple else value.copy()  # (a tuple of leaves cannot change)
        return dict(value.items()) if cls is dict else cls(value)
    depth += 1
    # (Loops, not comprehensions: in 3.11 a comprehension is a function call of its own.)
    if cls is dict:
        copied = {}
        for key, item in value.items():
            copied[key] = _copy(item, depth, budget)
        return copied
    items = []
    for item in value:
        items.append(_copy(item, depth, budget))
    return items if cls is list else cls(items)


def _copy_on_path(value: Any, depth: int, budget: list[int], path: set[int]) -> Any:
    """`_copy` for values nested past `_MAX_DEPTH`: a container already being copied (a cycle)
    is the serializer's marker; past the depth, the rest is shared."""
    cls = type(value)
    if cls is dict or cls is list or cls is tuple or cls is set:
        return _copy_on_path_as(cls, value, depth, budget, path)
    if not issubclass(cls, (dict, list)):
        return value
    try:
        return _copy_on_path_as(dict if issubclass(cls, dict) else list, value, depth, budget, path)
    except Exception:
        return value


def _copy_on_path_as(cls: type, value: Any, depth: int, budget: list[int], path: set[int]) -> Any:
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
