from __future__ import annotations

import collections
import logging
import threading

import posthog_llm
import pytest
from posthog_llm import Client, InMemoryDestination, PostHogHTTPDestination, SQLiteDestination


def test_bad_host_raises_value_error_naming_host():
    with pytest.raises(ValueError, match="host"):
        Client(api_key="phc_x", host="us.i.posthog.com")
    with pytest.raises(ValueError, match="host"):
        Client(api_key="phc_x", host="ftp://example.com")
    with pytest.raises(ValueError, match="host"):  # a port that is not a number
        Client(api_key="phc_x", host="http://localhost:abc")


def test_bad_numbers_raise_at_construction():
    with pytest.raises(ValueError, match="flush_at"):
        Client(flush_at=0, destination=InMemoryDestination())
    with pytest.raises(TypeError, match="before_send"):
        Client(before_send="nope", destination=InMemoryDestination())
    for flag in ("disabled", "gzip", "privacy_mode", "spool"):
        with pytest.raises(TypeError, match=f"{flag} must be a bool"):
            Client(destination=InMemoryDestination(), **{flag: "no"})


@pytest.mark.parametrize("host", ["http://h/ ", "http://h?x=1", "http://h#frag", "http://h/a b"])
def test_a_host_paths_could_not_be_appended_to_is_refused(host):
    # PostHog's paths (/batch/, /i/v0/ai/batch/) are appended: a query, a fragment or spaces
    # in the path would send every request somewhere else.
    with pytest.raises(ValueError, match="host must be an http"):
        Client(api_key="phc_x", host=host)


@pytest.mark.parametrize("option", ["timeout", "flush_interval", "shutdown_timeout"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), 1e12])
def test_seconds_that_are_not_finite_or_too_large_are_refused(option, value):
    # They were accepted: NaN and infinity lost every batch, 1e12 killed the worker.
    with pytest.raises(ValueError, match=f"{option} must be a finite number of seconds"):
        Client(destination=InMemoryDestination(), **{option: value})


@pytest.mark.allow_internal_errors  # each span asks for the default client and is refused
def test_a_bad_posthog_host_is_named_and_said_once_where_the_default_client_is_used(
    monkeypatch, caplog
):
    monkeypatch.setenv("POSTHOG_API_KEY", "phc_env")
    monkeypatch.setenv("POSTHOG_HOST", "eu.i.posthog.com")  # no scheme
    with pytest.raises(ValueError, match="^POSTHOG_HOST: host must be an http"):
        Client()
    with caplog.at_level(logging.WARNING, logger="posthog_llm"):
        for _ in range(3):  # spans on the default client: nothing to send, and it says why
            with posthog_llm.span("work") as span:
                pass
            assert span.trace_id is None
    warnings = [r for r in caplog.records if "cannot be built from the environment" in r.message]
    assert len(warnings) == 1 and "POSTHOG_HOST" in warnings[0].getMessage()


def test_a_destination_given_does_not_read_the_environments_posthog_host(monkeypatch):
    # Every notebook and the demo build `Client(destination=...)`: a malformed POSTHOG_HOST
    # they never send to stopped them at their first line.
    monkeypatch.setenv("POSTHOG_HOST", "eu.i.posthog.com")  # no scheme
    destination = InMemoryDestination()
    client = Client(destination=destination)
    client.capture("e", distinct_id="u")
    assert client.flush(5)
    assert [e["event"] for e in destination.events] == ["e"]
    client.shutdown(0)


def test_feedback_and_metrics_on_a_default_client_the_environment_cannot_build_do_not_raise(
    monkeypatch, caplog
):
    monkeypatch.setenv("POSTHOG_HOST", "https://eu.i.posthog.com")  # a remote host, no key
    with caplog.at_level(logging.WARNING, logger="posthog_llm"):
        assert posthog_llm.capture_feedback("trace-1", "Great answer!") is None
        assert posthog_llm.capture_metric("trace-1", "helpfulness", 4) is None
    warnings = [r for r in caplog.records if "cannot be built from the environment" in r.message]
    assert len(warnings) == 1


