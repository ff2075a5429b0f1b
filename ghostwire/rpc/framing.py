"""Length-prefixed frames: the byte layout of every RPC stream (pure, no I/O).

A frame is a 5-byte prefix and a payload:

    +--------+----------------------------+-------------------+
    | type   | length (u32, big-endian)   | payload (length)  |
    | 1 byte | 4 bytes                    | msgpack           |
    +--------+----------------------------+-------------------+

The types are ``MESSAGE`` (0x00), ``HEADERS`` (0x01) and ``TRAILERS`` (0x02);
any other type is malformed. A payload longer than the receiver's maximum
message size is refused as soon as its prefix is seen (before the payload is
buffered), so a peer cannot make us hold more than one maximum-size message.

:class:`FrameDecoder` is sans-IO: ``feed`` bytes, take frames with
``next_frame``, and call ``check_eof`` when the stream ends.
"""

from __future__ import annotations

import struct
from typing import Final

from .status import RpcError, Status

MESSAGE: Final = 0x00
HEADERS: Final = 0x01
TRAILERS: Final = 0x02
FRAME_TYPES: Final = frozenset({MESSAGE, HEADERS, TRAILERS})

PREFIX = struct.Struct(">BI")
PREFIX_SIZE: Final = PREFIX.size
DEFAULT_MAX_MESSAGE_SIZE: Final = 4 << 20  # 4 MiB, as gRPC's receive default
MAX_LENGTH: Final = 0xFFFFFFFF


class FramingError(RpcError):
    """The bytes are not a valid sequence of frames (INVALID_ARGUMENT)."""

    def __init__(self, message: str) -> None:
        super().__init__(Status.INVALID_ARGUMENT, message)

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.message,))


class MessageTooLarge(RpcError):
    """A frame's payload is larger than the receiver accepts (RESOURCE_EXHAUSTED)."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            Status.RESOURCE_EXHAUSTED,
            f"message of {size} bytes is larger than the limit of {limit} bytes",
        )
        self.size = size
        self.limit = limit

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.size, self.limit))


def encode_frame(frame_type: int, payload: bytes) -> bytes:
    """One frame: prefix and payload."""
    if len(payload) > MAX_LENGTH:
        raise MessageTooLarge(len(payload), MAX_LENGTH)
    return PREFIX.pack(frame_type, len(payload)) + payload


class FrameDecoder:
    """Splits a byte stream into ``(type, payload)`` frames.

    Raises :class:`FramingError` for an unknown frame type or bytes left over
    at the end of the stream, and :class:`MessageTooLarge` for a payload over
    ``max_message_size``. After either the decoder must not be used again.

    A chunk fed while nothing is buffered is kept as it is and read in place
    (a small request or reply arrives whole: each payload is then one slice,
    and no bytes are copied into a buffer); only a frame split across chunks
    is gathered in a ``bytearray``.
    """

    __slots__ = ("_buffer", "_max", "_pos")

    def __init__(self, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        self._buffer: bytes | bytearray = b""
        self._pos = 0  # where the unread bytes of _buffer start
        self._max = max_message_size

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        buffer = self._buffer
        if self._pos >= len(buffer):
            self._buffer = data if type(data) is bytes else bytes(data)
            self._pos = 0
            return
        if type(buffer) is bytes:
            buffer = self._buffer = bytearray(memoryview(buffer)[self._pos :])
            self._pos = 0
        buffer += data  # a bytearray here

    def next_frame(self) -> tuple[int, bytes] | None:
        """The next complete frame, or None until more bytes arrive."""
        buffer = self._buffer
        pos = self._pos
        size = len(buffer)
        if size - pos < PREFIX_SIZE:
            return None
        frame_type, length = PREFIX.unpack_from(buffer, pos)
        if frame_type not in FRAME_TYPES:
            raise FramingError(f"unknown frame type 0x{frame_type:02x}")
        if length > self._max:
            raise MessageTooLarge(length, self._max)
        start = pos + PREFIX_SIZE
        end = start + length
        if size < end:
            return None
        payload = bytes(buffer[start:end])  # one copy (none for a bytes slice of all)
        if end == size:
            self._buffer = b""
            self._pos = 0
        elif type(buffer) is bytearray:
            del buffer[:end]  # cheap at the front of a bytearray
            self._pos = 0
        else:
            self._pos = end
        return frame_type, payload

    def take_pair(self, first: int, second: int) -> tuple[bytes, bytes] | None:
        """The payloads of what is buffered if it is exactly a ``first`` frame
        then a ``second`` frame, each within the size limit (a whole request
        or reply in one step); else None, and nothing is taken (read the
        frames with :meth:`next_frame`, which reports what is wrong)."""
        buffer = self._buffer
        pos = self._pos
        size = len(buffer)
        if size - pos < 2 * PREFIX_SIZE:
            return None
        first_type, first_length = PREFIX.unpack_from(buffer, pos)
        middle = pos + PREFIX_SIZE + first_length
        if first_type != first or first_length > self._max or middle + PREFIX_SIZE > size:
            return None
        second_type, second_length = PREFIX.unpack_from(buffer, middle)
        if second_type != second or middle + PREFIX_SIZE + second_length != size:
            return None
        if second_length > self._max:
            return None
        pair = bytes(buffer[pos + PREFIX_SIZE : middle]), bytes(buffer[middle + PREFIX_SIZE :])
        self._buffer = b""
        self._pos = 0
        return pair

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as a frame."""
        return len(self._buffer) - self._pos

    def check_eof(self) -> None:
        """The stream ended: raise :class:`FramingError` if a frame was cut short."""
        left = len(self._buffer) - self._pos
        if left:
            raise FramingError(f"stream ended inside a frame ({left} bytes left)")


__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "HEADERS",
    "MESSAGE",
    "TRAILERS",
    "FrameDecoder",
    "FramingError",
    "MessageTooLarge",
    "encode_frame",
]
