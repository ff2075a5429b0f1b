"""QUIC packet headers (RFC 9000 §17, RFC 9369 §3.2) and packet numbers (App. A).

:func:`parse_header` reads the unprotected part of one packet of a datagram
and says where its protected packet number starts and where the packet ends,
so coalesced packets (RFC 9000 §12.2) are walked one by one. Anything
malformed raises :class:`PacketDropped`: RFC 9000 §5.2 says such datagrams are
discarded, never answered with an error. A long header with a version we do
not speak raises :class:`UnsupportedVersion` so a server can send Version
Negotiation (§6.1).

The encoders write everything up to, but not including, the packet number;
they return the packet number's offset, which header protection needs.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import Enum
from typing import Final

from .buffer import decode_varint, encode_varint
from .errors import BufferReadError, PacketDropped

QUIC_V1: Final = 0x00000001
QUIC_V2: Final = 0x6B3343CF  # RFC 9369
SUPPORTED_VERSIONS: Final = (QUIC_V1, QUIC_V2)

MAX_CID_LENGTH: Final = 20  # RFC 9000 §17.2: for version 1 (and 2)
RETRY_INTEGRITY_TAG_SIZE: Final = 16
# The Length field is always written as a two-byte varint so header size does
# not depend on the payload (packets are capped well below 16383 bytes).
LENGTH_FIELD_SIZE: Final = 2

_UINT32: Final = struct.Struct("!I")
_HEADER_FORM: Final = 0x80
_FIXED_BIT: Final = 0x40


class PacketType(Enum):
    # Hashed per packet (dict keys): identity hashing runs in C, Enum's own
    # __hash__ in Python. Members are singletons, so it is equally correct.
    __hash__ = object.__hash__

    INITIAL = "initial"
    ZERO_RTT = "0RTT"
    HANDSHAKE = "handshake"
    RETRY = "retry"
    VERSION_NEGOTIATION = "version_negotiation"
    ONE_RTT = "1RTT"


# Long packet type bits (first byte bits 4-5) per version: RFC 9000 §17.2,
# RFC 9369 §3.2 (version 2 rotates them).
_TYPE_BITS: Final[dict[int, dict[PacketType, int]]] = {
    QUIC_V1: {
        PacketType.INITIAL: 0,
        PacketType.ZERO_RTT: 1,
        PacketType.HANDSHAKE: 2,
        PacketType.RETRY: 3,
    },
    QUIC_V2: {
        PacketType.INITIAL: 1,
        PacketType.ZERO_RTT: 2,
        PacketType.HANDSHAKE: 3,
        PacketType.RETRY: 0,
    },
}
_TYPE_OF_BITS: Final = {
    version: {bits: ptype for ptype, bits in table.items()} for version, table in _TYPE_BITS.items()
}


class UnsupportedVersion(PacketDropped):
    """A long header carried a version we do not implement (RFC 9000 §6)."""

    def __init__(self, version: int, dcid: bytes, scid: bytes) -> None:
        super().__init__(f"unsupported QUIC version 0x{version:08x}")
        self.version = version
        self.dcid = dcid
        self.scid = scid


@dataclass(slots=True)
class PacketHeader:
    """The parsed, still header-protected, start of one packet.

    ``pn_offset`` and ``end`` are absolute offsets into the datagram.
    """

    is_long: bool
    version: int
    packet_type: PacketType
    first_byte: int
    dcid: bytes
    scid: bytes = b""
    token: bytes = b""
    pn_offset: int = 0
    end: int = 0
    integrity_tag: bytes = b""
    supported_versions: tuple[int, ...] = ()


_ONE_RTT = PacketType.ONE_RTT  # a global: enum member lookups are slow on CPython 3.11
_INITIAL_PACKET = PacketType.INITIAL
_RETRY_PACKET = PacketType.RETRY


def long_packet_type(version: int, first_byte: int) -> PacketType:
    return _TYPE_OF_BITS[version][(first_byte >> 4) & 0x03]


def parse_header(
    data: bytes | bytearray | memoryview, offset: int, short_dcid_length: int
) -> PacketHeader:
    """Parse the header of the packet at ``offset``; see the module docs."""
    end_of_data = len(data)
    if offset >= end_of_data:
        raise PacketDropped("empty packet")
    first_byte = data[offset]
    if not first_byte & _HEADER_FORM:
        return _parse_short(data, offset, first_byte, short_dcid_length, end_of_data)
    # Plain slicing, no Reader: every handshake packet comes here.
    pos = offset + 5  # the DCID's length
    if pos >= end_of_data:
        raise PacketDropped("truncated packet header")
    version = _UINT32.unpack_from(data, offset + 1)[0]
    dcid_end = pos + 1 + data[pos]
    if dcid_end >= end_of_data:  # the DCID and the SCID's length
        raise PacketDropped("truncated packet header")
    dcid = bytes(data[pos + 1 : dcid_end])
    pos = dcid_end + 1 + data[dcid_end]
    if pos > end_of_data:
        raise PacketDropped("truncated packet header")
    scid = bytes(data[dcid_end + 1 : pos])
    if version == 0:
        return _version_negotiation(data, pos, end_of_data, first_byte, dcid, scid)
    if version not in _TYPE_BITS:
        raise UnsupportedVersion(version, dcid, scid)
    if len(dcid) > MAX_CID_LENGTH or len(scid) > MAX_CID_LENGTH:
        raise PacketDropped("connection ID longer than 20 bytes")
    if not first_byte & _FIXED_BIT:
        raise PacketDropped("fixed bit is zero")  # RFC 9000 §17.2
    packet_type = long_packet_type(version, first_byte)
    if packet_type is _RETRY_PACKET:
        tag_start = end_of_data - RETRY_INTEGRITY_TAG_SIZE
        if tag_start < pos:
            raise PacketDropped("Retry packet too short")
        return PacketHeader(
            is_long=True,
            version=version,
            packet_type=packet_type,
            first_byte=first_byte,
            dcid=dcid,
            scid=scid,
            token=bytes(data[pos:tag_start]),
            end=end_of_data,
            integrity_tag=bytes(data[tag_start:end_of_data]),
        )
    try:
        token = b""
        if packet_type is _INITIAL_PACKET:
            token_length, pos = decode_varint(data, pos)
            token_end = pos + token_length
            if token_end > end_of_data:
                raise PacketDropped("truncated packet header")
            token = bytes(data[pos:token_end])
            pos = token_end
        length, pn_offset = decode_varint(data, pos)
    except BufferReadError:
        raise PacketDropped("truncated packet header") from None
    end = pn_offset + length
    if end > end_of_data:
        raise PacketDropped("packet Length runs past the datagram")
    if length < 1 + 16:  # at least a packet number and an AEAD tag
        raise PacketDropped("packet too short")
    return PacketHeader(
        is_long=True,
        version=version,
        packet_type=packet_type,
        first_byte=first_byte,
        dcid=dcid,
        scid=scid,
        token=token,
        pn_offset=pn_offset,
        end=end,
    )


def _version_negotiation(
    data: bytes | bytearray | memoryview,
    pos: int,
    end: int,
    first_byte: int,
    dcid: bytes,
    scid: bytes,
) -> PacketHeader:
    # RFC 9000 §17.2.1: a list of 32-bit versions; the fixed bit is unused.
    remaining = end - pos
    if remaining % 4 or not remaining:
        raise PacketDropped("malformed Version Negotiation packet")
    return PacketHeader(
        is_long=True,
        version=0,
        packet_type=PacketType.VERSION_NEGOTIATION,
        first_byte=first_byte,
        dcid=dcid,
        scid=scid,
        end=end,
        supported_versions=tuple(_UINT32.unpack_from(data, i)[0] for i in range(pos, end, 4)),
    )


def _parse_short(
    data: bytes | bytearray | memoryview, offset: int, first_byte: int, dcid_length: int, end: int
) -> PacketHeader:
    # Every packet of a transfer comes here: plain slicing, no Reader.
    if not first_byte & _FIXED_BIT:
        raise PacketDropped("fixed bit is zero")  # RFC 9000 §17.3.1
    pn_offset = offset + 1 + dcid_length
    if end - pn_offset < 1 + 16:  # also covers a datagram shorter than the DCID
        raise PacketDropped("packet too short")
    return PacketHeader(
        is_long=False,
        version=0,
        packet_type=_ONE_RTT,
        first_byte=first_byte,
        dcid=bytes(data[offset + 1 : pn_offset]),
        pn_offset=pn_offset,
        end=end,
    )


def peek_destination_cid(data: bytes | bytearray | memoryview, short_dcid_length: int) -> bytes:
    """The Destination Connection ID of a datagram's first packet (for routing)."""
    if not data:
        raise PacketDropped("empty datagram")
    if data[0] & _HEADER_FORM:
        if len(data) < 6:
            raise PacketDropped("truncated long header")
        length = data[5]
        if len(data) < 6 + length:
            raise PacketDropped("truncated long header")
        return bytes(data[6 : 6 + length])
    if len(data) < 1 + short_dcid_length:
        raise PacketDropped("truncated short header")
    return bytes(data[1 : 1 + short_dcid_length])


