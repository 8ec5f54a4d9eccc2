"""`posthog-llm serve`: loopback by default, remote only with a flag and a key, and the CLI entry."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import pytest
import requests
from posthog_llm import EventStore
from posthog_llm.cli import main
from posthog_llm.local.server import ServeError, start_server


def test_start_server_listens_on_loopback_and_closes(db_path):
    handle = start_server(db_path)
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", handle.url)
    assert requests.get(handle.url + "/api/info", timeout=10).json()["events"] == 0
    handle.close()
    handle.close()  # twice is fine
    with pytest.raises(requests.ConnectionError):
        requests.get(handle.url + "/api/info", timeout=2)


@pytest.mark.parametrize("host", ["0.0.0.0", "", "192.0.2.10", "example.com"])
def test_non_loopback_addresses_need_allow_remote(db_path, host):
    with pytest.raises(ServeError) as info:
        start_server(db_path, host=host)
    assert "--allow-remote" in str(info.value)


def test_allow_remote_needs_an_api_key(db_path):
    with pytest.raises(ServeError) as info:
        start_server(db_path, host="0.0.0.0", allow_remote=True)
    assert "--api-key" in str(info.value) and "POSTHOG_API_KEY" in str(info.value)


def test_remote_mode_accepts_only_the_project_key_and_guards_the_viewer(db_path, monkeypatch):
    monkeypatch.setenv("POSTHOG_API_KEY", "phc_remote")
    monkeypatch.delenv("POSTHOG_LLM_VIEWER_PASSWORD", raising=False)
    with start_server(db_path, host="0.0.0.0", allow_remote=True) as server:
        assert server.api_key == "phc_remote"
        url = server.url
        event = {"event": "e", "distinct_id": "u"}
        assert requests.post(url + "/batch/", json=[event], timeout=10).status_code == 401
        wrong = {"api_key": "phc_other", "batch": [event]}
        assert requests.post(url + "/batch/", json=wrong, timeout=10).status_code == 401
        right = {"api_key": "phc_remote", "batch": [event]}
        assert requests.post(url + "/batch/", json=right, timeout=10).status_code == 200
        # The stored prompts are behind a viewer password (HTTP Basic, or a Bearer token), made
        # up at start when none is given; the project api key is public and opens nothing.
        password = server.viewer_password
        assert server.viewer_password_generated and password and len(password) >= 20
        page = requests.get(url + "/", timeout=10)
        assert page.status_code == 401 and "Basic" in page.headers["WWW-Authenticate"]
        assert "password" in page.text
        for secret in ("nope", "phc_remote"):
            for path in ("/", "/api/traces", "/api/events", "/static/app.js"):
                assert requests.get(url + path, auth=("x", secret), timeout=10).status_code == 401
            as_bearer = {"Authorization": f"Bearer {secret}"}
            assert requests.get(url + "/api/info", headers=as_bearer, timeout=10).status_code == 401
        assert requests.get(url + "/api/traces", auth=("anyone", password), timeout=10).ok
        bearer = {"Authorization": f"Bearer {password}"}
        assert requests.get(url + "/api/info", headers=bearer, timeout=10).json()["remote"]
    with EventStore(db_path) as store:
        assert store.count() == 1


def test_each_remote_start_makes_up_its_own_viewer_password(db_path):
    passwords = set()
    for _ in range(2):
        with start_server(db_path, host="0.0.0.0", allow_remote=True, api_key="phc_k") as server:
            passwords.add(server.viewer_password)
    assert len(passwords) == 2


@pytest.mark.parametrize("from_env", [False, True])
def test_a_chosen_viewer_password_opens_the_remote_viewer(db_path, monkeypatch, from_env):
    if from_env:
        monkeypatch.setenv("POSTHOG_LLM_VIEWER_PASSWORD", " correct horse ")
        given = None
    else:
        monkeypatch.setenv("POSTHOG_LLM_VIEWER_PASSWORD", "the argument wins over this")
        given = "correct horse"
    with start_server(
        db_path, host="0.0.0.0", allow_remote=True, api_key="phc_k", viewer_password=given
    ) as server:
        assert server.viewer_password == "correct horse"
        assert not server.viewer_password_generated
        url = server.url + "/api/info"
        assert requests.get(url, auth=("u", "correct horse"), timeout=10).ok
        assert requests.get(url, auth=("u", "phc_k"), timeout=10).status_code == 401
        # Ingest is unchanged: events signed with the project api key.
        body = {"api_key": "phc_k", "batch": [{"event": "e", "distinct_id": "u"}]}
        assert requests.post(server.url + "/batch/", json=body, timeout=10).ok


@pytest.mark.parametrize(
    ("given", "env", "message"),
    [
        ("", None, "viewer_password (--viewer-password) must be a non-empty text"),
        ("   ", None, "viewer_password (--viewer-password) must be a non-empty text"),
        (None, "  ", "POSTHOG_LLM_VIEWER_PASSWORD must be a non-empty text"),
        ("phc_k", None, "must not be the project api key"),
        (None, "phc_k", "POSTHOG_LLM_VIEWER_PASSWORD must not be the project api key"),
    ],
)
def test_a_bad_viewer_password_is_refused_at_start(db_path, monkeypatch, given, env, message):
    if env is None:
        monkeypatch.delenv("POSTHOG_LLM_VIEWER_PASSWORD", raising=False)
    else:
        monkeypatch.setenv("POSTHOG_LLM_VIEWER_PASSWORD", env)
    with pytest.raises(ServeError) as info:
        start_server(
            db_path, host="0.0.0.0", allow_remote=True, api_key="phc_k", viewer_password=given
        )
    assert message in str(info.value)


def test_the_loopback_viewer_needs_no_password_unless_one_is_given(db_path, monkeypatch):
    monkeypatch.delenv("POSTHOG_LLM_VIEWER_PASSWORD", raising=False)
    with start_server(db_path) as server:
        assert server.viewer_password is None and not server.viewer_password_generated
        assert requests.get(server.url + "/api/info", timeout=10).ok
    with start_server(db_path, viewer_password="s3cret") as server:
        assert requests.get(server.url + "/api/info", timeout=10).status_code == 401
        assert requests.get(server.url + "/api/info", auth=("u", "s3cret"), timeout=10).ok


def test_cli_serve_remote_prints_the_made_up_viewer_password_once(tmp_path):
    env = dict(os.environ, PYTHONUNBUFFERED="1", POSTHOG_API_KEY="phc_cli")
    env.pop("POSTHOG_LLM_VIEWER_PASSWORD", None)
    args = ["serve", "--host", "0.0.0.0", "--allow-remote", "--port", "0"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "posthog_llm", *args, "--db", str(tmp_path / "r.db"), "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        url = re.search(r"collector on (http://[^ ]+)", proc.stdout.readline()).group(1)
        lines = [proc.stdout.readline() for _ in range(5)]
        login = next(line for line in lines if "viewer login" in line)
        assert any("listening on:  0.0.0.0:" in line for line in lines)  # not only 127.0.0.1
        password = re.search(r"password (\S+)", login).group(1)
        assert "phc_cli" not in login and "POSTHOG_LLM_VIEWER_PASSWORD" in login
        assert requests.get(url + "/api/info", auth=("me", password), timeout=10).ok
        assert (
            requests.get(url + "/api/info", auth=("me", "phc_cli"), timeout=10).status_code == 401
        )
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert password not in out + err  # printed once, at start


def test_cli_refuses_a_remote_address_with_one_line(tmp_path, capsys):
    code = main(["serve", "--host", "0.0.0.0", "--port", "0", "--db", str(tmp_path / "e.db")])
    assert code != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("posthog-llm: error: refusing to listen")


def test_cli_reports_a_port_in_use(tmp_path, capsys, db_path):
    with start_server(db_path) as running:
        code = main(["serve", "--port", str(running.port), "--db", str(tmp_path / "e.db")])
    assert code == 1
    err = capsys.readouterr().err
    assert f"port {running.port} on 127.0.0.1 is already in use" in err
    assert f"--port {running.port + 1}" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_posthog_llm_serve_runs_until_interrupted(tmp_path, stop):
    db = str(tmp_path / "served.db")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "posthog_llm", "serve", "--port", "0", "--db", db],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        first = proc.stdout.readline()
        match = re.search(r"collector on (http://127\.0\.0\.1:\d+)", first)
        assert match, first + proc.stderr.read()
        url = match.group(1)
        viewer_line = proc.stdout.readline()
        assert f"viewer:        {url}/" in viewer_line
        event = {"event": "served", "distinct_id": "u", "properties": {"$ai_trace_id": "s1"}}
        assert requests.post(url + "/capture/", json=event, timeout=10).status_code == 200
        assert "served" in requests.get(url + "/api/events", timeout=10).text
    finally:
        proc.send_signal(stop)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "stored 1 event" in out and "stopped; stored 1 event in" in out
    with EventStore(db) as store:
        assert [e["event"] for e in store.events()] == ["served"]


def test_serve_request_lines_show_terminal_controls_from_clients_as_escapes(tmp_path):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "posthog_llm",
            "serve",
            "--port",
            "0",
            "--db",
            str(tmp_path / "s.db"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        match = re.search(r"collector on (http://127\.0\.0\.1:\d+)", proc.stdout.readline())
        assert match
        # The refusal quotes the event's name: clear screen, window title, a C1 CSI.
        event = {"event": "x\x1b[2J\x1b]0;PWNED\x07\x9b2J", "distinct_id": "u", "properties": []}
        assert (
            requests.post(match.group(1) + "/batch/", json=[event], timeout=10).status_code == 400
        )
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    assert "-> 400: x\\x1b[2J\\x1b]0;PWNED\\x07\\x9b2J: 'properties'" in out, out + err
    assert not any(ord(c) < 0x20 and c != "\n" or 0x7F <= ord(c) <= 0x9F for c in out)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--max-body-mb", "0"], "--max-body-mb must be a size > 0, got 0.0"),
        (["--pricing", "no-such-prices.json"], "cannot read pricing file no-such-prices.json"),
    ],
)
def test_cli_reports_bad_serve_options(tmp_path, capsys, extra, message):
    code = main(["serve", "--port", "0", "--db", str(tmp_path / "e.db"), *extra])
    assert code == 1
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("host", ["[::1]", "::1"])
def test_an_ipv6_loopback_host_gets_a_url_clients_can_use(db_path, host):
    handle = start_server(db_path, host=host)
    try:
        assert handle.url == f"http://[::1]:{handle.port}"
        assert requests.get(handle.url + "/api/info", timeout=10).json()["events"] == 0
    finally:
        handle.close()


def test_serve_on_another_loopback_address_does_not_say_other_machines_can_reach_it(tmp_path):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "posthog_llm", "serve", "--host", "127.0.0.2", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        first = proc.stdout.readline()
        assert re.search(r"collector on http://127\.0\.0\.2:\d+", first), first
        second = proc.stdout.readline()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=20)
    assert "viewer:" in second and "other machines" not in second
