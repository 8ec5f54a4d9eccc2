"""Reading the events a test captured."""

from __future__ import annotations

import json
from typing import Any


def only(found: list[dict[str, Any]]) -> dict[str, Any]:
    """The properties of the one event in `found` (the events themselves when it is not one)."""
    assert len(found) == 1, json.dumps(found, indent=1, default=str)[:3000]
    properties: dict[str, Any] = found[0]["properties"]
    return properties
