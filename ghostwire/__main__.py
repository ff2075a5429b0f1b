"""The ``ghostwire`` command line (also ``python -m ghostwire``).

Each command is one module of :mod:`ghostwire.cli` (see its docs for what a
command module provides); :data:`COMMANDS` lists them, in the order of
``ghostwire --help``. A new command is one new module and one line here.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from .cli import Command, load_command

COMMANDS: tuple[str, ...] = (
    "demo",
    "h3_get",
    "h3_serve",
    "rpc_serve",
    "call",
    "subscribe",
)


def commands() -> dict[str, Command]:
    """The commands by their name on the command line (``h3-get``...)."""
    loaded = [importlib.import_module(f"{__package__}.cli.{name}") for name in COMMANDS]
    return {command.name: command for command in map(load_command, loaded)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ghostwire", description="ghostwire tools")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in commands().values():
        command.add_arguments(
            subparsers.add_parser(command.name, help=command.help, description=command.description)
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return commands()[args.command].run(args)


if __name__ == "__main__":
    sys.exit(main())
