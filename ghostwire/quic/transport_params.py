"""QUIC transport parameters (RFC 9000 §18), encoded and validated.

Every parameter of RFC 9000 §18.2 is known, plus version_information
(RFC 9368 §3), max_datagram_frame_size (RFC 9221 §3) and grease_quic_bit
(RFC 9287 §3). Unknown parameters (including reserved GREASE ids,
§18.1) are ignored. Anything invalid -- a duplicate, a value out of range,
a server-only parameter from a client, a truncated value -- is a
TRANSPORT_PARAMETER_ERROR (§7.4, §18.2).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from types import MappingProxyType
from typing import Final

from .buffer import Reader, Writer, decode_varint, encode_varint
from .errors import BufferReadError, QuicProtocolError, TransportErrorCode

MAX_VARINT = (1 << 62) - 1
MAX_STREAMS_LIMIT = 1 << 60  # RFC 9000 §4.6


class ParamId(IntEnum):
    ORIGINAL_DESTINATION_CONNECTION_ID = 0x00
    MAX_IDLE_TIMEOUT = 0x01
    STATELESS_RESET_TOKEN = 0x02
    MAX_UDP_PAYLOAD_SIZE = 0x03
    INITIAL_MAX_DATA = 0x04
    INITIAL_MAX_STREAM_DATA_BIDI_LOCAL = 0x05
    INITIAL_MAX_STREAM_DATA_BIDI_REMOTE = 0x06
    INITIAL_MAX_STREAM_DATA_UNI = 0x07
    INITIAL_MAX_STREAMS_BIDI = 0x08
    INITIAL_MAX_STREAMS_UNI = 0x09
    ACK_DELAY_EXPONENT = 0x0A
    MAX_ACK_DELAY = 0x0B
    DISABLE_ACTIVE_MIGRATION = 0x0C
    PREFERRED_ADDRESS = 0x0D
    ACTIVE_CONNECTION_ID_LIMIT = 0x0E
    INITIAL_SOURCE_CONNECTION_ID = 0x0F
    RETRY_SOURCE_CONNECTION_ID = 0x10
    VERSION_INFORMATION = 0x11
    MAX_DATAGRAM_FRAME_SIZE = 0x20
    GREASE_QUIC_BIT = 0x2AB2


# RFC 9000 §18.2: a client must not send these.
SERVER_ONLY = frozenset(
    {
        ParamId.ORIGINAL_DESTINATION_CONNECTION_ID,
        ParamId.STATELESS_RESET_TOKEN,
        ParamId.PREFERRED_ADDRESS,
        ParamId.RETRY_SOURCE_CONNECTION_ID,
    }
)


@dataclass(slots=True)
class PreferredAddress:
    """RFC 9000 §18.2 preferred_address."""

    ipv4_address: bytes = b"\x00" * 4
    ipv4_port: int = 0
    ipv6_address: bytes = b"\x00" * 16
    ipv6_port: int = 0
    connection_id: bytes = b"\x01" * 8
    stateless_reset_token: bytes = b"\x00" * 16


@dataclass(slots=True)
class VersionInformation:
    """RFC 9368 §3 version_information."""

    chosen_version: int
    available_versions: tuple[int, ...] = ()


@dataclass(slots=True)
class TransportParameters:
    """One side's transport parameters; defaults are the RFC's defaults."""

    original_destination_connection_id: bytes | None = None
    max_idle_timeout: int = 0  # milliseconds; 0 = no timeout
    stateless_reset_token: bytes | None = None
    max_udp_payload_size: int = 65527
    initial_max_data: int = 0
    initial_max_stream_data_bidi_local: int = 0
    initial_max_stream_data_bidi_remote: int = 0
    initial_max_stream_data_uni: int = 0
    initial_max_streams_bidi: int = 0
    initial_max_streams_uni: int = 0
    ack_delay_exponent: int = 3
    max_ack_delay: int = 25  # milliseconds
    disable_active_migration: bool = False
    preferred_address: PreferredAddress | None = None
    active_connection_id_limit: int = 2
    initial_source_connection_id: bytes | None = None
    retry_source_connection_id: bytes | None = None
    version_information: VersionInformation | None = None
    max_datagram_frame_size: int | None = None
    grease_quic_bit: bool = False
    # Unknown (e.g. GREASE) parameters; the shared empty, read-only mapping
    # when there are none (an empty dict per connection is 64 bytes).
    unknown: Mapping[int, bytes] = field(default_factory=lambda: _NO_UNKNOWN, compare=False)


_NO_UNKNOWN: Mapping[int, bytes] = MappingProxyType({})


_INTEGER_PARAMS: dict[int, str] = {
    ParamId.MAX_IDLE_TIMEOUT: "max_idle_timeout",
    ParamId.MAX_UDP_PAYLOAD_SIZE: "max_udp_payload_size",
    ParamId.INITIAL_MAX_DATA: "initial_max_data",
    ParamId.INITIAL_MAX_STREAM_DATA_BIDI_LOCAL: "initial_max_stream_data_bidi_local",
    ParamId.INITIAL_MAX_STREAM_DATA_BIDI_REMOTE: "initial_max_stream_data_bidi_remote",
    ParamId.INITIAL_MAX_STREAM_DATA_UNI: "initial_max_stream_data_uni",
    ParamId.INITIAL_MAX_STREAMS_BIDI: "initial_max_streams_bidi",
    ParamId.INITIAL_MAX_STREAMS_UNI: "initial_max_streams_uni",
    ParamId.ACK_DELAY_EXPONENT: "ack_delay_exponent",
    ParamId.MAX_ACK_DELAY: "max_ack_delay",
    ParamId.ACTIVE_CONNECTION_ID_LIMIT: "active_connection_id_limit",
    ParamId.MAX_DATAGRAM_FRAME_SIZE: "max_datagram_frame_size",
}
_CID_PARAMS: dict[int, str] = {
    ParamId.ORIGINAL_DESTINATION_CONNECTION_ID: "original_destination_connection_id",
    ParamId.INITIAL_SOURCE_CONNECTION_ID: "initial_source_connection_id",
    ParamId.RETRY_SOURCE_CONNECTION_ID: "retry_source_connection_id",
}
_FLAG_PARAMS: dict[int, str] = {
    ParamId.DISABLE_ACTIVE_MIGRATION: "disable_active_migration",
    ParamId.GREASE_QUIC_BIT: "grease_quic_bit",
}


def _error(reason: str) -> QuicProtocolError:
    return QuicProtocolError(TransportErrorCode.TRANSPORT_PARAMETER_ERROR, reason)


# The encoder's tables: (encoded id, attribute[, default]) in a fixed order.
_ENCODED_CID_PARAMS = tuple((encode_varint(i), name) for i, name in _CID_PARAMS.items())
_ENCODED_INTEGER_PARAMS = tuple(
    (encode_varint(i), name, getattr(TransportParameters(), name))
    for i, name in _INTEGER_PARAMS.items()
)
_ENCODED_FLAG_PARAMS = tuple((encode_varint(i) + b"\x00", name) for i, name in _FLAG_PARAMS.items())
_ENCODED_RESET_TOKEN = encode_varint(ParamId.STATELESS_RESET_TOKEN) + b"\x10"


def encode_transport_parameters(params: TransportParameters) -> bytes:
    """Encode ``params``; parameters at their default value are left out."""
    parts: list[bytes] = []
    append = parts.append
    for encoded_id, name in _ENCODED_CID_PARAMS:
        cid = getattr(params, name)
        if cid is not None:
            append(encoded_id)
            append(encode_varint(len(cid)))
            append(cid)
    for encoded_id, name, default in _ENCODED_INTEGER_PARAMS:
        value = getattr(params, name)
        if value is not None and value != default:
            encoded = _ENCODED_INTEGERS.get((encoded_id, value))
            if encoded is None:
                encoded = _encode_integer(encoded_id, value)
            append(encoded)
    for encoded_flag, name in _ENCODED_FLAG_PARAMS:
        if getattr(params, name):
            append(encoded_flag)
    token = params.stateless_reset_token
    if token is not None:
        if len(token) == 16:
            append(_ENCODED_RESET_TOKEN)
            append(token)
        else:  # invalid, but encoded as given (tests send bad values on purpose)
            _put(append, ParamId.STATELESS_RESET_TOKEN, token)
    if params.preferred_address is not None:
        encoded = _encode_preferred_address(params.preferred_address)
        _put(append, ParamId.PREFERRED_ADDRESS, encoded)
    info = params.version_information
    if info is not None:
        versions = b"".join(
            v.to_bytes(4, "big") for v in (info.chosen_version, *info.available_versions)
        )
        _put(append, ParamId.VERSION_INFORMATION, versions)
    for unknown_id, raw in params.unknown.items():
        _put(append, unknown_id, raw)
    return b"".join(parts)


# id || length || value of the integer parameters already encoded: a server
# encodes the same values (its config's) for every connection.
_ENCODED_INTEGERS: dict[tuple[bytes, int], bytes] = {}
_ENCODED_INTEGERS_MAX = 256


def _encode_integer(encoded_id: bytes, value: int) -> bytes:
    number = encode_varint(value)
    encoded = encoded_id + bytes((len(number),)) + number
    if len(_ENCODED_INTEGERS) >= _ENCODED_INTEGERS_MAX:
        _ENCODED_INTEGERS.clear()
    _ENCODED_INTEGERS[(encoded_id, value)] = encoded
    return encoded


def _put(append: Callable[[bytes], None], param_id: int, value: bytes) -> None:
    append(encode_varint(param_id))
    append(encode_varint(len(value)))
    append(value)


def _encode_preferred_address(address: PreferredAddress) -> bytes:
    w = Writer()
    w.push_bytes(address.ipv4_address)
    w.push_uint16(address.ipv4_port)
    w.push_bytes(address.ipv6_address)
    w.push_uint16(address.ipv6_port)
    w.push_uint8_prefixed(address.connection_id)
    w.push_bytes(address.stateless_reset_token)
    return w.getvalue()


def decode_transport_parameters(data: bytes, *, from_server: bool) -> TransportParameters:
    """Decode and validate the peer's parameters.

    ``from_server`` says who sent them: a client may not send server-only
    parameters (RFC 9000 §18.2).
    """
    data = bytes(data)
    params = TransportParameters()
    seen: set[int] = set()
    pos = 0
    end = len(data)
    try:
        while pos < end:
            # One-byte ids and lengths (below 64) are the common case: read inline.
            param_id = data[pos]
            if param_id < 0x40:
                pos += 1
            else:
                param_id, pos = decode_varint(data, pos)
            length = data[pos] if pos < end else 0x40  # past the end: decode_varint fails
            if length < 0x40:
                pos += 1
            else:
                length, pos = decode_varint(data, pos)
            stop = pos + length
            if stop > end:
                raise BufferReadError("truncated transport parameter")
            value = data[pos:stop]
            pos = stop
            if param_id in seen:
                raise _error(f"transport parameter 0x{param_id:x} appears twice")
            seen.add(param_id)
            name = _INTEGER_PARAMS.get(param_id)
            if name is None:
                _decode_other(params, param_id, value, from_server)
                continue
            if not value:
                raise BufferReadError("empty integer transport parameter")
            size = 1 << (value[0] >> 6)  # RFC 9000 §16: the varint's length
            if length < size:
                raise BufferReadError("truncated integer transport parameter")
            if length > size:
                raise _error(f"{name} has trailing bytes")
            setattr(params, name, int.from_bytes(value, "big") & _VARINT_MASKS[size])
    except BufferReadError:
        raise _error("truncated transport parameters") from None
    _validate(params)
    return params


_VARINT_MASKS = {1: 0x3F, 2: 0x3FFF, 4: 0x3FFFFFFF, 8: 0x3FFFFFFFFFFFFFFF}
_STATELESS_RESET_TOKEN: Final = int(ParamId.STATELESS_RESET_TOKEN)
_PREFERRED_ADDRESS: Final = int(ParamId.PREFERRED_ADDRESS)
_VERSION_INFORMATION: Final = int(ParamId.VERSION_INFORMATION)


def _decode_other(
    params: TransportParameters, param_id: int, value: bytes, from_server: bool
) -> None:
    """Every parameter but the integer ones (the decoder's fast path)."""
    # Plain ints and dict lookups: ParamId(param_id) costs ~5 K instructions
    # and each ParamId.X read ~1 K (CPython 3.11's enum class lookups).
    if param_id in SERVER_ONLY and not from_server:
        raise _error(f"client sent server-only transport parameter {ParamId(param_id).name}")
    name = _CID_PARAMS.get(param_id)
    if name is not None:
        if len(value) > 20:
            raise _error(f"{name} longer than 20 bytes")
        setattr(params, name, value)
        return
    name = _FLAG_PARAMS.get(param_id)
    if name is not None:
        if value:
            raise _error(f"{name} must be empty")
        setattr(params, name, True)
    elif param_id == _STATELESS_RESET_TOKEN:
        if len(value) != 16:
            raise _error("stateless_reset_token must be 16 bytes")
        params.stateless_reset_token = value
    elif param_id == _PREFERRED_ADDRESS:
        params.preferred_address = _decode_preferred_address(value)
    elif param_id == _VERSION_INFORMATION:
        # RFC 9368 §3: a chosen version and zero or more available versions.
        if len(value) < 4 or len(value) % 4:
            raise _error("malformed version_information")
        versions = [int.from_bytes(value[i : i + 4], "big") for i in range(0, len(value), 4)]
        # RFC 9368 §4: version 0 anywhere is a parsing failure, and so is a
        # client's Chosen Version missing from its own Available Versions.
        if 0 in versions:
            raise _error("version_information lists version 0")
        if not from_server and versions[0] not in versions[1:]:
            raise _error("client version_information omits its chosen version")
        params.version_information = VersionInformation(versions[0], tuple(versions[1:]))
    else:
        unknown = params.unknown
        if not isinstance(unknown, dict):
            unknown = params.unknown = {}
        unknown[param_id] = value


def _decode_preferred_address(value: bytes) -> PreferredAddress:
    reader = Reader(value)
    address = PreferredAddress(
        ipv4_address=reader.pull_bytes(4),
        ipv4_port=reader.pull_uint16(),
        ipv6_address=reader.pull_bytes(16),
        ipv6_port=reader.pull_uint16(),
        connection_id=reader.pull_uint8_prefixed(),
        stateless_reset_token=reader.pull_bytes(16),
    )
    if not reader.eof():
        raise _error("preferred_address has trailing bytes")
    # RFC 9000 §18.2: a zero-length connection ID here is an error.
    if not 1 <= len(address.connection_id) <= 20:
        raise _error("preferred_address connection ID must be 1-20 bytes")
    return address


def _validate(params: TransportParameters) -> None:
    """Range checks of RFC 9000 §18.2."""
    if params.max_udp_payload_size < 1200:
        raise _error("max_udp_payload_size below 1200")
    if params.ack_delay_exponent > 20:
        raise _error("ack_delay_exponent above 20")
    if params.max_ack_delay >= 1 << 14:
        raise _error("max_ack_delay of 2^14 ms or more")
    if params.active_connection_id_limit < 2:
        raise _error("active_connection_id_limit below 2")
    if params.initial_max_streams_bidi > MAX_STREAMS_LIMIT:
        raise _error("initial_max_streams_bidi above 2^60")
    if params.initial_max_streams_uni > MAX_STREAMS_LIMIT:
        raise _error("initial_max_streams_uni above 2^60")


__all__ = [
    "ParamId",
    "PreferredAddress",
    "TransportParameters",
    "VersionInformation",
    "decode_transport_parameters",
    "encode_transport_parameters",
]
