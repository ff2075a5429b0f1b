"""A client that changes address: NAT rebinding and migration (RFC 9000 §8.2, §9), sans-IO.

The pair is driven by hand here so that each datagram can be given the
source address a NAT or a moving client would give it.
"""

from __future__ import annotations

from typing import Any

from quic_pair import CLIENT_ADDR, SERVER_ADDR, Pair, handshake, make_pair

from ghostwire.quic.buffer import Reader
from ghostwire.quic.connection import QuicConnection
from ghostwire.quic.frames import FrameType, PathChallengeFrame, parse_frame
from ghostwire.quic.packet import parse_header
from ghostwire.quic.path import same_address

REBOUND = ("127.0.0.1", 40001)  # same host, new port: a NAT rebinding
ELSEWHERE = ("10.0.0.7", 50000)  # a new IP address: the client moved


def _established() -> tuple[Pair, QuicConnection, QuicConnection]:
    pair = handshake(make_pair())
    pair.advance(0.1)  # HANDSHAKE_DONE and its ACK settle
    server = pair.server
    assert server is not None and server.handshake_confirmed and pair.client.handshake_confirmed
    return pair, pair.client, server


def _client_sends(pair: Pair, source: Any, payload: bytes = b"moved" * 20) -> int:
    """The client sends stream data; the server receives it from ``source``."""
    client, server = pair.client, pair.server
    assert server is not None
    stream_id = client.open_stream()
    client.send_stream_data(stream_id, payload)
    size = 0
    for datagram, _ in client.datagrams_to_send(pair.now):
        server.receive_datagram(datagram, source, pair.now)
        size += len(datagram)
    return size


def _server_datagrams(pair: Pair) -> list[tuple[bytes, Any]]:
    assert pair.server is not None
    return pair.server.datagrams_to_send(pair.now)


def _frames(receiver: QuicConnection, datagram: bytes) -> list[Any]:
    """Decrypt a 1-RTT datagram the way ``receiver`` would and parse its frames."""
    frames: list[Any] = []
    original = receiver.receiver.process_payload

    def spy(payload: bytes, *args: Any) -> bool:
        reader = Reader(payload)
        while not reader.eof():
            frames.append(parse_frame(reader))
        return original(payload, *args)

    receiver.receiver.process_payload = spy  # type: ignore[method-assign,assignment]
    try:
        receiver.receive_datagram(datagram, receiver.peer_address, 0.0)
    finally:
        del receiver.receiver.process_payload
    return frames


def test_server_follows_a_nat_rebinding_and_validates_the_new_address() -> None:
    pair, client, server = _established()
    received = _client_sends(pair, REBOUND)
    assert server.peer_address == REBOUND
    assert not server.address_validated
    out = _server_datagrams(pair)
    assert out and all(addr == REBOUND for _, addr in out)
    # RFC 9000 §8.1/§9.3.1: at most three times what came from the new address.
    assert sum(len(d) for d, _ in out) <= 3 * received
    frames = _frames(client, out[0][0])
    challenges = [f for f in frames if isinstance(f, PathChallengeFrame)]
    assert len(challenges) == 1
    # The client answers (to where it believes the server is); the response
    # arrives from the new address and validates it.
    for datagram, addr in client.datagrams_to_send(pair.now):
        assert addr == SERVER_ADDR
        server.receive_datagram(datagram, REBOUND, pair.now)
    assert server.address_validated
    assert server.path.migrations == 1  # type: ignore[unreachable]  # mypy kept the old value
    assert server.path.deadline is None
    # A port-only change keeps the RTT estimate (RFC 9000 §9.4 allows it).
    assert server.recovery.rtt.has_sample


def test_path_challenge_is_padded_when_the_budget_allows() -> None:
    pair, client, _server = _established()
    _client_sends(pair, REBOUND, b"x" * 1000)  # about 1 KB received: 3 KB of budget
    out = _server_datagrams(pair)
    first = out[0][0]
    assert any(isinstance(f, PathChallengeFrame) for f in _frames(client, first))
    assert len(first) >= 1200  # RFC 9000 §8.2.1


