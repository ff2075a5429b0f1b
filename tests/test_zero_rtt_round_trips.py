"""Round trips to the first reply: 0-RTT saves one (RFC 9001 §4.6.1, RFC 8446 §2.3).

On the simulated network (fixed delays, no jitter) the count is exact: with
a 10 ms round trip, a 0-RTT request's reply reaches the client one round
trip after ``connect``, a resumed 1-RTT connect's after two. Over loopback
(the trio shell) what counts is that the server's handler answers 0-RTT
streams in the server's first flight, not in a datagram of its own after it.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
from netsim import Application, LinkConfig, Simulation
from quic_pair import client_config, server_config
from test_quic_resumption import packet_types

import ghostwire.quic as quic
from ghostwire.quic.connection import QuicConnection
from ghostwire.quic.events import Event, StreamReadable
from ghostwire.quic.net.endpoint import Endpoint
from ghostwire.quic.packet import PacketType
from ghostwire.quic.tls import MemoryTicketStore

RTT = 0.010
REQUEST = b"request" * 10


class Echo(Application):
    """Answers a stream once its FIN arrived, in the same step (no delay)."""

    def on_event(self, sim: Simulation, conn: QuicConnection, event: Event) -> None:
        if isinstance(event, StreamReadable):
            data = conn.read_stream(event.stream_id)
            if conn.stream_at_eof(event.stream_id):
                conn.send_stream_data(event.stream_id, b"re:" + data, end_stream=True)


class Requester(Application):
    """Sends one request (at once with 0-RTT keys, else once the handshake
    completes) and notes the fake time its whole reply arrived."""

    def __init__(self) -> None:
        self.stream_id: int | None = None
        self.reply = b""
        self.replied_at: float | None = None

    def send(self, conn: QuicConnection) -> None:
        self.stream_id = conn.open_stream()
        conn.send_stream_data(self.stream_id, REQUEST, end_stream=True)

    def on_event(self, sim: Simulation, conn: QuicConnection, event: Event) -> None:
        if self.stream_id is None and conn.handshake_complete:
            self.send(conn)
        if isinstance(event, StreamReadable) and event.stream_id == self.stream_id:
            self.reply += conn.read_stream(event.stream_id)
            if conn.stream_at_eof(event.stream_id):
                self.replied_at = sim.now


def connect_once(store: MemoryTicketStore, server: Any, *, early: bool) -> tuple[float, Simulation]:
    app = Requester()
    link = LinkConfig(delay=RTT / 2, bandwidth=None)
    sim = Simulation(
        uplink=link,
        downlink=link,
        client=client_config(session_tickets=store, early_data=early),
        server=server,
        client_app=app,
        server_app=Echo(),
    )
    if sim.client.zero_rtt_send_keys is not None:
        # Written before anything arrives: the request goes in 0-RTT packets.
        app.send(sim.client)
        sim.after_app_action(sim.client)
    sim.run(lambda: app.replied_at is not None)
    assert app.reply == b"re:" + REQUEST
    assert app.replied_at is not None
    replied_at = app.replied_at
    sim.run(deadline=sim.now + 10 * RTT)  # the ticket for the next connect
    return replied_at, sim


def test_0rtt_reply_after_one_round_trip_resumed_after_two() -> None:
    store = MemoryTicketStore()
    server = server_config("ed25519", early_data=True)
    full, _ = connect_once(store, server, early=False)
    assert 2 * RTT <= full < 2.5 * RTT and len(store) == 1

    resumed, sim = connect_once(store, server, early=False)
    assert sim.client.resumed and not sim.client.early_data_accepted
    assert 2 * RTT <= resumed < 2.5 * RTT  # ClientHello / flight; Finished + request / reply

    early, sim = connect_once(store, server, early=True)
    assert sim.client.resumed and sim.client.early_data_accepted
    assert RTT <= early < 1.5 * RTT  # ClientHello + request / flight + reply


# -- the trio shell over loopback ---------------------------------------------------


async def _serve_one_call(conn: quic.Connection) -> None:
    async def answer(stream: Any) -> None:
        async with stream:
            await stream.send_all(await stream.receive_all(1000), end_stream=True)

    await conn.serve_streams(answer)


@pytest.mark.parametrize("serving", ["async for", "serve_streams"])
async def test_server_reply_to_0rtt_rides_in_its_first_flight(
    monkeypatch: pytest.MonkeyPatch, serving: str
) -> None:
    """The server's handshake flight waits (a few scheduler passes) for the
    handler's reply to the 0-RTT request: one datagram carries both (also
    when ``serve_streams`` starts the stream's task, with no acceptor)."""
    from test_quic_api import _echo, running_server

    handler = _echo if serving == "async for" else _serve_one_call

    sent: list[tuple[Endpoint, bytes]] = []
    send_datagrams = Endpoint.send_datagrams

    def record(self: Endpoint, datagrams: list[tuple[bytes, Any]]) -> None:
        sent.extend((self, datagram) for datagram, _ in datagrams)
        send_datagrams(self, datagrams)

    monkeypatch.setattr(Endpoint, "send_datagrams", record)
    store = MemoryTicketStore()
    client = client_config(session_tickets=store, early_data=True)

    async def round_trip(port: int) -> bool:
        async with quic.connect("127.0.0.1", port, client) as conn:
            stream = await conn.open_stream()
            await stream.send_all(REQUEST)
            await stream.send_eof()
            reply = b""
            while chunk := await stream.receive_some():
                reply += chunk
            assert reply == REQUEST
            await conn.wait_handshake()
            if not len(store):
                await conn.ping()  # the ticket precedes the answer to this
            return conn.early_data_accepted

    with trio.fail_after(20):
        async with running_server(handler, server_config(early_data=True)) as server:
            assert not await round_trip(server.port)
            sent.clear()
            assert await round_trip(server.port)
    server_endpoint = server._endpoint
    first = next(datagram for endpoint, datagram in sent if endpoint is server_endpoint)
    assert packet_types(first) == [PacketType.INITIAL, PacketType.HANDSHAKE, PacketType.ONE_RTT]
