"""Transport parameters (RFC 9000 §18; RFC 9368 §3, RFC 9221 §3, RFC 9287 §3)."""

from __future__ import annotations

import dataclasses

import pytest

from ghostwire.quic.buffer import Reader, encode_varint
from ghostwire.quic.errors import QuicProtocolError, TransportErrorCode
from ghostwire.quic.transport_params import (
    ParamId,
    PreferredAddress,
    TransportParameters,
    VersionInformation,
    decode_transport_parameters,
    encode_transport_parameters,
)

TOKEN16 = bytes(range(16))
V1, V2 = 0x00000001, 0x6B3343CF


def param(param_id: int, value: bytes) -> bytes:
    return encode_varint(param_id) + encode_varint(len(value)) + value


def int_param(param_id: int, value: int) -> bytes:
    return param(param_id, encode_varint(value))


def preferred_address_bytes(
    cid: bytes = b"\x11" * 8, token: bytes = TOKEN16, extra: bytes = b""
) -> bytes:
    return (
        bytes([192, 0, 2, 1])
        + (443).to_bytes(2, "big")
        + bytes(range(0x20, 0x30))
        + (8443).to_bytes(2, "big")
        + bytes([len(cid)])
        + cid
        + token
        + extra
    )


def everything() -> TransportParameters:
    """Every parameter set to something other than its default."""
    return TransportParameters(
        original_destination_connection_id=b"\x01" * 8,
        max_idle_timeout=30_000,
        stateless_reset_token=TOKEN16,
        max_udp_payload_size=1452,
        initial_max_data=1 << 20,
        initial_max_stream_data_bidi_local=1 << 18,
        initial_max_stream_data_bidi_remote=(1 << 18) + 1,
        initial_max_stream_data_uni=(1 << 18) + 2,
        initial_max_streams_bidi=100,
        initial_max_streams_uni=1 << 60,
        ack_delay_exponent=20,
        max_ack_delay=(1 << 14) - 1,
        disable_active_migration=True,
        preferred_address=PreferredAddress(
            ipv4_address=bytes([192, 0, 2, 1]),
            ipv4_port=443,
            ipv6_address=bytes(range(0x20, 0x30)),
            ipv6_port=8443,
            connection_id=b"\x11" * 20,
            stateless_reset_token=TOKEN16[::-1],
        ),
        active_connection_id_limit=8,
        initial_source_connection_id=b"\x02" * 20,
        retry_source_connection_id=b"",
        version_information=VersionInformation(V1, (V2, V1)),
        max_datagram_frame_size=65535,
        grease_quic_bit=True,
    )


def decode_error(data: bytes, *, from_server: bool = True) -> QuicProtocolError:
    with pytest.raises(QuicProtocolError) as info:
        decode_transport_parameters(data, from_server=from_server)
    assert info.value.error_code == TransportErrorCode.TRANSPORT_PARAMETER_ERROR
    return info.value


# -- round trips and defaults ----------------------------------------------------


def test_every_parameter_round_trips() -> None:
    params = everything()
    decoded = decode_transport_parameters(encode_transport_parameters(params), from_server=True)
    assert decoded == params
    # The comparison is field by field, so each one really was carried.
    for field in dataclasses.fields(TransportParameters):
        if field.name != "unknown":
            assert getattr(decoded, field.name) == getattr(params, field.name), field.name
            assert getattr(params, field.name) != getattr(TransportParameters(), field.name)


def test_every_parameter_id_is_written() -> None:
    encoded = encode_transport_parameters(everything())
    ids = {int(p) for p in ParamId}
    decoded = decode_transport_parameters(encoded + param(0x1B, b"grease"), from_server=True)
    assert decoded.unknown == {0x1B: b"grease"}
    # Every known id was on the wire: re-adding any one is a duplicate.
    for param_id in ids:
        decode_error(encoded + param(param_id, b""))


