"""A Shroud-style program served by the shim, checked with independent clients.

The program (:func:`shroud_program`) is written as a GhostWire user would
write it, against ``ghostwire`` imported from the shim: routes with ``:name``
parameters and query strings, middleware in both of the original's ``next``
forms (the code's ``next()`` in a plain function, the documented
``next(req, res)`` in an ``async def``), JSON responses and a WebSocket event
stream. It is served over

* HTTP/1.1 (plaintext and TLS), checked with httpx, which also sees the
  ``Alt-Svc`` advertisement of HTTP/3;
* HTTP/3, checked with aioquic's HTTP/3 client (tests/aioquic_h3_peer.py);
* WebSocket, checked with wsproto's client-side handshake and framing;

and also run the way a script without trio runs it, ``server.start()``
blocking in a thread, stopped by the test. Everything is on loopback and
bounded by ``trio.fail_after`` (or thread joins with timeouts).
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio.testing
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    RejectConnection,
    Request,
    TextMessage,
)

import ghostwire.shroud as ghostwire  # the one line a ported program changes
from ghostwire.certs import CertificateAuthority
from ghostwire.shroud import listeners

HOST = "127.0.0.1"
TIMEOUT = 30


# -- the Shroud-style program ---------------------------------------------------------------


def shroud_program(config: ghostwire.UnifiedServerConfig) -> ghostwire.UnifiedServer:
    server = ghostwire.createUnifiedServer(None, config)  # (allocator, config) as in Zig

    def timing(req: Any, res: Any, next: Any) -> None:  # the code's MiddlewareFn
        next()
        res.setHeader("X-Handled-Status", str(res.status))

    async def auth(req: Any, res: Any, next: Any) -> None:  # the documented MiddlewareFn
        if req.path.startswith("/admin") and req.getHeader("Authorization") != "Bearer s3cret":
            res.setStatus(401)
            res.jsonObject({"error": "unauthorized"})
            return
        await next(req, res)

    def get_user(req: Any, res: Any) -> None:
        res.jsonObject(
            {
                "id": req.getParam("id"),
                "fields": req.getQuery("fields"),
                "protocol": req.protocol.value,
            }
        )

    async def create_order(req: Any, res: Any) -> None:
        if not req.isJson():
            res.setStatus(415)
            res.text("JSON please")
            return
        order = req.parseJson()
        res.setStatus(201)
        res.jsonObject({"order": order, "items": len(order.get("items", []))})

    def admin(req: Any, res: Any) -> None:
        res.html("<h1>admin</h1>")

    def rpc(req: Any, res: Any) -> None:  # the documented addHandler: any method
        res.setBody(req.method.encode() + b" " + req.body)

    async def events(req: Any) -> AsyncIterator[Any]:  # a WebSocket event stream
        start = int(req.getQuery("from") or 0)
        for block in range(start, start + 3):
            yield {"event": "block", "number": block, "contract": req.getParam("contract")}

    async def chat(req: Any, ws: Any) -> None:
        async for message in ws:
            await ws.send(f"echo:{message}" if isinstance(message, str) else message)

    server.use(timing)
    server.addMiddleware(auth)
    server.get("/users/:id", get_user)
    server.post("/orders", create_order)
    server.get("/admin", admin)
    server.addHandler("/rpc", rpc)
    server.websocket("/events/:contract", events)
    server.websocket("/chat", chat)
    return server


# -- certificates and servers ---------------------------------------------------------------


@dataclass
class Certs:
    ca_file: str
    cert_file: str
    key_file: str


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    path = tmp_path_factory.mktemp("shroud-certs")
    ca = CertificateAuthority.create("ghostwire shroud test CA")
    ca.write_pem(path / "ca.pem")
    leaf = ca.issue(["localhost", HOST])
    leaf.write_pem(path / "cert.pem", path / "key.pem")
    return Certs(str(path / "ca.pem"), str(path / "cert.pem"), str(path / "key.pem"))


def full_config(certs: Certs, **overrides: Any) -> ghostwire.UnifiedServerConfig:
    options: dict[str, Any] = {
        "bind_address": HOST,  # documented names, as ZVM used them
        "http1_port": 0,
        "http2_port": 0,
        "cert_path": certs.cert_file,
        "key_path": certs.key_file,
        "enable_tls": True,
        "enable_http3": True,
    }
    options.update(overrides)
    return ghostwire.UnifiedServerConfig(**options)


@asynccontextmanager
async def running(server: ghostwire.UnifiedServer) -> AsyncIterator[ghostwire.UnifiedServer]:
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        try:
            yield server
        finally:
            server.stop()


def http_url(server: ghostwire.UnifiedServer, path: str) -> str:
    assert server.http1_address is not None
    return f"http://{HOST}:{server.http1_address[1]}{path}"


def https_url(server: ghostwire.UnifiedServer, path: str) -> str:
    assert server.tls_address is not None
    return f"https://localhost:{server.tls_address[1]}{path}"


# -- HTTP/1.1 with httpx --------------------------------------------------------------------


async def check_program_over_httpx(client: httpx.AsyncClient, url: Any, h3_port: int) -> None:
    r = await client.get(url("/users/42?fields=name,email"))
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json; charset=utf-8"
    assert r.json() == {"id": "42", "fields": "name,email", "protocol": "http1_1"}
    assert r.headers["x-handled-status"] == "200"  # code after next() saw the response
    assert r.headers["alt-svc"] == f'h3=":{h3_port}"; ma=86400'

    r = await client.post(url("/orders"), json={"items": ["a", "b"]})
    assert r.status_code == 201 and r.json() == {"order": {"items": ["a", "b"]}, "items": 2}
    assert r.headers["x-handled-status"] == "201"
    r = await client.post(url("/orders"), content=b"x", headers={"content-type": "text/plain"})
    assert r.status_code == 415

    r = await client.get(url("/admin"))
    assert r.status_code == 401 and r.json() == {"error": "unauthorized"}
    r = await client.get(url("/admin"), headers={"authorization": "Bearer s3cret"})
    assert r.status_code == 200 and r.text == "<h1>admin</h1>"

    r = await client.put(url("/rpc"), content=b"payload")
    assert r.text == "PUT payload"
    r = await client.get(url("/missing"))
    assert (r.status_code, r.text) == (404, "404 - Not Found")
    assert r.headers["x-handled-status"] == "404"


async def test_http1_plaintext_and_tls_with_httpx(certs: Certs) -> None:
    server = shroud_program(full_config(certs))
    with trio.fail_after(TIMEOUT):
        async with running(server):
            assert server.http3_address is not None and server.tls_address is not None
            h3_port = server.http3_address[1]
            assert h3_port == server.tls_address[1]  # HTTP/3 on the TLS port number, over UDP
            async with httpx.AsyncClient() as client:
                await check_program_over_httpx(client, lambda p: http_url(server, p), h3_port)
            context = ssl.create_default_context(cafile=certs.ca_file)
            async with httpx.AsyncClient(verify=context) as client:
                await check_program_over_httpx(client, lambda p: https_url(server, p), h3_port)
                stats = server.getStats()
                assert stats.routes_registered == 6 and stats.middlewares_registered == 2
                assert stats.requests_handled == 14 and stats.errors_count == 0
                assert stats.active_connections >= 1
            # an untrusted client fails the handshake; the server keeps serving
            with pytest.raises(httpx.ConnectError):
                async with httpx.AsyncClient() as client:
                    await client.get(https_url(server, "/users/1"))
            async with httpx.AsyncClient(verify=context) as client:
                assert (await client.get(https_url(server, "/users/1"))).status_code == 200


async def test_http1_limits_and_malformed_requests(certs: Certs) -> None:
    config = ghostwire.UnifiedServerConfig(address=HOST, port=0, max_request_body_size=100)
    server = shroud_program(config)
    with trio.fail_after(TIMEOUT):
        async with running(server):
            async with httpx.AsyncClient() as client:
                r = await client.post(http_url(server, "/orders"), content=b"x" * 101)
                assert r.status_code == 413
                assert "alt-svc" not in r.headers  # no HTTP/3 here: nothing advertised
            assert server.http1_address is not None
            stream = await trio.open_tcp_stream(HOST, server.http1_address[1])
            await stream.send_all(b"GET /users/1 HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
            reply = await _read_all(stream)
            assert reply.startswith(b"HTTP/1.1 400 ")
            # two requests pipelined on one keep-alive connection
            stream = await trio.open_tcp_stream(HOST, server.http1_address[1])
            await stream.send_all(
                b"GET /users/1 HTTP/1.1\r\nHost: x\r\n\r\n"
                b"GET /users/2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            reply = await _read_all(stream)
            assert reply.count(b"HTTP/1.1 200 OK") == 2 and b'"id":"2"' in reply


async def _read_all(stream: trio.abc.Stream) -> bytes:
    data = bytearray()
    while chunk := await stream.receive_some(65536):
        data += chunk
    await stream.aclose()
    return bytes(data)


# -- HTTP/3 with aioquic --------------------------------------------------------------------


@pytest.mark.interop
async def test_http3_with_aioquic(certs: Certs, peer: Any) -> None:
    from aioquic_h3_peer import H3PeerClient
    from aioquic_peer import peer_configuration

    server = shroud_program(full_config(certs, enable_tls=False, http3_port=0))
    with trio.fail_after(TIMEOUT):
        async with running(server):
            assert server.http3_address is not None
            configuration = peer_configuration(
                is_client=True, alpn=["h3"], cafile=certs.ca_file, server_name="localhost"
            )
            client = await peer.run(
                H3PeerClient.connect(HOST, server.http3_address[1], configuration)
            )
            try:
                r = await peer.run(client.request("GET", "/users/7?fields=all"))
                assert r.status == 200
                assert r.header("content-type") == "application/json; charset=utf-8"
                assert json.loads(r.body) == {"id": "7", "fields": "all", "protocol": "http3"}
                assert r.header("x-handled-status") == "200"

                body = json.dumps({"items": [1, 2, 3]}).encode()
                r = await peer.run(
                    client.request(
                        "POST", "/orders", headers=[("content-type", "application/json")], body=body
                    )
                )
                assert r.status == 201 and json.loads(r.body)["items"] == 3

                r = await peer.run(client.request("GET", "/admin"))
                assert r.status == 401
                r = await peer.run(
                    client.request("GET", "/admin", headers=[("authorization", "Bearer s3cret")])
                )
                assert (r.status, r.body) == (200, b"<h1>admin</h1>")
                r = await peer.run(client.request("DELETE", "/rpc", body=b"x"))
                assert r.body == b"DELETE x"
                r = await peer.run(client.request("HEAD", "/users/7"))
                assert r.status == 200 and r.body == b""
                assert r.header("content-type") == "application/json; charset=utf-8"
                r = await peer.run(client.request("GET", "/nope"))
                assert (r.status, r.body) == (404, b"404 - Not Found")
                r = await peer.run(client.request("GET", "/chat"))
                assert r.status == 426  # WebSocket routes live on HTTP/1.1
                stats = server.getHttp3Stats()
                assert stats.requests_handled == 7 and stats.connections_active == 1
                assert stats.bytes_received == len(body) + 1
            finally:
                await peer.run(client.close())


# -- WebSocket with wsproto's client --------------------------------------------------------


class WsClient:
    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.pending: list[Any] = []

    @classmethod
    async def connect(cls, port: int, target: str) -> tuple[WsClient, Any]:
        client = cls(await trio.open_tcp_stream(HOST, port))
        await client.stream.send_all(client.ws.send(Request(host="localhost", target=target)))
        return client, await client.next_event()

    async def next_event(self) -> Any:
        while not self.pending:
            self.pending.extend(self.ws.events())
            if self.pending:
                break
            data = await self.stream.receive_some(65536)
            self.ws.receive_data(bytes(data) or None)
        return self.pending.pop(0)

    async def send(self, event: Any) -> None:
        await self.stream.send_all(self.ws.send(event))


async def test_websocket_event_stream_and_session(certs: Certs) -> None:
    server = shroud_program(ghostwire.UnifiedServerConfig(address=HOST, port=0))
    with trio.fail_after(TIMEOUT):
        async with running(server):
            assert server.http1_address is not None
            port = server.http1_address[1]

            client, accepted = await WsClient.connect(port, "/events/0xabc?from=100")
            assert isinstance(accepted, AcceptConnection)
            received = [json.loads((await client.next_event()).data) for _ in range(3)]
            assert [e["number"] for e in received] == [100, 101, 102]
            assert {e["contract"] for e in received} == {"0xabc"}
            closing = await client.next_event()
            assert isinstance(closing, CloseConnection) and closing.code == 1000
            await client.send(closing.response())
            await client.stream.aclose()

            client, accepted = await WsClient.connect(port, "/chat")
            assert isinstance(accepted, AcceptConnection)
            await client.send(TextMessage(data="hi"))
            assert (await client.next_event()).data == "echo:hi"
            await client.send(BytesMessage(data=b"\x00\x01" * 1000))
            reply = bytearray()
            while True:  # a large message may arrive in fragments
                event = await client.next_event()
                reply += event.data
                if event.message_finished:
                    break
            assert bytes(reply) == b"\x00\x01" * 1000
            await client.send(CloseConnection(code=1000, reason="bye"))
            assert isinstance(await client.next_event(), CloseConnection)
            await client.stream.aclose()

            # not a WebSocket route: the upgrade is refused, an ordinary 404 answers
            client, rejected = await WsClient.connect(port, "/nowhere")
            assert isinstance(rejected, RejectConnection) and rejected.status_code == 404
            await client.stream.aclose()


async def test_websocket_bad_handshake_gets_the_original_400(certs: Certs) -> None:
    server = shroud_program(ghostwire.UnifiedServerConfig(address=HOST, port=0))
    with trio.fail_after(TIMEOUT):
        async with running(server):
            assert server.http1_address is not None
            stream = await trio.open_tcp_stream(HOST, server.http1_address[1])
            await stream.send_all(
                b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
            )
            reply = await _read_all(stream)
            assert reply.startswith(b"HTTP/1.1 400 ")
            assert reply.endswith(b"Invalid WebSocket version or key")


async def test_http3_twin_port_taken_on_udp_opens_the_pair_again(
    certs: Certs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The TLS listener's ephemeral port is taken on UDP: HTTP/3 cannot have its
    number, so the pair moves to another port instead of failing to start."""
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind((HOST, 0))
    busy_port = taken.getsockname()[1]
    real_open = trio.open_tcp_listeners
    ports: list[int] = []

    async def open_tcp(port: int, **kwargs: Any) -> list[trio.SocketListener]:
        # The first port the "system" picks is the one taken on UDP.
        opened = await real_open(busy_port if port == 0 and not ports else port, **kwargs)
        ports.append(opened[0].socket.getsockname()[1])
        return opened

    monkeypatch.setattr(trio, "open_tcp_listeners", open_tcp)  # what listeners.py calls
    server = shroud_program(full_config(certs, enable_http1=False))
    try:
        with trio.fail_after(TIMEOUT):
            async with running(server):
                assert server.tls_address is not None and server.http3_address is not None
                # (More than one retry when another process holds the next pick
                # on UDP too: on a shared machine, ephemeral ports come and go.)
                assert ports[0] == busy_port and len(ports) >= 2
                assert server.tls_address[1] == server.http3_address[1] == ports[-1] != busy_port
                client = ghostwire.HttpClient(
                    preferred_protocol=ghostwire.HttpVersion.http3, ca_file=certs.ca_file
                )
                reply = await client.get(f"https://localhost:{server.http3_address[1]}/users/3")
                assert reply.parseJson()["protocol"] == "http3"  # HTTP/3 on the twin port
    finally:
        taken.close()


