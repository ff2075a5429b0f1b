"""Incremental parser of one stream's HTTP/3 frame sequence (RFC 9114 §7.1).

Theory of operation
-------------------
A :class:`FrameReader` is fed the stream's bytes in whatever pieces QUIC
hands over and returns, one at a time, *items*:

* :class:`FrameStart` when a frame header has been parsed (the caller
  checks the frame is allowed here, and its length, *before* any payload
  is buffered);
* :class:`FrameComplete` with the whole payload of a known non-DATA frame;
* ``bytes``: a piece of a DATA frame's payload. DATA is never buffered
  whole: at most ``data_limit`` bytes are handed out per call, and only
  what the caller fed.

Frames of unknown and reserved types are reported by their FrameStart and
then skipped without being buffered (RFC 9114 §9); HTTP/2-only frame types
raise H3_FRAME_UNEXPECTED.

The reader never asks for more bytes than it can use: :meth:`want` says how
many to read next (a frame header is at most 16 bytes, a buffered payload
exactly its remaining length), so the caller can read from the QUIC stream
lazily and leave unread DATA in QUIC's receive buffer, where it holds back
flow-control credit (back-pressure). :meth:`want` never asks for more than
15 bytes past a frame header; a caller may feed more (the HTTP/3
connection reads up to its receive window's room between DATA payloads).
"""

from __future__ import annotations

from typing import NamedTuple

from .errors import H3ErrorCode, H3ProtocolError
from .frames import (
    HTTP2_ONLY_FRAME_TYPES,
    KNOWN_FRAME_TYPES,
    SINGLE_VARINT_FRAMES,
    FrameType,
    frame_name,
)

MAX_FRAME_HEADER = 16  # two 8-byte varints
SKIP_CHUNK = 1 << 16  # unknown frames are discarded in reads of at most this much


class FrameStart(NamedTuple):
    """A frame header: its type and payload length (unknown types included)."""

    frame_type: int
    length: int


class FrameComplete(NamedTuple):
    """A whole known non-DATA frame."""

    frame_type: int
    payload: bytes


Item = FrameStart | FrameComplete | bytes

_HEADER, _DATA, _BUFFER, _SKIP = range(4)


class FrameReader:
    """Cuts one stream's bytes into frames, incrementally."""

    __slots__ = ("_buf", "_frame_type", "_remaining", "_state")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._state = _HEADER
        self._frame_type = 0
        self._remaining = 0

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        self._buf += data

    @property
    def in_data(self) -> bool:
        """Inside a DATA frame's payload (what ``data_limit`` throttles)."""
        return self._state == _DATA and self._remaining > 0

    @property
    def at_boundary(self) -> bool:
        """Between frames with nothing buffered: a clean place for the stream to end."""
        return self._state == _HEADER and not self._buf

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def want(self) -> int:
        """How many more bytes are useful right now (at least 1)."""
        state = self._state
        if state == _HEADER:
            return max(1, MAX_FRAME_HEADER - len(self._buf))
        if state == _SKIP:
            return min(self._remaining, SKIP_CHUNK)
        return max(1, self._remaining - len(self._buf))

    def next_item(self, data_limit: int | None = None) -> Item | None:
        """The next item, or None when more input (or DATA credit) is needed."""
        state = self._state
        if state == _SKIP:
            if not self._skip():
                return None
            state = _HEADER
        if state == _HEADER:
            return self._parse_header()
        if state == _DATA:
            return self._data_chunk(data_limit)
        buf = self._buf  # _BUFFER
        n = self._remaining
        if len(buf) < n:
            return None
        payload = bytes(buf[:n])
        del buf[:n]
        self._state = _HEADER
        return FrameComplete(self._frame_type, payload)

    def _skip(self) -> bool:
        """Discard an unknown frame's payload; True once it is all gone."""
        buf = self._buf
        n = min(len(buf), self._remaining)
        del buf[:n]
        self._remaining -= n
        if self._remaining:
            return False
        self._state = _HEADER
        return True

    def _parse_header(self) -> FrameStart | None:
        """Parse a frame header; None if more bytes are needed."""
        buf = self._buf
        if not buf:
            return None
        type_len = 1 << (buf[0] >> 6)
        if len(buf) <= type_len:
            return None
        length_len = 1 << (buf[type_len] >> 6)
        end = type_len + length_len
        if len(buf) < end:
            return None
        frame_type = _varint(buf, 0, type_len)
        length = _varint(buf, type_len, length_len)
        del buf[:end]
        if frame_type == FrameType.DATA:
            self._state = _DATA if length else _HEADER
            self._remaining = length
            return FrameStart(frame_type, length)
        if frame_type in KNOWN_FRAME_TYPES:
            if frame_type in SINGLE_VARINT_FRAMES and not 1 <= length <= 8:
                raise H3ProtocolError(
                    H3ErrorCode.H3_FRAME_ERROR,
                    f"{frame_name(frame_type)} frame with a {length}-byte payload",
                )
            self._state = _BUFFER
            self._frame_type = frame_type
            self._remaining = length
            return FrameStart(frame_type, length)
        if frame_type in HTTP2_ONLY_FRAME_TYPES:
            raise H3ProtocolError(
                H3ErrorCode.H3_FRAME_UNEXPECTED, f"HTTP/2 frame type 0x{frame_type:x}"
            )
        # RFC 9114 §9: unknown (including reserved) frame types are ignored:
        # reported (a control stream must still start with SETTINGS), then skipped.
        self._state = _SKIP if length else _HEADER
        self._remaining = length
        return FrameStart(frame_type, length)

    def _data_chunk(self, data_limit: int | None) -> bytes | None:
        remaining = self._remaining
        buf = self._buf
        n = min(len(buf), remaining)
        if data_limit is not None and data_limit < n:
            n = data_limit
        if n <= 0:
            return None
        if n == len(buf):
            chunk = bytes(buf)
            buf.clear()
        else:
            chunk = bytes(buf[:n])
            del buf[:n]
        self._remaining = remaining - n
        if self._remaining == 0:
            self._state = _HEADER
        return chunk


def _varint(buf: bytearray, pos: int, size: int) -> int:
    value = buf[pos] & 0x3F
    for i in range(pos + 1, pos + size):
        value = (value << 8) | buf[i]
    return value
