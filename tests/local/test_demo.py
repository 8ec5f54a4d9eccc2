"""`posthog-llm demo`: runs offline as a real subprocess, prints the trees it stored, and also
sends every event to PostHog when a key is set. With no extras installed (a fresh venv with only
the package and its own dependencies) it runs the framework-free parts and exits 0."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from posthog_llm import EMBEDDING, GENERATION, SPAN, TRACE, EventStore

from tests.support.venvs import build_wheel, run, venv_with_wheel

ROOT = Path(__file__).resolve().parents[2]
FRAMEWORKS = ["langchain_core", "llama_index.core", "openai"]


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


# The full demo needs every framework; the no-extras test below needs none of them.
needs_frameworks = pytest.mark.skipif(
    not all(_installed(m) for m in FRAMEWORKS), reason="needs posthog-llm[all]"
)

# Imported by the demo's interpreter (through PYTHONPATH) before anything else: every socket
# connection and name lookup outside the loopback interface fails and is written to a log, and
# the modules named in DEMO_TEST_HIDE import as if they were not installed.
_GUARD = textwrap.dedent(
    """
    import ipaddress, os, socket, sys

    for _name in filter(None, os.environ.get("DEMO_TEST_HIDE", "").split(",")):
        sys.modules[_name] = None

    _LOG = os.environ["DEMO_TEST_NETWORK_LOG"]

    def _loopback(host):
        if host in ("localhost", "", None):
            return True
        try:
            return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
        except ValueError:
            return False

    def _refuse(what):
        with open(_LOG, "a") as fh:
            fh.write(what + "\\n")
        raise OSError("network access is disabled in this test: " + what)

    _connect, _connect_ex = socket.socket.connect, socket.socket.connect_ex
    _getaddrinfo = socket.getaddrinfo

    def _check(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address[0]):
            _refuse("connect %r" % (address,))

    def connect(self, address):
        _check(self, address)
        return _connect(self, address)

    def connect_ex(self, address):
        _check(self, address)
        return _connect_ex(self, address)

    def getaddrinfo(host, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        if not _loopback(name):
            _refuse("getaddrinfo %r" % (name,))
        return _getaddrinfo(host, *args, **kwargs)

    socket.socket.connect, socket.socket.connect_ex = connect, connect_ex
    socket.getaddrinfo = getaddrinfo
    """
)


class DemoRun:
    def __init__(self, db: str, result: subprocess.CompletedProcess[str], network_log: Path):
        self.db = db
        self.stdout = result.stdout
        self.stderr = result.stderr
        self.returncode = result.returncode
        self.network_log = network_log

    def events(self) -> list[dict[str, Any]]:
        with EventStore(self.db) as store:
            return store.events()

    def trace_ids(self) -> list[str]:
        with EventStore(self.db) as store:
            return [row.trace_id for row in store.traces(limit=None)]

    def trace_events(self, suffix: str) -> list[dict[str, Any]]:
        (trace_id,) = [t for t in self.trace_ids() if t.endswith(suffix)]
        with EventStore(self.db) as store:
            return store.events(trace_id=trace_id)


def run_demo_process(
    tmp: Path,
    *,
    env: dict[str, str] | None = None,
    hide: str = "",
    command: list[str] | None = None,
) -> DemoRun:
    """Run `posthog-llm demo` (by default `python -m posthog_llm demo` of this interpreter)."""
    guard_dir = tmp / "guard"
    guard_dir.mkdir(exist_ok=True)
    (guard_dir / "sitecustomize.py").write_text(_GUARD)
    network_log = tmp / "network.log"
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("POSTHOG_", "OPENAI_", "ANTHROPIC_", "GEMINI_", "GOOGLE_"))
        and k not in ("PYTHONPATH",)
    }
    clean.update(
        PYTHONPATH=str(guard_dir),
        DEMO_TEST_NETWORK_LOG=str(network_log),
        DEMO_TEST_HIDE=hide,
        NO_COLOR="1",
        **(env or {}),
    )
    db = str(tmp / "demo.db")
    result = subprocess.run(
        [*(command or [sys.executable, "-m", "posthog_llm"]), "demo", "--db", db],
        capture_output=True,
        text=True,
        env=clean,
        cwd=str(tmp),
        timeout=120,
    )
    return DemoRun(db, result, network_log)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoRun]:
    if not all(_installed(m) for m in FRAMEWORKS):
        pytest.skip("the full demo needs posthog-llm[all]")
    yield run_demo_process(tmp_path_factory.mktemp("demo"))


def _props(event: dict[str, Any]) -> dict[str, Any]:
    return event["properties"]


def _named(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == name]


def test_demo_exits_cleanly_and_labels_the_standin(demo_run: DemoRun) -> None:
    assert demo_run.returncode == 0, demo_run.stdout + demo_run.stderr
    match = re.search(
        r"local stand-in OpenAI endpoint at (http://([\d.]+):\d+/v1) — no real API calls",
        demo_run.stdout,
    )
    assert match, demo_run.stdout
    assert match.group(2) == "127.0.0.1"
    assert "Traceback" not in demo_run.stderr, demo_run.stderr


def test_demo_never_touched_the_network(demo_run: DemoRun) -> None:
    attempts = demo_run.network_log.read_text() if demo_run.network_log.exists() else ""
    assert attempts == ""
    # Every OpenAI event names the loopback stand-in as its base URL.
    openai_events = demo_run.trace_events("-openai")
    urls = {_props(e).get("$ai_base_url") for e in openai_events if e["event"] != TRACE}
    assert urls and all(re.match(r"http://127\.0\.0\.1:\d+/v1$", str(u)) for u in urls), urls


def test_demo_calls_anthropic_and_gemini_on_labelled_stand_ins(demo_run: DemoRun) -> None:
    assert "local stand-in Anthropic endpoint at http://127.0.0.1:" in demo_run.stdout
    assert "local stand-in Gemini endpoint at http://127.0.0.1:" in demo_run.stdout
    for suffix, provider in (("-anthropic", "anthropic"), ("-gemini", "gemini")):
        events = demo_run.trace_events(suffix)
        generations = [_props(e) for e in events if e["event"] == GENERATION]
        assert len(generations) == 1, events
        assert generations[0]["$ai_provider"] == provider
        assert generations[0]["$ai_input_tokens"] > 0
        assert any(e["event"] == TRACE for e in events)


def test_demo_prints_every_stored_trace_as_a_tree(demo_run: DemoRun) -> None:
    trace_ids = demo_run.trace_ids()
    assert len(trace_ids) == 9, trace_ids
    with EventStore(demo_run.db) as store:
        for trace_id in trace_ids:
            trace = store.trace(trace_id)
            assert trace is not None
            assert trace.to_text() in demo_run.stdout
            assert trace_id in demo_run.stdout
    # The summary table and how to open the viewer.
    assert re.search(r"^trace_id\s+name\s+start\s+events\s+gens", demo_run.stdout, re.M)
    assert f"posthog-llm serve --db {demo_run.db}" in demo_run.stdout
    assert "http://127.0.0.1:8010" in demo_run.stdout


def test_the_commands_the_demo_suggests_run_as_printed(demo_run: DemoRun) -> None:
    # From the folder it ran in, in a shell whose PATH may not hold the venv (the README's
    # first command runs `.venv/bin/posthog-llm` without activating it).
    (line,) = [ln for ln in demo_run.stdout.splitlines() if ln.strip().startswith("or: ")]
    command = shlex.split(line.strip()[len("or: ") :])
    assert "show" in command
    bin_dir = os.path.dirname(sys.executable)
    path = os.pathsep.join(
        p
        for p in os.environ.get("PATH", "").split(os.pathsep)
        if os.path.realpath(p) != os.path.realpath(bin_dir)
    )
    shown = subprocess.run(
        command,
        capture_output=True,
        text=True,
        cwd=os.path.dirname(demo_run.db),
        env=dict(os.environ, PATH=path),
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    assert "trace" in shown.stdout


def test_langchain_chain_with_a_tool_call(demo_run: DemoRun) -> None:
    events = demo_run.trace_events("-langchain-tool-call")
    (trace,) = _named(events, TRACE)
    assert _props(trace)["$ai_framework"] == "langchain"
    assert _props(trace)["$ai_span_name"] == "weather_assistant"
    generations = _named(events, GENERATION)
    assert len(generations) == 2
    assert all(_props(g)["$ai_input_tokens"] > 0 for g in generations)
    tool_calls = [
        choice
        for g in generations
        for choice in _props(g).get("$ai_output_choices") or []
        if "get_weather" in json.dumps(choice)
    ]
    assert tool_calls, [_props(g).get("$ai_output_choices") for g in generations]
    assert any(_props(g).get("$ai_tools") for g in generations)
    spans = {_props(s)["$ai_span_name"] for s in _named(events, SPAN)}
    assert {"ChatPromptTemplate", "get_weather"} <= spans
    assert {e["distinct_id"] for e in events} == {"demo-user-ada"}


def test_langchain_streamed_call(demo_run: DemoRun) -> None:
    events = demo_run.trace_events("-langchain-stream")
    assert _named(events, TRACE)
    (generation,) = _named(events, GENERATION)
    props = _props(generation)
    assert props["$ai_stream"] is True
    assert props["$ai_time_to_first_token"] > 0
    assert props["$ai_output_tokens"] > 0


def test_llama_index_query_with_embedding_and_generation(demo_run: DemoRun) -> None:
    events = demo_run.trace_events("-llama-index-query")
    (trace,) = _named(events, TRACE)
    assert _props(trace)["$ai_framework"] == "llama-index"
    (embedding,) = _named(events, EMBEDDING)
    assert _props(embedding)["$ai_model"] == "fake-embedding"
    (generation,) = _named(events, GENERATION)
    assert _props(generation)["$ai_model"] == "fake-llm"
    assert _props(generation)["$ai_input_tokens"] > 0
    # The answer quotes the retrieved document that matches the question.
    assert "local SQLite store" in json.dumps(_props(generation)["$ai_output_choices"])
    # The index build is its own trace, with the documents' embedding.
    build = demo_run.trace_events("-llama-index-build")
    assert _named(build, EMBEDDING)


def test_openai_chat_stream_and_embeddings(demo_run: DemoRun) -> None:
    events = demo_run.trace_events("-openai")
    generations = _named(events, GENERATION)
    assert len(generations) == 2
    streamed = [g for g in generations if _props(g).get("$ai_stream")]
    assert len(streamed) == 1
    assert all(_props(g)["$ai_model"].startswith("gpt-4o-mini") for g in generations)
    (embedding,) = _named(events, EMBEDDING)
    assert _props(embedding)["$ai_model"] == "text-embedding-3-small"
    (trace,) = _named(events, TRACE)  # captured by hand with trace_properties()
    assert _props(trace)["$ai_span_name"] == "hedgehog_cafe_copy"


@needs_frameworks
def test_demo_also_sends_to_posthog_when_a_key_is_set(tmp_path: Path, posthog_server) -> None:
    run = run_demo_process(
        tmp_path,
        env={"POSTHOG_API_KEY": "phc_demo_test", "POSTHOG_HOST": posthog_server.host},
    )
    assert run.returncode == 0, run.stdout + run.stderr
    local = run.events()
    assert len(local) > 20
    received = posthog_server.wait_for(len(local))
    assert {e["uuid"] for e in received} == {e["uuid"] for e in local}
    assert {e["api_key"] for e in received} == {"phc_demo_test"}
    assert f"{len(local)} events sent to PostHog at {posthog_server.host}" in run.stdout


@needs_frameworks
def test_with_provider_keys_set_the_demo_calls_the_apis_they_open(tmp_path: Path) -> None:
    # The keys switch each provider part from its stand-in to the API; the SDKs' own base URL
    # variables point those "real" APIs at loopback stand-ins here, so nothing leaves.
    from posthog_llm.local.anthropic_standin import AnthropicStandIn
    from posthog_llm.local.gemini_standin import GeminiStandIn
    from posthog_llm.local.openai_standin import OpenAIStandIn

    with OpenAIStandIn() as openai, AnthropicStandIn() as anthropic, GeminiStandIn() as gemini:
        run = run_demo_process(
            tmp_path,
            env={
                "OPENAI_API_KEY": "sk-demo-test",
                "OPENAI_BASE_URL": openai.base_url,
                "ANTHROPIC_API_KEY": "sk-ant-demo-test",
                "ANTHROPIC_BASE_URL": anthropic.base_url,
                "GOOGLE_API_KEY": "AIza-demo-test",
                "GOOGLE_GEMINI_BASE_URL": gemini.base_url,
            },
        )
        assert run.returncode == 0, run.stdout + run.stderr
        assert "OPENAI_API_KEY is set: calling the real OpenAI API" in run.stdout
        assert "ANTHROPIC_API_KEY is set: calling the real API" in run.stdout
        assert "GOOGLE_API_KEY is set: calling the real API" in run.stdout
        assert "stand-in" not in run.stdout.lower()
        sent = openai.last_request("/chat/completions")["headers"]["authorization"]
        assert sent == "Bearer sk-demo-test"
        assert anthropic.last_request("/messages")
        assert gemini.requests
        openai_url = openai.base_url
    assert not run.network_log.exists() or run.network_log.read_text() == ""
    generations = [e["properties"] for e in run.events() if e["event"] == "$ai_generation"]
    assert {"anthropic", "gemini"} <= {g.get("$ai_provider") for g in generations}
    # The OpenAI client the demo built from the environment: the base URL it was given.
    assert openai_url in {g.get("$ai_base_url") for g in generations}


@needs_frameworks
def test_a_failing_openai_api_still_gives_the_demo_trace_its_named_root(tmp_path: Path) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    try:
        port = closed.getsockname()[1]
        run = run_demo_process(
            tmp_path,
            env={
                "OPENAI_API_KEY": "sk-demo-test",
                "OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1",
            },
        )
    finally:
        closed.close()
    assert run.returncode == 1  # the part failed, and says so
    roots = [
        e["properties"]
        for e in run.events()
        if e["event"] == "$ai_trace" and e["properties"]["$ai_trace_id"].endswith("-openai")
    ]
    assert len(roots) == 1
    assert roots[0]["$ai_span_name"] == "hedgehog_cafe_copy" and roots[0]["$ai_is_error"] is True
    assert roots[0]["$ai_error"].startswith("APIConnectionError")


@needs_frameworks
def test_demo_skips_a_missing_framework_and_runs_the_rest(tmp_path: Path) -> None:
    run = run_demo_process(tmp_path, hide="llama_index")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "pip install 'posthog-llm[llama-index]'" in run.stdout
    assert "pip install 'posthog-llm[all]' adds every part" in run.stdout
    suffixes = sorted(t.split("-", 2)[2] for t in run.trace_ids())
    assert suffixes == [
        "anthropic",
        "gemini",
        "langchain-stream",
        "langchain-tool-call",
        "manual",
        "openai",
        "span",
    ]


@needs_frameworks
def test_a_framework_too_old_for_a_part_is_skipped_without_a_traceback(tmp_path: Path) -> None:
    # langchain-core imports, but a module the part needs does not: as with an old release.
    run = run_demo_process(tmp_path, hide="langchain_core.tools")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "upgrading may help: pip install -U 'posthog-llm[langchain]'" in run.stdout
    assert "Traceback" not in run.stdout + run.stderr
    assert not [t for t in run.trace_ids() if "langchain" in t]


def test_demo_without_extras_in_a_fresh_venv(tmp_path: Path) -> None:
    """`pip install posthog-llm` (no extras) and `posthog-llm demo`: the framework-free parts run."""
    venv = _venv_without_extras(tmp_path)
    run = run_demo_process(tmp_path, command=[str(venv / "bin" / "posthog-llm")])
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    assert "Traceback" not in output
    for extra in ("langchain", "llama-index", "openai"):
        assert f"pip install 'posthog-llm[{extra}]'" in run.stdout
    assert "pip install 'posthog-llm[all]' adds every part" in run.stdout
    attempts = run.network_log.read_text() if run.network_log.exists() else ""
    assert attempts == ""
    suffixes = sorted(t.split("-", 2)[2] for t in run.trace_ids())
    assert suffixes == ["manual", "span"]
    events = run.trace_events("-manual")
    assert sorted(e["event"] for e in events) == sorted([TRACE, SPAN, GENERATION])
    with EventStore(run.db) as store:
        trace = store.trace(run.trace_ids()[0])
        assert trace is not None and trace.to_text() in run.stdout


def _venv_without_extras(tmp_path: Path) -> Path:
    """`pip install posthog-llm` from this checkout: the package and its required dependencies."""
    venv = venv_with_wheel(build_wheel(ROOT, tmp_path / "wheels"), tmp_path / "venv")
    # The venv really has no framework, and does have what the core needs.
    check = "import importlib.util as u, requests; print([m for m in %r if u.find_spec(m)])"
    tops = sorted({m.split(".")[0] for m in FRAMEWORKS})
    assert run([str(venv / "bin" / "python"), "-c", check % (tops,)]).strip() == "[]"
    return venv


@needs_frameworks
def test_demo_in_process_leaves_no_global_handler(tmp_path: Path, capsys) -> None:
    from llama_index.core.instrumentation import get_dispatcher
    from posthog_llm.integrations import llama_index as posthog_li
    from posthog_llm.integrations.langchain import get_global_handler
    from posthog_llm.local.demo import run_demo

    dispatcher = get_dispatcher()
    handlers_before = (list(dispatcher.span_handlers), list(dispatcher.event_handlers))
    assert run_demo(argparse.Namespace(db=str(tmp_path / "in-process.db"))) == 0
    out = capsys.readouterr().out
    assert "Captured traces (9)" in out
    assert posthog_li.get_global_handler() is None
    assert get_global_handler() is None
    assert (list(dispatcher.span_handlers), list(dispatcher.event_handlers)) == handlers_before


def test_manual_capture_part_is_one_tree(demo_run: DemoRun) -> None:
    events = demo_run.trace_events("-manual")
    (trace,) = _named(events, TRACE)
    (span,) = _named(events, SPAN)
    (generation,) = _named(events, GENERATION)
    trace_id = _props(trace)["$ai_trace_id"]
    assert _props(trace)["$ai_span_name"] == "answer_from_documents"
    assert _props(span)["$ai_span_name"] == "retrieve_documents"
    assert _props(span)["$ai_parent_id"] == _props(generation)["$ai_parent_id"] == trace_id
    assert _props(generation)["$ai_model"] == "demo-quoting-model"
    assert _props(generation)["$ai_input_tokens"] > 0
    # The "model" answers from the retrieved documents.
    assert "local SQLite store" in json.dumps(_props(generation)["$ai_output_choices"])
    assert {e["distinct_id"] for e in events} == {"demo-user-marie"}


def test_span_part_nests_the_steps(demo_run: DemoRun) -> None:
    events = demo_run.trace_events("-span")
    (trace,) = _named(events, TRACE)
    trace_id = _props(trace)["$ai_trace_id"]
    assert _props(trace)["$ai_span_name"] == "plan_afternoon"
    assert _props(trace)["$ai_output_state"]["forecast"] == "22°C and sunny"
    spans = {_props(s)["$ai_span_name"]: _props(s) for s in _named(events, SPAN)}
    assert set(spans) == {"get_weather", "pick_places"}
    assert {s["$ai_parent_id"] for s in spans.values()} == {trace_id}
    assert spans["get_weather"]["$ai_output_state"] == {"forecast": "22°C and sunny"}
    assert {e["distinct_id"] for e in events} == {"demo-user-marie"}


@pytest.mark.parametrize("store", ["missing directory", "not a database"])
def test_demo_into_a_store_it_cannot_open_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], store: str
) -> None:
    from posthog_llm.cli import main

    if store == "missing directory":
        # A parent that is a file: no directory can be made there.
        (tmp_path / "file").write_text("x")
        db = tmp_path / "file" / "events.db"
    else:
        db = tmp_path / "events.db"
        db.write_text("not a database at all, just text\n" * 200)
    assert main(["demo", "--db", str(db)]) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith("posthog-llm: error: cannot open the local store")
    assert "Traceback" not in captured.err
    assert "Captured traces" not in captured.out
