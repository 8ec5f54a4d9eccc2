"""The `posthog-llm` command line: read the local store, run the collector and viewer, run the demo.

posthog-llm events [--trace ID] [--event NAME] [--since 10m] [--limit N] [--json]
posthog-llm traces [--search TEXT] [--limit N] [--json]
posthog-llm show TRACE_ID_OR_PREFIX
posthog-llm serve [--host 127.0.0.1] [--port 8010] [--cors-origin ORIGIN] [--viewer-password P]
posthog-llm demo

Every command takes `--db PATH` (default: $POSTHOG_LLM_DB or ./.posthog-llm/events.db).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import os
import re
import sqlite3
import sys
from collections.abc import Generator, Sequence
from typing import Any, NoReturn

from ._command_error import CommandError
from ._events import AI_EVENTS, EVENT_PREFIX
from ._render import event_line, json_line, printable, traces_table
from ._store import EventStore, default_db_path
from ._version import __version__

__all__ = ["main", "build_parser", "parse_since", "CommandError"]

# Kept for callers of the old private name.
_traces_table = traces_table

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, not argparse's usage block: easy to read and to grep in CI logs.
        self.exit(2, f"posthog-llm: error: {message} (see '{self.prog} --help')\n")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def parse_since(text: str, *, now: _dt.datetime | None = None) -> str:
    """The stored-timestamp form of `--since`: `30s`, `10m`, `2h`, `1d`, `1w` ago, or ISO 8601.

    >>> parse_since("2h", now=_dt.datetime(2025, 1, 30, 12, tzinfo=_dt.timezone.utc))
    '2025-01-30T10:00:00+00:00'
    >>> parse_since("2025-01-30")
    '2025-01-30T00:00:00+00:00'
    """
    match = _RELATIVE.match(text)
    if match:
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2).lower()]
        try:
            moment = (now or _dt.datetime.now(_dt.timezone.utc)) - _dt.timedelta(seconds=seconds)
        except OverflowError:  # further back than datetime goes: everything
            moment = _dt.datetime.min.replace(tzinfo=_dt.timezone.utc)
    else:
        value = text.strip()
        if value[-1:] in ("z", "Z"):
            value = value[:-1] + "+00:00"
        try:
            moment = _dt.datetime.fromisoformat(value)
        except ValueError:
            raise CommandError(
                f"--since {text!r}: use a time like 2025-01-30T12:00 (UTC unless it has an "
                "offset) or a duration ago like 30s, 10m, 2h, 1d, 1w"
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=_dt.timezone.utc)
    try:
        return moment.astimezone(_dt.timezone.utc).isoformat()
    except OverflowError:  # an offset past the first or last representable day
        edge = _dt.datetime.min if moment.year == _dt.MINYEAR else _dt.datetime.max
        return edge.replace(tzinfo=_dt.timezone.utc).isoformat()


def _event_name(name: str) -> str:
    """`generation` is short for `$ai_generation`; other names are taken as they are."""
    if not name.startswith("$") and f"{EVENT_PREFIX}{name}" in AI_EVENTS:
        return f"{EVENT_PREFIX}{name}"
    return name


def _open_store(path: str | None) -> EventStore:
    path = path or default_db_path()
    try:
        return EventStore(path)
    except FileNotFoundError:
        raise CommandError(
            f"no posthog-llm database at {path} (capture some events first, e.g. 'posthog-llm demo', "
            "or pass --db PATH)"
        ) from None
    except sqlite3.DatabaseError as exc:
        raise CommandError(f"cannot read {path}: {exc}") from None


def _resolve_trace(store: EventStore, given: str, db: str) -> str:
    """The trace id for an exact id or a unique prefix of one."""
    if not given.strip():
        raise CommandError(
            "give a trace id, or the start of one (list them with 'posthog-llm traces')"
        )
    if store.trace_ids_with_prefix(given, limit=1) == [given]:
        return given
    matches = store.trace_ids_with_prefix(given, limit=1001)
    if not matches:
        raise CommandError(f"no trace {given!r} in {db} (list them with 'posthog-llm traces')")
    if len(matches) > 1:
        count = "over 1000" if len(matches) > 1000 else str(len(matches))
        shown = ", ".join(matches[:3]) + (", …" if len(matches) > 3 else "")
        raise CommandError(f"{given!r} matches {count} traces ({shown}): give more of the trace id")
    return matches[0]


def _cmd_events(args: argparse.Namespace) -> int:
    since = parse_since(args.since) if args.since else None
    out = sys.stdout
    with _open_store(args.db) as store:
        trace_id = args.trace
        if trace_id is not None:
            trace_id = _resolve_trace(store, trace_id, store.path)
        rows: Generator[dict[str, Any], None, None] = store.iter_events(
            limit=args.limit,
            trace_id=trace_id,
            event=_event_name(args.event or "") or None,
            since=since,
        )
        count = 0
        with contextlib.closing(rows):
            for event in rows:
                if args.json:
                    line = json_line(event)
                else:
                    line = event_line(event)
                out.write(line + "\n")
                count += 1
    if not count and not args.json:
        print(
            "no events match" if (args.trace or args.event or since) else "no events yet",
            file=sys.stderr,
        )
    return 0


def _cmd_traces(args: argparse.Namespace) -> int:
    with _open_store(args.db) as store:
        rows = store.traces(limit=args.limit, search=args.search)
        total = store.count_traces(args.search) if rows and len(rows) == args.limit else len(rows)
    if args.json:
        for row in rows:
            print(json_line(row.as_dict(), compact=False))
    elif rows:
        print(traces_table(rows))
        if total > len(rows):
            print(f"({len(rows)} of {total:,} traces; --limit N shows more)", file=sys.stderr)
    elif args.search:
        print(f"no traces match {args.search!r}")
    else:
        print("no traces yet")
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    with _open_store(args.db) as store:
        trace_id = _resolve_trace(store, args.trace_id, store.path)
        trace = store.trace(trace_id)
    if trace is None:
        raise CommandError(f"no trace {args.trace_id!r} in {args.db or default_db_path()}")
    print(trace.to_text())
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from .local.server import serve

    return serve(args)


def _cmd_demo(args: argparse.Namespace) -> int:
    from .local.demo import run_demo  # lazily: the demo imports the integrations

    return run_demo(args)


_DB_HELP = "the local store (default: $POSTHOG_LLM_DB or ./.posthog-llm/events.db)"


def _sub(
    sub: Any, name: str, summary: str, description: str, examples: str
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help=summary,
        description=description,
        epilog="examples:\n" + examples,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--db", metavar="PATH", help=_DB_HELP)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="posthog-llm",
        description="posthog-llm: look at captured LLM events locally.",
        epilog="examples:\n  posthog-llm demo\n  posthog-llm traces\n  posthog-llm serve\n\n"
        "'posthog-llm COMMAND --help' tells more about each command.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"posthog-llm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = _sub(
        sub,
        "events",
        "print captured events, oldest first, one per line",
        "Print the captured events, oldest first, one line each: time, event, trace, model or "
        "span name, tokens, latency, error, distinct id. Rows stream as they are read, so "
        "'| head' and '| grep' work on stores of any size.",
        "  posthog-llm events --since 10m\n"
        "  posthog-llm events --trace 3f2a --event generation --json | jq .properties\n"
        "  posthog-llm events --limit 20",
    )
    p.add_argument("--json", action="store_true", help="one compact JSON object per line")
    p.add_argument("--limit", type=_positive, default=None, help="at most this many events")
    p.add_argument("--trace", metavar="TRACE_ID", help="only this trace (a unique id prefix works)")
    p.add_argument(
        "--event",
        metavar="NAME",
        help="only this event name: $ai_generation (or just: generation), $ai_span, my_event …",
    )
    p.add_argument(
        "--since",
        metavar="WHEN",
        help="only events from then on: a duration ago (30s, 10m, 2h, 1d, 1w) or an ISO time "
        "(2025-01-30, 2025-01-30T12:00; UTC unless it has an offset)",
    )
    p.set_defaults(func=_cmd_events)

    p = _sub(
        sub,
        "traces",
        "one row per trace: tokens, latency, errors",
        "List traces, newest first: name, start, number of events and generations, tokens, "
        "latency and errors.",
        "  posthog-llm traces\n  posthog-llm traces --search gpt-4o --limit 20\n"
        "  posthog-llm traces --json",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per trace")
    p.add_argument(
        "--limit", type=_positive, default=100, help="at most this many traces (default 100)"
    )
    p.add_argument(
        "--search", help="only traces whose id, distinct id, span name or model contains this"
    )
    p.set_defaults(func=_cmd_traces)

    p = _sub(
        sub,
        "show",
        "print one trace as a tree",
        "Print one trace as a tree of its spans, generations and embeddings, with model, "
        "tokens, latency and errors. A unique prefix of the trace id is enough.",
        "  posthog-llm show 3f2a9c\n  posthog-llm show trace-chat-1 --db app.db",
    )
    p.add_argument("trace_id", metavar="TRACE_ID", help="a trace id or a unique prefix of one")
    p.set_defaults(func=_cmd_show)

    p = _sub(
        sub,
        "serve",
        "run a PostHog-compatible collector and the trace viewer",
        "Run a PostHog-compatible capture endpoint and the trace viewer in one process. Point "
        "posthog-python, posthog-js, posthog_llm or curl at it; open the printed URL in a "
        "browser. Loopback only unless --allow-remote; then the viewer asks for a password "
        "(any user name): --viewer-password or $POSTHOG_LLM_VIEWER_PASSWORD, else one made up "
        "and printed at start. The project api key never opens the viewer: it is public.",
        "  posthog-llm serve\n  posthog-llm serve --port 8020 --db app.db\n"
        "  posthog-llm serve --cors-origin https://app.example.com\n"
        "  POSTHOG_API_KEY=phc_... posthog-llm serve --host 0.0.0.0 --allow-remote\n"
        "  POSTHOG_API_KEY=phc_... POSTHOG_LLM_VIEWER_PASSWORD=... posthog-llm serve "
        "--host 0.0.0.0 --allow-remote",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8010, help="port (default 8010)")
    p.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow listening on a non-loopback address (then only events with the configured "
        "api key are accepted, and the viewer needs its password)",
    )
    p.add_argument("--api-key", help="the project api key to accept (default: $POSTHOG_API_KEY)")
    p.add_argument(
        "--viewer-password",
        metavar="PASSWORD",
        help="the password that opens the viewer, with any user name (default: "
        "$POSTHOG_LLM_VIEWER_PASSWORD, which keeps it out of the process list; with "
        "--allow-remote and neither, one is made up and printed at start). Enforced on "
        "loopback too when given",
    )
    p.add_argument(
        "--cors-origin",
        action="append",
        metavar="ORIGIN",
        help="also accept events posted by browser pages from this origin (repeatable; '*' for "
        "any). Pages on loopback origins (http://localhost:3000) are always accepted",
    )
    p.add_argument(
        "--pricing",
        metavar="PATH",
        help="JSON price table to use on top of the bundled one (default: $POSTHOG_LLM_PRICING)",
    )
    p.add_argument(
        "--max-body-mb",
        type=float,
        default=20.0,
        metavar="MB",
        help="refuse request bodies larger than this with 413 (default 20)",
    )
    p.add_argument(
        "--otlp-hold",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how long OTLP spans of an AI trace wait for its root span after the trace's last "
        "span arrived (default 10); raise it above your slowest model call, or a trace whose "
        "root comes later is stored without the root's name and identity",
    )
    p.add_argument("--quiet", action="store_true", help="do not print a line per capture request")
    p.set_defaults(func=_cmd_serve)

    p = _sub(
        sub,
        "demo",
        "run the offline demo: manual capture, spans, LangChain, LlamaIndex, OpenAI, Anthropic, Gemini",
        "Run an offline demo that captures traces into the local store with whatever "
        "integrations are installed, then prints them.",
        "  posthog-llm demo\n  posthog-llm demo --db /tmp/demo.db && posthog-llm serve --db /tmp/demo.db",
    )
    p.set_defaults(func=_cmd_demo)
    return parser


def _silence_stdout() -> None:
    # After a closed pipe (`| head`), the interpreter's final flush must not print a traceback.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _tolerate_narrow_encodings() -> None:
    """Trees, arrows and the store's own text printed to a console or file whose encoding lacks
    them (Windows' cp1252 when output is redirected) come out escaped, not as a traceback."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None and getattr(stream, "errors", None) == "strict":
            try:
                reconfigure(errors="backslashreplace")
            except (ValueError, OSError):  # a closed or detached stream: left as it is
                pass


def main(argv: Sequence[str] | None = None) -> int:
    _tolerate_narrow_encodings()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        result = int(args.func(args) or 0)
        sys.stdout.flush()
        return result
    except CommandError as exc:
        # The message may quote the store's contents (trace ids): no terminal controls from them.
        print(f"posthog-llm: error: {printable(str(exc))}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        _silence_stdout()
        return 0
    except KeyboardInterrupt:
        return 130


def _entry() -> Any:  # pragma: no cover
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
