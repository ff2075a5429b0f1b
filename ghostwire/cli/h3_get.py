"""``ghostwire h3-get URL``: fetch one URL over HTTP/3, curl-style.

The body goes to stdout (binary-safe) or ``-o FILE``; a progress bar appears
on stderr for large downloads when stderr is a terminal.

:func:`h3_get` is an async function returning the exit code and writing to
the streams it is given, so tests drive it in-process; :func:`run` is the
synchronous entry point the command line calls (``trio.run``, Ctrl-C).

Expected failures (certificate, timeout, connection, HTTP status >= 400) end
with a one-line reason on stderr and a non-zero exit code, never a traceback.
Arguments are checked before anything is sent: a bad URL, header, data file,
CA file or output path is a usage error (exit 2). A download cut short (by the
server, the network or Ctrl-C) says so, with the bytes that arrived.
"""

from __future__ import annotations

import argparse
import functools
import ipaddress
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import IO, BinaryIO, TextIO
from urllib.parse import SplitResult, urlsplit

import trio

from ..http3.errors import HttpError, RequestTimeout
from ..http3.net.client import Client, Response
from ..http3.net.session import HttpStreamError
from ..quic.config import ClientConfig
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
    INTERRUPTION_REPORTED,
    CliError,
    is_tty,
    leaves,
    one_line,
    run_command,
)
from .progress import Progress

NAME = "h3-get"
HELP = "fetch a URL over HTTP/3"
DESCRIPTION = "Fetch a URL over HTTP/3; the body goes to stdout (or -o FILE)."

OUTPUT_BUFFER = 256 << 10  # bytes gathered before a write to stdout / the file


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``h3-get`` options."""
    parser.add_argument("url", help="https:// URL to fetch (https:// may be left out)")
    parser.add_argument("-o", "--output", metavar="FILE", help="write the body to FILE")
    add_trust_arguments(parser)
    parser.add_argument(
        "-H",
        "--header",
        dest="headers",
        metavar="'NAME: VALUE'",
        action="append",
        default=[],
        help="add a request header (repeatable)",
    )
    parser.add_argument("-X", "--request", dest="method", metavar="METHOD", help="HTTP method")
    parser.add_argument(
        "-I", "--head", action="store_true", help="send HEAD and show the response headers"
    )
    parser.add_argument(
        "-d",
        "--data",
        "--data-binary",
        dest="data",
        metavar="DATA",
        help="request body (method POST unless -X): literal text, @FILE, or @- for stdin",
    )
    parser.add_argument(
        "-i", "--include", action="store_true", help="write the response headers before the body"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="give up when connecting, waiting for the response or receiving the body "
        "stalls this long (default 30)",
    )
    parser.add_argument(
        "-s", "--silent", action="store_true", help="no progress bar (errors are still shown)"
    )


@dataclass
class GetOptions:
    """What ``h3-get`` was asked to do (see :func:`add_arguments`)."""

    url: str
    output: str | None = None
    cafile: str | None = None
    insecure: bool = False
    headers: list[str] = field(default_factory=list)
    method: str | None = None
    head: bool = False
    data: str | None = None
    include: bool = False
    timeout: float = 30.0
    silent: bool = False

    @classmethod
    def from_namespace(cls, args: argparse.Namespace) -> GetOptions:
        return cls(
            url=args.url,
            output=args.output,
            cafile=args.cafile,
            insecure=args.insecure,
            headers=list(args.headers),
            method=args.method,
            head=args.head,
            data=args.data,
            include=args.include,
            timeout=args.timeout,
            silent=args.silent,
        )


class OutputClosed(CliError):
    """The reader of stdout went away (``h3-get URL | head``): stop quietly."""


class _Output:
    """Buffered writes to a binary file, done in a worker thread (never blocking trio)."""

    def __init__(self, file: IO[bytes], name: str) -> None:
        self.file = file
        self.name = name
        self._buffer = bytearray()

    async def write(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) >= OUTPUT_BUFFER:
            await self.flush()

    async def flush(self) -> None:
        data = bytes(self._buffer)
        self._buffer.clear()
        await trio.to_thread.run_sync(self._write, data)

    def _write(self, data: bytes) -> None:
        try:
            if data:
                self.file.write(data)
            self.file.flush()
        except BrokenPipeError:
            raise OutputClosed("output closed") from None
        except OSError as exc:
            raise CliError(f"cannot write {self.name}: {exc.strerror or exc}") from None


def _parse_headers(lines: Sequence[str]) -> list[tuple[str, str]]:
    headers = []
    for line in lines:
        name, sep, value = line.partition(":")
        name = name.strip()
        if not sep or not name or name.startswith(":") or any(c.isspace() for c in name):
            raise CliError(f"bad header {line!r}: expected 'Name: value'", EXIT_USAGE)
        headers.append((name.lower(), value.strip()))
    return headers


def _read_data(data: str, stdin: BinaryIO | None) -> bytes:
    if not data.startswith("@"):
        return data.encode()
    source = data[1:]
    if source == "-":
        return (stdin or sys.stdin.buffer).read()
    try:
        return Path(source).read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {source}: {exc.strerror or exc}", EXIT_USAGE) from None


def normalize_url(url: str) -> str:
    """``url`` with ``https://`` added if left out; a malformed URL is a usage error."""
    if "://" not in url:
        url = "https://" + url
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  # validates the port
    except ValueError as exc:  # "https://[::1/", "https://h:99999/"
        raise CliError(f"bad URL {url!r}: {exc}", EXIT_USAGE) from None
    if parts.scheme != "https":
        raise CliError(f"HTTP/3 URLs are https:// (got {url!r})", EXIT_USAGE)
    if not parts.hostname:
        raise CliError(f"no host in {url!r}", EXIT_USAGE)
    _check_bracketed_host(url, parts)
    return url


