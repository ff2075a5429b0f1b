"""The ``ghostwire`` command line (also ``python -m ghostwire``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ghostwire", description="ghostwire tools")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run a QUIC handshake over loopback and report it")
    demo.add_argument("--host", default="127.0.0.1", help="loopback address to use")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import run_demo

        return run_demo(args.host)
    parser.error(f"unknown command {args.command!r}")  # exits


if __name__ == "__main__":
    sys.exit(main())
