"""The deployable packages depend only on what ships with them (DESIGN section 2). The connector's wheel and image
hold ``connector`` alone, so it uses neither the Lambda package ``functions`` nor the dev stack ``infra``; the Lambda
bundle holds ``functions`` and the contracts, so ``functions`` never uses ``infra``. The dev stack uses both, never
the reverse.

Read from the source with ``ast`` rather than by importing, so an import inside a function body counts, and so does a
string that names a module of those packages: ``importlib.import_module(NAME)`` or ``python -m NAME`` reach it too."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {"connector": ("functions", "infra"), "functions": ("infra",)}
MODULE_PATH = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+")


def referenced_modules(source: str) -> Iterator[tuple[int, str]]:
    """``(line, module)`` of every absolute import in ``source`` and of every string that is a dotted module path.
    Relative imports stay inside their own package."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and MODULE_PATH.fullmatch(node.value):
            yield node.lineno, node.value


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_deployable_package_uses_nothing_it_does_not_ship_with(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no Python files under {package}/"
    found = [
        f"{path.relative_to(ROOT)}:{line}: {module}"
        for path in files
        for line, module in referenced_modules(path.read_text())
        if module.split(".")[0] in FORBIDDEN[package]
    ]
    assert not found, f"{package} uses {' or '.join(FORBIDDEN[package])}:\n" + "\n".join(found)


def test_the_reader_sees_imports_and_module_names() -> None:
    source = '''
"""Docstrings name functions.inbound.handler in passing; that is prose, not a use."""
import functions.inbound.handler
from infra.local import stack
from . import errors

HANDLER_MODULE = "functions.inbound.handler"

def later():
    import importlib
    return importlib.import_module(HANDLER_MODULE), ["python", "-m", "infra.local.chatbot"]
'''
    assert sorted(referenced_modules(source)) == [
        (3, "functions.inbound.handler"),
        (4, "infra.local"),
        (7, "functions.inbound.handler"),
        (10, "importlib"),
        (11, "infra.local.chatbot"),
    ]
