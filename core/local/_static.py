"""The viewer's files (the `viewer/` folder next to this module) and the headers they go out with.

>>> files = load_static()
>>> files["index.html"][1]
'text/html; charset=utf-8'
"""

from __future__ import annotations

import os
from importlib import resources

__all__ = ["PAGE_HEADERS", "VIEWER_PAGES", "is_page", "load_static"]

VIEWER_PAGES = frozenset({"/", "/traces", "/dashboard", "/events"})
_STATIC_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
# The viewer shows untrusted LLM text: no inline script, no foreign origins, no framing.
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# Sent with index.html, which serves every page of the single-page viewer.
PAGE_HEADERS = {
    "Content-Security-Policy": _CSP,
    "Cache-Control": "no-cache",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def is_page(path: str) -> bool:
    """Whether `path` is one of the viewer's pages (all of them are index.html)."""
    return path in VIEWER_PAGES or path.startswith("/trace/")


def load_static() -> dict[str, tuple[bytes, str]]:
    """`{file name: (bytes, Content-Type)}` for the viewer's files, read once at start."""
    folder = resources.files(__package__).joinpath("viewer")
    files: dict[str, tuple[bytes, str]] = {}
    for entry in folder.iterdir():
        kind = _STATIC_TYPES.get(os.path.splitext(entry.name)[1])
        if kind and entry.is_file():
            files[entry.name] = (entry.read_bytes(), kind)
    return files