def test_api_key_alone_means_us_cloud(monkeypatch):
    client = Client(api_key="phc_test")
    assert isinstance(client.destination, PostHogHTTPDestination)
    assert client.destination.url == "https://us.i.posthog.com/batch/"
    client.shutdown(0)


def test_environment_is_read(monkeypatch):
    monkeypatch.setenv("POSTHOG_PROJECT_API_KEY", "phc_env")
    monkeypatch.setenv("POSTHOG_HOST", "https://eu.i.posthog.com/")
    client = Client()
    assert client.api_key == "phc_env"
    assert client.destination.url == "https://eu.i.posthog.com/batch/"
    client.shutdown(0)


def test_a_db_given_is_the_local_store_whatever_the_environment_says(monkeypatch, tmp_path):
    # `Client(db=...)`, "local store, explicitly": PostHog's settings in the environment (as
    # `serve` asks to export) sent the events over HTTP and never made the file.
    monkeypatch.setenv("POSTHOG_API_KEY", "phc_env")
    monkeypatch.setenv("POSTHOG_HOST", "https://eu.i.posthog.com")
    client = Client(db=tmp_path / "traces.db")
    assert isinstance(client.destination, SQLiteDestination)
    client.capture("e", distinct_id="u")
    assert client.shutdown(5)
    assert (tmp_path / "traces.db").exists()
    with pytest.raises(ValueError, match="db="):
        Client(db=tmp_path / "x.db", api_key="phc_arg")


def test_a_relative_store_path_is_where_the_client_was_made(monkeypatch, tmp_path):
    # The store opens on the worker at the first batch: after the app may have moved on.
    made, moved = tmp_path / "made", tmp_path / "moved"
    made.mkdir()
    moved.mkdir()
    monkeypatch.chdir(made)
    client = Client(db="events.db")
    monkeypatch.chdir(moved)
    client.capture("$ai_span", distinct_id="u", properties={"$ai_trace_id": "t"})
    assert client.shutdown(5)
    assert (made / "events.db").exists() and not (moved / "events.db").exists()
    assert "local store events.db" in repr(client.destination.description)


def test_no_key_no_host_means_local_store_and_says_so_once(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="posthog_llm")
    client = Client(db=tmp_path / "e.db")
    assert isinstance(client.destination, SQLiteDestination)
    assert str(tmp_path / "e.db") in client.destination.path
    messages = [r.getMessage() for r in caplog.records if "local" in r.getMessage()]
    assert len(messages) == 1
    client.capture("$ai_span", distinct_id="u", properties={"$ai_trace_id": "t"})
    assert client.shutdown(5)
    with posthog_llm.EventStore(tmp_path / "e.db") as store:
        assert [e["event"] for e in store.events()] == ["$ai_span"]


def test_capture_returns_uuid_and_personless_without_distinct_id(client, sink):
    event_uuid = client.capture(
        "$ai_generation", properties={"$ai_model": "m"}, groups={"company": "c1"}
    )
    given = client.capture(
        "$ai_span", distinct_id="user_1", uuid="11111111-1111-1111-1111-111111111111"
    )
    assert client.flush(5)
    first, second = sink.events
    assert first["uuid"] == event_uuid
    assert first["properties"]["$process_person_profile"] is False
    assert first["properties"]["$groups"] == {"company": "c1"}
    assert first["distinct_id"]  # a generated id
    assert second["uuid"] == given == "11111111-1111-1111-1111-111111111111"
    assert second["distinct_id"] == "user_1"
    assert "$process_person_profile" not in second["properties"]


