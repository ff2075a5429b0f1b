"""``ghostwire h3-get`` and ``ghostwire h3-serve``: HTTP/3 from the command line.

``h3-get URL`` fetches one URL over HTTP/3 and writes the body to stdout (or
``-o FILE``), curl-style. ``h3-serve --root DIR`` serves a folder over HTTP/3
(GET and HEAD), with a fresh self-signed certificate unless one is given.

Both are thin layers over :class:`ghostwire.http3.Client` and
:func:`ghostwire.http3.serve`, split so that tests drive them in-process:

* :func:`h3_get` is an async function returning the exit code, writing to the
  byte and text streams it is given;
* :func:`h3_serve` is an async function for ``nursery.start``: it binds,
  prints the banner, reports a :class:`ServeInfo` and serves until cancelled;
  :class:`DirectoryApp` is the native HTTP/3 handler it serves with;
* :func:`run_get` and :func:`run_serve` are the synchronous entry points that
  ``ghostwire.__main__`` calls (``trio.run``, Ctrl-C, exit codes).

Expected failures (certificate, timeout, connection, HTTP status >= 400) end
with a one-line reason on stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import email.utils
import functools
import html
import mimetypes
import os
import posixpath
import shutil
import signal
import socket
import stat
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import IO, Any, BinaryIO, NoReturn, TextIO
from urllib.parse import quote, unquote, urlsplit

import trio

from .certs import IssuedCertificate, self_signed_certificate
from .http3.net.client import Client, HttpConnectionError, HttpError, RequestTimeout
from .http3.net.server import Request, Response, serve
from .http3.net.session import HttpStreamError
from .quic.config import ClientConfig, InsecureConfigurationWarning, ServerConfig
from .quic.net.api import QuicServer
from .quic.net.exceptions import CertificateError, HandshakeError, HandshakeTimeout, QuicError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

PROGRESS_MIN_BYTES = 1 << 20  # no progress bar for downloads smaller than this
PROGRESS_INTERVAL = 0.1  # seconds between redraws
OUTPUT_BUFFER = 256 << 10  # bytes gathered before a write to stdout / the file
FILE_CHUNK = 128 << 10  # bytes h3-serve reads from disk at a time


class CliError(Exception):
    """An expected failure, reported as one line (``prog: message``)."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# -- argument parsing ------------------------------------------------------------


def add_get_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``h3-get`` options (``ghostwire.__main__`` wires the subcommand)."""
    parser.add_argument("url", help="https:// URL to fetch (https:// may be left out)")
    parser.add_argument("-o", "--output", metavar="FILE", help="write the body to FILE")
    trust = parser.add_mutually_exclusive_group()
    trust.add_argument(
        "--cafile", metavar="FILE", help="trust the CA certificate(s) in FILE (PEM)"
    )
    trust.add_argument(
        "-k",
        "--insecure",
        action="store_true",
        help="do not verify the server's certificate (anyone can impersonate it)",
    )
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


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``h3-serve`` options."""
    parser.add_argument("--root", required=True, metavar="DIR", help="folder to serve")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    parser.add_argument(
        "--port", type=_port, default=4433, help="UDP port (default 4433; 0 picks a free one)"
    )
    parser.add_argument(
        "--certfile", metavar="FILE", help="certificate chain (PEM); default: a new self-signed one"
    )
    parser.add_argument(
        "--keyfile", metavar="FILE", help="private key (PEM) for --certfile (default: certfile)"
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="on Ctrl-C, time given to requests in progress (default 5)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no access log on stderr")


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0-65535)")
    return port


# -- h3-get: progress ------------------------------------------------------------


def format_size(count: float) -> str:
    """``512 B``, ``1.5 KiB``, ``20.0 MiB``..."""
    if count < 1024:
        return f"{int(count)} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        count /= 1024
        if count < 1024 or unit == "TiB":
            break
    return f"{count:.1f} {unit}"


def format_progress(received: int, total: int | None, elapsed: float, width: int = 80) -> str:
    """A progress line: percentage, bar, bytes and rate; bytes and rate if the size is unknown."""
    rate = f"{format_size(received / elapsed)}/s" if elapsed > 0 else "--/s"
    if total is None:
        return f"{format_size(received)}  {rate}"
    fraction = min(received / total, 1.0) if total > 0 else 1.0
    counts = f"{format_size(received)} / {format_size(total)}"
    text = f"{fraction * 100:5.1f}% [] {counts}  {rate}"
    bar_width = max(10, min(40, width - 1 - len(text)))
    filled = int(fraction * bar_width)
    bar = "#" * filled + "." * (bar_width - filled)
    return f"{fraction * 100:5.1f}% [{bar}] {counts}  {rate}"


