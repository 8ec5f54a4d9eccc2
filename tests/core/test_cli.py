from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from posthog_llm import Client, Emitter, generation_properties, span_properties, trace_properties
from posthog_llm.cli import main


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "cli.db"
    client = Client(db=path, flush_interval=0.05)
    emitter = Emitter(client, framework="langchain")
    scope = emitter.scope()
    emitter.emit(
        "$ai_trace",
        trace_properties(trace_id="trace-1", span_name="RunnableSequence", latency=0.5),
        scope,
        trace_id="trace-1",
    )
    emitter.emit(
        "$ai_span",
        span_properties(
            trace_id="trace-1", span_id="s1", span_name="ChatPromptTemplate", latency=0.01
        ),
        scope,
        trace_id="trace-1",
    )
    emitter.emit(
        "$ai_generation",
        generation_properties(
            trace_id="trace-1",
            span_id="g1",
            parent_id="s1",
            model="gpt-4o-mini",
            input_tokens=12,
            output_tokens=30,
            latency=0.4,
        ),
        scope,
        trace_id="trace-1",
    )
    emitter.emit(
        "$ai_generation",
        generation_properties(
            trace_id="trace-2",
            span_id="g2",
            model="claude-3-5-sonnet",
            error=RuntimeError("rate limited"),
            latency=0.1,
        ),
        scope,
        trace_id="trace-2",
    )
    assert client.shutdown(5)
    return str(path)


