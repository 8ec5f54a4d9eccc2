"""The collector's hold on AI traces whose root has not come: bounded, oldest out first."""

from __future__ import annotations

import time

import pytest
from posthog_llm.local._otlp_hold import HeldTraces
from posthog_llm.local.server import ServeError, start_server


def hold(held: HeldTraces, trace_id: str, records: list, authorization: str = "") -> list:
    """Add spans that do not end the trace; the traces that had to make room."""
    released, pushed = held.merge(trace_id, records, authorization, keep=lambda rs: True)
    assert released is None
    return pushed


def release(held: HeldTraces, trace_id: str) -> list:
    """What is held of a trace, taken out (as when its root comes)."""
    released, _ = held.merge(trace_id, [], "", keep=lambda rs: False)
    return released


def test_a_held_trace_is_due_after_its_last_span_and_taken_once():
    held = HeldTraces(hold_seconds=0.05)
    hold(held, "a", [1, 2], "auth-a")
    hold(held, "b", [3], "auth-b")
    assert held.due() == []  # both just came
    hold(held, "a", [4], "auth-a")  # a new span of "a": its hold starts again
    time.sleep(0.06)
    assert [trace for trace, _, _ in held.due()] == ["b", "a"]  # by last arrival
    assert held.due() == [] and len(held) == 0
    hold(held, "c", [5])
    assert release(held, "c") == [5] and release(held, "c") == []


def test_over_the_bound_the_trace_held_longest_makes_room():
    held = HeldTraces(hold_seconds=60, max_spans=3)
    assert hold(held, "a", [1, 2], "x") == []
    assert hold(held, "b", [3, 4], "y") == [("a", [1, 2], "x")]
    assert [trace for trace, _, _ in held.due(everything=True)] == ["b"]
    assert hold(held, "c", [1, 2, 3, 4], "z") == [("c", [1, 2, 3, 4], "z")]  # alone over it


def test_merge_adds_to_what_is_held_and_releases_it_whole():
    held = HeldTraces(hold_seconds=60)
    waiting = lambda records: "root" not in records  # noqa: E731
    assert held.merge("t", ["a"], "", waiting) == (None, [])
    assert held.merge("t", ["b"], "", waiting) == (None, [])  # both kept, neither replaced
    assert held.merge("t", ["root"], "", waiting) == (["a", "b", "root"], [])
    assert len(held) == 0


@pytest.mark.parametrize("bad", [-1, "10", None, True])
def test_the_hold_must_be_a_number_of_seconds(tmp_path, bad):
    with pytest.raises(ServeError, match="otlp_hold_seconds"):
        start_server(str(tmp_path / "e.db"), otlp_hold_seconds=bad)


def test_the_hold_is_bounded_in_bytes_too():
    held = HeldTraces(hold_seconds=60, max_bytes=1_000, weigh=len)
    assert hold(held, "a", ["x" * 600]) == []
    assert hold(held, "b", ["y" * 600]) == [("a", ["x" * 600], "")]  # 1,200 bytes: a goes
    assert hold(held, "c", ["z" * 2_000]) == [("b", ["y" * 600], ""), ("c", ["z" * 2_000], "")]
    assert len(held) == 0
