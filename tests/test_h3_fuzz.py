"""Property-based fuzzing: random input only ever produces our HTTP/3 errors."""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_h3_support import (
    H3Pair,
    data_frame,
    headers_frame,
    open_raw_h3,
    open_uni,
    request_headers,
    settings_frame,
)

from ghostwire.http3.errors import H3ErrorCode, H3ProtocolError, MessageError
from ghostwire.http3.frame_reader import FrameReader, FrameStart
from ghostwire.http3.frames import StreamType, encode_frame, grease_value, parse_settings
from ghostwire.http3.headers import validate_request, validate_response, validate_trailers
from ghostwire.quic.buffer import encode_varint

H3_CODES = frozenset(int(code) for code in H3ErrorCode)
FAST = settings(max_examples=300, deadline=None)
SLOW = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(
    data=st.binary(max_size=400),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=8),
    limit=st.one_of(st.none(), st.integers(min_value=0, max_value=64)),
)
def test_frame_reader_only_raises_h3_errors(
    data: bytes, cuts: list[int], limit: int | None
) -> None:
    reader = FrameReader()
    bounds = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
    handed_out = 0
    try:
        for start, end in itertools.pairwise(bounds):
            reader.feed(data[start:end])
            while (item := reader.next_item(limit)) is not None:
                if isinstance(item, bytes):
                    assert limit is None or len(item) <= limit
                    assert limit != 0
                    handed_out += len(item)
                elif isinstance(item, FrameStart):
                    assert item.length >= 0
                if limit == 0 and reader.in_data:
                    break
                assert reader.want() >= 1
    except H3ProtocolError as exc:
        assert exc.error_code in H3_CODES
    assert handed_out <= len(data)


@FAST
@given(st.binary(max_size=200))
def test_settings_parser_only_raises_h3_errors(payload: bytes) -> None:
    try:
        settings_ = parse_settings(payload)
    except H3ProtocolError as exc:
        assert exc.error_code in (H3ErrorCode.H3_FRAME_ERROR, H3ErrorCode.H3_SETTINGS_ERROR)
    else:
        assert all(key not in (0, 2, 3, 4, 5) for key in settings_)


names = st.one_of(
    st.sampled_from([b":method", b":path", b":scheme", b":authority", b":status", b"host", b"te"]),
    st.binary(min_size=0, max_size=12),
)
fields = st.lists(st.tuples(names, st.binary(max_size=12)), max_size=8)


@FAST
@given(fields)
def test_header_validation_only_raises_message_errors(headers: list[tuple[bytes, bytes]]) -> None:
    for validate in (validate_request, validate_response, validate_trailers):
        try:
            validate(headers)
        except MessageError:
            pass


# -- whole connections ------------------------------------------------------------------

frame_pieces = st.one_of(
    st.binary(max_size=40),
    st.builds(lambda d: data_frame(d), st.binary(max_size=30)),
    st.just(headers_frame(request_headers())),
    st.just(headers_frame([(b"x-trailer", b"1")])),
    st.builds(lambda t, p: encode_frame(t, p), st.integers(0, 0x40), st.binary(max_size=20)),
    st.builds(lambda n: encode_frame(grease_value(n), b"g"), st.integers(0, 50)),
    st.builds(lambda v: encode_varint(v), st.integers(0, (1 << 62) - 1)),
)


def _check_outcome(h: H3Pair, stream_id: int | None = None) -> None:
    closed = h.terminated("client")
    if closed is not None:
        assert closed.by_peer and closed.is_application
        assert closed.error_code in H3_CODES, hex(closed.error_code)
    if stream_id is not None:
        assert h.stream_codes("client", stream_id) <= H3_CODES


@SLOW
@given(st.lists(frame_pieces, min_size=1, max_size=8), st.booleans())
def test_random_request_streams_end_in_h3_errors(pieces: list[bytes], fin: bool) -> None:
    h = H3Pair(raw_client=True)
    open_raw_h3(h.pair.client)
    stream_id = h.pair.client.open_stream(True)
    h.pair.client.send_stream_data(stream_id, b"".join(pieces), fin)
    h.run()  # nothing may raise out of the HTTP/3 layer
    _check_outcome(h, stream_id)


@SLOW
@given(st.lists(frame_pieces, max_size=6), st.binary(max_size=30), st.binary(max_size=30))
def test_random_control_and_qpack_streams_end_in_h3_errors(
    pieces: list[bytes], encoder_data: bytes, decoder_data: bytes
) -> None:
    h = H3Pair(raw_client=True)
    quic = h.pair.client
    open_uni(quic, StreamType.CONTROL, settings_frame() + b"".join(pieces))
    open_uni(quic, StreamType.QPACK_ENCODER, encoder_data)
    open_uni(quic, StreamType.QPACK_DECODER, decoder_data)
    h.run()
    _check_outcome(h)
