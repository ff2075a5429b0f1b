"""A rejected 0-RTT is resent under the server's new limits, even lower ones
(RFC 9001 §4.6.2, RFC 9000 §7.4.1): the in-memory pair and the stream set."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from quic_pair import Pair, make_pair, server_config
from test_quic_api import running_server
from test_quic_resumption import configs, connect

import ghostwire.quic as quic
from ghostwire.quic.events import (
    ConnectionTerminated,
    StopSendingReceived,
    StreamOpened,
    StreamResetReceived,
)
from ghostwire.quic.frames import FrameType
from ghostwire.quic.streams import StreamManager

PAYLOAD = bytes(range(256)) * 20  # 5 KB per stream


def rejected_pair(**lower: Any) -> Pair:
    """A resumed pair whose server, restarted with ``lower`` limits, refuses 0-RTT."""
    client, server, _ = configs(early_client=True, early_server=True)
    connect(client, server)
    restarted = server_config(early_data=True, ticket_secret=server.ticket_secret, **lower)
    pair = make_pair(client, restarted)
    assert pair.client.zero_rtt_send_keys is not None
    return pair


def drain(pair: Pair, stream_ids: list[int], limit: float = 5.0) -> dict[int, bytes]:
    """Run the pair; the server reads every client stream and closes it once whole."""
    server = pair.server
    assert server is not None
    got: dict[int, bytearray] = {}
    done: set[int] = set()
    elapsed = 0.0
    while len(done) < len(stream_ids) and elapsed < limit:
        for event in pair.events_of("server", StreamOpened):
            got.setdefault(event.stream_id, bytearray())
        for stream_id, data in got.items():
            if stream_id in done:
                continue
            data += server.read_stream(stream_id)
            if server.stream_at_eof(stream_id):
                server.send_stream_data(stream_id, b"ok", end_stream=True)
                done.add(stream_id)
        pair.advance(0.05)
        elapsed += 0.05
    return {k: bytes(v) for k, v in got.items()}


@pytest.mark.parametrize(
    "lower",
    [{"initial_max_data": 3000}, {"initial_max_stream_data": 1000}],
    ids=["max_data", "max_stream_data"],
)
def test_rejected_0rtt_resent_within_lower_flow_control(lower: dict[str, int]) -> None:
    pair = rejected_pair(**lower)
    stream_ids = [pair.client.open_stream() for _ in range(2)]
    for stream_id in stream_ids:
        pair.client.send_stream_data(stream_id, PAYLOAD, end_stream=True)
    pair.exchange()
    assert pair.client.resumed and not pair.client.early_data_accepted
    got = drain(pair, stream_ids)
    assert not pair.events_of("client", ConnectionTerminated)
    assert not pair.events_of("server", ConnectionTerminated)
    assert got == {stream_id: PAYLOAD for stream_id in stream_ids}


def test_rejected_0rtt_streams_beyond_new_limit_wait_for_credit() -> None:
    pair = rejected_pair(max_streams_bidi=2)
    stream_ids = [pair.client.open_stream() for _ in range(5)]
    for stream_id in stream_ids:
        pair.client.send_stream_data(stream_id, PAYLOAD[:100], end_stream=True)
    pair.exchange()
    assert pair.client.resumed and not pair.client.early_data_accepted
    server = pair.server
    assert server is not None
    # The server knows the two streams its new limit allows, no more.
    assert [e.stream_id for e in pair.events_of("server", StreamOpened)] == stream_ids[:2]
    assert pair.client.streams.streams_available(True) == 0
    got = drain(pair, stream_ids)
    assert not pair.events_of("client", ConnectionTerminated)
    assert not pair.events_of("server", ConnectionTerminated)
    # As the first ones finish, MAX_STREAMS lets the held ones out, in order.
    assert [e.stream_id for e in pair.events_of("server", StreamOpened)] == stream_ids
    assert got == {stream_id: PAYLOAD[:100] for stream_id in stream_ids}


def test_held_stream_reset_and_stop_sending_wait_too() -> None:
    """A held stream sends no frame at all, RESET_STREAM and STOP_SENDING
    included, until MAX_STREAMS covers it; then they go, with final size 0."""
    pair = rejected_pair(max_streams_bidi=1)
    first, held = pair.client.open_stream(), pair.client.open_stream()
    pair.client.send_stream_data(first, b"first", end_stream=True)
    pair.client.send_stream_data(held, b"never sent")
    pair.exchange()  # 0-RTT rejected: ``held`` is beyond the server's limit
    assert not pair.client.early_data_accepted
    pair.client.reset_stream(held, 7)
    pair.client.stop_sending(held, 8)
    pair.advance(0.1)
    assert [e.stream_id for e in pair.events_of("server", StreamOpened)] == [first]
    drain(pair, [first])
    pair.advance(0.5)
    assert not pair.events_of("server", ConnectionTerminated)
    resets = pair.events_of("server", StreamResetReceived)
    assert [(e.stream_id, e.error_code) for e in resets] == [(held, 7)]
    stops = pair.events_of("server", StopSendingReceived)
    assert [(e.stream_id, e.error_code) for e in stops] == [(held, 8)]


# -- the stream set alone --------------------------------------------------------

LIMITS = {
    "initial_max_data": 10_000,
    "initial_max_streams_bidi": 10,
    "initial_max_streams_uni": 10,
    "initial_max_stream_data_bidi_local": 10_000,
    "initial_max_stream_data_bidi_remote": 10_000,
    "initial_max_stream_data_uni": 10_000,
}


def client_set() -> StreamManager:
    return StreamManager(
        True,
        max_streams_bidi=10,
        max_streams_uni=10,
        max_stream_data_bidi_local=10_000,
        max_stream_data_bidi_remote=10_000,
        max_stream_data_uni=10_000,
        max_data=10_000,
    )


def test_replace_rewinds_streams_under_the_new_limits() -> None:
    streams = client_set()
    streams.apply_peer_limits(**LIMITS)  # what the ticket remembers
    ids = [streams.open_stream(True) for _ in range(3)]
    for stream_id in ids:
        streams.write(stream_id, b"x" * 3000, end_stream=True)
    sent = []
    while (frame := streams.next_stream_frame(1200)) is not None:
        sent.append(frame)
    assert sum(len(f.data) for f in sent) == 9000
    for frame in sent:  # the 0-RTT packets, discarded
        streams.on_stream_frame_delivered(
            frame.stream_id, frame.offset, len(frame.data), frame.fin, False
        )
    lower = {**LIMITS, "initial_max_data": 2000, "initial_max_streams_bidi": 1}
    lower["initial_max_stream_data_bidi_remote"] = 1500
    streams.forget_peer_limits()
    streams.apply_peer_limits(**lower)
    again = []
    while (frame := streams.next_stream_frame(1200)) is not None:
        again.append(frame)
    # Only stream 0, from offset 0, up to its new stream limit: charged anew.
    assert {f.stream_id for f in again} == {ids[0]}
    assert again[0].offset == 0 and sum(len(f.data) for f in again) == 1500
    assert streams.send_credit.used == 1500
    controls = streams.pending_control_frames(0.0, 0.1)
    kinds = {(c.frame_type, c.stream_id, c.value) for c in controls}
    assert (FrameType.STREAMS_BLOCKED_BIDI, None, 1) in kinds
    assert (FrameType.STREAM_DATA_BLOCKED, ids[0], 1500) in kinds
    assert all(c.stream_id in (None, ids[0]) for c in controls)
    # More streams allowed: the held ones go, from offset 0, within MAX_DATA.
    streams.on_max_streams(True, 3)
    later = []
    while (frame := streams.next_stream_frame(1200)) is not None:
        later.append(frame)
    assert {f.stream_id for f in later} == {ids[1]}  # 500 bytes of credit left
    assert later[0].offset == 0 and sum(len(f.data) for f in later) == 500
    streams.on_max_data(20_000)
    rest = []
    while (frame := streams.next_stream_frame(1200)) is not None:
        rest.append(frame)
    assert {f.stream_id for f in rest} == set(ids[1:])


def test_0rtt_before_a_hello_retry_request_is_resent_under_the_new_limits() -> None:
    """RFC 8446 §4.2.10: after a HelloRetryRequest the server reads none of the
    0-RTT sent with the first ClientHello; the client treats it as rejected
    (its 0-RTT keys go at completion) and resends under the new limits."""
    from ghostwire.quic.tls.key_exchange import Group

    client, server, _ = configs(early_client=True, early_server=True)
    connect(client, server)
    retrying = server_config(
        early_data=True,
        ticket_secret=server.ticket_secret,
        groups=[Group.SECP256R1],  # not the client's first share: a HelloRetryRequest
        initial_max_stream_data=1000,
    )
    pair = make_pair(client, retrying)
    stream_id = pair.client.open_stream()
    pair.client.send_stream_data(stream_id, PAYLOAD, end_stream=True)
    pair.exchange()
    assert pair.client.tls.hello_retry_request_received
    assert pair.client.resumed and not pair.client.early_data_accepted
    assert pair.client.zero_rtt_send_keys is None
    got = drain(pair, [stream_id])
    assert not pair.events_of("client", ConnectionTerminated)
    assert got == {stream_id: PAYLOAD}


# -- the trio API over loopback ---------------------------------------------------


async def test_trio_streams_opened_in_0rtt_beyond_the_new_limit_wait() -> None:
    """Through the trio shell: four requests written in 0-RTT to a server
    restarted with room for one stream at a time and 0-RTT off; each is
    answered once, the held ones as the earlier ones finish."""

    client, server, store = configs(early_client=True, early_server=True)
    restarted = server_config(ticket_secret=server.ticket_secret, max_streams_bidi=1)

    async def exchange(port: int, count: int) -> tuple[list[bytes], bool, bool]:
        async with quic.connect("127.0.0.1", port, client) as conn:
            early = not conn.handshake_complete
            streams = [await conn.open_stream() for _ in range(count)]
            for i, stream in enumerate(streams):
                await stream.send_all(b"request %d " % i * 100)
                await stream.send_eof()
            replies = []
            for stream in streams:
                reply = b""
                while chunk := await stream.receive_some():
                    reply += chunk
                replies.append(reply)
            return replies, early, conn.early_data_accepted

    with trio.fail_after(20):
        async with running_server(config=server) as listening:
            assert (await exchange(listening.port, 1))[0] == [b"request 0 " * 100]
        assert len(store) == 1
        async with running_server(config=restarted) as listening:
            replies, early, accepted = await exchange(listening.port, 4)
    assert early and not accepted
    assert replies == [b"request %d " % i * 100 for i in range(4)]
