"""QUIC frames (RFC 9000 §19, §12.4 Table 3; RFC 9221 §4): wire forms and errors."""

from __future__ import annotations

from typing import Any

import pytest

from ghostwire.quic.buffer import Reader, encode_varint
from ghostwire.quic.errors import (
    FrameEncodingError,
    QuicProtocolError,
    TransportErrorCode,
)
from ghostwire.quic.frames import (
    AckFrame,
    ConnectionCloseFrame,
    CryptoFrame,
    DataBlockedFrame,
    DatagramFrame,
    Frame,
    FrameType,
    HandshakeDoneFrame,
    MaxDataFrame,
    MaxStreamDataFrame,
    MaxStreamsFrame,
    NewConnectionIdFrame,
    NewTokenFrame,
    PaddingFrame,
    PathChallengeFrame,
    PathResponseFrame,
    PingFrame,
    ResetStreamFrame,
    RetireConnectionIdFrame,
    StopSendingFrame,
    StreamDataBlockedFrame,
    StreamFrame,
    StreamsBlockedFrame,
    encode_frame,
    encode_new_connection_id,
    frame_allowed,
    is_ack_eliciting,
    parse_frame,
    parse_frames,
)
from ghostwire.quic.packet import PacketType

MAX_VARINT = (1 << 62) - 1
TOKEN16 = bytes(range(0xA0, 0xB0))
PATH_DATA = bytes.fromhex("0102030405060708")


def v(value: int) -> bytes:
    return encode_varint(value)


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def parse_one(data: bytes) -> Frame:
    reader = Reader(data)
    frame = parse_frame(reader)
    assert reader.eof(), f"{reader.remaining()} bytes left after {frame!r}"
    return frame


# (wire, frame) pairs whose wire form is exactly what encode_frame writes.
CANONICAL: list[tuple[bytes, Frame]] = [
    (h("00"), PaddingFrame(1)),
    (h("00 00 00 00"), PaddingFrame(4)),
    (h("01"), PingFrame()),
    # largest 16, delay 5, one extra range: first range 2 -> [14, 16];
    # gap 1, length 3 -> top 14 - 1 - 2 = 11, bottom 8 (RFC 9000 §19.3.1).
    (h("02 10 05 01 02 01 03"), AckFrame(((14, 16), (8, 11)), 5)),
    (h("02 00 00 00 00"), AckFrame(((0, 0),))),
    (h("03 10 05 00 00 01 02 03"), AckFrame(((16, 16),), 5, (1, 2, 3))),
    (h("04 04 0a 40 64"), ResetStreamFrame(4, 10, 100)),
    (h("05 08 0b"), StopSendingFrame(8, 11)),
    (h("06 00 03") + b"abc", CryptoFrame(0, b"abc")),
    (h("06 44 00 02") + b"hi", CryptoFrame(1024, b"hi")),
    (h("06 00 00"), CryptoFrame(0, b"")),
    (h("07 03") + b"tok", NewTokenFrame(b"tok")),
    (h("0a 04 02") + b"hi", StreamFrame(4, 0, b"hi", False)),
    (h("0b 04 00"), StreamFrame(4, 0, b"", True)),
    (h("0e 04 0a 02") + b"hi", StreamFrame(4, 10, b"hi", False)),
    (h("0f 04 0a 02") + b"hi", StreamFrame(4, 10, b"hi", True)),
    (h("10 44 00"), MaxDataFrame(1024)),
    (h("11 04 44 00"), MaxStreamDataFrame(4, 1024)),
    (h("12 0a"), MaxStreamsFrame(True, 10)),
    (h("13 0b"), MaxStreamsFrame(False, 11)),
    (h("14 0c"), DataBlockedFrame(12)),
    (h("15 04 0c"), StreamDataBlockedFrame(4, 12)),
    (h("16 0a"), StreamsBlockedFrame(True, 10)),
    (h("17 0b"), StreamsBlockedFrame(False, 11)),
    (h("18 02 01 04") + b"cid!" + TOKEN16, NewConnectionIdFrame(2, 1, b"cid!", TOKEN16)),
    (h("19 02"), RetireConnectionIdFrame(2)),
    (h("1a") + PATH_DATA, PathChallengeFrame(PATH_DATA)),
    (h("1b") + PATH_DATA, PathResponseFrame(PATH_DATA)),
    (h("1c 0a 08 04") + b"oops", ConnectionCloseFrame(0x0A, 0x08, b"oops")),
    (h("1c 07 00 00"), ConnectionCloseFrame(0x07, 0x00, b"")),
    (h("1d 41 00 00"), ConnectionCloseFrame(0x100, None, b"")),
    (h("1d 00 02") + b"by", ConnectionCloseFrame(0, None, b"by")),
    (h("1e"), HandshakeDoneFrame()),
    (h("31 03") + b"abc", DatagramFrame(b"abc", True)),
    (h("30") + b"rest", DatagramFrame(b"rest", False)),
]

