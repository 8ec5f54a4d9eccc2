"""Local tools that run on this machine: servers and stand-ins for offline use and tests."""

from __future__ import annotations
