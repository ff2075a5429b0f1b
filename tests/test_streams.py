"""Streams: send/receive bookkeeping, stream flow control, stream limits (RFC 9000 §2-4)."""

from __future__ import annotations

import itertools
import random
import sys
from collections.abc import Callable
from typing import Any, Self

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ghostwire.quic.errors import QuicProtocolError, TransportErrorCode
from ghostwire.quic.frames import FrameType
from ghostwire.quic.stream_events import ControlFrame
from ghostwire.quic.stream_ranges import RangeList
from ghostwire.quic.stream_recv import StreamReceiver
from ghostwire.quic.stream_send import StreamSender
from ghostwire.quic.stream_states import RecvState, SendState
from ghostwire.quic.streams import (
    StreamLimitReached,
    StreamManager,
    StreamStateError,
    stream_is_bidirectional,
    stream_is_client_initiated,
    stream_is_unidirectional,
)

E = TransportErrorCode


def recv_state(r: StreamReceiver) -> RecvState:
    """The current state (a call, so mypy does not keep an earlier narrowing)."""
    return r.state


def drain(sender: StreamSender, max_data: int = 1000, max_offset: int = 1 << 40) -> list[Any]:
    frames = []
    while (frame := sender.next_frame(max_data, max_offset)) is not None:
        frames.append(frame)
    return frames


# -- stream ids (RFC 9000 §2.1) -------------------------------------------------------


@pytest.mark.parametrize(
    ("stream_id", "client", "bidi"),
    [(0, True, True), (1, False, True), (2, True, False), (3, False, False), (4, True, True)],
)
def test_stream_id_bits(stream_id: int, client: bool, bidi: bool) -> None:
    assert stream_is_client_initiated(stream_id) is client
    assert stream_is_bidirectional(stream_id) is bidi
    assert stream_is_unidirectional(stream_id) is not bidi


# -- range bookkeeping -----------------------------------------------------------------


@given(
    st.lists(
        st.tuples(st.booleans(), st.integers(0, 60), st.integers(0, 15)),
        max_size=50,
    ),
    st.integers(0, 70),
    st.integers(0, 20),
)
def test_range_list_matches_a_set_model(
    ops: list[tuple[bool, int, int]], probe: int, width: int
) -> None:
    ranges = RangeList()
    model: set[int] = set()
    for add, start, length in ops:
        if add:
            ranges.add(start, start + length)
            model |= set(range(start, start + length))
        else:
            ranges.subtract(start, start + length)
            model -= set(range(start, start + length))
        pairs = list(ranges)
        assert {i for a, b in pairs for i in range(a, b)} == model
        # sorted, disjoint and never touching (so they are merged)
        assert all(a < b for a, b in pairs)
        assert all(b1 < a2 for (_, b1), (a2, _) in itertools.pairwise(pairs))
    window = set(range(probe, probe + width))
    assert ranges.covers(probe, probe + width) == (window <= model)
    gaps = ranges.gaps(probe, probe + width)
    assert {i for a, b in gaps for i in range(a, b)} == window - model
    assert ranges.total() == len(model)
    end = probe
    while end in model:
        end += 1
    assert ranges.prefix_end(probe) == end


# -- sender ------------------------------------------------------------------------------


def test_sender_splits_new_data_and_sets_fin_on_the_last_frame() -> None:
    s = StreamSender(max_stream_data=100)
    s.write(b"0123456789", end_stream=True)
    frames = drain(s, max_data=4)
    assert frames == [(0, b"0123", False), (4, b"4567", False), (8, b"89", True)]
    assert all(type(f[1]) is bytes for f in frames)
    assert s.highest_sent == 10
    assert s.next_frame(4, 100) is None


def test_sender_respects_max_offset_and_reports_new_bytes() -> None:
    s = StreamSender(max_stream_data=100)
    s.write(b"x" * 50)
    assert s.next_frame(100, 20) == (0, b"x" * 20, False)
    assert s.highest_sent == 20
    assert s.next_frame(100, 20) is None
    assert s.has_pending() and not s.has_pending(20)
    assert s.pending_data_blocked() is None  # connection credit, not stream limit


def test_sender_stream_limit_and_blocked_signal_once_per_limit() -> None:
    s = StreamSender(max_stream_data=10)
    s.write(b"y" * 25)
    assert s.next_frame(100, 1000) == (0, b"y" * 10, False)
    assert s.next_frame(100, 1000) is None
    assert s.pending_data_blocked() == 10
    s.on_data_blocked_sent()
    assert s.next_frame(100, 1000) is None
    assert s.pending_data_blocked() is None  # once per limit
    s.on_data_blocked_delivered(10, False)
    assert s.pending_data_blocked() == 10  # lost while still blocked: again
    assert s.on_max_stream_data(5) is False  # never lowers
    assert s.on_max_stream_data(20) is True
    assert s.pending_data_blocked() is None
    assert s.next_frame(100, 1000) == (10, b"y" * 10, False)
    s.next_frame(100, 1000)
    assert s.pending_data_blocked() == 20


def test_sender_fin_only_frames() -> None:
    s = StreamSender(max_stream_data=100)
    s.write(b"", end_stream=True)
    assert s.has_pending()
    assert s.next_frame(0, 0) == (0, b"", True)
    s2 = StreamSender(max_stream_data=100)
    s2.write(b"abc")
    drain(s2)
    s2.write(b"", end_stream=True)
    assert s2.next_frame(10, 3) == (3, b"", True)
    assert s2.state is SendState.DATA_SENT


def test_lost_ranges_are_resent_first_and_cost_no_credit() -> None:
    s = StreamSender(max_stream_data=100)
    s.write(b"abcdefghij")
    assert s.next_frame(4, 100) == (0, b"abcd", False)
    assert s.next_frame(4, 100) == (4, b"efgh", False)
    s.on_frame_delivered(0, 4, False, False)
    assert s.next_offset() == 0
    assert s.next_frame(3, 8) == (0, b"abc", False)  # retransmission ignores max_offset
    assert s.next_frame(3, 8) == (3, b"d", False)
    assert s.highest_sent == 8
    assert s.next_frame(10, 100) == (8, b"ij", False)


def test_only_unacked_parts_of_a_lost_frame_are_resent() -> None:
    s = StreamSender(max_stream_data=100)
    s.write(b"0123456789")
    s.next_frame(10, 100)
    s.on_frame_delivered(2, 3, False, True)  # a retransmitted copy of 2..5 was acked
    s.on_frame_delivered(0, 10, False, False)
    assert drain(s) == [(0, b"01", False), (5, b"56789", False)]


def test_spurious_loss_is_cancelled_by_a_later_ack() -> None:
    s = StreamSender(max_stream_data=100)
    s.write(b"0123456789")
    s.next_frame(10, 100)
    s.on_frame_delivered(0, 10, False, False)
    s.on_frame_delivered(0, 10, False, True)
    assert not s.has_pending()
    assert s.next_frame(10, 100) is None


def test_acked_prefix_frees_the_buffer() -> None:
    s = StreamSender(max_stream_data=1000)
    s.write(b"a" * 300)
    drain(s, max_data=100)
    assert s.buffered_bytes == 300
    s.on_frame_delivered(100, 100, False, True)
    assert s.buffered_bytes == 300  # out of order: nothing freed yet
    s.on_frame_delivered(0, 100, False, True)
    assert s.buffered_bytes == 100
    assert s.acked_offset == 200
    s.write(b"b" * 10)  # growing after freeing works
    assert s.buffered_bytes == 110
    s.on_frame_delivered(200, 100, False, True)
    assert s.next_frame(100, 1000) == (300, b"b" * 10, False)