class Progress:
    """A progress line on a terminal, redrawn at most every ``interval`` seconds.

    Draws nothing unless ``enabled``, and nothing for downloads below
    ``min_bytes`` (known size) or until that many bytes arrived (unknown size).
    """

    def __init__(
        self,
        stream: TextIO,
        total: int | None,
        *,
        enabled: bool,
        min_bytes: int = PROGRESS_MIN_BYTES,
        interval: float = PROGRESS_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.total = total
        self.enabled = enabled and (total is None or total >= min_bytes)
        self.min_bytes = min_bytes
        self.interval = interval
        self.clock = clock
        self.started = clock()
        self.received = 0
        self.drawn = False
        self._last_draw = -float("inf")
        self._last_len = 0

    def update(self, nbytes: int) -> None:
        self.received += nbytes
        if not self.enabled or (self.total is None and self.received < self.min_bytes):
            return
        now = self.clock()
        if now - self._last_draw >= self.interval:
            self._last_draw = now
            self._draw(now)

    def finish(self) -> None:
        """Draw the final state and end the line (if anything was drawn)."""
        if self.drawn:
            self._draw(self.clock())
            self.stream.write("\n")
            self.stream.flush()

    def _draw(self, now: float) -> None:
        width = shutil.get_terminal_size((80, 24)).columns
        line = format_progress(self.received, self.total, now - self.started, width)
        self.stream.write("\r" + line.ljust(self._last_len))
        self.stream.flush()
        self._last_len = len(line)
        self.drawn = True


# -- h3-get ----------------------------------------------------------------------


@dataclass
class GetOptions:
    """What ``h3-get`` was asked to do (see :func:`add_get_arguments`)."""

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


def _normalize_url(url: str) -> str:
    if "://" not in url:
        url = "https://" + url
    parts = urlsplit(url)
    if parts.scheme != "https":
        raise CliError(f"HTTP/3 URLs are https:// (got {url!r})", EXIT_USAGE)
    try:
        parts.port  # noqa: B018  # validates the port
    except ValueError as exc:
        raise CliError(f"bad URL {url!r}: {exc}", EXIT_USAGE) from None
    if not parts.hostname:
        raise CliError(f"no host in {url!r}", EXIT_USAGE)
    return url


def _status_line(status: int) -> str:
    try:
        return f"HTTP/3 {status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"HTTP/3 {status}"


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


async def h3_get(
    options: GetOptions,
    *,
    stdout: BinaryIO,
    stderr: TextIO,
    stdin: BinaryIO | None = None,
) -> int:
    """Run ``h3-get``; returns the exit code (failures are reported on ``stderr``)."""
    try:
        return await _h3_get(options, stdout, stderr, stdin)
    except BaseException as exc:
        reason = _describe_get_failure(exc, options)
        if reason is None:
            raise
        message, code = reason
        if message:
            stderr.write(f"h3-get: {message}\n")
            stderr.flush()
        return code


async def _h3_get(
    options: GetOptions, stdout: BinaryIO, stderr: TextIO, stdin: BinaryIO | None
) -> int:
    url = _normalize_url(options.url)
    headers = _parse_headers(options.headers)
    body = _read_data(options.data, stdin) if options.data is not None else None
    if options.head:
        method = "HEAD"
    elif options.method:
        method = options.method.upper()
    else:
        method = "POST" if body is not None else "GET"
    include = options.include or options.head
    if not options.timeout > 0:
        raise CliError("--timeout must be positive", EXIT_USAGE)

    if options.insecure:
        stderr.write(
            "h3-get: warning: --insecure: the server's certificate is NOT verified; "
            "anyone on the path can impersonate it\n"
        )
        stderr.flush()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", InsecureConfigurationWarning)
            config = ClientConfig(alpn=["h3"], verify=False, handshake_timeout=options.timeout)
    else:
        try:
            config = ClientConfig(
                alpn=["h3"], cafile=options.cafile, handshake_timeout=options.timeout
            )
        except (OSError, ValueError) as exc:
            raise CliError(f"cannot load --cafile {options.cafile}: {exc}", EXIT_USAGE) from None

    async with Client(config, timeout=options.timeout) as client:
        response = await client.request(method, url, headers=headers, content=body)
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
            if include:
                head = [status_line, *(f"{n}: {v}" for n, v in response.headers)]
                await out.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
            length = response.header("content-length")
            total = int(length) if length is not None and length.isdigit() else None
            if method == "HEAD":
                total = None
            to_terminal = options.output is None and _isatty(stdout)
            progress = Progress(
                stderr,
                total,
                enabled=not options.silent and _isatty(stderr) and not to_terminal,
            )
            try:
                with trio.CancelScope() as stall:
                    stall.deadline = trio.current_time() + options.timeout
                    async for chunk in response.iter_bytes():
                        stall.deadline = trio.current_time() + options.timeout
                        await out.write(chunk)
                        progress.update(len(chunk))
            finally:
                progress.finish()  # ends the line, so an error message starts on its own
            await out.flush()
            if stall.cancelled_caught:
                raise CliError(f"timed out: no data from the server for {options.timeout:g} s")
        finally:
            if output_file is not None:
                output_file.close()
    if response.status >= 400:
        stderr.write(f"h3-get: {status_line} ({url})\n")
        stderr.flush()
        return EXIT_FAILURE
    return EXIT_OK


_EXPECTED = (
    CliError,
    QuicError,
    HttpError,
    HttpStreamError,
    trio.BrokenResourceError,
    trio.TooSlowError,
    OSError,
)


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, HttpConnectionError) and exc.__cause__ is not None:
        return _leaves(exc.__cause__)  # the QUIC reason says more
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]


