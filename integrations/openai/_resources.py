"""Subclasses of the SDK's own resources whose tracked methods report to PostHog.

Only `create` / `parse` are overridden, and `stream()` to take the `posthog_*` arguments; every
other method and sub-resource is the SDK's. The SDK's `with_raw_response` /
`with_streaming_response` wrappers and `stream()` helpers call `create` / `parse` on the
resource, so they are tracked too.
"""

from __future__ import annotations

from functools import cached_property, partial
from typing import Any

from openai.resources.chat import AsyncChat, AsyncCompletions, Chat, Completions
from openai.resources.embeddings import AsyncEmbeddings, Embeddings
from openai.resources.responses import AsyncResponses, Responses
from posthog_llm.instrumentation import POSTHOG_ARGUMENTS

from ._track import CHAT, EMBEDDINGS, RESPONSES, run_async, run_sync

__all__ = [
    "TrackedChat",
    "TrackedAsyncChat",
    "TrackedResponses",
    "TrackedAsyncResponses",
    "TrackedEmbeddings",
    "TrackedAsyncEmbeddings",
    "BETA_RESPONSES",
]


def _helper_resource(resource: Any, kwargs: dict[str, Any]) -> Any:
    """The resource an SDK `stream()` helper calls `create` on: the call's `posthog_*` arguments
    are taken out of `kwargs` (the helper takes no others) and handed to that `create`."""
    given = {name: kwargs.pop(name) for name in POSTHOG_ARGUMENTS if name in kwargs}
    if not given:
        return resource
    helper = type(resource)(resource._client)
    helper.__dict__["create"] = partial(resource.create, **given)
    return helper


class TrackedCompletions(Completions):
    def create(self, *args: Any, **kwargs: Any) -> Any:
        return run_sync(CHAT, self, super().create, args, kwargs)

    def parse(self, *args: Any, **kwargs: Any) -> Any:
        return run_sync(CHAT, self, super().parse, args, kwargs)

    def stream(self, *args: Any, **kwargs: Any) -> Any:
        return Completions.stream(_helper_resource(self, kwargs), *args, **kwargs)


class TrackedAsyncCompletions(AsyncCompletions):
    async def create(self, *args: Any, **kwargs: Any) -> Any:
        return await run_async(CHAT, self, super().create, args, kwargs)

    async def parse(self, *args: Any, **kwargs: Any) -> Any:
        return await run_async(CHAT, self, super().parse, args, kwargs)

    def stream(self, *args: Any, **kwargs: Any) -> Any:
        return AsyncCompletions.stream(_helper_resource(self, kwargs), *args, **kwargs)


class TrackedChat(Chat):
    @cached_property
    def completions(self) -> Completions:
        return TrackedCompletions(self._client)


class TrackedAsyncChat(AsyncChat):
    @cached_property
    def completions(self) -> AsyncCompletions:
        return TrackedAsyncCompletions(self._client)


class TrackedResponses(Responses):
    def create(self, *args: Any, **kwargs: Any) -> Any:
        return run_sync(RESPONSES, self, super().create, args, kwargs)

    def parse(self, *args: Any, **kwargs: Any) -> Any:
        return run_sync(RESPONSES, self, super().parse, args, kwargs)

    def stream(self, *args: Any, **kwargs: Any) -> Any:
        return Responses.stream(_helper_resource(self, kwargs), *args, **kwargs)


class TrackedAsyncResponses(AsyncResponses):
    async def create(self, *args: Any, **kwargs: Any) -> Any:
        return await run_async(RESPONSES, self, super().create, args, kwargs)

    async def parse(self, *args: Any, **kwargs: Any) -> Any:
        return await run_async(RESPONSES, self, super().parse, args, kwargs)

    def stream(self, *args: Any, **kwargs: Any) -> Any:
        return AsyncResponses.stream(_helper_resource(self, kwargs), *args, **kwargs)


class TrackedEmbeddings(Embeddings):
    def create(self, *args: Any, **kwargs: Any) -> Any:
        return run_sync(EMBEDDINGS, self, super().create, args, kwargs)


class TrackedAsyncEmbeddings(AsyncEmbeddings):
    async def create(self, *args: Any, **kwargs: Any) -> Any:
        return await run_async(EMBEDDINGS, self, super().create, args, kwargs)


def _beta_responses() -> tuple[type, type] | None:
    """Tracked `beta.responses` classes, for the SDKs that have the beta Responses API."""
    try:
        from openai.resources.beta.responses import AsyncResponses as AsyncBeta
        from openai.resources.beta.responses import Responses as Beta
    except ImportError:
        return None

    class TrackedBetaResponses(Beta):
        def create(self, *args: Any, **kwargs: Any) -> Any:
            return run_sync(RESPONSES, self, super().create, args, kwargs)

    class TrackedAsyncBetaResponses(AsyncBeta):
        async def create(self, *args: Any, **kwargs: Any) -> Any:
            return await run_async(RESPONSES, self, super().create, args, kwargs)

    return TrackedBetaResponses, TrackedAsyncBetaResponses


BETA_RESPONSES = _beta_responses()