def test_lost_fin_is_resent_even_if_its_data_was_acked() -> None:
    s = StreamSender(max_stream_data=100)
    s.write(b"abc", end_stream=True)
    assert s.next_frame(10, 100) == (0, b"abc", True)
    s.on_frame_delivered(0, 3, False, True)  # data acked through another packet
    s.on_frame_delivered(0, 3, True, False)  # the FIN-carrying copy was lost
    assert s.next_frame(10, 100) == (3, b"", True)
    s.on_frame_delivered(3, 0, True, True)
    assert s.state is SendState.DATA_RECVD
    assert s.buffered_bytes == 0


def test_lost_last_range_is_resent_with_its_fin() -> None:
    s = StreamSender(max_stream_data=100)
    s.write(b"abcdef", end_stream=True)
    s.next_frame(10, 100)
    s.on_frame_delivered(0, 6, True, False)
    assert s.next_frame(4, 100) == (0, b"abcd", False)
    assert s.next_frame(4, 100) == (4, b"ef", True)


def test_write_after_fin_or_reset_is_a_local_error() -> None:
    s = StreamSender(max_stream_data=100)
    s.write(b"a", end_stream=True)
    with pytest.raises(StreamStateError):
        s.write(b"b")
    s2 = StreamSender(max_stream_data=100)
    s2.reset(1)
    with pytest.raises(StreamStateError):
        s2.write(b"b")


def test_reset_final_size_is_highest_offset_sent() -> None:
    s = StreamSender(max_stream_data=100)
    s.write(b"z" * 50)
    s.next_frame(20, 100)
    assert s.reset(42) is True
    assert s.pending_reset() == (42, 20)  # RFC 9000 §4.5, not the 50 written
    assert s.buffered_bytes == 0
    assert s.next_frame(100, 100) is None
    assert not s.has_pending()
    s.on_reset_sent()
    assert s.pending_reset() is None
    s.on_reset_delivered(False)
    assert s.pending_reset() == (42, 20)
    s.on_reset_sent()
    s.on_frame_delivered(0, 20, False, False)  # data loss after reset: ignored
    assert s.next_frame(100, 100) is None
    s.on_reset_delivered(True)
    assert s.state is SendState.RESET_RECVD
    assert s.reset(1) is False


def test_stop_sending_resets_with_its_error_code() -> None:
    s = StreamSender(max_stream_data=100)
    s.write(b"abc")
    s.next_frame(10, 100)
    assert s.on_stop_sending(77) is True
    assert s.stop_sending_error_code == 77
    assert s.state is SendState.RESET_SENT
    assert s.pending_reset() == (77, 3)
    assert s.on_stop_sending(78) is False  # already reset
    assert s.stop_sending_error_code == 77


def test_stop_sending_after_all_data_acked_does_not_reset() -> None:
    s = StreamSender(max_stream_data=100)
    s.write(b"abc", end_stream=True)
    s.next_frame(10, 100)
    s.on_frame_delivered(0, 3, True, True)
    assert s.on_stop_sending(5) is False
    assert s.stop_sending_error_code == 5
    assert s.state is SendState.DATA_RECVD


_sender_ops = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.binary(max_size=30), st.booleans()),
        st.tuples(st.just("send"), st.integers(1, 20), st.integers(0, 200)),
        st.tuples(st.just("deliver"), st.integers(0, 50), st.booleans()),
        st.tuples(st.just("limit"), st.integers(0, 200)),
    ),
    max_size=60,
)


@given(_sender_ops)
def test_has_pending_agrees_with_next_frame(ops: list[tuple[Any, ...]]) -> None:
    s = StreamSender(max_stream_data=30)
    in_flight: list[tuple[int, int, bool]] = []
    for op in ops:
        if op[0] == "write":
            if s.final_size is None:
                s.write(op[1], op[2])
        elif op[0] == "send":
            max_offset = s.highest_sent + op[2]
            expected = s.has_pending(max_offset)
            before = s.highest_sent
            frame = s.next_frame(op[1], max_offset)
            assert (frame is not None) is expected
            if frame is not None:
                offset, data, fin = frame
                assert len(data) <= op[1]
                assert s.highest_sent - before <= op[2]
                assert offset + len(data) <= s.max_stream_data
                in_flight.append((offset, len(data), fin))
        elif op[0] == "deliver" and in_flight:
            frame_info = in_flight.pop(op[1] % len(in_flight))
            s.on_frame_delivered(*frame_info, op[2])
        elif op[0] == "limit":
            s.on_max_stream_data(op[1])


@settings(max_examples=60)
@given(st.binary(min_size=0, max_size=400), st.integers(0, 2**32))
def test_lossy_transfer_delivers_everything_exactly(data: bytes, seed: int) -> None:
    rnd = random.Random(seed)
    s = StreamSender(max_stream_data=1 << 20)
    r = StreamReceiver(initial_window=1 << 20)
    s.write(data, end_stream=True)
    in_flight: list[tuple[int, bytes, bool]] = []
    for _ in range(10_000):
        if s.is_finished:
            break
        frame = s.next_frame(rnd.randint(1, 60), 1 << 20)
        if frame is not None:
            in_flight.append(frame)
        if in_flight and (frame is None or rnd.random() < 0.5):
            offset, chunk, fin = in_flight.pop(rnd.randrange(len(in_flight)))
            lost = rnd.random() < 0.3
            if not lost:
                r.handle_stream_frame(offset, chunk, fin)
            s.on_frame_delivered(offset, len(chunk), fin, not lost)
    assert s.state is SendState.DATA_RECVD
    assert r.read() == data
    assert r.at_eof
    assert r.read() == b""
    assert recv_state(r) is RecvState.DATA_READ


def test_frames_are_independent_copies_of_the_buffer() -> None:
    s = StreamSender(max_stream_data=100)
    s.write(b"abcdef")
    _offset, data, _fin = s.next_frame(3, 100) or (0, b"", False)
    view = memoryview(data)  # the caller holding on to data must not pin our buffer
    s.on_frame_delivered(0, 3, False, True)
    s.write(b"ghi")
    assert bytes(view) == b"abc"


# -- receiver ---------------------------------------------------------------------------


