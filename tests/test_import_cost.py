"""`import posthog_llm` is cheap: public names load on first use, frameworks only when used.

The time itself is measured with `python -X importtime` (see the report in the README), not
asserted here; these tests pin down what makes it cheap: which modules an import pulls in.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import posthog_llm
import pytest

ROOT = Path(__file__).resolve().parent.parent

# Nothing a bare `import posthog_llm` needs: the HTTP stack, SQLite, logging, the frameworks and
# the heavy typing/validation libraries they bring.
NOT_ON_IMPORT = [
    "requests",
    "urllib3",
    "ssl",
    "http.client",
    "email",
    "sqlite3",
    "logging",
    "threading",
    "json",
    "uuid",
    "dataclasses",
    "langchain_core",
    "langchain",
    "langgraph",
    "llama_index",
    "openai",
    "httpx",
    "pydantic",
    "typing_extensions",
]
FRAMEWORKS = ["langchain_core", "langgraph", "llama_index", "openai", "httpx", "pydantic"]


def _modules_after(code: str, tmp_path: Path) -> set[str]:
    """The modules a fresh interpreter holds after running `code` (cwd outside the repo)."""
    script = f"import sys, json\nbefore = set(sys.modules)\n{code}\nprint(json.dumps(sorted(set(sys.modules) - before)))"
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


def _loaded(modules: set[str], name: str) -> bool:
    return name in modules or any(m.startswith(name + ".") for m in modules)


def test_import_pulls_in_no_http_sqlite_or_framework(tmp_path: Path) -> None:
    modules = _modules_after("import posthog_llm", tmp_path)
    assert "posthog_llm" in modules  # the import did happen in the child
    heavy = [name for name in NOT_ON_IMPORT if _loaded(modules, name)]
    assert heavy == [], f"`import posthog_llm` imported {heavy}"
    own = sorted(m for m in modules if m.startswith("posthog_llm."))
    assert own == ["posthog_llm._version"], own


def test_local_store_capture_imports_no_framework(tmp_path: Path) -> None:
    code = (
        "import posthog_llm\n"
        f"client = posthog_llm.Client(db={str(tmp_path / 'events.db')!r})\n"
        "client.capture(posthog_llm.SPAN, properties={'$ai_trace_id': 't1'})\n"
        "assert client.flush(timeout=10)\n"
        "client.shutdown()\n"
    )
    modules = _modules_after(code, tmp_path)
    assert "posthog_llm._client" in modules
    frameworks = [name for name in FRAMEWORKS if _loaded(modules, name)]
    assert frameworks == [], f"capturing to the local store imported {frameworks}"
    with posthog_llm.EventStore(str(tmp_path / "events.db")) as store:
        assert [e["event"] for e in store.events()] == ["$ai_span"]


def test_every_public_name_resolves_in_a_fresh_interpreter(tmp_path: Path) -> None:
    code = (
        "import posthog_llm\n"
        "names = [*posthog_llm.__all__, *posthog_llm._LAZY]\n"
        "missing = [n for n in names if getattr(posthog_llm, n, None) is None]\n"
        "assert not missing, missing\n"
        "assert set(posthog_llm.__all__) <= set(dir(posthog_llm))\n"
        "ns = {}\n"
        "exec('from posthog_llm import *', ns)\n"
        "assert set(posthog_llm.__all__) <= set(ns), set(posthog_llm.__all__) - set(ns)\n"
    )
    _modules_after(code, tmp_path)


def test_lazy_names_are_the_objects_of_their_modules() -> None:
    from posthog_llm import _client, _store, destinations

    assert posthog_llm.Client is _client.Client
    assert posthog_llm.EventStore is _store.EventStore
    assert posthog_llm.SQLiteDestination is destinations.SQLiteDestination


def test_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'NoSuchThing'"):
        posthog_llm.NoSuchThing  # noqa: B018
    assert not hasattr(posthog_llm, "_LAZY_typo")


def _type_checking_imports(tree: ast.Module) -> dict[str, str]:
    """name -> module of the imports under `if TYPE_CHECKING:` in core/__init__.py."""
    names: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for stmt in node.body:
                assert isinstance(stmt, ast.ImportFrom), ast.unparse(stmt)
                for alias in stmt.names:
                    names[alias.asname or alias.name] = "." * stmt.level + (stmt.module or "")
    return names


def test_type_checkers_see_exactly_the_lazy_names() -> None:
    """The TYPE_CHECKING imports (what mypy and IDEs read) and the lazy table never drift apart."""
    tree = ast.parse((ROOT / "core" / "__init__.py").read_text())
    seen = _type_checking_imports(tree)
    assert seen, "core/__init__.py has no `if TYPE_CHECKING:` imports"
    assert seen == posthog_llm._LAZY


def test_all_names_are_lazy_names() -> None:
    public = posthog_llm.__all__
    assert len(public) == len(set(public))
    assert set(public) - {"__version__"} <= set(posthog_llm._LAZY)
