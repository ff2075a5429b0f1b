"""A ``send_all`` cut off by a cancel scope after part of its data was queued
breaks the stream's send side: later sends raise ``StreamSendBroken`` and
``aclose`` sends RESET_STREAM (with ``Connection.handler_error_code``), never
a FIN after the partial data, so the peer cannot take a truncated message for
a whole one.

The server's tiny stream window (flow control) keeps the client's
``send_all`` of a large message blocked with part of it queued; the test
cancels it once the server has seen the stream's first bytes (no timing)."""

from __future__ import annotations

from functools import partial

import pytest
import trio
from quic_pair import client_config, server_config
from test_perf_task_steps import HOST

import ghostwire.quic as quic

WINDOW = 4096  # the server's per-stream receive window
BIG = b"m" * (256 << 10)  # far more than the window and the client's send buffer


class _Server:
    """Accepts one stream, tells the test, then reads it (when told to) to
    its end, recording how it ended."""

    def __init__(self) -> None:
        self.got_stream = trio.Event()
        self.read_now = trio.Event()
        self.done = trio.Event()
        self.received = 0
        self.outcome: BaseException | None = None
        self.eof = False

    async def handle(self, conn: quic.Connection) -> None:
        stream = await conn.accept_stream()
        assert isinstance(stream, (quic.QuicStream, quic.QuicReceiveStream))
        self.got_stream.set()
        await self.read_now.wait()
        try:
            while data := await stream.receive_some():
                self.received += len(data)
            self.eof = True
        except quic.StreamReset as exc:
            self.outcome = exc
        self.done.set()
        await trio.sleep_forever()  # keep the connection up until the test ends


@pytest.mark.parametrize("bidirectional", [True, False], ids=["bidi", "uni"])
async def test_cut_off_send_all_breaks_the_stream_and_aclose_resets(
    bidirectional: bool,
) -> None:
    server_side = _Server()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(
                partial(quic.serve, host=HOST),
                server_side.handle,
                0,
                server_config(initial_max_stream_data=WINDOW),
            )
            async with quic.connect(
                HOST, server.port, client_config(stream_send_buffer=16 << 10)
            ) as conn:
                stream = await conn.open_stream(bidirectional)
                scope = trio.CancelScope()
                finished = trio.Event()

                async def send() -> None:
                    with scope:
                        await stream.send_all(BIG)
                    finished.set()

                nursery.start_soon(send)
                # The server has the stream, so send_all has queued part of
                # BIG; it cannot have finished (the window holds it back).
                await server_side.got_stream.wait()
                assert not finished.is_set()
                scope.cancel()
                await finished.wait()
                assert scope.cancelled_caught

                with pytest.raises(quic.StreamSendBroken):
                    await stream.send_all(b"more")
                with pytest.raises(quic.StreamSendBroken):
                    await stream.send_eof()
                assert isinstance(quic.StreamSendBroken("x"), trio.BrokenResourceError)

                await stream.aclose()
                server_side.read_now.set()
                await server_side.done.wait()
                assert not server_side.eof, (
                    f"the peer saw a FIN after {server_side.received} of {len(BIG)} bytes"
                )
                assert isinstance(server_side.outcome, quic.StreamReset)
                assert server_side.outcome.error_code == conn.handler_error_code
                assert server_side.received < len(BIG)
            nursery.cancel_scope.cancel()


async def test_send_all_cancelled_before_writing_leaves_the_stream_usable() -> None:
    """Only a cut-off *after* queueing data breaks the stream: one cancelled
    at its first checkpoint wrote nothing, and the stream goes on."""
    received: list[bytes] = []
    done = trio.Event()

    async def handle(conn: quic.Connection) -> None:
        stream = await conn.accept_stream()
        assert isinstance(stream, quic.QuicStream)
        received.append(await stream.receive_all(1 << 20))
        done.set()
        await trio.sleep_forever()

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(partial(quic.serve, host=HOST), handle, 0, server_config())
            async with quic.connect(HOST, server.port, client_config()) as conn:
                stream = await conn.open_stream()
                await stream.send_all(b"first ")
                with trio.CancelScope() as scope:
                    scope.cancel()
                    await stream.send_all(BIG)
                assert scope.cancelled_caught
                await stream.send_all(b"second")
                await stream.send_eof()
                await done.wait()
                assert received == [b"first second"]
                await stream.aclose()
            nursery.cancel_scope.cancel()
