"""The builders' shortcuts: one guard per group of facts, and LangChain's plain usage read directly.

Whatever the shortcut, a fact that cannot be read is left out of its event, never the event, and
the error is reported (the conftest's fixture collects what was swallowed).
"""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("langchain_core")

from posthog_llm.instrumentation import normalize_usage  # noqa: E402
from posthog_llm.integrations.langchain import _builders, _usage  # noqa: E402

from tests.integrations.langchain.fakes import ProviderChatModel, chain, reply  # noqa: E402

# (what breaks, the property it feeds, a property of the same event that must survive)
FACTS = [
    ("base_url_of", "$ai_base_url", "$ai_input_tokens"),
    ("normalise_provider", "$ai_provider", "$ai_model"),
    ("served_model", None, "$ai_provider"),  # the requested model fills in
    ("extract_usage", "$ai_input_tokens", "$ai_model"),
    ("stop_reason", "$ai_stop_reason", "$ai_input_tokens"),
    ("_model_parameters", "$ai_model_parameters", "$ai_output_choices"),
    ("_tools", None, "$ai_model_parameters"),
    ("messages_to_dicts", "$ai_input", "$ai_output_choices"),
    ("output_choices", "$ai_output_choices", "$ai_input"),
    ("long_texts", None, "$ai_input"),
]


def _model() -> ProviderChatModel:
    return ProviderChatModel(
        messages=iter([reply(response_metadata={"finish_reason": "stop", "model_name": "m-1"})]),
        base_url="https://api.openai.com/v1",
    )


@pytest.mark.allow_internal_errors
@pytest.mark.parametrize(("broken", "lost", "kept"), FACTS)
def test_one_unreadable_fact_leaves_out_that_fact_only(
    handler: Any,
    events: Any,
    monkeypatch: pytest.MonkeyPatch,
    _fail_on_swallowed_internal_errors: list[BaseException],
    broken: str,
    lost: str | None,
    kept: str,
) -> None:
    def fails(*args: Any) -> Any:
        raise RuntimeError(f"cannot read {broken}")

    monkeypatch.setattr(_builders, broken, fails)
    assert chain(_model()).invoke({"question": "q"}, config={"callbacks": [handler]})

    (generation,) = events("$ai_generation")
    props = generation["properties"]
    if lost is not None:
        assert lost not in props
    assert kept in props
    assert props["$ai_trace_id"] and props["$ai_latency"] >= 0
    assert len(events("$ai_span")) == 2 and len(events("$ai_trace")) == 1
    assert {str(e) for e in _fail_on_swallowed_internal_errors} == {f"cannot read {broken}"}


def test_with_nothing_broken_every_fact_is_there(handler: Any, events: Any) -> None:
    chain(_model()).invoke({"question": "q"}, config={"callbacks": [handler]})
    (generation,) = events("$ai_generation")
    props = generation["properties"]
    for key in (
        "$ai_base_url",
        "$ai_provider",
        "$ai_model",
        "$ai_input_tokens",
        "$ai_stop_reason",
        "$ai_model_parameters",
        "$ai_input",
        "$ai_output_choices",
    ):
        assert key in props, key
    assert props["$ai_model"] == "m-1" and props["$ai_input_tokens"] == 25


@pytest.mark.allow_internal_errors
def test_a_state_that_cannot_be_read_leaves_the_other_state_of_the_span(
    handler: Any,
    events: Any,
    monkeypatch: pytest.MonkeyPatch,
    _fail_on_swallowed_internal_errors: list[BaseException],
) -> None:
    real = _builders.to_state

    def picky(value: Any, *args: Any) -> Any:
        if isinstance(value, dict) and "question" in value:
            raise RuntimeError("cannot read the input")
        return real(value, *args)

    monkeypatch.setattr(_builders, "to_state", picky)
    chain(_model()).invoke({"question": "q"}, config={"callbacks": [handler]})
    (trace,) = events("$ai_trace")
    assert "$ai_input_state" not in trace["properties"]
    assert trace["properties"]["$ai_output_state"] == "Owls eat mice."
    assert any("cannot read the input" in str(e) for e in _fail_on_swallowed_internal_errors)