def test_an_empty_trace_id_never_makes_an_empty_distinct_id(client, sink):
    # Personless events of a trace share its id, but an empty id names no one (PostHog refuses
    # a batch with an empty distinct id): such an event gets an id of its own.
    for trace_id in ("", "  "):
        client.capture("$ai_generation", properties={"$ai_trace_id": trace_id})
    assert client.flush(5)
    for event in sink.events:
        assert event["distinct_id"].strip()
        assert event["properties"]["$process_person_profile"] is False


def test_capture_never_raises_on_hostile_properties(client, sink):
    class Hostile:
        def __repr__(self):
            raise RuntimeError("no")

    assert client.capture("e", distinct_id="u", properties={"x": Hostile(), "n": float("nan")})
    assert client.capture("e", distinct_id=object(), properties={"ok": 1})
    assert client.flush(5)
    assert len(sink.events) == 2
    assert sink.events[0]["properties"]["n"] == "NaN"


def test_properties_that_are_not_a_mapping_are_kept_not_the_event_dropped(client, sink, caplog):
    assert client.capture("w", distinct_id="u", properties="not a dict")  # type: ignore[arg-type]
    assert client.capture("l", distinct_id="u", properties=[1, 2, 3])  # type: ignore[arg-type]
    assert client.flush(5)
    assert [e["properties"].get("posthog_llm_properties") for e in sink.events] == [
        "not a dict",
        [1, 2, 3],
    ]
    assert "takes a mapping" in caplog.text


def test_groups_or_an_id_that_cannot_be_used_leave_the_event_whole(client, sink):
    class Unreadable:
        def __str__(self) -> str:
            raise RuntimeError("no text")

    assert client.capture("g", distinct_id="u", groups="acme")  # type: ignore[arg-type]
    assert client.capture("l", distinct_id="u", groups=["acme"])  # type: ignore[arg-type]
    assert client.capture("i", distinct_id=Unreadable(), properties={"k": 1})
    with posthog_llm.context(groups={"company": "c"}):
        assert client.capture("c", distinct_id="u", groups="acme")  # type: ignore[arg-type]
    assert client.flush(5)
    by_name = {e["event"]: e for e in sink.events}
    assert set(by_name) == {"g", "l", "i", "c"}
    assert by_name["c"]["properties"]["$groups"] == {"company": "c"}  # the context's kept
    assert "$groups" not in by_name["g"]["properties"]
    assert by_name["i"]["properties"]["k"] == 1
    assert by_name["i"]["properties"]["$process_person_profile"] is False  # personless
    assert client.stats()["invalid"] == 0


def test_a_manual_ai_event_inside_an_open_span_joins_its_trace(client, sink):
    with posthog_llm.context(distinct_id="user_5"):
        with posthog_llm.span("answer", client=client) as span:
            client.capture("$ai_generation", properties={"$ai_model": "m"})
            client.capture("feedback_shown")  # not an $ai_ event: left alone
            client.capture("$ai_trace", properties={"$ai_span_name": "mine"})  # its own trace
    client.capture("$ai_generation", properties={"$ai_model": "m"})  # no span open: its own
    assert client.flush(5)
    inside, plain, own_trace, trace, outside = sink.events
    assert "$ai_trace_id" not in own_trace["properties"]  # the span's trace has its $ai_trace
    assert trace["event"] == "$ai_trace"
    assert (
        inside["properties"]["$ai_trace_id"] == span.trace_id == trace["properties"]["$ai_trace_id"]
    )
    assert inside["properties"]["$ai_parent_id"] == span.trace_id  # the root span is the trace
    assert inside["distinct_id"] == "user_5"
    assert "$ai_trace_id" not in plain["properties"]
    assert "$ai_trace_id" not in outside["properties"]


def test_caller_mutating_properties_later_does_not_change_the_event(client, sink):
    props = {"a": 1}
    client.capture("e", distinct_id="u", properties=props)
    props["a"] = 2
    client.flush(5)
    assert sink.events[0]["properties"]["a"] == 1