def encode_long_header(
    buf: bytearray,
    *,
    version: int,
    packet_type: PacketType,
    dcid: bytes,
    scid: bytes,
    token: bytes,
    pn_length: int,
    payload_length: int,
) -> int:
    """Append a long header up to the packet number; returns the pn offset.

    ``payload_length`` counts the packet number, payload and AEAD tag.
    """
    if payload_length >= 0x4000:
        raise ValueError("long header packets are limited to 16383 bytes here")
    buf.append(0xC0 | (_TYPE_BITS[version][packet_type] << 4) | (pn_length - 1))
    buf += version.to_bytes(4, "big")
    buf.append(len(dcid))
    buf += dcid
    buf.append(len(scid))
    buf += scid
    if packet_type is _INITIAL_PACKET:
        buf += encode_varint(len(token))
        buf += token
    buf += (0x4000 | payload_length).to_bytes(LENGTH_FIELD_SIZE, "big")
    return len(buf)


def encode_short_header(buf: bytearray, *, dcid: bytes, pn_length: int, key_phase: int) -> int:
    """Append a 1-RTT header up to the packet number; returns the pn offset."""
    buf.append(0x40 | (key_phase << 2) | (pn_length - 1))
    buf += dcid
    return len(buf)


def encode_version_negotiation(
    *, dcid: bytes, scid: bytes, versions: list[int] | tuple[int, ...], first_byte_random: int
) -> bytes:
    """A Version Negotiation packet (RFC 9000 §17.2.1).

    ``dcid``/``scid`` are the client's source/destination IDs swapped by the
    caller; the unused first-byte bits are random, with the fixed bit set so
    middleboxes see ordinary QUIC (§17.2.1 recommends it).
    """
    out = bytearray((0x80 | 0x40 | (first_byte_random & 0x3F),))
    out += b"\x00\x00\x00\x00"
    out.append(len(dcid))
    out += dcid
    out.append(len(scid))
    out += scid
    for version in versions:
        out += version.to_bytes(4, "big")
    return bytes(out)


def encode_packet_number(pn: int, largest_acked: int | None) -> tuple[int, int]:
    """Truncate ``pn`` for the wire: (truncated value, length in bytes).

    RFC 9000 §17.1 and App. A.2: use enough bytes to represent more than
    twice the number of packets in flight.
    """
    unacked = pn + 1 if largest_acked is None else pn - largest_acked
    bits = (unacked * 2).bit_length()
    length = max(1, (bits + 7) // 8)
    if length > 4:
        raise ValueError("too many unacknowledged packets to encode a packet number")
    return pn & ((1 << (8 * length)) - 1), length


def decode_packet_number(truncated: int, pn_bits: int, expected: int) -> int:
    """Recover a full packet number (RFC 9000 App. A.3)."""
    window = 1 << pn_bits
    half_window = window // 2
    mask = window - 1
    candidate = (expected & ~mask) | truncated
    if candidate <= expected - half_window and candidate < (1 << 62) - window:
        return candidate + window
    if candidate > expected + half_window and candidate >= window:
        return candidate - window
    return candidate
