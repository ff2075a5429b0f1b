"""One bench process: a server or a client of one stack.

Started by the orchestrator (``bench.__main__``), never by hand::

    python -m bench.worker server STACK SETTINGS_JSON [--protocol raw|h3] [--profile FILE]
    python -m bench.worker client STACK SETTINGS_JSON WORKLOAD PORT SERVER_PID SIZES_JSON
                                  [--profile FILE]

A server speaks the raw stream echo protocol, or HTTP/3 with ``--protocol
h3`` (see bench.common). A server prints ``PORT <n>`` once it listens; a
client prints ``RESULT <json>`` when its workload is done. Only the chosen
stack is imported, so the server's memory holds one QUIC implementation.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import logging
import sys
from collections.abc import Callable
from types import ModuleType

from .common import PROTOCOLS, Settings, Sizes


def _stack_module(stack: str) -> ModuleType:
    if stack == "ghostwire":
        from . import gw

        return gw
    if stack == "aioquic":
        from . import aq

        return aq
    if stack == "qh3":
        from . import qh

        return qh.load()
    raise SystemExit(f"unknown stack {stack!r}")


def _run(target: Callable[[], None], profile: str | None) -> None:
    if profile is None:
        target()
        return
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        target()
    finally:
        profiler.disable()
        profiler.dump_stats(profile)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.worker")
    parser.add_argument("role", choices=["server", "client"])
    parser.add_argument("stack")
    parser.add_argument("settings")
    parser.add_argument("rest", nargs="*")
    parser.add_argument("--profile", default=None)
    parser.add_argument("--protocol", choices=PROTOCOLS, default="raw")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    settings = Settings.from_json(args.settings)
    module = _stack_module(args.stack)
    if args.role == "server":
        _run(lambda: module.run_server(settings, args.protocol), args.profile)
        return
    workload, port, server_pid, sizes_json = args.rest
    sizes = Sizes(**json.loads(sizes_json))
    _run(
        lambda: module.run_client(workload, int(port), settings, sizes, int(server_pid)),
        args.profile,
    )


if __name__ == "__main__":
    main()
