"""Peers that break the rules get the RFC's error code; other connections carry on.

The misbehaving client is one of our own cores whose packets carry
hand-built frames, protected with its real keys, so the server sees
exactly what a buggy or hostile implementation would send.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from quic_pair import SERVER_ADDR, client_config, server_config

from ghostwire.quic import crypto_stream, packet_space, stream_recv
from ghostwire.quic.connection import QuicConnection
from ghostwire.quic.demux import Demux
from ghostwire.quic.errors import TransportErrorCode
from ghostwire.quic.events import CloseReason, ConnectionTerminated
from ghostwire.quic.frames import (
    CryptoFrame,
    MaxStreamDataFrame,
    NewConnectionIdFrame,
    PingFrame,
    StreamFrame,
    encode_frame,
)
from ghostwire.quic.packet import PacketType
from ghostwire.quic.packet_builder import PacketBuilder
from ghostwire.quic.recovery import Space

Address = tuple[str, int]


class Endpoint:
    """A server endpoint (demux + connections) and any number of clients."""

    def __init__(self) -> None:
        self.demux = Demux(server_config(initial_max_stream_data=1000, initial_max_data=5000))
        self.servers: dict[Address, QuicConnection] = {}

    def client(self, port: int) -> tuple[QuicConnection, Address]:
        conn = QuicConnection(
            client_config(), peer_address=SERVER_ADDR, now=0.0, server_name="localhost"
        )
        conn.connect(0.0)
        return conn, ("127.0.0.1", port)

    def deliver(self, datagram: bytes, addr: Address) -> None:
        result = self.demux.receive(datagram, addr, 0.0)
        if result.connection is not None:
            self.servers.setdefault(addr, result.connection)
            result.connection.receive_datagram(datagram, addr, 0.0)

    def exchange(self, client: QuicConnection, addr: Address) -> None:
        for _ in range(30):
            moved = False
            for datagram, _ in client.datagrams_to_send(0.0):
                moved = True
                self.deliver(datagram, addr)
            server = self.servers.get(addr)
            if server is not None:
                for datagram, _ in server.datagrams_to_send(0.0):
                    moved = True
                    client.receive_datagram(datagram, SERVER_ADDR, 0.0)
            if not moved:
                return


def hand_built(client: QuicConnection, packet_type: PacketType, *frames: bytes) -> bytes:
    """A datagram with one packet of ``packet_type`` carrying exactly ``frames``."""
    space_id = {PacketType.INITIAL: Space.INITIAL, PacketType.HANDSHAKE: Space.HANDSHAKE}.get(
        packet_type, Space.APPLICATION
    )
    space = client.spaces[space_id]
    keys = client.key_phases.send if space_id is Space.APPLICATION else space.send_keys
    assert keys is not None
    builder = PacketBuilder(
        max_size=1200,
        version=client.version,
        dcid=client.peer_cids.current.cid,
        scid=client.host_cid,
        key_phase=client.key_phases.send_phase,
    )
    assert builder.start_packet(space, packet_type, keys)
    for frame in frames:
        builder.payload.extend(frame)
    builder.mark_ack_eliciting()
    builder.end_packet()
    datagram, _ = builder.finish(1200 if packet_type is PacketType.INITIAL else 0, 0.0)
    return datagram


def stream(stream_id: int, offset: int, data: bytes, fin: bool = False) -> bytes:
    return encode_frame(StreamFrame(stream_id, offset, data, fin))


Attack = Callable[[QuicConnection], list[bytes]]

ATTACKS: dict[str, tuple[Attack, int]] = {
    # RFC 9000 §4.1: data beyond the stream's flow-control limit.
    "stream flow-control overrun": (
        lambda c: [hand_built(c, PacketType.ONE_RTT, stream(0, 990, b"x" * 20))],
        TransportErrorCode.FLOW_CONTROL_ERROR,
    ),
    # RFC 9000 §4.1: connection-level limit (5000) exceeded across streams.
    "connection flow-control overrun": (
        lambda c: [
            hand_built(c, PacketType.ONE_RTT, *(stream(4 * i, 0, b"y" * 1000) for i in range(6)))
        ],
        TransportErrorCode.FLOW_CONTROL_ERROR,
    ),
    # RFC 9000 §4.6: a stream id past MAX_STREAMS (100 bidirectional streams).
    "stream id past the limit": (
        lambda c: [hand_built(c, PacketType.ONE_RTT, stream(4 * 100, 0, b"z"))],
        TransportErrorCode.STREAM_LIMIT_ERROR,
    ),
    # RFC 9000 §4.5: data after the FIN that changes the final size.
    "data after FIN": (
        lambda c: [
            hand_built(c, PacketType.ONE_RTT, stream(0, 0, b"0123456789", fin=True)),
            hand_built(c, PacketType.ONE_RTT, stream(0, 10, b"more")),
        ],
        TransportErrorCode.FINAL_SIZE_ERROR,
    ),
    # RFC 9000 §19.10: MAX_STREAM_DATA for a stream the server never opened.
    "frame for a stream the server has not opened": (
        lambda c: [hand_built(c, PacketType.ONE_RTT, encode_frame(MaxStreamDataFrame(1, 10)))],
        TransportErrorCode.STREAM_STATE_ERROR,
    ),
    # RFC 9000 §12.4: STREAM frames are not allowed in Handshake packets.
    "frame in the wrong packet type": (
        lambda c: [hand_built(c, PacketType.HANDSHAKE, stream(0, 0, b"early"))],
        TransportErrorCode.PROTOCOL_VIOLATION,
    ),
    # RFC 9000 §12.4: an unknown frame type is a FRAME_ENCODING_ERROR.
    "unknown frame type": (
        lambda c: [hand_built(c, PacketType.ONE_RTT, b"\x40\x25")],
        TransportErrorCode.FRAME_ENCODING_ERROR,
    ),
    # RFC 9000 §19.8: a truncated STREAM frame.
    "truncated frame": (
        lambda c: [hand_built(c, PacketType.ONE_RTT, encode_frame(PingFrame()), b"\x0a\x00\x05ab")],
        TransportErrorCode.FRAME_ENCODING_ERROR,
    ),
}


@pytest.mark.parametrize("name", list(ATTACKS))
def test_misbehaving_peer_is_closed_with_the_right_code(name: str) -> None:
    attack, expected_code = ATTACKS[name]
    endpoint = Endpoint()
    good, good_addr = endpoint.client(50001)
    bad, bad_addr = endpoint.client(50002)
    endpoint.exchange(good, good_addr)
    if name == "frame in the wrong packet type":
        # Stop the handshake half-way: the client has Handshake keys but the
        # server has not discarded them yet.
        for datagram, _ in bad.datagrams_to_send(0.0):
            endpoint.deliver(datagram, bad_addr)
        for datagram, _ in endpoint.servers[bad_addr].datagrams_to_send(0.0):
            bad.receive_datagram(datagram, SERVER_ADDR, 0.0)
    else:
        endpoint.exchange(bad, bad_addr)
        assert bad.handshake_confirmed
    for datagram in attack(bad):
        endpoint.deliver(datagram, bad_addr)
    endpoint.exchange(bad, bad_addr)

    closes = [e for e in _events(bad) if isinstance(e, ConnectionTerminated)]
    assert closes, "the server did not close the misbehaving connection"
    assert closes[0].reason_kind is CloseReason.PEER
    assert closes[0].error_code == expected_code
    assert not closes[0].is_application

    # The well-behaved connection on the same endpoint keeps working.
    server = endpoint.servers[good_addr]
    assert not server.is_closed
    stream_id = good.open_stream()
    good.send_stream_data(stream_id, b"still here", end_stream=True)
    endpoint.exchange(good, good_addr)
    assert server.read_stream(stream_id) == b"still here"


def _closed_by_server_with(conn: QuicConnection) -> int:
    closes = [e for e in _events(conn) if isinstance(e, ConnectionTerminated)]
    assert closes, "the server did not close the misbehaving connection"
    assert closes[0].reason_kind is CloseReason.PEER and not closes[0].is_application
    return closes[0].error_code


def test_stream_data_in_too_many_pieces_closes_the_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # RFC 9000 §21.7: one-byte frames with gaps between them, sent back to
    # front, would make every insertion shift all the islands held before.
    monkeypatch.setattr(stream_recv, "MAX_ISLANDS", 40)
    endpoint = Endpoint()
    bad, bad_addr = endpoint.client(50002)
    endpoint.exchange(bad, bad_addr)
    pieces = [stream(0, offset, b"x") for offset in range(2 * 40, 0, -2)]
    endpoint.deliver(hand_built(bad, PacketType.ONE_RTT, *pieces), bad_addr)
    assert not endpoint.servers[bad_addr].is_closed  # 40 islands are within the limit
    endpoint.deliver(hand_built(bad, PacketType.ONE_RTT, stream(0, 200, b"x")), bad_addr)
    endpoint.exchange(bad, bad_addr)
    assert _closed_by_server_with(bad) == TransportErrorCode.PROTOCOL_VIOLATION


def test_crypto_data_in_too_many_pieces_closes_the_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The same before the handshake, in Initial packets anyone can build.
    monkeypatch.setattr(crypto_stream, "MAX_GAPS", 20)
    endpoint = Endpoint()
    bad, bad_addr = endpoint.client(50002)
    pieces = [encode_frame(CryptoFrame(offset, b"x")) for offset in range(2000, 1958, -2)]
    endpoint.deliver(hand_built(bad, PacketType.INITIAL, *pieces), bad_addr)
    for datagram, _ in endpoint.servers[bad_addr].datagrams_to_send(0.0):
        bad.receive_datagram(datagram, SERVER_ADDR, 0.0)
    assert _closed_by_server_with(bad) == TransportErrorCode.CRYPTO_BUFFER_EXCEEDED


def _new_cid(sequence_number: int, retire_prior_to: int) -> bytes:
    cid = sequence_number.to_bytes(8, "big")
    return encode_frame(NewConnectionIdFrame(sequence_number, retire_prior_to, cid, cid * 2))


def test_endless_retirements_close_the_connection() -> None:
    # RFC 9000 §5.1.2: NEW_CONNECTION_ID below Retire Prior To makes us send
    # RETIRE_CONNECTION_ID; the peer may not queue more than twice our
    # active_connection_id_limit (4) of them, else each frame cost time in
    # proportion to all those queued before.
    endpoint = Endpoint()
    bad, bad_addr = endpoint.client(50002)
    endpoint.exchange(bad, bad_addr)
    server = endpoint.servers[bad_addr]
    first = [_new_cid(1000, 1000)]
    # A retransmitted frame is queued once, however often it arrives.
    repeats = [_new_cid(1, 0)] * 20
    endpoint.deliver(hand_built(bad, PacketType.ONE_RTT, *first, *repeats), bad_addr)
    assert not server.is_closed
    assert server.peer_cids.pending_retirements().count(1) == 1
    # Distinct ones, all in one packet: more than 8 waiting is refused.
    fresh = [_new_cid(sequence_number, 0) for sequence_number in range(2, 40)]
    endpoint.deliver(hand_built(bad, PacketType.ONE_RTT, *fresh), bad_addr)
    endpoint.exchange(bad, bad_addr)
    assert _closed_by_server_with(bad) == TransportErrorCode.CONNECTION_ID_LIMIT_ERROR


def test_a_gap_after_every_packet_keeps_the_ack_record_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # RFC 9000 §12.3: a peer skipping a packet number after every packet, and
    # never acknowledging our ACKs, may not grow what we remember without end.
    monkeypatch.setattr(packet_space, "MAX_RECEIVED_RANGES", 16)
    endpoint = Endpoint()
    bad, bad_addr = endpoint.client(50002)
    endpoint.exchange(bad, bad_addr)
    server = endpoint.servers[bad_addr]
    space = bad.spaces[Space.APPLICATION]
    for _ in range(60):
        space.next_pn += 1  # skip one
        endpoint.deliver(hand_built(bad, PacketType.ONE_RTT, encode_frame(PingFrame())), bad_addr)
        assert len(server.spaces[Space.APPLICATION].received) <= 16
    assert not server.is_closed
    # The connection still works, and what it acknowledges is the newest.
    stream_id = bad.open_stream()
    bad.send_stream_data(stream_id, b"still here", end_stream=True)
    endpoint.exchange(bad, bad_addr)
    assert server.read_stream(stream_id) == b"still here"
    assert not bad.is_closed


def _events(conn: QuicConnection) -> list[object]:
    out: list[object] = []
    while (event := conn.next_event()) is not None:
        out.append(event)
    return out
