"""`capture`'s checks of the event name and distinct id (its hot path skips copies, not rules)."""

from __future__ import annotations

from posthog_llm import Client, InMemoryDestination


class _Name(str):
    """A str subclass, as some ORMs and enums hand out."""


def test_a_whitespace_distinct_id_becomes_personless(
    client: Client, sink: InMemoryDestination
) -> None:
    uuid = client.capture("e", distinct_id=" \t\n")
    assert client.flush(5)
    (event,) = sink.events
    assert event["distinct_id"] == uuid
    assert event["properties"]["$process_person_profile"] is False


def test_distinct_ids_that_are_not_plain_strings_are_sent_as_text(
    client: Client, sink: InMemoryDestination
) -> None:
    client.capture("a", distinct_id=42)
    client.capture("b", distinct_id=_Name("user_1"))
    assert client.flush(5)
    ids = {e["event"]: e["distinct_id"] for e in sink.events}
    assert ids == {"a": "42", "b": "user_1"}
    assert all("$process_person_profile" not in e["properties"] for e in sink.events)


def test_names_and_ids_are_sent_as_given_apart_from_the_length_cap(
    client: Client, sink: InMemoryDestination
) -> None:
    assert client.capture(" spaced event ", distinct_id=" user ") is not None
    client.capture("long id", distinct_id="d" * 201)
    assert client.flush(5)
    by_name = {e["event"]: e for e in sink.events}
    assert by_name[" spaced event "]["distinct_id"] == " user "
    assert by_name["long id"]["distinct_id"] == "d" * 200


def test_an_event_named_none_is_not_captured_as_the_text_none(
    client: Client, sink: InMemoryDestination
) -> None:
    assert client.capture(None, distinct_id="u") is None  # type: ignore[arg-type]
    assert client.flush(5)
    assert sink.events == [] and client.stats()["invalid"] == 1


def test_a_uuid_that_is_not_one_is_replaced_and_a_real_one_kept(
    client: Client, sink: InMemoryDestination
) -> None:
    import uuid

    given = uuid.uuid4()
    assert client.capture("kept", distinct_id="u", uuid=given) == str(given)
    assert client.capture("upper", distinct_id="u", uuid=str(given).upper()) == str(given)
    replaced = client.capture("replaced", distinct_id="u", uuid="zzz")
    assert replaced is not None and replaced != "zzz"
    assert client.flush(5)
    uuids = {e["event"]: e["uuid"] for e in sink.events}
    assert uuids["kept"] == str(given) and uuids["replaced"] == str(uuid.UUID(replaced))
