"""Stream tracking: which trace lazily run work belongs to.

A streamed query returns a generator before its LLM call runs; the work the consumer later
drives starts *root* spans. Remembering the generator frames a span returned lets that work find
its trace again, by walking the stack for a remembered frame (only when a span has no parent and
some generator is remembered).
"""

from __future__ import annotations

import sys
import threading
import weakref
from typing import Any

from ._records import StreamFrame, Trace
from ._replay import kind_of
from ._spans import LLM

__all__ = ["StreamTracking", "MAX_STACK_WALK"]

MAX_STACK_WALK = 64


class StreamTracking:
    """Mixin of `PostHogLlamaIndexHandler`: remembered stream generators, by frame."""

    max_pending: int
    _frames: dict[int, StreamFrame]
    _gens: dict[str, tuple[Trace, list[Any]]]
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

    def _remember_stream(
        self, gen_obj: Any, trace: Trace, id_: str, instance: Any, inner: bool = False
    ) -> None:
        """Remember a generator a span returned, so lazily run work finds its trace.

        `inner`: returned by an internal span (known not to be an LLM call)."""
        frame = getattr(gen_obj, "gi_frame", None) or getattr(gen_obj, "ag_frame", None)
        if frame is None:
            return
        slot = None
        llm = not inner and instance is not None and kind_of(instance, id_).kind == LLM
        if llm:
            entry = self._gens.get(id_)
            if entry is None:  # no call running (or it already ended)
                return
            slot = entry[1]
        frames = self._frames
        key = id(frame)
        known = frames.get(key)
        if (
            known is not None
            and known.trace is trace
            and not llm
            and not known.llm
            and known.frame() is frame
        ):
            return  # the same generator handed up through nested spans
        remembered = StreamFrame(key, trace, id_, llm)
        # No callback: an entry goes when its LLM call ends or its trace is sent or evicted
        # (the map is bounded as well); a collected generator's entry matches no frame.
        remembered.ref = weakref.ref(gen_obj)
        if len(frames) >= self.max_pending:
            self._trim(frames)
        frames[key] = remembered
        if slot is not None:
            slot[3] = key
        else:
            with self._lock:
                if trace.streams is None:
                    trace.streams = []
                trace.streams.append(key)

    def _stream_origin(self, llm: bool = False) -> StreamFrame | None:
        """The remembered generator this code is running inside, if any (walks the stack).

        `llm`: only a generator an LLM call returned (astream_chat runs stream_chat lazily from
        inside it, and the inner call folds into it)."""
        frames = self._frames
        if llm and len(frames) <= 16:
            # Usually no remembered generator belongs to an LLM call (a streamed query's
            # response generators do not): a glance at a few entries saves the stack walk.
            if not any(remembered.llm for remembered in list(frames.values())):
                return None
        frame: Any = sys._getframe(2)
        for _ in range(MAX_STACK_WALK):
            if frame is None:
                return None
            entry = frames.get(id(frame))
            if entry is not None and (entry.llm or not llm) and entry.frame() is frame:
                return entry
            frame = frame.f_back
        return None
