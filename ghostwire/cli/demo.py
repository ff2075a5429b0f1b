"""``ghostwire demo``: the contract VM over RPC on loopback (see :mod:`ghostwire.demo`)."""

from __future__ import annotations

import argparse
import sys

from ..errors import GhostwireError
from .common import EXIT_FAILURE, EXIT_INTERRUPTED, has_keyboard_interrupt, leaves, one_line

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
    from ..demo import run_demo

    try:
        return run_demo(args.host)
    except BaseException as exc:
        if has_keyboard_interrupt(exc):
            print("interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        found = leaves(exc)
        if len(found) == 1 and isinstance(found[0], GhostwireError | OSError):
            print(f"ghostwire demo: {one_line(str(found[0]))}", file=sys.stderr)
            return EXIT_FAILURE
        raise
