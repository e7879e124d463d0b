"""The examples in the docstrings (of the stubs too), the README and docs/ run as written."""

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


#: The README and every page of the docs site: their examples run, their links resolve.
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 250

FENCE = re.compile(r"^```.*?^```[ \t]*$", flags=re.S | re.M)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
LINK_DEFINITION = re.compile(r"^ {0,3}\[[^\]\n]+\]:\s*<?(\S+?)>?(?:\s|$)", flags=re.M)
SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", flags=re.I)


def _page_id(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


def _python_blocks(page: Path) -> list[tuple[int, str]]:
    """Each ```python block of ``page``: the line its code starts on, and the code."""
    text = page.read_text()
    return [
        (text.count("\n", 0, found.start(1)) + 1, found.group(1))
        for found in re.finditer(r"^```python\n(.*?)^```", text, flags=re.S | re.M)
    ]


def _relative_links(page: Path) -> list[str]:
    """The link targets in ``page`` with no scheme (http:, mailto:) that are not bare anchors."""
    prose = INLINE_CODE.sub("", FENCE.sub("", page.read_text()))
    targets = LINK.findall(prose) + LINK_DEFINITION.findall(prose)
    return [t for t in targets if not SCHEME.match(t) and not t.startswith("#")]


def test_the_readme_and_the_docs_have_python_examples() -> None:
    assert _python_blocks(README), "the README has a Python example"
    assert len(PAGES) > 1, "docs/ has pages"


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_python_examples_run(page: Path) -> None:
    for line, block in _python_blocks(page):
        result = subprocess.run(
            [sys.executable, "-c", block],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, f"{_page_id(page)}:{line}: {result.stderr}"


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_relative_links_point_to_files_that_exist(page: Path) -> None:
    broken = [
        target
        for target in _relative_links(page)
        if not (page.parent / target.split("#", 1)[0]).exists()
    ]
    assert not broken, f"{_page_id(page)} links to missing files: {broken}"


def test_the_readme_stays_short() -> None:
    lines = len(README.read_text().splitlines())
    assert lines < README_MAX_LINES, f"README.md has {lines} lines: move detail into docs/"