def test_client_parameters_round_trip() -> None:
    params = TransportParameters(
        max_idle_timeout=10_000,
        initial_max_data=1000,
        initial_source_connection_id=b"",
        active_connection_id_limit=4,
    )
    decoded = decode_transport_parameters(encode_transport_parameters(params), from_server=False)
    assert decoded == params


def test_rfc_defaults() -> None:
    # RFC 9000 §18.2: what an absent parameter means.
    params = decode_transport_parameters(b"", from_server=True)
    assert params == TransportParameters()
    assert params.original_destination_connection_id is None
    assert params.max_idle_timeout == 0
    assert params.stateless_reset_token is None
    assert params.max_udp_payload_size == 65527
    assert params.initial_max_data == 0
    assert params.initial_max_stream_data_bidi_local == 0
    assert params.initial_max_stream_data_bidi_remote == 0
    assert params.initial_max_stream_data_uni == 0
    assert params.initial_max_streams_bidi == 0
    assert params.initial_max_streams_uni == 0
    assert params.ack_delay_exponent == 3
    assert params.max_ack_delay == 25
    assert params.disable_active_migration is False
    assert params.preferred_address is None
    assert params.active_connection_id_limit == 2
    assert params.initial_source_connection_id is None
    assert params.retry_source_connection_id is None
    assert params.version_information is None
    assert params.max_datagram_frame_size is None
    assert params.grease_quic_bit is False
    assert params.unknown == {}


def test_defaults_are_not_sent() -> None:
    assert encode_transport_parameters(TransportParameters()) == b""
    assert encode_transport_parameters(TransportParameters(ack_delay_exponent=3)) == b""


def test_explicit_default_values_are_accepted() -> None:
    data = int_param(0x0A, 3) + int_param(0x0B, 25) + int_param(0x0E, 2) + int_param(0x03, 65527)
    assert decode_transport_parameters(data, from_server=False) == TransportParameters()


def test_wire_format() -> None:
    params = TransportParameters(
        max_idle_timeout=30_000, disable_active_migration=True, initial_source_connection_id=b"ab"
    )
    encoded = encode_transport_parameters(params)
    # id, length, value: 0x01 (4-byte varint 30000), 0x0c (empty), 0x0f (2 bytes).
    expected = {
        bytes.fromhex("0104") + bytes.fromhex("80007530"),
        bytes.fromhex("0c00"),
        bytes.fromhex("0f02") + b"ab",
    }
    assert len(encoded) == sum(len(part) for part in expected)
    for part in expected:
        assert part in encoded


def test_zero_length_connection_ids_are_kept_distinct_from_absent() -> None:
    data = param(0x0F, b"") + param(0x00, b"") + param(0x10, b"")
    params = decode_transport_parameters(data, from_server=True)
    assert params.initial_source_connection_id == b""
    assert params.original_destination_connection_id == b""
    assert params.retry_source_connection_id == b""


def test_non_minimal_varint_values_are_accepted() -> None:
    # max_idle_timeout 5 written as an 8-byte varint; the parameter id as 2 bytes.
    data = bytes.fromhex("4001") + bytes.fromhex("08") + bytes.fromhex("c000000000000005")
    assert decode_transport_parameters(data, from_server=False).max_idle_timeout == 5


# -- unknown and GREASE parameters (RFC 9000 §18.1) ------------------------------------


@pytest.mark.parametrize("param_id", [27, 31 * 5 + 27, 31 * 1000 + 27, 0x21, 0x2AB3, (1 << 62) - 1])
def test_unknown_parameters_are_ignored_and_kept(param_id: int) -> None:
    data = param(param_id, b"\xde\xad") + int_param(0x04, 99)
    params = decode_transport_parameters(data, from_server=False)
    assert params.initial_max_data == 99
    assert params.unknown == {param_id: b"\xde\xad"}
    assert params == TransportParameters(initial_max_data=99)  # unknown is not compared


