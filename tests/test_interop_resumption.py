"""Session resumption and 0-RTT against aioquic, in both roles (RFC 8446 §2.2, RFC 9001 §4.6).

aioquic's server issues tickets allowing 0-RTT and accepts 0-RTT whenever a
ticket it stored is offered; its client offers 0-RTT whenever its ticket
allows it. Each test asserts from aioquic's own state that it resumed
(``HandshakeCompleted.session_resumed``) and whether 0-RTT was accepted.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import pytest
import trio
from aioquic_peer import PeerLoop, PeerProtocol, PeerServer
from test_interop_aioquic import (
    HOST,
    Certs,
    aq_client_config,
    aq_server_config,
    certs,
    gw_client_config,
    gw_server,
    gw_server_config,
    read_all,
)

from ghostwire.quic import connect
from ghostwire.quic.tls import MemoryTicketStore

pytestmark = pytest.mark.interop
__all__ = ["certs"]  # the fixture, imported for pytest

PAYLOAD = b"resumed hello " * 50


# -- aioquic with ticket callbacks --------------------------------------------------


class AqTickets:
    """aioquic's ticket callbacks: a server's store, or the client's last ticket."""

    def __init__(self) -> None:
        self.by_id: dict[bytes, Any] = {}
        self.last: Any = None

    def add(self, ticket: Any) -> None:
        self.by_id[ticket.ticket] = ticket
        self.last = ticket

    def fetch(self, ticket_id: bytes) -> Any:
        return self.by_id.get(ticket_id)


@asynccontextmanager
async def aq_server(peer: PeerLoop, certs: Certs, tickets: AqTickets) -> AsyncIterator[PeerServer]:
    server = await peer.run(
        PeerServer.start(
            aq_server_config(certs),
            HOST,
            session_ticket_fetcher=tickets.fetch,
            session_ticket_handler=tickets.add,
        )
    )
    try:
        yield server
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(10):
            await peer.run(server.stop())


async def _handshake_and_ticket(
    protocol: PeerProtocol, configuration: Any, tickets: AqTickets
) -> Any:
    """aioquic's HandshakeCompleted on ``protocol``, once the new session
    ticket (sent after the handshake) also arrived, or 50 events passed."""
    # (not wait_connected(): after wait_connected=False it only sees a
    # handshake that completes while it waits)
    while protocol.handshake is None:
        await protocol.wait_progress()
    for _ in range(50):
        if tickets.last is not None and tickets.last is not configuration.session_ticket:
            break
        await protocol.wait_progress()
    return protocol.handshake


async def _aq_echo(port: int, configuration: Any, tickets: AqTickets) -> dict[str, Any]:
    """One aioquic client connection: ``echo`` on a stream opened before the
    handshake completes (0-RTT when the ticket allows it); what it saw."""
    from aioquic.asyncio.client import connect as aq_connect

    async with aq_connect(
        HOST,
        port,
        configuration=configuration,
        create_protocol=PeerProtocol,
        session_ticket_handler=tickets.add,
        wait_connected=False,
    ) as protocol:
        assert isinstance(protocol, PeerProtocol)
        stream = protocol.open_stream()
        stream.write(b"echo\n" + PAYLOAD, end_stream=True)
        protocol.transmit()
        echoed = await stream.read_all()
        handshake = await _handshake_and_ticket(protocol, configuration, tickets)
        return {
            "echoed": echoed,
            "resumed": handshake.session_resumed,
            "early_data_accepted": handshake.early_data_accepted,
        }


# -- our client, aioquic's server ---------------------------------------------------


async def _gw_echo(port: int, config: Any, payload: bytes = PAYLOAD) -> tuple[bytes, bool, bool]:
    async with connect(HOST, port, config) as conn:
        stream = await conn.open_stream()
        await stream.send_all(b"echo\n" + payload)
        await stream.send_eof()
        echoed = await read_all(stream)
        await conn.wait_handshake()
        # The ticket goes out with the server's handshake completion: before
        # the acknowledgement of a PING sent after ours.
        await conn.ping()
        return echoed, conn.resumed, conn.early_data_accepted


