"""The sans-IO core never imports trio (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import ghostwire

PACKAGE = Path(ghostwire.__file__).parent
SHELLS = {PACKAGE / "quic" / "net"}
IO_MODULES = {"trio", "socket", "asyncio", "selectors", "time"}


def _core_modules() -> list[Path]:
    core = PACKAGE / "quic"
    return [
        path
        for path in core.rglob("*.py")
        if not any(shell in path.parents for shell in SHELLS) and path.name != "__init__.py"
    ]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.module and "net" in node.module.split("."):
            names.add("ghostwire.quic.net")
    return names


def test_core_modules_do_no_io() -> None:
    modules = _core_modules()
    assert len(modules) > 20
    forbidden = IO_MODULES | {"ghostwire.quic.net"}
    offenders = {
        str(path.relative_to(PACKAGE)): sorted(_imports(path) & forbidden)
        for path in modules
        if _imports(path) & forbidden
    }
    assert offenders == {}
