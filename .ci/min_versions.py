"""The declared version floors, read from pyproject.toml, for CI's minimum-versions job.

    python .ci/min_versions.py constraints   # `name==floor` lines: a pip constraints file
    python .ci/min_versions.py extras        # the extras to install: `langchain,llama-index,...`

Every requirement of `dependencies` and of each extra (but the tooling extras below) carries a
`>=` floor, and the job installs exactly those floors. Adding an extra or a floor to
pyproject.toml is all it takes to have it checked.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import tomllib

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
# Extras that are tooling or aggregates, not integrations: no floors are checked for them.
NOT_CHECKED = {"all", "dev", "bench", "notebooks"}
_FLOOR = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(.*)$")


def extras(project: dict[str, Any]) -> list[str]:
    return [name for name in project.get("optional-dependencies", {}) if name not in NOT_CHECKED]


def floors(project: dict[str, Any]) -> dict[str, str]:
    """name -> the version after `>=`, for the core dependencies and every checked extra."""
    requirements = list(project.get("dependencies", []))
    for name in extras(project):
        requirements += project["optional-dependencies"][name]
    found: dict[str, str] = {}
    for requirement in requirements:
        match = _FLOOR.match(requirement.split(";", 1)[0])
        if match is None:
            raise SystemExit(f"min_versions: cannot read the requirement {requirement!r}")
        name, specifiers = match.groups()
        floor = re.search(r">=\s*([^,\s]+)", specifiers)
        if floor is None:
            raise SystemExit(f"min_versions: {requirement!r} declares no `>=` floor")
        found[name.lower()] = floor.group(1)
    return found


def main(argv: list[str]) -> int:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    if argv == ["constraints"]:
        print("\n".join(f"{name}=={version}" for name, version in sorted(floors(project).items())))
    elif argv == ["extras"]:
        print(",".join(extras(project)))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
