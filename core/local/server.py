"""`posthog-llm serve`: a PostHog-compatible capture endpoint and the trace viewer, in one process.

Point posthog-python, posthog-js, `posthog_llm.Client` or curl at it and the events land in the
local SQLite store, where the viewer (`/`), the `posthog-llm` command line and notebooks read them.

>>> from posthog_llm.local.server import start_server
>>> server = start_server(".posthog-llm/events.db")                     # doctest: +SKIP
>>> client = posthog_llm.Client(api_key="phc_local", host=server.url)   # doctest: +SKIP
>>> server.url                                                          # doctest: +SKIP
'http://127.0.0.1:53127'
>>> server.close()                                                      # doctest: +SKIP

Capture: `POST /batch/`, `/capture/`, `/e/`, `/i/v0/e/`, `/i/v0/ai/batch/` with JSON, gzip
(`Content-Encoding: gzip`, gzip magic bytes or `?compression=gzip-js`) or posthog-js's form body
`data=<base64 JSON>`. Viewer API: `/api/traces?search=`, `/api/traces/<id>`, `/api/stats`,
`/api/events`, `/api/info`. Standard library only (`http.server`).
"""

from __future__ import annotations

import errno
import os
import secrets
import signal
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any

from .._render import printable
from .._store import default_db_path
from .._version import __version__
from ._app import App
from ._auth import is_loopback
from ._handler import CAPTURE_PATHS, Handler, Server, Server6
from ._handler import FLAGS_PATHS as FLAGS_PATHS
from ._ingest import DEFAULT_MAX_BODY_BYTES, BadRequest, decode_body, normalize_event
from ._ingest import split_payload as split_payload
from ._static import VIEWER_PAGES as VIEWER_PAGES
from .pricing import PricingSource, load_pricing

# The module is the public face; the work is done in private modules, one job each:
# _ingest (request bodies and events), _api (the viewer's JSON), _static (the viewer's files),
# _auth (loopback, Host and api key rules), _app (the store and shared state), _handler (HTTP).
__all__ = [
    "start_server",
    "serve",
    "ServerHandle",
    "ServeError",
    "BadRequest",
    "decode_body",
    "normalize_event",
    "CAPTURE_PATHS",
    "DEFAULT_PORT",
    "VIEWER_PASSWORD_ENV",
    "DEFAULT_MAX_BODY_BYTES",
]

DEFAULT_PORT = 8010
VIEWER_PASSWORD_ENV = "POSTHOG_LLM_VIEWER_PASSWORD"


class ServeError(Exception):
    """The server cannot start as configured (printed as one line by `posthog-llm serve`)."""


class ServerHandle:
    """A running collector and viewer. `url` is the base URL for SDKs and the browser."""

    def __init__(self, server: Server, app: App, thread: threading.Thread, host: str) -> None:
        self._server = server
        self._app = app
        self._thread = thread
        self.host = host
        self.port: int = server.server_address[1]
        bare = host.strip().strip("[]")  # `--host [::1]` as well as `--host ::1`
        shown = "127.0.0.1" if bare in ("", "0.0.0.0") else bare
        shown = f"[{shown}]" if ":" in shown else shown
        self.url = f"http://{shown}:{self.port}"
        self.db = app.db
        self.api_key = app.api_key
        # What opens the viewer (HTTP Basic password, any user name); None on loopback without one.
        self.viewer_password = app.viewer_password
        # Whether `viewer_password` was made up at start (remote mode without one given).
        self.viewer_password_generated = False

    def __repr__(self) -> str:
        return f"<posthog-llm server {self.url} store={self.db}>"

    @property
    def stored(self) -> int:
        """Events stored by this server since it started."""
        return self._app.stored

    def wait(self) -> None:
        """Block until the server stops (Ctrl+C stops `posthog-llm serve`)."""
        while self._thread.is_alive():
            self._thread.join(0.5)

    def close(self) -> None:
        """Stop listening and close the store. Safe to call twice."""
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
        self._app.close()

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _viewer_password(given: str | None, api_key: str | None) -> str | None:
    """The viewer password given or in POSTHOG_LLM_VIEWER_PASSWORD (stripped), else None."""
    if given is None:
        given = os.environ.get(VIEWER_PASSWORD_ENV) or None
        source = VIEWER_PASSWORD_ENV
    else:
        source = "viewer_password (--viewer-password)"
    if given is None:
        return None
    if not isinstance(given, str) or not given.strip():
        raise ServeError(f"{source} must be a non-empty text, got {given!r}")
    password = given.strip()
    if api_key is not None and password == api_key:
        raise ServeError(
            f"{source} must not be the project api key: that key is public (posthog-js ships it "
            "to every browser), so it cannot guard the stored prompts"
        )
    return password


