"""Codecs for the TLS extensions a QUIC handshake uses (RFC 8446 §4.2).

Theory of operation: messages keep extensions raw (``{type: body}``); the
functions here turn one body into Python values and back. Decoders must
consume the body exactly (a trailing byte is a decode_error) and raise
:class:`~ghostwire.quic.errors.BufferReadError` or a decode_error
:class:`~.alerts.TlsAlert` on malformed input, never anything else.
:data:`ALLOWED_IN` records which extension may appear in which message
(the table of RFC 8446 §4.2), for the "unexpected extension" checks.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from enum import IntEnum

from ..buffer import Reader, Writer
from .alerts import decode_error
from .messages import HandshakeType


class ExtensionType(IntEnum):
    """Extension code points (RFC 8446 §4.2, RFC 7301, RFC 9001 §8.2)."""

    SERVER_NAME = 0
    SUPPORTED_GROUPS = 10
    SIGNATURE_ALGORITHMS = 13
    ALPN = 16
    PRE_SHARED_KEY = 41
    EARLY_DATA = 42
    SUPPORTED_VERSIONS = 43
    COOKIE = 44
    PSK_KEY_EXCHANGE_MODES = 45
    CERTIFICATE_AUTHORITIES = 47
    OID_FILTERS = 48
    POST_HANDSHAKE_AUTH = 49
    SIGNATURE_ALGORITHMS_CERT = 50
    KEY_SHARE = 51
    QUIC_TRANSPORT_PARAMETERS = 0x39


_E = ExtensionType
# Which of the extensions we know may appear where (RFC 8446 §4.2 table).
# HelloRetryRequest is listed under its own pseudo-key -1.
HELLO_RETRY_REQUEST = -1
ALLOWED_IN: dict[int, frozenset[int]] = {
    HandshakeType.SERVER_HELLO: frozenset({_E.KEY_SHARE, _E.PRE_SHARED_KEY, _E.SUPPORTED_VERSIONS}),
    HELLO_RETRY_REQUEST: frozenset({_E.KEY_SHARE, _E.COOKIE, _E.SUPPORTED_VERSIONS}),
    HandshakeType.ENCRYPTED_EXTENSIONS: frozenset(
        {
            _E.SERVER_NAME,
            _E.SUPPORTED_GROUPS,
            _E.ALPN,
            _E.EARLY_DATA,
            _E.QUIC_TRANSPORT_PARAMETERS,
        }
    ),
}


def _reader(data: bytes) -> Reader:
    return Reader(data)


def _done(r: Reader, what: str) -> None:
    if not r.eof():
        raise decode_error(f"{r.remaining()} trailing bytes in the {what} extension")


def _encode_u16_list(values: Iterable[int], prefix: int) -> bytes:
    items = list(values)
    return (2 * len(items)).to_bytes(prefix, "big") + struct.pack(f"!{len(items)}H", *items)


def _decode_u16_list(data: bytes, prefix: int, what: str) -> list[int]:
    length = int.from_bytes(data[:prefix], "big")
    if length == 0 or length % 2 or len(data) != prefix + length:
        raise decode_error(f"bad length in the {what} extension")
    return list(struct.unpack_from(f"!{length // 2}H", data, prefix))


# supported_groups (§4.2.7), signature_algorithms (§4.2.3)


def encode_supported_groups(groups: Iterable[int]) -> bytes:
    return _encode_u16_list(groups, 2)


def decode_supported_groups(data: bytes) -> list[int]:
    return _decode_u16_list(data, 2, "supported_groups")


def encode_signature_algorithms(schemes: Iterable[int]) -> bytes:
    return _encode_u16_list(schemes, 2)


def decode_signature_algorithms(data: bytes) -> list[int]:
    return _decode_u16_list(data, 2, "signature_algorithms")


# supported_versions (§4.2.1): a list in ClientHello, one version otherwise.


def encode_client_versions(versions: Iterable[int]) -> bytes:
    return _encode_u16_list(versions, 1)


def decode_client_versions(data: bytes) -> list[int]:
    return _decode_u16_list(data, 1, "supported_versions")


def encode_selected_version(version: int) -> bytes:
    return version.to_bytes(2, "big")


def decode_selected_version(data: bytes) -> int:
    r = _reader(data)
    version = r.pull_uint16()
    _done(r, "supported_versions")
    return version


# key_share (§4.2.8)


def encode_client_key_shares(shares: Iterable[tuple[int, bytes]]) -> bytes:
    w = Writer()
    with w.length_prefixed(2):
        for group, key in shares:
            w.push_uint16(group)
            w.push_uint16_prefixed(key)
    return bytes(w.buf)


def decode_client_key_shares(data: bytes) -> list[tuple[int, bytes]]:
    r = _reader(data)
    shares = []
    with r.sub_reader(r.pull_uint16()) as block:
        while not block.eof():
            group = block.pull_uint16()
            key = block.pull_uint16_prefixed()
            if not key:
                raise decode_error("empty key_exchange in key_share")
            shares.append((group, key))
    _done(r, "key_share")
    return shares


def encode_server_key_share(group: int, key: bytes) -> bytes:
    return group.to_bytes(2, "big") + len(key).to_bytes(2, "big") + key


def decode_server_key_share(data: bytes) -> tuple[int, bytes]:
    r = _reader(data)
    group = r.pull_uint16()
    key = r.pull_uint16_prefixed()
    _done(r, "key_share")
    return group, key


def encode_hrr_key_share(group: int) -> bytes:
    return group.to_bytes(2, "big")


def decode_hrr_key_share(data: bytes) -> int:
    return decode_selected_version(data)  # the same shape: one uint16


# cookie (§4.2.2)


def encode_cookie(cookie: bytes) -> bytes:
    return len(cookie).to_bytes(2, "big") + cookie


def decode_cookie(data: bytes) -> bytes:
    r = _reader(data)
    cookie = r.pull_uint16_prefixed()
    if not cookie:
        raise decode_error("empty cookie")
    _done(r, "cookie")
    return cookie


# application_layer_protocol_negotiation (RFC 7301 §3.1)


def encode_alpn(protocols: Iterable[bytes]) -> bytes:
    # (push_uint8 raised ValueError for a name over 255 bytes; bytes() does too.)
    body = b"".join([bytes((len(name),)) + name for name in protocols])
    if len(body) >= 1 << 16:
        raise ValueError(f"{len(body)} bytes do not fit a 2-byte length prefix")
    return len(body).to_bytes(2, "big") + body


def decode_alpn(data: bytes) -> list[bytes]:
    r = _reader(data)
    names = []
    with r.sub_reader(r.pull_uint16()) as block:
        while not block.eof():
            name = block.pull_uint8_prefixed()
            if not name:
                raise decode_error("empty protocol name in ALPN")
            names.append(name)
    _done(r, "ALPN")
    if not names:
        raise decode_error("empty ALPN protocol list")
    return names


# server_name (RFC 6066 §3)

_HOST_NAME = 0


def encode_server_name(host: str) -> bytes:
    name = host.encode("ascii")
    w = Writer()
    with w.length_prefixed(2):
        w.push_uint8(_HOST_NAME)
        w.push_uint16_prefixed(name)
    return bytes(w.buf)


def decode_server_name(data: bytes) -> str | None:
    """The host name of a ClientHello server_name extension (None if it has none)."""
    r = _reader(data)
    host: str | None = None
    with r.sub_reader(r.pull_uint16()) as block:
        while not block.eof():
            name_type = block.pull_uint8()
            name = block.pull_uint16_prefixed()
            if name_type != _HOST_NAME:
                continue
            if host is not None:
                raise decode_error("more than one host_name in server_name")
            if not name or not name.isascii():
                raise decode_error("server_name host_name is not an ASCII name")
            host = name.decode("ascii")
    _done(r, "server_name")
    return host
