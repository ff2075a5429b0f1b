"""Packet headers and packet numbers (RFC 9000 §17, App. A; RFC 9369 §3.2)."""

from __future__ import annotations

import pytest

from ghostwire.quic.errors import BufferReadError, PacketDropped
from ghostwire.quic.packet import (
    QUIC_V1,
    QUIC_V2,
    PacketHeader,
    PacketType,
    UnsupportedVersion,
    decode_packet_number,
    encode_long_header,
    encode_packet_number,
    encode_short_header,
    encode_version_negotiation,
    parse_header,
    peek_destination_cid,
)

DCID = bytes.fromhex("8394c8f03e515708")
SCID = bytes.fromhex("f067a5502a4262b5")
LONG_TYPES = [PacketType.INITIAL, PacketType.ZERO_RTT, PacketType.HANDSHAKE]
VERSIONS = [QUIC_V1, QUIC_V2]


def long_packet(
    version: int,
    packet_type: PacketType,
    *,
    dcid: bytes = DCID,
    scid: bytes = SCID,
    token: bytes = b"",
    pn_length: int = 2,
    body: int = 40,
) -> tuple[bytes, int]:
    """A long-header packet with ``body`` bytes after the packet number; also
    returns the pn offset reported by the encoder."""
    buf = bytearray()
    pn_offset = encode_long_header(
        buf,
        version=version,
        packet_type=packet_type,
        dcid=dcid,
        scid=scid,
        token=token,
        pn_length=pn_length,
        payload_length=pn_length + body,
    )
    buf += bytes(range(1, pn_length + 1)) + bytes([0xAA]) * body
    return bytes(buf), pn_offset


def short_packet(dcid: bytes = DCID, *, pn_length: int = 1, key_phase: int = 0) -> bytes:
    buf = bytearray()
    encode_short_header(buf, dcid=dcid, pn_length=pn_length, key_phase=key_phase)
    return bytes(buf) + bytes(range(pn_length)) + b"\x55" * 30


# -- packet numbers (RFC 9000 App. A.2, A.3) --------------------------------------


def test_rfc_a2_packet_number_encoding_example() -> None:
    truncated, length = encode_packet_number(0xAC5C02, 0xABE8B3)
    assert length == 2  # 16 bits
    assert truncated == 0x5C02


def test_rfc_a3_packet_number_decoding_example() -> None:
    largest = 0xA82F30EA
    assert decode_packet_number(0x9B32, 16, largest + 1) == 0xA82F9B32


@pytest.mark.parametrize(
    ("pn", "largest_acked", "length"),
    [
        (0, None, 1),
        (126, None, 1),  # 127 unacked: 254 < 256
        (127, None, 2),  # 128 unacked: 256 is not "more than twice"
        (1000, 900, 1),
        (1000, 873, 1),  # 127 ahead
        (1000, 872, 2),  # 128 ahead
        (0x10000, 0x10000 - 0x7FFF, 2),
        (0x10000, 0x10000 - 0x8000, 3),
        (2**31, 2**31 - 0x7FFFFF, 3),
        (2**31, 2**31 - 0x800000, 4),
    ],
)
def test_packet_number_length_covers_twice_the_unacked_range(
    pn: int, largest_acked: int | None, length: int
) -> None:
    truncated, got = encode_packet_number(pn, largest_acked)
    assert got == length
    assert truncated == pn & ((1 << (8 * length)) - 1)


def test_packet_number_too_far_ahead_is_refused() -> None:
    with pytest.raises(ValueError):
        encode_packet_number(2**40, 0)


@pytest.mark.parametrize(
    ("truncated", "bits", "expected", "full"),
    [
        (0x00, 8, 0xFF, 0x100),  # wraps forward
        (0xFF, 8, 0x100, 0xFF),  # just behind the expected number
        (0x7F, 8, 0x100, 0x17F),
        (0x80, 8, 0x100, 0x180),  # candidate == expected + hwin stays
        (0x81, 8, 0x100, 0x81),  # candidate > expected + hwin goes back
        (0xFF, 8, 0x00, 0xFF),  # no window below 0 to go back to
        (0x01, 8, 0x00, 0x01),
        (0x9B32, 16, 0xA82F30EB, 0xA82F9B32),
        (0xFFFFFFFF, 32, (1 << 62) - 2, (1 << 62) - 1),  # no window above 2^62
    ],
)
def test_packet_number_decoding_windows(
    truncated: int, bits: int, expected: int, full: int
) -> None:
    assert decode_packet_number(truncated, bits, expected) == full


