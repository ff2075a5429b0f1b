"""HTTP/3 frame, stream and setting types, and frame encoding (RFC 9114 §7).

Every HTTP/3 frame is ``type (varint) | length (varint) | payload``. This
module encodes frames and parses the payloads of the small fixed-shape
frames; :mod:`ghostwire.http3.frame_reader` cuts a stream's bytes into
frames. Reserved ("GREASE") values have the form ``0x1f * N + 0x21``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import IntEnum

from ..quic.buffer import MAX_VARINT, decode_varint, encode_varint
from ..quic.errors import BufferReadError
from .errors import H3ErrorCode, H3ProtocolError


class FrameType(IntEnum):
    """Frame types defined by RFC 9114 §7.2."""

    DATA = 0x0
    HEADERS = 0x1
    CANCEL_PUSH = 0x3
    SETTINGS = 0x4
    PUSH_PROMISE = 0x5
    GOAWAY = 0x7
    MAX_PUSH_ID = 0xD


KNOWN_FRAME_TYPES = frozenset(int(t) for t in FrameType)
# RFC 9114 §7.2.8: HTTP/2 frame types with no HTTP/3 equivalent (PRIORITY,
# PING, WINDOW_UPDATE, CONTINUATION); receiving one is H3_FRAME_UNEXPECTED.
HTTP2_ONLY_FRAME_TYPES = frozenset({0x02, 0x06, 0x08, 0x09})
# Frames whose payload is exactly one varint.
SINGLE_VARINT_FRAMES = frozenset({FrameType.CANCEL_PUSH, FrameType.GOAWAY, FrameType.MAX_PUSH_ID})


class StreamType(IntEnum):
    """Unidirectional stream types (RFC 9114 §6.2, RFC 9204 §4.2)."""

    CONTROL = 0x00
    PUSH = 0x01
    QPACK_ENCODER = 0x02
    QPACK_DECODER = 0x03


class Setting(IntEnum):
    """SETTINGS identifiers (RFC 9114 §7.2.4.1, RFC 9204 §5, RFC 9220, RFC 9297)."""

    QPACK_MAX_TABLE_CAPACITY = 0x01
    MAX_FIELD_SECTION_SIZE = 0x06
    QPACK_BLOCKED_STREAMS = 0x07
    ENABLE_CONNECT_PROTOCOL = 0x08
    H3_DATAGRAM = 0x33


# RFC 9114 §7.2.4.1, §11.2.2: HTTP/2 setting identifiers with no HTTP/3
# meaning are reserved; receiving one is H3_SETTINGS_ERROR.
HTTP2_ONLY_SETTINGS = frozenset({0x00, 0x02, 0x03, 0x04, 0x05})
_BOOLEAN_SETTINGS = frozenset({Setting.ENABLE_CONNECT_PROTOCOL, Setting.H3_DATAGRAM})


def is_reserved(value: int) -> bool:
    """Whether ``value`` is a reserved (GREASE) frame/stream/setting type."""
    return value >= 0x21 and (value - 0x21) % 0x1F == 0


def grease_value(n: int) -> int:
    """The ``n``-th reserved value, ``0x1f * n + 0x21``."""
    return 0x1F * n + 0x21


def encode_frame(frame_type: int, payload: bytes = b"") -> bytes:
    """One frame: type, length, payload."""
    return encode_varint(frame_type) + encode_varint(len(payload)) + payload


def frame_header(frame_type: int, length: int) -> bytes:
    """Only the type and length (for DATA, whose payload is sent as is)."""
    return encode_varint(frame_type) + encode_varint(length)


def encode_settings(settings: Mapping[int, int] | Iterable[tuple[int, int]]) -> bytes:
    """A SETTINGS frame payload."""
    items = settings.items() if isinstance(settings, Mapping) else settings
    return b"".join(encode_varint(key) + encode_varint(value) for key, value in items)


def encode_varint_frame(frame_type: int, value: int) -> bytes:
    """A CANCEL_PUSH, GOAWAY or MAX_PUSH_ID frame."""
    return encode_frame(frame_type, encode_varint(value))


def parse_settings(payload: bytes) -> dict[int, int]:
    """Parse and validate a SETTINGS payload (RFC 9114 §7.2.4).

    Raises H3ProtocolError: H3_FRAME_ERROR for a truncated payload,
    H3_SETTINGS_ERROR for a duplicate identifier, an HTTP/2-only identifier
    or a boolean setting other than 0 or 1.
    """
    settings: dict[int, int] = {}
    pos = 0
    end = len(payload)
    try:
        while pos < end:
            key, pos = decode_varint(payload, pos)
            value, pos = decode_varint(payload, pos)
            if key in HTTP2_ONLY_SETTINGS:
                raise H3ProtocolError(
                    H3ErrorCode.H3_SETTINGS_ERROR, f"HTTP/2 setting 0x{key:x} in SETTINGS"
                )
            if key in settings:
                raise H3ProtocolError(
                    H3ErrorCode.H3_SETTINGS_ERROR, f"setting 0x{key:x} appears twice"
                )
            if key in _BOOLEAN_SETTINGS and value > 1:
                raise H3ProtocolError(
                    H3ErrorCode.H3_SETTINGS_ERROR, f"setting 0x{key:x} must be 0 or 1"
                )
            settings[key] = value
    except BufferReadError:
        raise H3ProtocolError(H3ErrorCode.H3_FRAME_ERROR, "truncated SETTINGS frame") from None
    return settings


def parse_single_varint(frame_type: int, payload: bytes) -> int:
    """The varint payload of CANCEL_PUSH, GOAWAY or MAX_PUSH_ID (H3_FRAME_ERROR if not exact)."""
    try:
        value, pos = decode_varint(payload, 0)
    except BufferReadError:
        value, pos = 0, -1
    if pos != len(payload):
        raise H3ProtocolError(
            H3ErrorCode.H3_FRAME_ERROR, f"{frame_name(frame_type)} payload is not one varint"
        )
    return value


def parse_push_promise(payload: bytes) -> tuple[int, bytes]:
    """A PUSH_PROMISE payload: ``(push_id, encoded field section)``."""
    try:
        push_id, pos = decode_varint(payload, 0)
    except BufferReadError:
        raise H3ProtocolError(H3ErrorCode.H3_FRAME_ERROR, "truncated PUSH_PROMISE") from None
    return push_id, payload[pos:]


def frame_name(frame_type: int) -> str:
    try:
        return FrameType(frame_type).name
    except ValueError:
        return f"frame 0x{frame_type:x}"


__all__ = [
    "HTTP2_ONLY_FRAME_TYPES",
    "HTTP2_ONLY_SETTINGS",
    "KNOWN_FRAME_TYPES",
    "MAX_VARINT",
    "SINGLE_VARINT_FRAMES",
    "FrameType",
    "Setting",
    "StreamType",
    "encode_frame",
    "encode_settings",
    "encode_varint_frame",
    "frame_header",
    "frame_name",
    "grease_value",
    "is_reserved",
    "parse_push_promise",
    "parse_settings",
    "parse_single_varint",
]
