"""Model calls reported once: what a provider drop-in's call hands to the generation reporting it.

A provider drop-in call (our OpenAI, Anthropic, Gemini clients) made inside another framework's
generation (a custom LangChain chat model, a LlamaIndex `CustomLLM`) sends no event of its own:
the framework's `$ai_generation` reports that model call (`begin_call`). What the call was told
and what it read still belong to that one event:

- privacy: a call made private (`posthog_privacy_mode=True`, or its client's or context's
  privacy) makes the generation private too; privacy switched on anywhere stays on;
- facts the framework lacks (a custom model knows neither its model nor its tokens): model,
  provider, base URL, token usage (summed over the calls one generation made), stop reason,
  HTTP status, service tier, request parameters and tools, as the call read them; facts the
  framework has win;
- the call's own `posthog_*` arguments (properties, distinct id, session id, groups), on top of
  the generation's scope as per-call arguments are on top of everything else; not its trace
  id: the event belongs to the framework's trace.

A framework whose builders do this says so once (`read_deferred_calls`); under another one's
generation the drop-in call passes through untracked, as it always did.

The drop-in registers the call on the framework's observation when it starts (`defer_call`), so
its privacy is known even if it never ends; it marks the call settled when it has all its facts
instead of sending it. The integration takes `Observation.deferred` when the generation's run
ends, before its event is queued, and its builder (on the sender's worker) asks `private`,
`fill()` and `scope()`. A generation nobody called a drop-in inside costs nothing more than a
`None` check.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ._context import EMPTY_SCOPE, Scope
from ._emit import report_internal_error
from ._events import (
    PROP_CACHE_CREATION_1H_INPUT_TOKENS,
    PROP_CACHE_CREATION_5M_INPUT_TOKENS,
    PROP_CACHE_CREATION_INPUT_TOKENS,
    PROP_CACHE_READ_INPUT_TOKENS,
    PROP_INPUT_TOKENS,
    PROP_MODEL,
    PROP_OUTPUT_TOKENS,
    PROP_PROVIDER,
    PROP_REASONING_TOKENS,
    PROP_SERVICE_TIER,
    PROP_TOOLS,
    apply_privacy,
)

if TYPE_CHECKING:
    from ._observation import Observation

__all__ = [
    "DeferredCalls",
    "defer_call",
    "keep_deferred",
    "read_deferred_calls",
    "reads_deferred_calls",
]

# Counts summed over the calls of one generation, when the framework reported no usage.
_COUNTS = (
    PROP_INPUT_TOKENS,
    PROP_OUTPUT_TOKENS,
    PROP_CACHE_READ_INPUT_TOKENS,
    PROP_CACHE_CREATION_INPUT_TOKENS,
    PROP_REASONING_TOKENS,
    PROP_CACHE_CREATION_5M_INPUT_TOKENS,
    PROP_CACHE_CREATION_1H_INPUT_TOKENS,
    "$ai_web_search_count",
)
# One value each, taken from the last call that knows it when the framework does not.
_SINGLE = (
    "$ai_base_url",
    "$ai_stop_reason",
    "$ai_http_status",
    PROP_SERVICE_TIER,
    "$ai_model_parameters",
    PROP_TOOLS,
)

_lock = threading.Lock()
_readers: set[str] = set()


def read_deferred_calls(framework: str) -> None:
    """Declare that `framework`'s generation builders take `Observation.deferred` into their
    events (`DeferredCalls.private`, `fill`, `scope`): a drop-in call made inside one of its
    generations is then handed to it; otherwise it passes through, reported by neither."""
    _readers.add(framework)


def reads_deferred_calls(obs: Observation) -> bool:
    """Whether the framework of generation `obs` takes the drop-in calls made inside it."""
    return obs.framework in _readers


class DeferredCalls:
    """The provider calls one framework generation reports for them (see the module's doc).

    `calls` are the drop-in's own records (`TrackedCall`): each has `privacy`, `overrides`
    (its `posthog_*` arguments as a Scope, or None), `provider` (its provider override),
    `settled` (all its facts are in) and `properties()` (its event, built on the worker).
    """

    __slots__ = ("calls",)

    def __init__(self, calls: Iterable[Any] = ()) -> None:
        self.calls: list[Any] = list(calls)

    def __repr__(self) -> str:
        return f"<DeferredCalls {len(self.calls)}>"

    @staticmethod
    def joined(first: DeferredCalls | None, second: DeferredCalls | None) -> DeferredCalls | None:
        """Both sets as one (a call folded into the one that reports it: LlamaIndex's
        `CustomLLM.chat` calling its `complete`)."""
        if first is None:
            return second
        if second is None:
            return first
        return DeferredCalls([*first.calls, *second.calls])

    @property
    def private(self) -> bool:
        """Whether any of the calls was private: the generation is then private too."""
        return any(call.privacy for call in list(self.calls))

    def scope(self, scope: Scope) -> Scope:
        """`scope` (the generation's) with the calls' own `posthog_*` arguments on top, as a
        call's arguments are on top of everything else, and their privacy; not their trace
        id."""
        extra = EMPTY_SCOPE
        for call in list(self.calls):
            own = call.overrides
            if own is not None and own is not EMPTY_SCOPE:
                extra = extra.merged(own)
            if call.privacy and not extra.privacy_mode:
                extra = extra.merged(Scope(privacy_mode=True))
        if extra is EMPTY_SCOPE:
            return scope
        if extra.trace_id is not None:
            extra = Scope(
                distinct_id=extra.distinct_id,
                session_id=extra.session_id,
                properties=extra.properties,
                groups=extra.groups,
                privacy_mode=extra.privacy_mode,
            )
        return scope.merged(extra)

    def fill(self, props: dict[str, Any], *, model_guessed: bool = False) -> dict[str, Any]:
        """The generation's properties, in place, with what the calls knew (on the worker).

        Facts the generation has win, with two exceptions: a model the framework only guessed
        (`model_guessed`: LlamaIndex names a custom LLM by its class), and the provider of a
        generation that knows no model (LangChain names a custom chat model's provider after
        its class), which the calls' model and provider replace. Token counts are the calls'
        sum when the generation has none. A generation that names its model, provider and
        tokens itself takes nothing more from them (their events are not built: a LangChain
        `ChatOpenAI` on the drop-in). A private call makes the properties private.
        """
        calls = list(self.calls)
        facts = []
        for call in calls if model_guessed or not _knows_enough(props) else ():
            if not call.settled:
                continue  # still running (a stream nobody finished): its privacy only
            try:
                facts.append((call, call.properties()))
            except Exception as exc:  # this call's facts are lost, not the event
                report_internal_error(exc)
        if facts:
            _fill(props, facts, model_guessed)
        for call in reversed(calls):
            if call.provider:  # `posthog_provider_override`: what the user named it wins
                props[PROP_PROVIDER] = call.provider
                break
        if self.private:
            apply_privacy(props)
        return props


def _knows_enough(props: dict[str, Any]) -> bool:
    """The generation names its model, provider and tokens: the calls' events, whose building
    (their messages converted again) would add little, are not built."""
    return (
        props.get(PROP_MODEL) is not None
        and props.get(PROP_PROVIDER) is not None
        and (PROP_INPUT_TOKENS in props or PROP_OUTPUT_TOKENS in props)
    )


def _fill(props: dict[str, Any], facts: list[tuple[Any, dict[str, Any]]], guessed: bool) -> None:
    no_model = guessed or props.get(PROP_MODEL) is None
    took_model = False
    # The last call first: the answer the generation returned came from it.
    for _, known in reversed(facts):
        model = known.get(PROP_MODEL)
        if no_model and not took_model and model is not None:
            took_model = True
            props[PROP_MODEL] = model
            for key in (PROP_PROVIDER, "$ai_base_url"):
                if known.get(key) is not None:
                    props[key] = known[key]
        for key in _SINGLE:
            value = known.get(key)
            if value is not None and props.get(key) is None:
                props[key] = value
        if props.get(PROP_PROVIDER) is None and known.get(PROP_PROVIDER) is not None:
            props[PROP_PROVIDER] = known[PROP_PROVIDER]
    if PROP_INPUT_TOKENS in props or PROP_OUTPUT_TOKENS in props:
        return  # the framework's own usage
    for key in _COUNTS:
        counts = [known[key] for _, known in facts if type(known.get(key)) is int]
        if counts:
            props[key] = sum(counts)
    modalities = [known["$ai_usage"] for _, known in facts if known.get("$ai_usage")]
    if len(modalities) == 1 and "$ai_usage" not in props:
        props["$ai_usage"] = modalities[0]


def defer_call(obs: Observation, call: Any) -> None:
    """Register a drop-in's `call` with the framework generation `obs` that reports it (on the
    caller's thread, when the call starts)."""
    deferred = obs.deferred
    if deferred is None:
        with _lock:  # two calls of one generation starting at once on two threads
            deferred = obs.deferred
            if deferred is None:
                deferred = obs.deferred = DeferredCalls()
    deferred.calls.append(call)  # one C-level operation: atomic under the GIL


def keep_deferred(holder: Any, key: Any, obs: Observation) -> None:
    """A framework's generation `key` ends (or is forgotten): the drop-in calls made inside it
    (`obs.deferred`) go into `holder.deferred` (a dict by generation, made on first use), which
    carries them with its trace to the builders on the worker. Nothing when there were none."""
    deferred = obs.deferred
    if deferred is not None:
        kept = holder.deferred
        if kept is None:
            kept = holder.deferred = {}
        kept[key] = deferred