# Wire forms encode_frame never writes but a peer may send.
PARSE_ONLY: list[tuple[bytes, Frame]] = [
    (h("08 04") + b"rest", StreamFrame(4, 0, b"rest", False)),
    (h("09 04"), StreamFrame(4, 0, b"", True)),
    (h("0c 04 0a") + b"rest", StreamFrame(4, 10, b"rest", False)),
    (h("0d 04 0a") + b"rest", StreamFrame(4, 10, b"rest", True)),
    (h("0e 04 00 00"), StreamFrame(4, 0, b"", False)),  # explicit zero offset
    (h("40 01"), PingFrame()),  # a non-minimal frame type encoding
    (h("80 00 00 1e"), HandshakeDoneFrame()),
]


@pytest.mark.parametrize(("wire", "frame"), CANONICAL)
def test_frame_decodes(wire: bytes, frame: Frame) -> None:
    assert parse_one(wire) == frame


@pytest.mark.parametrize(("wire", "frame"), CANONICAL)
def test_frame_encodes(wire: bytes, frame: Frame) -> None:
    assert encode_frame(frame) == wire


@pytest.mark.parametrize(("wire", "frame"), PARSE_ONLY)
def test_frame_decodes_non_canonical_forms(wire: bytes, frame: Frame) -> None:
    assert parse_one(wire) == frame


def test_every_frame_type_is_covered() -> None:
    # Each RFC 9000 §19 / RFC 9221 type has a canonical example above.
    wire_types = {Reader(wire).pull_varint() for wire, _ in CANONICAL + PARSE_ONLY}
    expected = {int(t) for t in FrameType} | set(range(0x08, 0x10))
    assert wire_types == expected


@pytest.mark.parametrize(("wire", "frame"), CANONICAL)
def test_frame_type_property_matches_the_wire(wire: bytes, frame: Frame) -> None:
    wire_type = Reader(wire).pull_varint()
    if isinstance(frame, StreamFrame):
        assert wire_type & ~0x07 == frame.frame_type == FrameType.STREAM
    else:
        assert frame.frame_type == wire_type


def test_ack_frame_helpers() -> None:
    frame = AckFrame(((14, 16), (8, 11)), 5)
    assert frame.largest_acknowledged == 16
    assert frame.frame_type == FrameType.ACK
    assert AckFrame(((1, 1),), 0, (0, 0, 0)).frame_type == FrameType.ACK_ECN


def test_connection_close_kinds() -> None:
    assert not ConnectionCloseFrame(1, 0x08).is_application
    assert ConnectionCloseFrame(1).is_application
    assert ConnectionCloseFrame(1).frame_type == FrameType.CONNECTION_CLOSE_APP


def test_ack_with_many_ranges() -> None:
    ranges = tuple((n, n + 1) for n in range(1000, -1, -10))
    frame = AckFrame(ranges, 77, (5, 6, 7))
    assert parse_one(encode_frame(frame)) == frame


def test_ack_range_down_to_zero() -> None:
    # largest 5, first range 0, gap 0 -> top 3, length 3 -> bottom 0.
    assert parse_one(h("02 05 00 01 00 00 03")) == AckFrame(((5, 5), (0, 3)))


def test_large_values_round_trip() -> None:
    frames: list[Frame] = [
        ResetStreamFrame(MAX_VARINT, MAX_VARINT, MAX_VARINT),
        MaxDataFrame(MAX_VARINT),
        MaxStreamsFrame(True, 1 << 60),
        StreamsBlockedFrame(False, 1 << 60),
        StreamFrame(MAX_VARINT, MAX_VARINT - 1, b"x", True),
        StreamFrame(0, MAX_VARINT, b"", True),
        CryptoFrame(MAX_VARINT - 3, b"abc"),
        NewConnectionIdFrame(MAX_VARINT, MAX_VARINT, b"c" * 20, TOKEN16),
        ConnectionCloseFrame(MAX_VARINT, MAX_VARINT, b"r" * 300),
        AckFrame(((0, MAX_VARINT),), MAX_VARINT, (MAX_VARINT, 0, 1)),
    ]
    for frame in frames:
        assert parse_one(encode_frame(frame)) == frame