def _check_bracketed_host(url: str, parts: SplitResult) -> None:
    """``[...]`` in a URL holds an IPv6 address and nothing else (RFC 3986 §3.2.2)."""
    host_port = parts.netloc.rpartition("@")[2]
    if not host_port.startswith("["):
        return
    inside = host_port[1:].partition("]")[0]
    try:
        ipaddress.IPv6Address(inside.partition("%")[0])  # a zone (%eth0) may follow
    except ValueError:
        raise CliError(f"bad URL {url!r}: {inside!r} is not an IPv6 address", EXIT_USAGE) from None


def check_output_path(path: str) -> None:
    """Fail before the request if ``-o path`` cannot be written (a usage error)."""
    target = Path(path)
    if target.is_dir():
        raise CliError(f"cannot write {path}: it is a directory", EXIT_USAGE)
    folder = target.parent
    if not folder.is_dir():
        raise CliError(f"cannot write {path}: no such folder {str(folder)!r}", EXIT_USAGE)
    if not os.access(folder, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise CliError(f"cannot write {path}: permission denied", EXIT_USAGE)


def _status_line(status: int) -> str:
    try:
        return f"HTTP/3 {status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"HTTP/3 {status}"


@dataclass
class _Download:
    """How far the body got: what an interrupted download reports."""

    total: int | None = None
    received: int = 0
    started: bool = False
    complete: bool = False

    def incomplete(self) -> str:
        of = f" of {self.total}" if self.total is not None else ""
        return f"download incomplete: {self.received}{of} bytes received"


@dataclass
class _Request:
    """The arguments, checked and converted before anything is sent."""

    url: str
    method: str
    headers: list[tuple[str, str]]
    body: bytes | None
    config: ClientConfig
    include: bool = False
    download: _Download = field(default_factory=_Download)


def _prepare(options: GetOptions, stderr: TextIO, stdin: BinaryIO | None) -> _Request:
    url = normalize_url(options.url)
    headers = _parse_headers(options.headers)
    if not options.timeout > 0:
        raise CliError("--timeout must be positive", EXIT_USAGE)
    if options.output is not None:
        check_output_path(options.output)
    body = _read_data(options.data, stdin) if options.data is not None else None
    if options.head:
        method = "HEAD"
    elif options.method:
        method = options.method.upper()
    else:
        method = "POST" if body is not None else "GET"
    config = client_config(
        ["h3"],
        cafile=options.cafile,
        insecure=options.insecure,
        timeout=options.timeout,
        prog=NAME,
        stderr=stderr,
    )
    include = options.include or options.head
    return _Request(url, method, headers, body, config, include)


async def h3_get(
    options: GetOptions,
    *,
    stdout: BinaryIO,
    stderr: TextIO,
    stdin: BinaryIO | None = None,
) -> int:
    """Run ``h3-get``; returns the exit code (failures are reported on ``stderr``).

    Cancelled (or interrupted by Ctrl-C) while the body arrives, it says on
    ``stderr`` that the download is incomplete and how many bytes arrived,
    then lets the cancellation go on.
    """
    download: _Download | None = None
    try:
        request = _prepare(options, stderr, stdin)
        download = request.download
        return await _fetch(options, request, stdout, stderr)
    except BaseException as exc:
        reason = _describe_get_failure(exc, options)
        interrupted = download is not None and download.started and not download.complete
        if reason is None:
            if interrupted:
                assert download is not None
                stderr.write(f"h3-get: interrupted: {download.incomplete()}\n")
                stderr.flush()
                exc.add_note(INTERRUPTION_REPORTED)  # run() need not say "interrupted" again
            raise
        message, code = reason
        if interrupted and message:
            assert download is not None
            message = f"{download.incomplete()} ({message})"
        if message:
            stderr.write(f"h3-get: {message}\n")
            stderr.flush()
        return code


async def _fetch(options: GetOptions, request: _Request, stdout: BinaryIO, stderr: TextIO) -> int:
    async with Client(request.config, timeout=options.timeout) as client:
        response = await client.request(
            request.method, request.url, headers=request.headers, content=request.body
        )
        status_line = _status_line(response.status)
        output_file: IO[bytes] | None = None
        try:
            if options.output is not None:
                try:
                    output_file = await trio.to_thread.run_sync(open, options.output, "wb")
                except OSError as exc:
                    message = f"cannot write {options.output}: {exc.strerror or exc}"
                    raise CliError(message) from None
                out = _Output(output_file, options.output)
            else:
                out = _Output(stdout, "stdout")
            if request.include:
                head = [status_line, *(f"{n}: {v}" for n, v in response.headers)]
                await out.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
            await _receive_body(options, request, response, out, stdout, stderr)
        finally:
            if output_file is not None:
                output_file.close()
    if response.status >= 400:
        stderr.write(f"h3-get: {status_line} ({request.url})\n")
        stderr.flush()
        return EXIT_FAILURE
    return EXIT_OK


async def _receive_body(
    options: GetOptions,
    request: _Request,
    response: Response,
    out: _Output,
    stdout: BinaryIO,
    stderr: TextIO,
) -> None:
    download = request.download
    length = response.header("content-length")
    if request.method != "HEAD" and length is not None and length.isdigit():
        download.total = int(length)
    to_terminal = options.output is None and is_tty(stdout)
    progress = Progress(
        stderr, download.total, enabled=not options.silent and is_tty(stderr) and not to_terminal
    )
    download.started = True
    try:
        with trio.CancelScope() as stall:
            stall.deadline = trio.current_time() + options.timeout
            async for chunk in response.iter_bytes():
                stall.deadline = trio.current_time() + options.timeout
                await out.write(chunk)
                download.received += len(chunk)
                progress.update(len(chunk))
        if stall.cancelled_caught:
            raise CliError(f"timed out: no data from the server for {options.timeout:g} s")
        download.complete = True
    finally:
        progress.finish()  # ends the line, so an error message starts on its own
        # What arrived is kept (a partial file, like curl's), even on failure.
        with trio.CancelScope(shield=True):
            try:
                await out.flush()
            except CliError:
                if download.complete:
                    raise


_EXPECTED = (CliError, HttpError, HttpStreamError, *CONNECTION_ERRORS)


def _describe_get_failure(exc: BaseException, options: GetOptions) -> tuple[str, int] | None:
    """A one-line reason and exit code for an expected failure; None otherwise."""
    found = leaves(exc)
    if not all(isinstance(leaf, _EXPECTED) for leaf in found):
        return None  # a bug, a cancellation or Ctrl-C: not ours to summarize
    leaf = found[0]
    try:
        target = urlsplit(normalize_url(options.url)).netloc
    except CliError:
        target = options.url
    if isinstance(leaf, OutputClosed):
        return "", leaf.exit_code
    if isinstance(leaf, CliError):
        return one_line(str(leaf)), leaf.exit_code
    if isinstance(leaf, HttpStreamError):
        return one_line(f"connection to {target} failed: {leaf}"), EXIT_FAILURE
    if isinstance(leaf, HttpError) and not isinstance(leaf, RequestTimeout):
        return one_line(str(leaf)), EXIT_FAILURE
    reason = describe_connection_failure(leaf, target, options.timeout)
    return reason or one_line(f"{leaf}"), EXIT_FAILURE


def run(args: argparse.Namespace) -> int:
    """``ghostwire h3-get``: the exit code."""
    options = GetOptions.from_namespace(args)
    return run_command(
        "h3-get",
        functools.partial(h3_get, options, stdout=sys.stdout.buffer, stderr=sys.stderr),
    )
