"""Concurrent requests share datagrams (issue 13, per-request cost).

Every RPC call is a new stream with a small request and a small reply. Writes
made by many tasks in the same scheduler pass must leave together: a flush is
asked for, not done, by ``send_all``/``send_eof`` and by received datagrams,
and the connection's flusher sends once the writing tasks have yielded. These
tests count datagrams (never time) on a loopback connection.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import cache, partial
from typing import Any

import pytest
import trio
import trio.testing
from net_watch import recording_sends
from quic_pair import client_config, handshake, make_pair, server_config, test_ca

import ghostwire.quic as quic
from ghostwire.certs import IssuedCertificate
from ghostwire.quic.net.connection import Connection
from ghostwire.quic.net.endpoint import Endpoint
from ghostwire.quic.net.scheduling import PIPELINE_EVENTS
from ghostwire.quic.recovery import Space

REQUESTS = 64
PAYLOAD = bytes(range(100))
# 64 requests of ~110 bytes on the wire fit in 7 datagrams of 1,200 bytes;
# one datagram per request would be 64.
MAX_DATAGRAMS = 16
# The replies of an ungated echo server, ACKs included.
MAX_REPLY_DATAGRAMS = 12


class GatedEchoServer:
    """Reads every stream to its end and replies only once ``expected``
    streams have arrived, so the server's counters show the requests alone,
    and the replies all leave in one scheduler pass."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.arrived: list[tuple[quic.QuicStream, bytes]] = []
        self.all_arrived = trio.Event()
        self.release = trio.Event()
        self.conn: Connection | None = None
        self.baseline = 0
        self.baseline_taken = trio.Event()

    async def handler(self, conn: Connection) -> None:
        self.conn = conn
        async with trio.open_nursery() as nursery:
            async for stream in conn:
                nursery.start_soon(self._serve, stream)

    async def _serve(self, stream: quic.QuicStream | quic.QuicReceiveStream) -> None:
        assert isinstance(stream, quic.QuicStream)
        data = b""
        while chunk := await stream.receive_some():
            data += chunk
        if not self.baseline_taken.is_set():  # the warm-up request: echo at once
            await self._reply(stream, data)
            return
        self.arrived.append((stream, data))
        if len(self.arrived) == self.expected:
            self.all_arrived.set()
        await self.release.wait()
        await self._reply(stream, data)

    @staticmethod
    async def _reply(stream: quic.QuicStream, data: bytes) -> None:
        await stream.send_all(data)
        await stream.send_eof()
        await stream.aclose()


@asynccontextmanager
async def gated_server(expected: int) -> AsyncIterator[tuple[quic.QuicServer, GatedEchoServer]]:
    gate = GatedEchoServer(expected)
    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            partial(quic.serve, host="127.0.0.1"), gate.handler, 0, server_config()
        )
        yield server, gate
        nursery.cancel_scope.cancel()


async def request(conn: Connection, payload: bytes) -> bytes:
    stream = await conn.open_stream()
    await stream.send_all(payload)
    await stream.send_eof()
    reply = b""
    while chunk := await stream.receive_some():
        reply += chunk
    await stream.aclose()
    return reply


async def request_burst(
    conn: Connection, while_in_flight: Callable[[], Awaitable[None]] | None = None
) -> list[bytes]:
    """The replies to ``REQUESTS`` requests whose tasks all wake, and write,
    in one scheduler pass; ``while_in_flight`` runs once they are woken."""
    go = trio.Event()
    replies: list[bytes] = []

    async def one_request() -> None:
        await go.wait()
        replies.append(await request(conn, PAYLOAD))

    async with trio.open_nursery() as nursery:
        for _ in range(REQUESTS):
            nursery.start_soon(one_request)
        await trio.testing.wait_all_tasks_blocked()
        go.set()
        if while_in_flight is not None:
            await while_in_flight()
    return replies


