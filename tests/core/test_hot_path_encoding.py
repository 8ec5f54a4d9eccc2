"""The hot path's shortcuts give exactly what the general path gives."""

from __future__ import annotations

import datetime as _dt
import enum
import json
import os
import uuid
from collections import OrderedDict
from decimal import Decimal
from typing import Any

import pytest
from posthog_llm import Client, InMemoryDestination, _serialize
from posthog_llm._client import _iso_utc
from posthog_llm._ids import uuid4_str
from posthog_llm._serialize import (
    BASE64_PLACEHOLDER,
    MAX_EVENT_BYTES,
    encode_plain_message,
    fit_event,
    to_json_safe,
)


class Color(str, enum.Enum):
    RED = "red"


class Text(str):
    """A plain str subclass, like LangChain's `TextAccessor` (what `StrOutputParser` returns)."""


def _event(props: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {
        "event": "$ai_span",
        "distinct_id": "user-1",
        "properties": props,
        "timestamp": "2025-01-30T00:00:00+00:00",
        "uuid": "0e4d1a1c-8a5c-4d0c-9a8e-3d2f1f0b9c11",
        **fields,
    }


def _nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = [value]
    return value


PLAIN = [
    {"$ai_input": [{"role": "user", "content": 'Hi é 日本 "quoted" \\ back'}], "n": 3, "f": 0.5},
    {"$ai_input_state": {"1": True, "x": None, "nested": {"a": [1, 2.5e-7, 1e16]}}},
    {"text": "word " * 50_000},
    {"data": "see data:image/png;base64, in prose"},
    {"tuple": (1, "a")},
    {"none": None, "unicode_key_é": "\u2028 \x7f \x01 tab\t"},
    {"$ai_output_state": Text("Owls eat mice."), "nested": [Text("a"), {"b": Text("c")}]},
    {"$ai_input": [{"role": "user", "content": "word " * 10_000}], "none": None, "n": [1, 2.5]},
]
# Plain for orjson, whose values are checked where they are (the stdlib path, which scans the
# JSON text, declines them: more brackets than `to_json_safe`'s depth, a data URL's prefix).
PLAIN_VALUES = [
    {"brackets": [[{"a": [1]}]] * 40, "text": "[{" * 5_000},
    {"prose_about_urls": "see data:image/png;base64, here " * 1_000},
    {"small_prose": "see data:image/png;base64, here", "none": None},
]
CONVERTED = [
    {"when": _dt.datetime(2025, 1, 30, 12, 0)},
    {"ids": {3, 1, 2}},
    {"x": float("nan")},
    {"inf": float("-inf")},
    {"keys": {True: 1, None: 2, 1.5: 3, 7: 4, float("inf"): 5}},
    {"ordered": OrderedDict(a=1)},
    {"enum": Color.RED},
    {"image": "data:image/png;base64," + "iVBORw0KGgo" * 20},
    {"image_text": Text("data:image/png;base64," + "iVBORw0KGgo" * 20)},
    {"blob_text": Text("QUFB" * 400)},
    {"text_key": {Text("k"): 1}},
    {"big_nan": ["word " * 10_000, {"x": float("nan")}]},
    {"big_image": ["word " * 10_000, [{"url": "data:image/png;base64," + "iVBORw0KGgo" * 20}]]},
    {"big_blob": {"text": "word " * 10_000, "blob": Text("QUFB" * 400)}},
    {"big_deep": ["word " * 10_000, _nested(70)]},
    {"big_other": ["word " * 10_000, {"when": _dt.date(2025, 1, 30)}]},
    {"blob": "QUFB" * 400},
    {"deep": _nested(80)},
    {"surrogate": "bad \ud800 text"},
    {"big": "x" * (MAX_EVENT_BYTES + 10)},
]


@pytest.fixture(params=["orjson", "stdlib"])
def encoder(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both one-pass encoders: orjson, and the stdlib's when orjson is not installed."""
    if request.param == "stdlib":
        monkeypatch.setattr(_serialize, "_orjson", None)
    else:
        assert _serialize._orjson is not None
    return str(request.param)


@pytest.mark.parametrize("props", PLAIN + PLAIN_VALUES + CONVERTED)
def test_the_one_pass_encoding_equals_the_general_path(encoder: str, props: dict[str, Any]) -> None:
    expected = fit_event(to_json_safe(_event(props)), MAX_EVENT_BYTES)
    fast = encode_plain_message(_event(props), MAX_EVENT_BYTES)
    if props in PLAIN or (props in PLAIN_VALUES and encoder == "orjson"):
        assert fast is not None
    if fast is not None:
        # Same JSON (orjson may spell a float differently, e.g. 1e16 for 1e+16).
        assert json.loads(fast) == json.loads(expected)
        if encoder == "stdlib":
            assert fast == expected
    assert json.loads(expected)["event"] == "$ai_span"


def test_scrubbed_strings_and_odd_keys_take_the_general_path(encoder: str) -> None:
    event = _event({"image": "data:image/png;base64," + "A" * 100, "k": {False: 1}})
    assert encode_plain_message(event, MAX_EVENT_BYTES) is None
    props = json.loads(fit_event(to_json_safe(event)))["properties"]
    assert props["image"].endswith(BASE64_PLACEHOLDER) and props["k"] == {"False": 1}


def test_long_ids_take_the_general_path(encoder: str) -> None:
    assert encode_plain_message(_event({}, distinct_id="u" * 300), MAX_EVENT_BYTES) is None


def test_uuid4_strings_are_version_4_and_unique() -> None:
    ids = [uuid4_str() for _ in range(2_000)]
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122 and str(parsed) == text


def test_event_timestamps_are_the_text_datetime_writes() -> None:
    moments = [1.0, 1.5, 1_700_000_000.0, 1_700_000_000.0000005, 1_700_000_000.9999996]
    moments += [1_764_500_000 + i * 0.123457 for i in range(2_000)]
    for moment in moments:
        expected = _dt.datetime.fromtimestamp(moment, _dt.timezone.utc).isoformat()
        assert _iso_utc(moment) == expected


def test_captured_properties_are_a_copy_without_private_keys() -> None:
    sink = InMemoryDestination()
    client = Client(destination=sink)
    props: dict[str, Any] = {"$ai_model": "m", "$ai_input": [{"role": "user", "content": "hi"}]}
    client.capture("$ai_generation", distinct_id="u", properties=props, timestamp=1.5)
    props["$ai_model"] = "changed after capture"
    props["later"] = True
    assert client.shutdown(timeout=5)
    (event,) = sink.events
    assert event["properties"] == {"$ai_model": "m", "$ai_input": props["$ai_input"]}
    assert event["timestamp"] == "1970-01-01T00:00:01.500000+00:00"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    uuid4_str()  # the pool now holds ids the child must not reuse
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.write(write, uuid4_str().encode())
        os._exit(0)
    os.close(write)
    child_id = os.read(read, 64).decode()
    os.waitpid(pid, 0)
    os.close(read)
    parent_next = [uuid4_str() for _ in range(300)]
    assert uuid.UUID(child_id).version == 4
    assert child_id not in parent_next


def test_an_int_beyond_the_digit_limit_becomes_a_marker_and_other_ints_stay_exact(
    encoder: str,
) -> None:
    # Python refuses to write an int of more than 4300 digits as text: json.dumps raised, and
    # the whole event was skipped on the worker.
    huge = 10**5000
    exact = [2**63, -(2**64) - 1, 10**4000, -(10**300), Decimal(10**700)]
    props = {"out": huge, "nested": [{"n": -huge}], huge: 1, "exact": exact}
    event = _event(props)
    assert encode_plain_message(event, MAX_EVENT_BYTES) is None  # the exact path decides
    got = json.loads(fit_event(to_json_safe(event), MAX_EVENT_BYTES))["properties"]
    assert got["out"] == "[int of 5001 digits: 10000000…00000000]"
    assert got["nested"] == [{"n": "[int of 5001 digits: -10000000…00000000]"}]
    assert got["[int of 5001 digits: 10000000…00000000]"] == 1
    assert got["exact"] == [2**63, -(2**64) - 1, 10**4000, -(10**300), 10**700]
    odd = 123456789 * 10**4400 + 987654321
    assert to_json_safe(odd) == "[int of 4409 digits: 12345678…87654321]"
