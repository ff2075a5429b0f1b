"""``ghostwire demo``: a QUIC handshake and an echo over loopback (see :mod:`ghostwire.demo`)."""

from __future__ import annotations

import argparse

NAME = "demo"
HELP = "run a QUIC handshake over loopback and report it"
DESCRIPTION = (
    "Start a QUIC server and client over loopback with a throwaway certificate "
    "authority, echo a message, and print what was negotiated."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to use")


def run(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    return run_demo(args.host)
