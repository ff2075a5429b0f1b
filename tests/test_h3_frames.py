"""HTTP/3 frame codec, incremental frame reader, header validation and QPACK wrapper."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from test_h3_support import request_headers, response_headers

import ghostwire.http3.headers as headers_module
from ghostwire.http3.errors import (
    H3ErrorCode,
    H3ProtocolError,
    MessageError,
    describe_h3_error,
    is_reserved_error_code,
)
from ghostwire.http3.frame_reader import FrameComplete, FrameReader, FrameStart, Item
from ghostwire.http3.frames import (
    FrameType,
    encode_frame,
    encode_settings,
    encode_varint_frame,
    grease_value,
    is_reserved,
    parse_push_promise,
    parse_settings,
    parse_single_varint,
)
from ghostwire.http3.headers import (
    validate_push_promise,
    validate_request,
    validate_response,
    validate_trailers,
)
from ghostwire.http3.qpack import QpackDecoder, QpackEncoder, field_section_size
from ghostwire.quic.buffer import encode_varint


def _items(reader: FrameReader, limit: int | None = None) -> list[Item]:
    out = []
    while (item := reader.next_item(limit)) is not None:
        out.append(item)
    return out


def test_error_codes_match_rfc() -> None:
    codes = {code.name: int(code) for code in H3ErrorCode}
    assert codes["H3_NO_ERROR"] == 0x100
    assert codes["H3_MISSING_SETTINGS"] == 0x10A
    assert codes["H3_VERSION_FALLBACK"] == 0x110
    assert codes["QPACK_DECODER_STREAM_ERROR"] == 0x202
    assert len(codes) == 17 + 3 + 1  # RFC 9114 §8.1, RFC 9204 §6, RFC 9297
    assert is_reserved_error_code(0x21) and is_reserved_error_code(0x1F * 7 + 0x21)
    assert not is_reserved_error_code(0x100)
    assert describe_h3_error(0x105) == "H3_FRAME_UNEXPECTED"
    assert describe_h3_error(0x40) == "reserved(0x40)"


def test_grease_values() -> None:
    assert grease_value(0) == 0x21 and grease_value(1) == 0x40
    assert all(is_reserved(grease_value(n)) for n in range(100))
    assert not any(is_reserved(t) for t in FrameType)


def test_reader_whole_frames() -> None:
    reader = FrameReader()
    settings = encode_settings({1: 4096, 7: 16})
    reader.feed(
        encode_frame(FrameType.SETTINGS, settings) + encode_varint_frame(FrameType.GOAWAY, 8)
    )
    assert _items(reader) == [
        FrameStart(FrameType.SETTINGS, len(settings)),
        FrameComplete(FrameType.SETTINGS, settings),
        FrameStart(FrameType.GOAWAY, 1),
        FrameComplete(FrameType.GOAWAY, b"\x08"),
    ]
    assert reader.at_boundary


def test_reader_byte_by_byte() -> None:
    wire = (
        encode_frame(FrameType.HEADERS, b"hdrs")
        + encode_frame(FrameType.DATA, b"hello world")
        + encode_frame(grease_value(3), b"skipped")
        + encode_frame(FrameType.DATA, b"")
        + encode_frame(FrameType.HEADERS, b"trailers")
    )
    reader = FrameReader()
    items: list[Item] = []
    for byte in wire:
        reader.feed(bytes([byte]))
        items += _items(reader)
    data = b"".join(i for i in items if isinstance(i, bytes))
    assert data == b"hello world"
    frames = [i for i in items if not isinstance(i, bytes)]
    assert frames == [
        FrameStart(FrameType.HEADERS, 4),
        FrameComplete(FrameType.HEADERS, b"hdrs"),
        FrameStart(FrameType.DATA, 11),
        FrameStart(grease_value(3), 7),
        FrameStart(FrameType.DATA, 0),
        FrameStart(FrameType.HEADERS, 8),
        FrameComplete(FrameType.HEADERS, b"trailers"),
    ]
    assert reader.at_boundary


def test_reader_data_limit_and_want() -> None:
    reader = FrameReader()
    assert reader.want() == 16
    reader.feed(encode_varint(FrameType.DATA) + encode_varint(1000))
    assert reader.next_item() == FrameStart(FrameType.DATA, 1000)
    assert reader.in_data and reader.want() == 1000
    reader.feed(b"a" * 600)
    assert reader.next_item(0) is None  # no credit: nothing handed out
    assert reader.next_item(250) == b"a" * 250
    assert reader.next_item(None) == b"a" * 350
    assert reader.want() == 400
    assert not reader.at_boundary


def test_reader_skips_unknown_frames_in_bounded_reads() -> None:
    reader = FrameReader()
    reader.feed(encode_varint(0x2F) + encode_varint(1 << 30))
    assert reader.next_item() == FrameStart(0x2F, 1 << 30)
    assert reader.want() == 1 << 16


@pytest.mark.parametrize("frame_type", [0x02, 0x06, 0x08, 0x09])
def test_reader_rejects_http2_frames(frame_type: int) -> None:
    reader = FrameReader()
    reader.feed(encode_frame(frame_type, b""))
    with pytest.raises(H3ProtocolError) as info:
        reader.next_item()
    assert info.value.error_code == H3ErrorCode.H3_FRAME_UNEXPECTED


@pytest.mark.parametrize("length", [0, 9, 100])
def test_reader_rejects_bad_varint_frame_lengths(length: int) -> None:
    reader = FrameReader()
    reader.feed(encode_varint(FrameType.MAX_PUSH_ID) + encode_varint(length))
    with pytest.raises(H3ProtocolError) as info:
        reader.next_item()
    assert info.value.error_code == H3ErrorCode.H3_FRAME_ERROR


def test_settings_parsing() -> None:
    assert parse_settings(encode_settings({1: 0, 6: 1 << 40, 0x21: 5})) == {
        1: 0,
        6: 1 << 40,
        0x21: 5,
    }
    assert parse_settings(b"") == {}
    for bad, code in [
        (b"\x01\x00\x01\x00", H3ErrorCode.H3_SETTINGS_ERROR),
        (encode_settings({0: 1}), H3ErrorCode.H3_SETTINGS_ERROR),
        (encode_settings({4: 1}), H3ErrorCode.H3_SETTINGS_ERROR),
        (encode_settings({0x33: 7}), H3ErrorCode.H3_SETTINGS_ERROR),
        (b"\x01", H3ErrorCode.H3_FRAME_ERROR),
        (b"\x01\x80", H3ErrorCode.H3_FRAME_ERROR),
    ]:
        with pytest.raises(H3ProtocolError) as info:
            parse_settings(bad)
        assert info.value.error_code == code


def test_single_varint_and_push_promise_payloads() -> None:
    assert parse_single_varint(FrameType.GOAWAY, encode_varint(1 << 40)) == 1 << 40
    for bad in (b"", b"\x40", b"\x00\x00"):
        with pytest.raises(H3ProtocolError):
            parse_single_varint(FrameType.GOAWAY, bad)
    assert parse_push_promise(encode_varint(300) + b"block") == (300, b"block")
    with pytest.raises(H3ProtocolError):
        parse_push_promise(b"\xc0")


# -- header validation ----------------------------------------------------------------


def test_valid_sections() -> None:
    info = validate_request(request_headers(content_length="12", te="trailers"))
    assert info.pseudo[b":method"] == b"GET" and info.content_length == 12
    validate_request([(b":method", b"CONNECT"), (b":authority", b"example.com:443")])
    validate_request(
        [
            (b":method", b"CONNECT"),
            (b":protocol", b"websocket"),
            (b":scheme", b"https"),
            (b":authority", b"example.com"),
            (b":path", b"/chat"),
        ]
    )
    validate_request(
        [(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/"), (b"host", b"example.com")]
    )
    validate_request(
        [(b":method", b"OPTIONS"), (b":scheme", b"https"), (b":authority", b"a"), (b":path", b"*")]
    )
    validate_response(response_headers(204, content_length="0"))
    validate_trailers([(b"x-checksum", b"abc")])
    validate_push_promise(request_headers("/style.css"))


@pytest.mark.parametrize(
    "headers",
    [
        [(b":status", b"200"), (b":status", b"200")],
        [(b":status", b"2x0")],
        [(b":status", b"1000")],
        [(b":path", b"/")],
        [],
    ],
)
def test_invalid_responses(headers: list[tuple[bytes, bytes]]) -> None:
    with pytest.raises(MessageError):
        validate_response(headers)


def test_invalid_push_promise_and_trailers() -> None:
    with pytest.raises(MessageError):
        validate_push_promise(request_headers("/", "POST", content_length="5"))
    with pytest.raises(MessageError):
        validate_trailers([(b":path", b"/")])
    with pytest.raises(MessageError):
        validate_trailers([(b"", b"x")])


# -- QPACK wrapper --------------------------------------------------------------------


def _codec_pair(capacity: int = 4096, blocked: int = 16) -> tuple[QpackEncoder, QpackDecoder]:
    encoder = QpackEncoder()
    decoder = QpackDecoder(capacity, blocked)
    encoder.apply_settings(capacity, blocked)
    return encoder, decoder


def test_qpack_round_trip_and_acknowledgements() -> None:
    encoder, decoder = _codec_pair()
    headers = [*request_headers(), (b"x-long", b"v" * 100)]
    for stream_id in (0, 4, 8):
        block = encoder.encode(stream_id, headers)
        decoder.feed_encoder(bytes(encoder.pending))
        encoder.pending.clear()
        assert decoder.decode(stream_id, block) == headers
        encoder.feed_decoder(bytes(decoder.pending))
        decoder.pending.clear()
    assert encoder.encoder_bytes > 100


def test_qpack_blocked_stream_resumes() -> None:
    encoder, _decoder = _codec_pair()
    headers = [*request_headers(), (b"x-long", b"v" * 100)]
    encoder.encode(0, headers)  # the second use inserts
    encoder.pending.clear()
    decoder2 = QpackDecoder(4096, 16)
    block = encoder.encode(4, headers)
    assert decoder2.decode(4, block) is None
    assert decoder2.blocked == {4}
    assert decoder2.feed_encoder(bytes(encoder.pending)) == [4]
    assert decoder2.resume(4) == headers
    assert not decoder2.blocked
    assert decoder2.pending  # a Section Acknowledgment for the encoder


def test_qpack_errors_map_to_codes() -> None:
    decoder = QpackDecoder(4096, 16)
    with pytest.raises(H3ProtocolError) as info:
        decoder.decode(0, b"\xff\xff")
    assert info.value.error_code == H3ErrorCode.QPACK_DECOMPRESSION_FAILED
    with pytest.raises(H3ProtocolError) as info:
        decoder.feed_encoder(b"\x00")
    assert info.value.error_code == H3ErrorCode.QPACK_ENCODER_STREAM_ERROR
    encoder = QpackEncoder()
    encoder.apply_settings(4096, 16)
    with pytest.raises(H3ProtocolError) as info:
        encoder.feed_decoder(b"\x81")
    assert info.value.error_code == H3ErrorCode.QPACK_DECODER_STREAM_ERROR


def test_field_section_size() -> None:
    assert field_section_size([(b"ab", b"cde")]) == 37
    assert field_section_size([]) == 0


def _accepts(check: Callable[..., None], *args: bytes) -> bool:
    try:
        check(*args)
    except MessageError:
        return False
    return True


def _samples() -> list[bytes]:
    """Every byte alone, at each end of a valid field, and inside one."""
    out = [b""]
    for byte in range(256):
        b = bytes([byte])
        out += [b, b + b"ab", b"ab" + b, b"a" + b + b"b", b":" + b, b + b":"]
    return out


def test_fast_field_checks_accept_exactly_what_the_byte_checks_accept() -> None:
    """The one-regex checks of names and values (the fast path) agree with
    the byte-by-byte ones (which give the reason) on every byte in every
    position, so the fast path never lets a malformed field through."""
    h = headers_module
    for sample in _samples():
        assert _accepts(h._check_name, sample) == _accepts(h._name_error, sample), sample
        assert _accepts(h._check_value, b"x", sample) == _accepts(h._value_error, b"x", sample), (
            sample
        )