async def test_requests_issued_in_one_pass_share_datagrams() -> None:
    with trio.fail_after(20):
        async with gated_server(REQUESTS) as (server, gate):
            async with quic.connect("127.0.0.1", server.port, client_config()) as conn:
                assert await request(conn, b"warm-up") == b"warm-up"
                await trio.testing.wait_all_tasks_blocked()
                assert gate.conn is not None
                server_before = gate.conn.statistics().packets_received
                client_received_before = conn.statistics().packets_received
                gate.baseline_taken.set()

                request_datagrams = 0

                async def count_then_release() -> None:
                    nonlocal request_datagrams
                    assert gate.conn is not None
                    await gate.all_arrived.wait()
                    request_datagrams = gate.conn.statistics().packets_received - server_before
                    gate.release.set()  # every reply is written in one pass too

                replies = await request_burst(conn, count_then_release)
                reply_datagrams = conn.statistics().packets_received - client_received_before

    assert replies == [PAYLOAD] * REQUESTS
    assert 1 <= request_datagrams <= MAX_DATAGRAMS, request_datagrams
    assert 1 <= reply_datagrams <= MAX_DATAGRAMS, reply_datagrams


class EchoServer:
    """Answers every stream as soon as it is read to its end (no gate): the
    acceptor takes one stream per scheduler pass, so the replies to one
    datagram's requests are written over several passes."""

    def __init__(self) -> None:
        self.conn: Connection | None = None

    async def handler(self, conn: Connection) -> None:
        self.conn = conn
        async with trio.open_nursery() as nursery:
            async for stream in conn:
                nursery.start_soon(self._serve, stream)

    @staticmethod
    async def _serve(stream: quic.QuicStream | quic.QuicReceiveStream) -> None:
        assert isinstance(stream, quic.QuicStream)
        data = b""
        while chunk := await stream.receive_some():
            data += chunk
        await GatedEchoServer._reply(stream, data)


async def test_replies_written_over_several_passes_share_datagrams() -> None:
    """The flusher waits while accepted-to-be streams are queued and handlers
    keep writing, so the replies to a burst of requests leave together rather
    than a few per datagram."""
    echo = EchoServer()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(
                partial(quic.serve, host="127.0.0.1"), echo.handler, 0, server_config()
            )
            async with quic.connect("127.0.0.1", server.port, client_config()) as conn:
                assert await request(conn, b"warm-up") == b"warm-up"
                await trio.testing.wait_all_tasks_blocked()
                assert echo.conn is not None
                before = echo.conn.statistics().packets_sent
                replies = await request_burst(conn)
                server_sent = echo.conn.statistics().packets_sent - before
            nursery.cancel_scope.cancel()
    assert replies == [PAYLOAD] * REQUESTS
    # 64 replies fit in 7 datagrams; a flush per pass of the acceptor would
    # send about one datagram per reply.
    assert 1 <= server_sent <= MAX_DATAGRAMS, server_sent


async def test_replies_to_a_batch_leave_before_the_whole_batch_is_answered() -> None:
    """A batch of requests read in one drain is answered in parts: the
    replies answered inline as the requests' streams open are sent every
    ``PIPELINE_EVENTS`` streams, before the rest of the batch is answered, so
    the peer can work on them meanwhile, and they still share datagrams."""
    served: list[Connection] = []
    answered: list[bytes] = []

    async def echo_inline(request: bytes) -> bytes:
        answered.append(request)
        return request  # no await: serve_requests answers it as its stream opens

    async def handler(conn: Connection) -> None:
        served.append(conn)
        await conn.serve_requests(echo_inline, 4096)

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(
                partial(quic.serve, host="127.0.0.1"), handler, 0, server_config()
            )
            async with quic.connect("127.0.0.1", server.port, client_config()) as conn:
                assert await request(conn, b"warm-up") == b"warm-up"
                await trio.testing.wait_all_tasks_blocked()
                (server_conn,) = served
                endpoint = server_conn._endpoint
                # (requests answered so far, datagrams sent) per send
                sends: list[tuple[int, int]] = []

                def note(datagrams: list[tuple[bytes, Any]]) -> None:
                    sends.append((len(answered) - 1, len(datagrams)))  # the warm-up's excluded

                with recording_sends(endpoint, note):
                    replies = await request_burst(conn)  # one flush of about 7 datagrams
            nursery.cancel_scope.cancel()
    assert replies == [PAYLOAD] * REQUESTS
    # The first replies left with the batch partly answered, and more parts followed.
    assert 0 < sends[0][0] <= PIPELINE_EVENTS, sends
    assert sum(1 for answered_then, _ in sends if answered_then < REQUESTS) >= 2, sends
    assert sum(count for _, count in sends) <= MAX_DATAGRAMS, sends


async def _echo_inline(request: bytes) -> bytes:
    return request  # no await: serve_requests answers it as its stream opens


