"""Assembling one UDP datagram out of coalesced QUIC packets.

The connection decides *what* to send; this module knows *how* a packet is
laid out. A datagram is built as a sequence of packets (Initial, Handshake,
1-RTT, in that order, RFC 9000 §12.2). Each packet is opened with
:meth:`PacketBuilder.start_packet`, filled by appending frame bytes to
:attr:`PacketBuilder.payload` (staying within :attr:`PacketBuilder.remaining`),
and closed with :meth:`end_packet`. An empty packet is dropped without using
up a packet number.

Encryption is deferred to :meth:`finish`: only then is it known whether the
datagram must be padded (a client's Initial datagrams, and a server's
ack-eliciting Initial datagrams, are at least 1200 bytes, RFC 9000 §14.1), and
padding goes into the last packet, whose Length field (long header) must
include it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .buffer import varint_size
from .crypto import PacketKeys, protect_packet
from .packet import (
    PacketType,
    encode_long_header,
    encode_packet_number,
    encode_short_header,
)
from .packet_space import PacketNumberSpace
from .recovery import SentPacket, Space

# Enum members read per packet or per handshake, as globals: on CPython 3.11
# ``Enum.MEMBER`` takes EnumType.__getattr__'s slow path (~1 K instructions
# a read, against ~10 for a global).
_ONE_RTT_PACKET = PacketType.ONE_RTT
_INITIAL_PACKET = PacketType.INITIAL
_ZERO_RTT_PACKET = PacketType.ZERO_RTT
_HANDSHAKE_PACKET = PacketType.HANDSHAKE
_HANDSHAKE_SPACE = Space.HANDSHAKE
_APPLICATION = Space.APPLICATION

AEAD_TAG_SIZE = 16
# Header protection samples 16 bytes starting 4 bytes after the packet number
# (RFC 9001 §5.4.2): the pn plus plaintext payload must be at least 4 bytes.
MIN_PN_AND_PAYLOAD = 4
# Don't open a packet with less room than this for frames.
MIN_PACKET_ROOM = 24

Handler = tuple[Callable[..., None], tuple[Any, ...]]

# What ``PacketBuilder.payload`` is while no packet is open: appending to it
# is a bug, and a bytes object refuses it.
_CLOSED: Any = b""


class _Packet:
    __slots__ = (
        "ack_eliciting",
        "handlers",
        "in_flight",
        "keys",
        "packet_type",
        "payload",
        "pn",
        "pn_length",
        "space",
        "truncated_pn",
    )

    def __init__(
        self,
        space: PacketNumberSpace,
        packet_type: PacketType,
        keys: PacketKeys,
        pn: int,
        truncated_pn: int,
        pn_length: int,
    ) -> None:
        self.space = space
        self.packet_type = packet_type
        self.keys = keys
        self.pn = pn
        self.truncated_pn = truncated_pn
        self.pn_length = pn_length
        self.payload = bytearray()
        self.ack_eliciting = False
        self.in_flight = False
        self.handlers: list[Handler] = []


class PacketBuilder:
    """Builds one datagram. Not reusable: make a new one per datagram."""

    __slots__ = (
        "_current",
        "_current_overhead",
        "_eliciting_types",
        "_packets",
        "_types",
        "_used",
        "dcid",
        "key_phase",
        "max_size",
        "payload",
        "scid",
        "token",
        "version",
    )

    def __init__(
        self,
        *,
        max_size: int,
        version: int,
        dcid: bytes,
        scid: bytes,
        token: bytes = b"",
        key_phase: int = 0,
    ) -> None:
        self.max_size = max_size
        self.version = version
        self.dcid = dcid
        self.scid = scid
        self.token = token
        self.key_phase = key_phase
        self._packets: list[tuple[_Packet, int]] = []  # (packet, header overhead)
        self._used = 0  # bytes taken by finished packets
        self._current: _Packet | None = None
        self._current_overhead = 0
        # The open packet's plaintext payload; frame writers append to it.
        self.payload: bytearray = _CLOSED
        # Types of the finished packets, and of those that are ack-eliciting.
        self._types: set[PacketType] = set()
        self._eliciting_types: set[PacketType] = set()

    # -- building --------------------------------------------------------

    def header_overhead(self, packet_type: PacketType, pn_length: int) -> int:
        """Bytes of header (including the packet number) plus the AEAD tag."""
        if packet_type is _ONE_RTT_PACKET:
            return 1 + len(self.dcid) + pn_length + AEAD_TAG_SIZE
        size = 1 + 4 + 1 + len(self.dcid) + 1 + len(self.scid) + 2 + pn_length
        if packet_type is _INITIAL_PACKET:
            size += varint_size(len(self.token)) + len(self.token)
        return size + AEAD_TAG_SIZE

    def start_packet(
        self, space: PacketNumberSpace, packet_type: PacketType, keys: PacketKeys
    ) -> bool:
        """Open a packet; False if the datagram has no room for a useful one."""
        if self._current is not None:
            raise RuntimeError("end_packet() was not called")
        pn = space.next_pn
        truncated, pn_length = encode_packet_number(pn, space.largest_acked_by_peer)
        overhead = self.header_overhead(packet_type, pn_length)
        if self.max_size - self._used - overhead < MIN_PACKET_ROOM:
            return False
        current = self._current = _Packet(space, packet_type, keys, pn, truncated, pn_length)
        self._current_overhead = overhead
        self.payload = current.payload
        return True

    @property
    def remaining(self) -> int:
        """Payload bytes that still fit in the open packet."""
        current = self._current
        if current is None:
            return 0
        return self.max_size - self._used - self._current_overhead - len(current.payload)

    @property
    def packet_number(self) -> int:
        if self._current is None:
            raise RuntimeError("no packet is open")
        return self._current.pn

    def add_handler(self, callback: Callable[..., None], *args: Any) -> None:
        """Call ``callback(delivered, *args)`` when the packet is acked or lost."""
        if self._current is None:
            raise RuntimeError("no packet is open")
        self._current.handlers.append((callback, args))

    def mark_ack_eliciting(self) -> None:
        if self._current is None:
            raise RuntimeError("no packet is open")
        self._current.ack_eliciting = True
        self._current.in_flight = True

    @property
    def has_current_ack_eliciting(self) -> bool:
        """Whether the open packet already holds an ack-eliciting frame."""
        return self._current is not None and self._current.ack_eliciting

    def end_packet(self) -> bool:
        """Close the open packet; returns False (and drops it) if it is empty."""
        current = self._current
        if current is None:
            raise RuntimeError("no packet is open")
        self._current = None
        self.payload = _CLOSED
        if not current.payload:
            return False
        self._types.add(current.packet_type)
        if current.ack_eliciting:
            self._eliciting_types.add(current.packet_type)
        current.space.next_pn = current.pn + 1
        padding = MIN_PN_AND_PAYLOAD - current.pn_length - len(current.payload)
        if padding > 0:
            current.payload += bytes(padding)
        self._packets.append((current, self._current_overhead))
        self._used += self._current_overhead + len(current.payload)
        return True

    @property
    def is_empty(self) -> bool:
        return not self._packets

    @property
    def size(self) -> int:
        return self._used

    def has_packet_type(self, packet_type: PacketType) -> bool:
        return packet_type in self._types

    def has_ack_eliciting(self, packet_type: PacketType | None = None) -> bool:
        """Whether a finished packet (of ``packet_type``) is ack-eliciting
        (and so in flight, RFC 9002 §2)."""
        if packet_type is None:
            return bool(self._eliciting_types)
        return packet_type in self._eliciting_types

    # -- finishing -------------------------------------------------------

    def finish(self, pad_to: int, now: float) -> tuple[bytes, list[SentPacket]]:
        """Pad to ``pad_to`` bytes (if larger), encrypt, and return the datagram
        together with a :class:`SentPacket` per packet for loss recovery."""
        if self._current is not None:
            raise RuntimeError("end_packet() was not called")
        if not self._packets:
            return b"", []
        short = pad_to - self._used
        if short > 0:
            last = self._packets[-1][0]
            last.payload += bytes(short)
            last.in_flight = True  # RFC 9002 §2: PADDING counts as in flight
        parts: list[bytes] = []
        sent: list[SentPacket] = []
        for packet, _ in self._packets:
            data = self._protect(packet)
            parts.append(data)
            sent.append(
                SentPacket(
                    packet_number=packet.pn,
                    space=packet.space.space,
                    time_sent=now,
                    size=len(data),
                    ack_eliciting=packet.ack_eliciting,
                    in_flight=packet.in_flight,
                    handlers=packet.handlers,
                    zero_rtt=packet.packet_type is _ZERO_RTT_PACKET,
                )
            )
        return b"".join(parts), sent

    def _protect(self, packet: _Packet) -> bytes:
        buf = bytearray()
        if packet.packet_type is _ONE_RTT_PACKET:
            pn_offset = encode_short_header(
                buf,
                dcid=self.dcid,
                pn_length=packet.pn_length,
                key_phase=self.key_phase,
            )
        else:
            pn_offset = encode_long_header(
                buf,
                version=self.version,
                packet_type=packet.packet_type,
                dcid=self.dcid,
                scid=self.scid,
                token=self.token if packet.packet_type is _INITIAL_PACKET else b"",
                pn_length=packet.pn_length,
                payload_length=packet.pn_length + len(packet.payload) + AEAD_TAG_SIZE,
            )
        buf += packet.truncated_pn.to_bytes(packet.pn_length, "big")
        buf += packet.payload
        return protect_packet(packet.keys, buf, pn_offset, packet.pn_length, packet.pn)


def space_of(packet_type: PacketType) -> Space:
    if packet_type is _INITIAL_PACKET:
        return Space.INITIAL
    if packet_type is _HANDSHAKE_PACKET:
        return _HANDSHAKE_SPACE
    return _APPLICATION


def build_pmtu_probe(
    builder: PacketBuilder,
    space: PacketNumberSpace,
    keys: PacketKeys,
    now: float,
    on_delivered: Callable[..., None],
    number: int,
) -> tuple[bytes, SentPacket] | None:
    """A PMTU probe of exactly ``builder.max_size`` bytes: one 1-RTT packet of
    PING and PADDING (RFC 9000 §14.4). Nothing else rides on it, so its loss
    loses nothing that needs resending. ``on_delivered(delivered, size,
    number)`` is its delivery handler."""
    size = builder.max_size
    if not builder.start_packet(space, _ONE_RTT_PACKET, keys):
        return None
    builder.payload.append(0x01)  # PING
    builder.mark_ack_eliciting()
    builder.add_handler(on_delivered, size, number)
    builder.end_packet()
    datagram, sent = builder.finish(size, now)
    packet = sent[0]
    packet.pmtu_probe = True
    return datagram, packet
