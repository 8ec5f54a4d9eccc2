"""The benchmarks' loopback servers, each in a process of its own.

The capture sink (`_sink.py`) and the provider stand-ins run apart from the measured process
and from each other: their work competes with neither (a sink busy parsing a batch must not stall
a stand-in's answer).

    servers = Servers("sink", "openai")
    servers.urls["sink"], servers.urls["openai"]
    servers.stats()   # the sink's counts: events, requests, bytes
    servers.close()
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))


def _standin(kind: str) -> Any:
    if kind == "openai":
        from posthog_llm.local.openai_standin import OpenAIStandIn

        return OpenAIStandIn(max_recorded=10)
    if kind == "anthropic":
        from posthog_llm.local.anthropic_standin import AnthropicStandIn

        return AnthropicStandIn(max_recorded=10)
    if kind == "gemini":
        from posthog_llm.local.gemini_standin import GeminiStandIn

        return GeminiStandIn(max_recorded=10)
    raise ValueError(f"no server of kind {kind!r}")


def _serve(conn: Any, kind: str) -> None:
    """Child process: the capture sink or one stand-in, until the parent says anything else."""
    if kind == "sink":
        sys.path.insert(0, HERE)
        from _sink import Sink

        sink = Sink(count=True).start()
        conn.send(sink.url)
        while conn.recv() == "stats":
            conn.send({"events": sink.events, "requests": sink.requests, "bytes": sink.bytes})
        sink.close()
        return
    standin = _standin(kind).start()
    conn.send(standin.base_url)
    conn.recv()
    standin.close()


class Servers:
    """`Servers("sink", "anthropic", ...)`: each kind started in its own (spawned) process."""

    def __init__(self, *kinds: str) -> None:
        context = multiprocessing.get_context("spawn")
        self.conns: dict[str, Any] = {}
        self.procs: list[Any] = []
        for kind in kinds:
            conn, child = context.Pipe()
            proc = context.Process(target=_serve, args=(child, kind), daemon=True)
            proc.start()
            self.conns[kind] = conn
            self.procs.append(proc)
        self.urls: dict[str, str] = {kind: conn.recv() for kind, conn in self.conns.items()}

    def stats(self) -> dict[str, int]:
        """The sink's counts so far: events, requests and bytes received."""
        self.conns["sink"].send("stats")
        return self.conns["sink"].recv()  # type: ignore[no-any-return]

    def close(self) -> None:
        for conn in self.conns.values():
            conn.send("quit")
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
