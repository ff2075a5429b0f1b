"""The trio contract of ghostwire.quic: closing is visible to the peer, errors are typed.

Each test here fails without the behaviour it names: a cancelled server that
left its clients to their idle timeout, an ``ExceptionGroup`` out of a call
that ran no user code, an internal exception out of a stream method.
"""

from __future__ import annotations

import errno
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager
from functools import partial

import pytest
import trio
import trio.testing
from quic_pair import client_config, server_config

import ghostwire.quic as quic
from ghostwire.errors import GhostwireError
from ghostwire.quic.net import api as quic_api

Handler = Callable[[quic.Connection], Awaitable[None]]
HOST = "127.0.0.1"
# Far beyond any loopback round trip, far below the idle timeout: a close seen
# within it came from CONNECTION_CLOSE, not from the peer idling out.
PROMPTLY = 5.0
IDLE = 60.0


async def _park(conn: quic.Connection) -> None:
    await trio.sleep_forever()


@asynccontextmanager
async def serving(
    handler: Handler = _park,
) -> AsyncIterator[tuple[trio.CancelScope, quic.QuicServer]]:
    """A server in its own cancel scope (cancelling it leaves the test's code running)."""
    scope = trio.CancelScope()

    async def run(*, task_status: trio.TaskStatus[quic.QuicServer]) -> None:
        with scope:
            await quic.serve(
                handler, 0, server_config(idle_timeout=IDLE), host=HOST, task_status=task_status
            )

    async with trio.open_nursery() as nursery:
        server = await nursery.start(run)
        yield scope, server
        scope.cancel()


async def _expect_peer_close(conn: quic.Connection) -> quic.ConnectionClosed:
    """Wait (at most PROMPTLY) for the peer's CONNECTION_CLOSE to end ``conn``."""
    with trio.fail_after(PROMPTLY):
        with pytest.raises(quic.ConnectionClosed) as info:
            await conn.accept_stream()
    assert not isinstance(info.value, quic.IdleTimeout)
    assert info.value.by_peer
    return info.value


async def test_cancelling_serve_closes_every_client_at_once() -> None:
    async with serving() as (server_scope, server):
        async with quic.connect(HOST, server.port, client_config(idle_timeout=IDLE)) as one:
            async with quic.connect(HOST, server.port, client_config(idle_timeout=IDLE)) as two:
                await trio.testing.wait_all_tasks_blocked()
                server_scope.cancel()
                for conn in (one, two):
                    closed = await _expect_peer_close(conn)
                    assert not closed.is_application and closed.error_code == 0
        checked = True
    assert checked


async def test_closing_a_listener_closes_its_connections() -> None:
    config = server_config(idle_timeout=IDLE)
    async with quic.open_listener(HOST, 0, config) as listener:
        async with quic.connect(HOST, listener.port, client_config(idle_timeout=IDLE)) as conn:
            accepted = await listener.accept()
            assert not accepted.is_closed
            await listener.aclose()
            await _expect_peer_close(conn)
            with pytest.raises(trio.ClosedResourceError):
                await listener.accept()


@pytest.mark.parametrize("how", ["exception", "cancel"])
async def test_leaving_connect_by_error_or_cancel_closes_at_the_server(how: str) -> None:
    ended: list[quic.ConnectionClosed] = []
    done = trio.Event()

    async def handler(conn: quic.Connection) -> None:
        try:
            await conn.accept_stream()
        except quic.ConnectionClosed as exc:
            ended.append(exc)
            done.set()

    async with serving(handler) as (_, server):
        with trio.CancelScope() as scope:
            try:
                async with quic.connect(HOST, server.port, client_config(idle_timeout=IDLE)):
                    await trio.testing.wait_all_tasks_blocked()
                    if how == "cancel":
                        scope.cancel()
                        await trio.sleep_forever()
                    raise KeyError("the application failed")
            except KeyError:
                pass
        with trio.fail_after(PROMPTLY):
            await done.wait()
    assert ended[0].by_peer and not isinstance(ended[0], quic.IdleTimeout)
    assert ended[0].is_application  # the client's own close, not a transport error


async def test_handler_error_closes_with_an_application_code() -> None:
    async def failing(conn: quic.Connection) -> None:
        stream = await conn.accept_stream()
        await stream.receive_some()
        raise ValueError("bug in the handler")

    async with serving(failing) as (_, server):
        async with quic.connect(HOST, server.port, client_config(idle_timeout=IDLE)) as conn:
            stream = await conn.open_stream()
            await stream.send_all(b"go")
            with trio.fail_after(PROMPTLY):
                with pytest.raises(quic.ConnectionClosed) as info:
                    await stream.receive_some()
    assert isinstance(info.value, GhostwireError)
    assert info.value.is_application and info.value.by_peer
    assert info.value.error_code == quic.Connection.handler_error_code
    assert "ValueError" in info.value.reason


