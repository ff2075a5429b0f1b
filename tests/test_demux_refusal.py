"""A refused connection attempt gets a well-formed CONNECTION_CLOSE whatever
the reason phrase (RFC 9000 §19.19: its length is in bytes of UTF-8)."""

from __future__ import annotations

import pytest
from quic_pair import CLIENT_ADDR, SERVER_ADDR, client_config, server_config

from ghostwire.quic.connection import QuicConnection
from ghostwire.quic.demux import MAX_REFUSE_REASON, Demux
from ghostwire.quic.errors import TransportErrorCode
from ghostwire.quic.events import ConnectionTerminated


def _refused_with(reason: str) -> ConnectionTerminated:
    demux = Demux(server_config())
    demux.refusing = reason
    client = QuicConnection(
        client_config(), peer_address=SERVER_ADDR, now=0.0, server_name="localhost"
    )
    client.connect(0.0)
    [(initial, _)] = client.datagrams_to_send(0.0)
    received = demux.receive(initial, CLIENT_ADDR, 0.0)
    assert received.connection is None and demux.stats.connections_refused == 1
    [(reply, _)] = received.replies
    client.receive_datagram(reply, SERVER_ADDR, 0.0)
    events = []
    while (event := client.next_event()) is not None:
        events.append(event)
    [terminated] = [e for e in events if isinstance(e, ConnectionTerminated)]
    assert terminated.error_code == TransportErrorCode.CONNECTION_REFUSED
    return terminated


@pytest.mark.parametrize("reason", ["server is shutting down", "arrêt du serveur ⏻ 停止"])
def test_the_reason_phrase_arrives_intact(reason: str) -> None:
    assert _refused_with(reason).reason == reason


def test_a_long_reason_phrase_is_cut_on_a_character_boundary() -> None:
    reason = "é" * 2000  # 4000 bytes: more than an Initial packet holds
    got = _refused_with(reason).reason
    assert got == "é" * (MAX_REFUSE_REASON // 2)
