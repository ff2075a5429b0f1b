"""The RPC codec and framing, without a network: lossless round trips
(hypothesis), the big-integer extension's bytes, and malformed input."""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ghostwire.rpc as rpc
from ghostwire.errors import GhostwireError
from ghostwire.rpc.codec import (
    BIGINT_EXT,
    MAX_KEYS_PER_HASH,
    CodecError,
    decode,
    encode,
    encode_bigint,
)
from ghostwire.rpc.framing import (
    HEADERS,
    MESSAGE,
    TRAILERS,
    FrameDecoder,
    FramingError,
    MessageTooLarge,
    encode_frame,
)
from ghostwire.rpc.h3_json import decode_json, encode_json
from ghostwire.rpc.wire import (
    encode_request,
    encode_trailer,
    parse_arguments,
    parse_header,
    parse_trailer,
)

UINT256 = st.integers(min_value=0, max_value=2**256 - 1)
ANY_INT = st.integers(min_value=-(2**300), max_value=2**300)
SCALARS = st.none() | st.booleans() | ANY_INT | st.floats(allow_nan=False) | st.text() | st.binary()
VALUES = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.text() | st.binary() | ANY_INT, children, max_size=5)
    ),
    max_leaves=30,
)


def same(a: Any, b: Any) -> bool:
    """Equal, and of the same types all the way down (True is not 1, b'' is not '')."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


@given(UINT256)
def test_uint256_round_trip(value: int) -> None:
    assert same(decode(encode(value)), value)


@given(ANY_INT)
def test_integers_of_any_size_and_sign_round_trip(value: int) -> None:
    assert same(decode(encode(value)), value)


@given(st.binary(max_size=4096))
def test_bytes_round_trip(value: bytes) -> None:
    assert same(decode(encode(value)), value)


@given(VALUES)
def test_nested_values_round_trip(value: Any) -> None:
    assert same(decode(encode(value)), value)


def test_floats_keep_their_bits() -> None:
    for value in (0.1, -0.0, math.inf, -math.inf, 5e-324, 1.7976931348623157e308):
        decoded = decode(encode(value))
        assert type(decoded) is float and math.copysign(1, decoded) == math.copysign(1, value)
        assert decoded == value
    assert math.isnan(decode(encode(math.nan)))


def test_bigint_extension_bytes_are_as_documented() -> None:
    # ext 8 (0xc7), length 9, type 1, two's complement big-endian
    assert encode(2**64) == bytes.fromhex("c7 09 01 01 0000000000000000")
    assert encode(-(2**63) - 1) == bytes.fromhex("c7 09 01 ff 7fffffffffffffff")
    assert encode(2**256 - 1)[:3] == bytes.fromhex("c7 21 01")  # 33 bytes: a sign byte
    assert encode_bigint(-(2**255)) == b"\x80" + b"\x00" * 31
    # the 64-bit range stays native msgpack
    assert encode(2**64 - 1) == b"\xcf" + b"\xff" * 8
    assert encode(-(2**63)) == b"\xd3\x80" + b"\x00" * 7
    assert BIGINT_EXT == 1


@pytest.mark.parametrize(
    "data",
    [
        b"\xc1",  # never-used byte
        b"\x92\x01",  # array of 2 with one element
        b"\x01\x02",  # trailing data
        b"\xd4\x05\x00",  # unknown extension type
        b"\xc7\x00\x01",  # empty big integer
        b"\xa2\xff\xfe",  # invalid UTF-8 in a str
        b"\x81\x91\x01\x01",  # a list as a map key
        b"",
    ],
)
def test_malformed_msgpack_is_a_typed_error(data: bytes) -> None:
    with pytest.raises(CodecError) as info:
        decode(data)
    assert info.value.status is rpc.Status.INVALID_ARGUMENT
    assert isinstance(info.value, GhostwireError)


def test_unencodable_values_are_a_typed_error() -> None:
    with pytest.raises(CodecError):
        encode({1, 2})
    with pytest.raises(CodecError):
        encode(object())
    assert decode(encode([1, 2])) == [1, 2]  # the packer still works afterwards


# -- framing -----------------------------------------------------------------


def test_frames_split_at_every_byte_boundary() -> None:
    stream = (
        encode_frame(HEADERS, b"head")
        + encode_frame(MESSAGE, b"")
        + encode_frame(TRAILERS, b"x" * 300)
    )
    decoder = FrameDecoder()
    frames = []
    for i in range(len(stream)):
        decoder.feed(stream[i : i + 1])
        while (frame := decoder.next_frame()) is not None:
            frames.append(frame)
    decoder.check_eof()
    assert frames == [(HEADERS, b"head"), (MESSAGE, b""), (TRAILERS, b"x" * 300)]


@settings(max_examples=200, deadline=None)
@given(
    payloads=st.lists(
        st.tuples(st.sampled_from([HEADERS, MESSAGE, TRAILERS]), st.binary(max_size=70)), max_size=6
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=500), max_size=8),
    kinds=st.lists(st.sampled_from([bytes, bytearray, memoryview]), min_size=9, max_size=9),
    eager=st.booleans(),
)
def test_frames_survive_any_chunking(
    payloads: list[tuple[int, bytes]], cuts: list[int], kinds: list[type], eager: bool
) -> None:
    """Chunks of any size and buffer type, with frames taken between feeds or
    only at the end: the decoder gives back exactly the frames sent."""
    stream = b"".join(encode_frame(t, p) for t, p in payloads)
    bounds = sorted({0, len(stream), *(c for c in cuts if c < len(stream))})
    decoder = FrameDecoder()
    frames = []
    for i, (a, b) in enumerate(itertools.pairwise(bounds)):
        decoder.feed(kinds[i % len(kinds)](stream[a:b]))
        while eager and (frame := decoder.next_frame()) is not None:
            frames.append(frame)
    while (frame := decoder.next_frame()) is not None:
        frames.append(frame)
    decoder.check_eof()
    assert frames == payloads
    assert all(type(payload) is bytes for _, payload in frames)


def test_unknown_frame_type_is_malformed() -> None:
    decoder = FrameDecoder()
    decoder.feed(b"\x07\x00\x00\x00\x00")
    with pytest.raises(FramingError) as info:
        decoder.next_frame()
    assert info.value.status is rpc.Status.INVALID_ARGUMENT


def test_oversized_frame_is_refused_at_its_prefix() -> None:
    decoder = FrameDecoder(max_message_size=100)
    decoder.feed(encode_frame(MESSAGE, b"x" * 100))
    assert decoder.next_frame() == (MESSAGE, b"x" * 100)
    decoder.feed(b"\x00\x00\x00\x00\x65")  # 101 bytes announced, none sent yet
    with pytest.raises(MessageTooLarge) as info:
        decoder.next_frame()
    assert info.value.status is rpc.Status.RESOURCE_EXHAUSTED
    assert (info.value.size, info.value.limit) == (101, 100)


def test_truncated_stream_is_malformed() -> None:
    decoder = FrameDecoder()
    decoder.feed(encode_frame(MESSAGE, b"abc")[:-1])
    assert decoder.next_frame() is None
    with pytest.raises(FramingError):
        decoder.check_eof()


# -- protocol messages ---------------------------------------------------------


def _frames(data: bytes) -> list[tuple[int, bytes]]:
    decoder = FrameDecoder()
    decoder.feed(data)
    out = []
    while (frame := decoder.next_frame()) is not None:
        out.append(frame)
    decoder.check_eof()
    return out


def test_request_layout() -> None:
    data = encode_request(
        "zvm.get_balance", [b"\x01"], {"n": 2**70}, timeout=1.5, metadata={"k": b"v"}
    )
    (t1, head), (t2, body) = _frames(data)
    assert (t1, t2) == (HEADERS, MESSAGE)
    header = parse_header(head)
    assert (header.method, header.kind, header.timeout) == ("zvm.get_balance", "call", 1.5)
    assert header.metadata == {"k": b"v"}
    assert decode(head) == {"method": "zvm.get_balance", "timeout": 1.5, "metadata": {"k": b"v"}}
    assert parse_arguments(body) == ([b"\x01"], {"n": 2**70})


@pytest.mark.parametrize(
    "header",
    [
        [],
        {},
        {"method": 5},
        {"method": "a.b", "kind": "poll"},
        {"method": "a.b", "timeout": -1},
        {"method": "a.b", "timeout": "1s"},
        {"method": "a.b", "metadata": {"k": 1}},
    ],
)
def test_bad_headers_are_invalid_argument(header: Any) -> None:
    with pytest.raises(rpc.RpcError) as info:
        parse_header(encode(header))
    assert info.value.status is rpc.Status.INVALID_ARGUMENT


@pytest.mark.parametrize("args", [{}, [[], {}, 1], [{}, []], [[], {1: 2}]])
def test_bad_arguments_are_invalid_argument(args: Any) -> None:
    with pytest.raises(rpc.RpcError) as info:
        parse_arguments(encode(args))
    assert info.value.status is rpc.Status.INVALID_ARGUMENT


@pytest.mark.parametrize("status", list(rpc.Status))
def test_trailer_round_trip_for_every_status(status: rpc.Status) -> None:
    error = None if status is rpc.Status.OK else rpc.RpcError(status, "why", {"n": 2**100})
    ((frame_type, payload),) = _frames(encode_trailer(error))
    assert frame_type == TRAILERS
    parsed = parse_trailer(payload)
    if error is None:
        assert parsed is None
    else:
        assert parsed is not None
        assert (parsed.status, parsed.message, parsed.details) == (status, "why", {"n": 2**100})


def test_unknown_status_code_reads_as_unknown() -> None:
    parsed = parse_trailer(encode({"status": 99, "message": "?"}))
    assert parsed is not None and parsed.status is rpc.Status.UNKNOWN


def test_status_numbers_are_grpcs() -> None:
    assert [s.value for s in rpc.Status] == list(range(17))
    assert int(rpc.Status.UNAUTHENTICATED) == 16 and int(rpc.Status.DEADLINE_EXCEEDED) == 4
    error = rpc.RpcError(rpc.Status.NOT_FOUND, "no such account", details=[1])
    assert isinstance(error, GhostwireError)
    assert str(error) == "NOT_FOUND: no such account"


@given(st.integers(min_value=-(2**300), max_value=2**300))
def test_bigint_encoding_is_minimal(value: int) -> None:
    encoded = encode_bigint(value)
    assert int.from_bytes(encoded, "big", signed=True) == value
    if len(encoded) > 1:  # one byte fewer would not hold it
        assert not -(2 ** (8 * len(encoded) - 9)) <= value < 2 ** (8 * len(encoded) - 9)


# -- hash floods: integer keys picked to share one hash value -------------------

# Python hashes an int as its value modulo 2**61 - 1, with no secret: these
# are distinct big integers with the same hash, which a dict of them as keys
# compares with each other on every insertion (quadratic time).
_MODULUS = (1 << 61) - 1
_SAME_HASH = [(k + 10) * _MODULUS for k in range(MAX_KEYS_PER_HASH + 1)]


def test_big_integer_keys_with_one_hash_are_refused() -> None:
    assert len({hash(key) for key in _SAME_HASH}) == 1
    allowed = dict.fromkeys(_SAME_HASH[:MAX_KEYS_PER_HASH], 0)
    assert same(decode(encode(allowed)), allowed)
    with pytest.raises(CodecError, match="hash"):
        decode(encode(dict.fromkeys(_SAME_HASH, 0)))
    # As values, or as keys of different hashes, any number is fine.
    assert decode(encode(_SAME_HASH * 3)) == _SAME_HASH * 3
    spread = {key + i: i for i, key in enumerate(_SAME_HASH * 3)}
    assert same(decode(encode(spread)), spread)


def test_big_integer_keys_with_one_hash_are_refused_in_json() -> None:
    allowed = dict.fromkeys(_SAME_HASH[:MAX_KEYS_PER_HASH], 0)
    assert same(decode_json(encode_json(allowed)), allowed)
    with pytest.raises(CodecError, match="hash"):
        decode_json(encode_json(dict.fromkeys(_SAME_HASH, 0)))