@settings(max_examples=150)
@given(
    st.binary(min_size=0, max_size=300),
    st.lists(st.tuples(st.integers(0, 299), st.integers(0, 60)), max_size=40),
    st.integers(0, 2**32),
)
def test_reassembly_under_segmentation_reordering_duplication(
    data: bytes, extra: list[tuple[int, int]], seed: int
) -> None:
    rnd = random.Random(seed)
    # cover the stream with random segments, add random overlapping duplicates
    segments = []
    pos = 0
    while pos < len(data):
        n = rnd.randint(1, 40)
        segments.append((pos, pos + n))
        pos += n
    segments += [(a, min(a + n, len(data))) for a, n in extra if a < len(data)]
    segments += rnd.sample(segments, len(segments) // 3)
    rnd.shuffle(segments)
    r = StreamReceiver(initial_window=len(data))
    out = bytearray()
    growth = 0
    for a, b in segments:
        growth += r.handle_stream_frame(a, data[a:b], b == len(data))
        if rnd.random() < 0.5:
            out += r.read(rnd.randint(0, 50))
    growth += r.handle_stream_frame(len(data), b"", True)
    out += r.read()
    assert bytes(out) == data
    assert growth == len(data) == r.highest_received
    assert r.at_eof
    assert r.read() == b""


class _CountingBuffer(bytearray):
    """A reassembly buffer that counts the bytes written into it."""

    written = 0

    def __iadd__(self, data: Any) -> Self:  # type: ignore[misc]  # (typeshed: __add__ gives bytearray)
        self.written += len(data)
        return super().__iadd__(data)

    def __setitem__(self, index: Any, data: Any) -> None:
        self.written += len(data) if isinstance(index, slice) else 1
        super().__setitem__(index, data)


def _out_of_order_work(n: int) -> tuple[int, int]:
    """Reassemble ``n`` one-byte frames, the even offsets first in random
    order, then the odd ones (each filling a gap); return the Python lines
    run in the receiver's modules and the bytes written into its buffer.
    Counting instead of timing: the same on a loaded machine."""
    import ghostwire.quic.stream_ranges as stream_ranges
    import ghostwire.quic.stream_recv as stream_recv

    data = bytes(random.Random(1).getrandbits(8) for _ in range(n))
    order = list(range(0, n, 2))
    random.Random(2).shuffle(order)
    order += list(range(1, n, 2))
    r = StreamReceiver(initial_window=n)
    buf = r._buf = _CountingBuffer()
    files = {stream_recv.__file__, stream_ranges.__file__}
    lines = 0

    def count_lines(frame: Any, event: str, arg: Any) -> Any:
        nonlocal lines
        if event == "line":
            lines += 1
        return count_lines

    def trace(frame: Any, event: str, arg: Any) -> Any:
        return count_lines if frame.f_code.co_filename in files else None

    previous = sys.gettrace()
    sys.settrace(trace)
    try:
        for i in order:
            r.handle_stream_frame(i, data[i : i + 1], i == n - 1)
    finally:
        sys.settrace(previous)
    assert r.read() == data
    assert r.at_eof
    return lines, buf.written


def test_many_small_out_of_order_segments_are_not_quadratic() -> None:
    # 2n one-byte frames, half of them islands: as many as a stream may hold
    # (stream_recv.MAX_ISLANDS bounds the list splices, which lines don't see).
    n = 1000
    lines, written = _out_of_order_work(n)
    lines2, written2 = _out_of_order_work(2 * n)
    # Linear: twice the frames, about twice the work (quadratic would be 4x).
    assert lines2 < 2.5 * lines, (lines, lines2)
    assert written2 < 2.5 * written, (written, written2)
    # And a few lines and bytes a frame, whatever the number of islands.
    assert lines2 < 80 * 2 * n, lines2
    assert written2 <= 2 * 2 * n, written2  # each byte, plus the zeros of its gap


def test_frames_after_the_stream_was_read_are_ignored_but_validated() -> None:
    r = StreamReceiver(initial_window=100)
    r.handle_stream_frame(0, b"abc", True)
    assert r.read() == b"abc"
    assert r.read() == b""
    assert recv_state(r) is RecvState.DATA_READ
    assert r.handle_stream_frame(0, b"abc", True) == 0
    assert r.readable_bytes == 0
    with pytest.raises(QuicProtocolError) as info:
        r.handle_stream_frame(2, b"cd", False)
    assert info.value.error_code == E.FINAL_SIZE_ERROR
    r.handle_reset(1, 3)  # consistent late reset: ignored
    assert r.reset_error_code is None


def test_sender_accepts_memoryview_and_bytearray() -> None:
    s = StreamSender(max_stream_data=100)
    source = bytearray(b"hello")
    s.write(memoryview(source))
    source[0:1] = b"J"  # the sender keeps its own copy
    s.write(bytearray(b" world"), end_stream=True)
    assert drain(s) == [(0, b"hello world", True)]


def test_receiver_growth_ignores_duplicates() -> None:
    r = StreamReceiver(initial_window=100)
    assert r.handle_stream_frame(10, b"abc", False) == 13
    assert r.handle_stream_frame(0, b"0123456789", False) == 0
    assert r.handle_stream_frame(0, b"0123456789abcde", False) == 2
    assert r.read() == b"0123456789abcde"
    assert r.handle_stream_frame(0, b"0123", False) == 0
    assert r.readable_bytes == 0


def test_flow_control_error_beyond_our_limit() -> None:
    r = StreamReceiver(initial_window=10)
    r.handle_stream_frame(5, b"12345", False)  # exactly up to the limit
    with pytest.raises(QuicProtocolError) as info:
        r.handle_stream_frame(10, b"x", False)
    assert info.value.error_code == E.FLOW_CONTROL_ERROR
    r2 = StreamReceiver(initial_window=10)
    with pytest.raises(QuicProtocolError) as info:
        r2.handle_reset(0, 11)
    assert info.value.error_code == E.FLOW_CONTROL_ERROR


@pytest.mark.parametrize(
    "frames",
    [
        [(0, b"abc", True), (3, b"d", False)],  # data beyond the final size
        [(0, b"abc", True), (0, b"ab", True)],  # FIN moves the final size down
        [(0, b"abc", True), (0, b"abcd", True)],  # ...or up
        [(0, b"abcdef", False), (0, b"abc", True)],  # FIN below data received
    ],
)
def test_final_size_errors(frames: list[tuple[int, bytes, bool]]) -> None:
    r = StreamReceiver(initial_window=100)
    for frame in frames[:-1]:
        r.handle_stream_frame(*frame)
    with pytest.raises(QuicProtocolError) as info:
        r.handle_stream_frame(*frames[-1])
    assert info.value.error_code == E.FINAL_SIZE_ERROR


def test_reset_final_size_errors() -> None:
    r = StreamReceiver(initial_window=100)
    r.handle_stream_frame(0, b"abc", True)
    with pytest.raises(QuicProtocolError) as info:
        r.handle_reset(1, 4)
    assert info.value.error_code == E.FINAL_SIZE_ERROR
    r2 = StreamReceiver(initial_window=100)
    r2.handle_stream_frame(0, b"abcdef", False)
    with pytest.raises(QuicProtocolError) as info:
        r2.handle_reset(1, 5)
    assert info.value.error_code == E.FINAL_SIZE_ERROR
    r3 = StreamReceiver(initial_window=100)
    r3.handle_reset(1, 8)
    with pytest.raises(QuicProtocolError) as info:
        r3.handle_reset(1, 9)
    assert info.value.error_code == E.FINAL_SIZE_ERROR


def test_reset_discards_data_and_is_reported() -> None:
    r = StreamReceiver(initial_window=100)
    r.handle_stream_frame(0, b"abc", False)
    assert r.handle_reset(9, 10) == 7  # growth to the final size
    assert r.reset_error_code == 9
    assert r.readable_bytes == 0
    assert r.consumed == 10  # the whole final size is returned to the connection
    # later frames are ignored but still validated
    assert r.handle_stream_frame(3, b"defg", False) == 0
    with pytest.raises(QuicProtocolError):
        r.handle_stream_frame(8, b"xyz", False)
    assert r.read() == b""
    assert recv_state(r) is RecvState.RESET_READ


def test_stop_sending_discards_and_returns_credit() -> None:
    r = StreamReceiver(initial_window=100)
    r.handle_stream_frame(0, b"abcdef", False)
    r.stop_sending(33)
    assert r.pending_stop_sending() == 33
    assert r.consumed == 6
    assert r.read() == b""
    r.handle_stream_frame(6, b"ghij", False)
    assert r.consumed == 10
    assert r.readable_bytes == 0
    with pytest.raises(QuicProtocolError):  # still flow-control checked
        r.handle_stream_frame(99, b"xx", False)
    r.on_stop_sending_sent()
    assert r.pending_stop_sending() is None
    r.on_stop_sending_delivered(False)
    assert r.pending_stop_sending() == 33
    r.handle_reset(33, 12)
    assert r.pending_stop_sending() is None  # no point once reset (RFC 9000 §3.5)
    assert recv_state(r) is RecvState.RESET_READ
    assert r.consumed == 12


def test_stop_sending_then_fin_completes_the_stream() -> None:
    r = StreamReceiver(initial_window=100)
    r.handle_stream_frame(0, b"abc", False)
    r.stop_sending(1)
    r.handle_stream_frame(5, b"fg", True)
    assert recv_state(r) is RecvState.SIZE_KNOWN
    r.handle_stream_frame(3, b"de", False)
    assert recv_state(r) is RecvState.DATA_READ
    assert r.pending_stop_sending() is None


def test_stop_sending_after_all_data_arrived_just_drops_it() -> None:
    r = StreamReceiver(initial_window=100)
    r.handle_stream_frame(0, b"abc", True)
    r.stop_sending(1)
    assert r.pending_stop_sending() is None
    assert recv_state(r) is RecvState.DATA_READ
    assert r.consumed == 3


def test_max_stream_data_after_half_the_window_is_read() -> None:
    r = StreamReceiver(initial_window=100)
    r.handle_stream_frame(0, b"x" * 100, False)
    r.read(49)
    assert not r.wants_max_stream_data()
    assert r.pending_max_stream_data(0.0, 0.1) is None
    r.read(1)
    assert r.wants_max_stream_data()
    assert r.pending_max_stream_data(0.0, 0.1) == 150
    r.handle_stream_frame(100, b"y" * 50, False)  # the new limit is enforced already
    r.on_max_stream_data_sent(150)
    assert r.pending_max_stream_data(0.0, 0.1) is None


def test_lost_max_stream_data_rearms_only_if_latest() -> None:
    r = StreamReceiver(initial_window=100)
    r.handle_stream_frame(0, b"x" * 100, False)
    r.read(60)
    first = r.pending_max_stream_data(0.0, 0.1)
    assert first == 160
    r.on_max_stream_data_sent(first)
    r.on_max_stream_data_delivered(first, False)
    assert r.pending_max_stream_data(0.0, 0.1) == first
    r.on_max_stream_data_sent(first)
    r.handle_stream_frame(100, b"x" * 60, False)
    r.read(60)
    second = r.pending_max_stream_data(5.0, 0.1)
    assert second == 220
    r.on_max_stream_data_sent(second)
    r.on_max_stream_data_delivered(first, False)
    assert r.pending_max_stream_data(5.0, 0.1) is None


def test_no_max_stream_data_once_final_size_known() -> None:
    r = StreamReceiver(initial_window=100)
    r.handle_stream_frame(0, b"x" * 80, True)
    r.read(79)
    assert r.pending_max_stream_data(0.0, 0.1) is None


def test_stream_window_grows_with_fast_reads() -> None:
    r = StreamReceiver(initial_window=1000, max_window=4000)
    now = 0.0
    limits = []
    for _ in range(6):
        r.handle_stream_frame(
            r.highest_received, b"x" * (r.max_stream_data - r.highest_received), False
        )
        r.read()
        now += 0.01  # whole windows consumed in a tenth of an RTT
        limit = r.pending_max_stream_data(now, 0.1)
        assert limit is not None
        r.on_max_stream_data_sent(limit)
        limits.append(r.window)
    assert limits == [1000, 2000, 4000, 4000, 4000, 4000]


def test_stream_window_stays_with_slow_reads() -> None:
    r = StreamReceiver(initial_window=1000, max_window=4000)
    now = 0.0
    for _ in range(4):
        r.handle_stream_frame(r.highest_received, b"x" * 600, False)
        r.read()
        now += 1.0  # ten RTTs per window
        limit = r.pending_max_stream_data(now, 0.1)
        if limit is not None:
            r.on_max_stream_data_sent(limit)
    assert r.window == 1000


# -- the stream manager ---------------------------------------------------------------------

LIMITS = {
    "initial_max_data": 1 << 20,
    "initial_max_streams_bidi": 4,
    "initial_max_streams_uni": 4,
    "initial_max_stream_data_bidi_local": 1 << 16,
    "initial_max_stream_data_bidi_remote": 1 << 16,
    "initial_max_stream_data_uni": 1 << 16,
}


def manager(is_client: bool, **overrides: int) -> StreamManager:
    kwargs: dict[str, int] = {
        "max_streams_bidi": 4,
        "max_streams_uni": 4,
        "max_stream_data_bidi_local": 1 << 16,
        "max_stream_data_bidi_remote": 1 << 16,
        "max_stream_data_uni": 1 << 16,
        "max_data": 1 << 20,
    }
    kwargs.update(overrides)
    return StreamManager(is_client, **kwargs)


def pair(**peer_limits: int) -> tuple[StreamManager, StreamManager]:
    client, server = manager(True), manager(False)
    limits = {**LIMITS, **peer_limits}
    client.apply_peer_limits(**limits)
    server.apply_peer_limits(**limits)
    return client, server


def pump(a: StreamManager, b: StreamManager, now: float = 0.0, rounds: int = 100) -> None:
    """Move every frame both ways without loss until nothing is left."""
    for _ in range(rounds):
        moved = False
        for src, dst in ((a, b), (b, a)):
            while (f := src.next_stream_frame(1200)) is not None:
                dst.on_stream_frame(f.stream_id, f.offset, f.data, f.fin)
                src.on_stream_frame_delivered(f.stream_id, f.offset, len(f.data), f.fin, True)
                moved = True
            for c in src.pending_control_frames(now, 0.1):
                src.on_control_sent(c)
                deliver_control(dst, c)
                src.on_control_delivered(c, True)
                moved = True
        if not moved:
            return


def deliver_control(dst: StreamManager, c: ControlFrame) -> None:
    t = c.frame_type
    sid = c.stream_id if c.stream_id is not None else -1
    if t == FrameType.RESET_STREAM:
        dst.on_reset_stream(sid, c.value, c.final_size)
    elif t == FrameType.STOP_SENDING:
        dst.on_stop_sending(sid, c.value)
    elif t == FrameType.MAX_STREAM_DATA:
        dst.on_max_stream_data(sid, c.value)
    elif t == FrameType.STREAM_DATA_BLOCKED:
        dst.on_stream_data_blocked(sid, c.value)
    elif t == FrameType.MAX_DATA:
        dst.on_max_data(c.value)
    elif t == FrameType.DATA_BLOCKED:
        dst.on_data_blocked(c.value)
    elif t in (FrameType.MAX_STREAMS_BIDI, FrameType.MAX_STREAMS_UNI):
        dst.on_max_streams(t == FrameType.MAX_STREAMS_BIDI, c.value)


def test_open_stream_ids_per_role_and_direction() -> None:
    client, server = pair()
    assert [client.open_stream(True) for _ in range(3)] == [0, 4, 8]
    assert [client.open_stream(False) for _ in range(2)] == [2, 6]
    assert [server.open_stream(True) for _ in range(2)] == [1, 5]
    assert [server.open_stream(False) for _ in range(2)] == [3, 7]
    assert client.get(2) is not None and client.get(2).receiver is None  # type: ignore[union-attr]
    assert server.get(3).sender is not None  # type: ignore[union-attr]


def test_open_until_blocked_then_max_streams_unblocks() -> None:
    client, _ = pair(initial_max_streams_bidi=2)
    client.open_stream(True)
    client.open_stream(True)
    with pytest.raises(StreamLimitReached):
        client.open_stream(True)
    with pytest.raises(StreamLimitReached):
        client.open_stream(True)
    frames = client.pending_control_frames(0.0, 0.1)
    assert frames == [ControlFrame(FrameType.STREAMS_BLOCKED_BIDI, None, 2)]  # once per limit
    client.on_control_sent(frames[0])
    assert client.pending_control_frames(0.0, 0.1) == []
    client.on_control_delivered(frames[0], False)  # lost while still blocked: again
    assert client.pending_control_frames(0.0, 0.1) == frames
    client.on_max_streams(True, 1)  # lower: ignored
    with pytest.raises(StreamLimitReached):
        client.open_stream(True)
    client.on_max_streams(True, 3)
    assert client.pop_events().bidi_streams_available
    assert client.pending_control_frames(0.0, 0.1) == []
    assert client.open_stream(True) == 8
    assert client.open_stream(False) == 2  # uni limit is separate


def test_try_open_stream_says_none_at_the_limit_and_signals_like_open_stream() -> None:
    client, _ = pair(initial_max_streams_bidi=1)
    assert client.try_open_stream(True) == 0
    assert client.try_open_stream(True) is None  # no exception, no stream
    assert client.try_open_stream(True) is None
    assert client.get(4) is None
    frames = client.pending_control_frames(0.0, 0.1)
    assert frames == [ControlFrame(FrameType.STREAMS_BLOCKED_BIDI, None, 1)]  # once per limit
    client.on_control_sent(frames[0])
    client.on_max_streams(True, 2)
    assert client.try_open_stream(True) == 4
    assert client.try_open_stream(True) is None


def test_peer_streams_open_implicitly_in_order() -> None:
    _, server = pair()
    server.on_stream_frame(8, 0, b"hi", False)
    assert server.pop_events().opened == (0, 4, 8)
    for sid in (0, 4, 8):
        assert server.get(sid) is not None
    server.on_stream_frame(4, 0, b"x", False)
    server.on_stream_frame(2, 0, b"u", False)  # uni: its own counter
    assert server.pop_events().opened == (2,)


def test_peer_over_the_stream_limit_is_a_stream_limit_error() -> None:
    _, server = pair()  # we allow 4 bidi: ids 0, 4, 8, 12
    server.on_stream_frame(12, 0, b"ok", False)
    with pytest.raises(QuicProtocolError) as info:
        server.on_stream_frame(16, 0, b"no", False)
    assert info.value.error_code == E.STREAM_LIMIT_ERROR
    server.on_stream_frame(14, 0, b"ok", False)  # 4th client uni stream
    with pytest.raises(QuicProtocolError) as info:
        server.on_stream_frame(18, 0, b"no", False)
    assert info.value.error_code == E.STREAM_LIMIT_ERROR
    with pytest.raises(QuicProtocolError) as info:
        server.on_max_stream_data(18, 10)  # the direction rule is checked first
    assert info.value.error_code == E.STREAM_STATE_ERROR


def test_frame_for_our_unopened_stream_is_a_stream_state_error() -> None:
    client, _ = pair()
    client.open_stream(True)  # id 0
    client.on_max_stream_data(0, 100)
    calls: list[Callable[[], None]] = [
        lambda: client.on_stream_frame(4, 0, b"x", False),
        lambda: client.on_max_stream_data(4, 100),
        lambda: client.on_stop_sending(6, 1),
    ]
    for call in calls:
        with pytest.raises(QuicProtocolError) as info:
            call()
        assert info.value.error_code == E.STREAM_STATE_ERROR


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("on_stream_frame", (0, b"x", False)),
        ("on_reset_stream", (1, 0)),
        ("on_stream_data_blocked", (0,)),
    ],
)
def test_sender_frames_on_our_uni_stream_are_rejected(name: str, args: tuple[Any, ...]) -> None:
    client, _ = pair()
    sid = client.open_stream(False)
    with pytest.raises(QuicProtocolError) as info:
        getattr(client, name)(sid, *args)
    assert info.value.error_code == E.STREAM_STATE_ERROR