def _describe_get_failure(exc: BaseException, options: GetOptions) -> tuple[str, int] | None:
    """A one-line reason and exit code for an expected failure; None otherwise."""
    leaves = _leaves(exc)
    if not all(isinstance(leaf, _EXPECTED) for leaf in leaves):
        return None  # a bug, a cancellation or Ctrl-C: not ours to summarize
    leaf = leaves[0]
    try:
        target = urlsplit(_normalize_url(options.url)).netloc
    except CliError:
        target = options.url
    if isinstance(leaf, OutputClosed):
        return "", leaf.exit_code
    if isinstance(leaf, CliError):
        return _one_line(str(leaf)), leaf.exit_code
    if isinstance(leaf, CertificateError):
        hint = "use --cafile FILE to trust the server's certificate, or --insecure to skip checks"
        return _one_line(f"certificate verification failed for {target}: {leaf} ({hint})"), 1
    if isinstance(leaf, HandshakeTimeout | trio.TooSlowError | RequestTimeout):
        detail = str(leaf) or f"no answer within {options.timeout:g} s"
        return _one_line(f"cannot reach {target}: timed out ({detail})"), 1
    if isinstance(leaf, HandshakeError):
        return _one_line(f"cannot connect to {target}: {leaf}"), 1
    if isinstance(leaf, socket.gaierror):
        return _one_line(f"cannot resolve {target}: {leaf.strerror or leaf}"), 1
    if isinstance(leaf, HttpError):
        return _one_line(str(leaf)), 1
    if isinstance(leaf, QuicError | HttpStreamError | trio.BrokenResourceError):
        return _one_line(f"connection to {target} failed: {leaf}"), 1
    return _one_line(f"{leaf}"), 1


def _one_line(text: str) -> str:
    return " ".join(text.split())


# -- h3-serve: the folder handler ------------------------------------------------


_ENCODING_TYPES = {
    "gzip": "application/gzip",
    "bzip2": "application/x-bzip2",
    "xz": "application/x-xz",
    "compress": "application/x-compress",
    "br": "application/x-brotli",
}


def content_type(path: str) -> str:
    """The content-type to serve ``path`` with."""
    guessed, encoding = mimetypes.guess_type(path, strict=False)
    if encoding:
        return _ENCODING_TYPES.get(encoding, "application/octet-stream")
    if guessed is None:
        return "application/octet-stream"
    if guessed.startswith("text/") or guessed in ("application/javascript", "application/json"):
        return f"{guessed}; charset=utf-8"
    return guessed


