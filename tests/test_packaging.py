"""The wheel holds every package folder under posthog_llm, and nothing installs a bare `core`;
the sdist holds what a source build needs (no tests), and a wheel built from it works."""

from __future__ import annotations

import email
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.support.venvs import build_wheel, run, venv_with_wheel

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
    assert static and not set(static) - set(names), (
        f"data files missing: {set(static) - set(names)}"
    )
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


# -- the sdist -------------------------------------------------------------------------------------

# What a source build needs, besides the package folders.
SDIST_TOP_LEVEL = {"setup.py", "pyproject.toml", "README.md", "LICENSE", "PKG-INFO"}
# Kept in the repository, never shipped.
NOT_IN_SDIST = ("tests/", "notebooks/", "bench/", ".ci/", ".git")


@pytest.fixture(scope="module")
def sdist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sdist")
    run([sys.executable, "-m", "build", "--sdist", "--no-isolation", "-o", str(out), str(ROOT)])
    (tarball,) = out.glob("posthog_llm-*.tar.gz")
    return tarball


def _sdist_names(tarball: Path) -> set[str]:
    with tarfile.open(tarball) as tar:
        names = [m.name for m in tar.getmembers() if m.isfile()]
    prefix = names[0].split("/", 1)[0] + "/"
    assert all(n.startswith(prefix) for n in names)
    return {n[len(prefix) :] for n in names}


def _source_files(folder: str) -> set[str]:
    return {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / folder).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix not in {".pyc", ".db"}
    }


def test_sdist_holds_what_a_source_build_needs_and_no_tests(sdist: Path) -> None:
    names = _sdist_names(sdist)
    assert SDIST_TOP_LEVEL <= names, sorted(SDIST_TOP_LEVEL - names)
    for folder in MAPPING:
        missing = _source_files(folder) - names
        assert not missing, f"missing from the sdist: {sorted(missing)}"
    assert "core/py.typed" in names
    shipped = sorted(n for n in names if n.startswith(NOT_IN_SDIST))
    assert shipped == [], shipped
    assert not [n for n in names if n.endswith((".pyc", ".db"))]


def test_sdist_metadata_has_license_urls_and_classifiers(sdist: Path) -> None:
    with tarfile.open(sdist) as tar:
        top = [m for m in tar.getmembers() if m.name.count("/") == 1]
        (member,) = [m for m in top if m.name.endswith("/PKG-INFO")]
        handle = tar.extractfile(member)
        assert handle is not None
        metadata = email.message_from_bytes(handle.read())
    assert metadata["License-Expression"] == "MIT"
    assert metadata.get_all("License-File") == ["LICENSE"]
    assert metadata["Author"] or metadata["Author-email"]
    assert metadata.get_all("Project-URL")
    classifiers = metadata.get_all("Classifier") or []
    assert "Typing :: Typed" in classifiers
    assert any(c.startswith("Programming Language :: Python :: 3.") for c in classifiers)
    assert "MIT License" in (ROOT / "LICENSE").read_text()


def test_wheel_built_from_the_sdist_installs_and_runs(sdist: Path, tmp_path: Path) -> None:
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp_path / "src", filter="data")
    (source,) = (tmp_path / "src").iterdir()
    wheel = build_wheel(source, tmp_path / "wheels")
    names = zipfile.ZipFile(wheel).namelist()
    assert "posthog_llm/py.typed" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    venv = venv_with_wheel(wheel, tmp_path / "venv")

    # The installed package captures into a store that its command line then reads.
    db = tmp_path / "events.db"
    code = (
        "import posthog_llm\n"
        f"client = posthog_llm.Client(db={str(db)!r})\n"
        "client.capture(posthog_llm.TRACE, properties=posthog_llm.trace_properties("
        "trace_id='from-the-sdist', span_name='packaged'))\n"
        "assert client.flush(timeout=10)\n"
        "client.shutdown()\n"
        "print(posthog_llm.__file__)\n"
    )
    where = run([str(venv / "bin" / "python"), "-c", code], cwd=tmp_path)
    assert where.strip().startswith(str(venv)), where  # not this checkout
    listing = run([str(venv / "bin" / "posthog-llm"), "traces", "--db", str(db)], cwd=tmp_path)
    assert "from-the-sdist" in listing and "packaged" in listing


# -- version floors --------------------------------------------------------------------------------


def test_every_declared_floor_is_installed_by_the_minimum_versions_job() -> None:
    """CI's second venv installs exactly the floors of pyproject.toml (see .ci/run)."""
    tomllib = pytest.importorskip("tomllib")
    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    script = str(ROOT / ".ci" / "min_versions.py")
    lines = run([sys.executable, script, "passes"]).splitlines()
    passes = [line.split()[0].split(",") for line in lines]
    extras = [extra for chosen in passes for extra in chosen]  # each extra in exactly one pass
    checked = set(project["optional-dependencies"]) - {"all", "dev", "bench", "notebooks"}
    assert sorted(extras) == sorted(checked)
    assert {"langchain", "llama-index", "openai"} <= set(passes[0])
    for chosen in passes:
        constraints = run([sys.executable, script, "constraints", ",".join(chosen)])
        pins = dict(line.split("==") for line in constraints.split())
        declared = list(project["dependencies"])
        for extra in chosen:
            declared += project["optional-dependencies"][extra]
        for text in declared:
            requirement = Requirement(text)
            pin = pins[requirement.name.lower()]
            # The floor itself satisfies the requirement (no `!=` or `<` that excludes it).
            assert requirement.specifier.contains(pin), (text, pin)
            assert f">={pin}" in str(requirement.specifier), (text, pin)
    assert ".ci/min_versions.py constraints" in (ROOT / ".ci" / "run").read_text()