@pytest.mark.parametrize(
    ("name", "args"), [("on_max_stream_data", (10,)), ("on_stop_sending", (1,))]
)
def test_receiver_frames_on_peer_uni_stream_are_rejected(name: str, args: tuple[Any, ...]) -> None:
    _, server = pair()
    server.on_stream_frame(2, 0, b"x", False)
    with pytest.raises(QuicProtocolError) as info:
        getattr(server, name)(2, *args)
    assert info.value.error_code == E.STREAM_STATE_ERROR
    client, _ = pair()
    sid = client.open_stream(False)
    client.on_max_stream_data(sid, 10)  # legal the other way round
    client.on_stop_sending(sid, 1)


def test_application_calls_on_the_wrong_direction_are_local_errors() -> None:
    client, _ = pair()
    uni = client.open_stream(False)
    with pytest.raises(StreamStateError):
        client.read(uni)
    with pytest.raises(StreamStateError):
        client.stop_sending(uni, 1)
    client.on_stream_frame(3, 0, b"x", False)  # server-initiated uni: receive-only
    with pytest.raises(StreamStateError):
        client.write(3, b"x")
    with pytest.raises(StreamStateError):
        client.reset_stream(3, 1)
    with pytest.raises(StreamStateError):
        client.write(40, b"never opened")