def test_new_connection_id_encodes_from_its_fields() -> None:
    # The control writer's path: no frame object, the same bytes.
    assert encode_new_connection_id(2, 1, b"cid!", TOKEN16) == h("18 02 01 04") + b"cid!" + TOKEN16
    frame = NewConnectionIdFrame(MAX_VARINT, MAX_VARINT - 1, b"c" * 20, TOKEN16)
    wire = encode_new_connection_id(MAX_VARINT, MAX_VARINT - 1, b"c" * 20, TOKEN16)
    assert parse_one(wire) == frame


def test_parse_frames_walks_a_payload() -> None:
    payload = b"".join(wire for wire, _ in CANONICAL if wire[0] not in (0x30,))
    payload += h("08 04") + b"tail"  # a STREAM without Length runs to the end
    frames = list(parse_frames(payload))
    expected = [frame for wire, frame in CANONICAL if wire[0] not in (0x30,)]
    # Consecutive PADDING examples merge into a single run.
    assert frames[0] == PaddingFrame(5)
    assert frames[1:-1] == expected[2:]
    assert frames[-1] == StreamFrame(4, 0, b"tail")


def test_parse_frames_on_memoryview_and_empty() -> None:
    assert list(parse_frames(b"")) == []
    data = memoryview(bytearray(h("01 1e 00 00")))
    assert list(parse_frames(data)) == [PingFrame(), HandshakeDoneFrame(), PaddingFrame(2)]  # type: ignore[arg-type]


def test_padding_stops_at_the_first_non_zero_byte() -> None:
    reader = Reader(h("00 00 00 01 00"))
    assert parse_frame(reader) == PaddingFrame(3)
    assert parse_frame(reader) == PingFrame()
    assert parse_frame(reader) == PaddingFrame(1)
    assert reader.eof()


def test_padding_respects_the_reader_end() -> None:
    reader = Reader(bytes(10), 0, 4)
    assert parse_frame(reader) == PaddingFrame(4)
    assert reader.pos == 4


def test_encode_frame_rejects_non_frames() -> None:
    with pytest.raises(TypeError):
        encode_frame("PING")  # type: ignore[arg-type]


# -- errors --------------------------------------------------------------------------


def assert_frame_error(data: bytes, frame_type: int | None) -> FrameEncodingError:
    with pytest.raises(FrameEncodingError) as info:
        list(parse_frames(data))
    error = info.value
    assert isinstance(error, QuicProtocolError)
    assert error.error_code == TransportErrorCode.FRAME_ENCODING_ERROR
    assert error.frame_type == frame_type
    return error


@pytest.mark.parametrize("frame_type", [0x1F, 0x20, 0x2F, 0x32, 0x40, 0x21, 0x4000, 0x3FFF])
def test_unknown_frame_type(frame_type: int) -> None:
    error = assert_frame_error(v(frame_type) + bytes(8), frame_type)
    assert "unknown" in error.reason


def test_unknown_frame_type_after_valid_frames() -> None:
    assert_frame_error(h("01 01 1f"), 0x1F)


def test_truncated_frame_type() -> None:
    with pytest.raises(FrameEncodingError) as info:
        parse_frame(Reader(h("40")))
    assert info.value.frame_type is None
    with pytest.raises(FrameEncodingError):
        parse_frame(Reader(b""))


# Frames whose prefixes are themselves valid frames are left out.
_PREFIX_VALID = {FrameType.PADDING, FrameType.DATAGRAM}


@pytest.mark.parametrize(
    ("wire", "frame"),
    [
        (wire, frame)
        for wire, frame in CANONICAL + PARSE_ONLY
        if len(wire) > 1
        and wire[0] not in _PREFIX_VALID
        and not (0x08 <= wire[0] <= 0x0F and not wire[0] & 0x02)
        and wire[0] < 0x40
    ],
)
def test_every_truncation_is_a_frame_encoding_error(wire: bytes, frame: Frame) -> None:
    wire_type = wire[0]
    for cut in range(1, len(wire)):
        assert_frame_error(wire[:cut], wire_type)


