"""The sans-IO connection: handshakes in memory, RFC 9000/9001 handshake rules."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from quic_pair import CLIENT_ADDR, SERVER_ADDR, Pair, client_config, make_pair, server_config

from ghostwire.quic.connection import ConnectionState, QuicConnection
from ghostwire.quic.demux import Demux
from ghostwire.quic.errors import TransportErrorCode
from ghostwire.quic.events import CloseReason, ConnectionTerminated, HandshakeCompleted
from ghostwire.quic.packet import QUIC_V1, QUIC_V2, PacketType, parse_header
from ghostwire.quic.recovery import Space
from ghostwire.quic.suites import CipherSuite
from ghostwire.quic.tls import Group

SUITES = list(CipherSuite)
GROUPS = [Group.X25519, Group.SECP256R1]
KEY_TYPES = ["ec", "rsa", "ed25519"]  # ecdsa_secp256r1_sha256, rsa_pss_rsae_sha256, ed25519


def _transfer(pair: Pair, payload: bytes) -> bytes:
    client, server = pair.client, pair.server
    assert server is not None
    stream_id = client.open_stream()
    client.send_stream_data(stream_id, payload, end_stream=True)
    received = bytearray()
    for _ in range(1000):
        pair.exchange()
        received += server.read_stream(stream_id)
        if server.stream_at_eof(stream_id):
            return bytes(received)
        pair.advance(0.01)
    raise AssertionError("transfer did not finish")


@pytest.mark.parametrize(
    ("suite", "group", "key_type"), list(itertools.product(SUITES, GROUPS, KEY_TYPES))
)
def test_handshake_matrix(suite: CipherSuite, group: Group, key_type: str) -> None:
    pair = make_pair(
        client_config(cipher_suites=[suite], groups=[group]),
        server_config(key_type, cipher_suites=[suite], groups=[group]),
    )
    pair.exchange()
    done = pair.events_of("client", HandshakeCompleted)
    assert done and done[0].cipher_suite == suite.tls_name
    assert pair.server is not None and pair.server.handshake_complete
    assert pair.server.tls.cipher_suite is suite
    assert _transfer(pair, b"x" * 5000) == b"x" * 5000


def test_hello_retry_request_when_the_guess_is_wrong() -> None:
    # The client sends a key share for X25519 only; the server takes only P-256.
    pair = make_pair(
        client_config(groups=[Group.X25519, Group.SECP256R1]),
        server_config(groups=[Group.SECP256R1]),
    )
    pair.exchange()
    assert pair.client.handshake_complete
    assert pair.client.tls.hello_retry_request_received
    assert pair.server is not None and pair.server.tls.hello_retry_request_sent


def test_client_initial_is_padded_to_1200_bytes() -> None:
    pair = make_pair()
    first = pair.client.datagrams_to_send(0.0)
    assert first and all(len(d) >= 1200 for d, _ in first)
    assert parse_header(first[0][0], 0, 8).packet_type is PacketType.INITIAL


def test_handshake_keys_discarded_and_handshake_confirmed() -> None:
    pair = make_pair()
    pair.exchange()
    server = pair.server
    assert server is not None
    for conn in (pair.client, server):
        assert conn.handshake_confirmed  # client: via HANDSHAKE_DONE (RFC 9001 §4.1.2)
        assert conn.spaces[Space.INITIAL].discarded
        assert conn.spaces[Space.HANDSHAKE].discarded
        assert conn.state is ConnectionState.CONNECTED


def test_server_respects_the_anti_amplification_limit() -> None:
    # RFC 9000 §8.1: before the client's address is validated the server
    # sends at most three times what it received, even when it retransmits.
    first_only = iter([False])
    pair = make_pair(server=server_config("rsa"))
    pair.drop_to_server = lambda datagram: next(first_only, True)
    pair.exchange()
    pair.advance(5.0)
    server = pair.server
    assert server is not None and not server.address_validated
    assert server.stats.bytes_received >= 1200
    assert 0 < server.stats.bytes_sent <= 3 * server.stats.bytes_received


def test_lost_server_flight_is_retransmitted() -> None:
    drops = iter([True, True])
    pair = make_pair()
    pair.drop_to_client = lambda datagram: next(drops, False)
    pair.exchange()
    assert not pair.client.handshake_complete
    pair.advance(3.0)  # PTOs fire and resend the lost CRYPTO data
    assert pair.client.handshake_confirmed


@pytest.mark.parametrize("side", ["client", "server"])
def test_application_close_reaches_the_peer(side: str) -> None:
    pair = make_pair()
    pair.exchange()
    assert pair.server is not None
    closer, peer = (pair.client, "server") if side == "client" else (pair.server, "client")
    closer.close(7, "done here", now=pair.now)
    pair.exchange()
    [event] = pair.events_of(peer, ConnectionTerminated)
    assert event.reason_kind is CloseReason.PEER
    assert (event.error_code, event.reason, event.is_application) == (7, "done here", True)
    # Both sides end up terminated once the closing/draining periods pass.
    pair.advance(5.0)
    assert pair.client.is_terminated and pair.server.is_terminated


def test_transport_close_before_the_handshake_completes_uses_initial_packets() -> None:
    pair = make_pair()
    pair.client.datagrams_to_send(0.0)  # the ClientHello is lost
    pair.client.close(TransportErrorCode.INTERNAL_ERROR, "giving up", is_application=False, now=0.0)
    datagrams = pair.client.datagrams_to_send(0.0)
    assert datagrams
    header = parse_header(datagrams[0][0], 0, 8)
    assert header.packet_type is PacketType.INITIAL  # RFC 9000 §10.2.3


def test_key_update_keeps_data_flowing() -> None:
    pair = make_pair()
    pair.exchange()
    assert pair.server is not None
    payload = bytes(range(256)) * 200
    assert _transfer(pair, payload) == payload  # a packet acked in the current phase (§6.1)
    before = pair.client.key_phases.send_phase
    pair.client.request_key_update()
    assert _transfer(pair, payload) == payload
    assert pair.client.key_phases.send_phase != before
    assert pair.server.key_phases.send_phase != before  # the peer followed (RFC 9001 §6.2)


def test_idle_timeout_terminates_silently() -> None:
    pair = make_pair(client_config(idle_timeout=2.0), server_config(idle_timeout=2.0))
    pair.exchange()
    pair.drop_to_client = pair.drop_to_server = lambda datagram: True
    pair.advance(10.0)
    [event] = pair.events_of("client", ConnectionTerminated)
    assert event.reason_kind is CloseReason.IDLE_TIMEOUT


# -- through the server's demultiplexer ------------------------------------------


def _demux_exchange(client: QuicConnection, demux: Demux, now: float = 0.0) -> list[Any]:
    """Run client <-> demux until quiet; returns the server connections made."""
    servers: list[QuicConnection] = []
    for _ in range(50):
        moved = False
        for datagram, _ in client.datagrams_to_send(now):
            moved = True
            result = demux.receive(datagram, CLIENT_ADDR, now)
            for reply, _ in result.replies:
                client.receive_datagram(reply, SERVER_ADDR, now)
            if result.connection is not None:
                if result.new_connection:
                    servers.append(result.connection)
                result.connection.receive_datagram(datagram, CLIENT_ADDR, now)
        for server in servers:
            for datagram, _ in server.datagrams_to_send(now):
                moved = True
                client.receive_datagram(datagram, SERVER_ADDR, now)
        if not moved:
            break
    return servers


def _client(**overrides: Any) -> QuicConnection:
    conn = QuicConnection(
        client_config(**overrides), peer_address=SERVER_ADDR, now=0.0, server_name="localhost"
    )
    conn.connect(0.0)
    return conn


def test_retry_validates_the_address_first() -> None:
    demux = Demux(server_config(retry=True))
    client = _client()
    servers = _demux_exchange(client, demux)
    assert demux.stats.retries_sent == 1
    assert client.handshake_confirmed
    assert servers and servers[0].address_validated
    assert servers[0].retry_scid is not None  # carried in transport parameters (§7.3)


def test_version_negotiation_for_an_unknown_version() -> None:
    demux = Demux(server_config(versions=[QUIC_V1]))
    client = _client(versions=[QUIC_V2])
    _demux_exchange(client, demux)
    assert demux.stats.version_negotiations_sent == 1
    events = []
    while (event := client.next_event()) is not None:
        events.append(event)
    [terminated] = [e for e in events if isinstance(e, ConnectionTerminated)]
    assert terminated.reason_kind is CloseReason.VERSION_NEGOTIATION
    assert "0x00000001" in terminated.reason


def test_quic_v2_handshake() -> None:
    pair = make_pair(client_config(versions=[QUIC_V2]), server_config(versions=[QUIC_V2]))
    pair.exchange()
    [done] = pair.events_of("client", HandshakeCompleted)
    assert done.version == QUIC_V2
    assert _transfer(pair, b"v2" * 1000) == b"v2" * 1000


def test_garbage_datagrams_are_ignored() -> None:
    pair = make_pair()
    pair.exchange()
    assert pair.server is not None
    for junk in (b"", b"\x00", b"\xff" * 50, b"\x40" + b"\x00" * 40, bytes(range(256))):
        pair.server.receive_datagram(junk, CLIENT_ADDR, pair.now)
        pair.client.receive_datagram(junk, SERVER_ADDR, pair.now)
    assert not pair.client.is_closed and not pair.server.is_closed
    assert _transfer(pair, b"still fine") == b"still fine"


def test_keep_alive_pings_hold_an_idle_connection_open() -> None:
    pair = make_pair(
        client_config(idle_timeout=3.0, keep_alive_interval=1.0), server_config(idle_timeout=3.0)
    )
    pair.exchange()
    pair.advance(30.0)  # ten idle timeouts without application traffic
    assert not pair.client.is_closed
    assert pair.server is not None and not pair.server.is_closed
    assert pair.client.stats.packets_sent > 20  # the PINGs


def test_connection_ids_are_issued_up_to_the_peers_limit() -> None:
    pair = make_pair(client_config(active_connection_id_limit=4))
    pair.exchange()
    # RFC 9000 §5.1.1: the server issues NEW_CONNECTION_IDs up to our limit.
    assert len(pair.client.peer_cids.available) == 4
    assert pair.server is not None and len(pair.server.peer_cids.available) >= 2


def test_stateless_reset_is_detected() -> None:
    demux = Demux(server_config())
    client = _client()
    servers = _demux_exchange(client, demux)
    assert client.handshake_confirmed
    demux.forget(servers[0])  # the server lost its state (a restart, say)
    stream_id = client.open_stream()
    client.send_stream_data(stream_id, b"anyone there? " * 4)  # big enough to trigger a reset
    _demux_exchange(client, demux, now=1.0)
    assert demux.stats.stateless_resets_sent >= 1
    events = []
    while (event := client.next_event()) is not None:
        events.append(event)
    [terminated] = [e for e in events if isinstance(e, ConnectionTerminated)]
    assert terminated.reason_kind is CloseReason.STATELESS_RESET  # RFC 9000 §10.3.1
    assert client.is_terminated


def test_stream_at_eof_of_a_stream_never_opened_raises() -> None:
    """Like reading it: a stream nobody opened is not "at EOF". One that was
    read to its FIN and forgotten still is."""
    from quic_pair import handshake

    from ghostwire.quic.stream_states import StreamStateError

    pair = handshake(make_pair())
    server = pair.server
    assert server is not None
    assert _transfer(pair, b"done") == b"done"  # client stream 0, read to EOF
    assert server.stream_at_eof(0)  # finished (and forgotten): still at EOF
    for never in (4, 8, 1, 3, 2, 400):  # later client streams; server and uni streams
        with pytest.raises(StreamStateError, match="not open"):
            server.stream_at_eof(never)
        with pytest.raises(StreamStateError, match="not open"):
            pair.client.stream_at_eof(never)