def test_protocol_errors_carry_the_frame_type() -> None:
    _, server = pair()
    with pytest.raises(QuicProtocolError) as info:
        server.on_stream_frame(0, 1 << 16, b"x", False, frame_type=0x0E)
    assert info.value.error_code == E.FLOW_CONTROL_ERROR
    assert info.value.frame_type == 0x0E


def test_full_exchange_frees_streams_and_ignores_late_frames() -> None:
    client, server = pair()
    sid = client.open_stream(True)
    client.write(sid, b"request", end_stream=True)
    pump(client, server)
    server.pop_events()
    assert server.read(sid) == b"request"
    assert server.read(sid) == b""
    server.write(sid, b"response", end_stream=True)
    pump(client, server)
    assert client.read(sid) == b"response"
    assert client.get(sid).receiver.at_eof  # type: ignore[union-attr]
    assert client.read(sid) == b""  # EOF read: Data Read
    pump(client, server)
    assert client.get(sid) is None and server.get(sid) is None
    assert len(client) == 0 and len(server) == 0
    # late retransmissions for the forgotten stream are ignored, not errors
    server.on_stream_frame(sid, 0, b"request", True)
    server.on_stop_sending(sid, 1)
    client.on_stream_frame(sid, 0, b"response", True)
    client.on_max_stream_data(sid, 1 << 20)
    assert server.get(sid) is None and client.get(sid) is None
    assert server.pop_events().opened == ()
    with pytest.raises(StreamStateError):
        client.write(sid, b"more")