# -- a script that never heard of trio ------------------------------------------------------


def test_blocking_start_in_a_thread_stopped_by_the_caller(certs: Certs) -> None:
    server = shroud_program(full_config(certs))
    errors: list[BaseException] = []

    def run() -> None:
        try:
            server.start()
        except BaseException as exc:  # reported to the test below
            errors.append(exc)

    thread = threading.Thread(target=run, name="shroud-start")
    thread.start()
    try:
        assert server.waitUntilReady(TIMEOUT), errors
        context = ssl.create_default_context(cafile=certs.ca_file)
        with httpx.Client(verify=context, timeout=TIMEOUT) as client:
            r = client.get(https_url(server, "/users/5?fields=x"))
            assert r.json() == {"id": "5", "fields": "x", "protocol": "http1_1"}
        with httpx.Client(timeout=TIMEOUT) as client:
            assert client.get(http_url(server, "/users/6")).json()["id"] == "6"
        # our own blocking client, over HTTP/3 this time
        h3 = ghostwire.BlockingHttpClient(
            preferred_protocol=ghostwire.HttpVersion.http3, ca_file=certs.ca_file
        )
        assert server.http3_address is not None
        reply = h3.get(f"https://localhost:{server.http3_address[1]}/users/8")
        assert reply.parseJson()["protocol"] == "http3"
    finally:
        server.stop()
        thread.join(TIMEOUT)
    assert not thread.is_alive()
    assert errors == []
    assert not server.isRunning()


