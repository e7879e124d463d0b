"""The examples in the docstrings (of the stubs too) and in the README run as written."""

from __future__ import annotations

import ast
import doctest
import re
import subprocess
import sys
from pathlib import Path

import pytest

import zeta_fast

ROOT = Path(__file__).resolve().parent.parent
STUBS = Path(zeta_fast.__file__).with_name("_core.pyi")


def _stub_docstrings() -> list[tuple[str, str]]:
    tree = ast.parse(STUBS.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.Module):
            doc = ast.get_docstring(node, clean=True)
            if doc and ">>>" in doc:
                found.append((getattr(node, "name", "module"), doc))
    return found


@pytest.mark.parametrize(("name", "doc"), _stub_docstrings(), ids=lambda v: v[:30])
def test_stub_examples_run(name: str, doc: str) -> None:
    parser = doctest.DocTestParser()
    test = parser.get_doctest(doc, dict(vars(zeta_fast)), name, str(STUBS), 0)
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    assert runner.failures == 0, f"{name}: {runner.failures} failing example(s)"
    assert runner.tries > 0


def test_package_docstring_examples_run() -> None:
    result = doctest.testmod(zeta_fast, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
    assert result.attempted > 0


def test_every_public_native_name_is_documented_in_the_stubs() -> None:
    stub_text = STUBS.read_text()
    native = [name for name in zeta_fast.__all__ if name in zeta_fast._core.__all__]
    assert len(native) >= 10
    for name in native:
        assert re.search(rf"\b{name}\b", stub_text), name


def test_readme_python_example_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert blocks, "the README has a Python example"
    for block in blocks:
        result = subprocess.run(
            [sys.executable, "-c", block], capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode == 0, result.stderr
