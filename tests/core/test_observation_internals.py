"""The open observation: span ids made on first read, and closing without a resolver call."""

from __future__ import annotations

import uuid
from typing import Any

from posthog_llm import Scope
from posthog_llm._observation import _resolvers
from posthog_llm.instrumentation import (
    OUTSIDE,
    close_observation,
    current_observation,
    open_observation,
    register_resolver,
)


def test_a_span_id_given_as_an_object_reads_as_its_string_once():
    run_id = uuid.uuid4()
    obs = open_observation("span", trace_id="t", span_id=run_id, scope=Scope(trace_id="t"))
    try:
        assert obs.span_id == str(run_id)
        assert obs.span_id is obs.span_id  # made once, then kept
        assert str(run_id) in repr(obs)
    finally:
        close_observation(obs)


def test_a_string_span_id_is_kept_as_given():
    obs = open_observation("span", trace_id="t", span_id="s-1", scope=Scope(trace_id="t"))
    try:
        assert obs.span_id == "s-1"
    finally:
        close_observation(obs)


def test_closing_restores_the_nearest_open_ancestor_and_reads_still_ask_the_resolver():
    scope = Scope(trace_id="t")
    answers: list[Any] = []

    def resolve() -> Any:
        return answers[-1] if answers else OUTSIDE

    register_resolver("test-fw", resolve)
    try:
        outer = open_observation("span", trace_id="t", span_id="outer", scope=scope)
        root = open_observation(
            "trace", trace_id="t", span_id="root", scope=scope, framework="test-fw", parent=outer
        )
        middle = open_observation(
            "span", trace_id="t", span_id="mid", scope=scope, framework="test-fw", parent=root
        )
        child = open_observation(
            "span", trace_id="t", span_id="kid", scope=scope, framework="test-fw", parent=middle
        )
        middle.closed = True  # ended elsewhere (another context)
        close_observation(child)
        # Skips the closed middle; the resolver decides at read time, not at close time.
        answers.append(root)
        assert current_observation() is root
        answers.append(OUTSIDE)
        assert current_observation() is outer  # the framework's frames are skipped
        close_observation(root)
        close_observation(outer)
        assert current_observation() is None
    finally:
        _resolvers.pop("test-fw", None)