@pytest.mark.parametrize("early_data", [False, True], ids=["1rtt", "0rtt"])
async def test_gw_client_resumes_with_aioquic_server(
    peer: PeerLoop, certs: Certs, early_data: bool
) -> None:
    tickets = AqTickets()
    store = MemoryTicketStore()
    config = gw_client_config(certs, session_tickets=store, early_data=early_data)
    with trio.fail_after(30):
        async with aq_server(peer, certs, tickets) as server:
            echoed, resumed, _ = await _gw_echo(server.port, config)
            assert echoed == PAYLOAD and not resumed
            assert len(store) == 1 and tickets.by_id  # aioquic issued, we kept it
            echoed, resumed, early = await _gw_echo(server.port, config)
            assert echoed == PAYLOAD and resumed
            assert early is early_data
            handshakes = [c.handshake for c in server.connections]
            assert [h.session_resumed for h in handshakes if h] == [False, True]
            assert [h.early_data_accepted for h in handshakes if h] == [False, early_data]


async def test_gw_client_rejected_0rtt_resent_within_aioquic_lower_limits(
    peer: PeerLoop, certs: Certs
) -> None:
    """RFC 9001 §4.6.2: 0-RTT sent under the ticket's limits (aioquic's default
    1 MB windows) is refused by a server with 1 KB windows that does not know
    the ticket; it arrives once, resent under the new limits. (aioquic raises
    its own limits each time it sends, so it would not catch a resend beyond
    them: test_zero_rtt_rejected_limits does, against our server.)"""
    payload = bytes(range(256)) * 20
    store = MemoryTicketStore()
    config = gw_client_config(certs, session_tickets=store, early_data=True)
    lower = aq_server_config(certs, max_stream_data=1024, max_data=2048)
    with trio.fail_after(30):
        async with aq_server(peer, certs, AqTickets()) as server:
            assert (await _gw_echo(server.port, config))[0] == PAYLOAD
        assert len(store) == 1
        server = await peer.run(PeerServer.start(lower, HOST))
        try:
            echoed, resumed, early = await _gw_echo(server.port, config, payload)
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(10):
                await peer.run(server.stop())
    assert echoed == payload and not resumed and not early


# -- aioquic's client, our server ---------------------------------------------------


@pytest.mark.parametrize(
    "case", ["1rtt", "0rtt", "0rtt-rejected"], ids=["1rtt", "0rtt", "0rtt-rejected"]
)
async def test_aioquic_client_resumes_with_gw_server(
    peer: PeerLoop, certs: Certs, case: str
) -> None:
    secret = bytes(range(32))
    issuing = gw_server_config(certs, ticket_secret=secret, early_data=case != "1rtt")
    # The resumed connection goes to a server sharing the ticket keys, with
    # 0-RTT off in the rejected case: aioquic offers 0-RTT, we refuse it.
    resuming = gw_server_config(certs, ticket_secret=secret, early_data=case == "0rtt")
    tickets = AqTickets()
    with trio.fail_after(30):
        async with gw_server(issuing) as server:
            first = await peer.run(_aq_echo(server.port, aq_client_config(certs), tickets))
        assert first["echoed"] == PAYLOAD and not first["resumed"]
        ticket = tickets.last
        assert ticket is not None
        assert (ticket.max_early_data_size is not None) is (case != "1rtt")
        async with gw_server(resuming) as server:
            configuration = aq_client_config(certs, session_ticket=ticket)
            second = await peer.run(_aq_echo(server.port, configuration, tickets))
            _, conn = await server.next("connection")
            _, _, early = await server.next("stream")
        # The echo came back exactly once: rejected 0-RTT was resent by aioquic.
        assert second["echoed"] == PAYLOAD
        assert second["resumed"] and conn.resumed
        assert second["early_data_accepted"] is (case == "0rtt")
        assert conn.early_data_accepted is (case == "0rtt")
        assert early is (case == "0rtt")  # the stream says it came in 0-RTT