def test_truncated_stream_without_length_loses_nothing_it_had() -> None:
    # Type 0x0c: offset but no length, so only the stream ID and offset are required.
    assert_frame_error(h("0c"), 0x0C)
    assert_frame_error(h("0c 04"), 0x0C)
    assert parse_one(h("0c 04 0a")) == StreamFrame(4, 10, b"")


@pytest.mark.parametrize(
    "wire",
    [
        h("02 05 00 00 06"),  # first range reaches below 0
        h("02 05 00 01 00 04 00"),  # gap: top = 5 - 4 - 2 < 0
        h("02 05 00 01 00 00 04"),  # length: bottom = 3 - 4 < 0
        h("03 05 00 01 00 00 04 00 00 00"),
        h("02 00 00 01 00 00 00"),  # any gap below smallest 0
    ],
)
def test_ack_range_underflow(wire: bytes) -> None:
    assert_frame_error(wire, wire[0])


def test_ack_range_count_larger_than_the_frame() -> None:
    wire = h("02 40 64 00") + v(MAX_VARINT) + h("00") + bytes(6)
    error = assert_frame_error(wire, FrameType.ACK)
    assert "count" in error.reason


def test_ack_ecn_without_counts() -> None:
    assert_frame_error(h("03 05 00 00 00 01 02"), FrameType.ACK_ECN)


@pytest.mark.parametrize("length", [0, 21, 255])
def test_new_connection_id_bad_length(length: int) -> None:
    wire = h("18 02 01") + bytes([length]) + b"c" * length + TOKEN16
    assert_frame_error(wire, FrameType.NEW_CONNECTION_ID)


@pytest.mark.parametrize("length", [1, 20])
def test_new_connection_id_length_limits_accepted(length: int) -> None:
    wire = h("18 02 01") + bytes([length]) + b"c" * length + TOKEN16
    assert parse_one(wire) == NewConnectionIdFrame(2, 1, b"c" * length, TOKEN16)


def test_new_connection_id_retire_prior_to_above_sequence() -> None:
    assert_frame_error(h("18 02 03 04") + b"cid!" + TOKEN16, FrameType.NEW_CONNECTION_ID)
    # Equal is allowed: retire everything before this one.
    assert parse_one(h("18 03 03 04") + b"cid!" + TOKEN16).retire_prior_to == 3  # type: ignore[union-attr]


@pytest.mark.parametrize("frame_type", [0x12, 0x13, 0x16, 0x17])
def test_stream_count_limits(frame_type: int) -> None:
    assert_frame_error(v(frame_type) + v((1 << 60) + 1), frame_type)
    assert_frame_error(v(frame_type) + v(MAX_VARINT), frame_type)
    frame = parse_one(v(frame_type) + v(1 << 60))
    assert isinstance(frame, MaxStreamsFrame | StreamsBlockedFrame)


@pytest.mark.parametrize("frame_type", [0x0C, 0x0D, 0x0E, 0x0F])
def test_stream_end_beyond_2_62(frame_type: int) -> None:
    body = b"x" if frame_type & 0x02 == 0 else h("01") + b"x"
    assert_frame_error(v(frame_type) + h("04") + v(MAX_VARINT) + body, frame_type)
    ok = parse_one(v(frame_type) + h("04") + v(MAX_VARINT - 1) + body)
    assert isinstance(ok, StreamFrame)
    assert ok.offset + len(ok.data) == MAX_VARINT


def test_crypto_end_beyond_2_62() -> None:
    assert_frame_error(h("06") + v(MAX_VARINT) + h("01 78"), FrameType.CRYPTO)
    assert parse_one(h("06") + v(MAX_VARINT - 1) + h("01 78")) == CryptoFrame(MAX_VARINT - 1, b"x")


def test_empty_new_token() -> None:
    assert_frame_error(h("07 00"), FrameType.NEW_TOKEN)


def test_length_prefix_past_the_end() -> None:
    assert_frame_error(h("31 05") + b"abc", FrameType.DATAGRAM_LEN)
    assert_frame_error(h("0a 04 05") + b"abc", 0x0A)
    assert_frame_error(h("1c 00 00 05") + b"abc", FrameType.CONNECTION_CLOSE)


# -- where frames may appear (RFC 9000 §12.4 Table 3, RFC 9221 §4) ----------------------

