"""``ghostwire call ADDR service.method ARGS``: call one RPC method, print the result as JSON.

Arguments are a JSON object (keyword arguments), a JSON array (positional
ones), or ``key=value`` pairs (each value read as JSON when it parses as JSON,
else taken as a string). Bytes have no JSON form, so a string ``"0x..."`` of
hex digits (even count) is sent as bytes, anywhere in the arguments (map keys
too); ``--raw-strings`` sends every string as it is. Integers are exact at any
size (uint256 amounts travel as the protocol's big-integer extension).

The result is printed as one line of JSON: bytes as ``"0x..."`` hex strings
(map keys too), integers exact, other map keys as their JSON text. So what
``call`` prints can be passed back as arguments.

:func:`call` is an async function returning the exit code and writing to the
streams it is given, so tests drive it in-process; :func:`run` is the
synchronous entry point. What :mod:`.subscribe` shares with this command
(argument parsing, JSON conversion, connecting, error lines) lives here too.

Exit codes: 0 success; 1 an RPC error (``error: STATUS: message`` on stderr)
or a connection failure (one line); 2 a usage error, found before anything is
sent; 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import re
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TextIO

from ..rpc import Client, RpcError, connect
from ..rpc.client import parse_address
from .client import (
    CONNECTION_ERRORS,
    add_trust_arguments,
    client_config,
    describe_connection_failure,
)
from .common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    leaves,
    one_line,
    positive_seconds,
    run_command,
)

NAME = "call"
HELP = "call an RPC method and print its result as JSON"
DESCRIPTION = "Call one method of a ghostwire RPC server; the result goes to stdout as JSON."

ARGUMENTS_HELP = """\
arguments:
  '{"address": "0x0101", "amount": 10}'   keyword arguments (a JSON object)
  '["0x0101", 10]'                        positional arguments (a JSON array)
  address=0x0101 amount=10 name=alice     key=value pairs: a value that parses as
                                          JSON is JSON (10, true, [1,2], '"10"'),
                                          anything else is a string

bytes: a JSON string "0x" followed by an even number of hex digits is sent as
  bytes (also inside lists and maps, and as map keys); "0x" alone is empty
  bytes. --raw-strings turns this off (every string is sent as a string).
integers: exact at any size (uint256 and beyond).
options go before ADDR or after the arguments (not between METHOD and them).
output: one line of JSON; bytes print as "0x..." hex strings, so a result can
  be passed back as an argument.
"""

_HEX = re.compile(r"0x(?:[0-9a-fA-F]{2})*")


# -- JSON <-> RPC values --------------------------------------------------------------


def from_json(value: Any, *, raw_strings: bool = False) -> Any:
    """A parsed JSON value as RPC arguments: ``"0x..."`` strings become bytes."""
    if raw_strings:
        return value
    if isinstance(value, str):
        return bytes.fromhex(value[2:]) if _HEX.fullmatch(value) else value
    if isinstance(value, list):
        return [from_json(item) for item in value]
    if isinstance(value, dict):
        return {from_json(key): from_json(item) for key, item in value.items()}
    return value


def to_json(value: Any) -> Any:
    """An RPC value as something :func:`json.dumps` prints (bytes as ``"0x..."`` hex)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return "0x" + bytes(value).hex()
    if isinstance(value, list | tuple):
        return [to_json(item) for item in value]
    if isinstance(value, dict):
        return {_json_key(key): to_json(item) for key, item in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # "nan", "inf", "-inf": JSON has no such numbers
    return value


def _json_key(key: Any) -> str:
    if isinstance(key, str):
        return key
    converted = to_json(key)
    return converted if isinstance(converted, str) else json.dumps(converted)


def dumps(value: Any) -> str:
    """One line of JSON; integers of any size stay exact (JSON numbers have no limit)."""
    return json.dumps(to_json(value), ensure_ascii=False)


def parse_json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"{what}: not valid JSON: {exc}", EXIT_USAGE) from None
    except ValueError as exc:  # an integer too long to read
        raise CliError(f"{what}: {exc}", EXIT_USAGE) from None


def parse_arguments(
    words: Sequence[str], *, raw_strings: bool = False
) -> tuple[list[Any], dict[str, Any]]:
    """The method's (positional, keyword) arguments from the command line words."""
    if len(words) == 1 and words[0].lstrip()[:1] in ("{", "["):
        value = parse_json(words[0], "the arguments")
        if isinstance(value, list):
            return from_json(value, raw_strings=raw_strings), {}
        if not isinstance(value, dict):  # pragma: no cover - "{"/"[" parse to these
            raise CliError("the arguments must be a JSON object or array", EXIT_USAGE)
        return [], from_json(value, raw_strings=raw_strings)
    kwargs: dict[str, Any] = {}
    for word in words:
        key, sep, text = word.partition("=")
        if not sep or not key:
            raise CliError(
                f"bad argument {word!r}: expected key=value, or one JSON object or array",
                EXIT_USAGE,
            )
        if key in kwargs:
            raise CliError(f"argument {key!r} given twice", EXIT_USAGE)
        kwargs[key] = from_json(json_or_string(text), raw_strings=raw_strings)
    return [], kwargs


