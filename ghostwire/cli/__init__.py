"""The ``ghostwire`` command line: one module per command.

A command module provides

* ``NAME``: the command as typed (``"h3-get"``), ``HELP`` (one line for
  ``ghostwire --help``) and ``DESCRIPTION`` (for ``ghostwire NAME --help``);
* ``add_arguments(parser)``: its options, on an :class:`argparse.ArgumentParser`;
* ``run(args) -> int``: does the work and returns the exit code.

and is listed in ``ghostwire.__main__.COMMANDS``. Shared conventions (exit
codes, one-line errors, argument types) live in :mod:`.common`; what client
commands share (``--cafile``/``--insecure``, why a connection failed) in
:mod:`.client`. The modules behind a command keep its logic testable
in-process (``h3_get.h3_get`` and ``h3_serve.h3_serve`` are async functions
that take their output streams).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType


@dataclass(frozen=True)
class Command:
    """One command, as its module describes it (see the module docs)."""

    name: str
    help: str
    description: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def load_command(module: ModuleType) -> Command:
    """The :class:`Command` a command module describes."""
    return Command(
        name=module.NAME,
        help=module.HELP,
        description=getattr(module, "DESCRIPTION", module.HELP),
        add_arguments=module.add_arguments,
        run=module.run,
    )
