"""docs/configuration.md lists every setting with the code's default.

Each table of the document follows a marker ``<!-- config-table: NAME -->``;
:data:`TABLES` maps NAME to the settings the code has: the fields of a config
dataclass, or the arguments of an entry point. The first column of a row is
the setting in backticks, the second its default. The test fails when

* a setting is missing from its table (a new field nobody documented),
* a table lists a setting the code no longer has,
* a default shown in backticks differs from the code's (for plain values:
  numbers, strings, booleans, None; a row may add words after it, such as
  ``1048576`` (1 MiB)),
* a config dataclass of the modules in :data:`CONFIG_MODULES` has no table.

The failure message gives the row to paste, with the code's default.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import ghostwire.http3 as h3
import ghostwire.quic as quic
import ghostwire.rpc as rpc
import ghostwire.shroud as shroud
from ghostwire.http3 import config as h3_config_module
from ghostwire.quic import config as quic_config_module
from ghostwire.rpc import limits as rpc_limits_module
from ghostwire.rpc.resilience import BackoffPolicy, CircuitPolicy, RetryPolicy, RetryThrottle
from ghostwire.shroud import config as shroud_config_module

DOC = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
MARKER = re.compile(r"^<!--\s*config-table:\s*(?P<name>[\w.-]+)\s*-->$")
# Arguments that are trio plumbing, not configuration.
NOT_SETTINGS = {"self", "task_status"}


def _fields(cls: type, *, without: type | None = None) -> dict[str, Any]:
    """A dataclass's fields and defaults (``inspect.Parameter.empty`` if none)."""
    inherited = {f.name for f in dataclasses.fields(without)} if without is not None else set()
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in inherited or (not f.init and f.name.startswith("_")):
            continue
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
        else:
            out[f.name] = inspect.Parameter.empty
    return out


def _shroud_server_fields() -> dict[str, Any]:
    # UnifiedServerConfig takes keywords (and aliases); its defaults are a table.
    defaults: dict[str, Any] = shroud_config_module._DEFAULTS
    assert set(defaults) == {f.name for f in dataclasses.fields(shroud.UnifiedServerConfig)}
    return dict(defaults)


def _arguments(function: Callable[..., Any]) -> dict[str, Any]:
    """A callable's named arguments and defaults (``*args``/``**kwargs`` left out)."""
    out: dict[str, Any] = {}
    for name, parameter in inspect.signature(function).parameters.items():
        if name in NOT_SETTINGS or parameter.kind in (
            inspect.Parameter.VAR_POSITIONAL,
            inspect.Parameter.VAR_KEYWORD,
        ):
            continue
        out[name] = parameter.default
    return out


_COMMON: type = quic_config_module._CommonConfig

TABLES: dict[str, Callable[[], dict[str, Any]]] = {
    "quic-common": lambda: _fields(_COMMON),
    "quic-client": lambda: _fields(quic.ClientConfig, without=_COMMON),
    "quic-server": lambda: _fields(quic.ServerConfig, without=_COMMON),
    "quic.connect": lambda: _arguments(quic.connect),
    "quic.serve": lambda: _arguments(quic.serve),
    "quic.open_listener": lambda: _arguments(quic.open_listener),
    "H3Config": lambda: _fields(h3.H3Config),
    "h3.serve": lambda: _arguments(h3.serve),
    "h3.Client": lambda: _arguments(h3.Client.__init__),
    "rpc.Server": lambda: _arguments(rpc.Server.__init__),
    "rpc.Server.serve": lambda: _arguments(rpc.Server.serve),
    "rpc.Server.shutdown": lambda: _arguments(rpc.Server.shutdown),
    "rpc.Limits": lambda: _fields(rpc.Limits),
    "rpc.MethodOptions": lambda: _fields(rpc.MethodOptions),
    "rpc.connect": lambda: _arguments(rpc.connect),
    "BackoffPolicy": lambda: _fields(BackoffPolicy),
    "RetryPolicy": lambda: _fields(RetryPolicy),
    "RetryThrottle": lambda: _arguments(RetryThrottle.__init__),
    "CircuitPolicy": lambda: _fields(CircuitPolicy),
    "shroud.UnifiedServerConfig": _shroud_server_fields,
    "shroud.ClientConfig": lambda: _fields(shroud.ClientConfig),
}

# Every public dataclass of these modules is a config that needs a table
# (the value: the table names that cover it).
CONFIG_MODULES: dict[ModuleType, dict[str, set[str]]] = {
    quic_config_module: {
        "ClientConfig": {"quic-common", "quic-client"},
        "ServerConfig": {"quic-common", "quic-server"},
    },
    h3_config_module: {"H3Config": {"H3Config"}},
    rpc_limits_module: {"Limits": {"rpc.Limits"}},
    shroud_config_module: {"UnifiedServerConfig": {"shroud.UnifiedServerConfig"}},
}
# Dataclasses of those modules that are not settings (what capabilities() reports).
NOT_CONFIGS = {"GhostwireCapabilities"}


