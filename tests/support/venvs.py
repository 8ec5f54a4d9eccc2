"""Fresh virtual environments holding a built wheel and only its required dependencies.

Offline and fast: pip installs the wheel with `--no-deps --no-index`, and the dependencies the
wheel requires without extras (read from its own metadata, then recursively from theirs) are
linked from the test interpreter's environment through a `.pth` file. The venv so holds what
`pip install posthog-llm` brings and nothing else: no framework, no test tool.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import zipfile
from pathlib import Path

from packaging.requirements import Requirement

__all__ = ["build_wheel", "run", "venv_with_wheel"]

ROOT = Path(__file__).resolve().parents[2]


def run(command: list[str], *, cwd: Path | None = None) -> str:
    """Run a command; fail the test with its output when it fails. Returns stdout."""
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=cwd)
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def build_wheel(source: Path, out: Path) -> Path:
    """`pip wheel` of a source tree (this checkout or an unpacked sdist), without isolation."""
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), str(source)])  # fmt: skip
    (wheel,) = out.glob("posthog_llm-*.whl")
    return wheel


def venv_with_wheel(wheel: Path, venv: Path) -> Path:
    """A venv at `venv` with `wheel` installed and its required dependencies importable."""
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
         "--no-index", str(wheel)])  # fmt: skip
    purelib = run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
    deps = venv / "linked-deps"
    deps.mkdir()
    for top in _top_levels(_required_closure(wheel)):
        (deps / top.name).symlink_to(top)
    (Path(purelib.strip()) / "linked_deps.pth").write_text(f"{deps}\n")
    return venv


def _required_closure(wheel: Path) -> set[str]:
    """The distributions the wheel requires without extras, and theirs, recursively."""
    with zipfile.ZipFile(wheel) as zf:
        (meta,) = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
        lines = zf.read(meta).decode().splitlines()
    pending = [line.split(":", 1)[1].strip() for line in lines if line.startswith("Requires-Dist:")]
    seen: set[str] = set()
    while pending:
        requirement = Requirement(pending.pop())
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        name = requirement.name.lower().replace("_", "-")
        if name not in seen:
            seen.add(name)
            pending.extend(importlib.metadata.requires(requirement.name) or [])
    return seen


def _top_levels(distributions: set[str]) -> set[Path]:
    """The top-level modules and packages these installed distributions put on sys.path."""
    tops: set[Path] = set()
    for name in distributions:
        distribution = importlib.metadata.distribution(name)
        for file in distribution.files or []:
            first = Path(file).parts[0]
            if first.endswith((".dist-info", ".data")) or first in ("..", "__pycache__"):
                continue
            if file.suffix in {".py", ".so", ".pyd"} or len(Path(file).parts) > 1:
                tops.add(Path(str(distribution.locate_file(first))))
    assert tops, distributions
    return tops
