"""The `posthog-llm` command line: read the local store, run the collector and viewer, run the demo.

posthog-llm events [--db PATH] [--json]
posthog-llm traces [--db PATH] [--json]
posthog-llm show TRACE_ID [--db PATH]
posthog-llm serve [--host 127.0.0.1] [--port 8010] [--db PATH]
posthog-llm demo [--db PATH]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from ._store import EventStore, TraceSummary, default_db_path
from ._version import __version__

__all__ = ["main"]


class CommandError(Exception):
    """A problem the user can fix: printed as one line, exit status 1."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, not argparse's usage block: easy to read and to grep in CI logs.
        self.exit(2, f"posthog-llm: error: {message} (see 'posthog-llm --help')\n")


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


def _cmd_events(args: argparse.Namespace) -> int:
    with _open_store(args.db) as store:
        for event in store.events(limit=args.limit):
            if args.json:
                print(json.dumps(event, ensure_ascii=False, separators=(",", ":")))
            else:
                print(json.dumps(event, ensure_ascii=False))
    return 0


def _fmt_latency(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}s"


def _traces_table(rows: list[TraceSummary]) -> str:
    header = (
        "trace_id",
        "name",
        "start",
        "events",
        "gens",
        "in_tok",
        "out_tok",
        "latency",
        "errors",
    )
    table = [header] + [
        (
            r.trace_id,
            (r.name or "")[:28],
            (r.start or "")[:19].replace("T", " "),
            str(r.events),
            str(r.generations),
            str(r.input_tokens),
            str(r.output_tokens),
            _fmt_latency(r.latency),
            str(r.errors),
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in table
    )


def _cmd_traces(args: argparse.Namespace) -> int:
    with _open_store(args.db) as store:
        rows = store.traces(limit=args.limit, search=args.search)
    if args.json:
        for row in rows:
            print(json.dumps(row.as_dict(), ensure_ascii=False))
    elif rows:
        print(_traces_table(rows))
    else:
        print("no traces yet")
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    with _open_store(args.db) as store:
        trace = store.trace(args.trace_id)
    if trace is None:
        raise CommandError(f"no trace {args.trace_id!r} in {args.db or default_db_path()}")
    print(trace.to_text())
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from .local.server import serve

    return serve(args)


def _cmd_demo(args: argparse.Namespace) -> int:
    from .local.demo import run_demo

    return run_demo(args)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="posthog-llm", description="posthog-llm: look at captured LLM events locally."
    )
    parser.add_argument("--version", action="version", version=f"posthog-llm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    db_help = "the local store (default: $POSTHOG_LLM_DB or ./.posthog-llm/events.db)"
    p = sub.add_parser("events", help="print captured events, one JSON object per line")
    p.add_argument("--db", metavar="PATH", help=db_help)
    p.add_argument(
        "--json", action="store_true", help="compact JSON lines (the default output is JSON too)"
    )
    p.add_argument("--limit", type=int, default=None, help="at most this many events")
    p.set_defaults(func=_cmd_events)

    p = sub.add_parser("traces", help="one row per trace: tokens, latency, errors")
    p.add_argument("--db", metavar="PATH", help=db_help)
    p.add_argument("--json", action="store_true", help="one JSON object per trace")
    p.add_argument("--limit", type=int, default=100, help="at most this many traces (default 100)")
    p.add_argument(
        "--search", help="only traces whose id, distinct id, name or model contains this"
    )
    p.set_defaults(func=_cmd_traces)

    p = sub.add_parser("show", help="print one trace as an indented tree")
    p.add_argument("trace_id", metavar="TRACE_ID")
    p.add_argument("--db", metavar="PATH", help=db_help)
    p.set_defaults(func=_cmd_show)

    p = sub.add_parser("serve", help="run a PostHog-compatible collector and the trace viewer")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8010, help="port (default 8010)")
    p.add_argument("--db", metavar="PATH", help=db_help)
    p.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow listening on a non-loopback address (then only the configured api key is accepted)",
    )
    p.add_argument("--api-key", help="the project api key to accept (default: $POSTHOG_API_KEY)")
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
    p.add_argument("--quiet", action="store_true", help="do not print a line per capture request")
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("demo", help="run the offline demo: LangChain, LlamaIndex and OpenAI calls")
    p.add_argument("--db", metavar="PATH", help=db_help)
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except CommandError as exc:
        print(f"posthog-llm: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        return 130


def _entry() -> Any:  # pragma: no cover
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
