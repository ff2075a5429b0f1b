"""``ghostwire subscribe ADDR service.channel ARGS``: print a channel's events as JSON lines.

Each event is one line, ``{"cursor": ..., "data": ...}``, written as it
arrives, with the conventions of :mod:`.call` (arguments as a JSON object,
array or ``key=value`` pairs; ``"0x..."`` strings as bytes; bytes printed as
``"0x..."``; integers exact). ``--after CURSOR`` resumes after a cursor seen
before (read as JSON when it parses, else as a string); ``--count N`` stops
after N events.

Exit codes: 0 when the channel ends (or after ``--count`` events); 1 on an
RPC error (``error: STATUS: message``) or a connection failure; 2 a usage
error; 130 Ctrl-C (as ``h3-get``), after the events received so far were
printed.
"""

from __future__ import annotations

import argparse
import functools
import sys
from dataclasses import dataclass
from typing import Any, TextIO

from .call import (
    RpcOptions,
    add_connection_arguments,
    add_method_arguments,
    connected,
    dumps,
    from_json,
    json_or_string,
    prepare,
    report_failures,
    write_line,
)
from .common import EXIT_OK, EXIT_USAGE, CliError, positive_seconds, run_command

NAME = "subscribe"
HELP = "print the events of an RPC channel as JSON lines"
DESCRIPTION = (
    "Subscribe to an event channel of a ghostwire RPC server; each event goes to "
    'stdout as one JSON line, {"cursor": ..., "data": ...}.'
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``subscribe`` options."""
    add_method_arguments(parser, "CHANNEL")
    parser.add_argument(
        "--after",
        metavar="CURSOR",
        help="resume after this cursor (JSON if it parses as JSON, else a string)",
    )
    parser.add_argument(
        "-n", "--count", type=_count, metavar="N", help="stop after N events (default: no limit)"
    )
    add_connection_arguments(parser)
    parser.add_argument(
        "--timeout",
        type=positive_seconds,
        default=30.0,
        metavar="SECONDS",
        help="give up on connecting after this long (default 30); "
        "the subscription itself has no deadline",
    )


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of events (1 or more)")
    return int(text)


@dataclass
class SubscribeOptions(RpcOptions):
    """What ``subscribe`` was asked to do: :class:`RpcOptions` and its own two."""

    after: str | None = None
    count: int | None = None

    @classmethod
    def from_namespace(cls, args: argparse.Namespace) -> SubscribeOptions:
        base = RpcOptions.from_namespace(args)
        return cls(**vars(base), after=args.after, count=args.count)


def parse_cursor(text: str | None, *, raw_strings: bool = False) -> Any:
    """``--after``: JSON when it parses (``7``, ``"7"``, ``[7, 2]``), else the string."""
    if text is None:
        return None
    cursor = from_json(json_or_string(text), raw_strings=raw_strings)
    if cursor is None:
        raise CliError("--after null: leave --after out to start afresh", EXIT_USAGE)
    return cursor


async def subscribe(options: SubscribeOptions, *, stdout: TextIO, stderr: TextIO) -> int:
    """Run ``subscribe``; returns the exit code (failures are reported on ``stderr``)."""

    async def work() -> int:
        prepared = prepare(options)
        after = parse_cursor(options.after, raw_strings=options.raw_strings)
        received = 0
        async with connected(options, NAME, stderr) as client:
            async with client.connection.subscribe(
                options.method,
                prepared.args,
                prepared.kwargs,
                after=after,
                metadata=prepared.metadata,
            ) as events:
                async for event in events:
                    write_line(stdout, dumps({"cursor": event.cursor, "data": event.data}))
                    received += 1
                    if received == options.count:
                        break
        return EXIT_OK

    return await report_failures(NAME, options, stderr, work)


def run(args: argparse.Namespace) -> int:
    """``ghostwire subscribe``: the exit code."""
    options = SubscribeOptions.from_namespace(args)
    return run_command(
        NAME, functools.partial(subscribe, options, stdout=sys.stdout, stderr=sys.stderr)
    )