class FileBody:
    """A file's content as an async iterable of chunks, read in a worker thread.

    Sends exactly ``size`` bytes (what content-length said) and closes the
    file when done, when it fails, or when abandoned.
    """

    def __init__(self, file: BinaryIO, size: int, chunk_size: int = FILE_CHUNK) -> None:
        self._file = file
        self._remaining = size
        self._chunk_size = chunk_size

    def __aiter__(self) -> FileBody:
        return self

    async def __anext__(self) -> bytes:
        if self._remaining <= 0:
            self.close()
            raise StopAsyncIteration
        try:
            data = await trio.to_thread.run_sync(
                self._file.read, min(self._chunk_size, self._remaining)
            )
        except BaseException:
            self.close()
            raise
        if not data:
            self.close()
            raise OSError(f"{self._file.name}: file shrank while being sent")
        self._remaining -= len(data)
        return data

    def close(self) -> None:
        self._file.close()

    def __del__(self) -> None:
        self._file.close()


@dataclass
class _Reply:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    file: BinaryIO | None = None
    size: int = 0


def _error_reply(status: int, extra: Sequence[tuple[str, str]] = ()) -> _Reply:
    phrase = HTTPStatus(status).phrase
    body = f"{status} {phrase}\n".encode()
    return _Reply(status, [("content-type", "text/plain; charset=utf-8"), *extra], body)


class DirectoryApp:
    """A native HTTP/3 handler serving the files under ``root`` (GET and HEAD).

    * a directory is served as its ``index.html`` or an HTML listing (a URL
      without the trailing slash is redirected to it);
    * files stream from disk in chunks, with content-type, content-length
      and last-modified;
    * a path that leaves ``root`` is 404; a symbolic link that points out of
      it is 403.
    """

    def __init__(self, root: str | os.PathLike[str], *, access_log: TextIO | None = None) -> None:
        self.root = os.path.abspath(root)
        self.real_root = os.path.realpath(self.root)
        if not os.path.isdir(self.real_root):
            raise NotADirectoryError(f"{root} is not a directory")
        self.access_log = access_log

    async def __call__(self, request: Request) -> Response:
        reply = await self._reply(request)
        headers = list(reply.headers)
        size = reply.size if reply.file is not None else len(reply.body)
        headers.append(("content-length", str(size)))
        content: bytes | FileBody = reply.body
        if request.method == "HEAD":
            content = b""
            if reply.file is not None:
                reply.file.close()
        elif reply.file is not None:
            content = FileBody(reply.file, reply.size)
        if self.access_log is not None:
            client = f"{request.client[0]}:{request.client[1]}" if request.client else "-"
            path = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in request.path)
            self.access_log.write(f"{client} {request.method} {path} {reply.status} {size}\n")
            self.access_log.flush()
        return Response(reply.status, headers, content)

    async def _reply(self, request: Request) -> _Reply:
        if request.method not in ("GET", "HEAD"):
            return _error_reply(405, [("allow", "GET, HEAD")])
        target = request.path
        if not target.startswith("/"):
            return _error_reply(400)
        path, _, query = target.partition("?")
        path = path.partition("#")[0]
        try:
            decoded = unquote(path, errors="strict")
        except UnicodeDecodeError:
            return _error_reply(404)
        if "\x00" in decoded:
            return _error_reply(404)
        return await trio.to_thread.run_sync(self._lookup, path, decoded, query)

    # Everything below runs in a worker thread: it touches the disk.

    def _locate(self, decoded: str) -> str | int:
        """The real path for a decoded URL path, or an error status."""
        parts = [part for part in decoded.split("/") if part not in ("", ".")]
        for part in parts:
            if os.sep in part or (os.altsep and os.altsep in part):
                return 404
        candidate = os.path.normpath(os.path.join(self.root, *parts))
        if not _inside(candidate, self.root):
            return 404
        real = os.path.realpath(candidate)
        if not _inside(real, self.real_root):
            return 403  # a symbolic link out of the root
        return real

    def _lookup(self, path: str, decoded: str, query: str) -> _Reply:
        located = self._locate(decoded)
        if isinstance(located, int):
            return _error_reply(located)
        try:
            info = os.stat(located)
        except (FileNotFoundError, NotADirectoryError):
            return _error_reply(404)
        except OSError:
            return _error_reply(403)
        if stat.S_ISDIR(info.st_mode):
            if not path.endswith("/"):
                location = path + "/" + (f"?{query}" if query else "")
                return _error_reply(301, [("location", location)])
            index = self._locate(posixpath.join(decoded, "index.html"))
            if isinstance(index, str) and os.path.isfile(index):
                return self._file(index)
            return self._listing(located, decoded)
        if stat.S_ISREG(info.st_mode):
            return self._file(located)
        return _error_reply(403)  # devices, sockets, FIFOs

    def _file(self, path: str) -> _Reply:
        try:
            file = open(path, "rb")  # noqa: SIM115  # closed by FileBody or the caller
        except FileNotFoundError:
            return _error_reply(404)
        except OSError:
            return _error_reply(403)
        try:
            info = os.fstat(file.fileno())
        except OSError:
            file.close()
            return _error_reply(403)
        headers = [
            ("content-type", content_type(path)),
            ("last-modified", email.utils.formatdate(info.st_mtime, usegmt=True)),
        ]
        return _Reply(200, headers, file=file, size=info.st_size)

    def _listing(self, directory: str, decoded: str) -> _Reply:
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:
            return _error_reply(403)
        title = html.escape(f"Index of {decoded}")
        lines = [
            "<!DOCTYPE html>",
            '<html><head><meta charset="utf-8">',
            f"<title>{title}</title></head>",
            f"<body><h1>{title}</h1><ul>",
        ]
        if decoded.strip("/"):
            lines.append('<li><a href="../">../</a></li>')
        for entry in entries:
            try:
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False
            name = entry.name + ("/" if is_dir else "")
            href = quote(name, errors="surrogateescape")
            lines.append(f'<li><a href="{href}">{html.escape(name)}</a></li>')
        lines.append("</ul></body></html>")
        body = ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape")
        return _Reply(200, [("content-type", "text/html; charset=utf-8")], body)


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


