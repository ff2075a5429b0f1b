"""Session resumption and 0-RTT between two sans-IO connections (RFC 9001 §4.6)."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from quic_pair import Pair, client_config, make_pair, server_config

from ghostwire.quic.config import ClientConfig, ServerConfig
from ghostwire.quic.events import HandshakeCompleted, StreamOpened
from ghostwire.quic.packet import PacketType, parse_header
from ghostwire.quic.tls import MemoryTicketStore, SessionTicket


def connect(client: ClientConfig, server: ServerConfig) -> Pair:
    pair = make_pair(client, server)
    pair.exchange()
    assert pair.events_of("client", HandshakeCompleted)
    pair.advance(0.1)  # the NewSessionTicket, HANDSHAKE_DONE and their ACKs
    return pair


def packet_types(datagram: bytes) -> list[PacketType]:
    types, offset = [], 0
    while offset < len(datagram):
        header = parse_header(datagram, offset, 8)
        types.append(header.packet_type)
        offset = header.end
        if not header.is_long:
            break
    return types


class Recorder:
    """Records the packet types of the datagrams a filter sees (drops none)."""

    def __init__(self) -> None:
        self.types: list[PacketType] = []

    def __call__(self, datagram: bytes) -> bool:
        self.types += packet_types(datagram)
        return False


def configs(
    *, early_client: bool = False, early_server: bool = False, **server: Any
) -> tuple[ClientConfig, ServerConfig, MemoryTicketStore]:
    store = MemoryTicketStore()
    return (
        client_config(session_tickets=store, early_data=early_client),
        server_config(early_data=early_server, **server),
        store,
    )


def test_ticket_then_resumed_connection() -> None:
    client, server, store = configs()
    first = connect(client, server)
    assert not first.client.resumed and not first.server.resumed  # type: ignore[union-attr]
    assert len(store) == 1
    assert [e.session_resumed for e in first.events_of("client", HandshakeCompleted)] == [False]
    assert [e.session_resumed for e in first.events_of("server", HandshakeCompleted)] == [False]
    second = connect(client, server)
    assert second.client.resumed and second.server.resumed  # type: ignore[union-attr]
    # Both sides' events say so (the server's too: it accepted the PSK).
    assert [e.session_resumed for e in second.events_of("client", HandshakeCompleted)] == [True]
    assert [e.session_resumed for e in second.events_of("server", HandshakeCompleted)] == [True]
    assert not second.client.early_data_accepted
    assert second.client.tls.peer_certificates == []
    assert len(store) == 1  # the used ticket is gone, a new one came


def test_no_store_no_ticket_no_resumption() -> None:
    server = server_config()
    first = connect(client_config(), server)
    assert first.client.tls.session_tickets == []
    assert not connect(client_config(), server).client.resumed


def test_server_without_tickets() -> None:
    client, _, store = configs()
    connect(client, server_config(session_tickets=False))
    assert len(store) == 0


def test_persisted_ticket_resumes() -> None:
    client, server, store = configs()
    connect(client, server)
    saved = store.take("localhost", ["test"])
    assert saved is not None
    restored = MemoryTicketStore()
    restored.put(SessionTicket.from_bytes(saved.to_bytes()))
    assert connect(client_config(session_tickets=restored), server).client.resumed


def test_ticket_from_another_server_is_a_full_handshake() -> None:
    client, server, _ = configs(early_client=True, early_server=True)
    connect(client, server)
    pair = connect(client, server_config(early_data=True))  # other ticket keys
    assert not pair.client.resumed and not pair.client.early_data_accepted
    assert pair.client.tls.peer_certificates


def send_early(pair: Pair, data: bytes) -> int:
    stream_id = pair.client.open_stream()
    pair.client.send_stream_data(stream_id, data, end_stream=True)
    return stream_id


def early_pair(client: ClientConfig, server: ServerConfig) -> tuple[Pair, int, Recorder]:
    pair = make_pair(client, server)
    assert pair.client.zero_rtt_send_keys is not None
    stream_id = send_early(pair, b"early request")
    recorder = Recorder()
    pair.drop_to_server = recorder
    pair.exchange()
    pair.advance(0.1)
    return pair, stream_id, recorder


def server_received(pair: Pair, stream_id: int) -> bytes:
    assert pair.server is not None
    assert [e.stream_id for e in pair.events_of("server", StreamOpened)] == [stream_id]
    data = pair.server.read_stream(stream_id)
    assert pair.server.stream_at_eof(stream_id)
    return data


def test_zero_rtt_accepted() -> None:
    client, server, _ = configs(early_client=True, early_server=True)
    connect(client, server)
    pair, stream_id, recorder = early_pair(client, server)
    assert PacketType.ZERO_RTT in recorder.types[:3]  # in the first flight
    assert [e.session_resumed for e in pair.events_of("server", HandshakeCompleted)] == [True]
    assert pair.client.early_data_accepted and pair.server.early_data_accepted  # type: ignore[union-attr]
    assert server_received(pair, stream_id) == b"early request"
    # What 0-RTT carried was acknowledged: nothing left to resend.
    assert pair.client.stream_send_buffered(stream_id) == 0


@pytest.mark.parametrize("why", ["server_off", "replayed_ticket"])
def test_zero_rtt_rejected_data_arrives_once_in_1rtt(why: str) -> None:
    client, server, store = configs(early_client=True, early_server=True)
    connect(client, server)
    if why == "server_off":
        server = server_config(early_data=False, ticket_secret=server.ticket_secret)
    else:
        ticket = store.take("localhost", ["test"])
        assert ticket is not None
        store.put(ticket)
        first, _, _ = early_pair(client, server)
        assert first.server.early_data_accepted  # type: ignore[union-attr]
        store.put(ticket)  # the same ticket again: a replay
    pair, stream_id, recorder = early_pair(client, server)
    assert PacketType.ZERO_RTT in recorder.types
    assert pair.client.resumed and not pair.client.early_data_accepted
    assert not pair.server.early_data_accepted  # type: ignore[union-attr]
    assert server_received(pair, stream_id) == b"early request"
    assert pair.client.stream_send_buffered(stream_id) == 0


def test_zero_rtt_frames_forbidden_there_are_a_protocol_violation() -> None:
    from ghostwire.quic.errors import TransportErrorCode
    from ghostwire.quic.events import ConnectionTerminated
    from ghostwire.quic.frames import FrameType

    client, server, _ = configs(early_client=True, early_server=True)
    connect(client, server)
    pair = make_pair(client, server)
    # A 0-RTT packet carrying HANDSHAKE_DONE (RFC 9000 §12.5, §19.20).

    def write_bad(builder: Any, now: float) -> None:
        keys = pair.client.zero_rtt_send_keys
        from ghostwire.quic.recovery import Space

        builder.start_packet(pair.client.spaces[Space.APPLICATION], PacketType.ZERO_RTT, keys)
        builder.payload.append(FrameType.HANDSHAKE_DONE)
        builder.mark_ack_eliciting()
        builder.end_packet()
        del pair.client.write_zero_rtt  # back to the method

    pair.client.write_zero_rtt = write_bad  # type: ignore[method-assign]
    send_early(pair, b"x")
    pair.exchange()
    closed = pair.events_of("server", ConnectionTerminated)
    assert closed and closed[0].error_code == TransportErrorCode.PROTOCOL_VIOLATION


def test_client_early_data_needs_a_store() -> None:
    with pytest.raises(ValueError, match="session_tickets"):
        client_config(early_data=True)


def test_server_limits_lowered_refuse_zero_rtt() -> None:
    client, server, _ = configs(early_client=True, early_server=True)
    connect(client, server)
    lower = server_config(early_data=True, ticket_secret=server.ticket_secret, max_streams_bidi=5)
    pair, stream_id, _ = early_pair(client, lower)
    assert pair.client.resumed and not pair.client.early_data_accepted
    assert server_received(pair, stream_id) == b"early request"


def test_config_secrets_stay_out_of_repr_and_reach_workers() -> None:
    import pickle

    from ghostwire.quic.net.workers import _dumps

    server = server_config(ticket_secret=b"k" * 32)
    assert "kkkk" not in repr(server) and "kkkk" not in repr(server.ticket_issuer)
    copy = pickle.loads(_dumps(server))  # how serve(..., workers=N) ships the config
    assert copy.ticket_secret == server.ticket_secret
    # The worker's issuer opens the parent's tickets: resumption works there.
    client, _, _ = configs()
    connect(client, server)
    assert connect(client, copy).client.resumed


# -- the trio API over loopback ---------------------------------------------------


async def test_trio_connect_resumes_and_sends_0rtt() -> None:
    from test_quic_api import running_server

    import ghostwire.quic as quic

    client, server, store = configs(early_client=True, early_server=True)

    async def round_trip() -> tuple[bytes, bool, bool, bool]:
        async with quic.connect("127.0.0.1", server_port, client) as conn:
            started_early = not conn.handshake_complete
            stream = await conn.open_stream()
            await stream.send_all(b"zero rtt")
            await stream.send_eof()
            echoed = b""
            while chunk := await stream.receive_some():
                echoed += chunk
            await conn.wait_handshake()
            await conn.ping()  # the ticket precedes the answer to this
            return echoed, started_early, conn.resumed, conn.early_data_accepted

    with trio.fail_after(20):
        async with running_server(config=server) as listening:
            server_port = listening.port
            assert await round_trip() == (b"zero rtt", False, False, False)
            assert len(store) == 1
            assert await round_trip() == (b"zero rtt", True, True, True)


def test_client_refuses_accepted_0rtt_with_lowered_limits() -> None:
    """RFC 9000 §7.4.1: a server that accepts 0-RTT may not lower a remembered limit."""
    from ghostwire.quic.errors import TransportErrorCode
    from ghostwire.quic.events import ConnectionTerminated

    client, server, _ = configs(early_client=True, early_server=True)
    connect(client, server)
    lower = server_config(early_data=True, ticket_secret=server.ticket_secret, max_streams_bidi=5)
    # A server that does not check (our own refuses 0-RTT here, see above).
    from quic_pair import CLIENT_ADDR

    lower_pair = make_pair(client, lower)
    send_early(lower_pair, b"x")
    first = [d for d, _ in lower_pair.client.datagrams_to_send(0.0)]
    server_conn = lower_pair._server_for(first[0])
    assert server_conn.tls.settings is not None
    server_conn.tls.settings.early_data_check = None
    for datagram in first:
        server_conn.receive_datagram(datagram, CLIENT_ADDR, 0.0)
    lower_pair.exchange()
    assert server_conn.early_data_accepted
    closed = lower_pair.events_of("client", ConnectionTerminated)
    assert closed and closed[0].error_code == TransportErrorCode.PROTOCOL_VIOLATION


def test_ack_of_0rtt_in_the_server_flight_does_not_confirm_the_handshake() -> None:
    """RFC 9001 §4.1.2: only an acknowledged 1-RTT packet confirms the handshake.
    The server's first flight may carry (in 1-RTT) an ACK of the 0-RTT packets,
    processed right after the client completes: that must not drop the
    Handshake keys before the client's Finished goes out."""
    from quic_pair import CLIENT_ADDR, SERVER_ADDR

    client, server, _ = configs(early_client=True, early_server=True)
    connect(client, server)
    pair = make_pair(client, server)
    stream_id = send_early(pair, b"early request")
    first = [d for d, _ in pair.client.datagrams_to_send(0.0)]
    server_conn = pair._server_for(first[0])
    for datagram in first:
        server_conn.receive_datagram(datagram, CLIENT_ADDR, 0.0)
    pair.now = 0.05  # past the ACK delay: the flight carries the 1-RTT ACK
    server_conn.handle_timer(pair.now)
    flight = [d for d, _ in server_conn.datagrams_to_send(pair.now)]
    assert any(PacketType.ONE_RTT in packet_types(d) for d in flight)
    for datagram in flight:
        pair.client.receive_datagram(datagram, SERVER_ADDR, pair.now)
    confirmed_too_early = pair.client.handshake_confirmed
    assert pair.client.handshake_complete and not confirmed_too_early
    pair.exchange()
    pair.advance(0.1)
    assert server_conn.handshake_complete and pair.client.handshake_confirmed
    assert server_received(pair, stream_id) == b"early request"


