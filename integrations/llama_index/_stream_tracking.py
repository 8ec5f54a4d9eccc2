"""Stream tracking: which trace lazily run work belongs to.

A streamed query returns a generator before its LLM call runs; the work the consumer later
drives starts *root* spans. Remembering the generator frames a span returned lets that work find
its trace again, by walking the stack for a remembered frame.
"""

from __future__ import annotations

import sys
import threading
import weakref
from typing import Any

from ._records import Gen, Node, StreamFrame, Trace
from ._spans import LLM

__all__ = ["StreamTracking", "MAX_STACK_WALK"]

MAX_STACK_WALK = 64


class StreamTracking:
    """Mixin of `PostHogLlamaIndexHandler`: remembered stream generators, by frame."""

    max_pending: int
    _frames: dict[int, StreamFrame]
    _gens: dict[str, Gen]
    _lock: threading.Lock

    @staticmethod
    def _trim(mapping: dict[Any, Any]) -> None:
        """Drop the oldest tenth of a map that hit its bound."""
        for key in list(mapping)[: max(1, len(mapping) // 10)]:
            mapping.pop(key, None)

    def _live_streams(self, trace: Trace) -> bool:
        frames = self._frames
        for key in trace.streams or ():
            entry = frames.get(key)
            if entry is not None and entry.trace is trace and entry.frame() is not None:
                return True
        return False

    def _remember_stream(self, gen_obj: Any, node: Node, id_: str) -> None:
        """Remember a generator a span returned, so lazily run work finds its trace."""
        frame = getattr(gen_obj, "gi_frame", None) or getattr(gen_obj, "ag_frame", None)
        if frame is None:
            return
        trace = node.trace
        gen = None
        if node.span_id == id_ and node.kind.kind == LLM:
            gen = node.gen
            if gen is None or gen.done:
                return
        frames = self._frames
        key = id(frame)
        known = frames.get(key)
        if (
            known is not None
            and known.trace is trace
            and known.gen is gen
            and known.frame() is frame
        ):
            return  # the same generator handed up through nested spans
        entry = StreamFrame(key, trace, node.vis, gen)

        def forget(ref: Any, key: int = key) -> None:  # the generator was garbage collected
            known = frames.get(key)
            if known is not None and known.ref is ref:
                frames.pop(key, None)

        entry.ref = weakref.ref(gen_obj, forget)
        if len(frames) >= self.max_pending:
            self._trim(frames)
        frames[key] = entry
        if gen is not None:
            gen.frame = key
        else:
            with self._lock:
                if trace.streams is None:
                    trace.streams = []
                trace.streams.append(key)

    def _stream_origin(self, want_gen: bool = False) -> StreamFrame | None:
        """The remembered generator this code is running inside, if any (walks the stack)."""
        frames = self._frames
        if want_gen and len(frames) <= 16:
            # Usually no remembered generator belongs to an LLM call (a streamed query's
            # response generators do not): a glance at a few entries saves the stack walk.
            for remembered in list(frames.values()):  # a copy: other threads add and remove
                if remembered.gen is not None and not remembered.gen.done:
                    break
            else:
                return None
        frame: Any = sys._getframe(2)
        for _ in range(MAX_STACK_WALK):
            if frame is None:
                return None
            entry = frames.get(id(frame))
            if entry is not None and entry.frame() is frame:
                if want_gen:
                    if entry.gen is not None and not entry.gen.done:
                        return entry
                elif entry.gen is None:
                    return entry
            frame = frame.f_back
        return None
