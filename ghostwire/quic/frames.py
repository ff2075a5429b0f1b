"""QUIC frames (RFC 9000 §19, RFC 9221 §4): types, parsing and encoding.

Parsing is table-driven: :func:`parse_frame` reads the frame type and hands
the reader to that type's parser. Every way a frame can be malformed --
truncated, an unknown type, a value out of range -- raises
:class:`FrameEncodingError` (RFC 9000 §12.4), never a bare Python exception.

Frames are small frozen objects. The hot send path does not build them (the
writer encodes straight into the packet buffer); :func:`encode_frame` exists
for tests, tools and hand-built misbehaving peers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar, Final

from .buffer import Reader, Writer, decode_varint, encode_varint
from .errors import BufferReadError, FrameEncodingError
from .packet import PacketType

MAX_VARINT: Final = (1 << 62) - 1
MAX_STREAMS_LIMIT: Final = 1 << 60  # RFC 9000 §19.11, §19.14


class FrameType(IntEnum):
    PADDING = 0x00
    PING = 0x01
    ACK = 0x02
    ACK_ECN = 0x03
    RESET_STREAM = 0x04
    STOP_SENDING = 0x05
    CRYPTO = 0x06
    NEW_TOKEN = 0x07
    STREAM = 0x08  # 0x08-0x0f: OFF (0x04), LEN (0x02) and FIN (0x01) bits
    MAX_DATA = 0x10
    MAX_STREAM_DATA = 0x11
    MAX_STREAMS_BIDI = 0x12
    MAX_STREAMS_UNI = 0x13
    DATA_BLOCKED = 0x14
    STREAM_DATA_BLOCKED = 0x15
    STREAMS_BLOCKED_BIDI = 0x16
    STREAMS_BLOCKED_UNI = 0x17
    NEW_CONNECTION_ID = 0x18
    RETIRE_CONNECTION_ID = 0x19
    PATH_CHALLENGE = 0x1A
    PATH_RESPONSE = 0x1B
    CONNECTION_CLOSE = 0x1C
    CONNECTION_CLOSE_APP = 0x1D
    HANDSHAKE_DONE = 0x1E
    DATAGRAM = 0x30  # RFC 9221: 0x30 without a Length field, 0x31 with one
    DATAGRAM_LEN = 0x31


_STREAM_OFF: Final = 0x04
_STREAM_LEN: Final = 0x02
_STREAM_FIN: Final = 0x01
_STREAM_BASE: Final = 0x08  # FrameType.STREAM, as a plain int for the per-packet check


# -- frame classes ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PaddingFrame:
    """A run of PADDING bytes, parsed as one frame."""

    length: int = 1
    frame_type: ClassVar[int] = FrameType.PADDING


@dataclass(frozen=True, slots=True)
class PingFrame:
    frame_type: ClassVar[int] = FrameType.PING


@dataclass(frozen=True, slots=True)
class AckFrame:
    """``ranges`` are inclusive ``(smallest, largest)`` pairs, largest first;
    ``ack_delay`` is the raw field (scaled by the ack_delay_exponent)."""

    ranges: tuple[tuple[int, int], ...]
    ack_delay: int = 0
    ecn_counts: tuple[int, int, int] | None = None  # ECT(0), ECT(1), ECN-CE

    @property
    def frame_type(self) -> int:
        return FrameType.ACK if self.ecn_counts is None else FrameType.ACK_ECN

    @property
    def largest_acknowledged(self) -> int:
        return self.ranges[0][1]


@dataclass(frozen=True, slots=True)
class ResetStreamFrame:
    stream_id: int
    error_code: int
    final_size: int
    frame_type: ClassVar[int] = FrameType.RESET_STREAM


@dataclass(frozen=True, slots=True)
class StopSendingFrame:
    stream_id: int
    error_code: int
    frame_type: ClassVar[int] = FrameType.STOP_SENDING


@dataclass(frozen=True, slots=True)
class CryptoFrame:
    offset: int
    data: bytes
    frame_type: ClassVar[int] = FrameType.CRYPTO


@dataclass(frozen=True, slots=True)
class NewTokenFrame:
    token: bytes
    frame_type: ClassVar[int] = FrameType.NEW_TOKEN


@dataclass(frozen=True, slots=True)
class StreamFrame:
    stream_id: int
    offset: int = 0
    data: bytes = b""
    fin: bool = False
    frame_type: ClassVar[int] = FrameType.STREAM


@dataclass(frozen=True, slots=True)
class MaxDataFrame:
    maximum: int
    frame_type: ClassVar[int] = FrameType.MAX_DATA


@dataclass(frozen=True, slots=True)
class MaxStreamDataFrame:
    stream_id: int
    maximum: int
    frame_type: ClassVar[int] = FrameType.MAX_STREAM_DATA


@dataclass(frozen=True, slots=True)
class MaxStreamsFrame:
    bidirectional: bool
    maximum: int

    @property
    def frame_type(self) -> int:
        return FrameType.MAX_STREAMS_BIDI if self.bidirectional else FrameType.MAX_STREAMS_UNI


@dataclass(frozen=True, slots=True)
class DataBlockedFrame:
    limit: int
    frame_type: ClassVar[int] = FrameType.DATA_BLOCKED


@dataclass(frozen=True, slots=True)
class StreamDataBlockedFrame:
    stream_id: int
    limit: int
    frame_type: ClassVar[int] = FrameType.STREAM_DATA_BLOCKED


@dataclass(frozen=True, slots=True)
class StreamsBlockedFrame:
    bidirectional: bool
    limit: int

    @property
    def frame_type(self) -> int:
        if self.bidirectional:
            return FrameType.STREAMS_BLOCKED_BIDI
        return FrameType.STREAMS_BLOCKED_UNI


@dataclass(frozen=True, slots=True)
class NewConnectionIdFrame:
    sequence_number: int
    retire_prior_to: int
    connection_id: bytes
    stateless_reset_token: bytes
    frame_type: ClassVar[int] = FrameType.NEW_CONNECTION_ID


@dataclass(frozen=True, slots=True)
class RetireConnectionIdFrame:
    sequence_number: int
    frame_type: ClassVar[int] = FrameType.RETIRE_CONNECTION_ID


@dataclass(frozen=True, slots=True)
class PathChallengeFrame:
    data: bytes
    frame_type: ClassVar[int] = FrameType.PATH_CHALLENGE


@dataclass(frozen=True, slots=True)
class PathResponseFrame:
    data: bytes
    frame_type: ClassVar[int] = FrameType.PATH_RESPONSE


@dataclass(frozen=True, slots=True)
class ConnectionCloseFrame:
    """CONNECTION_CLOSE: a transport close (0x1c) names the offending frame
    type; an application close (0x1d) has ``offending_frame_type`` None."""

    error_code: int
    offending_frame_type: int | None = None
    reason: bytes = b""

    @property
    def frame_type(self) -> int:
        if self.offending_frame_type is None:
            return FrameType.CONNECTION_CLOSE_APP
        return FrameType.CONNECTION_CLOSE

    @property
    def is_application(self) -> bool:
        return self.offending_frame_type is None


@dataclass(frozen=True, slots=True)
class HandshakeDoneFrame:
    frame_type: ClassVar[int] = FrameType.HANDSHAKE_DONE


@dataclass(frozen=True, slots=True)
class DatagramFrame:
    data: bytes
    with_length: bool = True

    @property
    def frame_type(self) -> int:
        return FrameType.DATAGRAM_LEN if self.with_length else FrameType.DATAGRAM


Frame = (
    PaddingFrame
    | PingFrame
    | AckFrame
    | ResetStreamFrame
    | StopSendingFrame
    | CryptoFrame
    | NewTokenFrame
    | StreamFrame
    | MaxDataFrame
    | MaxStreamDataFrame
    | MaxStreamsFrame
    | DataBlockedFrame
    | StreamDataBlockedFrame
    | StreamsBlockedFrame
    | NewConnectionIdFrame
    | RetireConnectionIdFrame
    | PathChallengeFrame
    | PathResponseFrame
    | ConnectionCloseFrame
    | HandshakeDoneFrame
    | DatagramFrame
)

# -- which frames go where (RFC 9000 §12.4, Table 3) --------------------------

_I, _H, _0, _1 = PacketType.INITIAL, PacketType.HANDSHAKE, PacketType.ZERO_RTT, PacketType.ONE_RTT
_ALL = frozenset({_I, _H, _0, _1})
_APP = frozenset({_0, _1})
_ALLOWED: Final[dict[int, frozenset[PacketType]]] = {
    FrameType.PADDING: _ALL,
    FrameType.PING: _ALL,
    FrameType.ACK: frozenset({_I, _H, _1}),
    FrameType.ACK_ECN: frozenset({_I, _H, _1}),
    FrameType.CRYPTO: frozenset({_I, _H, _1}),
    FrameType.NEW_TOKEN: frozenset({_1}),
    FrameType.PATH_RESPONSE: frozenset({_1}),
    FrameType.HANDSHAKE_DONE: frozenset({_1}),
    FrameType.CONNECTION_CLOSE: _ALL,
    # RFC 9000 §17.2.2: an application close only in 0-RTT and 1-RTT packets.
    FrameType.CONNECTION_CLOSE_APP: _APP,
}
_NOT_ACK_ELICITING: Final = frozenset(
    {
        FrameType.PADDING,
        FrameType.ACK,
        FrameType.ACK_ECN,
        FrameType.CONNECTION_CLOSE,
        FrameType.CONNECTION_CLOSE_APP,
    }
)


def frame_allowed(frame_type: int, packet_type: PacketType) -> bool:
    """Whether a frame of this type may appear in this packet type."""
    return packet_type in _ALLOWED.get(frame_type, _APP)


def is_ack_eliciting(frame_type: int) -> bool:
    """RFC 9002 §2: every frame except ACK, PADDING and CONNECTION_CLOSE."""
    return frame_type not in _NOT_ACK_ELICITING


# -- parsing ------------------------------------------------------------------


def _fail(frame_type: int, reason: str) -> FrameEncodingError:
    return FrameEncodingError(reason, frame_type)


# The first non-zero byte: a PADDING run (RFC 9000 §19.1) is skipped with one
# scan in C rather than a Python loop per byte (~1000 per padded Initial).
_NON_ZERO: Final = re.compile(b"[^\x00]")


def _parse_padding(reader: Reader, frame_type: int) -> Frame:
    pos, end = reader.pos, reader.end
    found = _NON_ZERO.search(reader.data, pos, end)
    stop = end if found is None else found.start()
    reader.pos = stop
    return PaddingFrame(stop - pos + 1)  # the type byte was the run's first zero


def _parse_ping(reader: Reader, frame_type: int) -> Frame:
    return PingFrame()


def _parse_ack(reader: Reader, frame_type: int) -> Frame:
    ranges, delay, reader.pos = ack_fields_at(reader.data, reader.pos, reader.end, frame_type)
    ecn = None
    if frame_type == FrameType.ACK_ECN:
        ecn = (reader.pull_varint(), reader.pull_varint(), reader.pull_varint())
    return AckFrame(ranges, delay, ecn)


def ack_fields_at(
    buf: bytes | bytearray | memoryview, pos: int, end: int, frame_type: int = FrameType.ACK
) -> tuple[tuple[tuple[int, int], ...], int, int]:
    """An ACK frame's fields from ``buf[pos]`` (just after its type) up to
    ``end``: ``(ranges, ack_delay, next_pos)``, the ranges as :class:`AckFrame`
    has them. The ECN counts of ACK_ECN follow; the caller reads them.
    Raises FrameEncodingError when malformed (RFC 9000 §19.3)."""
    try:
        largest, pos = _varint_before(buf, pos, end)
        delay, pos = _varint_before(buf, pos, end)
        range_count, pos = _varint_before(buf, pos, end)
        first_range, pos = _varint_before(buf, pos, end)
        if first_range > largest:
            raise _fail(frame_type, "ACK range below packet number 0")
        smallest = largest - first_range
        if not range_count:  # the common case: one range
            return ((smallest, largest),), delay, pos
        # Each further range needs at least two bytes, so a huge count fails on
        # the buffer before it can cost much.
        if range_count > (end - pos) // 2:
            raise _fail(frame_type, "ACK range count exceeds the frame")
        ranges = [(smallest, largest)]
        for _ in range(range_count):
            gap, pos = _varint_before(buf, pos, end)
            length, pos = _varint_before(buf, pos, end)
            top = smallest - gap - 2  # RFC 9000 §19.3.1
            bottom = top - length
            if bottom < 0:
                raise _fail(frame_type, "ACK range below packet number 0")
            ranges.append((bottom, top))
            smallest = bottom
        return tuple(ranges), delay, pos
    except BufferReadError:
        raise FrameEncodingError(f"truncated frame 0x{frame_type:x}", frame_type) from None


def _parse_reset_stream(reader: Reader, frame_type: int) -> Frame:
    return ResetStreamFrame(reader.pull_varint(), reader.pull_varint(), reader.pull_varint())


def _parse_stop_sending(reader: Reader, frame_type: int) -> Frame:
    return StopSendingFrame(reader.pull_varint(), reader.pull_varint())


def _parse_crypto(reader: Reader, frame_type: int) -> Frame:
    offset = reader.pull_varint()
    data = reader.pull_varint_prefixed()
    if offset + len(data) > MAX_VARINT:
        raise _fail(frame_type, "CRYPTO data beyond 2^62-1")
    return CryptoFrame(offset, data)


def _parse_new_token(reader: Reader, frame_type: int) -> Frame:
    token = reader.pull_varint_prefixed()
    if not token:
        raise _fail(frame_type, "empty NEW_TOKEN")  # RFC 9000 §19.7
    return NewTokenFrame(token)


def _parse_stream(reader: Reader, frame_type: int) -> Frame:
    return StreamFrame(*_stream_fields(reader, frame_type))


def _stream_fields(reader: Reader, frame_type: int) -> tuple[int, int, bytes, bool]:
    stream_id = reader.pull_varint()
    offset = reader.pull_varint() if frame_type & _STREAM_OFF else 0
    if frame_type & _STREAM_LEN:
        data = reader.pull_varint_prefixed()
    else:
        data = reader.pull_rest()
    if offset + len(data) > MAX_VARINT:
        raise _fail(frame_type, "STREAM data beyond 2^62-1")  # RFC 9000 §19.8
    return stream_id, offset, data, bool(frame_type & _STREAM_FIN)


def is_stream_frame_at(reader: Reader) -> bool:
    """Whether the next frame is a STREAM frame (type 0x08-0x0f in one byte)."""
    return reader.data[reader.pos] & 0xF8 == _STREAM_BASE


def parse_stream_frame(reader: Reader) -> tuple[int, int, bytes, bool]:
    """The next frame, which :func:`is_stream_frame_at`, as ``(stream_id,
    offset, data, fin)``: :func:`parse_frame` without the frame object.
    Same checks, same errors."""
    buf = reader.data
    stream_id, offset, data, fin, reader.pos = parse_stream_frame_at(
        buf if isinstance(buf, bytes) else bytes(buf), reader.pos, reader.end
    )
    return stream_id, offset, data, fin


def parse_stream_frame_at(buf: bytes, pos: int, end: int) -> tuple[int, int, bytes, bool, int]:
    """The STREAM frame at ``buf[pos]`` (its type in one byte, 0x08-0x0f) as
    ``(stream_id, offset, data, fin, next_pos)``, reading no further than
    ``end``: the receive hot path, with no reader, no frame object and the
    one- and two-byte varints (RFC 9000 §16) decoded inline. Same checks and
    errors as :func:`parse_frame`."""
    frame_type = buf[pos]
    try:
        pos += 1
        if pos >= end:
            raise BufferReadError("truncated Stream ID")
        stream_id = buf[pos]
        if stream_id < 0x40:
            pos += 1
        elif stream_id < 0x80 and pos + 2 <= end:
            stream_id = ((stream_id & 0x3F) << 8) | buf[pos + 1]
            pos += 2
        elif stream_id < 0xC0 and pos + 4 <= end:  # ids from 16384 on: a busy connection
            stream_id = ((stream_id & 0x3F) << 24) | (buf[pos + 1] << 16)
            stream_id |= (buf[pos + 2] << 8) | buf[pos + 3]
            pos += 4
        else:
            stream_id, pos = _varint_before(buf, pos, end)
        offset = 0
        if frame_type & _STREAM_OFF:
            offset, pos = _varint_before(buf, pos, end)
        if frame_type & _STREAM_LEN:
            if pos >= end:
                raise BufferReadError("truncated Length")
            length = buf[pos]
            if length < 0x40:
                pos += 1
            elif length < 0x80 and pos + 2 <= end:
                length = ((length & 0x3F) << 8) | buf[pos + 1]
                pos += 2
            else:
                length, pos = _varint_before(buf, pos, end)
            stop = pos + length
            if stop > end:
                raise BufferReadError("STREAM data runs past the packet")
        else:
            stop = end  # no Length: the data runs to the end of the packet
        data = buf[pos:stop]
    except BufferReadError:
        raise FrameEncodingError(f"truncated frame 0x{frame_type:x}", frame_type) from None
    if offset + stop - pos > MAX_VARINT:
        raise _fail(frame_type, "STREAM data beyond 2^62-1")  # RFC 9000 §19.8
    return stream_id, offset, data, bool(frame_type & _STREAM_FIN), stop


def _varint_before(buf: bytes | bytearray | memoryview, pos: int, end: int) -> tuple[int, int]:
    """The varint at ``buf[pos]``, which must end by ``end``: ``(value, next_pos)``.
    One call for any size (the 8-byte one in :func:`decode_varint`)."""
    if pos >= end:
        raise BufferReadError("truncated variable-length integer")
    first = buf[pos]
    if first < 0x40:
        return first, pos + 1
    size = 1 << (first >> 6)
    if pos + size > end:
        raise BufferReadError("truncated variable-length integer")
    if size == 2:
        return ((first & 0x3F) << 8) | buf[pos + 1], pos + 2
    if size == 4:
        value = ((first & 0x3F) << 24) | (buf[pos + 1] << 16) | (buf[pos + 2] << 8)
        return value | buf[pos + 3], pos + 4
    return decode_varint(buf, pos)


def _parse_max_data(reader: Reader, frame_type: int) -> Frame:
    return MaxDataFrame(reader.pull_varint())


def _parse_max_stream_data(reader: Reader, frame_type: int) -> Frame:
    return MaxStreamDataFrame(reader.pull_varint(), reader.pull_varint())


def _parse_max_streams(reader: Reader, frame_type: int) -> Frame:
    maximum = reader.pull_varint()
    if maximum > MAX_STREAMS_LIMIT:
        raise _fail(frame_type, "MAX_STREAMS above 2^60")
    return MaxStreamsFrame(frame_type == FrameType.MAX_STREAMS_BIDI, maximum)


def _parse_data_blocked(reader: Reader, frame_type: int) -> Frame:
    return DataBlockedFrame(reader.pull_varint())


def _parse_stream_data_blocked(reader: Reader, frame_type: int) -> Frame:
    return StreamDataBlockedFrame(reader.pull_varint(), reader.pull_varint())


def _parse_streams_blocked(reader: Reader, frame_type: int) -> Frame:
    limit = reader.pull_varint()
    if limit > MAX_STREAMS_LIMIT:
        raise _fail(frame_type, "STREAMS_BLOCKED above 2^60")
    return StreamsBlockedFrame(frame_type == FrameType.STREAMS_BLOCKED_BIDI, limit)


def _parse_new_connection_id(reader: Reader, frame_type: int) -> Frame:
    sequence = reader.pull_varint()
    retire_prior_to = reader.pull_varint()
    cid = reader.pull_uint8_prefixed()
    token = reader.pull_bytes(16)
    if not 1 <= len(cid) <= 20:
        raise _fail(frame_type, "NEW_CONNECTION_ID length outside 1-20")  # RFC 9000 §19.15
    if retire_prior_to > sequence:
        raise _fail(frame_type, "Retire Prior To above the sequence number")
    return NewConnectionIdFrame(sequence, retire_prior_to, cid, token)


def _parse_retire_connection_id(reader: Reader, frame_type: int) -> Frame:
    return RetireConnectionIdFrame(reader.pull_varint())


def _parse_path_challenge(reader: Reader, frame_type: int) -> Frame:
    return PathChallengeFrame(reader.pull_bytes(8))


def _parse_path_response(reader: Reader, frame_type: int) -> Frame:
    return PathResponseFrame(reader.pull_bytes(8))


def _parse_connection_close(reader: Reader, frame_type: int) -> Frame:
    error_code = reader.pull_varint()
    offending = reader.pull_varint() if frame_type == FrameType.CONNECTION_CLOSE else None
    reason = reader.pull_varint_prefixed()
    return ConnectionCloseFrame(error_code, offending, reason)


def _parse_handshake_done(reader: Reader, frame_type: int) -> Frame:
    return HandshakeDoneFrame()


def _parse_datagram(reader: Reader, frame_type: int) -> Frame:
    if frame_type == FrameType.DATAGRAM_LEN:
        return DatagramFrame(reader.pull_varint_prefixed(), True)
    return DatagramFrame(reader.pull_rest(), False)


_Parser = Callable[[Reader, int], Frame]
_PARSERS: Final[dict[int, _Parser]] = {
    FrameType.PADDING: _parse_padding,
    FrameType.PING: _parse_ping,
    FrameType.ACK: _parse_ack,
    FrameType.ACK_ECN: _parse_ack,
    FrameType.RESET_STREAM: _parse_reset_stream,
    FrameType.STOP_SENDING: _parse_stop_sending,
    FrameType.CRYPTO: _parse_crypto,
    FrameType.NEW_TOKEN: _parse_new_token,
    **{t: _parse_stream for t in range(0x08, 0x10)},
    FrameType.MAX_DATA: _parse_max_data,
    FrameType.MAX_STREAM_DATA: _parse_max_stream_data,
    FrameType.MAX_STREAMS_BIDI: _parse_max_streams,
    FrameType.MAX_STREAMS_UNI: _parse_max_streams,
    FrameType.DATA_BLOCKED: _parse_data_blocked,
    FrameType.STREAM_DATA_BLOCKED: _parse_stream_data_blocked,
    FrameType.STREAMS_BLOCKED_BIDI: _parse_streams_blocked,
    FrameType.STREAMS_BLOCKED_UNI: _parse_streams_blocked,
    FrameType.NEW_CONNECTION_ID: _parse_new_connection_id,
    FrameType.RETIRE_CONNECTION_ID: _parse_retire_connection_id,
    FrameType.PATH_CHALLENGE: _parse_path_challenge,
    FrameType.PATH_RESPONSE: _parse_path_response,
    FrameType.CONNECTION_CLOSE: _parse_connection_close,
    FrameType.CONNECTION_CLOSE_APP: _parse_connection_close,
    FrameType.HANDSHAKE_DONE: _parse_handshake_done,
    FrameType.DATAGRAM: _parse_datagram,
    FrameType.DATAGRAM_LEN: _parse_datagram,
}


def parse_frame(reader: Reader) -> Frame:
    """Parse the next frame; raises :class:`FrameEncodingError` if malformed."""
    frame_type = None
    try:
        frame_type = reader.pull_varint()
        parser = _PARSERS.get(frame_type)
        if parser is None:
            # RFC 9000 §12.4: an unknown frame type is FRAME_ENCODING_ERROR.
            raise FrameEncodingError(f"unknown frame type 0x{frame_type:x}", frame_type)
        return parser(reader, frame_type)
    except BufferReadError:
        name = f"0x{frame_type:x}" if frame_type is not None else "frame type"
        raise FrameEncodingError(f"truncated frame {name}", frame_type) from None


def parse_frames(payload: bytes) -> Iterator[Frame]:
    """Every frame of a packet payload, in order."""
    reader = Reader(payload)
    while not reader.eof():
        yield parse_frame(reader)


# -- encoding -----------------------------------------------------------------


def encode_frame(frame: Frame) -> bytes:
    """The wire form of ``frame`` (STREAM and DATAGRAM always with a length)."""
    w = Writer()
    push = w.push_varint
    match frame:
        case PaddingFrame(length=length):
            w.push_bytes(bytes(length))
        case PingFrame() | HandshakeDoneFrame():
            push(frame.frame_type)
        case AckFrame(ranges=ranges, ack_delay=delay, ecn_counts=ecn):
            push(frame.frame_type)
            smallest, largest = ranges[0]
            push(largest)
            push(delay)
            push(len(ranges) - 1)
            push(largest - smallest)
            for bottom, top in ranges[1:]:
                push(smallest - top - 2)
                push(top - bottom)
                smallest = bottom
            if ecn is not None:
                for count in ecn:
                    push(count)
        case ResetStreamFrame(stream_id=sid, error_code=code, final_size=size):
            push(FrameType.RESET_STREAM)
            push(sid)
            push(code)
            push(size)
        case StopSendingFrame(stream_id=sid, error_code=code):
            push(FrameType.STOP_SENDING)
            push(sid)
            push(code)
        case CryptoFrame(offset=offset, data=data):
            push(FrameType.CRYPTO)
            push(offset)
            w.push_varint_prefixed(data)
        case NewTokenFrame(token=token):
            push(FrameType.NEW_TOKEN)
            w.push_varint_prefixed(token)
        case StreamFrame(stream_id=sid, offset=offset, data=data, fin=fin):
            flags = _STREAM_LEN | (_STREAM_OFF if offset else 0) | (_STREAM_FIN if fin else 0)
            push(FrameType.STREAM | flags)
            push(sid)
            if offset:
                push(offset)
            w.push_varint_prefixed(data)
        case MaxDataFrame(maximum=maximum):
            push(FrameType.MAX_DATA)
            push(maximum)
        case MaxStreamDataFrame(stream_id=sid, maximum=maximum):
            push(FrameType.MAX_STREAM_DATA)
            push(sid)
            push(maximum)
        case MaxStreamsFrame(maximum=maximum):
            push(frame.frame_type)
            push(maximum)
        case DataBlockedFrame(limit=limit):
            push(FrameType.DATA_BLOCKED)
            push(limit)
        case StreamDataBlockedFrame(stream_id=sid, limit=limit):
            push(FrameType.STREAM_DATA_BLOCKED)
            push(sid)
            push(limit)
        case StreamsBlockedFrame(limit=limit):
            push(frame.frame_type)
            push(limit)
        case _:
            _encode_path_and_close_frame(w, frame)
    return w.getvalue()


_NEW_CONNECTION_ID_TYPE: Final = bytes((FrameType.NEW_CONNECTION_ID,))


def encode_new_connection_id(
    sequence_number: int, retire_prior_to: int, connection_id: bytes, reset_token: bytes
) -> bytes:
    """A NEW_CONNECTION_ID frame (RFC 9000 §19.15) from its fields: each side
    announces up to seven at the end of its handshake, and going through a
    frame object and :func:`encode_frame`'s cases cost ~7x as much."""
    return b"".join(
        (
            _NEW_CONNECTION_ID_TYPE,
            encode_varint(sequence_number),
            encode_varint(retire_prior_to),
            bytes((len(connection_id),)),
            connection_id,
            reset_token,
        )
    )


def _encode_path_and_close_frame(w: Writer, frame: Frame) -> None:
    """The rest of :func:`encode_frame`: connection IDs, paths, closing, DATAGRAM."""
    push = w.push_varint
    match frame:
        case NewConnectionIdFrame(
            sequence_number=seq, retire_prior_to=rpt, connection_id=cid, stateless_reset_token=tok
        ):
            w.push_bytes(encode_new_connection_id(seq, rpt, cid, tok))
        case RetireConnectionIdFrame(sequence_number=seq):
            push(FrameType.RETIRE_CONNECTION_ID)
            push(seq)
        case PathChallengeFrame(data=data) | PathResponseFrame(data=data):
            push(frame.frame_type)
            w.push_bytes(data)
        case ConnectionCloseFrame(error_code=code, offending_frame_type=offending, reason=reason):
            push(frame.frame_type)
            push(code)
            if offending is not None:
                push(offending)
            w.push_varint_prefixed(reason)
        case DatagramFrame(data=data, with_length=with_length):
            push(frame.frame_type)
            if with_length:
                w.push_varint_prefixed(data)
            else:
                w.push_bytes(data)
        case _:
            raise TypeError(f"not a frame: {frame!r}")