def test_lost_0rtt_packet_is_resent_in_1rtt_once() -> None:
    from quic_pair import CLIENT_ADDR

    client, server, _ = configs(early_client=True, early_server=True)
    connect(client, server)
    pair = make_pair(client, server)
    stream_id = send_early(pair, b"early request")
    [first] = [d for d, _ in pair.client.datagrams_to_send(0.0)]
    assert packet_types(first) == [PacketType.INITIAL, PacketType.ZERO_RTT]
    # The 0-RTT packet is lost: the server gets the Initial alone (zeros pad
    # the datagram to 1,200 bytes; they are no packet and are ignored).
    initial = first[: parse_header(first, 0, 8).end]
    lossy = initial + bytes(len(first) - len(initial))
    pair._server_for(lossy).receive_datagram(lossy, CLIENT_ADDR, 0.0)
    pair.exchange()
    pair.advance(1.0)  # loss detection resends the data, now in 1-RTT
    assert pair.client.early_data_accepted
    assert server_received(pair, stream_id) == b"early request"
    assert pair.client.stream_send_buffered(stream_id) == 0


def test_server_reads_a_0rtt_packet_reordered_after_completion() -> None:
    """RFC 9001 §4.9.3: the server keeps its 0-RTT keys for three PTOs after
    completing, so a 0-RTT packet overtaken by the client's Finished is read
    (not dropped and resent); at the deadline the keys go."""
    from quic_pair import CLIENT_ADDR, SERVER_ADDR

    client, server, _ = configs(early_client=True, early_server=True)
    connect(client, server)
    pair = make_pair(client, server)
    stream_id = send_early(pair, bytes(range(256)) * 12)  # 3 KB: two 0-RTT datagrams
    flight = [d for d, _ in pair.client.datagrams_to_send(0.0)]
    late = flight.pop()
    assert packet_types(late) == [PacketType.ZERO_RTT]
    server_conn = pair._server_for(flight[0])
    for datagram in flight:
        server_conn.receive_datagram(datagram, CLIENT_ADDR, 0.0)
    for datagram, _ in server_conn.datagrams_to_send(0.0):
        pair.client.receive_datagram(datagram, SERVER_ADDR, 0.0)
    for datagram, _ in pair.client.datagrams_to_send(0.0):  # Finished and 1-RTT
        server_conn.receive_datagram(datagram, CLIENT_ADDR, 0.0)
    assert server_conn.handshake_complete and server_conn.early_data_accepted
    assert not server_conn.stream_at_eof(stream_id)  # the late part is missing
    server_conn.receive_datagram(late, CLIENT_ADDR, 0.001)
    assert server_conn.read_stream(stream_id) == bytes(range(256)) * 12
    assert server_conn.stream_at_eof(stream_id)
    # The keys are kept for a bounded time only: the timer covers their deadline.
    deadline = server_conn.zero_rtt_discard_deadline
    kept = server_conn.zero_rtt_recv_keys
    assert deadline is not None and kept is not None
    timer = server_conn.get_timer()
    assert timer is not None and timer <= deadline
    pair.server = server_conn
    pair.advance(deadline - pair.now)
    assert server_conn.zero_rtt_recv_keys is None
    assert server_conn.zero_rtt_discard_deadline is None