def test_packet_number_round_trip_near_largest_acked() -> None:
    for largest_acked in (0, 5, 250, 0xFFFF, 0xABE8B3, 2**32 + 17):
        for ahead in (1, 2, 100, 127, 128, 1000, 40000):
            pn = largest_acked + ahead
            truncated, length = encode_packet_number(pn, largest_acked)
            # The receiver has at least seen the largest acknowledged packet.
            assert decode_packet_number(truncated, 8 * length, largest_acked + 1) == pn


# -- long headers ---------------------------------------------------------------------


def test_rfc9001_client_initial_header_bytes() -> None:
    # RFC 9001 App. A.2: the unprotected header of the client Initial.
    buf = bytearray()
    pn_offset = encode_long_header(
        buf,
        version=QUIC_V1,
        packet_type=PacketType.INITIAL,
        dcid=DCID,
        scid=b"",
        token=b"",
        pn_length=4,
        payload_length=1182,
    )
    assert buf.hex() == "c300000001088394c8f03e5157080000449e"
    assert pn_offset == len(buf)


def test_rfc9369_client_initial_header_bytes() -> None:
    # RFC 9369 App. A.2: version 2 puts 0b01 in the type bits for Initial.
    buf = bytearray()
    encode_long_header(
        buf,
        version=QUIC_V2,
        packet_type=PacketType.INITIAL,
        dcid=DCID,
        scid=b"",
        token=b"",
        pn_length=4,
        payload_length=1182,
    )
    assert buf.hex() == "d36b3343cf088394c8f03e5157080000449e"


def test_rfc9001_server_initial_header_bytes() -> None:
    # RFC 9001 App. A.3.
    buf = bytearray()
    encode_long_header(
        buf,
        version=QUIC_V1,
        packet_type=PacketType.INITIAL,
        dcid=b"",
        scid=SCID,
        token=b"",
        pn_length=2,
        payload_length=117,
    )
    assert buf.hex() == "c1000000010008f067a5502a4262b5004075"


@pytest.mark.parametrize(
    ("version", "packet_type", "bits"),
    [
        (QUIC_V1, PacketType.INITIAL, 0),
        (QUIC_V1, PacketType.ZERO_RTT, 1),
        (QUIC_V1, PacketType.HANDSHAKE, 2),
        (QUIC_V2, PacketType.INITIAL, 1),
        (QUIC_V2, PacketType.ZERO_RTT, 2),
        (QUIC_V2, PacketType.HANDSHAKE, 3),
    ],
)
def test_long_header_type_bits(version: int, packet_type: PacketType, bits: int) -> None:
    data, _ = long_packet(version, packet_type, pn_length=3)
    assert data[0] == 0xC0 | (bits << 4) | 2
    assert data[1:5] == version.to_bytes(4, "big")


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("packet_type", LONG_TYPES)
@pytest.mark.parametrize("pn_length", [1, 4])
def test_long_header_round_trip(version: int, packet_type: PacketType, pn_length: int) -> None:
    token = b"address-token" if packet_type is PacketType.INITIAL else b""
    data, pn_offset = long_packet(version, packet_type, token=token, pn_length=pn_length, body=25)
    header = parse_header(data, 0, 8)
    assert header == PacketHeader(
        is_long=True,
        version=version,
        packet_type=packet_type,
        first_byte=data[0],
        dcid=DCID,
        scid=SCID,
        token=token,
        pn_offset=pn_offset,
        end=len(data),
    )
    assert header.first_byte & 0x03 == pn_length - 1


@pytest.mark.parametrize("version", VERSIONS)
def test_long_header_with_empty_and_maximal_cids(version: int) -> None:
    data, pn_offset = long_packet(version, PacketType.HANDSHAKE, dcid=b"", scid=b"\x07" * 20)
    header = parse_header(data, 0, 0)
    assert (header.dcid, header.scid, header.pn_offset) == (b"", b"\x07" * 20, pn_offset)


def test_long_header_token_only_for_initial() -> None:
    initial, _ = long_packet(QUIC_V1, PacketType.INITIAL, token=b"tok")
    handshake, _ = long_packet(QUIC_V1, PacketType.HANDSHAKE, token=b"tok")
    assert b"tok" in initial
    assert b"tok" not in handshake
    assert parse_header(handshake, 0, 8).token == b""


