"""``send_timeout_ms``: an HTTP/1.1 client that stops reading cannot hold a
connection's task forever. The write fails with ``SendTimeout`` and that
connection closes; the others are served as before.

No wall-clock waits: trio's MockClock jumps ahead whenever every task is
blocked (``autojump_clock``), so a 2 s or 30 s timeout passes at once."""

from __future__ import annotations

import logging
import socket

import pytest
import trio
import trio.testing
from test_shroud_serve import HOST, running

import ghostwire.shroud as ghostwire
from ghostwire.shroud.errors import NetworkError, SendTimeout
from ghostwire.shroud.sending import SEND_CHUNK, SendTimeoutStream

BIG = b"x" * (16 << 20)  # more than the kernel's socket buffers hold


async def test_a_write_the_peer_never_reads_times_out(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ours, peer = trio.testing.lockstep_stream_pair()  # a write waits for the reader
    stream = SendTimeoutStream(ours, 5.0)
    start = trio.current_time()
    with pytest.raises(SendTimeout) as info:
        await stream.send_all(b"hello")
    assert trio.current_time() - start >= 5.0  # not before the timeout (mock time)
    assert "5000 ms" in str(info.value)
    error = info.value
    assert isinstance(error, NetworkError)
    assert isinstance(error, trio.BrokenResourceError)  # the connection is gone
    assert isinstance(error, TimeoutError)
    # Broken from then on: later writes fail at once.
    with pytest.raises(SendTimeout):
        await stream.send_all(b"again")
    with pytest.raises(SendTimeout):
        await stream.wait_send_all_might_not_block()
    await stream.aclose()
    await peer.aclose()


async def test_a_slow_but_steady_reader_is_not_cut_off(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The timeout bounds progress (each SEND_CHUNK), not the whole write:
    a reader taking 64 KiB every 0.9 s of a 1 s timeout gets all 256 KiB."""
    ours, peer = trio.testing.lockstep_stream_pair()
    stream = SendTimeoutStream(ours, 1.0)
    piece = 64 << 10
    assert piece >= SEND_CHUNK
    data = bytes(range(256)) * (4 * piece // 256)
    received = bytearray()

    async def read_slowly() -> None:
        while len(received) < len(data):
            await trio.sleep(0.9)  # mock time
            received.extend(await peer.receive_some(piece))

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(read_slowly)
        await stream.send_all(data)
    assert bytes(received) == data
    assert trio.current_time() - start > 1.0  # longer than one timeout in all


def test_send_timeout_ms_is_a_setting_with_a_default() -> None:
    assert ghostwire.UnifiedServerConfig().send_timeout_ms == 30000
    assert ghostwire.UnifiedServerConfig(send_timeout_ms=250).send_timeout_ms == 250
    for bad in (0, -1, 1.5, "30000"):
        with pytest.raises(ghostwire.ConfigError, match="send_timeout_ms"):
            ghostwire.UnifiedServerConfig(send_timeout_ms=bad)
    with pytest.raises(ValueError):
        SendTimeoutStream(trio.testing.lockstep_stream_pair()[0], 0)


async def _get(port: int, path: str) -> bytes:
    stream = await trio.open_tcp_stream(HOST, port)
    async with stream:
        head = f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        await stream.send_all(head.encode())
        reply = bytearray()
        while chunk := await stream.receive_some(65536):
            reply += chunk
        return bytes(reply)


async def _non_reading_client(port: int) -> trio.SocketStream:
    """A TCP client with a tiny receive buffer (no autotuning): the server's
    writes block as soon as its own send buffer is full."""
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await sock.connect((HOST, port))
    return trio.SocketStream(sock)


async def _read_until_closed(stream: trio.abc.Stream) -> int:
    size = 0
    try:
        while chunk := await stream.receive_some(1 << 20):
            size += len(chunk)
    except trio.BrokenResourceError:  # reset: closed too
        pass
    return size


async def test_a_client_that_stops_reading_loses_its_connection_only(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="ghostwire.shroud")
    server = ghostwire.UnifiedServer(address=HOST, port=0, send_timeout_ms=2000)
    big_asked = trio.Event()

    def big(req: ghostwire.UnifiedRequest, res: ghostwire.UnifiedResponse) -> None:
        big_asked.set()
        res.body = BIG

    server.get("/big", big)
    server.get("/", lambda req, res: res.text("ok"))
    server.get("/peer", lambda req, res: res.text(req.remote_addr))
    with trio.fail_after(600):  # mock time: only a hang gets here
        async with running(server):
            assert server.http1_address is not None
            port = server.http1_address[1]
            stalled = await _non_reading_client(port)
            await stalled.send_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
            await big_asked.wait()
            # While its write is stuck, other connections are served.
            assert (await _get(port, "/")).endswith(b"\r\n\r\nok")
            # The stuck write gives up (the request is over) ...
            await server.stats_counter.wait_no_requests()
            # ... with SendTimeout, the setting's value in its message ...
            ended = [r.getMessage() for r in caplog.records if "connection ended" in r.getMessage()]
            assert any("SendTimeout" in m and "2000 ms" in m for m in ended), ended
            # ... and its connection was closed: the response stops short.
            assert await _read_until_closed(stalled) < len(BIG)
            await stalled.aclose()
            # The server goes on, and still sees who its clients are (through
            # the wrapped stream).
            assert (await _get(port, "/")).endswith(b"\r\n\r\nok")
            assert b"\r\n\r\n127.0.0.1:" in await _get(port, "/peer")
