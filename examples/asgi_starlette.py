"""A Starlette application served over HTTP/3 by ghostwire, on trio.

    pip install starlette
    python examples/asgi_starlette.py
    python -m ghostwire h3-get --cafile CA.pem https://127.0.0.1:4433/items/7?detail=1

``ghostwire.http3.serve`` takes any ASGI 3 application (it tells one from a
native ``handler(request)`` by its three parameters): the request body and the
response body both stream, and Starlette's anyio runs on trio. The app here
has a JSON route with a path parameter and a query, a POST that reads a JSON
body, and a streamed response (``/count/{n}``: one line per chunk, each sent
as it is made). Nothing here is specific to HTTP/3 except ``serve``: the same
app runs under any ASGI server.

Without ``--certfile``/``--keyfile`` it makes a throwaway CA and server
certificate and writes the CA to ``--write-ca FILE`` if given, else into a
temporary folder removed when the server stops. Ctrl-C (or SIGTERM) stops it
gracefully.
"""

from __future__ import annotations

import argparse
import signal
import tempfile
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import trio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

import ghostwire.http3 as http3
import ghostwire.quic as quic
from ghostwire.certs import CertificateAuthority

ITEMS: dict[int, dict[str, object]] = {7: {"id": 7, "name": "lamp", "price": 12}}


async def home(request: Request) -> Response:
    scope = request.scope
    return JSONResponse({"hello": "from Starlette", "http_version": scope["http_version"]})


async def get_item(request: Request) -> Response:
    item = ITEMS.get(request.path_params["item_id"])
    if item is None:
        return JSONResponse({"error": "no such item"}, status_code=404)
    if request.query_params.get("detail") == "1":
        return JSONResponse({**item, "client": list(request.client or ())})
    return JSONResponse({"id": item["id"], "name": item["name"]})


async def add_item(request: Request) -> Response:
    body = await request.json()
    item_id = max(ITEMS) + 1
    ITEMS[item_id] = {"id": item_id, **body}
    return JSONResponse(ITEMS[item_id], status_code=201, headers={"location": f"/items/{item_id}"})


async def count(request: Request) -> Response:
    n = min(request.path_params["n"], 1000)

    async def lines() -> AsyncIterator[str]:
        for i in range(1, n + 1):
            yield f"{i}\n"
            await trio.lowlevel.checkpoint()

    return StreamingResponse(lines(), media_type="text/plain")


async def health(request: Request) -> Response:
    return PlainTextResponse("ok\n")


app = Starlette(
    routes=[
        Route("/", home),
        Route("/items/{item_id:int}", get_item),
        Route("/items", add_item, methods=["POST"]),
        Route("/count/{n:int}", count),
        Route("/health", health),
    ]
)


def make_config(args: argparse.Namespace, ca_path: Path) -> quic.ServerConfig:
    if args.certfile:
        return quic.ServerConfig(alpn=["h3"], certfile=args.certfile, keyfile=args.keyfile)
    ca = CertificateAuthority.create("ghostwire ASGI example CA")
    ca.write_pem(ca_path)
    identity = ca.issue(["localhost", "127.0.0.1"])
    print(f"no certificate given: made one; its CA is in {ca_path}", flush=True)
    return quic.ServerConfig(
        alpn=["h3"], certificate_chain=identity.chain, private_key=identity.private_key
    )


async def main(args: argparse.Namespace, ca_path: Path) -> None:
    config = make_config(args, ca_path)
    async with trio.open_nursery() as nursery:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            serve = partial(http3.serve, app, args.port, config, host=args.host)
            server = await nursery.start(serve)
            print(f"Starlette app on https://{args.host}:{server.port}/", flush=True)
            if not args.certfile:
                print(
                    f"try: python -m ghostwire h3-get --cafile {ca_path}"
                    f" https://{args.host}:{server.port}/items/7",
                    flush=True,
                )
            async for _ in signals:  # Ctrl-C or SIGTERM: stop gracefully
                break
            nursery.cancel_scope.cancel()  # serve() sends GOAWAY and drains first
    print("stopped", flush=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4433)
    parser.add_argument("--certfile")
    parser.add_argument("--keyfile")
    parser.add_argument("--write-ca", metavar="FILE", help="where to write the throwaway CA")
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.write_ca:
        trio.run(main, arguments, Path(arguments.write_ca))
    else:
        with tempfile.TemporaryDirectory(prefix="ghostwire-asgi-") as folder:
            trio.run(main, arguments, Path(folder) / "ca.pem")
