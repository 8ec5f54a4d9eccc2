from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import decimal
import enum
import json
import random
import uuid

import pytest
from posthog_llm import Client, InMemoryDestination
from posthog_llm._serialize import (
    BASE64_PLACEHOLDER,
    TRUNCATION_MARKER,
    fit_event,
    to_json_safe,
)


class Color(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Point:
    x: int
    when: dt.datetime


class BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("boom")


def test_edge_cases_become_plain_json():
    pydantic = pytest.importorskip("pydantic")

    class Model(pydantic.BaseModel):
        name: str
        at: dt.date

    cyclic: list = [1]
    cyclic.append(cyclic)
    value = {
        "model": Model(name="n", at=dt.date(2025, 1, 30)),
        "point": Point(1, dt.datetime(2025, 1, 30, 12, 0, tzinfo=dt.timezone.utc)),
        "uuid": uuid.UUID(int=1),
        "bytes": b"\xff\x00",
        "text_bytes": b"hello",
        "set": {3, 1, 2},
        "decimal": decimal.Decimal("1.5"),
        "nan": float("nan"),
        "inf": float("-inf"),
        "enum": Color.RED,
        "cycle": cyclic,
        "object": object(),
        "bad": BadRepr(),
        "exc": ValueError("x"),
        (1, 2): "tuple key",
    }
    safe = to_json_safe(value)
    json.dumps(safe, allow_nan=False)  # must not raise
    assert safe["model"] == {"name": "n", "at": "2025-01-30"}
    assert safe["point"] == {"x": 1, "when": "2025-01-30T12:00:00+00:00"}
    assert safe["uuid"] == str(uuid.UUID(int=1))
    assert safe["bytes"] == "[2 bytes]" and safe["text_bytes"] == "hello"
    assert safe["set"] == [1, 2, 3]
    assert safe["decimal"] == 1.5
    assert safe["nan"] == "NaN" and safe["inf"] == "-Infinity"
    assert safe["enum"] == "red"
    assert safe["cycle"] == [1, "[cycle]"]
    assert safe["object"].startswith("<object object")
    assert "repr failed" in safe["bad"]
    assert safe["exc"] == "ValueError: x"
    assert safe["(1, 2)"] == "tuple key"


def test_shared_references_are_not_cycles():
    shared = {"a": 1}
    assert to_json_safe([shared, shared]) == [{"a": 1}, {"a": 1}]


def test_base64_images_are_replaced():
    image = "data:image/png;base64," + "iVBORw0KGgo" * 500
    blob = base64.b64encode(random.Random(7).randbytes(4000)).decode()  # an audio clip, say
    safe = to_json_safe(
        {
            "content": [{"type": "image_url", "image_url": {"url": image}}],
            "raw": blob,
            "text": "a " * 3000,
        }
    )
    assert safe["content"][0]["image_url"]["url"] == "data:image/png;base64," + BASE64_PLACEHOLDER
    assert safe["raw"] == BASE64_PLACEHOLDER
    assert safe["text"] == "a " * 3000  # ordinary text is kept


def test_a_long_run_of_a_few_letters_is_text_not_base64():
    # Only [A-Za-z0-9+/=_-] and no space, but not the spread of symbols base64 of data has.
    assert to_json_safe({"x": "a" * 5000, "digest": "0123456789abcdef" * 100}) == {
        "x": "a" * 5000,
        "digest": "0123456789abcdef" * 100,
    }
    client = Client(destination=(sink := InMemoryDestination()))
    client.capture("$ai_generation", distinct_id="u", properties={"$ai_input": "x" * 3_000_000})
    client.capture("big", distinct_id="u", properties={"x": "a" * 2_000_000})
    assert client.flush(10)
    generation, big = sink.events
    assert generation["properties"]["$ai_input"] == "x" * 3_000_000  # within the AI event limit
    assert big["properties"]["x"].startswith("a" * 1000)  # cut to fit, with the visible marker
    assert big["properties"]["x"].endswith(TRUNCATION_MARKER)
    client.shutdown(1)


def test_oversized_event_is_truncated_not_dropped():
    event = {
        "event": "$ai_generation",
        "distinct_id": "u",
        "properties": {
            "$ai_trace_id": "t",
            "$ai_model": "gpt-4o",
            "$ai_input_tokens": 7,
            "$ai_input": [{"role": "user", "content": "x " * 1_000_000}],
            "$ai_output_choices": [{"role": "assistant", "content": "y " * 300_000}],
        },
    }
    data = fit_event(event, 900_000)
    assert len(data) <= 900_000
    parsed = json.loads(data)
    props = parsed["properties"]
    assert (
        props["$ai_trace_id"] == "t"
        and props["$ai_model"] == "gpt-4o"
        and props["$ai_input_tokens"] == 7
    )
    assert TRUNCATION_MARKER in props["$ai_input"][0]["content"]
    assert props["$ai_input"][0]["role"] == "user"


def test_many_large_custom_properties_are_cut_too():
    event = {"event": "e", "properties": {f"k{i}": "z" * 200_000 for i in range(10)}}
    data = fit_event(event, 900_000)
    assert len(data) <= 900_000
    assert TRUNCATION_MARKER in json.loads(data)["properties"]["k0"]


def test_truncation_is_fast_for_40000_small_properties_and_fits():
    props = {f"key_{i}": f"value {i}" for i in range(40_000)}
    props["$ai_trace_id"] = "t"
    data = fit_event({"event": "e", "distinct_id": "u", "properties": props}, 100_000)
    assert len(data) <= 100_000
    parsed = json.loads(data)["properties"]
    assert parsed["$ai_trace_id"] == "t"
    assert parsed["posthog_llm_removed_properties"] > 0


def test_posthogs_own_properties_outlast_many_small_custom_ones():
    # Removal goes largest first within a group: PostHog's own `$` properties, larger than
    # each tiny custom one, went before any of them (a personless event then made a person).
    props = {f"k{i}": i for i in range(120_000)}
    own = {
        "$process_person_profile": False,
        "$geoip_disable": True,
        "$groups": {"company": "acme"},
        "$session_id": "session-1",
        "$lib": "posthog-llm",
        "$lib_version": "1.0.0",
    }
    props.update(own)
    data = fit_event({"event": "e", "distinct_id": "u", "properties": props}, 900_000)
    assert len(data) <= 900_000
    parsed = json.loads(data)["properties"]
    assert parsed["posthog_llm_removed_properties"] > 0
    assert {key: parsed.get(key) for key in own} == own


def test_huge_distinct_id_and_event_name_are_cut_by_fit_event():
    event = {"event": "n" * 50_000_000, "distinct_id": "d" * 50_000_000, "properties": {}}
    data = fit_event(event, 900_000)
    parsed = json.loads(data)
    assert len(parsed["event"]) == 200 and len(parsed["distinct_id"]) == 200


@pytest.mark.parametrize(
    "props",
    [
        {"$ai_input": [{"role": "user", "content": "é" * 100} for _ in range(50_000)]},
        {"deep": {"a": [["q" * 1_000] * 100] * 100}},
        {"many": ["x" * 10] * 300_000},
        {"$ai_input": "\ud800" * 1_000_000},
        {f"k{i}": "z" * 200_000 for i in range(10)} | {"$ai_model": "m" * 2_000_000},
        {"esc": '"\\\n\x00' * 300_000},
    ],
)
def test_fit_event_result_is_always_under_the_limit(props):
    data = fit_event({"event": "e", "distinct_id": "u", "properties": props}, 900_000)
    assert len(data) <= 900_000
    json.loads(data)  # still valid JSON


def test_lone_surrogates_become_replacement_characters():
    data = fit_event({"event": "e", "distinct_id": "u", "properties": {"s": "a\ud800b"}})
    assert json.loads(data)["properties"]["s"] == "a\ufffdb"


class _OutsideRequest:
    """Like werkzeug's LocalProxy outside a request: every attribute lookup raises, even the
    `__class__` that `isinstance` reads."""

    def __getattribute__(self, name: str) -> object:
        if name in ("__repr__", "__reduce_ex__"):
            return object.__getattribute__(self, name)
        raise RuntimeError("Working outside of request context.")

    def __repr__(self) -> str:
        return "<LocalProxy unbound>"


def test_a_value_whose_attributes_raise_becomes_its_text_not_an_error():
    value = {"user": _OutsideRequest(), "q": "hello"}
    assert to_json_safe(value) == {"user": "<LocalProxy unbound>", "q": "hello"}


def test_numpy_arrays_are_lists_whatever_their_size_and_scalars_are_values():
    np = pytest.importorskip("numpy")
    safe = to_json_safe(
        {"one": np.array([5]), "nested": np.array([[0.25]]), "two": np.array([5, 6])}
        | {"scalar": np.float32(1.5), "zero_d": np.array(7)}
    )
    assert safe == {"one": [5], "nested": [[0.25]], "two": [5, 6], "scalar": 1.5, "zero_d": 7}