# -- h3-serve --------------------------------------------------------------------


@dataclass
class ServeOptions:
    """What ``h3-serve`` was asked to do (see :func:`add_serve_arguments`)."""

    root: str
    host: str = "127.0.0.1"
    port: int = 4433
    certfile: str | None = None
    keyfile: str | None = None
    grace: float = 5.0
    quiet: bool = False

    @classmethod
    def from_namespace(cls, args: argparse.Namespace) -> ServeOptions:
        return cls(
            root=args.root,
            host=args.host,
            port=args.port,
            certfile=args.certfile,
            keyfile=args.keyfile,
            grace=args.grace,
            quiet=args.quiet,
        )


@dataclass
class ServeInfo:
    """What :func:`h3_serve` reports once it listens."""

    server: QuicServer
    url: str
    certificate: IssuedCertificate
    self_signed: bool
    cert_path: str | None
    """The self-signed certificate as PEM, to pass to ``h3-get --cafile``."""


_UNSPECIFIED = ("", "0.0.0.0", "::")


def certificate_names(host: str) -> list[str]:
    """The names a self-signed certificate for ``h3-serve --host host`` covers."""
    names = ["localhost", "127.0.0.1", "::1"]
    if host not in _UNSPECIFIED and host not in names:
        names.append(host)
    return names


