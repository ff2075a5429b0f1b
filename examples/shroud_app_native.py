"""The service of ``shroud_app.py``, written against ghostwire itself (HTTP/3 on trio).

    python examples/shroud_app_native.py --port 8443
    python -m ghostwire h3-get --cafile CA.pem https://127.0.0.1:8443/users/1?fields=name

Side by side with the ported program: a route is an ``async def`` taking a
:class:`ghostwire.http3.Request` and returning a
:class:`ghostwire.http3.Response`; ``:id`` parameters become a regular
expression's groups; a middleware is a function that wraps the next handler
(what Shroud's ``next`` stood for); the server is ``ghostwire.http3.serve`` in a
trio nursery, stopped by cancelling it. There is no HTTP/1.1 side here:
ghostwire serves HTTP/1.1 only through the shim (``ghostwire.shroud``), for
clients not yet on QUIC.

Without ``--certfile``/``--keyfile`` it makes a throwaway CA and certificate,
writing the CA to ``--write-ca FILE`` if given, else into a temporary folder
removed when it stops. Ctrl-C (or SIGTERM) stops it gracefully.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import tempfile
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import trio

import ghostwire.http3 as http3
import ghostwire.quic as quic
from ghostwire.certs import CertificateAuthority

USERS: dict[str, dict[str, Any]] = {
    "1": {"id": "1", "name": "Ada", "email": "ada@example.test"},
    "2": {"id": "2", "name": "Grace", "email": "grace@example.test"},
}
ADMIN_TOKEN = "Bearer let-me-in"
SECURITY_HEADERS = [  # what the shim adds by default (enable_security_headers)
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
]

Handler = Callable[[http3.Request], Awaitable[http3.Response]]
Route = Callable[..., Awaitable[http3.Response]]


def json_response(value: Any, status: int = 200, **headers: str) -> http3.Response:
    body = json.dumps(value, separators=(",", ":")).encode()
    fields = [("content-type", "application/json; charset=utf-8"), *headers.items()]
    return http3.Response(status, fields, body)


def query(request: http3.Request, name: str) -> str | None:
    values = parse_qs(urlsplit(request.path).query).get(name)
    return values[0] if values else None


# -- routes ----------------------------------------------------------------------------


async def hello(request: http3.Request) -> http3.Response:
    return json_response({"message": "Hello from a native ghostwire program", "protocol": "http3"})


async def get_user(request: http3.Request, user_id: str) -> http3.Response:
    user = USERS.get(user_id)
    if user is None:
        return json_response({"error": "no such user"}, 404)
    fields = query(request, "fields")
    if fields:
        user = {name: user[name] for name in fields.split(",") if name in user}
    return json_response(user)


async def create_user(request: http3.Request) -> http3.Response:
    if "application/json" not in (request.header("content-type") or "").lower():
        return json_response({"error": "send application/json"}, 415)
    try:
        body = json.loads(await request.read())
    except ValueError:
        return json_response({"error": "invalid JSON"}, 400)
    user_id = str(len(USERS) + 1)
    USERS[user_id] = {"id": user_id, "name": body.get("name"), "email": body.get("email")}
    return json_response(USERS[user_id], 201, location=f"/users/{user_id}")


class Stats:
    requests_handled = 0


async def admin_stats(request: http3.Request) -> http3.Response:
    return json_response({"users": len(USERS), "requests_handled": Stats.requests_handled})


ROUTES: list[tuple[str, re.Pattern[str], Route]] = [
    ("GET", re.compile(r"/"), hello),
    ("GET", re.compile(r"/users/(?P<user_id>[^/]+)"), get_user),
    ("POST", re.compile(r"/users"), create_user),
    ("GET", re.compile(r"/admin/stats"), admin_stats),
]


async def route(request: http3.Request) -> http3.Response:
    path = urlsplit(request.path).path
    allowed = []
    for method, pattern, function in ROUTES:
        match = pattern.fullmatch(path)
        if match and method == request.method:
            return await function(request, **match.groupdict())
        if match:
            allowed.append(method)
    if allowed:
        return http3.Response(405, [("allow", ", ".join(allowed))], "405 - Method Not Allowed")
    return http3.Response(404, [("content-type", "text/plain; charset=utf-8")], "404 - Not Found")


# -- middleware: a function around the next handler ------------------------------------


def require_token(next_handler: Handler) -> Handler:
    async def handler(request: http3.Request) -> http3.Response:
        path = urlsplit(request.path).path
        if path.startswith("/admin/") and request.header("authorization") != ADMIN_TOKEN:
            return json_response({"error": "unauthorized"}, 401)
        return await next_handler(request)

    return handler


def response_time(next_handler: Handler) -> Handler:
    async def handler(request: http3.Request) -> http3.Response:
        started = time.perf_counter()
        response = await next_handler(request)
        elapsed = (time.perf_counter() - started) * 1000
        response.headers += [("x-response-time", f"{elapsed:.2f}ms"), *SECURITY_HEADERS]
        Stats.requests_handled += 1
        return response

    return handler


app: Handler = response_time(require_token(route))


def make_config(args: argparse.Namespace, ca_path: Path) -> quic.ServerConfig:
    if args.certfile:
        return quic.ServerConfig(alpn=["h3"], certfile=args.certfile, keyfile=args.keyfile)
    ca = CertificateAuthority.create("ghostwire native example CA")
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
            print(f"HTTP/3 on https://{args.host}:{server.port}/", flush=True)
            if not args.certfile:
                url = f"https://{args.host}:{server.port}/users/1?fields=name"
                print(f"try: python -m ghostwire h3-get --cafile {ca_path} '{url}'", flush=True)
            async for _ in signals:  # Ctrl-C or SIGTERM: stop gracefully
                break
            nursery.cancel_scope.cancel()  # serve() sends GOAWAY and drains first
    print("stopped", flush=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8443, help="HTTP/3 (UDP)")
    parser.add_argument("--certfile")
    parser.add_argument("--keyfile")
    parser.add_argument("--write-ca", metavar="FILE", help="where to write the throwaway CA")
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.write_ca:
        trio.run(main, arguments, Path(arguments.write_ca))
    else:
        with tempfile.TemporaryDirectory(prefix="ghostwire-native-") as folder:
            trio.run(main, arguments, Path(folder) / "ca.pem")
