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
    indent = lambda s: len(s) - len(s.lstrip())  # noqa: E731
    assert indent(out[gen_line]) > indent(out[span_line]) > 0
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
        (["traces", "--limit", "many"], "invalid int value"),
    ],
)
def test_bad_arguments_give_one_line_and_nonzero_exit(args, needle):
    result = _cli(*args)
    assert result.returncode != 0
    assert needle in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


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