@dataclasses.dataclass
class Row:
    line: int
    name: str
    default: str  # the second cell, as written


def parse_tables(text: str) -> dict[str, list[Row]]:
    """The rows of every marked table of ``text``."""
    tables: dict[str, list[Row]] = {}
    lines = text.splitlines()
    for index, line in enumerate(lines):
        marker = MARKER.match(line.strip())
        if not marker:
            continue
        name = marker["name"]
        assert name not in tables, f"line {index + 1}: a second table named {name!r}"
        table = [(number, row) for number, row in enumerate(lines[index + 1 :], index + 2)]
        rows: list[Row] = []
        for number, row in table:
            if not row.startswith("|"):
                break
            cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", row)[1:-1]]
            if len(cells) < 3 or set(cells[0]) <= set("-: "):
                continue  # the separator row
            setting = re.fullmatch(r"`(\w+)`", cells[0])
            if setting is None:
                continue  # the header row
            rows.append(Row(number, setting[1], cells[1]))
        assert rows, f"line {index + 1}: the {name!r} marker is not followed by a table"
        tables[name] = rows
    return tables


DOCUMENTED = parse_tables(DOC.read_text(encoding="utf-8"))


def _plain(value: Any) -> bool:
    return value is None or type(value) in (bool, int, float, str)


def _shown_defaults(value: Any) -> set[str]:
    """How a plain default may be written (in backticks) in the default column."""
    shown = {f"`{value!r}`"}
    if isinstance(value, str):
        shown.add(f'`"{value}"`')
    return shown


def _suggested_row(name: str, default: Any) -> str:
    if default is inspect.Parameter.empty:
        shown = "required"
    elif _plain(default):
        shown = f"`{default!r}`"
    else:
        shown = repr(default).replace("|", "\\|")
    return f"| `{name}` | {shown} | (what it does) |"


@pytest.mark.parametrize("table", sorted(TABLES))
def test_every_setting_is_documented_with_its_default(table: str) -> None:
    settings = TABLES[table]()
    assert table in DOCUMENTED, (
        f"docs/configuration.md has no table <!-- config-table: {table} --> with rows:\n"
        + "\n".join(_suggested_row(name, default) for name, default in settings.items())
    )
    rows = {row.name: row for row in DOCUMENTED[table]}
    missing = [name for name in settings if name not in rows]
    assert not missing, f"add to the {table!r} table of docs/configuration.md:\n" + "\n".join(
        _suggested_row(name, settings[name]) for name in missing
    )
    stale = sorted(set(rows) - set(settings))
    assert not stale, f"the {table!r} table documents settings the code lacks: {stale}"
    for name, default in settings.items():
        row = rows[name]
        if default is inspect.Parameter.empty:
            assert row.default == "required", f"line {row.line}: {name} has no default"
        elif _plain(default):
            assert any(row.default.startswith(s) for s in _shown_defaults(default)), (
                f"docs/configuration.md line {row.line}: the default of {table} {name} is "
                f"{default!r} in the code, not {row.default!r}"
            )


def test_no_table_documents_a_setting_twice() -> None:
    for table, rows in DOCUMENTED.items():
        names = [row.name for row in rows]
        assert len(names) == len(set(names)), f"{table}: {names}"


def test_every_table_is_checked() -> None:
    assert set(DOCUMENTED) == set(TABLES), set(DOCUMENTED) ^ set(TABLES)


@pytest.mark.parametrize("module", list(CONFIG_MODULES), ids=lambda module: module.__name__)
def test_every_config_dataclass_has_a_table(module: ModuleType) -> None:
    public = {
        name
        for name, value in vars(module).items()
        if inspect.isclass(value)
        and dataclasses.is_dataclass(value)
        and value.__module__ == module.__name__
        and not name.startswith("_")
        and name not in NOT_CONFIGS
    }
    covered = CONFIG_MODULES[module]
    assert public == set(covered), (
        f"{module.__name__} has config dataclasses without a table in "
        f"docs/configuration.md (and in TABLES here): {sorted(public - set(covered))}"
    )
    for names in covered.values():
        assert names <= set(DOCUMENTED)


def test_a_drifted_default_is_caught() -> None:
    """The check itself: a table showing a wrong default, or a missing field, fails."""
    doc = "<!-- config-table: t -->\n| f | d | m |\n|---|---|---|\n| `a` | `30.0` | x |\n"
    (row,) = parse_tables(doc)["t"]
    assert any(row.default.startswith(s) for s in _shown_defaults(30.0))
    assert not any(row.default.startswith(s) for s in _shown_defaults(10.0))
    assert not any(row.default.startswith(s) for s in _shown_defaults(3))
