"""Byte reader and writer with QUIC variable-length integers (RFC 9000 §16).

The reader works on ``bytes``, ``bytearray`` or ``memoryview`` without
copying until the caller asks for bytes. Reading past the end raises
:class:`~ghostwire.quic.errors.BufferReadError`, which frame parsers turn
into FRAME_ENCODING_ERROR and header parsers into a dropped packet.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from contextlib import contextmanager

from .errors import BufferReadError

MAX_VARINT = (1 << 62) - 1

_UINT16 = struct.Struct("!H")
_UINT32 = struct.Struct("!I")
_UINT64 = struct.Struct("!Q")

Bytes = bytes | bytearray | memoryview


def varint_size(value: int) -> int:
    """Number of bytes the shortest encoding of ``value`` takes."""
    if value < 0x40:
        if value < 0:
            raise ValueError("variable-length integers are unsigned")
        return 1
    if value < 0x4000:
        return 2
    if value < 0x40000000:
        return 4
    if value <= MAX_VARINT:
        return 8
    raise ValueError(f"{value} does not fit in a QUIC variable-length integer")


def encode_varint(value: int) -> bytes:
    """The shortest encoding of ``value`` (RFC 9000 §16)."""
    if value < 0x40:
        if value < 0:
            raise ValueError("variable-length integers are unsigned")
        return bytes((value,))
    if value < 0x4000:
        return _UINT16.pack(value | 0x4000)
    if value < 0x40000000:
        return _UINT32.pack(value | 0x80000000)
    if value <= MAX_VARINT:
        return _UINT64.pack(value | 0xC000000000000000)
    raise ValueError(f"{value} does not fit in a QUIC variable-length integer")


def decode_varint(data: Bytes, pos: int = 0) -> tuple[int, int]:
    """Decode the varint at ``data[pos]``; returns ``(value, next_pos)``."""
    try:
        first = data[pos]
    except IndexError:
        raise BufferReadError("truncated variable-length integer") from None
    kind = first >> 6
    if kind == 0:
        return first, pos + 1
    end = pos + (1 << kind)
    if end > len(data):
        raise BufferReadError("truncated variable-length integer")
    if kind == 1:
        return ((first & 0x3F) << 8) | data[pos + 1], end
    if kind == 2:
        return _UINT32.unpack_from(data, pos)[0] & 0x3FFFFFFF, end
    return _UINT64.unpack_from(data, pos)[0] & 0x3FFFFFFFFFFFFFFF, end


class Reader:
    """A cursor over a byte string; ``end`` bounds the readable region."""

    __slots__ = ("data", "end", "pos")

    def __init__(self, data: Bytes, pos: int = 0, end: int | None = None) -> None:
        self.data = data
        self.pos = pos
        self.end = len(data) if end is None else end

    def eof(self) -> bool:
        return self.pos >= self.end

    def remaining(self) -> int:
        return self.end - self.pos

    def _advance(self, n: int) -> int:
        start = self.pos
        stop = start + n
        if n < 0 or stop > self.end:
            raise BufferReadError(f"need {n} bytes, {self.end - start} left")
        self.pos = stop
        return start

    def skip(self, n: int) -> None:
        self._advance(n)

    # The readers most used per packet and per handshake (one byte, two
    # bytes, a byte string) check the bounds inline rather than call _advance.

    def pull_uint8(self) -> int:
        pos = self.pos
        if pos >= self.end:
            raise BufferReadError(f"need 1 bytes, {self.end - pos} left")
        self.pos = pos + 1
        return self.data[pos]

    def pull_uint16(self) -> int:
        pos = self.pos
        stop = pos + 2
        if stop > self.end:
            raise BufferReadError(f"need 2 bytes, {self.end - pos} left")
        self.pos = stop
        return int(_UINT16.unpack_from(self.data, pos)[0])

    def pull_uint24(self) -> int:
        start = self._advance(3)
        d = self.data
        return (d[start] << 16) | (d[start + 1] << 8) | d[start + 2]

    def pull_uint32(self) -> int:
        return int(_UINT32.unpack_from(self.data, self._advance(4))[0])

    def pull_uint64(self) -> int:
        return int(_UINT64.unpack_from(self.data, self._advance(8))[0])

    def pull_varint(self) -> int:
        pos = self.pos
        if pos >= self.end:
            raise BufferReadError("truncated variable-length integer")
        data = self.data
        first = data[pos]
        if first < 0x40:  # one byte: frame types, small ids (a per-frame hot path)
            self.pos = pos + 1
            return first
        if first < 0x80:  # two bytes: STREAM frame lengths
            if pos + 2 > self.end:
                raise BufferReadError("truncated variable-length integer")
            self.pos = pos + 2
            return ((first & 0x3F) << 8) | data[pos + 1]
        size = 1 << (first >> 6)
        if pos + size > self.end:
            raise BufferReadError("truncated variable-length integer")
        value, self.pos = decode_varint(data, pos)
        return value

    def pull_bytes(self, n: int) -> bytes:
        start = self.pos
        stop = start + n
        if n < 0 or stop > self.end:
            raise BufferReadError(f"need {n} bytes, {self.end - start} left")
        self.pos = stop
        return bytes(self.data[start:stop])

    def pull_view(self, n: int) -> memoryview:
        """``n`` bytes without copying (valid while the underlying buffer is)."""
        start = self._advance(n)
        return memoryview(self.data)[start : start + n]

    def pull_rest(self) -> bytes:
        return self.pull_bytes(self.end - self.pos)

    def pull_uint8_prefixed(self) -> bytes:
        pos = self.pos
        if pos >= self.end:
            raise BufferReadError(f"need 1 bytes, {self.end - pos} left")
        data = self.data
        start = pos + 1
        stop = start + data[pos]
        if stop > self.end:
            raise BufferReadError(f"need {data[pos]} bytes, {self.end - start} left")
        self.pos = stop
        return bytes(data[start:stop])

    def pull_uint16_prefixed(self) -> bytes:
        return self.pull_bytes(self.pull_uint16())

    def pull_uint24_prefixed(self) -> bytes:
        return self.pull_bytes(self.pull_uint24())

    def pull_varint_prefixed(self) -> bytes:
        return self.pull_bytes(self.pull_varint())

    @contextmanager
    def sub_reader(self, length: int) -> Iterator[Reader]:
        """Read a ``length``-byte region that must be consumed exactly."""
        start = self._advance(length)
        sub = Reader(self.data, start, start + length)
        yield sub
        if not sub.eof():
            raise BufferReadError(f"{sub.remaining()} trailing bytes in a length-prefixed field")


class Writer:
    """Appends encoded values to a ``bytearray``."""

    __slots__ = ("buf",)

    def __init__(self, buf: bytearray | None = None) -> None:
        self.buf = bytearray() if buf is None else buf

    def __len__(self) -> int:
        return len(self.buf)

    def getvalue(self) -> bytes:
        return bytes(self.buf)

    def push_uint8(self, value: int) -> None:
        self.buf.append(value)

    def push_uint16(self, value: int) -> None:
        self.buf += _UINT16.pack(value)

    def push_uint24(self, value: int) -> None:
        self.buf += value.to_bytes(3, "big")

    def push_uint32(self, value: int) -> None:
        self.buf += _UINT32.pack(value)

    def push_uint64(self, value: int) -> None:
        self.buf += _UINT64.pack(value)

    def push_varint(self, value: int) -> None:
        self.buf += encode_varint(value)

    def push_bytes(self, data: Bytes) -> None:
        self.buf += data

    def push_uint8_prefixed(self, data: Bytes) -> None:
        self.push_uint8(len(data))
        self.buf += data

    def push_uint16_prefixed(self, data: Bytes) -> None:
        self.push_uint16(len(data))
        self.buf += data

    def push_uint24_prefixed(self, data: Bytes) -> None:
        self.push_uint24(len(data))
        self.buf += data

    def push_varint_prefixed(self, data: Bytes) -> None:
        self.push_varint(len(data))
        self.buf += data

    @contextmanager
    def length_prefixed(self, size: int) -> Iterator[None]:
        """Write a ``size``-byte (1, 2 or 3) length before what the block writes."""
        start = len(self.buf)
        self.buf += bytes(size)
        yield
        length = len(self.buf) - start - size
        if length >= 1 << (8 * size):
            raise ValueError(f"{length} bytes do not fit a {size}-byte length prefix")
        self.buf[start : start + size] = length.to_bytes(size, "big")
