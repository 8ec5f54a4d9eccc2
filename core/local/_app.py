"""The collector's shared state: the store it writes to, its api key rule and the viewer's parts.

One `App` serves every request thread; writes go through one SQLite connection under a lock.
"""

from __future__ import annotations

import datetime as _dt
import json
import threading
from collections.abc import Callable
from typing import Any

from ..destinations.sqlite import connect, event_row, insert_events
from ._api import Reader
from ._auth import bearer_token, is_loopback, key_matches
from ._ingest import BadRequest, decode_body, key_of, normalize_event, split_payload
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
        max_body_bytes: int,
        pricing: PricingTable,
        log: Callable[[str], None] | None,
    ) -> None:
        self.db = db
        self.api_key = api_key
        self.remote = not is_loopback(host)
        self.bound_host = host.strip("[]").lower()
        self.max_body_bytes = max_body_bytes
        self.reader = Reader(db, pricing)
        self.static = load_static()
        self.log = log
        self._conn = connect(db)
        self._lock = threading.Lock()
        self.stored = 0

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def key_ok(self, key: str | None) -> bool:
        return key_matches(key, self.api_key)

    def ingest(self, raw: bytes, *, headers: Any, query: dict[str, str]) -> int:
        """Decode, check and store one capture request; returns the number of events."""
        payload = decode_body(
            raw,
            content_type=headers.get("Content-Type") or "",
            content_encoding=headers.get("Content-Encoding") or "",
            query=query,
            limit=self.max_body_bytes,
        )
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
            rows = [
                event_row(json.dumps(e, ensure_ascii=False, separators=(",", ":")).encode())
                for e in events
            ]
            with self._lock:
                insert_events(self._conn, rows)
                self.stored += len(rows)
        return len(events)
