"""The ``ghostwire`` command line: the registry of commands and the entry points."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ghostwire.__main__ import COMMANDS, build_parser, commands, main


def test_every_registered_module_is_a_command() -> None:
    found = commands()
    assert len(found) == len(COMMANDS)  # names are unique
    assert {"demo", "h3-get", "h3-serve"} <= set(found)
    for name, command in found.items():
        assert command.name == name and command.help and command.description
        assert callable(command.add_arguments) and callable(command.run)


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for name, command in commands().items():
        assert name in out and command.help in out


def test_no_command_or_an_unknown_one_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in ([], ["frobnicate"]):
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code == 2
    assert "usage: ghostwire" in capsys.readouterr().err


def test_python_dash_m_ghostwire_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ghostwire", "--help"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0
    assert b"h3-get" in result.stdout
