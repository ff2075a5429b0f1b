"""The receive side's fast paths keep every rule of the slow ones.

In-order data, islands beyond a gap, discarding after STOP_SENDING, reads
that credit the connection with what they return, and the cheap
``has_pending_control`` check, each against what RFC 9000 requires.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ghostwire.quic.errors import QuicProtocolError
from ghostwire.quic.errors import TransportErrorCode as E
from ghostwire.quic.stream_events import ControlFrame
from ghostwire.quic.stream_recv import StreamReceiver
from ghostwire.quic.stream_states import RecvState
from ghostwire.quic.streams import FrameType, StreamLimitReached, StreamManager

LIMITS = {
    "initial_max_data": 10_000,
    "initial_max_streams_bidi": 4,
    "initial_max_streams_uni": 4,
    "initial_max_stream_data_bidi_local": 1000,
    "initial_max_stream_data_bidi_remote": 1000,
    "initial_max_stream_data_uni": 1000,
}


def _manager(is_client: bool) -> StreamManager:
    return StreamManager(
        is_client,
        max_streams_bidi=4,
        max_streams_uni=4,
        max_stream_data_bidi_local=1000,
        max_stream_data_bidi_remote=1000,
        max_stream_data_uni=1000,
        max_data=10_000,
    )


def _pair(**peer_limits: int) -> tuple[StreamManager, StreamManager]:
    client, server = _manager(True), _manager(False)
    client.apply_peer_limits(**{**LIMITS, **peer_limits})
    server.apply_peer_limits(**{**LIMITS, **peer_limits})
    return client, server


def _segments(data: bytes, rnd: random.Random) -> list[tuple[int, bytes, bool]]:
    """``data`` cut into frames, a third of them repeated, shuffled; FIN on the last."""
    cuts = []
    pos = 0
    while pos < len(data):
        n = rnd.randint(1, 30)
        cuts.append((pos, min(pos + n, len(data))))
        pos += n
    cuts += rnd.sample(cuts, len(cuts) // 3)
    rnd.shuffle(cuts)
    frames = [(a, data[a:b], b == len(data)) for a, b in cuts]
    return frames or [(0, b"", True)]


@settings(max_examples=100)
@given(st.binary(min_size=1, max_size=200), st.integers(0, 2**32), st.floats(0, 1))
def test_stop_sending_at_any_point_still_completes_the_stream(
    data: bytes, seed: int, stop_at: float
) -> None:
    """RFC 9000 §3.5: after STOP_SENDING the data is dropped, but flow control
    still counts it and the FIN still ends the stream (nothing left to tell)."""
    rnd = random.Random(seed)
    frames = _segments(data, rnd)
    stop = int(stop_at * len(frames))
    r = StreamReceiver(initial_window=len(data))
    read = bytearray()
    for i, (offset, chunk, fin) in enumerate(frames):
        if i == stop:
            read += r.read()
            r.stop_sending(7)
        r.handle_stream_frame(offset, chunk, fin)
    if stop >= len(frames):
        read += r.read()
        r.stop_sending(7)
    assert data.startswith(bytes(read))
    assert r.state is RecvState.DATA_READ
    assert r.consumed == len(data) == r.highest_received  # all credit returned
    assert r.read() == b""
    assert r.readable_bytes == 0
    with pytest.raises(QuicProtocolError) as info:  # the final size still holds
        r.handle_stream_frame(len(data), b"x", False)
    assert info.value.error_code == E.FINAL_SIZE_ERROR


@settings(max_examples=60)
@given(st.lists(st.binary(max_size=120), min_size=1, max_size=4), st.integers(0, 2**32))
def test_reads_credit_the_connection_with_what_they_return(bodies: list[bytes], seed: int) -> None:
    """Several peer streams, frames reordered and repeated, reads interleaved:
    each stream reads back its bytes, then ``b""`` from then on; the connection's
    consumed count is exactly what was read (RFC 9000 §4.1), the received
    count the sum of the final sizes (§4.5)."""
    rnd = random.Random(seed)
    _, server = _pair()
    frames = [
        (4 * i, offset, chunk, fin)
        for i, body in enumerate(bodies)
        for offset, chunk, fin in _segments(body, rnd)
    ]
    rnd.shuffle(frames)
    got = {4 * i: bytearray() for i in range(len(bodies))}
    ended: set[int] = set()

    def read_some(stream_id: int) -> None:
        data = server.read_or_eof(stream_id, rnd.randint(1, 50))
        if data:
            assert stream_id not in ended
            got[stream_id] += data
        elif data == b"":  # the end, and it stays there
            assert bytes(got[stream_id]) == bodies[stream_id // 4]
            ended.add(stream_id)

    opened: list[int] = []
    for stream_id, offset, chunk, fin in frames:
        server.on_stream_frame(stream_id, offset, chunk, fin)
        opened += server.pop_events().opened
        if rnd.random() < 0.5:
            read_some(rnd.choice(opened))
    for stream_id in got:
        while stream_id not in ended:
            read_some(stream_id)
    assert [bytes(got[4 * i]) for i in range(len(bodies))] == bodies
    total = sum(map(len, bodies))
    assert server.recv_credit.window.consumed == total
    assert server.recv_credit.received == total
    assert server.read_or_eof(0) == b""  # stays at the end


def test_nothing_readable_is_none_and_the_end_is_read_once() -> None:
    _, server = _pair()
    server.on_stream_frame(0, 3, b"def", True)  # beyond a gap: an island
    assert server.read_or_eof(0) is None
    server.on_stream_frame(0, 0, b"abc", False)  # fills it
    assert server.pop_events().readable == (0,)
    assert server.read_or_eof(0, 4) == b"abcd"
    assert server.read_or_eof(0) == b"ef"
    assert server.read_or_eof(0) == b""
    stream = server.get(0)
    assert stream is not None and stream.receiver is not None
    assert stream.receiver.state is RecvState.DATA_READ
    server.on_stream_frame(0, 0, b"abcdef", True)  # a late copy: ignored, no event
    assert server.pop_events().readable == ()
    assert server.read(0) == b""


def test_a_reset_is_read_as_none_and_told_once() -> None:
    _, server = _pair()
    server.on_stream_frame(0, 0, b"abc", False)
    server.on_reset_stream(0, 9, 5)
    assert server.recv_credit.window.consumed == 5  # RFC 9000 §4.5: all of it
    assert server.pop_events().reset == ((0, 9),)
    assert server.read_or_eof(0) is None


def test_has_pending_control_sees_every_kind() -> None:
    client, server = _pair(initial_max_streams_bidi=1, initial_max_data=10)
    assert not client.has_pending_control()
    client.open_stream(True)
    with pytest.raises(StreamLimitReached):
        client.open_stream(True)
    assert client.has_pending_control()  # STREAMS_BLOCKED (RFC 9000 §4.6)
    _send_all_control(client)
    assert not client.has_pending_control()
    client.write(0, b"x" * 20)
    assert client.next_stream_frame(1200) is not None
    assert client.next_stream_frame(1200) is None  # out of connection credit
    assert client.has_pending_control()  # DATA_BLOCKED (RFC 9000 §4.1)
    _send_all_control(client)
    assert not client.has_pending_control()
    server.on_stream_frame(0, 0, b"y" * 600, False)
    assert not server.has_pending_control()
    assert server.read_or_eof(0) == b"y" * 600
    assert server.has_pending_control()  # MAX_STREAM_DATA: more than half read


def _send_all_control(manager: StreamManager) -> None:
    frames: list[ControlFrame] = manager.pending_control_frames(0.0, 0.1)
    assert frames
    for frame in frames:
        assert frame.frame_type in (
            FrameType.STREAMS_BLOCKED_BIDI,
            FrameType.DATA_BLOCKED,
        )
        manager.on_control_sent(frame)
