"""A handshake flight leaves before the connection dispatches the events of
the datagrams it answers (the server's first flight, the client's Finished):
the peer has it that much sooner. Not when the dispatch could write into the
flight: an HTTP/3 event hook, or a server's 0-RTT streams."""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest
import trio
from quic_pair import client_config, server_config

import ghostwire.quic as quic
from ghostwire.quic.net.connection import Connection
from ghostwire.quic.net.endpoint import Endpoint

HOST = "127.0.0.1"


async def _idle(conn: Connection) -> None:
    await conn.wait_closed()


async def test_a_handshake_flight_leaves_before_the_events_are_dispatched(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each side's steps, in order, for the datagram that completes its part
    of the handshake: the flight is sent, then the events dispatched."""
    steps: list[tuple[str, str]] = []
    process_events = Connection._process_events
    send_datagrams = Endpoint.send_datagrams

    def recording_events(self: Connection) -> None:
        steps.append(("client" if self._core.is_client else "server", "events"))
        process_events(self)

    def recording_send(self: Endpoint, datagrams: list[tuple[bytes, Any]]) -> None:
        side = "client" if any(core.is_client for core in self.connections) else "server"
        steps.append((side, "send"))
        send_datagrams(self, datagrams)

    monkeypatch.setattr(Connection, "_process_events", recording_events)
    monkeypatch.setattr(Endpoint, "send_datagrams", recording_send)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(partial(quic.serve, host=HOST), _idle, 0, server_config())
            async with quic.connect(HOST, server.port, client_config()):
                pass
            nursery.cancel_scope.cancel()
    server_steps = [what for side, what in steps if side == "server"]
    client_steps = [what for side, what in steps if side == "client"]
    assert server_steps[0] == "send", server_steps  # the first flight, then the events
    # The client: its ClientHello (and the events after it), then its
    # Finished, answering the server's flight, before that flight's events.
    assert client_steps[:3] == ["send", "events", "send"], client_steps