async def test_a_handler_that_returns_lets_its_last_reply_arrive() -> None:
    # The handler writes a reply larger than one flight and returns: the
    # connection closes only after the reply was acknowledged, so the client
    # reads every byte, then sees a clean close (code 0).
    reply = bytes(range(256)) * 2000  # 512,000 bytes

    async def reply_and_return(conn: quic.Connection) -> None:
        stream = await conn.accept_stream()
        assert isinstance(stream, quic.QuicStream)
        await stream.receive_some()
        await stream.send_all(reply)
        await stream.send_eof()

    async with serving(reply_and_return) as (_, server):
        async with quic.connect(HOST, server.port, client_config(idle_timeout=IDLE)) as conn:
            stream = await conn.open_stream()
            await stream.send_all(b"go")
            received = bytearray()
            with trio.fail_after(PROMPTLY):
                while chunk := await stream.receive_some():
                    received += chunk
                closed = await _expect_peer_close(conn)
    assert bytes(received) == reply
    assert closed.error_code == 0 and closed.is_application


async def test_serve_has_trios_shape_and_the_old_order_still_works() -> None:
    config = server_config(idle_timeout=IDLE)
    async with trio.open_nursery() as nursery:
        with pytest.warns(DeprecationWarning, match="serve"):
            old = await nursery.start(quic.serve, _park, HOST, 0, config)
        new = await nursery.start(partial(quic.serve, _park, 0, config, host=HOST))
        for server in (old, new):
            assert server.address[0] == HOST
            async with quic.connect(HOST, server.port, client_config()) as conn:
                assert conn.alpn == "test"
        nursery.cancel_scope.cancel()


async def test_http3_serve_has_the_same_shape() -> None:
    import ghostwire.http3 as h3

    async def hello(request: h3.Request) -> h3.Response:
        return h3.Response(200, content=b"hi")

    config = server_config(alpn=["h3"])
    async with trio.open_nursery() as nursery:
        with pytest.warns(DeprecationWarning, match="serve"):
            old = await nursery.start(h3.serve, hello, HOST, 0, config)
        new = await nursery.start(partial(h3.serve, hello, 0, config, host=HOST))
        assert old.address[0] == new.address[0] == HOST
        nursery.cancel_scope.cancel()


def test_serve_rejects_a_mixed_up_call() -> None:
    with pytest.raises(TypeError, match="port"):
        trio.run(partial(quic.serve, _park, "127.0.0.1", server_config()))  # type: ignore[arg-type]


@contextmanager
def refusing_udp_port(family: int, host: str) -> Iterator[int]:
    """A UDP port where nothing listens, reserved while the block runs.

    A socket bound to it and connected elsewhere (the discard port) keeps
    other processes from binding it, yet takes no datagram from anybody
    else: the kernel answers those with ICMP port unreachable, as for a port
    nobody holds. (Picking a free port and closing it would race with other
    processes binding it meanwhile.)
    """
    holder = socket.socket(family, socket.SOCK_DGRAM)
    try:
        holder.bind((host, 0))
        holder.connect((host, 9))
        yield int(holder.getsockname()[1])
    finally:
        holder.close()


def test_a_refusing_port_stays_reserved() -> None:
    with refusing_udp_port(socket.AF_INET, HOST) as port:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
            with pytest.raises(OSError) as info:
                other.bind((HOST, port))
    assert info.value.errno == errno.EADDRINUSE


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="IP_RECVERR is Linux's")
@pytest.mark.parametrize("family,host", [(socket.AF_INET, HOST), (socket.AF_INET6, "::1")])
async def test_nothing_listening_is_refused_at_once(family: int, host: str) -> None:
    with ExitStack() as reserved:
        try:
            port = reserved.enter_context(refusing_udp_port(family, host))
        except OSError:
            pytest.skip(f"no {host} here")
        # A handshake timeout far beyond fail_after: only the ICMP error can end it in time.
        config = client_config(handshake_timeout=IDLE)
        with trio.fail_after(PROMPTLY):
            with pytest.raises(quic.ConnectionRefused) as info:
                async with quic.connect(host, port, config):
                    pass  # pragma: no cover
    assert isinstance(info.value, ConnectionRefusedError)
    assert isinstance(info.value, quic.HandshakeError)
    assert isinstance(info.value, GhostwireError)
    assert str(port) in str(info.value)


async def test_a_refused_address_gives_way_to_the_next(monkeypatch: pytest.MonkeyPatch) -> None:
    with refusing_udp_port(socket.AF_INET, HOST) as closed_port:
        async with serving() as (_, server):
            addresses = [(HOST, closed_port), (HOST, server.port)]

            async def two_addresses(*args: object, **kwargs: object) -> list[object]:
                return [(socket.AF_INET, socket.SOCK_DGRAM, 17, "", a) for a in addresses]

            monkeypatch.setattr(trio.socket, "getaddrinfo", two_addresses)
            # Silence would hold the first address this long; a refusal gives way at once.
            monkeypatch.setattr(quic_api, "NEXT_ADDRESS_AFTER", IDLE)
            with trio.fail_after(PROMPTLY):
                async with quic.connect("localhost", 4433, client_config()) as conn:
                    assert conn.peer_address == addresses[1]


