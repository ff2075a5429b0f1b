"""An HTTP/3 file server: the files under a folder, streamed, over QUIC.

    python examples/h3_file_server.py --root ./public
    python -m ghostwire h3-get --cafile CA.pem https://127.0.0.1:4433/notes.txt

GET sends a file (its type guessed from its name, its length in
``content-length``), in chunks read as the client takes them: QUIC flow
control paces the disk, so a large file never sits in memory. HEAD sends
the headers alone. A folder answers with its ``index.html`` or, failing
that, a plain list of its entries. Nothing outside ``--root`` is reachable
(``..`` and symlinks that lead out get 404). Each response is logged, with
the bytes that really went out.

This is the small native-handler form of ``ghostwire h3-serve`` (the CLI's
version adds HTML listings, access logs and a progress bar client).

Without ``--certfile``/``--keyfile`` it makes a throwaway CA and server
certificate and writes the CA to ``--write-ca FILE`` if given, else into a
temporary folder removed when the server stops. Ctrl-C (or SIGTERM) stops
it gracefully: downloads in progress get ``--grace`` seconds to finish.
"""

from __future__ import annotations

import argparse
import mimetypes
import os
import signal
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from pathlib import Path
from urllib.parse import unquote, urlsplit

import trio

import ghostwire.http3 as http3
import ghostwire.quic as quic
from ghostwire.certs import CertificateAuthority

CHUNK = 64 * 1024


async def resolve(root: Path, url_path: str) -> Path | None:
    """The file or folder ``url_path`` names under ``root``; None if outside it."""
    relative = unquote(urlsplit(url_path).path).lstrip("/")
    target = Path(await trio.Path(root / relative).resolve())  # symlinks followed
    return target if target == root or root in target.parents else None


async def file_chunks(path: Path) -> AsyncIterator[bytes]:
    async with await trio.open_file(path, "rb") as file:
        while chunk := await file.read(CHUNK):
            yield chunk


def text(status: int, body: str) -> http3.Response:
    return http3.Response(status, [("content-type", "text/plain; charset=utf-8")], body)


def entry_names(folder: Path) -> list[str]:
    with os.scandir(folder) as entries:
        return sorted(entry.name + ("/" if entry.is_dir() else "") for entry in entries)


async def listing(folder: Path, method: str) -> http3.Response:
    index = folder / "index.html"
    if await trio.Path(index).is_file():
        return await send_file(index, method)
    names = await trio.to_thread.run_sync(entry_names, folder)
    return text(200, "".join(f"{name}\n" for name in names))


async def send_file(path: Path, method: str) -> http3.Response:
    size = (await trio.Path(path).stat()).st_size
    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    headers = [("content-type", kind), ("content-length", str(size))]
    if method == "HEAD":
        return http3.Response(200, headers, b"")
    return http3.Response(200, headers, file_chunks(path))


def make_handler(root: Path) -> Callable[[http3.Request], Awaitable[http3.Response]]:
    async def handler(request: http3.Request) -> http3.Response:
        if request.method not in ("GET", "HEAD"):
            return http3.Response(405, [("allow", "GET, HEAD")], b"")
        target = await resolve(root, request.path)
        if target is None or not await trio.Path(target).exists():
            response = text(404, "not found\n")
        elif await trio.Path(target).is_dir():
            response = await listing(target, request.method)
        else:
            response = await send_file(target, request.method)

        def log(end: http3.ResponseEnd) -> None:
            state = "" if end.complete else " (cut short)"
            line = f"{request.method} {request.path} {response.status} {end.body_bytes}"
            print(line + state, flush=True)

        response.on_end = log
        return response

    return handler


def make_config(args: argparse.Namespace, ca_path: Path) -> quic.ServerConfig:
    if args.certfile:
        return quic.ServerConfig(alpn=["h3"], certfile=args.certfile, keyfile=args.keyfile)
    ca = CertificateAuthority.create("ghostwire file server example CA")
    ca.write_pem(ca_path)
    identity = ca.issue(["localhost", "127.0.0.1"])
    print(f"no certificate given: made one; its CA is in {ca_path}", flush=True)
    return quic.ServerConfig(
        alpn=["h3"], certificate_chain=identity.chain, private_key=identity.private_key
    )


async def main(args: argparse.Namespace, ca_path: Path) -> None:
    root = Path(await trio.Path(args.root).resolve())
    config = make_config(args, ca_path)
    serve = partial(
        http3.serve,
        make_handler(root),
        args.port,
        config,
        host=args.host,
        shutdown_timeout=args.grace,
    )
    async with trio.open_nursery() as nursery:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            server = await nursery.start(serve)
            print(f"serving {root} on https://{args.host}:{server.port}/", flush=True)
            if not args.certfile:
                print(
                    f"try: python -m ghostwire h3-get --cafile {ca_path}"
                    f" https://{args.host}:{server.port}/",
                    flush=True,
                )
            async for _ in signals:  # Ctrl-C or SIGTERM: stop gracefully
                break
            nursery.cancel_scope.cancel()  # serve() sends GOAWAY and drains first
    print("stopped", flush=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=".", help="the folder to serve (default: here)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4433)
    parser.add_argument("--certfile")
    parser.add_argument("--keyfile")
    parser.add_argument("--write-ca", metavar="FILE", help="where to write the throwaway CA")
    parser.add_argument("--grace", type=float, default=5.0, help="seconds for downloads to end")
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.write_ca:
        trio.run(main, arguments, Path(arguments.write_ca))
    else:
        with tempfile.TemporaryDirectory(prefix="ghostwire-files-") as folder:
            trio.run(main, arguments, Path(folder) / "ca.pem")
