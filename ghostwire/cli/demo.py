"""``ghostwire demo``: the contract VM over RPC on loopback (see :mod:`ghostwire.demo`)."""

from __future__ import annotations

import argparse
import functools
import sys

from ..errors import GhostwireError
from .common import EXIT_FAILURE, leaves, one_line, run_command

NAME = "demo"
HELP = "run the contract VM example over loopback and report on it"
DESCRIPTION = (
    "Serve a toy contract VM over ghostwire RPC on loopback with a throwaway "
    "certificate authority; deploy and call a contract, follow its logs through "
    "a server restart, and report handshake time, call latency and events/s."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to use")


def run(args: argparse.Namespace) -> int:
    from ..demo import demo

    try:
        return run_command(NAME, functools.partial(demo, args.host))  # Ctrl-C: exit 130
    except BaseException as exc:
        found = leaves(exc)
        if len(found) == 1 and isinstance(found[0], GhostwireError | OSError):
            print(f"{NAME}: {one_line(str(found[0]))}", file=sys.stderr)
            return EXIT_FAILURE
        raise