def test_a_value_that_holds_itself_is_captured_once_with_the_cycle_marker(client, sink):
    # It was copied once per level, 33 times, before the serializer could see the cycle.
    node: dict = {"name": "root", "text": "x" * 2000}
    node["self"] = node
    loop: list = ["item"]
    loop.append(loop)
    client.capture("e", distinct_id="u", properties={"n": node, "l": loop})
    assert client.flush(5)
    props = sink.events[0]["properties"]
    assert props["n"] == {"name": "root", "text": "x" * 2000, "self": "[cycle]"}
    assert props["l"] == ["item", "[cycle]"]


def test_before_send_can_change_or_drop(sink):
    def before_send(event):
        if event["event"] == "drop-me":
            return None
        event["properties"]["tagged"] = True
        return event

    client = Client(destination=sink, before_send=before_send, flush_interval=0.05)
    client.capture("keep", distinct_id="u")
    client.capture("drop-me", distinct_id="u")
    assert client.flush(5)
    assert [e["event"] for e in sink.events] == ["keep"]
    assert sink.events[0]["properties"]["tagged"] is True
    assert client.stats()["filtered"] == 1
    client.shutdown(1)


def test_what_before_send_returns_cannot_lose_the_event_or_make_it_refused(sink, caplog):
    # Not a dict (a string, a list): sent as it was, as when before_send raises. A dict
    # without a name or a distinct id: PostHog would refuse the whole batch; those are kept.
    def before_send(event):
        name = event["properties"]["case"]
        if name == "text":
            return "not an event"
        if name == "list":
            return [event]
        if name == "number":
            return {**event, "distinct_id": 42}
        return {**event, "event": None, "distinct_id": ""}

    client = Client(destination=sink, before_send=before_send, flush_interval=0.05)
    for case in ("text", "list", "blanked", "number"):
        client.capture("kept", distinct_id="u", properties={"case": case})
    assert client.flush(5) is True
    assert [(e["event"], e["distinct_id"]) for e in sink.events] == [("kept", "u")] * 3 + [
        ("kept", "42")
    ]
    assert client.stats()["failed"] == 0
    assert "before_send returned str" in caplog.text
    client.shutdown(1)


def test_client_privacy_mode_strips_content(sink):
    client = Client(destination=sink, privacy_mode=True, flush_interval=0.05)
    client.capture(
        "$ai_generation", distinct_id="u", properties={"$ai_input": "secret", "$ai_input_tokens": 4}
    )
    client.flush(5)
    props = sink.events[0]["properties"]
    assert "$ai_input" not in props and props["$ai_input_tokens"] == 4
    client.shutdown(1)


def test_disabled_client_captures_nothing(sink):
    client = Client(destination=sink, disabled=True)
    assert client.capture("e", distinct_id="u") is None
    assert client.flush(1)
    assert sink.events == []


def test_default_client_is_lazy_and_shared(tmp_path, monkeypatch):
    monkeypatch.setenv("POSTHOG_LLM_DB", str(tmp_path / "d.db"))
    posthog_llm.set_client(None)
    first = posthog_llm.get_client()
    assert first is posthog_llm.get_client()
    assert first.destination.path == str(tmp_path / "d.db")
    first.shutdown(1)


def test_manual_capture_inside_context_gets_its_identity(client, sink):
    with posthog_llm.context(
        distinct_id="user_9", trace_id="t-ctx", properties={"plan": "pro"}, groups={"company": "c"}
    ):
        client.capture("$ai_generation", properties={"$ai_model": "m", "plan": "free"})
    with posthog_llm.context(privacy_mode=True):
        client.capture(
            "$ai_generation", distinct_id="u2", properties={"$ai_input": "secret", "$ai_model": "m"}
        )
    client.flush(5)
    first, second = sink.events
    assert first["distinct_id"] == "user_9"
    assert first["properties"]["$ai_trace_id"] == "t-ctx"
    assert first["properties"]["plan"] == "free"  # explicit properties win
    assert first["properties"]["$groups"] == {"company": "c"}
    assert "$ai_input" not in second["properties"] and second["distinct_id"] == "u2"


