from __future__ import annotations

import asyncio
import contextvars
import threading

import posthog_llm
from posthog_llm import current_scope


def test_nested_contexts_merge_and_restore():
    with posthog_llm.context(distinct_id="u1", properties={"a": 1}, groups={"company": "c1"}):
        with posthog_llm.context(trace_id="t1", properties={"b": 2}, privacy_mode=True):
            scope = current_scope()
            assert scope.distinct_id == "u1" and scope.trace_id == "t1"
            assert dict(scope.properties) == {"a": 1, "b": 2}
            assert dict(scope.groups) == {"company": "c1"} and scope.privacy_mode is True
        assert current_scope().trace_id is None and current_scope().privacy_mode is None
    assert current_scope().distinct_id is None


def test_privacy_once_on_is_not_switched_off_by_an_inner_false():
    with posthog_llm.context(privacy_mode=True):
        with posthog_llm.context(privacy_mode=False):
            assert current_scope().privacy_mode is True
    with posthog_llm.context(privacy_mode=False):
        with posthog_llm.context(distinct_id="u1"):
            assert current_scope().privacy_mode is False


def test_context_follows_asyncio_tasks_and_copied_threads():
    async def read() -> str | None:
        await asyncio.sleep(0)
        return current_scope().distinct_id

    async def main() -> list:
        async def one(i: int):
            with posthog_llm.context(distinct_id=f"u{i}"):
                return await asyncio.create_task(read())

        return await asyncio.gather(*(one(i) for i in range(5)))

    assert asyncio.run(main()) == [f"u{i}" for i in range(5)]

    seen: dict[str, object] = {}
    with posthog_llm.context(distinct_id="outer"):
        ctx = contextvars.copy_context()
        t1 = threading.Thread(
            target=lambda: ctx.run(lambda: seen.setdefault("copied", current_scope().distinct_id))
        )
        t2 = threading.Thread(target=lambda: seen.setdefault("plain", current_scope().distinct_id))
        t1.start(), t2.start(), t1.join(), t2.join()
    assert seen == {"copied": "outer", "plain": None}


def test_context_rejects_bad_types_at_configuration_time():
    import pytest

    with pytest.raises(TypeError, match="properties"):
        with posthog_llm.context(properties=["not", "a", "mapping"]):
            pass
    with pytest.raises(TypeError, match="privacy_mode"):
        with posthog_llm.context(privacy_mode="yes"):
            pass


def test_with_trace_id_is_the_merge_it_stands_for():
    from posthog_llm.instrumentation import Scope, make_scope, with_trace_id

    for scope in (
        Scope(),
        make_scope(distinct_id="u", trace_id="old", properties={"a": 1}, privacy_mode=True),
        make_scope(session_id="s", groups={"company": "acme"}),
    ):
        merged = scope.merged(Scope(trace_id="t-1"))
        copied = with_trace_id(scope, "t-1")
        assert copied == merged and copied.trace_id == "t-1"
        assert scope.trace_id != "t-1"  # the original is left as it was
    already = Scope(trace_id="t-1")
    assert with_trace_id(already, "t-1") is already


def test_ids_and_names_of_the_wrong_type_are_refused_with_their_name():
    import uuid

    import pytest
    from posthog_llm.instrumentation import lenient_scope, make_scope

    for bad in (["u1"], {"user": 1}, object(), True, 1.5):
        with pytest.raises(TypeError, match="distinct_id must be a string, an int or a UUID"):
            posthog_llm.context(distinct_id=bad).__enter__()
    with pytest.raises(TypeError, match="session_id"):
        make_scope(session_id=("a",))
    with pytest.raises(TypeError, match="properties names must be strings"):
        make_scope(properties={1: "a"})
    with pytest.raises(TypeError, match=r"groups\['company'\]"):
        make_scope(groups={"company": None})
    key = uuid.uuid4()
    scope = make_scope(distinct_id=42, trace_id=key, groups={"company": 7, "team": key})
    assert (scope.distinct_id, scope.trace_id) == ("42", str(key))
    assert dict(scope.groups) == {"company": 7, "team": key}
    # Read while the user's code runs: what would be refused is left out, the rest kept.
    lenient = lenient_scope(distinct_id=["u1"], session_id="s1", groups={"company": None})
    assert (lenient.distinct_id, lenient.session_id, dict(lenient.groups)) == (None, "s1", {})


def test_a_context_left_in_another_context_leaves_that_ones_identity_alone():
    # A streaming generator with its own identity, stepped in a copied context (a worker
    # thread's, as Starlette runs sync generators) and finalised later while another request
    # runs: closing it must not touch the other request's identity.
    def stream(user: str):
        with posthog_llm.context(distinct_id=user):
            yield current_scope().distinct_id
            yield current_scope().distinct_id

    abandoned = stream("user_a")
    assert contextvars.copy_context().run(next, abandoned) == "user_a"
    with posthog_llm.context(distinct_id="user_b", properties={"plan": "pro"}):
        abandoned.close()
        assert current_scope().distinct_id == "user_b"
        assert current_scope().properties == {"plan": "pro"}
    assert current_scope().distinct_id is None

    # Closed in a copy of the context it was stepped in: that copy gets its scope from before.
    def outer():
        with posthog_llm.context(distinct_id="outer"):
            stepped = stream("inner")
            assert next(stepped) == "inner"
            inner = contextvars.copy_context()
            inner.run(stepped.close)
            return inner.run(lambda: current_scope().distinct_id)

    # `next` ran in outer's context here, so the block's reset fails in the copy only.
    assert contextvars.copy_context().run(outer) == "outer"
