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


# -- the layers above QUIC use its public API only ------------------------------

QUIC = PACKAGE / "quic"
UPPER_LAYERS = tuple(PACKAGE / name for name in ("http3", "rpc", "shroud", "cli"))
OWN_RECEIVERS = {"self", "cls"}


def _private_names_defined(paths: list[Path]) -> set[str]:
    """``_names`` the modules define: methods, functions, classes and
    attributes they assign (``self._x = ...``, ``__slots__`` entries)."""
    names: set[str] = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names.add(node.target.id)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                names.add(node.value)  # __slots__ entries
    return {name for name in names if name.startswith("_") and not name.startswith("__")}


def _quic_privates_used(
    path: Path, quic_privates: set[str], root: Path = PACKAGE.parent
) -> list[str]:
    """Where ``path`` reaches into QUIC: ``obj._name`` on something not its own
    (``self``/``cls``) with a private name only QUIC defines, or a private
    name imported from ``ghostwire.quic``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Attribute) and node.attr in quic_privates:
            receiver = node.value
            if isinstance(receiver, ast.Name) and receiver.id in OWN_RECEIVERS:
                continue
            found.append(f"{path.relative_to(root)}:{node.lineno} .{node.attr}")
        elif isinstance(node, ast.ImportFrom) and "quic" in (node.module or "").split("."):
            where = f"{path.relative_to(root)}:{node.lineno}"
            found.extend(f"{where} {a.name}" for a in node.names if a.name.startswith("_"))
    return found


def _upper_layer_offences() -> list[str]:
    quic_modules = sorted(QUIC.rglob("*.py"))
    upper_modules = sorted(path for root in UPPER_LAYERS for path in root.rglob("*.py"))
    # A name the upper layers define themselves is theirs to use (``_lot`` of
    # an HTTP/3 channel); what is left are QUIC's own internals.
    quic_privates = _private_names_defined(quic_modules) - _private_names_defined(upper_modules)
    assert {"_flush", "_flush_soon", "_after_input", "_reset_code", "_core"} <= quic_privates
    return [hit for path in upper_modules for hit in _quic_privates_used(path, quic_privates)]


def test_upper_layers_use_only_public_quic_api() -> None:
    """HTTP/3, RPC, shroud and the CLI drive QUIC through its public API
    (``Connection.flush``/``flush_soon``/``process_and_flush``/
    ``raise_if_closed``, ``QuicStream.on_peer_abort``), never its privates."""
    assert _upper_layer_offences() == []


def test_the_private_access_check_catches_reaching_in(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from ghostwire.quic.net.connection import _STREAM_EVENTS\n"
        "def f(conn, self):\n    conn._flush_soon()\n    self._flush_soon()\n"
        "    stream._reset_code = 1\n"
    )
    quic_privates = _private_names_defined(sorted(QUIC.rglob("*.py")))
    hits = [hit.split(":")[-1] for hit in _quic_privates_used(bad, quic_privates, tmp_path)]
    assert sorted(hits) == ["1 _STREAM_EVENTS", "3 ._flush_soon", "5 ._reset_code"]
