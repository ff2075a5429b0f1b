"""The sans-IO core does no I/O and never imports trio (docs/architecture.md).

The core is every module of ``ghostwire.quic`` and ``ghostwire.http3``
(``__init__.py`` files included) outside their ``net`` trio shells. Two
"loader" modules read files for the config (certificates, CA bundles) but
are otherwise held to the same rules. Checked twice: statically (what each
module imports, whether it opens files) and for real (importing each core
module in a fresh interpreter leaves trio out of ``sys.modules``).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import ghostwire

PACKAGE = Path(ghostwire.__file__).parent
ROOTS = (PACKAGE / "quic", PACKAGE / "http3")
SHELLS = {root / "net" for root in ROOTS}
# Read files when a config is built (never during a handshake).
LOADERS = {PACKAGE / "quic" / "config.py", PACKAGE / "quic" / "tls" / "files.py"}
SHELL_ONLY = {"trio", "asyncio", "socket", "selectors", "ghostwire.net"}
IO_MODULES = SHELL_ONLY | {"ssl", "threading", "time"}
FILE_METHODS = {"read_bytes", "read_text", "write_bytes", "write_text"}


def _modules(include_loaders: bool) -> list[Path]:
    return sorted(
        path
        for root in ROOTS
        for path in root.rglob("*.py")
        if not any(shell in path.parents for shell in SHELLS)
        and (include_loaders or path not in LOADERS)
    )


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node, except those under ``if TYPE_CHECKING:`` (never run)."""
    nodes: list[ast.AST] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        nodes.append(node)
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                stack.extend(child.orelse)
            else:
                stack.append(child)
    return nodes


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level == 0 and module:
                names.add(module.split(".")[0])
            if "net" in module.split(".") or any(a.name == "net" for a in node.names):
                names.add("ghostwire.net")
    return names


def _opens_files(path: Path) -> list[int]:
    """Lines that open or read/write a file (``open()``, ``Path.read_bytes()``, ...)."""
    lines = []
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if (isinstance(func, ast.Name) and func.id == "open") or (
            isinstance(func, ast.Attribute) and func.attr in FILE_METHODS
        ):
            lines.append(node.lineno)
    return lines


def test_core_covers_both_protocols_and_their_init_files() -> None:
    names = {_module_name(path) for path in _modules(include_loaders=False)}
    assert len(names) > 60
    expected = {"ghostwire.quic", "ghostwire.quic.tls", "ghostwire.quic.connection"}
    expected |= {"ghostwire.http3", "ghostwire.http3.connection", "ghostwire.quic.qlog"}
    assert expected <= names
    assert not any(".net" in name for name in names)


def test_core_modules_import_no_io() -> None:
    offenders = {
        _module_name(path): sorted(_imports(path) & IO_MODULES)
        for path in _modules(include_loaders=False)
        if _imports(path) & IO_MODULES
    }
    assert offenders == {}


def test_loaders_import_no_event_loop() -> None:
    offenders = {
        _module_name(path): sorted(_imports(path) & SHELL_ONLY)
        for path in LOADERS
        if _imports(path) & SHELL_ONLY
    }
    assert offenders == {}


def test_core_modules_open_no_files() -> None:
    offenders = {
        _module_name(path): _opens_files(path)
        for path in _modules(include_loaders=False)
        if _opens_files(path)
    }
    assert offenders == {}


def test_the_static_checks_catch_what_they_look_for(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import threading\nfrom ..net.api import connect\nfrom typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import trio\n"
        "def f(p):\n    return open(p).read() + p.read_text()\n"
    )
    assert _imports(bad) & IO_MODULES == {"threading", "ghostwire.net"}
    assert _opens_files(bad) == [7, 7]


IMPORT_EACH = """
import importlib, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
    leaked = sorted({"trio", "asyncio"} & set(sys.modules))
    if leaked:
        sys.exit(f"importing {name} imported {leaked}")
"""


def test_importing_each_core_module_leaves_trio_out() -> None:
    """One fresh interpreter imports the core modules one by one; the first that
    pulls in trio (directly or through a package ``__init__``) is named."""
    names = [_module_name(path) for path in _modules(include_loaders=True)]
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_EACH, *names],
        cwd=PACKAGE.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_public_names_stay_importable() -> None:
    """The lazy ``__init__`` files still hand out every public name."""
    import ghostwire.http3 as h3
    import ghostwire.quic as quic

    for package in (quic, h3):
        for name in package.__all__:
            assert getattr(package, name) is not None, name
        assert set(package.__all__) <= set(dir(package))
    from ghostwire.quic import connect
    from ghostwire.quic.net.api import connect as shell_connect

    assert connect is shell_connect
    assert h3.ClientResponse.__name__ == "Response"