def test_path_response_is_padded() -> None:
    pair, client, server = _established()
    _client_sends(pair, REBOUND, b"x" * 1000)
    for datagram, _ in _server_datagrams(pair):
        client.receive_datagram(datagram, SERVER_ADDR, pair.now)
    replies = client.datagrams_to_send(pair.now)
    carrying = [
        d
        for d, _ in replies
        if any(f.frame_type == FrameType.PATH_RESPONSE for f in _frames(server, d))
    ]
    assert carrying and all(len(d) >= 1200 for d in carrying)  # RFC 9000 §8.2.2


def test_failed_validation_returns_to_the_old_address() -> None:
    pair, _client, server = _established()
    _client_sends(pair, ELSEWHERE)
    assert server.peer_address == ELSEWHERE
    _server_datagrams(pair)  # the challenge goes nowhere
    deadline = server.path.deadline
    assert deadline is not None
    pair.now = deadline
    server.handle_timer(pair.now)
    assert server.peer_address == CLIENT_ADDR  # RFC 9000 §9.3.2
    assert server.address_validated
    assert server.path.deadline is None


def test_old_packets_from_a_new_address_do_not_move_the_server() -> None:
    pair, client, server = _established()
    stream_id = client.open_stream()
    client.send_stream_data(stream_id, b"first")
    first = client.datagrams_to_send(pair.now)
    client.send_stream_data(stream_id, b"second")
    second = client.datagrams_to_send(pair.now)
    for datagram, _ in second:
        server.receive_datagram(datagram, CLIENT_ADDR, pair.now)
    for datagram, _ in first:  # reordered, and from elsewhere: not the highest number
        server.receive_datagram(datagram, ELSEWHERE, pair.now)
    assert server.peer_address == CLIENT_ADDR
    assert server.path.migrations == 0


def test_higher_packets_from_the_validated_address_end_a_spurious_migration() -> None:
    pair, _client, server = _established()
    _client_sends(pair, ELSEWHERE)  # e.g. a forged copy from an attacker
    assert server.peer_address == ELSEWHERE
    _client_sends(pair, CLIENT_ADDR)
    assert server.peer_address == CLIENT_ADDR
    assert server.address_validated
    assert server.path.deadline is None


def test_new_ip_address_restarts_congestion_control_once_validated() -> None:
    pair, client, server = _established()
    server.recovery.congestion.congestion_window *= 4
    _client_sends(pair, ELSEWHERE)
    for datagram, _ in _server_datagrams(pair):
        client.receive_datagram(datagram, SERVER_ADDR, pair.now)
    for datagram, _ in client.datagrams_to_send(pair.now):
        server.receive_datagram(datagram, ELSEWHERE, pair.now)
    assert server.address_validated
    fresh = type(server.recovery.congestion)(max_datagram_size=1200)
    assert server.recovery.congestion.congestion_window == fresh.congestion_window  # §9.4
    assert not server.recovery.rtt.has_sample


def test_migrating_client_with_a_new_connection_id_gets_a_new_one_back() -> None:
    pair, client, server = _established()
    pair.exchange()
    assert len(client.peer_cids.available) > 1 and len(server.peer_cids.available) > 1
    before = server.peer_cids.current.cid
    _client_sends(pair, CLIENT_ADDR)  # the server learns which ID the client uses
    assert client.peer_cids.use_next()  # the client moves on purpose, with a fresh ID
    _client_sends(pair, ELSEWHERE)
    assert server.peer_address == ELSEWHERE
    after = server.peer_cids.current.cid
    assert after != before  # RFC 9000 §9.5
    out = _server_datagrams(pair)
    assert parse_header(out[0][0], 0, 8).dcid == after


def test_client_ignores_packets_from_an_unknown_server_address() -> None:
    pair, client, server = _established()
    stream_id = server.open_stream()
    server.send_stream_data(stream_id, b"from somewhere else")
    before = client.stats.bytes_received
    for datagram, _ in server.datagrams_to_send(pair.now):
        client.receive_datagram(datagram, ("127.0.0.1", 9999), pair.now)  # RFC 9000 §9
    assert client.stats.bytes_received == before
    assert client.read_stream(stream_id) == b""


def test_same_address_ignores_ipv6_flow_info() -> None:
    assert same_address(("::1", 443, 0, 0), ("::1", 443, 5, 0))
    assert not same_address(("::1", 443, 0, 0), ("::1", 444, 0, 0))
