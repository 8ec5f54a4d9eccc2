"""Every notebook in notebooks/ runs top to bottom offline and shows a trace or a plot; the
committed notebooks carry those outputs, and their cells are the ones notebooks/build.py writes."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")
pytest.importorskip("ipykernel")

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
PATHS = sorted(NOTEBOOKS.glob("*.ipynb"))

# What each notebook imports beyond the core package (a notebook not listed needs nothing).
NEEDS = {
    "langchain.ipynb": ["langchain_core"],
    "llama_index.ipynb": ["llama_index.core"],
    "openai.ipynb": ["openai"],
    "agents.ipynb": ["agents", "opentelemetry.sdk"],
    "providers.ipynb": ["anthropic", "google.genai"],
    "explore.ipynb": ["pandas", "matplotlib", "openai", "langchain_core", "llama_index.core"],
}
TRACE_HTML = "posthog-llm-trace"


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


@pytest.fixture
def kernel_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `python3` kernelspec that runs this interpreter, found first through JUPYTER_PATH."""
    spec_dir = tmp_path / "jupyter" / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (posthog-llm tests)",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("POSTHOG_LLM_DB", str(tmp_path / "events.db"))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend makes PNGs
    monkeypatch.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    for key in _build_module().API_KEYS:  # offline: the stand-ins, whatever keys are set
        monkeypatch.delenv(key, raising=False)
    return tmp_path


def _outputs(notebook: nbformat.NotebookNode) -> list[dict]:
    return [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]


def test_there_are_the_notebooks() -> None:
    names = {p.name for p in PATHS}
    assert {
        "langchain.ipynb",
        "llama_index.ipynb",
        "openai.ipynb",
        "agents.ipynb",
        "explore.ipynb",
    } <= names


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_committed_notebook_shows_its_outputs(path: Path) -> None:
    """Committed executed, top to bottom, so GitHub shows the traces and plots."""
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    counts = [c.execution_count for c in notebook.cells if c.cell_type == "code"]
    assert counts == list(range(1, len(counts) + 1)), f"{path.name}: run it with notebooks/build.py"
    _assert_shows_a_trace_or_plot(path.name, notebook)
    # Nothing from the machine that built it: no absolute paths, no stderr noise, no timings.
    text = path.read_text()
    assert str(Path.home()) + "/" not in text and "/tmp/" not in text
    outputs = _outputs(notebook)
    assert not [o for o in outputs if o.get("name") == "stderr"]
    assert not [c for c in notebook.cells if "execution" in c.get("metadata", {})]


def _build_module():
    spec = importlib.util.spec_from_file_location("notebooks_build", NOTEBOOKS / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_build_writes_exactly_the_committed_notebooks() -> None:
    assert set(_build_module().NOTEBOOKS) == {p.name for p in PATHS}


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_committed_cells_are_the_ones_build_writes(path: Path) -> None:
    """Edit notebooks/build.py, then run it: the .ipynb files are its output, never hand-edited."""
    built = _build_module().notebook(path.name)
    committed = nbformat.read(path, as_version=4)

    def cells(notebook: nbformat.NotebookNode) -> list[tuple[str, str, str]]:
        return [(c.get("id", ""), c.cell_type, c.source) for c in notebook.cells]

    assert cells(committed) == cells(built), (
        f"{path.name} differs from notebooks/build.py: run `python notebooks/build.py`"
    )
    assert committed.metadata["kernelspec"] == built.metadata["kernelspec"]


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_notebook_runs_and_shows_a_trace_or_plot(path: Path, kernel_env: Path) -> None:
    for module in NEEDS.get(path.name, []):
        if not _installed(module):
            pytest.skip(f"{path.name} needs {module}")
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        kernel_name="python3",
        timeout=120,
        resources={"metadata": {"path": str(kernel_env)}},  # cwd: nothing lands in the repo
    )
    client.execute()  # raises CellExecutionError when a cell fails

    _assert_shows_a_trace_or_plot(path.name, notebook)
    assert os.path.exists(kernel_env / "events.db")


def _assert_shows_a_trace_or_plot(name: str, notebook: nbformat.NotebookNode) -> None:
    outputs = _outputs(notebook)
    assert not [o for o in outputs if o.get("output_type") == "error"]
    html = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    traces = [h for h in html if TRACE_HTML in h]
    if name == "explore.ipynb":
        assert len(images) >= 2, "explore.ipynb plots by model and over time"
        assert traces, "explore.ipynb shows the slowest trace"
    else:
        assert traces, f"{name} shows no captured trace"
        # Each displayed trace has at least one generation or embedding in it.
        assert all("generation" in h or "embedding" in h for h in traces)


def test_providers_notebook_calls_the_apis_its_keys_open(
    kernel_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With the keys set the notebook builds its clients for the real APIs; the SDKs' own base
    # URL variables point those at loopback stand-ins here, so nothing leaves the machine.
    for module in NEEDS["providers.ipynb"]:
        if not _installed(module):
            pytest.skip(f"providers.ipynb needs {module}")
    from posthog_llm.local.anthropic_standin import AnthropicStandIn
    from posthog_llm.local.gemini_standin import GeminiStandIn

    notebook = nbformat.read(NOTEBOOKS / "providers.ipynb", as_version=4)
    with AnthropicStandIn() as anthropic, GeminiStandIn() as gemini:
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-notebook-test")
        monkeypatch.setenv("ANTHROPIC_BASE_URL", anthropic.base_url)
        monkeypatch.setenv("GEMINI_API_KEY", "AIza-notebook-test")
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", gemini.base_url)
        nbclient.NotebookClient(
            notebook,
            kernel_name="python3",
            timeout=120,
            resources={"metadata": {"path": str(kernel_env)}},
        ).execute()
        sent = anthropic.last_request("/messages")["headers"]
        assert "sk-ant-notebook-test" in (sent.get("x-api-key") or sent.get("authorization"))
        assert gemini.requests
    text = "".join(o.get("text", "") for o in _outputs(notebook))
    assert "ANTHROPIC_API_KEY is set: calling the real Anthropic API" in text
    assert "a Gemini API key is set: calling the real Gemini API" in text
    assert "no real API calls" not in text
    _assert_shows_a_trace_or_plot("providers.ipynb", notebook)