def test_unknown_parameters_are_re_encoded() -> None:
    params = TransportParameters(unknown={31 * 3 + 27: b"", 0x77: b"xyz"})
    decoded = decode_transport_parameters(encode_transport_parameters(params), from_server=False)
    assert decoded.unknown == params.unknown


def test_duplicate_unknown_parameter_is_an_error() -> None:
    decode_error(param(27, b"a") + param(27, b"b"))


# -- errors (RFC 9000 §7.4, §18.2) ------------------------------------------------------


@pytest.mark.parametrize(
    "param_id", [0x01, 0x03, 0x04, 0x0A, 0x0C, 0x0F, 0x02, 0x0D, 0x11, 0x20, 0x2AB2]
)
def test_duplicate_parameter(param_id: int) -> None:
    one = encode_transport_parameters(everything())
    # Find this parameter's encoding by encoding it on its own.
    single = {
        0x01: int_param(0x01, 7),
        0x03: int_param(0x03, 1300),
        0x04: int_param(0x04, 7),
        0x0A: int_param(0x0A, 4),
        0x0C: param(0x0C, b""),
        0x0F: param(0x0F, b"x"),
        0x02: param(0x02, TOKEN16),
        0x0D: param(0x0D, preferred_address_bytes()),
        0x11: param(0x11, versions(V1, V1)),
        0x20: int_param(0x20, 1200),
        0x2AB2: param(0x2AB2, b""),
    }[param_id]
    decode_transport_parameters(single, from_server=True)  # fine on its own
    error = decode_error(single + single)
    assert "twice" in error.reason
    decode_error(one + single)


@pytest.mark.parametrize(
    ("param_id", "bad", "good"),
    [
        (0x03, 1199, 1200),  # max_udp_payload_size
        (0x03, 0, 65527),
        (0x0A, 21, 20),  # ack_delay_exponent
        (0x0B, 1 << 14, (1 << 14) - 1),  # max_ack_delay
        (0x0E, 1, 2),  # active_connection_id_limit
        (0x0E, 0, 1 << 20),
        (0x08, (1 << 60) + 1, 1 << 60),  # initial_max_streams_bidi
        (0x09, (1 << 60) + 1, 1 << 60),  # initial_max_streams_uni
        (0x09, (1 << 62) - 1, 0),
    ],
)
def test_out_of_range_values(param_id: int, bad: int, good: int) -> None:
    decode_error(int_param(param_id, bad), from_server=False)
    decode_transport_parameters(int_param(param_id, good), from_server=False)


@pytest.mark.parametrize("param_id", [0x00, 0x02, 0x0D, 0x10])
def test_server_only_parameters_from_a_client(param_id: int) -> None:
    value = {
        0x00: b"\x01" * 8,
        0x02: TOKEN16,
        0x0D: preferred_address_bytes(),
        0x10: b"\x02" * 8,
    }[param_id]
    error = decode_error(param(param_id, value), from_server=False)
    assert ParamId(param_id).name in error.reason
    decode_transport_parameters(param(param_id, value), from_server=True)


@pytest.mark.parametrize("length", [0, 15, 17, 32])
def test_bad_stateless_reset_token_length(length: int) -> None:
    decode_error(param(0x02, b"t" * length))


@pytest.mark.parametrize(
    "value",
    [
        b"",
        preferred_address_bytes()[:-1],  # token one byte short
        preferred_address_bytes()[:10],  # cut inside the IPv6 address
        preferred_address_bytes(extra=b"\x00"),  # trailing byte
        preferred_address_bytes(cid=b""),  # RFC 9000 §18.2: zero-length CID
        preferred_address_bytes(cid=b"c" * 21),
        # A CID length that eats into the token.
        preferred_address_bytes()[:24] + b"\x30" + preferred_address_bytes()[25:],
    ],
)
def test_malformed_preferred_address(value: bytes) -> None:
    decode_error(param(0x0D, value))


