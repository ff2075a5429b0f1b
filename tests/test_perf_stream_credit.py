"""Openers waiting for stream credit (MAX_STREAMS) are woken a batch at a time.

``open_stream`` parks while the peer's stream limit is used up; each
MAX_STREAMS wakes only as many openers as it allows new streams (not every
waiter, which cost a task step per waiter per batch with a thousand RPC calls
in flight). These tests check that nobody is stranded by that: every opener
gets its stream, bidirectional and unidirectional ones (separate limits)
alike, including when some waiters are cancelled while parked.
"""

from __future__ import annotations

from functools import partial

import trio
import trio.testing
from quic_pair import client_config, server_config

import ghostwire.quic as quic
from ghostwire.quic.net.connection import Connection

BIDI_LIMIT = 4
UNI_LIMIT = 2


async def drain(conn: Connection) -> None:
    """Read every stream to its end and answer the bidirectional ones."""

    async def serve(stream: quic.QuicStream | quic.QuicReceiveStream) -> None:
        data = b""
        while chunk := await stream.receive_some():
            data += chunk
        if isinstance(stream, quic.QuicStream):
            await stream.send_all(data)
            await stream.send_eof()
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        async for stream in conn:
            nursery.start_soon(serve, stream)


async def bidi_call(conn: Connection, payload: bytes) -> bytes:
    stream = await conn.open_stream()
    await stream.send_all(payload)
    await stream.send_eof()
    reply = b""
    while chunk := await stream.receive_some():
        reply += chunk
    await stream.aclose()
    return reply


async def uni_send(conn: Connection, payload: bytes) -> None:
    stream = await conn.open_stream(bidirectional=False)
    await stream.send_all(payload)
    await stream.aclose()


async def test_every_waiting_opener_gets_a_stream() -> None:
    config = server_config(max_streams_bidi=BIDI_LIMIT, max_streams_uni=UNI_LIMIT)
    replies: list[bytes] = []
    uni_done = 0

    async def call(i: int) -> None:
        replies.append(await bidi_call(conn, i.to_bytes(2, "big")))

    async def send_uni(i: int) -> None:
        nonlocal uni_done
        await uni_send(conn, i.to_bytes(2, "big"))
        uni_done += 1

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(partial(quic.serve, host="127.0.0.1"), drain, 0, config)
            async with quic.connect("127.0.0.1", server.port, client_config()) as conn:
                async with trio.open_nursery() as calls:
                    for i in range(60):
                        calls.start_soon(call, i)
                    for i in range(20):
                        calls.start_soon(send_uni, i)
            nursery.cancel_scope.cancel()
    assert sorted(replies) == [i.to_bytes(2, "big") for i in range(60)]
    assert uni_done == 20


async def test_cancelled_waiters_strand_no_credit() -> None:
    """Openers cancelled while parked leave the lot; the credit of the next
    MAX_STREAMS goes to those still waiting."""
    config = server_config(max_streams_bidi=BIDI_LIMIT)
    replies: list[bytes] = []
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(partial(quic.serve, host="127.0.0.1"), drain, 0, config)
            async with quic.connect("127.0.0.1", server.port, client_config()) as conn:
                # Use up the limit with streams left open, so openers park.
                held = [await conn.open_stream() for _ in range(BIDI_LIMIT)]
                async with trio.open_nursery() as waiters:

                    async def doomed_opener() -> None:
                        await conn.open_stream()
                        raise AssertionError("no credit was given yet")

                    async def opener(i: int) -> None:
                        replies.append(await bidi_call(conn, bytes([i])))

                    async with trio.open_nursery() as doomed:
                        for _ in range(BIDI_LIMIT):
                            doomed.start_soon(doomed_opener)
                        await trio.testing.wait_all_tasks_blocked()
                        for i in range(10):
                            waiters.start_soon(opener, i)
                        await trio.testing.wait_all_tasks_blocked()
                        # The first parked leave before any credit comes.
                        doomed.cancel_scope.cancel()
                    for stream in held:  # finishing these returns their credit
                        await stream.send_eof()
                        while await stream.receive_some():
                            pass
                        await stream.aclose()
            nursery.cancel_scope.cancel()
    assert sorted(replies) == [bytes([i]) for i in range(10)]
