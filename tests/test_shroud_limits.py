"""The shim's HTTP/1.1 and WebSocket limits: timeouts, connection cap, sizes, client going away."""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
from test_shroud_serve import HOST, WsClient, certs, running
from wsproto.events import AcceptConnection, BytesMessage, CloseConnection, Request, TextMessage

import ghostwire.shroud as ghostwire

TIMEOUT = 30
__all__ = ["certs"]  # the module-scoped certificate fixture, shared with test_shroud_serve


async def read_until_closed(stream: trio.abc.Stream) -> bytes:
    data = bytearray()
    while chunk := await stream.receive_some(65536):
        data += chunk
    return bytes(data)


async def test_slow_request_gets_408_and_idle_connection_is_closed() -> None:
    server = ghostwire.UnifiedServer(
        address=HOST, port=0, request_timeout_ms=200, keep_alive_timeout_ms=200
    )
    server.get("/", lambda req, res: res.text("ok"))
    with trio.fail_after(TIMEOUT):
        async with running(server):
            assert server.http1_address is not None
            port = server.http1_address[1]
            slow = await trio.open_tcp_stream(HOST, port)
            await slow.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n")  # never finished
            reply = await read_until_closed(slow)
            assert reply.startswith(b"HTTP/1.1 408 ") and reply.endswith(b"Request Timeout")
            idle = await trio.open_tcp_stream(HOST, port)
            assert await read_until_closed(idle) == b""  # closed without a word


async def test_connections_over_max_get_503_and_head_has_no_body() -> None:
    server = ghostwire.UnifiedServer(address=HOST, port=0, max_connections=1)
    server.get("/", lambda req, res: res.text("hello"))
    with trio.fail_after(TIMEOUT):
        async with running(server):
            assert server.http1_address is not None
            port = server.http1_address[1]
            first = await trio.open_tcp_stream(HOST, port)
            await first.send_all(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
            head = await first.receive_some(65536)
            assert head.startswith(b"HTTP/1.1 200 OK") and b"content-length: 5" in head.lower()
            assert head.endswith(b"\r\n\r\n")  # no body after the head
            second = await trio.open_tcp_stream(HOST, port)
            reply = await read_until_closed(second)
            assert reply.startswith(b"HTTP/1.1 503 ")
            await first.aclose()


async def test_websocket_message_too_big_closes_1009() -> None:
    server = ghostwire.UnifiedServer(address=HOST, port=0)
    server.websocket_max_message_size = 100

    async def echo(ws: Any) -> None:
        async for message in ws:
            await ws.send(message)

    server.websocket("/echo", echo)
    with trio.fail_after(TIMEOUT):
        async with running(server):
            assert server.http1_address is not None
            client, accepted = await WsClient.connect(server.http1_address[1], "/echo")
            assert isinstance(accepted, AcceptConnection)
            await client.send(TextMessage(data="small"))
            assert (await client.next_event()).data == "small"
            await client.send(BytesMessage(data=b"x" * 101))
            closing = await client.next_event()
            assert isinstance(closing, CloseConnection) and closing.code == 1009
            await client.stream.aclose()


async def test_client_leaving_cancels_an_endless_event_stream() -> None:
    server = ghostwire.UnifiedServer(address=HOST, port=0)
    finished = trio.Event()
    sent = trio.Event()

    async def ticks(req: Any) -> AsyncIterator[Any]:
        try:
            yield {"tick": 0}
            sent.set()
            await trio.sleep_forever()  # a channel with nothing new
            yield {"tick": 1}  # type: ignore[unreachable]  # pragma: no cover
        finally:
            finished.set()

    server.websocket("/ticks", ticks)
    with trio.fail_after(TIMEOUT):
        async with running(server):
            assert server.http1_address is not None
            client, _ = await WsClient.connect(server.http1_address[1], "/ticks")
            assert json.loads((await client.next_event()).data) == {"tick": 0}
            await sent.wait()
            await client.send(CloseConnection(code=1001, reason="leaving"))
            await finished.wait()  # the generator was closed, the route ended
            reply = await client.next_event()
            assert isinstance(reply, CloseConnection)
            await client.stream.aclose()


async def test_unknown_method_gets_405_and_the_server_carries_on() -> None:
    server = ghostwire.UnifiedServer(address=HOST, port=0)
    server.get("/", lambda req, res: res.text("ok"))
    with trio.fail_after(TIMEOUT):
        async with running(server):
            assert server.http1_address is not None
            stream = await trio.open_tcp_stream(HOST, server.http1_address[1])
            await stream.send_all(b"BREW /pot HTTP/1.1\r\nHost: x\r\n\r\n")
            reply = await read_until_closed(stream)
            assert reply.startswith(b"HTTP/1.1 405 ")
            # the server is still fine
            stream = await trio.open_tcp_stream(HOST, server.http1_address[1])
            await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert (await read_until_closed(stream)).endswith(b"ok")


async def test_unreadable_certificate_is_a_config_error(tmp_path: Any) -> None:
    server = ghostwire.UnifiedServer(
        address=HOST, port=0, tls_port=0, enable_tls=True, cert_file=str(tmp_path / "none.pem")
    )
    with trio.fail_after(TIMEOUT), pytest.raises(ghostwire.ConfigError, match="cert_file"):
        await server.serve()
    assert not server.isRunning()


async def test_websocket_over_tls(certs: Any) -> None:
    server = ghostwire.UnifiedServer(
        address=HOST, port=0, tls_port=0, enable_tls=True,
        cert_file=certs.cert_file, key_file=certs.key_file,
    )  # fmt: skip

    async def echo(req: Any, ws: Any) -> None:
        async for message in ws:
            await ws.send({"echo": message, "secure": req.path})

    server.websocket("/secure", echo)
    with trio.fail_after(TIMEOUT):
        async with running(server):
            assert server.tls_address is not None
            tcp = await trio.open_tcp_stream(HOST, server.tls_address[1])
            context = ssl.create_default_context(cafile=certs.ca_file)
            tls = trio.SSLStream(tcp, context, server_hostname="localhost")
            client = WsClient(tls)
            await client.send(Request(host="localhost", target="/secure"))
            assert isinstance(await client.next_event(), AcceptConnection)
            await client.send(TextMessage(data="hello"))
            assert json.loads((await client.next_event()).data) == {
                "echo": "hello",
                "secure": "/secure",
            }
            await client.send(CloseConnection(code=1000))
            assert isinstance(await client.next_event(), CloseConnection)
            await tls.aclose()
