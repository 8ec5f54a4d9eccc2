"""Package discovery for the core/ -> posthog_llm and integrations/ -> posthog_llm.integrations mapping.

Everything else lives in pyproject.toml. Packages are discovered from the folders, not listed by
hand, so a new sub-package cannot be silently left out of the wheel.
"""

from __future__ import annotations

import os

from setuptools import setup

ROOTS = {"core": "posthog_llm", "integrations": "posthog_llm.integrations"}


def discover() -> tuple[list[str], dict[str, str]]:
    packages: list[str] = []
    package_dir: dict[str, str] = {}
    here = os.path.dirname(os.path.abspath(__file__))
    for folder, package in ROOTS.items():
        for dirpath, dirnames, filenames in os.walk(os.path.join(here, folder)):
            dirnames[:] = [d for d in dirnames if not d.startswith((".", "__pycache__"))]
            if "__init__.py" not in filenames:
                continue
            rel = os.path.relpath(dirpath, here)
            parts = os.path.relpath(dirpath, os.path.join(here, folder)).split(os.sep)
            name = package if parts == ["."] else package + "." + ".".join(parts)
            packages.append(name)
            package_dir[name] = rel.replace(os.sep, "/")
    return packages, package_dir


PACKAGES, PACKAGE_DIR = discover()

setup(packages=PACKAGES, package_dir=PACKAGE_DIR)
