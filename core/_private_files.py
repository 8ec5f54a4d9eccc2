"""Folders and files that hold captured prompts are readable by their owner only.

The local store and the disk spool hold whatever the application sent to its models. A folder we
create gets mode 0700 and a database file we create gets 0600, whatever the process umask; SQLite
gives the `-wal`, `-shm` and `-journal` files it makes later the mode of their database file. A
folder or file that already exists is left as it is (the user may have chosen its mode). On
Windows the modes mean nothing and nothing changes.
"""

from __future__ import annotations

import os
import pathlib

__all__ = ["make_private_dirs", "create_private_file", "sqlite_uri"]

_POSIX = os.name == "posix"


def make_private_dirs(folder: str) -> None:
    """Create `folder` and any missing parents; each folder created here gets mode 0700."""
    if not _POSIX:
        os.makedirs(folder, exist_ok=True)
        return
    missing: list[str] = []
    current = os.path.abspath(folder)
    while not os.path.isdir(current):
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    for path in reversed(missing):
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            if not os.path.isdir(path):
                raise
            continue  # another process made it first: its mode is its maker's
        os.chmod(path, 0o700)  # a umask such as 0o277 would have taken bits of 0700 away


def create_private_file(path: str) -> None:
    """Create `path` empty with mode 0600 unless it exists (an empty file is an empty database)."""
    if not _POSIX or os.path.exists(path):
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return  # another process created it first
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def sqlite_uri(path: str, *, read_only: bool = False) -> str:
    """The `file:` URI that opens exactly the file `path` names (a plain name that starts with
    `file:` would itself be read as a URI by SQLite builds that allow them); `sqlite3.connect`
    takes it with `uri=True`. `:memory:` stays itself."""
    if path == ":memory:":
        return "file::memory:"
    uri = file_uri(pathlib.Path(os.path.abspath(path)))
    return uri + "?mode=ro" if read_only else uri


def file_uri(path: pathlib.PurePath) -> str:
    """An absolute path as a `file:` URI SQLite opens (percent-encoded, any platform). A
    Windows network share (a UNC path) keeps its server in the path: as the URI's authority,
    SQLite would refuse it."""
    uri = path.as_uri()
    if uri.startswith("file://") and not uri.startswith("file:///"):
        uri = "file:////" + uri[len("file://") :]
    return uri
