"""The collector's shared state: the store, its api key and viewer password rules, the viewer.

One `App` serves every request thread; writes go through one SQLite connection under a lock.
"""

from __future__ import annotations

import datetime as _dt
import json
import threading
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from ..destinations.sqlite import connect, event_row, insert_events
from ._api import Reader
from ._auth import bearer_token, is_loopback, key_matches
from ._budget import MemoryBudget, budget_for
from ._ingest import BadRequest, decode_body, key_of, normalize_event, peek_keys, split_payload
from ._otlp_hold import HeldTraces, record_weight
from ._static import load_static
from .pricing import PricingTable

__all__ = ["App"]


class App:
    """What the request handlers share: the store, the rules and the viewer files."""

    def __init__(
        self,
        db: str,
        *,
        api_key: str | None,
        host: str,
        viewer_password: str | None = None,
        max_body_bytes: int,
        pricing: PricingTable,
        log: Callable[[str], None] | None,
        cors_origins: Iterable[str] = (),
        budget_bytes: int | None = None,
        otlp_hold_seconds: float = 10.0,
    ) -> None:
        self.db = db
        self.api_key = api_key
        # The viewer's own secret: the project api key is public (posthog-js ships it to every
        # browser), so it opens ingest only, never the stored prompts.
        self.viewer_password = viewer_password
        self.remote = not is_loopback(host)
        self.bound_host = host.strip("[]").lower()
        self.max_body_bytes = max_body_bytes
        # Raw bodies, inflated bytes and parsed JSON of all requests at once stay within this.
        self.budget = MemoryBudget(budget_bytes or budget_for(max_body_bytes))
        self.cors_origins = frozenset(o.strip().rstrip("/").lower() for o in cors_origins)
        self.reader = Reader(db, pricing)
        self.static = load_static()
        self.log = log
        self._conn = connect(db)
        self._lock = threading.Lock()
        self.stored = 0
        # OTLP spans of AI traces whose root has not come yet (see `_otlp_hold`), and the thread
        # that stores them when their hold is over.
        self.otlp_held = HeldTraces(otlp_hold_seconds, weigh=record_weight)
        self.otlp_flusher: threading.Thread | None = None
        self.closing = threading.Event()

    def close(self) -> None:
        """Store the held OTLP traces, then close the store."""
        self.closing.set()
        if self.otlp_flusher is not None:
            self.otlp_flusher.join(5)
        if len(self.otlp_held):
            from ._otlp import flush_held

            flush_held(self, everything=True)
        with self._lock:
            self._conn.close()

    def key_ok(self, key: str | None) -> bool:
        return key_matches(key, self.api_key)

    def viewer_ok(self, secret: str | None) -> bool:
        """True when the viewer has no password (loopback without one), or `secret` is it."""
        return key_matches(secret, self.viewer_password)

    def origin_allowed(self, origin: str) -> bool:
        """Whether a browser page from `origin` may post events: loopback, or --cors-origin."""
        if "*" in self.cors_origins:
            return True
        name = origin.strip().rstrip("/").lower()
        if name in self.cors_origins:
            return True
        host = urlsplit(name).hostname if "://" in name else None
        return bool(host) and is_loopback(host or "")

    def _authenticate_first(self, raw: bytes, headers: Any, query: dict[str, str]) -> None:
        """With an api key configured, refuse a stranger before decompressing or parsing."""
        outer = query.get("token") or query.get("api_key")
        outer = outer or bearer_token(headers.get("Authorization") or "")
        if outer:
            keys = [outer]
        else:
            keys = peek_keys(
                raw,
                content_type=headers.get("Content-Type") or "",
                content_encoding=headers.get("Content-Encoding") or "",
                query=query,
            )
        if not keys or not all(self.key_ok(k) for k in keys):
            raise BadRequest("invalid or missing project api key for this collector", status=401)

    def ingest(
        self,
        raw: bytes,
        *,
        headers: Any,
        query: dict[str, str],
        reserve: Callable[[int], None] | None = None,
    ) -> int:
        """Decode, check and store one capture request; returns the number of events."""
        if self.api_key is not None:
            self._authenticate_first(raw, headers, query)
        payload = decode_body(
            raw,
            content_type=headers.get("Content-Type") or "",
            content_encoding=headers.get("Content-Encoding") or "",
            query=query,
            limit=self.max_body_bytes,
            reserve=reserve,
        )
        del raw
        items, batch_key = split_payload(payload)
        request_key = batch_key or query.get("token") or query.get("api_key")
        if not request_key:
            request_key = bearer_token(headers.get("Authorization") or "")
        now = _dt.datetime.now(_dt.timezone.utc)
        events = []
        for item in items:
            # Authenticate before validating: a stranger learns nothing about the rules.
            key = (key_of(item) if isinstance(item, dict) else None) or request_key
            if not self.key_ok(key):
                raise BadRequest(
                    "invalid or missing project api key for this collector", status=401
                )
            events.append(normalize_event(item, now=now))
        if events:
            try:
                rows = [
                    event_row(json.dumps(e, ensure_ascii=False, separators=(",", ":")).encode())
                    for e in events
                ]
            except UnicodeEncodeError:
                # JSON's "\ud800" escapes decode to lone surrogates, which are not text.
                raise BadRequest(
                    "an event has a lone surrogate (like \\ud800) in a string; send valid "
                    "UTF-16 pairs or replace it"
                ) from None
            with self._lock:
                # (An event that cannot be stored is left out and logged; the rest are kept.)
                self.stored += len(rows) - insert_events(self._conn, rows)
        return len(events)