def test_events_prints_one_json_object_per_line(db, capsys):
    assert main(["events", "--db", db, "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4
    first = json.loads(lines[0])
    assert set(first) == {"event", "distinct_id", "properties", "timestamp", "uuid"}


def test_traces_table_and_json(db, capsys):
    assert main(["traces", "--db", db, "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    by_id = {r["trace_id"]: r for r in rows}
    assert by_id["trace-1"]["name"] == "RunnableSequence"
    assert by_id["trace-1"]["events"] == 3 and by_id["trace-1"]["generations"] == 1
    assert by_id["trace-1"]["input_tokens"] == 12 and by_id["trace-1"]["output_tokens"] == 30
    assert by_id["trace-1"]["latency"] == 0.5 and by_id["trace-1"]["errors"] == 0
    assert by_id["trace-2"]["errors"] == 1
    assert main(["traces", "--db", db]) == 0
    table = capsys.readouterr().out
    assert "trace-1" in table and "RunnableSequence" in table and "latency" in table


def test_show_prints_an_indented_tree(db, capsys):
    assert main(["show", "trace-1", "--db", db]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("trace") and "RunnableSequence" in out[0]
    span_line = next(i for i, line in enumerate(out) if "ChatPromptTemplate" in line)
    gen_line = next(i for i, line in enumerate(out) if "gpt-4o-mini" in line)
    assert out[span_line].startswith("└─ span")
    assert out[gen_line].startswith("   └─ generation")  # under the span, drawn as a tree
    assert "tokens=12→30" in out[gen_line] and "400.0ms" in out[gen_line]
    assert main(["show", "trace-2", "--db", db]) == 0
    assert "ERROR RuntimeError: rate limited" in capsys.readouterr().out


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "posthog_llm", *args], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    "args,needle",
    [
        (["traces", "--db", "/definitely/not/here.db"], "no posthog-llm database"),
        (["show", "nope", "--db", "/definitely/not/here.db"], "no posthog-llm database"),
        (["frobnicate"], "invalid choice"),
        (["traces", "--limit", "many"], "expected a whole number"),
        (["events", "--limit", "0"], "expected a number >= 1"),
        (["events", "--since", "yesterday-ish", "--db", "/definitely/not/here.db"], "--since"),
    ],
)
def test_bad_arguments_give_one_line_and_nonzero_exit(args, needle):
    result = _cli(*args)
    assert result.returncode != 0
    assert needle in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_output_to_a_narrow_encoding_is_escaped_not_a_traceback(db):
    # Windows writes redirected output in its ANSI code page, which has no tree guides.
    env = dict(os.environ, PYTHONIOENCODING="cp1252")
    for args in (["show", "trace-1"], ["events"], ["traces"]):
        result = subprocess.run(
            [sys.executable, "-m", "posthog_llm", *args, "--db", db],
            capture_output=True,
            env=env,
            timeout=60,
        )
        assert result.returncode == 0, (args, result.stderr)
        assert b"Traceback" not in result.stderr
        assert b"gpt-4o-mini" in result.stdout or b"RunnableSequence" in result.stdout
    shown = _cli("show", "trace-1", "--db", db).stdout
    # With an encoding that has them, the guides are themselves, not escapes.
    assert "\u2500" in shown and "\\u2500" not in shown


def test_unknown_trace_is_a_clean_error(db):
    result = _cli("show", "missing-trace", "--db", db)
    assert (
        result.returncode == 1
        and "no trace 'missing-trace'" in result.stderr
        and "Traceback" not in result.stderr
    )


def test_not_a_database_is_a_clean_error(tmp_path):
    bogus = tmp_path / "bogus.db"
    bogus.write_text("hello")
    result = _cli("events", "--db", str(bogus))
    assert result.returncode == 1 and "Traceback" not in result.stderr


def test_default_db_comes_from_environment(db, monkeypatch, capsys):
    monkeypatch.setenv("POSTHOG_LLM_DB", db)
    assert main(["traces", "--json"]) == 0
    assert "trace-1" in capsys.readouterr().out
    assert os.path.exists(db)


def test_embedding_tokens_and_model_named_generation_render_once(tmp_path):
    from posthog_llm import EventStore, embedding_properties

    path = tmp_path / "render.db"
    client = Client(db=path, flush_interval=0.05)
    emitter = Emitter(client)
    scope = emitter.scope()
    emitter.emit(
        "$ai_embedding",
        embedding_properties(trace_id="r", span_id="e", model="emb-1", input_tokens=22),
        scope,
        trace_id="r",
    )
    emitter.emit(
        "$ai_generation",
        generation_properties(
            trace_id="r", span_id="g", model="gpt-x", input_tokens=1, output_tokens=2
        ),
        scope,
        trace_id="r",
    )
    assert client.shutdown(5)
    with EventStore(path) as store:
        trace = store.trace("r")
    text = trace.to_text()
    assert "tokens=22" in text and "tokens=22→" not in text
    html = trace._repr_html_()
    assert html.count("gpt-x") == 1 and "posthog-llm-trace" in html


def test_an_error_flag_stored_as_text_reads_the_same_everywhere(tmp_path, capsys):
    from posthog_llm import EventStore

    path = tmp_path / "flags.db"
    client = Client(db=str(path))
    for trace_id, flag in (("t-false", "false"), ("t-true", "true")):
        client.capture(
            "$ai_generation",
            distinct_id="u",
            properties={"$ai_trace_id": trace_id, "$ai_model": "gpt-x", "$ai_is_error": flag},
        )
    assert client.shutdown(5)
    for trace_id, flagged in (("t-false", False), ("t-true", True)):
        with EventStore(path) as store:
            trace = store.trace(trace_id)
            [summary] = [t for t in store.traces() if t.trace_id == trace_id]
        assert bool(summary.errors) is flagged
        assert ("ERROR" in trace.to_text()) is flagged
        assert ("error" in trace._repr_html_().lower()) is flagged
        assert main(["events", "--db", str(path)]) == 0
        line = [x for x in capsys.readouterr().out.splitlines() if trace_id in x]
        assert line and ("ERROR" in line[0]) is flagged


def test_the_notebook_html_escapes_every_value_from_the_events(tmp_path):
    from html.parser import HTMLParser

    from posthog_llm import EventStore

    hostile = '<img src=x onerror="alert(1)">'
    path = tmp_path / "hostile.db"
    client = Client(db=path, flush_interval=0.05)
    client.capture("$ai_trace", distinct_id="u", properties={"$ai_trace_id": "t" + hostile})
    client.capture(  # the event name itself becomes the row's kind
        "$ai_" + hostile,
        distinct_id="u",
        properties={"$ai_trace_id": "t" + hostile, "$ai_parent_id": "t" + hostile},
    )
    client.capture(
        "$ai_generation",
        distinct_id="u",
        properties={
            **generation_properties(
                trace_id="t" + hostile,
                span_name="s" + hostile,
                model="m" + hostile,
                input=[{"role": "user", "content": hostile}],
                output_choices=hostile,
                input_tokens=1,
                error="e" + hostile,
            ),
            "$ai_input_tokens": hostile,
        },
    )
    assert client.shutdown(5)
    with EventStore(path) as store:
        html = store.trace("t" + hostile)._repr_html_()

    class Tags(HTMLParser):
        tags: set[str] = set()
        attributes: set[str] = set()

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            self.tags.add(tag)
            self.attributes.update(name for name, _ in attrs)

    parser = Tags()
    parser.feed(html)
    assert parser.tags <= {"div", "span", "b", "details", "summary", "pre"}
    assert parser.attributes <= {"class", "style"}
    assert "<img" not in html and html.count("&lt;img") >= 6


# Clipboard write (OSC 52), clear screen, window title, colour, a C1 CSI, a newline and a tab.
TERMINAL_CONTROLS = (
    "\x1b]52;c;ZWNobw==\x07\x1b[2J\x1b]0;PWNED\x07\x1b[31m\x9b2J\n\t\x7f\u202e\u2066\u2028"
)


@pytest.fixture
def hostile_db(tmp_path):
    path = tmp_path / "hostile.db"
    bad = TERMINAL_CONTROLS
    client = Client(db=path, flush_interval=0.05)
    for trace_id in ("tr" + bad + "1", "tr" + bad + "2"):
        client.capture(
            "$ai_trace",
            distinct_id="u" + bad,
            properties=trace_properties(trace_id=trace_id, span_name="root" + bad),
        )
        client.capture(
            "$ai_generation",
            distinct_id="u" + bad,
            properties=generation_properties(
                trace_id=trace_id,
                parent_id=trace_id,
                span_name="span" + bad,
                model="gpt" + bad,
                provider="openai" + bad,
                input_tokens=1,
                output_tokens=2,
                error="Err" + bad,
            ),
        )
    client.capture("my_event" + bad, distinct_id="u" + bad, properties={"k": "v" + bad})
    assert client.shutdown(5)
    return str(path)


def _controls(text: str) -> set[str]:
    reorder = "\u200e\u200f\u2028\u2029\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
    return {c for c in text if ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or c in reorder}


@pytest.mark.parametrize(
    ("args", "lines"),
    [
        (["traces"], 3),
        (["events"], 5),
        (["events", "--event", "generation"], 2),
        (["show", "tr"], 0),
    ],
    ids=["traces", "events", "events-generation", "show-ambiguous"],
)
def test_human_output_shows_terminal_controls_from_events_as_escapes(
    hostile_db, capsys, args, lines
):
    code = main([*args, "--db", hostile_db])
    out, err = capsys.readouterr()
    assert code == (1 if args[0] == "show" else 0)
    assert _controls(out) <= {"\n"} and _controls(err) <= {"\n"}
    assert len(out.splitlines()) == lines  # one row per event or trace (plus the table's header)
    if args[0] == "show":
        assert "\\x1b]52;c;" in err  # the ambiguous trace ids are quoted, escaped
    else:
        assert "\\x1b]52;c;" in out and "\\x9b2J" in out


def test_a_trace_tree_shows_terminal_controls_as_escapes(hostile_db, capsys):
    assert main(["show", "tr" + TERMINAL_CONTROLS + "1", "--db", hostile_db]) == 0
    out = capsys.readouterr().out
    assert _controls(out) <= {"\n"}
    lines = out.splitlines()
    assert len(lines) == 2  # the root and its generation, one line each
    assert "span\\x1b]52;c;ZWNobw==\\x07\\x1b[2J" in lines[1]
    assert "ERROR Err\\x1b" in lines[1] and "\\n\\t\\x7f\\u202e\\u2066\\u2028" in lines[1]


@pytest.mark.parametrize("command", ["events", "traces"])
def test_json_output_is_the_same_json_with_no_raw_terminal_controls(hostile_db, capsys, command):
    assert main([command, "--json", "--db", hostile_db]) == 0
    out = capsys.readouterr().out
    assert _controls(out) <= {"\n"}
    rows = [json.loads(line) for line in out.splitlines()]
    if command == "events":
        names = {row["event"] for row in rows}
        assert "my_event" + TERMINAL_CONTROLS in names
        assert {row["distinct_id"] for row in rows} == {"u" + TERMINAL_CONTROLS}
    else:
        assert {row["trace_id"] for row in rows} == {"tr" + TERMINAL_CONTROLS + n for n in "12"}


def test_events_default_lines_are_readable_and_filter(db, capsys):
    assert main(["events", "--db", db]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4
    assert all(not line.startswith("{") for line in lines)
    gen = next(line for line in lines if "gpt-4o-mini" in line)
    assert "generation" in gen and "trace=trace-1" in gen and "tokens=12→30" in gen
    assert main(["events", "--db", db, "--trace", "trace-2", "--json"]) == 0
    (only,) = capsys.readouterr().out.strip().splitlines()
    assert json.loads(only)["properties"]["$ai_trace_id"] == "trace-2"
    assert main(["events", "--db", db, "--event", "generation", "--limit", "1", "--json"]) == 0
    (first,) = capsys.readouterr().out.strip().splitlines()
    assert json.loads(first)["event"] == "$ai_generation"
    assert main(["events", "--db", db, "--event", "$ai_span", "--json"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 1
    assert main(["events", "--db", db, "--since", "1h", "--json"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 4
    assert main(["events", "--db", db, "--since", "2999-01-01"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and "no events match" in captured.err


def test_parse_since_accepts_durations_and_iso_times():
    import datetime as dt

    from posthog_llm.cli import CommandError, parse_since

    now = dt.datetime(2025, 1, 30, 12, 0, tzinfo=dt.timezone.utc)
    assert parse_since("10m", now=now) == "2025-01-30T11:50:00+00:00"
    assert parse_since("1d", now=now) == "2025-01-29T12:00:00+00:00"
    assert parse_since("30s", now=now) == "2025-01-30T11:59:30+00:00"
    assert parse_since("2025-01-30T14:00+02:00") == "2025-01-30T12:00:00+00:00"
    assert parse_since("2025-01-30T12:00Z") == "2025-01-30T12:00:00+00:00"
    with pytest.raises(CommandError, match="duration ago"):
        parse_since("soon")
    # Past the first or last day datetime can hold: everything, or nothing (no OverflowError).
    assert parse_since("99999999w", now=now) == "0001-01-01T00:00:00+00:00"
    assert parse_since("0001-01-01T00:00+05:00") == "0001-01-01T00:00:00+00:00"
    assert parse_since("9999-12-31T23:59-05:00").startswith("9999-12-31T23:59:59")


def test_show_accepts_a_unique_prefix_and_explains_an_ambiguous_one(db, capsys):
    assert main(["show", "trace-1"[:7], "--db", db]) == 0
    assert "RunnableSequence" in capsys.readouterr().out
    result = _cli("show", "trace-", "--db", db)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "'trace-' matches 2 traces" in line and "trace-1" in line


def test_traces_search_without_match_says_so(db, capsys):
    assert main(["traces", "--db", db, "--search", "no-such-thing"]) == 0
    assert "no traces match 'no-such-thing'" in capsys.readouterr().out
    assert main(["traces", "--db", db, "--search", "claude"]) == 0
    out = capsys.readouterr().out
    assert "trace-2" in out and "trace-1" not in out


@pytest.mark.parametrize("command", ["events", "traces", "show", "serve", "demo"])
def test_every_command_has_a_description_and_an_example(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "examples:" in text and f"posthog-llm {command}" in text.split("examples:")[1]
    description = text.split("\n\n")[1]
    assert len(description.split()) >= 8  # a sentence, not just the usage line


def test_events_piped_to_head_exits_quietly_on_a_large_store(tmp_path):
    from posthog_llm.destinations.sqlite import connect, insert_events

    path = str(tmp_path / "big.db")
    conn = connect(path)
    rows = [
        (
            f"u{i}",
            "$ai_generation",
            "d",
            f"2025-01-01T00:00:{i % 60:02d}.{i:06d}+00:00",
            f"t{i // 10}",
            json.dumps({"$ai_trace_id": f"t{i // 10}", "$ai_model": "m", "$ai_input": "x" * 200}),
            0.0,
        )
        for i in range(50_000)
    ]
    insert_events(conn, rows)
    conn.close()
    head = subprocess.run(
        f"{sys.executable} -m posthog_llm events --db {path} | head -n 3",
        shell=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert len(head.stdout.splitlines()) == 3
    assert "Traceback" not in head.stderr and "BrokenPipe" not in head.stderr, head.stderr


def test_the_events_time_column_is_utc_to_the_millisecond_whatever_was_stored(tmp_path, capsys):
    path = str(tmp_path / "times.db")
    client = Client(db=path)
    for stamp in ("2025-01-30T12:00:00Z", "2025-01-30T14:00:00.5+02:00"):
        client.capture(
            "$ai_generation", distinct_id="u", properties={"$ai_model": "m"}, timestamp=stamp
        )
    assert client.shutdown(5)
    assert main(["events", "--db", path]) == 0
    times = sorted(line[:23] for line in capsys.readouterr().out.strip().splitlines())
    assert times == ["2025-01-30 12:00:00.000", "2025-01-30 12:00:00.500"]


def test_events_are_listed_in_time_order_whatever_offset_they_were_stored_with(tmp_path, capsys):
    path = str(tmp_path / "offsets.db")
    client = Client(db=path)
    # In time order a (10:30Z), b (11:00Z), c (11:00:00.25Z); as stored text, the reverse.
    stamps = {
        "c": "2025-01-30T11:00:00.250+00:00",
        "b": "2025-01-30T11:00:00Z",
        "a": "2025-01-30T13:30:00+03:00",
    }
    for name, stamp in stamps.items():
        client.capture(
            "$ai_span", distinct_id="u", properties={"$ai_span_name": name}, timestamp=stamp
        )
    assert client.shutdown(5)
    assert main(["events", "--db", path, "--json"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [e["properties"]["$ai_span_name"] for e in events] == ["a", "b", "c"]
    assert main(["events", "--db", path, "--json", "--since", "2025-01-30T10:45:00+00:00"]) == 0
    later = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [e["properties"]["$ai_span_name"] for e in later] == ["b", "c"]


def test_an_empty_trace_id_is_no_trace_and_show_asks_for_one(tmp_path, capsys):
    path = str(tmp_path / "blank.db")
    client = Client(db=path)
    client.capture("$ai_generation", distinct_id="x", properties={"$ai_trace_id": ""})
    client.capture("$ai_generation", distinct_id="x", properties={"$ai_trace_id": "  "})
    client.capture("$ai_generation", distinct_id="x", properties={"$ai_trace_id": "t-1"})
    assert client.shutdown(5)
    assert main(["traces", "--db", path, "--json"]) == 0
    listed = [json.loads(line)["trace_id"] for line in capsys.readouterr().out.splitlines()]
    assert listed == ["t-1"]  # a blank id names no trace a viewer could open
    assert main(["events", "--db", path, "--json"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3  # the events themselves are kept
    result = _cli("show", "", "--db", path)
    assert result.returncode == 1 and "give a trace id" in result.stderr


def test_another_programs_database_is_refused_clearly_everywhere(tmp_path, capsys):
    import sqlite3

    path = str(tmp_path / "app.db")
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO events (name) VALUES ('signup')")
    conn.commit()
    conn.close()
    with pytest.raises(ValueError, match="is not a posthog-llm store"):
        Client(db=path)
    for args in (["traces"], ["events"], ["demo"]):
        result = _cli(*args, "--db", path)
        assert result.returncode == 1, result.stdout
        (line,) = result.stderr.strip().splitlines()
        assert "not a posthog-llm store" in line and "Traceback" not in result.stderr
    conn = sqlite3.connect(path)  # and their data is as it was, nothing of ours added
    assert conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall() == [
        ("events",)
    ]
    assert conn.execute("SELECT name FROM events").fetchall() == [("signup",)]
    conn.close()