async def test_aioquic_client_replayed_ticket_gets_no_second_0rtt(
    peer: PeerLoop, certs: Certs
) -> None:
    tickets = AqTickets()
    with trio.fail_after(30):
        async with gw_server(gw_server_config(certs, early_data=True)) as server:
            await peer.run(_aq_echo(server.port, aq_client_config(certs), tickets))
            ticket = tickets.last
            results = []
            for _ in range(2):  # the same ticket twice: the second is a replay
                configuration = aq_client_config(certs, session_ticket=ticket)
                results.append(await peer.run(_aq_echo(server.port, configuration, tickets)))
        assert [r["echoed"] == PAYLOAD for r in results] == [True, True]
        assert [r["resumed"] for r in results] == [True, True]
        assert [r["early_data_accepted"] for r in results] == [True, False]


# -- aioquic's HTTP/3 client in 0-RTT, our HTTP/3 server (RFC 8470) ----------------


async def _aq_h3_early_requests(
    port: int, configuration: Any, tickets: AqTickets
) -> dict[str, Any]:
    """One aioquic HTTP/3 connection sending a GET and a POST at once (in
    0-RTT when its ticket allows it); the replies and what it saw."""
    import asyncio

    from aioquic.asyncio.client import connect as aq_connect
    from aioquic_h3_peer import H3PeerProtocol

    async with aq_connect(
        HOST,
        port,
        configuration=configuration,
        create_protocol=H3PeerProtocol,
        session_ticket_handler=tickets.add,
        wait_connected=False,
    ) as protocol:
        assert isinstance(protocol, H3PeerProtocol)
        authority = f"localhost:{port}"
        replies = await asyncio.gather(
            protocol.request("GET", authority, "/read"),
            protocol.request("POST", authority, "/pay", body=b"10 coins"),
        )
        handshake = await _handshake_and_ticket(protocol, configuration, tickets)
        return {
            "replies": [(reply.status, reply.body) for reply in replies],
            "early_data_accepted": handshake.early_data_accepted,
        }


async def test_aioquic_h3_client_0rtt_post_waits_for_the_handshake_on_gw_server(
    peer: PeerLoop, certs: Certs
) -> None:
    """aioquic's HTTP/3 client sends a GET and a POST in 0-RTT: both are
    marked ``early-data: 1`` on our server, and the POST runs only once the
    handshake completed (RFC 8470 §3), then both are answered."""
    import ghostwire.http3 as h3

    seen: list[tuple[str, str | None, bool]] = []

    async def handler(request: h3.Request) -> h3.Response:
        body = await request.read()
        complete = request._channel.session.conn.handshake_complete
        seen.append((request.method, request.header("early-data"), complete))
        return h3.Response(200, [], request.method.encode() + b" " + body)

    tickets = AqTickets()
    config = gw_server_config(certs, alpn=["h3"], early_data=True)
    configuration = aq_client_config(certs, alpn=["h3"])
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(partial(h3.serve, handler, 0, config, host=HOST))
            first = await peer.run(_aq_h3_early_requests(server.port, configuration, tickets))
            assert tickets.last is not None and not first["early_data_accepted"]
            seen.clear()
            configuration = aq_client_config(certs, alpn=["h3"], session_ticket=tickets.last)
            second = await peer.run(_aq_h3_early_requests(server.port, configuration, tickets))
            nursery.cancel_scope.cancel()
    assert second["early_data_accepted"]
    assert second["replies"] == [(200, b"GET "), (200, b"POST 10 coins")]
    assert sorted(method for method, _, _ in seen) == ["GET", "POST"]
    assert all(early == "1" for _, early, _ in seen)
    assert [complete for method, _, complete in seen if method == "POST"] == [True]
