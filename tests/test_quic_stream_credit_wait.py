"""``Connection.wait_stream_credit``: wait for the peer's stream credit
(MAX_STREAMS, RFC 9000 §4.6) without opening a stream."""

from __future__ import annotations

from functools import partial

import pytest
import trio
import trio.testing
from quic_pair import client_config, server_config
from test_perf_stream_credit import drain

import ghostwire.quic as quic
from ghostwire.quic.net.connection import Connection


async def finish(stream: quic.QuicStream) -> None:
    """End a stream both ways, which gives its credit back to the client."""
    await stream.send_eof()
    while await stream.receive_some():
        pass
    await stream.aclose()


async def test_returns_at_once_with_credit_and_is_a_checkpoint() -> None:
    config = server_config(max_streams_bidi=2, max_streams_uni=1)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(partial(quic.serve, host="127.0.0.1"), drain, 0, config)
            async with quic.connect("127.0.0.1", server.port, client_config()) as conn:
                await conn.wait_stream_credit()
                await conn.wait_stream_credit(bidirectional=False)
                with trio.CancelScope() as scope:
                    scope.cancel()
                    with pytest.raises(trio.Cancelled):
                        await conn.wait_stream_credit()
                # It opened nothing: both streams are still there to open.
                held = [await conn.open_stream(), await conn.open_stream()]
                # The limits are separate: the other kind still has credit.
                await conn.wait_stream_credit(bidirectional=False)
                uni = await conn.open_stream(bidirectional=False)
                for stream in held:
                    await finish(stream)
                await uni.aclose()
            nursery.cancel_scope.cancel()


async def test_waits_for_credit_and_passes_the_wakeup_to_an_opener() -> None:
    """With the limit used up, a waiter parks ahead of an opener; the one
    stream MAX_STREAMS gives back wakes the waiter, and the opener behind it
    gets the stream (the waiter took none)."""
    config = server_config(max_streams_bidi=1)
    order: list[str] = []
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(partial(quic.serve, host="127.0.0.1"), drain, 0, config)
            async with quic.connect("127.0.0.1", server.port, client_config()) as conn:
                held = await conn.open_stream()

                async def wait() -> None:
                    await conn.wait_stream_credit()
                    order.append("credit")

                async def open_one() -> None:
                    stream = await conn.open_stream()
                    order.append("opened")
                    await finish(stream)

                async with trio.open_nursery() as tasks:
                    tasks.start_soon(wait)
                    await trio.testing.wait_all_tasks_blocked()
                    tasks.start_soon(open_one)
                    await trio.testing.wait_all_tasks_blocked()
                    assert order == []
                    await finish(held)
            nursery.cancel_scope.cancel()
    assert sorted(order) == ["credit", "opened"]


async def test_is_cancellable_while_waiting() -> None:
    config = server_config(max_streams_bidi=1)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(partial(quic.serve, host="127.0.0.1"), drain, 0, config)
            async with quic.connect("127.0.0.1", server.port, client_config()) as conn:
                held = await conn.open_stream()
                async with trio.open_nursery() as tasks:
                    tasks.start_soon(conn.wait_stream_credit)
                    await trio.testing.wait_all_tasks_blocked()
                    tasks.cancel_scope.cancel()  # (the waiter is parked: it leaves)
                assert tasks.cancel_scope.cancelled_caught
                await finish(held)
                await conn.wait_stream_credit()  # the credit came back
            nursery.cancel_scope.cancel()


async def test_raises_when_the_connection_closes() -> None:
    config = server_config(max_streams_bidi=1)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(partial(quic.serve, host="127.0.0.1"), drain, 0, config)
            async with quic.connect("127.0.0.1", server.port, client_config()) as conn:
                await conn.open_stream()
                raised: list[BaseException] = []

                async def wait(c: Connection) -> None:
                    with pytest.raises(quic.ConnectionClosed) as info:
                        await c.wait_stream_credit()
                    raised.append(info.value)

                async with trio.open_nursery() as tasks:
                    tasks.start_soon(wait, conn)
                    await trio.testing.wait_all_tasks_blocked()
                    assert raised == []
                    await conn.aclose()
                assert len(raised) == 1
                with pytest.raises(quic.ConnectionClosed):  # and at once, once closed
                    await conn.wait_stream_credit()
            nursery.cancel_scope.cancel()


def test_stream_too_large_is_exported() -> None:
    from ghostwire.quic.net import exceptions

    assert "StreamTooLarge" in quic.__all__
    assert quic.StreamTooLarge is exceptions.StreamTooLarge
    assert issubclass(quic.StreamTooLarge, quic.QuicError)


async def test_open_stream_nowait_opens_without_a_schedule_point_or_says_none() -> None:
    """It opens a stream as open_stream does (a plain function: no schedule
    point); at the peer's limit it returns None and opens nothing (the credit stays for
    open_stream); on a closed connection it raises as open_stream does."""
    config = server_config(max_streams_bidi=1)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(partial(quic.serve, host="127.0.0.1"), drain, 0, config)
            async with quic.connect("127.0.0.1", server.port, client_config()) as conn:
                stream = conn.open_stream_nowait()
                assert isinstance(stream, quic.QuicStream)
                assert conn.open_stream_nowait() is None  # the limit (1) is used up
                await finish(stream)
                # The credit MAX_STREAMS gives back is there for the next stream.
                with trio.fail_after(5):
                    await conn.wait_stream_credit()
                again = conn.open_stream_nowait()
                assert again is not None
                await finish(again)
                await conn.aclose()
                with pytest.raises(quic.ConnectionClosed):
                    conn.open_stream_nowait()
            nursery.cancel_scope.cancel()