def test_long_header_payload_length_limit() -> None:
    with pytest.raises(ValueError):
        encode_long_header(
            bytearray(),
            version=QUIC_V1,
            packet_type=PacketType.HANDSHAKE,
            dcid=DCID,
            scid=SCID,
            token=b"",
            pn_length=2,
            payload_length=0x4000,
        )


def test_version_2_types_are_not_read_as_version_1() -> None:
    # The same first byte means Initial in v1 and Retry in v2.
    v1, _ = long_packet(QUIC_V1, PacketType.INITIAL)
    as_v2 = v1[:1] + QUIC_V2.to_bytes(4, "big") + v1[5:]
    assert parse_header(as_v2, 0, 8).packet_type is PacketType.RETRY


# -- short headers --------------------------------------------------------------------


@pytest.mark.parametrize("pn_length", [1, 2, 3, 4])
@pytest.mark.parametrize("key_phase", [0, 1])
def test_short_header_round_trip(pn_length: int, key_phase: int) -> None:
    buf = bytearray()
    pn_offset = encode_short_header(buf, dcid=DCID, pn_length=pn_length, key_phase=key_phase)
    assert pn_offset == 1 + len(DCID)
    assert buf[0] == 0x40 | (key_phase << 2) | (pn_length - 1)
    data = short_packet(pn_length=pn_length, key_phase=key_phase)
    header = parse_header(data, 0, len(DCID))
    assert header == PacketHeader(
        is_long=False,
        version=0,
        packet_type=PacketType.ONE_RTT,
        first_byte=data[0],
        dcid=DCID,
        pn_offset=pn_offset,
        end=len(data),
    )


def test_rfc9001_short_header_bytes() -> None:
    # RFC 9001 App. A.5: the ChaCha20 example's header, empty DCID, 3-byte pn.
    buf = bytearray()
    assert encode_short_header(buf, dcid=b"", pn_length=3, key_phase=0) == 1
    assert buf == b"\x42"


def test_short_header_dcid_length_comes_from_the_caller() -> None:
    data = short_packet(DCID)
    assert parse_header(data, 0, 4).dcid == DCID[:4]
    assert parse_header(data, 0, 0).dcid == b""
    assert parse_header(data, 0, 0).pn_offset == 1


# -- coalesced packets (RFC 9000 §12.2) -----------------------------------------------


def test_coalesced_packets_are_walked_with_parse_header() -> None:
    initial, _ = long_packet(QUIC_V1, PacketType.INITIAL, token=b"t", body=30)
    zero_rtt, _ = long_packet(QUIC_V1, PacketType.ZERO_RTT, body=20)
    handshake, _ = long_packet(QUIC_V1, PacketType.HANDSHAKE, pn_length=4, body=50)
    one_rtt = short_packet()
    datagram = initial + zero_rtt + handshake + one_rtt

    offset = 0
    seen: list[tuple[PacketType, int, int]] = []
    while offset < len(datagram):
        header = parse_header(datagram, offset, len(DCID))
        assert header.dcid == DCID
        assert offset < header.pn_offset < header.end
        seen.append((header.packet_type, offset, header.end))
        offset = header.end
    assert seen == [
        (PacketType.INITIAL, 0, len(initial)),
        (PacketType.ZERO_RTT, len(initial), len(initial) + len(zero_rtt)),
        (
            PacketType.HANDSHAKE,
            len(initial) + len(zero_rtt),
            len(initial) + len(zero_rtt) + len(handshake),
        ),
        (PacketType.ONE_RTT, len(datagram) - len(one_rtt), len(datagram)),
    ]


def test_coalesced_packets_in_a_memoryview() -> None:
    first, _ = long_packet(QUIC_V2, PacketType.INITIAL)
    second, _ = long_packet(QUIC_V2, PacketType.HANDSHAKE)
    view = memoryview(bytearray(first + second))
    header = parse_header(view, 0, 8)
    assert header.end == len(first)
    header = parse_header(view, header.end, 8)
    assert header.packet_type is PacketType.HANDSHAKE
    assert isinstance(header.dcid, bytes)
    assert header.end == len(view)


def test_offset_at_or_past_the_end_drops() -> None:
    data, _ = long_packet(QUIC_V1, PacketType.HANDSHAKE)
    with pytest.raises(PacketDropped):
        parse_header(data, len(data), 8)


def test_trailing_padding_after_a_long_packet_is_dropped_not_crashing() -> None:
    data, _ = long_packet(QUIC_V1, PacketType.INITIAL)
    header = parse_header(data + bytes(20), 0, 8)
    assert header.end == len(data)
    # Zero bytes do not form a packet (fixed bit unset).
    with pytest.raises(PacketDropped):
        parse_header(data + bytes(20), header.end, 8)


