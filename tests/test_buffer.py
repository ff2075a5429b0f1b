"""Variable-length integers and the byte Reader/Writer (RFC 9000 §16, App. A.1)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ghostwire.quic.buffer import (
    MAX_VARINT,
    Reader,
    Writer,
    decode_varint,
    encode_varint,
    varint_size,
)
from ghostwire.quic.errors import BufferReadError, PacketDropped

# RFC 9000 §16 / App. A.1 sample encodings: (wire bytes, value).
RFC_VARINTS: list[tuple[str, int]] = [
    ("c2197c5eff14e88c", 151288809941952652),
    ("9d7f3e7d", 494878333),
    ("7bbd", 15293),
    ("25", 37),
    ("4025", 37),  # a non-minimal encoding of 37 decodes just the same
]


@pytest.mark.parametrize(("wire", "value"), RFC_VARINTS)
def test_rfc_varint_examples_decode(wire: str, value: int) -> None:
    data = bytes.fromhex(wire)
    assert decode_varint(data) == (value, len(data))
    reader = Reader(data)
    assert reader.pull_varint() == value
    assert reader.eof()


@pytest.mark.parametrize(("wire", "value"), [v for v in RFC_VARINTS if v[0] != "4025"])
def test_rfc_varint_examples_encode_minimally(wire: str, value: int) -> None:
    assert encode_varint(value).hex() == wire
    assert varint_size(value) == len(wire) // 2


@pytest.mark.parametrize(
    ("value", "size"),
    [
        (0, 1),
        (63, 1),
        (64, 2),
        (16383, 2),
        (16384, 4),
        (2**30 - 1, 4),
        (2**30, 8),
        (MAX_VARINT, 8),
    ],
)
def test_varint_size_boundaries(value: int, size: int) -> None:
    assert varint_size(value) == size
    encoded = encode_varint(value)
    assert len(encoded) == size
    assert decode_varint(encoded) == (value, size)


@pytest.mark.parametrize("value", [-1, MAX_VARINT + 1, 2**64])
def test_varint_out_of_range_is_rejected(value: int) -> None:
    with pytest.raises(ValueError):
        encode_varint(value)
    with pytest.raises(ValueError):
        varint_size(value)
    with pytest.raises(ValueError):
        Writer().push_varint(value)


def test_decode_varint_at_offset() -> None:
    data = b"\xff" + bytes.fromhex("7bbd") + b"\x25"
    value, pos = decode_varint(data, 1)
    assert (value, pos) == (15293, 3)
    assert decode_varint(data, pos) == (37, 4)


@pytest.mark.parametrize("wire", ["", "40", "80ffff", "c0000000000000"])
def test_truncated_varint_raises_buffer_read_error(wire: str) -> None:
    data = bytes.fromhex(wire)
    with pytest.raises(BufferReadError):
        decode_varint(data)
    with pytest.raises(BufferReadError):
        Reader(data).pull_varint()


def test_buffer_read_error_is_a_dropped_packet() -> None:
    assert issubclass(BufferReadError, PacketDropped)


def test_reader_respects_end_bound() -> None:
    # The varint would fit in the data, but not before ``end``.
    data = bytes.fromhex("7bbd25")
    reader = Reader(data, 0, 1)
    with pytest.raises(BufferReadError):
        reader.pull_varint()
    assert reader.pos == 0
    reader = Reader(data, 1, 2)
    with pytest.raises(BufferReadError):
        reader.pull_uint16()
    assert reader.pull_uint8() == 0xBD
    assert reader.eof()
    with pytest.raises(BufferReadError):
        reader.pull_uint8()


def test_reader_fixed_width_integers() -> None:
    data = bytes(range(1, 19))
    reader = Reader(data)
    assert reader.pull_uint8() == 0x01
    assert reader.pull_uint16() == 0x0203
    assert reader.pull_uint24() == 0x040506
    assert reader.pull_uint32() == 0x0708090A
    assert reader.pull_uint64() == 0x0B0C0D0E0F101112
    assert reader.eof()
    assert reader.remaining() == 0


def test_reader_bytes_views_and_skip() -> None:
    data = bytearray(b"abcdefgh")
    reader = Reader(data, 1)
    view = reader.pull_view(2)
    assert isinstance(view, memoryview)
    assert bytes(view) == b"bc"
    reader.skip(1)
    assert reader.pull_bytes(2) == b"ef"
    assert reader.remaining() == 2
    assert reader.pull_rest() == b"gh"
    assert reader.pull_rest() == b""
    with pytest.raises(BufferReadError):
        reader.skip(1)
    with pytest.raises(BufferReadError):
        Reader(data).pull_bytes(-1)


def test_reader_works_on_memoryview() -> None:
    data = memoryview(b"\x00" + bytes.fromhex("c2197c5eff14e88c") + b"\x02hi")
    reader = Reader(data, 1)
    assert reader.pull_varint() == 151288809941952652
    assert reader.pull_uint8_prefixed() == b"hi"
    assert reader.eof()


@pytest.mark.parametrize(
    ("push", "pull", "prefix"),
    [
        ("push_uint8_prefixed", "pull_uint8_prefixed", b"\x03"),
        ("push_uint16_prefixed", "pull_uint16_prefixed", b"\x00\x03"),
        ("push_uint24_prefixed", "pull_uint24_prefixed", b"\x00\x00\x03"),
        ("push_varint_prefixed", "pull_varint_prefixed", b"\x03"),
    ],
)
def test_length_prefixed_round_trip(push: str, pull: str, prefix: bytes) -> None:
    writer = Writer()
    getattr(writer, push)(b"xyz")
    assert writer.getvalue() == prefix + b"xyz"
    reader = Reader(writer.getvalue())
    assert getattr(reader, pull)() == b"xyz"
    assert reader.eof()
    # One byte short: the prefix promises more than there is.
    with pytest.raises(BufferReadError):
        getattr(Reader(writer.getvalue()[:-1]), pull)()


def test_writer_fixed_width_integers() -> None:
    writer = Writer()
    writer.push_uint8(1)
    writer.push_uint16(0x0203)
    writer.push_uint24(0x040506)
    writer.push_uint32(0x0708090A)
    writer.push_uint64(0x0B0C0D0E0F101112)
    writer.push_bytes(memoryview(b"\x13"))
    assert writer.getvalue() == bytes(range(1, 20))
    assert len(writer) == 19


def test_writer_appends_to_given_buffer() -> None:
    buf = bytearray(b"head")
    writer = Writer(buf)
    writer.push_varint(15293)
    assert buf == b"head" + bytes.fromhex("7bbd")


def test_writer_length_prefixed_block() -> None:
    writer = Writer()
    with writer.length_prefixed(2):
        writer.push_bytes(b"hello")
    assert writer.getvalue() == b"\x00\x05hello"
    nested = Writer()
    with nested.length_prefixed(1):
        with nested.length_prefixed(2):
            nested.push_uint8(7)
    assert nested.getvalue() == b"\x03\x00\x01\x07"
    overflow = Writer()
    with pytest.raises(ValueError, match="do not fit"):
        with overflow.length_prefixed(1):
            overflow.push_bytes(bytes(256))


def test_sub_reader_must_be_consumed_exactly() -> None:
    reader = Reader(b"\x01\x02\x03\x04")
    with reader.sub_reader(2) as sub:
        assert sub.pull_uint16() == 0x0102
    assert reader.pull_uint16() == 0x0304
    reader = Reader(b"\x01\x02\x03")
    with pytest.raises(BufferReadError, match="trailing"), reader.sub_reader(2) as sub:
        sub.pull_uint8()
    with pytest.raises(BufferReadError):
        with Reader(b"\x01").sub_reader(2):
            pass  # pragma: no cover - the region does not exist


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=MAX_VARINT))
def test_varint_round_trip(value: int) -> None:
    encoded = encode_varint(value)
    assert len(encoded) == varint_size(value)
    assert decode_varint(encoded) == (value, len(encoded))
    # Decoding is prefix-based: trailing bytes are left alone.
    assert decode_varint(encoded + b"\xff\xff") == (value, len(encoded))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=12))
def test_random_varint_bytes_only_raise_buffer_read_error(data: bytes) -> None:
    try:
        value, pos = decode_varint(data)
    except BufferReadError:
        assert not data or len(data) < 1 << (data[0] >> 6)
    else:
        assert 0 <= value <= MAX_VARINT
        assert pos == 1 << (data[0] >> 6)
        # Re-encoding gives the minimal form of the same value.
        assert decode_varint(encode_varint(value))[0] == value