def json_or_string(text: str) -> Any:
    """``text`` as JSON if it is JSON, else the string itself (``name=alice``)."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_metadata(items: Sequence[str]) -> dict[str, str | bytes]:
    metadata: dict[str, str | bytes] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CliError(f"bad --metadata {item!r}: expected key=value", EXIT_USAGE)
        metadata[key.strip()] = value
    return metadata


def check_address(address: str) -> str:
    try:
        parse_address(address)
    except ValueError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    return address


def check_method(name: str) -> str:
    service, sep, method = name.partition(".")
    if not sep or not service or not method or "." in method:
        raise CliError(f"method must be 'service.method', got {name!r}", EXIT_USAGE)
    return name


# -- options shared with subscribe -----------------------------------------------------


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """``--cafile``/``--insecure``, ``--timeout``, ``--metadata``, ``--raw-strings``."""
    add_trust_arguments(parser)
    parser.add_argument(
        "-m",
        "--metadata",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="call metadata (repeatable)",
    )
    parser.add_argument(
        "--raw-strings",
        action="store_true",
        help='send "0x..." strings as strings, not bytes',
    )


def add_method_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = ARGUMENTS_HELP
    parser.add_argument("address", metavar="ADDR", help="the server, host:port ([v6]:port)")
    parser.add_argument("method", metavar=what, help=f"the {what.lower()} to call")
    parser.add_argument(
        "arguments",
        metavar="ARGS",
        nargs="*",
        help="a JSON object or array, or key=value pairs (see below)",
    )


@dataclass
class RpcOptions:
    """What ``call`` (and ``subscribe``) were asked to do."""

    address: str
    method: str
    arguments: list[str] = field(default_factory=list)
    cafile: str | None = None
    insecure: bool = False
    metadata: list[str] = field(default_factory=list)
    raw_strings: bool = False
    timeout: float = 30.0

    @classmethod
    def from_namespace(cls, args: argparse.Namespace) -> RpcOptions:
        return cls(
            address=args.address,
            method=args.method,
            arguments=list(args.arguments),
            cafile=args.cafile,
            insecure=args.insecure,
            metadata=list(args.metadata),
            raw_strings=args.raw_strings,
            timeout=args.timeout,
        )


@dataclass
class Prepared:
    """The arguments, checked and converted before anything is sent."""

    args: list[Any]
    kwargs: dict[str, Any]
    metadata: dict[str, str | bytes]


def prepare(options: RpcOptions) -> Prepared:
    """Check everything that can be checked before connecting (usage errors)."""
    check_address(options.address)
    check_method(options.method)
    args, kwargs = parse_arguments(options.arguments, raw_strings=options.raw_strings)
    return Prepared(args, kwargs, parse_metadata(options.metadata))


@asynccontextmanager
async def connected(options: RpcOptions, prog: str, stderr: TextIO) -> AsyncIterator[Client]:
    """An RPC client connected to ``options.address`` with the command's trust options."""
    config = client_config(
        ["ghostwire-rpc"],
        cafile=options.cafile,
        insecure=options.insecure,
        timeout=options.timeout,
        prog=prog,
        stderr=stderr,
    )
    async with connect(options.address, config=config) as client:
        yield client


class OutputClosed(CliError):
    """The reader of stdout went away (``subscribe ... | head``): stop quietly."""


def write_line(stdout: TextIO, line: str) -> None:
    try:
        stdout.write(line + "\n")
        stdout.flush()
    except BrokenPipeError:
        raise OutputClosed("output closed") from None


_EXPECTED = (CliError, RpcError, *CONNECTION_ERRORS)


async def report_failures(
    prog: str, options: RpcOptions, stderr: TextIO, work: Callable[[], Any]
) -> int:
    """``await work()`` and its exit code; expected failures become one line on stderr.

    An :class:`RpcError` is ``error: STATUS: message`` (and its details, as
    JSON, on a second line); a connection failure or a usage error is
    ``prog: reason``. Anything else (a bug, Ctrl-C) goes up.
    """
    try:
        code: int = await work()
        return code
    except BaseException as exc:
        found = leaves(exc)
        if not all(isinstance(leaf, _EXPECTED) for leaf in found):
            raise
        leaf = found[0]
        if isinstance(leaf, RpcError):
            stderr.write(f"error: {leaf.status.name}: {one_line(leaf.message)}\n")
            if leaf.details is not None:
                stderr.write(f"details: {dumps(leaf.details)}\n")
            code = EXIT_FAILURE
        elif isinstance(leaf, OutputClosed):
            code = leaf.exit_code
        elif isinstance(leaf, CliError):
            stderr.write(f"{prog}: {one_line(str(leaf))}\n")
            code = leaf.exit_code
        else:
            reason = describe_connection_failure(leaf, options.address, options.timeout)
            stderr.write(f"{prog}: {reason or one_line(str(leaf))}\n")
            code = EXIT_FAILURE
        stderr.flush()
        return code


# -- the command ---------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``call`` options."""
    add_method_arguments(parser, "METHOD")
    add_connection_arguments(parser)
    parser.add_argument(
        "--timeout",
        type=positive_seconds,
        default=30.0,
        metavar="SECONDS",
        help="give up on connecting, and on the call (its deadline), after this long (default 30)",
    )


async def call(options: RpcOptions, *, stdout: TextIO, stderr: TextIO) -> int:
    """Run ``call``; returns the exit code (failures are reported on ``stderr``)."""

    async def work() -> int:
        prepared = prepare(options)
        async with connected(options, NAME, stderr) as client:
            result = await client.connection.call(
                options.method,
                prepared.args,
                prepared.kwargs,
                timeout=options.timeout,
                metadata=prepared.metadata,
            )
        write_line(stdout, dumps(result))
        return EXIT_OK

    return await report_failures(NAME, options, stderr, work)


def run(args: argparse.Namespace) -> int:
    """``ghostwire call``: the exit code."""
    options = RpcOptions.from_namespace(args)
    return run_command(NAME, functools.partial(call, options, stdout=sys.stdout, stderr=sys.stderr))