def test_stream_credit_returns_as_peer_streams_close() -> None:
    client, server = pair()  # server allows 4 bidi, batches MAX_STREAMS per 2
    ids = [client.open_stream(True) for _ in range(4)]
    with pytest.raises(StreamLimitReached):
        client.open_stream(True)
    for sid in ids:
        client.write(sid, b"q", end_stream=True)
    pump(client, server)

    def close_one(sid: int) -> None:
        assert server.read(sid) == b"q"
        server.read(sid)
        server.write(sid, b"", end_stream=True)

    close_one(ids[0])
    pump(client, server)
    assert server.pending_max_streams(True) is None  # 1 returned: below the batch
    with pytest.raises(StreamLimitReached):
        client.open_stream(True)
    close_one(ids[1])
    assert server.pending_max_streams(True) is None  # FIN not sent yet
    frames = server.pending_control_frames(0.0, 0.1)
    assert frames == []
    f = server.next_stream_frame(1200)
    assert f is not None and f.fin
    # Read to the end and all sent: the credit comes back before the ACK.
    assert server.pending_max_streams(True) == 6
    server.on_stream_frame_delivered(f.stream_id, f.offset, len(f.data), f.fin, True)
    assert server.pending_max_streams(True) == 6  # counted once
    (frame,) = server.pending_control_frames(0.0, 0.1)
    assert frame == ControlFrame(FrameType.MAX_STREAMS_BIDI, None, 6)
    server.on_control_sent(frame)
    assert server.pending_max_streams(True) is None
    server.on_control_delivered(frame, False)
    assert server.pending_max_streams(True) == 6  # lost: re-armed
    client.on_max_streams(True, 6)
    assert [client.open_stream(True) for _ in range(2)] == [16, 20]
    server.on_stream_frame(20, 0, b"", False)  # 6 streams now allowed
    with pytest.raises(QuicProtocolError):
        server.on_stream_frame(24, 0, b"", False)


def _request_replied_unacked(client: StreamManager, server: StreamManager) -> list[int]:
    """The client's streams carry a request + FIN; the server reads each to
    its end and sends a reply + FIN that the client never acknowledges."""
    ids = []
    while True:
        try:
            ids.append(client.open_stream(True))
        except StreamLimitReached:
            break
    for sid in ids:
        client.write(sid, b"q", end_stream=True)
    while (f := client.next_stream_frame(1200)) is not None:
        server.on_stream_frame(f.stream_id, f.offset, f.data, f.fin)
    for sid in ids:
        assert server.read_or_eof(sid) == b"q"
        assert server.read_or_eof(sid) == b""
        server.write(sid, b"r", end_stream=True)
    while (f := server.next_stream_frame(1200)) is not None:
        client.on_stream_frame(f.stream_id, f.offset, f.data, f.fin)
    for c in server.pending_control_frames(0.0, 0.1):
        server.on_control_sent(c)
        deliver_control(client, c)
    return ids


def test_stream_credit_returns_once_read_and_all_sent_before_the_ack() -> None:
    """RFC 9000 §4.6: a peer stream read to its end whose reply and FIN were
    all sent returns its credit then, not a round trip later when the peer
    acknowledged the reply; the MAX_STREAMS reaches the client while the
    server still keeps the streams (the reply may need retransmitting)."""
    client, server = pair()  # server allows 4 bidi
    ids = _request_replied_unacked(client, server)
    assert len(ids) == 4
    assert len(server) == 4  # nothing acknowledged: every stream is kept
    assert client.streams_available(True) == 4  # MAX_STREAMS 8 arrived
    # The ACKs retire the streams without returning their credit twice.
    for sid in ids:
        server.on_stream_frame_delivered(sid, 0, 1, True, True)
    assert len(server) == 0
    assert server.pending_max_streams(True) is None
    assert server.pending_control_frames(0.0, 0.1) == []


def test_early_stream_credit_is_bounded_by_the_limit() -> None:
    """A peer that never acknowledges the replies gets at most the limit in
    early credit: the server never keeps more than twice its limit of peer
    streams. Once the early-credited streams are acknowledged, the others
    return their credit as they are forgotten."""
    client, server = pair()  # server allows 4 bidi
    first = _request_replied_unacked(client, server)
    second = _request_replied_unacked(client, server)
    assert len(first) == len(second) == 4
    assert len(server) == 8
    assert client.streams_available(True) == 0  # no third round
    assert _request_replied_unacked(client, server) == []
    for sid in first + second:
        server.on_stream_frame_delivered(sid, 0, 1, True, True)
    assert len(server) == 0
    (frame,) = server.pending_control_frames(0.0, 0.1)
    assert frame == ControlFrame(FrameType.MAX_STREAMS_BIDI, None, 12)


def test_many_streams_do_not_accumulate() -> None:
    client, server = pair()
    client.on_max_streams(False, 1 << 20)
    for _ in range(300):
        try:
            sid = client.open_stream(False)
        except StreamLimitReached:
            pump(client, server)
            continue
        client.write(sid, b"data", end_stream=True)
        pump(client, server)
        for opened in server.pop_events().opened:
            assert server.read(opened) == b"data"
            server.read(opened)
        pump(client, server)
    assert len(client) == 0 and len(server) == 0


def test_peer_limits_use_the_right_perspective() -> None:
    client = manager(True)
    client.apply_peer_limits(
        initial_max_data=1000,
        initial_max_streams_bidi=10,
        initial_max_streams_uni=10,
        initial_max_stream_data_bidi_local=111,  # streams the peer (server) opens
        initial_max_stream_data_bidi_remote=222,  # streams we open
        initial_max_stream_data_uni=333,
    )
    ours = client.get(client.open_stream(True))
    uni = client.get(client.open_stream(False))
    client.on_stream_frame(1, 0, b"", False)  # server-initiated bidi
    theirs = client.get(1)
    assert ours is not None and ours.sender is not None and ours.sender.max_stream_data == 222
    assert uni is not None and uni.sender is not None and uni.sender.max_stream_data == 333
    assert theirs is not None and theirs.sender is not None and theirs.sender.max_stream_data == 111


def test_our_receive_windows_use_the_right_perspective() -> None:
    client = manager(
        True, max_stream_data_bidi_local=10, max_stream_data_bidi_remote=20, max_stream_data_uni=30
    )
    client.apply_peer_limits(**LIMITS)
    ours = client.get(client.open_stream(True))
    client.on_stream_frame(1, 0, b"", False)
    client.on_stream_frame(3, 0, b"", False)
    assert ours is not None and ours.receiver is not None
    assert ours.receiver.max_stream_data == 10
    assert client.get(1).receiver.max_stream_data == 20  # type: ignore[union-attr]
    assert client.get(3).receiver.max_stream_data == 30  # type: ignore[union-attr]


