"""Error paths of the shim that must neither leak a socket nor hang: a TLS
handshake cut short, a WebSocket client that reads nothing, a message source
whose cleanup never ends, an event stream whose subscription is cancelled.

Timeouts run on trio's MockClock (autojump) where the code waits on one;
sockets are loopback or in-memory stream pairs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

from ghostwire.shroud import HttpClient
from ghostwire.shroud.config import ServerProtocol
from ghostwire.shroud.message import UnifiedRequest
from ghostwire.shroud.websocket import CLOSE_TIMEOUT, WebSocket, run_handler
from ghostwire.shroud.zvm_client import ContractEventStream

HOST = "127.0.0.1"


async def test_a_cancelled_tls_handshake_closes_the_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    """The server accepts and never answers the ClientHello; the request is
    cancelled mid-handshake (as its timeout does): its TCP socket is closed."""
    real_open = trio.open_tcp_stream
    opened: list[trio.SocketStream] = []

    async def open_tcp(*args: Any, **kwargs: Any) -> trio.SocketStream:
        stream = await real_open(*args, **kwargs)
        opened.append(stream)
        return stream

    monkeypatch.setattr(trio, "open_tcp_stream", open_tcp)  # what client_h1.py calls
    (listener,) = await trio.open_tcp_listeners(0, host=HOST)
    port = listener.socket.getsockname()[1]
    with trio.fail_after(10):
        async with listener, trio.open_nursery() as nursery:

            async def request(*, task_status: trio.TaskStatus[trio.CancelScope]) -> None:
                with trio.CancelScope() as scope:
                    task_status.started(scope)
                    await HttpClient(verify_tls=False).get(f"https://{HOST}:{port}/")

            scope: trio.CancelScope = await nursery.start(request)
            server_side = await listener.accept()
            async with server_side:
                assert await server_side.receive_some(65536)  # the ClientHello: mid-handshake
                scope.cancel()
    assert len(opened) == 1 and opened[0].socket.fileno() == -1


def _request() -> UnifiedRequest:
    return UnifiedRequest.from_target("GET", "/ws", ServerProtocol.websocket, [], b"", None)


async def test_websocket_close_is_bounded_when_the_client_reads_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Sending the close frame to a client that never reads takes at most
    CLOSE_TIMEOUT, like waiting for the client's close frame."""
    server_end, _client_end = trio.testing.lockstep_stream_pair()  # sends wait for a reader
    ws = WebSocket(server_end, _request())
    with trio.fail_after(2 * CLOSE_TIMEOUT):
        await ws.close()
    assert ws.closed


async def test_a_message_source_that_never_finishes_closing_is_cut_off(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The handler is cancelled while its source waits to send; the source's
    cleanup then waits forever: it is given CLOSE_TIMEOUT, not forever."""
    server_end, _client_end = trio.testing.lockstep_stream_pair()
    ws = WebSocket(server_end, _request())
    cleanup: list[str] = []

    async def source(req: UnifiedRequest) -> AsyncIterator[str]:
        try:
            yield "first"  # the client never reads it
        finally:
            cleanup.append("started")
            # e.g. closing a subscription on a dead connection (without the
            # bound: this long, on the mock clock, rather than a hung test)
            await trio.sleep(1000 * CLOSE_TIMEOUT)
            cleanup.append("finished")  # pragma: no cover

    with trio.fail_after(2000 * CLOSE_TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run_handler, source, ws)
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
    assert cleanup == ["started"]  # cut off


class _Connection:
    def __init__(self) -> None:
        self.subscribing = trio.Event()

    @asynccontextmanager
    async def subscribe(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        self.subscribing.set()
        await trio.Event().wait()  # never set: the subscription never comes
        yield  # pragma: no cover


class _Client:
    """A GrpcClient's ``connection()``, recording whether it was closed."""

    def __init__(self) -> None:
        self.conn = _Connection()
        self.closed = False

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[_Connection]:
        try:
            yield self.conn
        finally:
            self.closed = True


async def test_an_event_stream_cancelled_while_subscribing_closes_its_connection() -> None:
    client = _Client()
    stream = ContractEventStream(client, "0x" + "11" * 20, None)  # type: ignore[arg-type]
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream.open)
            await client.conn.subscribing.wait()
            nursery.cancel_scope.cancel()
    assert client.closed