def test_preferred_address_decodes() -> None:
    params = decode_transport_parameters(
        param(0x0D, preferred_address_bytes(cid=b"\x33" * 4)), from_server=True
    )
    assert params.preferred_address == PreferredAddress(
        ipv4_address=bytes([192, 0, 2, 1]),
        ipv4_port=443,
        ipv6_address=bytes(range(0x20, 0x30)),
        ipv6_port=8443,
        connection_id=b"\x33" * 4,
        stateless_reset_token=TOKEN16,
    )


@pytest.mark.parametrize("param_id", [0x00, 0x0F, 0x10])
def test_connection_id_longer_than_20_bytes(param_id: int) -> None:
    error = decode_error(param(param_id, b"c" * 21))
    assert error.reason == f"{ParamId(param_id).name.lower()} longer than 20 bytes"
    decode_transport_parameters(param(param_id, b"c" * 20), from_server=True)


@pytest.mark.parametrize("param_id", [0x0C, 0x2AB2])
def test_flag_with_a_value(param_id: int) -> None:
    error = decode_error(param(param_id, b"\x01"))
    assert error.reason == f"{ParamId(param_id).name.lower()} must be empty"


@pytest.mark.parametrize("value", [b"", b"\x40", b"\x05\x00", b"\x80\x00\x00"])
def test_integer_parameter_malformed(value: bytes) -> None:
    decode_error(param(0x04, value))


def versions(*numbers: int) -> bytes:
    return b"".join(n.to_bytes(4, "big") for n in numbers)


@pytest.mark.parametrize("from_server", [False, True])
@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"\x00\x00\x00",
        versions(V1) + b"\x00",
        versions(0),  # RFC 9368 §4: a Chosen Version of zero
        versions(0, V1),
        versions(V1, V1, 0),  # ... or any Available Version of zero
    ],
)
def test_malformed_version_information(value: bytes, from_server: bool) -> None:
    decode_error(param(0x11, value), from_server=from_server)


@pytest.mark.parametrize("value", [versions(V1), versions(V1, V2), versions(V2, 0x1A2A3A4A)])
def test_client_version_information_must_offer_its_chosen_version(value: bytes) -> None:
    # RFC 9368 §4: a server treats this as a parsing failure.
    decode_error(param(0x11, value), from_server=False)


def test_version_information_decodes() -> None:
    value = versions(V2, V1, V2)
    params = decode_transport_parameters(param(0x11, value), from_server=False)
    assert params.version_information == VersionInformation(V2, (V1, V2))
    # A server's Available Versions may be empty or leave out the chosen one.
    for server_value, expected in [
        (versions(V1), VersionInformation(V1, ())),
        (versions(V2, V1, 0x0A1A2A3A), VersionInformation(V2, (V1, 0x0A1A2A3A))),
    ]:
        from_server = decode_transport_parameters(param(0x11, server_value), from_server=True)
        assert from_server.version_information == expected


@pytest.mark.parametrize(
    "data",
    [
        b"\x04",  # id without length
        b"\x40",  # truncated id
        b"\x04\x05\x01",  # length past the end
        b"\x04\x80",  # truncated length
        int_param(0x04, 1) + b"\x01",
    ],
)
def test_truncated_parameters(data: bytes) -> None:
    decode_error(data, from_server=False)


def test_every_cut_inside_a_parameter_is_an_error() -> None:
    encoded = encode_transport_parameters(everything())
    boundaries = {0}
    # Walk the parameters to learn where each ends.
    reader = Reader(encoded)
    while not reader.eof():
        reader.pull_varint()
        reader.pull_varint_prefixed()
        boundaries.add(reader.pos)
    for cut in range(len(encoded)):
        if cut in boundaries:
            decode_transport_parameters(encoded[:cut], from_server=True)
        else:
            decode_error(encoded[:cut])