# -- Version Negotiation (RFC 9000 §17.2.1) -------------------------------------------


def test_version_negotiation_round_trip() -> None:
    data = encode_version_negotiation(
        dcid=SCID, scid=DCID, versions=[QUIC_V1, QUIC_V2, 0x1A2A3A4A], first_byte_random=0x2D
    )
    assert data[0] == 0x80 | 0x40 | 0x2D
    assert data[1:5] == b"\x00\x00\x00\x00"
    header = parse_header(data, 0, 8)
    assert header.packet_type is PacketType.VERSION_NEGOTIATION
    assert header.is_long
    assert header.version == 0
    assert (header.dcid, header.scid) == (SCID, DCID)
    assert header.supported_versions == (QUIC_V1, QUIC_V2, 0x1A2A3A4A)
    assert header.end == len(data)


def test_version_negotiation_ignores_fixed_bit_and_allows_long_cids() -> None:
    # RFC 8999: version-independent CIDs may be up to 255 bytes; the fixed bit is unused.
    data = b"\x80" + bytes(4) + b"\x30" + b"d" * 48 + b"\x00" + QUIC_V1.to_bytes(4, "big")
    header = parse_header(data, 0, 8)
    assert header.dcid == b"d" * 48
    assert header.supported_versions == (QUIC_V1,)


@pytest.mark.parametrize("tail", [b"", b"\x00\x00\x00", b"\x00\x00\x00\x01\x00"])
def test_malformed_version_negotiation_drops(tail: bytes) -> None:
    data = b"\xc0" + bytes(4) + b"\x01a\x01b" + tail
    with pytest.raises(PacketDropped):
        parse_header(data, 0, 8)


# -- Retry (RFC 9000 §17.2.5; RFC 9001 App. A.4, RFC 9369 App. A.4) -------------------


@pytest.mark.parametrize(
    ("wire", "version", "tag"),
    [
        (
            "ff000000010008f067a5502a4262b5746f6b656e04a265ba2eff4d829058fb3f0f2496ba",
            QUIC_V1,
            "04a265ba2eff4d829058fb3f0f2496ba",
        ),
        (
            "cf6b3343cf0008f067a5502a4262b5746f6b656ec8646ce8bfe33952d955543665dcc7b6",
            QUIC_V2,
            "c8646ce8bfe33952d955543665dcc7b6",
        ),
    ],
)
def test_rfc_retry_packets_parse(wire: str, version: int, tag: str) -> None:
    data = bytes.fromhex(wire)
    header = parse_header(data, 0, 8)
    assert header.packet_type is PacketType.RETRY
    assert header.version == version
    assert header.dcid == b""
    assert header.scid == SCID
    assert header.token == b"token"
    assert header.integrity_tag == bytes.fromhex(tag)
    assert header.end == len(data)


def test_retry_with_empty_token_parses() -> None:
    data = b"\xf0" + QUIC_V1.to_bytes(4, "big") + b"\x00\x00" + b"T" * 16
    header = parse_header(data, 0, 0)
    assert header.token == b""
    assert header.integrity_tag == b"T" * 16


def test_retry_shorter_than_its_tag_drops() -> None:
    data = b"\xf0" + QUIC_V1.to_bytes(4, "big") + b"\x00\x00" + b"T" * 15
    with pytest.raises(PacketDropped):
        parse_header(data, 0, 0)


# -- unsupported versions ---------------------------------------------------------


def test_unsupported_version_carries_the_connection_ids() -> None:
    data = b"\xc0" + (0x0A0A0A0A).to_bytes(4, "big") + b"\x05dcid!\x03scd" + bytes(1200)
    with pytest.raises(UnsupportedVersion) as info:
        parse_header(data, 0, 8)
    assert info.value.version == 0x0A0A0A0A
    assert info.value.dcid == b"dcid!"
    assert info.value.scid == b"scd"
    assert isinstance(info.value, PacketDropped)


def test_unsupported_version_allows_long_cids() -> None:
    # RFC 8999 §5.1: other versions may use connection IDs of up to 255 bytes.
    data = b"\x80" + (0xFF00001D).to_bytes(4, "big") + b"\xff" + b"x" * 255 + b"\x00"
    with pytest.raises(UnsupportedVersion) as info:
        parse_header(data, 0, 8)
    assert info.value.dcid == b"x" * 255
    assert info.value.scid == b""