def test_peer_limits_raise_streams_opened_before_them() -> None:
    client = manager(True)
    client.on_max_streams(True, 1)  # e.g. remembered for 0-RTT
    sid = client.open_stream(True)
    client.write(sid, b"early")
    assert client.next_stream_frame(1200) is None  # no stream credit yet
    client.apply_peer_limits(**LIMITS)
    f = client.next_stream_frame(1200)
    assert f is not None and f.data == b"early"


def test_round_robin_between_streams() -> None:
    client, _ = pair()
    ids = [client.open_stream(True) for _ in range(3)]
    for sid in ids:
        client.write(sid, b"x" * 5000)
    frames = list(iter(lambda: client.next_stream_frame(1000), None))
    order = [f.stream_id for f in frames]
    assert len(order) % 3 == 0
    assert order == ids * (len(order) // 3)  # strictly A, B, C, A, B, C...
    for sid in ids:
        assert sum(len(f.data) for f in frames if f.stream_id == sid) == 5000


def test_frame_size_includes_the_header() -> None:
    client, _ = pair()
    sid = client.open_stream(True)
    client.write(sid, b"x" * 5000)
    f = client.next_stream_frame(60)
    assert f is not None
    assert len(f.data) == 60 - 1 - 1 - 1  # type, id, length (offset 0 is omitted)
    f = client.next_stream_frame(60)
    assert f is not None
    assert len(f.data) == 60 - 1 - 1 - 1 - 1  # + 1-byte offset
    f = client.next_stream_frame(1000)
    assert f is not None
    assert len(f.data) == 1000 - 1 - 1 - 2 - 2  # 2-byte offset and length
    assert client.next_stream_frame(3) is None  # nothing fits


def test_connection_credit_limits_new_data_but_not_retransmissions() -> None:
    client, _ = pair(initial_max_data=3000)
    a, b = client.open_stream(True), client.open_stream(True)
    client.write(a, b"a" * 2000)
    client.write(b, b"b" * 2000)
    frames = list(iter(lambda: client.next_stream_frame(1200), None))
    assert sum(len(f.data) for f in frames) == 3000
    assert client.send_credit.available() == 0
    assert ControlFrame(FrameType.DATA_BLOCKED, None, 3000) in client.pending_control_frames(0, 0)
    lost = frames[0]
    client.on_stream_frame_delivered(lost.stream_id, lost.offset, len(lost.data), lost.fin, False)
    again = client.next_stream_frame(1200)
    assert again is not None and (again.offset, again.data) == (lost.offset, lost.data)
    assert client.next_stream_frame(1200) is None
    client.on_max_data(5000)
    rest = list(iter(lambda: client.next_stream_frame(1200), None))
    assert sum(len(f.data) for f in rest) == 1000
    assert {f.stream_id for f in rest} <= {a, b}
    assert client.get(a).sender.highest_sent + client.get(b).sender.highest_sent == 4000  # type: ignore[union-attr]


def test_stream_data_blocked_is_offered_as_a_control_frame() -> None:
    client, _ = pair(initial_max_stream_data_bidi_remote=100)
    sid = client.open_stream(True)
    client.write(sid, b"x" * 300)
    frames = list(iter(lambda: client.next_stream_frame(1200), None))
    assert sum(len(f.data) for f in frames) == 100
    ctl = client.pending_control_frames(0, 0)
    assert ctl == [ControlFrame(FrameType.STREAM_DATA_BLOCKED, sid, 100)]
    client.on_control_sent(ctl[0])
    assert client.pending_control_frames(0, 0) == []
    client.on_max_stream_data(sid, 250)
    assert sum(len(f.data) for f in iter(lambda: client.next_stream_frame(1200), None)) == 150


def test_peer_overrunning_connection_credit() -> None:
    server = manager(False, max_data=1000)
    server.apply_peer_limits(**LIMITS)
    server.on_stream_frame(0, 0, b"x" * 600, False)
    server.on_stream_frame(4, 0, b"x" * 400, False)
    server.on_stream_frame(4, 0, b"x" * 400, False)  # duplicates cost nothing
    with pytest.raises(QuicProtocolError) as info:
        server.on_stream_frame(8, 0, b"x", False)
    assert info.value.error_code == E.FLOW_CONTROL_ERROR


def test_reset_final_size_counts_toward_connection_credit_and_is_returned() -> None:
    server = manager(False, max_data=1000)
    server.apply_peer_limits(**LIMITS)
    server.on_stream_frame(0, 0, b"x" * 100, False)
    server.on_reset_stream(0, 5, 900)
    with pytest.raises(QuicProtocolError):
        server.on_stream_frame(4, 0, b"x" * 101, False)
    server2 = manager(False, max_data=1000)
    server2.apply_peer_limits(**LIMITS)
    server2.on_reset_stream(0, 5, 900)
    assert server2.recv_credit.window.consumed == 900  # nothing to read: all returned
    (f,) = server2.pending_control_frames(0.0, 0.1)
    assert f == ControlFrame(FrameType.MAX_DATA, None, 1900)


def test_reading_returns_connection_credit() -> None:
    server = manager(False, max_data=1000)
    server.apply_peer_limits(**LIMITS)
    server.on_stream_frame(0, 0, b"x" * 1000, False)
    assert server.pending_control_frames(0.0, 0.1) == []
    server.read(0, 400)
    assert server.pending_control_frames(0.0, 0.1) == []
    server.read(0, 100)
    frames = server.pending_control_frames(0.0, 0.1)
    assert ControlFrame(FrameType.MAX_DATA, None, 1500) in frames


def test_stop_sending_is_answered_with_reset_stream() -> None:
    client, server = pair()
    sid = client.open_stream(True)
    client.write(sid, b"abc")
    pump(client, server)
    server.pop_events()
    server.stop_sending(sid, 99)
    (stop,) = server.pending_control_frames(0, 0)
    assert stop == ControlFrame(FrameType.STOP_SENDING, sid, 99)
    server.on_control_sent(stop)
    client.on_stop_sending(sid, stop.value)
    assert client.pop_events().stop_sending == ((sid, 99),)
    (reset,) = client.pending_control_frames(0, 0)
    assert reset == ControlFrame(FrameType.RESET_STREAM, sid, 99, 3)
    client.on_control_sent(reset)
    client.on_control_delivered(reset, False)
    assert client.pending_control_frames(0, 0) == [reset]
    with pytest.raises(StreamStateError):
        client.write(sid, b"more")
    server.on_reset_stream(sid, reset.value, reset.final_size)
    assert server.pop_events().reset == ()  # the application asked to stop: nobody to tell
    assert server.get(sid).receiver.is_finished  # type: ignore[union-attr]


def test_events_readable_reset_writable() -> None:
    client, server = pair()
    sid = client.open_stream(True)
    client.write(sid, b"hello")
    f = client.next_stream_frame(1200)
    assert f is not None
    server.on_stream_frame(f.stream_id, f.offset, f.data, f.fin)
    ev = server.pop_events()
    assert ev.opened == (sid,) and ev.readable == (sid,)
    assert not server.pop_events()
    server.on_stream_frame(f.stream_id, f.offset, f.data, f.fin)  # duplicate: nothing new
    assert not server.pop_events()
    client.on_stream_frame_delivered(sid, 0, 5, False, True)
    assert client.pop_events().writable == (sid,)
    server.on_reset_stream(sid, 7, 5)
    ev = server.pop_events()
    assert ev.reset == ((sid, 7),) and ev.readable == ()
    receiver = server.get(sid).receiver  # type: ignore[union-attr]
    assert receiver is not None and receiver.state is RecvState.RESET_READ  # told = read
    assert receiver.reset_error_code == 7


def test_the_last_acknowledgement_is_reported_though_the_stream_is_forgotten() -> None:
    # Whoever waits for a stream's data to be delivered (the HTTP/3 drain)
    # hears of the acknowledgement that finishes it, not only of earlier ones.
    client, server = pair()
    sid = client.open_stream(True)
    client.write(sid, b"hi")
    data = client.next_stream_frame(1200)
    assert data is not None
    server.on_stream_frame(data.stream_id, data.offset, data.data, data.fin)
    client.on_stream_frame_delivered(sid, data.offset, len(data.data), data.fin, True)
    client.write(sid, b"", True)  # the FIN alone: its acknowledgement frees no bytes
    sent = client.next_stream_frame(1200)
    assert sent is not None and sent.fin and not sent.data
    server.on_stream_frame(sent.stream_id, sent.offset, sent.data, sent.fin)
    assert server.read(sid) == b"hi"
    server.write(sid, b"", True)
    while (f := server.next_stream_frame(1200)) is not None:
        client.on_stream_frame(f.stream_id, f.offset, f.data, f.fin)
    assert client.read(sid) == b""  # the reply's FIN: the receive side is done
    client.pop_events()
    client.on_stream_frame_delivered(sid, sent.offset, len(sent.data), sent.fin, True)
    assert client.get(sid) is None  # both halves finished: forgotten
    assert client.pop_events().writable == (sid,)


def test_statistics() -> None:
    client, server = pair()
    sid = client.open_stream(True)
    client.write(sid, b"x" * 3000)
    f1 = client.next_stream_frame(1200)
    f2 = client.next_stream_frame(1200)
    assert f1 is not None and f2 is not None
    client.on_stream_frame_delivered(sid, f1.offset, len(f1.data), f1.fin, True)
    stats = client.statistics(sid)
    assert stats.bytes_written == 3000
    assert stats.bytes_sent == len(f1.data) + len(f2.data)
    assert stats.bytes_acked == len(f1.data)
    assert stats.bytes_buffered == 3000 - len(f1.data)
    server.on_stream_frame(sid, f2.offset, f2.data, False)
    server.on_stream_frame(sid, f1.offset, f1.data, False)
    server.read(sid, 100)
    stats = server.statistics(sid)
    assert stats.bytes_received == f2.offset + len(f2.data)
    assert stats.bytes_read == 100


def test_stream_window_growth_also_grows_the_connection_window() -> None:
    server = manager(False, max_data=1000, max_stream_data_bidi_remote=1000)
    server.apply_peer_limits(**LIMITS)
    now = 0.0
    for _ in range(3):
        receiver = server.get_for_frame(0, FrameType.STREAM)
        assert receiver is not None and receiver.receiver is not None
        r = receiver.receiver
        server.on_stream_frame(
            0, r.highest_received, b"x" * (r.max_stream_data - r.highest_received), False
        )
        server.read(0)
        now += 0.001
        for c in server.pending_control_frames(now, 0.1):
            server.on_control_sent(c)
    assert r.window == 4000
    assert server.recv_credit.window.window >= 6000


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32))
def test_lossy_multi_stream_exchange(seed: int) -> None:
    """Both directions, several streams, random loss and reordering, small windows."""
    rnd = random.Random(seed)
    client = manager(True, max_data=3000, max_stream_data_bidi_local=700)
    server = manager(False, max_data=2500, max_stream_data_bidi_remote=600)
    small = {**LIMITS, "initial_max_data": 2500, "initial_max_stream_data_bidi_remote": 600}
    client.apply_peer_limits(**small)
    server.apply_peer_limits(
        **{**small, "initial_max_data": 3000, "initial_max_stream_data_bidi_local": 700}
    )
    payloads = {}
    for _ in range(3):
        sid = client.open_stream(True)
        payloads[sid] = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(0, 3000)))
        client.write(sid, payloads[sid], end_stream=True)
    received: dict[int, bytearray] = {sid: bytearray() for sid in payloads}
    echoed: dict[int, bytearray] = {sid: bytearray() for sid in payloads}
    wire: list[tuple[StreamManager, StreamManager, Any]] = []
    now = 0.0
    for _ in range(3000):
        now += 0.001
        for src, dst in ((client, server), (server, client)):
            if (f := src.next_stream_frame(rnd.randint(20, 500))) is not None:
                wire.append((src, dst, f))
            for c in src.pending_control_frames(now, 0.01):
                src.on_control_sent(c)
                wire.append((src, dst, c))
        if wire and rnd.random() < 0.7:
            src, dst, item = wire.pop(rnd.randrange(len(wire)))
            lost = rnd.random() < 0.2
            if isinstance(item, ControlFrame):
                if not lost:
                    deliver_control(dst, item)
                src.on_control_delivered(item, not lost)
            else:
                if not lost:
                    dst.on_stream_frame(item.stream_id, item.offset, item.data, item.fin)
                src.on_stream_frame_delivered(
                    item.stream_id, item.offset, len(item.data), item.fin, not lost
                )
        # the server echoes, the client collects
        for sid in payloads:
            if (s := server.get(sid)) is not None and s.receiver is not None:
                chunk = server.read(sid, rnd.randint(1, 400))
                received[sid] += chunk
                if chunk:
                    server.write(sid, chunk)
                if s.receiver.at_eof and s.sender is not None and s.sender.final_size is None:
                    server.read(sid)
                    server.write(sid, b"", end_stream=True)
            if client.get(sid) is not None:
                echoed[sid] += client.read(sid, rnd.randint(1, 400))
        server.pop_events()
        client.pop_events()
        if len(client) == 0 and len(server) == 0:
            break
    for sid, data in payloads.items():
        assert bytes(received[sid]) == data
        assert bytes(echoed[sid]) == data
    assert len(client) == 0 and len(server) == 0


def test_stream_credit_returns_in_eighths_of_a_large_limit() -> None:
    """With 100 streams allowed, credit comes back 12 at a time: a peer with
    64 requests in flight (36 streams of slack) never waits for 50 to close."""
    client, server = manager(True), manager(False, max_streams_bidi=100)
    client.apply_peer_limits(**{**LIMITS, "initial_max_streams_bidi": 100})
    server.apply_peer_limits(**LIMITS)
    ids = [client.open_stream(True) for _ in range(100)]
    for sid in ids:
        client.write(sid, b"q", end_stream=True)
    pump(client, server)

    def finish(sid: int) -> None:
        assert server.read(sid) == b"q"
        server.read(sid)  # at EOF: the receive side is done
        server.write(sid, b"", end_stream=True)
        pump(client, server)  # the FIN is acknowledged: the stream is retired

    for sid in ids[:11]:
        finish(sid)
    with pytest.raises(StreamLimitReached):  # 11 returned: below the batch
        client.open_stream(True)
    finish(ids[11])  # 12: MAX_STREAMS 112 reached the client
    assert len([client.open_stream(True) for _ in range(12)]) == 12
    with pytest.raises(StreamLimitReached):
        client.open_stream(True)
