"""The sans-IO resilience modules do no I/O: no trio, sockets or clocks.

Time is passed in, so they run the same under trio's fake clock, in a
simulation, or in another event loop. The trio parts live in ``states.py``,
``runners.py`` and ``health.py``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import ghostwire.rpc.resilience as resilience

PACKAGE = Path(resilience.__file__).parent
SANS_IO = ["backoff.py", "circuit.py", "retry.py", "balancer.py", "metrics.py", "resume.py"]
IO_MODULES = {"trio", "socket", "asyncio", "selectors", "time", "threading"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_sans_io_modules_import_no_io() -> None:
    offenders = {
        name: sorted(_imports(PACKAGE / name) & IO_MODULES)
        for name in SANS_IO
        if _imports(PACKAGE / name) & IO_MODULES
    }
    assert offenders == {}


def test_the_package_imports_without_optional_extras() -> None:
    # prometheus-client is optional and health needs the RPC service layer:
    # importing the package must not pull either in.
    source = (PACKAGE / "__init__.py").read_text(encoding="utf-8")
    assert "prometheus" not in _imports(PACKAGE / "__init__.py")
    assert "from .prometheus" not in source and "from .health" not in source
