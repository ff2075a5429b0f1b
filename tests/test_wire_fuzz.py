"""Hypothesis round trips and fuzzing for the QUIC wire codecs.

Round trips: every frame class and the transport parameters survive
encode -> decode. Fuzzing: arbitrary or mutated bytes fed to the header,
frame and transport parameter parsers only ever raise the library's own
errors -- PacketDropped (headers) or QuicProtocolError (frames, parameters).
Anything else escaping would be a bug in ghostwire.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ghostwire.quic.buffer import MAX_VARINT, Reader, encode_varint
from ghostwire.quic.errors import (
    FrameEncodingError,
    PacketDropped,
    QuicProtocolError,
    TransportErrorCode,
)
from ghostwire.quic.frames import (
    AckFrame,
    ConnectionCloseFrame,
    CryptoFrame,
    DataBlockedFrame,
    DatagramFrame,
    Frame,
    FrameType,
    HandshakeDoneFrame,
    MaxDataFrame,
    MaxStreamDataFrame,
    MaxStreamsFrame,
    NewConnectionIdFrame,
    NewTokenFrame,
    PaddingFrame,
    PathChallengeFrame,
    PathResponseFrame,
    PingFrame,
    ResetStreamFrame,
    RetireConnectionIdFrame,
    StopSendingFrame,
    StreamDataBlockedFrame,
    StreamFrame,
    StreamsBlockedFrame,
    encode_frame,
    parse_frame,
    parse_frames,
)
from ghostwire.quic.packet import (
    QUIC_V1,
    QUIC_V2,
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
from ghostwire.quic.transport_params import (
    ParamId,
    PreferredAddress,
    TransportParameters,
    VersionInformation,
    decode_transport_parameters,
    encode_transport_parameters,
)

ROUND_TRIP = settings(max_examples=150, deadline=None)
FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

MAX_STREAMS = 1 << 60

# Varints biased to the encoding-size boundaries, where codecs break.
_BOUNDARIES = [0, 1, 63, 64, 16383, 16384, 2**30 - 1, 2**30, MAX_VARINT - 1, MAX_VARINT]
varints = st.one_of(
    st.sampled_from(_BOUNDARIES),
    st.integers(min_value=0, max_value=2**14),
    st.integers(min_value=0, max_value=MAX_VARINT),
)
small_bytes = st.binary(max_size=48)


def limited(maximum: int) -> st.SearchStrategy[int]:
    """0..maximum, with the edges drawn often."""
    edges = sorted({n for n in (0, 1, maximum - 1, maximum) if 0 <= n <= maximum})
    return st.one_of(st.sampled_from(edges), st.integers(0, maximum))


@st.composite
def ack_frames(draw: st.DrawFn) -> AckFrame:
    largest = draw(varints)
    smallest = largest - draw(st.integers(0, min(largest, 1000)))
    ranges = [(smallest, largest)]
    for _ in range(draw(st.integers(0, 6))):
        if smallest < 2:
            break
        # RFC 9000 §19.3.1: the next range's top is at least 2 below ``smallest``.
        top = smallest - 2 - draw(st.integers(0, min(smallest - 2, 500)))
        bottom = top - draw(st.integers(0, min(top, 500)))
        ranges.append((bottom, top))
        smallest = bottom
    ecn = draw(st.none() | st.tuples(varints, varints, varints))
    return AckFrame(tuple(ranges), draw(varints), ecn)


@st.composite
def offset_and_data(draw: st.DrawFn) -> tuple[int, bytes]:
    data = draw(small_bytes)
    offset = draw(limited(MAX_VARINT - len(data)))
    return offset, data


@st.composite
def stream_frames(draw: st.DrawFn) -> StreamFrame:
    offset, data = draw(offset_and_data())
    return StreamFrame(draw(varints), offset, data, draw(st.booleans()))


@st.composite
def crypto_frames(draw: st.DrawFn) -> CryptoFrame:
    offset, data = draw(offset_and_data())
    return CryptoFrame(offset, data)


@st.composite
def new_connection_id_frames(draw: st.DrawFn) -> NewConnectionIdFrame:
    sequence = draw(varints)
    return NewConnectionIdFrame(
        sequence,
        draw(limited(sequence)),
        draw(st.binary(min_size=1, max_size=20)),
        draw(st.binary(min_size=16, max_size=16)),
    )


# Frames that may sit anywhere in a payload (their encoding is self-delimiting).
delimited_frames: st.SearchStrategy[Frame] = st.one_of(
    st.just(PingFrame()),
    st.just(HandshakeDoneFrame()),
    ack_frames(),
    st.builds(ResetStreamFrame, varints, varints, varints),
    st.builds(StopSendingFrame, varints, varints),
    crypto_frames(),
    st.builds(NewTokenFrame, st.binary(min_size=1, max_size=64)),
    stream_frames(),
    st.builds(MaxDataFrame, varints),
    st.builds(MaxStreamDataFrame, varints, varints),
    st.builds(MaxStreamsFrame, st.booleans(), limited(MAX_STREAMS)),
    st.builds(DataBlockedFrame, varints),
    st.builds(StreamDataBlockedFrame, varints, varints),
    st.builds(StreamsBlockedFrame, st.booleans(), limited(MAX_STREAMS)),
    new_connection_id_frames(),
    st.builds(RetireConnectionIdFrame, varints),
    st.builds(PathChallengeFrame, st.binary(min_size=8, max_size=8)),
    st.builds(PathResponseFrame, st.binary(min_size=8, max_size=8)),
    st.builds(ConnectionCloseFrame, varints, st.none() | varints, small_bytes),
    st.builds(DatagramFrame, small_bytes, st.just(True)),
)
# Frames that swallow what follows (PADDING merges runs, DATAGRAM 0x30 runs
# to the end), so they only round-trip alone or last.
final_frames: st.SearchStrategy[Frame] = st.one_of(
    st.builds(PaddingFrame, st.integers(min_value=1, max_value=64)),
    st.builds(DatagramFrame, small_bytes, st.just(False)),
)
any_frame = st.one_of(delimited_frames, final_frames)


def _check_error_type(error: QuicProtocolError) -> None:
    assert isinstance(error, FrameEncodingError)
    assert error.error_code == TransportErrorCode.FRAME_ENCODING_ERROR


# -- frame round trips ----------------------------------------------------------------


@ROUND_TRIP
@given(any_frame)
def test_frame_round_trip(frame: Frame) -> None:
    wire = encode_frame(frame)
    reader = Reader(wire)
    assert parse_frame(reader) == frame
    assert reader.eof()


@ROUND_TRIP
@given(st.lists(delimited_frames, max_size=8), st.none() | final_frames)
def test_payload_round_trip(frames: list[Frame], last: Frame | None) -> None:
    expected = [*frames, last] if last is not None else frames
    payload = b"".join(encode_frame(f) for f in expected)
    assert list(parse_frames(payload)) == expected


@ROUND_TRIP
@given(any_frame, st.data())
def test_truncated_frame_fails_cleanly(frame: Frame, data: st.DataObject) -> None:
    wire = encode_frame(frame)
    cut = data.draw(st.integers(min_value=0, max_value=len(wire) - 1))
    try:
        parsed = list(parse_frames(wire[:cut]))
    except QuicProtocolError as error:
        _check_error_type(error)
        assert error.frame_type in (None, frame.frame_type) or isinstance(frame, StreamFrame)
    else:
        # Only frames that run to the end of the payload survive a cut.
        assert isinstance(frame, PaddingFrame | DatagramFrame) or cut == 0
        assert parsed == [] or type(parsed[0]) is type(frame)


# -- frame fuzzing ------------------------------------------------------------------

_KNOWN_TYPES = [int(t) for t in FrameType] + list(range(0x08, 0x10))


@FUZZ
@given(st.binary(max_size=64))
def test_random_payload_only_raises_frame_errors(payload: bytes) -> None:
    _parse_and_reencode(payload)


@FUZZ
@given(
    st.sampled_from(_KNOWN_TYPES),
    st.lists(st.sampled_from(_BOUNDARIES) | varints, max_size=6),
    st.binary(max_size=40),
)
def test_known_type_with_random_body_only_raises_frame_errors(
    frame_type: int, fields: list[int], tail: bytes
) -> None:
    # Plausible varint fields reach deeper into each parser than raw bytes do.
    payload = encode_varint(frame_type) + b"".join(encode_varint(f) for f in fields) + tail
    _parse_and_reencode(payload)


def _parse_and_reencode(payload: bytes) -> None:
    try:
        frames = list(parse_frames(payload))
    except QuicProtocolError as error:
        _check_error_type(error)
        return
    # Whatever parsed must be a frame the encoder can write back, identically parsed.
    for frame in frames:
        wire = encode_frame(frame)
        assert list(parse_frames(wire)) == [frame]


# -- packet headers -----------------------------------------------------------------

cids = st.binary(max_size=20)


@st.composite
def long_packets(draw: st.DrawFn) -> tuple[bytes, int, PacketType, bytes, bytes, bytes]:
    version = draw(st.sampled_from([QUIC_V1, QUIC_V2]))
    packet_type = draw(
        st.sampled_from([PacketType.INITIAL, PacketType.ZERO_RTT, PacketType.HANDSHAKE])
    )
    dcid, scid = draw(cids), draw(cids)
    token = draw(small_bytes) if packet_type is PacketType.INITIAL else b""
    pn_length = draw(st.integers(1, 4))
    body = draw(st.binary(min_size=20, max_size=80))
    buf = bytearray()
    encode_long_header(
        buf,
        version=version,
        packet_type=packet_type,
        dcid=dcid,
        scid=scid,
        token=token,
        pn_length=pn_length,
        payload_length=pn_length + len(body),
    )
    buf += bytes(pn_length) + body
    return bytes(buf), version, packet_type, dcid, scid, token


@ROUND_TRIP
@given(long_packets(), st.binary(max_size=30))
def test_long_header_round_trip(
    packet: tuple[bytes, int, PacketType, bytes, bytes, bytes], trailer: bytes
) -> None:
    data, version, packet_type, dcid, scid, token = packet
    header = parse_header(data + trailer, 0, 8)
    assert (header.version, header.packet_type) == (version, packet_type)
    assert (header.dcid, header.scid, header.token) == (dcid, scid, token)
    assert header.end == len(data)
    assert header.first_byte == data[0]
    assert peek_destination_cid(data, 8) == dcid


@ROUND_TRIP
@given(cids, st.integers(1, 4), st.integers(0, 1), st.binary(min_size=20, max_size=60))
def test_short_header_round_trip(dcid: bytes, pn_length: int, key_phase: int, body: bytes) -> None:
    buf = bytearray()
    pn_offset = encode_short_header(buf, dcid=dcid, pn_length=pn_length, key_phase=key_phase)
    data = bytes(buf) + body
    header = parse_header(data, 0, len(dcid))
    assert (header.dcid, header.pn_offset, header.end) == (dcid, pn_offset, len(data))
    assert header.first_byte & 0x07 == (key_phase << 2) | (pn_length - 1)


@ROUND_TRIP
@given(
    st.binary(max_size=255),
    st.binary(max_size=255),
    st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=10),
    st.integers(0, 255),
)
def test_version_negotiation_round_trip(
    dcid: bytes, scid: bytes, versions: list[int], random_bits: int
) -> None:
    data = encode_version_negotiation(
        dcid=dcid, scid=scid, versions=versions, first_byte_random=random_bits
    )
    header = parse_header(data, 0, 8)
    assert header.packet_type is PacketType.VERSION_NEGOTIATION
    assert (header.dcid, header.scid) == (dcid, scid)
    assert header.supported_versions == tuple(versions)


@ROUND_TRIP
@given(st.integers(0, 2**40), st.integers(1, 2**31 - 1))
def test_packet_number_round_trip(largest_acked: int, ahead: int) -> None:
    pn = largest_acked + ahead
    truncated, length = encode_packet_number(pn, largest_acked)
    assert truncated < 1 << (8 * length)
    assert 2 * ahead < 1 << (8 * length)  # more than twice the unacknowledged range
    assert decode_packet_number(truncated, 8 * length, largest_acked + 1) == pn


@FUZZ
@given(st.binary(max_size=80), st.integers(0, 20))
def test_random_datagram_only_raises_packet_dropped(data: bytes, cid_length: int) -> None:
    _walk(data, cid_length)


@FUZZ
@given(
    st.integers(0, 255),
    st.sampled_from([QUIC_V1, QUIC_V2, 0, 0x0A0A0A0A]) | st.integers(0, 2**32 - 1),
    st.binary(max_size=80),
)
def test_random_long_header_only_raises_packet_dropped(
    first_byte: int, version: int, rest: bytes
) -> None:
    data = bytes([first_byte | 0x80]) + version.to_bytes(4, "big") + rest
    _walk(data, 8)


@FUZZ
@given(long_packets(), st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=4))
def test_mutated_long_packet_only_raises_packet_dropped(
    packet: tuple[bytes, int, PacketType, bytes, bytes, bytes], edits: list[tuple[int, int]]
) -> None:
    data = bytearray(packet[0])
    for pos, value in edits:
        if pos < len(data):
            data[pos] = value
    _walk(bytes(data) * 2, 8)


def _walk(data: bytes, cid_length: int) -> None:
    """Walk a datagram as the connection does; only PacketDropped may escape."""
    offset = 0
    while offset < len(data):
        try:
            header = parse_header(data, offset, cid_length)
        except UnsupportedVersion as error:
            assert isinstance(error.dcid, bytes)
            assert isinstance(error.scid, bytes)
            break
        except PacketDropped:
            break
        assert offset < header.end <= len(data)
        if header.packet_type not in (PacketType.RETRY, PacketType.VERSION_NEGOTIATION):
            assert offset < header.pn_offset and header.pn_offset + 17 <= header.end
        offset = header.end
    try:
        peek_destination_cid(data, cid_length)
    except PacketDropped:
        pass


# -- transport parameters -------------------------------------------------------------


@st.composite
def transport_parameters(draw: st.DrawFn) -> TransportParameters:
    def maybe(strategy: st.SearchStrategy[object]) -> object:
        return draw(st.none() | strategy)

    preferred = maybe(
        st.builds(
            PreferredAddress,
            st.binary(min_size=4, max_size=4),
            st.integers(0, 65535),
            st.binary(min_size=16, max_size=16),
            st.integers(0, 65535),
            st.binary(min_size=1, max_size=20),
            st.binary(min_size=16, max_size=16),
        )
    )
    version_info = maybe(
        st.builds(
            VersionInformation,
            st.integers(1, 2**32 - 1),
            st.lists(st.integers(1, 2**32 - 1), max_size=4).map(tuple),
        )
    )
    grease_ids = st.integers(0, 2**20).map(lambda n: 31 * n + 27)
    return TransportParameters(
        original_destination_connection_id=maybe(cids),  # type: ignore[arg-type]
        max_idle_timeout=draw(varints),
        stateless_reset_token=maybe(st.binary(min_size=16, max_size=16)),  # type: ignore[arg-type]
        max_udp_payload_size=draw(st.integers(1200, MAX_VARINT)),
        initial_max_data=draw(varints),
        initial_max_stream_data_bidi_local=draw(varints),
        initial_max_stream_data_bidi_remote=draw(varints),
        initial_max_stream_data_uni=draw(varints),
        initial_max_streams_bidi=draw(limited(MAX_STREAMS)),
        initial_max_streams_uni=draw(limited(MAX_STREAMS)),
        ack_delay_exponent=draw(st.integers(0, 20)),
        max_ack_delay=draw(st.integers(0, 2**14 - 1)),
        disable_active_migration=draw(st.booleans()),
        preferred_address=preferred,  # type: ignore[arg-type]
        active_connection_id_limit=draw(st.integers(2, MAX_VARINT)),
        initial_source_connection_id=maybe(cids),  # type: ignore[arg-type]
        retry_source_connection_id=maybe(cids),  # type: ignore[arg-type]
        version_information=version_info,  # type: ignore[arg-type]
        max_datagram_frame_size=maybe(varints),  # type: ignore[arg-type]
        grease_quic_bit=draw(st.booleans()),
        unknown=draw(st.dictionaries(grease_ids, small_bytes, max_size=3)),
    )


@ROUND_TRIP
@given(transport_parameters())
def test_transport_parameters_round_trip(params: TransportParameters) -> None:
    decoded = decode_transport_parameters(encode_transport_parameters(params), from_server=True)
    assert decoded == params
    assert decoded.unknown == params.unknown


def _decode_params(data: bytes, from_server: bool) -> None:
    try:
        params = decode_transport_parameters(data, from_server=from_server)
    except QuicProtocolError as error:
        assert error.error_code == TransportErrorCode.TRANSPORT_PARAMETER_ERROR
        return
    # Anything accepted is valid and survives a re-encode.
    assert params.max_udp_payload_size >= 1200
    assert params.ack_delay_exponent <= 20
    assert params.max_ack_delay < 2**14
    assert params.active_connection_id_limit >= 2
    if not from_server:
        assert params.stateless_reset_token is None
        assert params.preferred_address is None
    again = decode_transport_parameters(encode_transport_parameters(params), from_server=True)
    assert again == params


@FUZZ
@given(st.binary(max_size=80), st.booleans())
def test_random_transport_parameters_only_raise_protocol_errors(
    data: bytes, from_server: bool
) -> None:
    _decode_params(data, from_server)


_PARAM_IDS = [int(p) for p in ParamId] + [27, 58, 0x3F, 0x4000]


@FUZZ
@given(
    st.lists(
        st.tuples(
            st.sampled_from(_PARAM_IDS),
            st.one_of(
                varints.map(encode_varint),
                st.binary(max_size=50),
                st.binary(min_size=16, max_size=16),
            ),
        ),
        max_size=8,
    ),
    st.booleans(),
)
def test_structured_transport_parameters_only_raise_protocol_errors(
    entries: list[tuple[int, bytes]], from_server: bool
) -> None:
    data = b"".join(encode_varint(i) + encode_varint(len(v)) + v for i, v in entries)
    _decode_params(data, from_server)