# -- errors users can catch: no internal exception out of a stream method --------------


def _documented(exc: BaseException) -> bool:
    """What a stream or connection method may raise: ours, or trio's own."""
    return isinstance(
        exc, (GhostwireError, trio.ClosedResourceError, trio.BusyResourceError)
    ) and not isinstance(exc, BaseExceptionGroup)


async def test_sending_after_the_peers_stop_sending_raises_stream_stopped() -> None:
    async def stopper(conn: quic.Connection) -> None:
        stream = await conn.accept_stream()
        await stream.receive_some(1)
        stream.stop_sending(5)
        await stream.send_all(b"stopped")  # type: ignore[union-attr]  # after the STOP_SENDING
        await trio.sleep_forever()

    async with serving(stopper) as (_, server):
        async with quic.connect(HOST, server.port, client_config()) as conn:
            with trio.fail_after(PROMPTLY):
                stream = await conn.open_stream()
                await stream.send_all(b"x")
                assert await stream.receive_some() == b"stopped"
                for call in (stream.send_eof, partial(stream.send_all, b"more"), stream.send_eof):
                    with pytest.raises(quic.StreamStopped) as info:
                        await call()
                    assert info.value.error_code == 5
                    assert isinstance(info.value, quic.StreamReset)
                await stream.aclose()  # closing what the peer stopped is no error


async def test_receiving_after_a_reset_keeps_raising_stream_reset() -> None:
    async def resetter(conn: quic.Connection) -> None:
        stream = await conn.accept_stream()
        while await stream.receive_some():
            pass
        stream.reset(9)  # type: ignore[union-attr]
        await trio.sleep_forever()

    async with serving(resetter) as (_, server):
        async with quic.connect(HOST, server.port, client_config()) as conn:
            with trio.fail_after(PROMPTLY):
                stream = await conn.open_stream()
                await stream.send_all(b"request")
                await stream.send_eof()  # our side finishes: the core may forget the stream
                for _ in range(2):
                    with pytest.raises(quic.StreamReset) as info:
                        await stream.receive_some()
                    assert info.value.error_code == 9
                with pytest.raises(trio.ClosedResourceError):
                    await stream.send_all(b"after send_eof")


async def test_a_closed_connection_raises_connection_closed_everywhere() -> None:
    async def closer(conn: quic.Connection) -> None:
        stream = await conn.accept_stream()
        await stream.receive_some(1)
        await conn.aclose(3, "done with you")

    async with serving(closer) as (_, server):
        async with quic.connect(HOST, server.port, client_config()) as conn:
            stream = await conn.open_stream()
            await stream.send_all(b"x")
            with trio.fail_after(PROMPTLY):
                with pytest.raises(quic.ConnectionClosed):
                    await stream.receive_some()
            calls = [
                stream.receive_some,
                partial(stream.send_all, b"y"),
                stream.send_eof,
                stream.wait_send_all_might_not_block,
                conn.open_stream,
                conn.accept_stream,
            ]
            for call in calls:
                with pytest.raises(quic.ConnectionClosed) as info:
                    await call()  # type: ignore[operator]
                assert info.value.error_code == 3 and info.value.by_peer
            stream.reset(1)
            stream.stop_sending(1)
            await stream.aclose()
            await conn.aclose()
            with pytest.raises(quic.ConnectionClosed):
                await conn.open_stream()


async def test_stream_misuse_raises_trio_exceptions_not_internal_ones() -> None:
    async def echo_once(conn: quic.Connection) -> None:
        stream = await conn.accept_stream()
        data = b""
        while chunk := await stream.receive_some():
            data += chunk
        await stream.send_all(data)  # type: ignore[union-attr]
        await stream.send_eof()  # type: ignore[union-attr]
        await trio.sleep_forever()

    async with serving(echo_once) as (_, server):
        async with quic.connect(HOST, server.port, client_config()) as conn:
            with trio.fail_after(PROMPTLY):
                stream = await conn.open_stream()
                await stream.send_all(b"abc")
                await stream.send_eof()
                assert await stream.receive_some() == b"abc"
                assert await stream.receive_some() == b""
                await trio.testing.wait_all_tasks_blocked()
                # Finished on both sides (and perhaps forgotten by the core).
                raised = []
                for call in (partial(stream.send_all, b"z"), stream.receive_some, stream.send_eof):
                    try:
                        await call()
                    except BaseException as exc:
                        raised.append(exc)
                assert all(_documented(exc) for exc in raised), raised
                stream.reset(1)
                stream.stop_sending(1)
                await stream.aclose()
                with pytest.raises(trio.ClosedResourceError):
                    await stream.receive_some()