def test_a_loopback_host_needs_no_key_but_a_remote_one_does(posthog_server):
    client = Client(host=posthog_server.host, flush_interval=0.05)  # e.g. `posthog-llm serve`
    client.capture("e", distinct_id="u")
    assert client.flush(5)
    assert len(posthog_server.events) == 1
    client.shutdown(1)
    with pytest.raises(ValueError, match="api_key"):
        Client(host="https://posthog.example.com")


# -- lifecycle: flush on the sender's own threads, shutdown racing with capture ------------------


def test_flush_from_before_send_returns_at_once_instead_of_deadlocking_the_worker(sink):
    # `flush()` on the worker (from `before_send`) waited for the worker itself: it never
    # returned, and nothing was delivered again.
    inner: list[bool] = []
    holder: dict[str, Client] = {}

    def before_send(event):
        if not inner:
            inner.append(holder["client"].flush())  # no timeout: the old code hung for good
        return event

    client = Client(destination=sink, flush_interval=0.05, before_send=before_send)
    holder["client"] = client
    client.capture("first", distinct_id="u")
    assert client.flush(10)
    assert inner == [False]  # the event being built was pending
    client.capture("second", distinct_id="u")
    assert client.flush(10)
    assert [e["event"] for e in sink.events] == ["first", "second"]
    assert client.shutdown(5)


class _FlushingDestination(InMemoryDestination):
    """Calls `client.flush()` while sending, on whichever of the sender's threads sends (a
    logging handler on a logger the sender writes to does the same)."""

    concurrent_requests = 2

    def __init__(self) -> None:
        super().__init__()
        self.client: Client | None = None
        self.results: list[tuple[str, bool]] = []

    def send(self, events, *, timeout):
        assert self.client is not None
        self.results.append((threading.current_thread().name, self.client.flush()))
        super().send(events, timeout=timeout)


def test_flush_while_sending_returns_at_once_and_says_false_while_events_are_pending():
    dest = _FlushingDestination()
    client = Client(destination=dest, flush_at=10, flush_interval=0.05)
    dest.client = client
    uuids = [client.capture("e", distinct_id="u", properties={"i": i}) for i in range(500)]
    assert client.flush(10)
    assert sorted(e["uuid"] for e in dest.events) == sorted(uuids)
    # Each flush ran while its batch was in flight: never "all delivered".
    assert dest.results and not any(ok for _, ok in dest.results)
    assert {name for name, _ in dest.results} <= {
        "posthog-llm-sender",
        "posthog-llm-second-request",
    }
    assert client.shutdown(5)


