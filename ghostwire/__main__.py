"""The ``ghostwire`` command line (also ``python -m ghostwire``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    from .cli_h3 import add_get_arguments, add_serve_arguments

    parser = argparse.ArgumentParser(prog="ghostwire", description="ghostwire tools")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run a QUIC handshake over loopback and report it")
    demo.add_argument("--host", default="127.0.0.1", help="loopback address to use")
    h3_get = commands.add_parser(
        "h3-get",
        help="fetch a URL over HTTP/3",
        description="Fetch a URL over HTTP/3; the body goes to stdout (or -o FILE).",
    )
    add_get_arguments(h3_get)
    h3_serve = commands.add_parser(
        "h3-serve",
        help="serve a folder over HTTP/3",
        description="Serve a folder over HTTP/3 (GET and HEAD) until Ctrl-C.",
    )
    add_serve_arguments(h3_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import run_demo

        return run_demo(args.host)
    if args.command == "h3-get":
        from .cli_h3 import run_get

        return run_get(args)
    if args.command == "h3-serve":
        from .cli_h3 import run_serve

        return run_serve(args)
    parser.error(f"unknown command {args.command!r}")  # exits


if __name__ == "__main__":
    sys.exit(main())
