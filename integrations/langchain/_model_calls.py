"""Whether a LangChain model run traced by our handler is making the provider call running here.

A chat model built on posthog-llm's OpenAI drop-in (`ChatOpenAI(client=...)`) would have its
call reported twice: as the run's generation, and by the drop-in. LangChain opens no context of
its own while a model's code runs, so the answer comes from the stack: the innermost frame of
LangChain's model code (`_generate_with_cache`, `stream`, ... of `BaseChatModel` and `BaseLLM`),
the run managers it holds, and the frame it called, which must be the model's own method
(`_generate`, `_stream`), with no callback dispatch in between: a handler's `on_llm_end` or
`on_llm_new_token` calling a model, and a cache lookup, are the user's calls. The consumer's
code between a stream's chunks runs with that frame suspended, off the stack: its own calls are
reported. A model whose async methods run its sync code in an executor thread, and
`stream_events(version="v3")`, are reported twice still (no frame of LangChain's model code
there).
"""

from __future__ import annotations

import sys
import weakref
from typing import Any

from posthog_llm.instrumentation import GENERATION_KIND

__all__ = ["track_handler", "model_call_running"]

_MAX_FRAMES = 96
_CALLBACKS = "langchain_core.callbacks.manager"  # where LangChain dispatches to handlers
_handlers: weakref.WeakSet[Any] = weakref.WeakSet()
_model_code: frozenset[Any] | None = None


def track_handler(handler: Any) -> None:
    """Count `handler` among those whose runs `model_call_running` looks for."""
    _handlers.add(handler)


def _codes() -> frozenset[Any]:
    global _model_code
    if _model_code is None:
        from langchain_core.language_models.chat_models import BaseChatModel
        from langchain_core.language_models.llms import BaseLLM

        codes = set()
        for cls, names in (
            (BaseChatModel, ("_generate_with_cache", "_agenerate_with_cache", "stream", "astream")),
            (BaseLLM, ("_generate_helper", "_agenerate_helper", "stream", "astream")),
        ):
            for name in names:
                code = getattr(getattr(cls, name, None), "__code__", None)
                if code is not None:
                    codes.add(code)
        _model_code = frozenset(codes)
    return _model_code


def model_call_running() -> Any:
    """Whether the innermost LangChain model code on this stack runs with one of our handlers:
    the observation of its model run (the drop-in call hands it its privacy and facts), True
    when the run cannot be told (a text model's batch of prompts), else False."""
    if not any(handler._runs._live for handler in list(_handlers)):
        return False  # no run of ours is open anywhere
    codes = _codes()
    called: Any = None
    frame: Any = sys._getframe(1)
    for _ in range(_MAX_FRAMES):
        if frame is None:
            return False
        if frame.f_globals.get("__name__") == _CALLBACKS:
            return False  # a callback LangChain dispatched (from the model's code or not)
        if frame.f_code in codes:
            local = frame.f_locals
            model = local.get("self")
            if called is None or model is None or called.f_locals.get("self") is not model:
                return False  # a callback, a cache lookup: not the model's own request
            managers = local.get("run_managers") or (local.get("run_manager"),)
            from ._handler import PostHogCallbackHandler

            ours = False
            for manager in managers:
                for handler in getattr(manager, "handlers", None) or ():
                    if not isinstance(handler, PostHogCallbackHandler):
                        continue
                    ours = True
                    if len(managers) == 1:  # not one of a batch's runs: its run is known
                        obs = handler._observation_of(getattr(manager, "run_id", None))
                        if obs is not None and obs.kind == GENERATION_KIND:
                            return obs
            return ours
        called = frame
        frame = frame.f_back
    return False