async def test_stop_from_a_handler_ends_serve(certs: Certs) -> None:
    server = ghostwire.UnifiedServer(address=HOST, port=0)
    server.post("/shutdown", lambda req, res: server.stop())
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)
            async with httpx.AsyncClient() as client:
                assert (await client.post(http_url(server, "/shutdown"))).status_code == 200
        # the nursery exited: serve() returned by itself
    assert not server.isRunning()
    with pytest.raises(ghostwire.ShroudError):
        # start() refuses to nest a second trio run
        server.start()


# -- our HttpClient -------------------------------------------------------------------------


async def test_http_client_call_forms_redirects_and_errors(certs: Certs, tmp_path: Path) -> None:
    server = shroud_program(full_config(certs))
    server.get("/old", lambda req, res: res.redirect("/users/9"))
    server.get("/loop", lambda req, res: res.redirect("/loop"))
    with trio.fail_after(TIMEOUT):
        async with running(server):
            client = ghostwire.HttpClient(ghostwire.HttpClient.Config(ca_file=certs.ca_file))
            r = await client.post(
                https_url(server, "/orders"), b'{"items":[1]}', "application/json"
            )
            assert r.status == 201 and r.isSuccess() and r.parseJson()["items"] == 1
            r = await client.request("PATCH", http_url(server, "/rpc"), {"X-A": "1"}, b"z")
            assert r.text() == "PATCH z"
            r = await client.get(http_url(server, "/old"))
            assert r.parseJson()["id"] == "9" and r.url.endswith("/users/9")
            with pytest.raises(ghostwire.ClientError):
                await client.get(http_url(server, "/loop"))
            r = await client.get(http_url(server, "/nope"))
            assert r.isError() and r.getHeader("Content-Type") == "text/plain; charset=utf-8"
            with pytest.raises(ghostwire.HandshakeFailed):  # no CA given: not trusted
                await ghostwire.HttpClient().get(https_url(server, "/users/1"))
    with pytest.raises(ghostwire.ConnectionFailed):
        await ghostwire.HttpClient(timeout_ms=5000).get(http_url(server, "/users/1"))


