"""A received datagram that makes us send nothing asks for no flush (issue 13).

A reply to a sequential request is ack-eliciting, but its ACK is not due
before max_ack_delay (RFC 9000 §13.2.1): it rides on the next request. The
flush the received datagram used to ask for found nothing to send, and cost
a wake-up of the connection's timer task and an empty datagram build per
request on each side. The core now says when a flush is sure to be empty
(``QuicConnection.has_nothing_to_send``) and the trio shell skips it.
"""

from __future__ import annotations

from functools import partial

import pytest
import trio
import trio.testing
from quic_pair import client_config, handshake, make_pair, server_config
from test_perf_stream_credit import bidi_call

import ghostwire.quic as quic
from ghostwire.quic.net.connection import Connection
from ghostwire.quic.recovery import Space

REQUESTS = 20


def test_nothing_to_send_after_one_ack_eliciting_packet_until_the_ack_is_due() -> None:
    pair = handshake(make_pair())
    client, server = pair.client, pair.server
    assert server is not None and server.handshake_confirmed
    pair.advance(1.0)  # the handshake's ACKs settle
    assert server.has_nothing_to_send(pair.now)
    assert server.datagrams_to_send(pair.now) == []

    stream_id = client.open_stream()
    client.send_stream_data(stream_id, b"request", end_stream=True)
    assert not client.has_nothing_to_send(pair.now)  # STREAM data is queued
    (datagram, _), *rest = client.datagrams_to_send(pair.now)
    assert rest == []
    assert client.has_nothing_to_send(pair.now)
    server.receive_datagram(datagram, ("127.0.0.1", 40000), pair.now)

    # One ack-eliciting packet: the ACK may wait (RFC 9000 §13.2.1), and a
    # build agrees that there is nothing to send.
    assert server.has_nothing_to_send(pair.now)
    assert server.datagrams_to_send(pair.now) == []
    deadline = server.get_timer()
    assert deadline is not None and deadline <= pair.now + server.writer.max_ack_delay
    # Once the ACK's deadline passes, it is due.
    assert not server.has_nothing_to_send(pair.now + server.writer.max_ack_delay)
    assert len(server.datagrams_to_send(pair.now + server.writer.max_ack_delay)) == 1


def test_pending_frames_probes_and_closing_mean_something_to_send() -> None:
    pair = handshake(make_pair())
    client = pair.client
    pair.advance(1.0)
    assert client.has_nothing_to_send(pair.now)
    client.writer.request_probe(Space.APPLICATION, 1)  # RFC 9002 §6.2.4
    assert not client.has_nothing_to_send(pair.now)
    client.datagrams_to_send(pair.now)
    assert client.has_nothing_to_send(pair.now)
    client.writer.ping_pending = True
    assert not client.has_nothing_to_send(pair.now)
    client.datagrams_to_send(pair.now)
    client.close(0, "done", now=pair.now)  # CONNECTION_CLOSE goes out
    assert not client.has_nothing_to_send(pair.now)


def test_nothing_to_send_is_false_during_the_handshake() -> None:
    pair = make_pair()
    assert not pair.client.has_nothing_to_send(0.0)


async def _echo(conns: list[Connection], conn: Connection) -> None:
    conns.append(conn)

    async def serve(stream: quic.QuicStream | quic.QuicReceiveStream) -> None:
        assert isinstance(stream, quic.QuicStream)
        data = b""
        while chunk := await stream.receive_some():
            data += chunk
        await stream.send_all(data)
        await stream.send_eof()
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        async for stream in conn:
            nursery.start_soon(serve, stream)


def _count_flushes(conn: Connection, counter: list[int]) -> None:
    flush = conn._flush

    def counted() -> None:
        counter[0] += 1
        flush()

    conn._flush = counted  # type: ignore[method-assign]


@pytest.mark.parametrize("side", ["client", "server"])
async def test_sequential_requests_cost_one_flush_each(side: str) -> None:
    """Each side flushes once per request (the request, or the reply with
    the ACK of the request); the flush each received datagram asked for
    doubled that."""
    conns: list[Connection] = []
    flushes = [0]
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(
                partial(quic.serve, host="127.0.0.1"), partial(_echo, conns), 0, server_config()
            )
            async with quic.connect("127.0.0.1", server.port, client_config()) as conn:
                for _ in range(3):  # the handshake's stragglers settle
                    await bidi_call(conn, b"warm-up")
                await trio.testing.wait_all_tasks_blocked()
                _count_flushes(conn if side == "client" else conns[0], flushes)
                for i in range(REQUESTS):
                    payload = i.to_bytes(2, "big") * 50
                    assert await bidi_call(conn, payload) == payload
            nursery.cancel_scope.cancel()
    # One per request, and a few for ACKs whose timer fired on a slow machine.
    assert REQUESTS <= flushes[0] <= REQUESTS + 4, flushes[0]


async def test_a_lone_streams_fin_leaves_at_once_and_concurrent_ones_wait() -> None:
    """``send_eof`` on the connection's only stream sends at once (nothing can
    join the packet, and the flusher's turn is a scheduler pass later); with
    other streams open the flusher gathers the writes as before."""
    conns: list[Connection] = []
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(
                partial(quic.serve, host="127.0.0.1"), partial(_echo, conns), 0, server_config()
            )
            async with quic.connect("127.0.0.1", server.port, client_config()) as conn:
                await bidi_call(conn, b"warm-up")
                await trio.testing.wait_all_tasks_blocked()
                flushed_by: list[trio.lowlevel.Task] = []
                flush = conn._flush

                def recording() -> None:
                    flushed_by.append(trio.lowlevel.current_task())
                    flush()

                conn._flush = recording  # type: ignore[method-assign]
                me = trio.lowlevel.current_task()

                stream = await conn.open_stream()
                await stream.send_all(b"lone")
                await stream.send_eof()
                assert flushed_by == [me]  # sent from send_eof itself
                assert await stream.receive_some() == b"lone"
                await stream.aclose()

                await trio.testing.wait_all_tasks_blocked()
                other = await conn.open_stream()  # a second stream is open
                flushed_by.clear()
                stream = await conn.open_stream()
                await stream.send_all(b"pair")
                await stream.send_eof()
                assert me not in flushed_by  # the flusher's job
                assert await stream.receive_some() == b"pair"
                assert flushed_by and me not in flushed_by
                await stream.aclose()
                await other.aclose()
            nursery.cancel_scope.cancel()
