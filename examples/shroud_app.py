"""A Shroud GhostWire program ported to ghostwire with the shim: only its import changed.

    pip install 'ghostwire[shroud]'
    python examples/shroud_app.py --port 8080
    curl http://127.0.0.1:8080/users/1?fields=name
    python -m ghostwire h3-get --cafile CA.pem https://127.0.0.1:8443/users/1

The routes, handlers and middleware below are written as a Shroud GhostWire
program writes them (``getParam``, ``getQuery``, ``jsonObject``, ``setStatus``,
middleware calling ``next()`` or ``next(req, res)``, a blocking
``server.start()``), with ``import ghostwire.shroud as ghostwire`` where the
program had Shroud's ``ghostwire``. The shim serves them for real: over
HTTP/1.1 on ``--port`` (TCP) for clients not on QUIC yet, whose responses
advertise HTTP/3 with ``Alt-Svc``, and over HTTP/3 on ``--http3-port`` (UDP).
``shroud_app_native.py`` is the same service written against ghostwire itself.

HTTP/3 needs a certificate: without ``--certfile``/``--keyfile`` the program
makes a throwaway CA and certificate in a temporary folder (removed when it
stops) and prints the CA's path. Ctrl-C stops it gracefully.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import ghostwire.shroud as ghostwire  # was: const ghostwire = @import("shroud").ghostwire;
from ghostwire.certs import CertificateAuthority

USERS: dict[str, dict[str, Any]] = {
    "1": {"id": "1", "name": "Ada", "email": "ada@example.test"},
    "2": {"id": "2", "name": "Grace", "email": "grace@example.test"},
}
ADMIN_TOKEN = "Bearer let-me-in"


# -- handlers: fn(req, res) ------------------------------------------------------------


def hello(req: ghostwire.UnifiedRequest, res: ghostwire.UnifiedResponse) -> None:
    res.jsonObject({"message": "Hello from a ported Shroud program", "protocol": req.version.value})


def get_user(req: ghostwire.UnifiedRequest, res: ghostwire.UnifiedResponse) -> None:
    user = USERS.get(req.getParam("id") or "")
    if user is None:
        res.setStatus(404)
        res.jsonObject({"error": "no such user"})
        return
    fields = req.getQuery("fields")  # ?fields=name,email
    if fields:
        user = {name: user[name] for name in fields.split(",") if name in user}
    res.jsonObject(user)


def create_user(req: ghostwire.UnifiedRequest, res: ghostwire.UnifiedResponse) -> None:
    if not req.isJson():
        res.setStatus(415)
        res.jsonObject({"error": "send application/json"})
        return
    body = req.parseJson()  # a bad body is answered 400 by the shim
    user_id = str(len(USERS) + 1)
    USERS[user_id] = {"id": user_id, "name": body.get("name"), "email": body.get("email")}
    res.setStatus(201)
    res.setHeader("Location", f"/users/{user_id}")
    res.jsonObject(USERS[user_id])


def admin_stats(req: ghostwire.UnifiedRequest, res: ghostwire.UnifiedResponse) -> None:
    stats = server.getStats()
    res.jsonObject({"users": len(USERS), "requests_handled": stats.requests_handled})


# -- middleware: fn(req, res, next) ----------------------------------------------------


def require_token(req: ghostwire.UnifiedRequest, res: ghostwire.UnifiedResponse, next: Any) -> None:
    """The code's form: ``next()`` with no arguments; not calling it ends the request."""
    if req.path.startswith("/admin/") and req.getHeader("Authorization") != ADMIN_TOKEN:
        res.setStatus(401)
        res.jsonObject({"error": "unauthorized"})
        return
    next()


async def response_time(
    req: ghostwire.UnifiedRequest, res: ghostwire.UnifiedResponse, next: Any
) -> None:
    """The documented form: ``await next(req, res)`` runs the rest, then we see the response."""
    started = time.perf_counter()
    await next(req, res)
    res.setHeader("X-Response-Time", f"{(time.perf_counter() - started) * 1000:.2f}ms")


# -- the program -----------------------------------------------------------------------

server: ghostwire.UnifiedServer


def build(config: ghostwire.UnifiedServerConfig) -> ghostwire.UnifiedServer:
    app = ghostwire.createUnifiedServer(config)
    app.use(response_time)
    app.use(require_token)
    app.get("/", hello)
    app.get("/users/:id", get_user)
    app.post("/users", create_user)
    app.get("/admin/stats", admin_stats)
    return app


def announce(app: ghostwire.UnifiedServer, ca_path: Path | None) -> None:
    """Print where it listens, once it does (``start()`` blocks the main thread)."""
    if not app.waitUntilReady(timeout=30):
        return
    assert app.http1_address is not None and app.http3_address is not None
    host, tcp_port = app.http1_address
    print(f"HTTP/1.1 on http://{host}:{tcp_port}/", flush=True)
    print(f"HTTP/3 on https://{host}:{app.http3_address[1]}/", flush=True)
    if ca_path is not None:
        print(f"its CA is in {ca_path}", flush=True)
        h3_url = f"https://{host}:{app.http3_address[1]}/users/1"
        print(f"try: curl http://{host}:{tcp_port}/users/1?fields=name", flush=True)
        print(f"try: python -m ghostwire h3-get --cafile {ca_path} {h3_url}", flush=True)


def throwaway_certificate(folder: Path) -> tuple[str, str, Path]:
    ca = CertificateAuthority.create("ghostwire shroud example CA")
    ca.write_pem(folder / "ca.pem")
    ca.issue(["localhost", "127.0.0.1"]).write_pem(folder / "cert.pem", folder / "key.pem")
    return str(folder / "cert.pem"), str(folder / "key.pem"), folder / "ca.pem"


def run(args: argparse.Namespace, folder: Path | None) -> None:
    global server
    ca_path = None
    cert, key = args.certfile, args.keyfile or args.certfile
    if folder is not None:
        cert, key, ca_path = throwaway_certificate(folder)
    config = ghostwire.UnifiedServerConfig(  # the documented names, as ZVM-era code has them
        bind_address=args.host,
        http1_port=args.port,
        http3_port=args.http3_port,
        enable_http3=True,
        cert_path=cert,
        key_path=key,
    )
    server = build(config)
    threading.Thread(target=announce, args=(server, ca_path), daemon=True).start()
    server.start()  # blocks until Ctrl-C (or server.stop())
    print("stopped", flush=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="HTTP/1.1 (TCP)")
    parser.add_argument("--http3-port", type=int, default=8443, help="HTTP/3 (UDP)")
    parser.add_argument("--certfile")
    parser.add_argument("--keyfile")
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.certfile:
        run(arguments, None)
    else:
        with tempfile.TemporaryDirectory(prefix="ghostwire-shroud-") as certificates:
            run(arguments, Path(certificates))