class _GatedQueue(collections.deque):
    """Holds the append of one item until told: a `capture` that passed the closed check just
    before `shutdown` and appends only after the final flush."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived = threading.Event()
        self.release = threading.Event()

    def append(self, item):
        if type(item) is dict and item.get("gated"):
            self.arrived.set()
            assert self.release.wait(10)
        super().append(item)


def test_an_event_captured_while_shutdown_closes_is_delivered_or_counted_never_lost(sink, caplog):
    client = Client(destination=sink, flush_interval=0.05)
    client.capture("before", distinct_id="u")
    assert client.flush(5)  # the worker runs: `capture` takes its fast path
    gate = _GatedQueue()
    client._sender._queue = gate
    captured: list[str | None] = []
    racer = threading.Thread(
        target=lambda: captured.append(
            client.capture("racing", distinct_id="u", properties={"gated": True})
        )
    )
    racer.start()
    assert gate.arrived.wait(10)
    close = sink.close

    def close_after_the_racer_appended() -> None:
        # Shutdown's final flush is over: the racer's append lands now.
        gate.release.set()
        racer.join(10)
        close()

    sink.close = close_after_the_racer_appended  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, logger="posthog_llm"):
        result = client.shutdown(5)
    racer.join(10)
    delivered = [e["uuid"] for e in sink.events if e["event"] == "racing"]
    stats = client.stats()
    [uuid] = captured
    if uuid is not None:  # accepted: it must have been delivered
        assert delivered == [uuid] and result
    else:  # refused: counted as dropped, said in the log, and the next flush says so
        assert delivered == [] and stats["dropped"] == 1
        assert "shut down" in caplog.text
        assert client.flush(1) is False
    assert stats["queued"] == 0
    assert result  # "before" was delivered; the refused one was never accepted


def test_capture_after_shutdown_warns_once_and_flush_says_false(sink, caplog):
    client = Client(destination=sink, flush_interval=0.05)
    client.capture("delivered", distinct_id="u")
    assert client.shutdown(5)
    with caplog.at_level(logging.WARNING, logger="posthog_llm"):
        assert client.capture("late", distinct_id="u") is None
        with posthog_llm.span("late span", client=client):
            pass
        assert client.capture("later", distinct_id="u") is None
    warnings = [r for r in caplog.records if "shut down" in r.getMessage()]
    assert len(warnings) == 1  # rate-limited
    assert client.stats()["dropped"] == 3
    assert client.flush(1) is False  # events were dropped since the last flush
    assert client.flush(1) is True  # none since
    assert [e["event"] for e in sink.events] == ["delivered"]


def test_capture_sends_its_properties_as_they_were_when_it_returned(client, sink):
    # Built on the worker later: a list or dict the caller changes afterwards must not change
    # the event (with values orjson writes, and with ones it does not: NaN, a str subclass).
    class Label(str):
        pass

    messages = [{"role": "user", "content": "first"}]
    odd = {"score": float("nan"), "label": Label("x"), "items": [1, 2]}
    client.capture(
        "$ai_generation", distinct_id="u", properties={"$ai_input": messages, "odd": odd}
    )
    messages[0]["content"] = "rewritten after capture returned"
    messages.append({"role": "user", "content": "appended after capture returned"})
    odd["items"].append(3)
    odd["label"] = "changed"
    assert client.flush(5)
    (event,) = sink.events
    assert event["properties"]["$ai_input"] == [{"role": "user", "content": "first"}]
    assert event["properties"]["odd"]["items"] == [1, 2]
    assert event["properties"]["odd"]["label"] == "x"


def test_numbers_of_other_libraries_inside_lists_are_sent_as_numbers(client, sink):
    # numpy scores and embeddings inside a list or dict: taken as they are when captured, and
    # written as numbers by the exact path (never as raw bytes).
    np = pytest.importorskip("numpy")
    scores = [np.float64(0.9), np.float32(0.5), np.int64(3)]
    client.capture(
        "$ai_embedding",
        distinct_id="u",
        properties={"scores": scores, "doc": {"similarity": np.float32(0.75)}},
    )
    scores.append(np.float64(1.0))
    assert client.flush(5)
    (event,) = sink.events
    assert event["properties"]["scores"] == [0.9, 0.5, 3]
    assert event["properties"]["doc"] == {"similarity": 0.75}


def test_a_host_with_a_space_in_its_name_is_refused():
    with pytest.raises(ValueError, match="host must be an http"):
        Client(api_key="phc_x", host="http://us.i.posthog .com")


def test_nan_inside_captured_containers_is_null_as_the_readme_says(client, sink):
    # The one place a NaN is not "NaN": inside a list or dict `capture` kept as JSON (a check
    # for them cost a sixth of `capture`); at the top level it reads "NaN".
    client.capture(
        "eval", distinct_id="u", properties={"top": float("nan"), "nested": {"s": float("nan")}}
    )
    assert client.flush(5)
    (event,) = sink.events
    assert event["properties"]["top"] == "NaN"
    assert event["properties"]["nested"] == {"s": None}
