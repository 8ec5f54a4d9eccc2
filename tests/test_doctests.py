"""The examples in the package's docstrings run and say what they show."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import posthog_llm
import posthog_llm.integrations
import pytest

# Modules whose examples show an internal error being swallowed (and reported) on purpose.
SWALLOWING = {"posthog_llm._emit"}
# The integrations are mapped from a folder of their own (an editable install does not find them
# under `posthog_llm.__path__`): walked on their own, and a module found twice counted once.
_NAMES = sorted(
    {
        info.name
        for package in (posthog_llm, posthog_llm.integrations)
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + ".")
        if not info.name.endswith("__main__")  # importing it runs the command line
    }
)
MODULES = [
    pytest.param(name, marks=pytest.mark.allow_internal_errors) if name in SWALLOWING else name
    for name in _NAMES
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:  # an integration whose framework is not installed
        if exc.name is not None and exc.name.split(".")[0] != "posthog_llm":
            pytest.skip(f"{exc.name} is not installed")
        raise
    result = doctest.testmod(module, report=True, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
