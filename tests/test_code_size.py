"""Small focused modules and functions (the project's standards).

No module of ``ghostwire/`` over ``MAX_MODULE_LINES`` lines, no function or
method over ``MAX_FUNCTION_LINES`` (decorators, signature, docstring and body
counted). A module or function that grows past them is split by concern.
"""

from __future__ import annotations

import ast
from pathlib import Path

import ghostwire

PACKAGE = Path(ghostwire.__file__).parent
MAX_MODULE_LINES = 800
MAX_FUNCTION_LINES = 80


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def long_functions(source: str, limit: int = MAX_FUNCTION_LINES) -> list[tuple[str, int]]:
    """(qualified name, lines) of each function in ``source`` longer than ``limit``."""
    found: list[tuple[str, int]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    first = min([child.lineno, *(d.lineno for d in child.decorator_list)])
                    length = (child.end_lineno or child.lineno) - first + 1
                    if length > limit:
                        found.append((name, length))
                visit(child, f"{name}.")
            else:
                visit(child, prefix)

    visit(ast.parse(source), "")
    return found


def test_the_package_is_checked() -> None:
    names = {path.relative_to(PACKAGE).as_posix() for path in _modules()}
    assert {"quic/connection.py", "quic/streams.py", "http3/connection.py"} <= names


def test_no_module_is_too_long() -> None:
    too_long = {
        path.relative_to(PACKAGE).as_posix(): lines
        for path in _modules()
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert too_long == {}


def test_no_function_is_too_long() -> None:
    too_long = {
        f"{path.relative_to(PACKAGE).as_posix()}:{name}": lines
        for path in _modules()
        for name, lines in long_functions(path.read_text(encoding="utf-8"))
    }
    assert too_long == {}


def test_the_function_check_measures_methods_and_nested_functions() -> None:
    source = (
        "class C:\n"
        "    @staticmethod\n"
        "    def m():\n"
        "        a = 1\n"
        "        return a\n"
        "def f():\n"
        "    def inner():\n"
        "        a = 1\n"
        "        b = 2\n"
        "        return a + b\n"
        "    return inner\n"
        "def short():\n"
        "    return 1\n"
    )
    assert dict(long_functions(source, limit=3)) == {"C.m": 4, "f": 6, "f.inner": 4}