@cache
def long_chain() -> IssuedCertificate:
    """A certificate chain whose server flight takes three datagrams."""
    intermediate = test_ca().issue_intermediate("ghostwire test intermediate", key_type="rsa")
    names = ["localhost", "127.0.0.1"] + [f"host{i}.example.com" for i in range(60)]
    return intermediate.issue(names, key_type="rsa")


async def test_a_handshake_flight_read_in_one_drain_is_answered_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A client reading the server's flight of three datagrams in one drain
    answers it once, its ACKs with its Finished, not with an extra padded
    datagram of ACKs after the first ones."""
    chain = long_chain()
    config = server_config(certificate_chain=chain.chain, private_key=chain.private_key)
    flights: list[int] = []  # per send by the server
    answers: list[int] = []  # per send by the client while acting on a drain
    draining = False
    send_datagrams = Endpoint.send_datagrams
    after_drain = Endpoint._after_drain

    async def handler(conn: Connection) -> None:
        await trio.sleep_forever()

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(partial(quic.serve, host="127.0.0.1"), handler, 0, config)

            def recording_send(endpoint: Endpoint, datagrams: list[tuple[bytes, Any]]) -> None:
                if endpoint is server._endpoint:
                    flights.append(len(datagrams))
                elif draining:
                    answers.append(len(datagrams))
                send_datagrams(endpoint, datagrams)

            def recording_after_drain(endpoint: Endpoint) -> None:
                nonlocal draining
                draining = endpoint is not server._endpoint
                try:
                    after_drain(endpoint)
                finally:
                    draining = False

            monkeypatch.setattr(Endpoint, "send_datagrams", recording_send)
            monkeypatch.setattr(Endpoint, "_after_drain", recording_after_drain)
            async with quic.connect("127.0.0.1", server.port, client_config(pmtu_discovery=False)):
                await trio.testing.wait_all_tasks_blocked()
            monkeypatch.undo()
            nursery.cancel_scope.cancel()
    assert flights[0] >= 3, flights  # a flight of several datagrams
    # One datagram answers the flight: the ACKs and the Finished.
    assert answers == [1], answers


async def test_a_lone_request_is_not_held_back() -> None:
    """A request on an otherwise idle connection goes out on the flusher's
    next turn (no timer has to fire) and is answered, data and FIN in one packet."""
    with trio.fail_after(20):
        async with gated_server(0) as (server, _):
            async with quic.connect("127.0.0.1", server.port, client_config()) as conn:
                assert await request(conn, b"warm-up") == b"warm-up"
                await trio.testing.wait_all_tasks_blocked()
                before = conn.statistics().packets_sent
                assert await request(conn, b"warm-up again") == b"warm-up again"
                # The request and its FIN left together in one packet (plus at
                # most one ACK for the reply).
                assert conn.statistics().packets_sent - before <= 2


async def test_concurrent_writers_on_one_stream_each_get_their_data_out() -> None:
    """Deferred flushes lose nothing: many small writes from one task, each
    followed by a yield, all arrive in order."""
    received = trio.Event()
    got: list[bytes] = []

    async def handler(conn: Connection) -> None:
        stream = await conn.accept_stream()
        data = b""
        while chunk := await stream.receive_some():
            data += chunk
        got.append(data)
        received.set()

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(
                partial(quic.serve, host="127.0.0.1"), handler, 0, server_config()
            )
            async with quic.connect("127.0.0.1", server.port, client_config()) as conn:
                stream = await conn.open_stream()
                for i in range(200):
                    await stream.send_all(i.to_bytes(2, "big"))
                await stream.send_eof()
                await received.wait()
            nursery.cancel_scope.cancel()
    assert got == [b"".join(i.to_bytes(2, "big") for i in range(200))]


def test_a_short_datagram_ends_the_flush_but_each_probe_gets_its_own() -> None:
    """build_datagrams stops after a datagram with room to spare (nothing
    more to send), except while PTO probes are due: each is a packet. (No PMTU
    probes here: they would add datagrams.)"""
    pair = handshake(
        make_pair(client_config(pmtu_discovery=False), server_config(pmtu_discovery=False))
    )
    client = pair.client
    assert client.handshake_confirmed
    stream_id = client.open_stream()
    client.send_stream_data(stream_id, b"x" * 100, end_stream=True)
    assert len(client.datagrams_to_send(1.0)) == 1  # one short datagram, no empty build after
    client.writer.request_probe(Space.APPLICATION, 2)  # RFC 9002 §6.2.4: two probes
    assert len(client.datagrams_to_send(1.0)) == 2