_I, _H, _0, _1 = PacketType.INITIAL, PacketType.HANDSHAKE, PacketType.ZERO_RTT, PacketType.ONE_RTT

TABLE_3: dict[int, str] = {
    0x00: "IH01",  # PADDING
    0x01: "IH01",  # PING
    0x02: "IH_1",  # ACK
    0x03: "IH_1",
    0x04: "__01",  # RESET_STREAM
    0x05: "__01",  # STOP_SENDING
    0x06: "IH_1",  # CRYPTO
    0x07: "___1",  # NEW_TOKEN
    **{t: "__01" for t in range(0x08, 0x10)},  # STREAM
    0x10: "__01",  # MAX_DATA
    0x11: "__01",  # MAX_STREAM_DATA
    0x12: "__01",  # MAX_STREAMS
    0x13: "__01",
    0x14: "__01",  # DATA_BLOCKED
    0x15: "__01",  # STREAM_DATA_BLOCKED
    0x16: "__01",  # STREAMS_BLOCKED
    0x17: "__01",
    0x18: "__01",  # NEW_CONNECTION_ID
    0x19: "__01",  # RETIRE_CONNECTION_ID
    0x1A: "__01",  # PATH_CHALLENGE
    0x1B: "___1",  # PATH_RESPONSE
    0x1C: "IH01",  # CONNECTION_CLOSE ("ih": only the transport variant)
    0x1D: "__01",
    0x1E: "___1",  # HANDSHAKE_DONE
    0x30: "__01",  # DATAGRAM (RFC 9221 §4)
    0x31: "__01",
}


def _allowed_from(column: str) -> set[PacketType]:
    return {ptype for ptype, mark in zip((_I, _H, _0, _1), column, strict=True) if mark != "_"}


@pytest.mark.parametrize(("frame_type", "column"), sorted(TABLE_3.items()))
def test_frame_allowed_matches_table_3(frame_type: int, column: str) -> None:
    allowed = _allowed_from(column)
    for ptype in (_I, _H, _0, _1):
        assert frame_allowed(frame_type, ptype) is (ptype in allowed), (hex(frame_type), ptype)


def test_table_3_covers_every_frame_type() -> None:
    assert {int(t) for t in FrameType} <= set(TABLE_3)


def test_no_frame_in_retry_or_version_negotiation() -> None:
    for frame_type in TABLE_3:
        assert not frame_allowed(frame_type, PacketType.RETRY)
        assert not frame_allowed(frame_type, PacketType.VERSION_NEGOTIATION)


@pytest.mark.parametrize("frame_type", sorted(TABLE_3))
def test_is_ack_eliciting(frame_type: int) -> None:
    # RFC 9002 §2: all frames but ACK, PADDING and CONNECTION_CLOSE elicit an ACK.
    expected = frame_type not in (0x00, 0x02, 0x03, 0x1C, 0x1D)
    assert is_ack_eliciting(frame_type) is expected


def _padding_reference(data: bytes, pos: int, end: int) -> int:
    """The byte-by-byte definition: the run ends at the first non-zero byte."""
    stop = pos
    while stop < end and data[stop] == 0:
        stop += 1
    return stop


@pytest.mark.parametrize("run", [1, 2, 7, 63, 64, 65, 1000, 1452])
@pytest.mark.parametrize("after", ["end", "ping", "stream", "limit"])
@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_padding_runs_parse_like_the_byte_loop(run: int, after: str, kind: Any) -> None:
    """RFC 9000 §19.1: a run of any length, at the payload's end, before another
    frame, or cut by the reader's end, is one PADDING frame of the run's length."""
    tail = {"end": b"", "ping": h("01"), "stream": h("08 04") + b"tail", "limit": bytes(9)}[after]
    data = h("01") + bytes(run) + tail
    end = 1 + run if after == "limit" else len(data)
    reader = Reader(kind(data), 1, end)
    assert (
        parse_frame(reader)
        == PaddingFrame(_padding_reference(data, 1, end) - 1)
        == PaddingFrame(run)
    )
    assert reader.pos == 1 + run
    rest = list(parse_frames(kind(data)[reader.pos : end]))
    assert (
        rest
        == {"end": [], "ping": [PingFrame()], "stream": [StreamFrame(4, 0, b"tail")], "limit": []}[
            after
        ]
    )
