"""The declared version floors, read from pyproject.toml, for CI's minimum-versions job.

    python .ci/min_versions.py passes              # one line per install: `EXTRAS TEST_PATH...`
    python .ci/min_versions.py constraints EXTRAS  # `name==floor` lines: a pip constraints file

Every requirement of `dependencies` and of each extra (but the tooling extras below) carries a
`>=` floor, and the job installs exactly those floors. Adding an extra or a floor to
pyproject.toml is all it takes to have it checked.

Floors must be installable together, with one exception: an extra may restate another extra's
package with a higher floor (`openai-agents = ["openai-agents>=X", "openai>=Y"]`: the Agents SDK
needs a newer openai than our OpenAI integration does). Such an extra is checked in a pass of its
own, after the first, with its own floors and its own tests (tests/integrations/<extra>).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import tomllib

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = ROOT / "pyproject.toml"
# Extras that are tooling or aggregates, not integrations: no floors are checked for them.
NOT_CHECKED = {"all", "dev", "bench", "notebooks"}
# What the first pass runs besides the integration tests: test_otlp for `serve` on the
# opentelemetry-proto floor, test_pricing for the price package's floor.
# The spool and soak tests are left out: a minute of SQLite and fault injection that exercises
# no floor the sender and delivery tests do not (requests and orjson are the core's only dependencies).
FIRST_PASS_TESTS = [
    "tests/core",
    "--ignore=tests/core/test_spool.py",
    "--ignore=tests/core/test_soak.py",
    "tests/test_import_cost.py",
    "tests/local/test_otlp.py",
    "tests/local/test_pricing.py",
]
_FLOOR = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(.*)$")


def extras(project: dict[str, Any]) -> list[str]:
    return [name for name in project.get("optional-dependencies", {}) if name not in NOT_CHECKED]


def _floors(requirements: list[str]) -> dict[str, str]:
    """name -> the version after `>=`; a name listed twice keeps its higher floor."""
    found: dict[str, str] = {}
    for requirement in requirements:
        match = _FLOOR.match(requirement.split(";", 1)[0])
        if match is None:
            raise SystemExit(f"min_versions: cannot read the requirement {requirement!r}")
        name, specifiers = match.groups()
        floor = re.search(r">=\s*([^,\s]+)", specifiers)
        if floor is None:
            raise SystemExit(f"min_versions: {requirement!r} declares no `>=` floor")
        key = name.lower().replace("_", "-")
        if key not in found or _version(floor.group(1)) > _version(found[key]):
            found[key] = floor.group(1)
    return found


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text))


def floors(project: dict[str, Any], chosen: list[str]) -> dict[str, str]:
    """The floors of the core dependencies and of the chosen extras."""
    requirements = list(project.get("dependencies", []))
    for name in chosen:
        requirements += project["optional-dependencies"][name]
    return _floors(requirements)


def later(project: dict[str, Any]) -> list[str]:
    """Extras that raise a floor another checked extra declares lower: checked in passes of their own."""
    everything = extras(project)
    lowest: dict[str, str] = {}
    for name in everything:
        for package, floor in floors(project, [name]).items():
            if package not in lowest or _version(floor) < _version(lowest[package]):
                lowest[package] = floor
    return [
        name
        for name in everything
        if any(_version(f) > _version(lowest[p]) for p, f in floors(project, [name]).items())
    ]


def _tests_of(extra: str) -> str:
    return f"tests/integrations/{extra.replace('-', '_')}"


def passes(project: dict[str, Any]) -> list[tuple[list[str], list[str]]]:
    """(extras, test paths) per install: everything else first, then each raising extra alone."""
    deferred = later(project)
    first = [name for name in extras(project) if name not in deferred]
    ignore = [f"--ignore={_tests_of(name)}" for name in deferred]
    result = [(first, ["tests/integrations", *ignore, *FIRST_PASS_TESTS])]
    for name in deferred:
        if not (ROOT / _tests_of(name)).is_dir():
            raise SystemExit(f"min_versions: the extra {name!r} has no {_tests_of(name)}")
        result.append(([name], [_tests_of(name)]))
    return result


def main(argv: list[str]) -> int:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    if argv == ["passes"]:
        for chosen, tests in passes(project):
            print(",".join(chosen), *tests)
    elif len(argv) == 2 and argv[0] == "constraints":
        chosen = argv[1].split(",")
        unknown = set(chosen) - set(extras(project))
        if unknown:
            raise SystemExit(f"min_versions: not a checked extra: {', '.join(sorted(unknown))}")
        found = floors(project, chosen)
        print("\n".join(f"{name}=={version}" for name, version in sorted(found.items())))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