@pytest.mark.parametrize("http1", [False, True])
@pytest.mark.parametrize("failure", ["error", "cancelled"])
async def test_tls_listeners_close_when_http3_fails_to_start(
    certs: Certs, monkeypatch: pytest.MonkeyPatch, failure: str, http1: bool
) -> None:
    """Not only an OSError: any failure or a cancellation while HTTP/3 starts
    closes the TLS listeners opened for it (and only EADDRINUSE retries), and
    the HTTP/1 listeners opened before them."""
    real_open = trio.open_tcp_listeners
    opened: list[trio.SocketListener] = []

    async def open_tcp(port: int, **kwargs: Any) -> list[trio.SocketListener]:
        listeners = await real_open(port, **kwargs)
        opened.extend(listeners)
        return listeners

    async def start_http3(*args: object) -> None:
        if failure == "error":
            raise RuntimeError("injected")
        scope.cancel()
        await trio.lowlevel.checkpoint()

    monkeypatch.setattr(trio, "open_tcp_listeners", open_tcp)
    monkeypatch.setattr(listeners, "_start_http3", start_http3)
    server = shroud_program(full_config(certs, enable_http1=http1))
    with trio.CancelScope() as scope:
        if failure == "error":
            with pytest.RaisesGroup(RuntimeError, flatten_subgroups=True, allow_unwrapped=True):
                async with running(server):
                    pass
        else:
            async with running(server):
                pass
    assert len(opened) == 1 + http1
    assert all(listener.socket.fileno() == -1 for listener in opened)
    assert server.tls_address is None and server.http1_address is None