def test_unsupported_version_with_truncated_cids_is_a_plain_drop() -> None:
    data = b"\xc0" + (0x0A0A0A0A).to_bytes(4, "big") + b"\x05dc"
    with pytest.raises(PacketDropped) as info:
        parse_header(data, 0, 8)
    assert not isinstance(info.value, UnsupportedVersion)


# -- malformed headers -------------------------------------------------------------


def _truncations(data: bytes) -> list[bytes]:
    return [data[:n] for n in range(len(data))]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("packet_type", LONG_TYPES)
def test_every_truncated_long_packet_drops(version: int, packet_type: PacketType) -> None:
    data, _ = long_packet(version, packet_type, token=b"tk", body=20)
    for cut in _truncations(data):
        with pytest.raises(PacketDropped):
            parse_header(cut, 0, 8)


def test_every_truncated_short_packet_drops() -> None:
    data = short_packet()
    # 1 byte first byte + 8 DCID + at least 17 (pn + AEAD tag) are needed.
    for cut in _truncations(data)[: 1 + 8 + 17]:
        with pytest.raises(PacketDropped):
            parse_header(cut, 0, 8)
    assert parse_header(data[: 1 + 8 + 17], 0, 8).end == 26


@pytest.mark.parametrize("version", VERSIONS)
def test_long_header_with_fixed_bit_clear_drops(version: int) -> None:
    data, _ = long_packet(version, PacketType.HANDSHAKE)
    with pytest.raises(PacketDropped):
        parse_header(bytes([data[0] & ~0x40]) + data[1:], 0, 8)


def test_short_header_with_fixed_bit_clear_drops() -> None:
    data = short_packet()
    with pytest.raises(PacketDropped):
        parse_header(bytes([data[0] & ~0x40]) + data[1:], 0, 8)


@pytest.mark.parametrize(("dcid", "scid"), [(b"c" * 21, SCID), (DCID, b"c" * 21)])
def test_long_header_cid_over_20_bytes_drops(dcid: bytes, scid: bytes) -> None:
    data, _ = long_packet(QUIC_V1, PacketType.HANDSHAKE, dcid=dcid, scid=scid)
    with pytest.raises(PacketDropped):
        parse_header(data, 0, 8)


def test_length_past_the_datagram_drops() -> None:
    data, _ = long_packet(QUIC_V1, PacketType.HANDSHAKE, body=40)
    with pytest.raises(PacketDropped):
        parse_header(data[:-1], 0, 8)


def test_length_too_small_for_packet_number_and_tag_drops() -> None:
    data, _ = long_packet(QUIC_V1, PacketType.HANDSHAKE, pn_length=1, body=15)
    with pytest.raises(PacketDropped):
        parse_header(data, 0, 8)
    data, _ = long_packet(QUIC_V1, PacketType.HANDSHAKE, pn_length=1, body=16)
    assert parse_header(data, 0, 8).end == len(data)


def test_initial_token_length_past_the_end_drops() -> None:
    data = b"\xc0" + QUIC_V1.to_bytes(4, "big") + b"\x00\x00" + b"\x80\x10\x00\x00" + bytes(40)
    with pytest.raises(PacketDropped):
        parse_header(data, 0, 0)


def test_parse_errors_are_never_buffer_read_errors_leaking_raw() -> None:
    # Truncation surfaces as PacketDropped (BufferReadError is one too, but
    # the header parser reports it under its own message).
    data, _ = long_packet(QUIC_V1, PacketType.INITIAL)
    with pytest.raises(PacketDropped) as info:
        parse_header(data[:8], 0, 8)
    assert not isinstance(info.value, BufferReadError)


# -- peek_destination_cid -----------------------------------------------------------


def test_peek_destination_cid() -> None:
    long_data, _ = long_packet(QUIC_V2, PacketType.INITIAL)
    assert peek_destination_cid(long_data, 4) == DCID
    assert peek_destination_cid(short_packet(), 8) == DCID
    assert peek_destination_cid(short_packet(), 3) == DCID[:3]
    assert peek_destination_cid(memoryview(short_packet()), 8) == DCID


@pytest.mark.parametrize(
    "data", [b"", b"\xc0\x00\x00\x00", b"\xc0\x00\x00\x00\x01\x08abc", b"\x40abc"]
)
def test_peek_destination_cid_truncated_drops(data: bytes) -> None:
    with pytest.raises(PacketDropped):
        peek_destination_cid(data, 8)