def _env_key() -> str | None:
    for name in ("POSTHOG_API_KEY", "POSTHOG_PROJECT_API_KEY"):
        value = (os.environ.get(name) or "").strip()
        if value:
            return value
    return None


def start_server(
    db: str | os.PathLike[str] | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    api_key: str | None = None,
    allow_remote: bool = False,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    pricing: PricingSource | None = None,
    log: Callable[[str], None] | None = None,
    cors_origins: Iterable[str] = (),
    budget_bytes: int | None = None,
    otlp_hold_seconds: float = 10.0,
    viewer_password: str | None = None,
) -> ServerHandle:
    """Start the collector and viewer on a background thread; `port=0` picks a free port.

    Loopback only unless `allow_remote=True`, which also requires a project api key
    (`api_key` or `POSTHOG_API_KEY`); only events carrying that key are then accepted. The viewer
    then asks for `viewer_password` (or POSTHOG_LLM_VIEWER_PASSWORD) as an HTTP Basic password,
    never the api key, which is public; without one a random password is made up, in
    `handle.viewer_password`. An `api_key` or `viewer_password` given on loopback is enforced too.
    Browser pages may post events from loopback origins and from `cors_origins` ("*": any).
    `budget_bytes` bounds the memory all capture requests may use at once while decoding (by
    default two bodies of `max_body_bytes` decoding at once, up to 19 times their size each).
    `otlp_hold_seconds`: how long OTLP spans of an AI trace wait for its root after the trace's
    last span came (then the trace is stored with a stand-in root).
    Raises ServeError when it cannot start.
    """
    path = os.fspath(db) if db else default_db_path()
    host = (host or "").strip()
    if not isinstance(max_body_bytes, int) or max_body_bytes <= 0:
        raise ServeError(
            f"max_body_bytes must be a positive number of bytes, got {max_body_bytes!r}"
        )
    if (
        not isinstance(otlp_hold_seconds, (int, float))
        or isinstance(otlp_hold_seconds, bool)
        or not otlp_hold_seconds >= 0
    ):
        raise ServeError(f"otlp_hold_seconds must be a number >= 0, got {otlp_hold_seconds!r}")
    loopback = is_loopback(host)
    if not loopback and not allow_remote:
        raise ServeError(
            f"refusing to listen on {host or 'all interfaces'!r}: it is not a loopback address. "
            "Add --allow-remote to accept events from other machines (then only the project "
            "api key from --api-key or POSTHOG_API_KEY is accepted)"
        )
    key = api_key.strip() if isinstance(api_key, str) and api_key.strip() else None
    if not loopback:
        key = key or _env_key()
        if key is None:
            raise ServeError(
                "--allow-remote needs the project api key to accept: pass --api-key or set "
                "POSTHOG_API_KEY"
            )
    password = _viewer_password(viewer_password, key)
    generated = False
    if password is None and not loopback:
        password, generated = secrets.token_urlsafe(18), True
    try:
        table = load_pricing(pricing)
    except ValueError as exc:
        raise ServeError(str(exc)) from None
    try:
        app = App(
            path,
            api_key=key,
            host=host,
            viewer_password=password,
            max_body_bytes=max_body_bytes,
            pricing=table,
            log=log,
            cors_origins=cors_origins,
            budget_bytes=budget_bytes,
            otlp_hold_seconds=otlp_hold_seconds,
        )
    except (OSError, sqlite3.Error) as exc:
        raise ServeError(f"cannot open the local store {path}: {exc}") from None
    server_class = Server6 if ":" in host else Server
    try:
        server = server_class((host.strip("[]"), int(port)), Handler)
    except (OSError, OverflowError) as exc:
        app.close()
        if getattr(exc, "errno", None) == errno.EADDRINUSE:
            raise ServeError(
                f"port {port} on {host} is already in use (another posthog-llm serve?); "
                f"pick another with --port {int(port) + 1 if int(port) else 8011}"
            ) from None
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ServeError(f"cannot listen on {host}:{port}: {reason}") from None
    server.app = app
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        name="posthog-llm-serve",
        daemon=True,
    )
    thread.start()
    handle = ServerHandle(server, app, thread, host)
    handle.viewer_password_generated = generated
    return handle


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _stop_on_sigterm() -> Any:
    """`docker stop` and service managers send SIGTERM: stop as cleanly as on Ctrl+C."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _raise_interrupt)


def _mask(key: str) -> str:
    return key[:4] + "…" if len(key) > 8 else "…"


def _return_large_buffers_to_the_os() -> None:
    """Make glibc serve every buffer over 128 KiB with its own mapping, freed back at once.

    By default glibc raises that threshold after each large free, so request bodies of mixed
    sizes then come from the heap and fragment it: 40 concurrent clients left a 350 MB peak
    instead of 125 MB. Only for the `serve` process, which is ours alone.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass  # not glibc (musl, …): nothing to tune