async def test_http1_listeners_close_when_the_tls_port_is_taken(
    certs: Certs, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_open = trio.open_tcp_listeners
    opened: list[trio.SocketListener] = []

    async def open_tcp(port: int, **kwargs: Any) -> list[trio.SocketListener]:
        listeners = await real_open(port, **kwargs)
        opened.extend(listeners)
        return listeners

    monkeypatch.setattr(trio, "open_tcp_listeners", open_tcp)
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        config = full_config(certs, http2_port=taken.getsockname()[1], enable_http3=False)
        server = shroud_program(config)
        with trio.fail_after(TIMEOUT):
            with pytest.RaisesGroup(OSError, flatten_subgroups=True, allow_unwrapped=True):
                async with running(server):
                    pass  # pragma: no cover
    assert len(opened) == 1 and opened[0].socket.fileno() == -1  # HTTP/1's, closed
    assert server.http1_address is None and server.tls_address is None


async def test_stop_sends_http3_goaway_at_once(certs: Certs) -> None:
    """stop(): HTTP/3 clients get GOAWAY at once (RFC 9114 §5.2), so a new
    request is refused unprocessed while the one in progress finishes."""
    import ghostwire.http3 as h3

    started, release = trio.Event(), trio.Event()
    server = ghostwire.UnifiedServer(full_config(certs, enable_http1=False, enable_tls=False))

    async def slow(req: Any, res: Any) -> None:
        started.set()
        await release.wait()
        res.text("slow")

    server.get("/slow", slow)
    server.get("/fast", lambda req, res: res.text("fast"))
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)
            assert server.http3_address is not None
            base = f"https://localhost:{server.http3_address[1]}"
            async with h3.Client(cafile=certs.ca_file, timeout=TIMEOUT) as client:
                replies: list[bytes] = []

                async def in_progress() -> None:
                    replies.append(await (await client.get(base + "/slow")).read())

                async with trio.open_nursery() as requests:
                    requests.start_soon(in_progress)
                    await started.wait()
                    server.stop()
                    await trio.testing.wait_all_tasks_blocked()
                    # On the old connection (a stream past the GOAWAY id) or a new
                    # one (GOAWAY at once): refused either way, never answered.
                    with pytest.raises(h3.HttpError):
                        await client.get(base + "/fast")
                    release.set()
                assert replies == [b"slow"]
    assert not server.isRunning()
