"""Errors shared by the command line and the commands it runs (the demo, the server)."""

from __future__ import annotations

__all__ = ["CommandError"]


class CommandError(Exception):
    """A problem the user can fix: printed as one line, exit status 1."""
