"""The folder ``h3-serve`` serves: a native HTTP/3 handler for GET and HEAD."""

from __future__ import annotations

import email.utils
import functools
import html
import mimetypes
import os
import posixpath
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import BinaryIO, TextIO
from urllib.parse import quote, unquote

import trio

from ..http3.net.server import Request, Response, ResponseEnd

FILE_CHUNK = 128 << 10  # bytes h3-serve reads from disk at a time


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

    async def aclose(self) -> None:
        """Called by the server once the response ended, finished or not."""
        self.close()
        await trio.lowlevel.checkpoint()

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
        on_end = None
        if self.access_log is not None:
            on_end = functools.partial(self._log, request, reply.status)
        return Response(reply.status, headers, content, on_end=on_end)

    def _log(self, request: Request, status: int, end: ResponseEnd) -> None:
        """The access log line, once the response ended: the body bytes really sent."""
        assert self.access_log is not None
        client = f"{request.client[0]}:{request.client[1]}" if request.client else "-"
        path = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in request.path)
        outcome = "" if end.complete else " incomplete"
        line = f"{client} {request.method} {path} {status} {end.body_bytes}{outcome}\n"
        self.access_log.write(line)
        self.access_log.flush()

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