def url_host(host: str) -> str:
    """How ``host`` appears in a URL (a wildcard address becomes loopback)."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _load_identity(options: ServeOptions) -> tuple[ServerConfig, IssuedCertificate, bool]:
    if options.certfile is None:
        if options.keyfile is not None:
            raise CliError("--keyfile needs --certfile", EXIT_USAGE)
        identity = self_signed_certificate(certificate_names(options.host))
        config = ServerConfig(
            alpn=["h3"], certificate_chain=identity.chain, private_key=identity.private_key
        )
        return config, identity, True
    try:
        config = ServerConfig(alpn=["h3"], certfile=options.certfile, keyfile=options.keyfile)
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot load the certificate: {exc}", EXIT_USAGE) from None
    identity = IssuedCertificate(
        config.certificate_chain[0], config.private_key, list(config.certificate_chain)
    )
    return config, identity, False


def banner(info: ServeInfo, root: str) -> list[str]:
    """What ``h3-serve`` prints once it listens."""
    host_port = urlsplit(info.url).netloc
    spki = info.certificate.spki_sha256_base64()
    lines = [f"Serving {root} over HTTP/3 at {info.url}"]
    if info.self_signed:
        names = ", ".join(certificate_names_of(info.certificate))
        lines.append(f"  self-signed certificate for {names}")
    else:
        lines.append(f"  certificate: {info.certificate.certificate.subject.rfc4514_string()}")
    lines += [
        f"  SHA-256 fingerprint: {info.certificate.sha256_fingerprint()}",
        f"  SPKI SHA-256 (base64): {spki}",
    ]
    if info.cert_path is not None:
        lines.append(f"  trust it: ghostwire h3-get --cafile {info.cert_path} {info.url}")
    if info.self_signed:
        lines.append(
            "  Chrome: --origin-to-force-quic-on="
            f"{host_port} --ignore-certificate-errors-spki-list={spki}"
        )
    lines.append("Press Ctrl-C to stop.")
    return lines


def certificate_names_of(identity: IssuedCertificate) -> list[str]:
    from cryptography import x509

    try:
        san = identity.certificate.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value
    except x509.ExtensionNotFound:
        return []
    names: list[str] = [str(n) for n in san.get_values_for_type(x509.DNSName)]
    names += [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    return names


async def h3_serve(
    options: ServeOptions,
    *,
    stdout: TextIO,
    stderr: TextIO,
    task_status: trio.TaskStatus[ServeInfo] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve ``options.root`` over HTTP/3 until cancelled; reports a :class:`ServeInfo`.

    When cancelled, connections get GOAWAY and ``options.grace`` seconds to
    finish the requests in progress.
    """
    try:
        app = DirectoryApp(options.root, access_log=None if options.quiet else stderr)
    except OSError:
        raise CliError(f"--root {options.root}: not a directory", EXIT_USAGE) from None
    config, identity, self_signed = _load_identity(options)
    with tempfile.TemporaryDirectory(prefix="ghostwire-h3-serve-") as tmp:
        cert_path: str | None = None
        if self_signed:
            cert_path = os.path.join(tmp, "cert.pem")
            await trio.Path(cert_path).write_bytes(identity.cert_pem())
        async with trio.open_nursery() as nursery:
            try:
                server: QuicServer = await nursery.start(
                    _serve_app, app, options.host, options.port, config, options.grace
                )
            except OSError as exc:
                where = f"{options.host}:{options.port}"
                raise CliError(f"cannot listen on {where}: {exc.strerror or exc}") from None
            url = f"https://{url_host(options.host)}:{server.port}/"
            info = ServeInfo(server, url, identity, self_signed, cert_path)
            stdout.write("\n".join(banner(info, app.root)) + "\n")
            stdout.flush()
            task_status.started(info)
            await trio.sleep_forever()
    raise AssertionError("unreachable")  # pragma: no cover


async def _serve_app(
    app: DirectoryApp,
    host: str,
    port: int,
    config: ServerConfig,
    grace: float,
    *,
    task_status: trio.TaskStatus[QuicServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    await serve(
        app, port, config, host=host, shutdown_timeout=grace, task_status=task_status
    )


# -- entry points ----------------------------------------------------------------


def _has_keyboard_interrupt(exc: BaseException) -> bool:
    return any(isinstance(leaf, KeyboardInterrupt) for leaf in _leaves(exc))


def run_get(args: argparse.Namespace) -> int:
    """``ghostwire h3-get``: the exit code."""
    options = GetOptions.from_namespace(args)
    try:
        code = trio.run(
            functools.partial(h3_get, options, stdout=sys.stdout.buffer, stderr=sys.stderr)
        )
    except BaseException as exc:
        if _has_keyboard_interrupt(exc):
            sys.stderr.write("\nh3-get: interrupted\n")
            return EXIT_INTERRUPTED
        raise
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
    return code


def _silence_stdout() -> None:
    # The reader went away (``h3-get URL | head``): don't complain at exit.
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


async def _serve_until_signal(options: ServeOptions) -> int:
    signals = [signal.SIGINT]
    if hasattr(signal, "SIGTERM"):
        signals.append(signal.SIGTERM)
    async with trio.open_nursery() as nursery:
        with trio.open_signal_receiver(*signals) as received:
            await nursery.start(
                functools.partial(h3_serve, options, stdout=sys.stdout, stderr=sys.stderr)
            )
            async for _ in received:
                break
        sys.stderr.write(
            f"Shutting down (up to {options.grace:g} s for requests in progress)...\n"
        )
        sys.stderr.flush()
        nursery.cancel_scope.cancel()
    sys.stderr.write("Stopped.\n")
    return EXIT_OK


def run_serve(args: argparse.Namespace) -> int:
    """``ghostwire h3-serve``: serves until Ctrl-C (or SIGTERM), then exits 0."""
    options = ServeOptions.from_namespace(args)
    try:
        return trio.run(_serve_until_signal, options)
    except BaseException as exc:
        if _has_keyboard_interrupt(exc):
            sys.stderr.write("Stopped.\n")
            return EXIT_INTERRUPTED
        leaves = _leaves(exc)
        if len(leaves) == 1 and isinstance(leaves[0], CliError):
            sys.stderr.write(f"h3-serve: {leaves[0]}\n")
            return leaves[0].exit_code
        raise
