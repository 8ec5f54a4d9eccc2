"""The local store and the disk spool hold captured prompts: only their owner may read them."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator

import pytest
from posthog_llm import Client, EventStore
from posthog_llm._spool import Spool

pytestmark = pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")


@pytest.fixture(autouse=True)
def ordinary_umask() -> Iterator[None]:
    old = os.umask(0o022)  # what most shells set: 0755 folders, 0644 files
    yield
    os.umask(old)


def _modes(root: str) -> dict[str, int]:
    modes = {"": stat.S_IMODE(os.stat(root).st_mode)}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            modes[os.path.relpath(path, root)] = stat.S_IMODE(os.stat(path).st_mode)
    return modes


def test_the_local_store_is_created_owner_only_with_its_wal_and_shm(tmp_path):
    root = tmp_path / "app"
    root.mkdir(mode=0o755)
    path = root / ".posthog-llm" / "nested" / "events.db"
    client = Client(db=str(path))
    client.capture("$ai_generation", distinct_id="u", properties={"$ai_input": "secret"})
    assert client.flush(5)
    # While the writer's connection is open, SQLite's -wal and -shm files exist too.
    modes = _modes(str(root / ".posthog-llm"))
    assert {"nested/events.db-wal", "nested/events.db-shm"} <= set(modes)
    assert modes == {
        "": 0o700,
        "nested": 0o700,
        "nested/events.db": 0o600,
        "nested/events.db-wal": 0o600,
        "nested/events.db-shm": 0o600,
    }
    client.shutdown(5)
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o755  # a folder the user made keeps its mode


def test_a_store_opened_for_reading_in_a_new_place_is_owner_only(tmp_path):
    path = tmp_path / "store" / "events.db"
    with EventStore(str(path), must_exist=False) as store:
        assert store.traces() == []
        assert _modes(str(tmp_path / "store"))["events.db"] == 0o600
        assert _modes(str(tmp_path / "store"))[""] == 0o700


def test_an_existing_store_keeps_the_mode_its_owner_gave_it(tmp_path):
    path = tmp_path / "events.db"
    with EventStore(str(path), must_exist=False):
        pass
    os.chmod(path, 0o640)  # shared with a group on purpose
    with EventStore(str(path)) as store:
        assert store.traces() == []
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640


def test_the_spool_is_created_owner_only_with_its_wal_and_shm(tmp_path):
    spool = Spool(str(tmp_path / "cache" / "posthog-llm" / "spool" / "abc" / "spool.db"))
    spool.put([b'{"event":"$ai_generation","properties":{"$ai_input":"secret"}}'])
    modes = _modes(str(tmp_path / "cache"))
    spool.close()
    assert modes == {
        "": 0o700,
        "posthog-llm": 0o700,
        "posthog-llm/spool": 0o700,
        "posthog-llm/spool/abc": 0o700,
        "posthog-llm/spool/abc/spool.db": 0o600,
        "posthog-llm/spool/abc/spool.db-wal": 0o600,
        "posthog-llm/spool/abc/spool.db-shm": 0o600,
    }


def test_a_umask_that_takes_owner_bits_does_not_lock_the_owner_out(tmp_path):
    os.umask(0o277)
    spool = Spool(str(tmp_path / "spool" / "spool.db"))
    spool.put([b"x"])
    assert spool.pending() == 1
    spool.close()
    os.umask(0o022)
    assert _modes(str(tmp_path / "spool"))["spool.db"] == 0o600
    assert _modes(str(tmp_path / "spool"))[""] == 0o700


def test_a_store_named_like_a_uri_is_the_file_it_names(tmp_path, monkeypatch):
    # SQLite reads a plain name starting with "file:" as a URI: the store and its check must
    # open the file the name says, owner-only, and nothing else.
    monkeypatch.chdir(tmp_path)
    client = Client(db="file:events.db")
    client.capture("e", distinct_id="u")
    assert client.shutdown(5)
    assert sorted(n for n in os.listdir(tmp_path) if not n.endswith(("-wal", "-shm"))) == [
        "file:events.db"
    ]
    assert os.stat(tmp_path / "file:events.db").st_mode & 0o777 == 0o600
    with EventStore(str(tmp_path / "file:events.db")) as store:
        assert [e["event"] for e in store.events()] == ["e"]


def test_a_store_on_a_windows_network_share_keeps_its_server_in_the_path():
    # `\\server\share\x.db` as a `file:` URI: with two slashes SQLite reads the server as an
    # authority and refuses it; four keep it in the path (Windows paths, read the Windows way).
    from pathlib import PureWindowsPath

    from posthog_llm._private_files import file_uri

    share = PureWindowsPath("\\\\fileserver\\home\\me\\x.db")
    assert file_uri(share) == "file:////fileserver/home/me/x.db"
    assert file_uri(PureWindowsPath("C:\\Users\\me\\x.db")) == "file:///C:/Users/me/x.db"
