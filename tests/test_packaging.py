"""The wheel holds every package folder under posthog_llm, and nothing installs a bare `core`."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAPPING = {"core": "posthog_llm", "integrations": "posthog_llm/integrations"}


def _package_folders() -> set[str]:
    expected = set()
    for folder, target in MAPPING.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            if "__pycache__" in init.parts:
                continue
            rel = init.parent.relative_to(ROOT / folder).as_posix()
            expected.add(target if rel == "." else f"{target}/{rel}")
    return expected


def test_wheel_contains_every_package_folder_and_no_bare_core(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    (wheel,) = tmp_path.glob("posthog_llm-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    packaged = {os.path.dirname(n) for n in names if n.endswith("__init__.py")}
    expected = _package_folders()
    assert expected <= packaged, f"missing from the wheel: {sorted(expected - packaged)}"
    assert "posthog_llm/py.typed" in names
    static = [
        "posthog_llm/" + p.relative_to(ROOT / "core").as_posix()
        for p in (ROOT / "core").rglob("*")
        if p.is_file() and p.suffix in {".html", ".css", ".js", ".json", ".svg"}
    ]
    assert static and not set(static) - set(names), f"data files missing: {set(static) - set(names)}"
    assert not [n for n in names if n.startswith(("core/", "integrations/"))]
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "posthog-llm = posthog_llm.cli:" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_import_core_fails_after_install(tmp_path):
    code = (
        "import importlib.util, posthog_llm, posthog_llm.integrations;"
        "print(importlib.util.find_spec('core'), importlib.util.find_spec('integrations'))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "None None"


def test_version_is_exposed():
    import posthog_llm

    assert posthog_llm.__version__.count(".") >= 2
    assert set(posthog_llm.__all__) <= set(dir(posthog_llm))