def serve(args: Any) -> int:
    """`posthog-llm serve`: run until Ctrl+C. `args` has host, port, db, allow_remote, api_key."""
    db = getattr(args, "db", None) or default_db_path()
    _return_large_buffers_to_the_os()
    max_mb = getattr(args, "max_body_mb", None)
    quiet = bool(getattr(args, "quiet", False))
    hold = getattr(args, "otlp_hold", None)
    if hold is not None and not hold >= 0:
        print(f"posthog-llm: error: --otlp-hold must be seconds >= 0, got {hold}", file=sys.stderr)
        return 1
    if max_mb is not None and not 0 < max_mb < 1e9:
        print(
            f"posthog-llm: error: --max-body-mb must be a size > 0, got {max_mb}", file=sys.stderr
        )
        return 1

    def log(line: str) -> None:
        # Request lines quote what clients sent: no terminal controls from them.
        print(printable(line), flush=True)

    try:
        handle = start_server(
            db,
            host=getattr(args, "host", None) or "127.0.0.1",
            port=DEFAULT_PORT if getattr(args, "port", None) is None else args.port,
            api_key=getattr(args, "api_key", None),
            allow_remote=bool(getattr(args, "allow_remote", False)),
            max_body_bytes=(
                int(max_mb * 1024 * 1024) if max_mb is not None else DEFAULT_MAX_BODY_BYTES
            ),
            pricing=getattr(args, "pricing", None),
            log=None if quiet else log,
            cors_origins=getattr(args, "cors_origin", None) or (),
            viewer_password=getattr(args, "viewer_password", None),
            otlp_hold_seconds=10.0 if hold is None else hold,
        )
    except ServeError as exc:
        print(f"posthog-llm: error: {exc}", file=sys.stderr)
        return 1
    print(f"posthog-llm {__version__}: PostHog-compatible collector on {handle.url} (store: {db})")
    if not is_loopback(handle.host):
        print(f"  listening on:  {handle.host or '0.0.0.0'}:{handle.port} (other machines too)")
    print(f"  viewer:        {handle.url}/")
    print(f"  send events:   POSTHOG_HOST={handle.url}  (posthog-python, posthog-js, posthog_llm)")
    if handle.api_key:
        print(f"  accepting only the project api key {_mask(handle.api_key)}")
    if handle.viewer_password_generated:
        # Printed once, here: the only way to learn it. Any user name goes with it.
        print(
            f"  viewer login:  any user name, password {handle.viewer_password}  (made up for "
            f"this run; choose one with {VIEWER_PASSWORD_ENV} or --viewer-password)"
        )
    elif handle.viewer_password:
        print("  viewer login:  any user name and the viewer password you set")
    print("Press Ctrl+C to stop.", flush=True)
    previous = _stop_on_sigterm()
    try:
        handle.wait()
    except KeyboardInterrupt:
        pass
    finally:
        handle.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    stored = handle.stored
    print(f"stopped; stored {stored} event{'s' * (stored != 1)} in {db}")
    return 0