@pytest.mark.parametrize("anthropic", [False, True])
@pytest.mark.parametrize(
    "usage",
    [
        {"input_tokens": 25, "output_tokens": 10, "total_tokens": 35},
        {"input_tokens": 0, "output_tokens": 3},
        {"input_tokens": 25, "output_tokens": True},  # not a count: the general path
        {"input_tokens": 25.0, "output_tokens": 10},
        {"input_tokens": 30, "output_tokens": 5, "input_token_details": {"cache_read": 10}},
    ],
)
def test_plain_usage_is_read_as_the_normaliser_reads_it(
    usage: dict[str, Any], anthropic: bool
) -> None:
    expected = normalize_usage(usage)
    if anthropic and expected.input_tokens is not None:
        cached = (expected.cache_read_input_tokens or 0) + (
            expected.cache_creation_input_tokens or 0
        )
        expected = expected._replace(input_tokens=max(0, expected.input_tokens - cached))
    provider, model = ("anthropic", "claude-sonnet-4-5") if anthropic else ("openai", "gpt-4o")
    assert _usage._standard_usage(usage, provider, model) == expected


def test_span_ids_are_the_run_ids_as_uuid_text() -> None:
    import uuid

    from posthog_llm.instrumentation import Scope
    from posthog_llm.integrations.langchain._runs import Run, Trace

    for run_id in (uuid.uuid4(), uuid.UUID(int=0), uuid.UUID(int=2**128 - 1), "not-a-uuid"):
        run = Run("chain", run_id, Trace("t", run_id, Scope(), None), "t", None, None, None, 0.0)
        assert run.span_id() == str(run_id)


def test_states_without_long_strings_are_not_copied_to_be_capped() -> None:
    from posthog_llm.integrations.langchain._messages import cap_strings

    small = {"a": ["x" * 10, {"b": 1.5, "c": None}], "d": True}
    assert cap_strings(small, 10) is small
    long = {"a": ["x" * 11, {"b": 1}]}
    capped = cap_strings(long, 10)
    assert capped is not long and capped["a"][0].startswith("x" * 10) and capped["a"][1] == {"b": 1}
    assert long == {"a": ["x" * 11, {"b": 1}]}  # copied where cut, the original left as it was


def test_a_message_is_converted_once_per_replay_and_each_event_reads_it_whole(
    handler: Any, events: Any
) -> None:
    # The prompt's output messages are the model's input, its reply the parser's input: one
    # conversion each, shared by the events of the trace.
    chain(_model()).invoke({"question": "q"}, config={"callbacks": [handler]})
    (generation,) = events("$ai_generation")
    spans = {e["properties"]["$ai_span_name"]: e["properties"] for e in events("$ai_span")}
    prompt_out = spans["ChatPromptTemplate"]["$ai_output_state"]
    assert prompt_out == generation["properties"]["$ai_input"]
    assert prompt_out[-1] == {"role": "user", "content": "q"}
    parser_in = spans["StrOutputParser"]["$ai_input_state"]
    assert [parser_in] == generation["properties"]["$ai_output_choices"]


def test_the_conversion_memo_never_answers_for_another_object_with_the_same_id() -> None:
    from langchain_core.messages import AIMessage, HumanMessage
    from posthog_llm.integrations.langchain._messages import converted

    memo: dict[int, Any] = {}
    first = HumanMessage("first")
    assert converted(first, memo) is converted(first, memo)  # made once
    other = AIMessage("other")
    memo[id(other)] = (first, {"role": "user", "content": "first"})  # an id taken over
    assert converted(other, memo) == {"role": "assistant", "content": "other"}
    assert converted(first, None) is not converted(first, None)  # no memo: made each time
