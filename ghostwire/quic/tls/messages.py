"""TLS 1.3 handshake messages: framing, parsing and encoding (RFC 8446 §4).

Theory of operation: every message is ``msg_type (1) || length (3) || body``
(RFC 8446 §4). Each message class parses a *whole* message (header included,
since the transcript hashes whole messages) and must consume it exactly;
``encode()`` returns the whole message. Extensions are kept raw, as an
ordered ``{type: body}`` dict; :mod:`.extensions` decodes the ones the state
machines need. A truncated or malformed body raises
:class:`~ghostwire.quic.errors.BufferReadError` from the reader, which the
handshake turns into a decode_error alert; semantic checks raise
:class:`~.alerts.TlsAlert` directly.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Self

from ..buffer import Reader, Writer
from ..errors import BufferReadError
from .alerts import decode_error

TLS13 = 0x0304
LEGACY_VERSION = 0x0303  # RFC 8446 §4.1.2: legacy_version is TLS 1.2
# RFC 8446 §4.1.3: a ServerHello with this random is a HelloRetryRequest.
HRR_RANDOM = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")
HEADER_SIZE = 4
_EXT_HEADER = struct.Struct("!HH")


class HandshakeType(IntEnum):
    """Handshake message types (RFC 8446 §4)."""

    CLIENT_HELLO = 1
    SERVER_HELLO = 2
    NEW_SESSION_TICKET = 4
    END_OF_EARLY_DATA = 5
    ENCRYPTED_EXTENSIONS = 8
    CERTIFICATE = 11
    CERTIFICATE_REQUEST = 13
    CERTIFICATE_VERIFY = 15
    FINISHED = 20
    KEY_UPDATE = 24
    MESSAGE_HASH = 254


def message_name(msg_type: int) -> str:
    try:
        return HandshakeType(msg_type).name
    except ValueError:
        return f"handshake message type {msg_type}"


Extensions = dict[int, bytes]


def parse_extensions(r: Reader) -> Extensions:
    """An ``Extension extensions<0..2^16-1>`` block (RFC 8446 §4.2)."""
    length = r.pull_uint16()
    pos = r.pos
    r.skip(length)  # BufferReadError when the block is truncated
    end = r.pos
    data = r.data
    extensions: Extensions = {}
    while pos < end:
        if pos + 4 > end:
            raise BufferReadError("truncated extension header")
        ext_type = (data[pos] << 8) | data[pos + 1]
        stop = pos + 4 + ((data[pos + 2] << 8) | data[pos + 3])
        if stop > end:
            raise BufferReadError("truncated extension")
        if ext_type in extensions:
            # RFC 8446 §4.2: at most one extension of each type per block.
            raise decode_error(f"duplicate extension {ext_type}")
        extensions[ext_type] = bytes(data[pos + 4 : stop])
        pos = stop
    return extensions


def push_extensions(w: Writer, extensions: Extensions) -> None:
    total = sum(4 + len(data) for data in extensions.values())
    if total >= 1 << 16:
        raise ValueError("extensions do not fit in 64 KiB")
    buf = w.buf
    buf += total.to_bytes(2, "big")
    for ext_type, data in extensions.items():
        buf += _EXT_HEADER.pack(ext_type, len(data))
        buf += data


def _start(msg_type: HandshakeType) -> Writer:
    w = Writer()
    w.push_uint8(msg_type)
    w.push_uint24(0)  # patched by _finish
    return w


def _finish(w: Writer) -> bytes:
    length = len(w.buf) - HEADER_SIZE
    if length >= 1 << 24:
        raise ValueError("handshake message too large")
    w.buf[1:HEADER_SIZE] = length.to_bytes(3, "big")
    return bytes(w.buf)


def _body(message: bytes, msg_type: HandshakeType) -> Reader:
    """A reader over the body of ``message``, checking type and length."""
    if len(message) < HEADER_SIZE or message[0] != msg_type:
        raise decode_error(f"not a {msg_type.name} message")
    if int.from_bytes(message[1:HEADER_SIZE], "big") != len(message) - HEADER_SIZE:
        raise decode_error(f"{msg_type.name} length does not match")
    return Reader(message, HEADER_SIZE)


def _done(r: Reader, msg_type: HandshakeType) -> None:
    if not r.eof():
        raise decode_error(f"{r.remaining()} trailing bytes in {msg_type.name}")


def _pull_u16_list(r: Reader) -> list[int]:
    length = r.pull_uint16()
    if length % 2:
        raise decode_error("odd length for a list of 16-bit values")
    start = r.pos
    r.skip(length)
    return list(struct.unpack_from(f"!{length // 2}H", r.data, start))


@dataclass(slots=True)
class ClientHello:
    """RFC 8446 §4.1.2."""

    random: bytes
    cipher_suites: list[int]
    extensions: Extensions
    legacy_session_id: bytes = b""
    legacy_compression_methods: bytes = b"\x00"
    legacy_version: int = LEGACY_VERSION

    TYPE = HandshakeType.CLIENT_HELLO

    @classmethod
    def parse(cls, message: bytes) -> Self:
        r = _body(message, cls.TYPE)
        legacy_version = r.pull_uint16()
        random = r.pull_bytes(32)
        session_id = r.pull_uint8_prefixed()
        if len(session_id) > 32:
            raise decode_error("legacy_session_id longer than 32 bytes")
        suites = _pull_u16_list(r)
        if not suites:
            raise decode_error("empty cipher_suites")
        compression = r.pull_uint8_prefixed()
        if not compression:
            raise decode_error("empty legacy_compression_methods")
        # A ClientHello without extensions is TLS 1.2 or older; it fails later
        # for lack of supported_versions (protocol_version).
        extensions = {} if r.eof() else parse_extensions(r)
        _done(r, cls.TYPE)
        return cls(random, suites, extensions, session_id, compression, legacy_version)

    def encode(self) -> bytes:
        w = _start(self.TYPE)
        w.push_uint16(self.legacy_version)
        w.push_bytes(self.random)
        w.push_uint8_prefixed(self.legacy_session_id)
        w.push_uint16(2 * len(self.cipher_suites))
        w.push_bytes(struct.pack(f"!{len(self.cipher_suites)}H", *self.cipher_suites))
        w.push_uint8_prefixed(self.legacy_compression_methods)
        push_extensions(w, self.extensions)
        return _finish(w)


@dataclass(slots=True)
class ServerHello:
    """RFC 8446 §4.1.3; with ``random == HRR_RANDOM`` a HelloRetryRequest (§4.1.4)."""

    random: bytes
    cipher_suite: int
    extensions: Extensions
    legacy_session_id_echo: bytes = b""
    legacy_compression_method: int = 0
    legacy_version: int = LEGACY_VERSION

    TYPE = HandshakeType.SERVER_HELLO

    @property
    def is_hello_retry_request(self) -> bool:
        return self.random == HRR_RANDOM

    @classmethod
    def parse(cls, message: bytes) -> Self:
        r = _body(message, cls.TYPE)
        legacy_version = r.pull_uint16()
        random = r.pull_bytes(32)
        session_id = r.pull_uint8_prefixed()
        if len(session_id) > 32:
            raise decode_error("legacy_session_id_echo longer than 32 bytes")
        suite = r.pull_uint16()
        compression = r.pull_uint8()
        extensions = {} if r.eof() else parse_extensions(r)
        _done(r, cls.TYPE)
        return cls(random, suite, extensions, session_id, compression, legacy_version)

    def encode(self) -> bytes:
        w = _start(self.TYPE)
        w.push_uint16(self.legacy_version)
        w.push_bytes(self.random)
        w.push_uint8_prefixed(self.legacy_session_id_echo)
        w.push_uint16(self.cipher_suite)
        w.push_uint8(self.legacy_compression_method)
        push_extensions(w, self.extensions)
        return _finish(w)


@dataclass(slots=True)
class EncryptedExtensions:
    """RFC 8446 §4.3.1."""

    extensions: Extensions

    TYPE = HandshakeType.ENCRYPTED_EXTENSIONS

    @classmethod
    def parse(cls, message: bytes) -> Self:
        r = _body(message, cls.TYPE)
        extensions = parse_extensions(r)
        _done(r, cls.TYPE)
        return cls(extensions)

    def encode(self) -> bytes:
        w = _start(self.TYPE)
        push_extensions(w, self.extensions)
        return _finish(w)


@dataclass(slots=True)
class CertificateRequest:
    """RFC 8446 §4.3.2."""

    context: bytes
    extensions: Extensions

    TYPE = HandshakeType.CERTIFICATE_REQUEST

    @classmethod
    def parse(cls, message: bytes) -> Self:
        r = _body(message, cls.TYPE)
        context = r.pull_uint8_prefixed()
        extensions = parse_extensions(r)
        _done(r, cls.TYPE)
        return cls(context, extensions)

    def encode(self) -> bytes:
        w = _start(self.TYPE)
        w.push_uint8_prefixed(self.context)
        push_extensions(w, self.extensions)
        return _finish(w)


@dataclass(slots=True)
class CertificateEntry:
    """One certificate (DER) of a Certificate message, with its extensions."""

    cert_data: bytes
    extensions: Extensions = field(default_factory=dict)


@dataclass(slots=True)
class Certificate:
    """RFC 8446 §4.4.2 (X.509 certificates only)."""

    context: bytes
    entries: list[CertificateEntry]

    TYPE = HandshakeType.CERTIFICATE

    @classmethod
    def parse(cls, message: bytes) -> Self:
        r = _body(message, cls.TYPE)
        context = r.pull_uint8_prefixed()
        entries = []
        with r.sub_reader(r.pull_uint24()) as block:
            while not block.eof():
                cert_data = block.pull_uint24_prefixed()
                if not cert_data:
                    raise decode_error("empty certificate in Certificate")
                entries.append(CertificateEntry(cert_data, parse_extensions(block)))
        _done(r, cls.TYPE)
        return cls(context, entries)

    def encode(self) -> bytes:
        w = _start(self.TYPE)
        w.push_uint8_prefixed(self.context)
        with w.length_prefixed(3):
            for entry in self.entries:
                w.push_uint24_prefixed(entry.cert_data)
                push_extensions(w, entry.extensions)
        return _finish(w)


@dataclass(slots=True)
class CertificateVerify:
    """RFC 8446 §4.4.3."""

    algorithm: int
    signature: bytes

    TYPE = HandshakeType.CERTIFICATE_VERIFY

    @classmethod
    def parse(cls, message: bytes) -> Self:
        r = _body(message, cls.TYPE)
        algorithm = r.pull_uint16()
        signature = r.pull_uint16_prefixed()
        _done(r, cls.TYPE)
        return cls(algorithm, signature)

    def encode(self) -> bytes:
        w = _start(self.TYPE)
        w.push_uint16(self.algorithm)
        w.push_uint16_prefixed(self.signature)
        return _finish(w)


@dataclass(slots=True)
class Finished:
    """RFC 8446 §4.4.4; the length of verify_data is checked by the caller."""

    verify_data: bytes

    TYPE = HandshakeType.FINISHED

    @classmethod
    def parse(cls, message: bytes) -> Self:
        return cls(_body(message, cls.TYPE).pull_rest())

    def encode(self) -> bytes:
        w = _start(self.TYPE)
        w.push_bytes(self.verify_data)
        return _finish(w)


@dataclass(slots=True)
class NewSessionTicket:
    """RFC 8446 §4.6.1 (kept for future resumption; not used yet)."""

    lifetime: int
    age_add: int
    nonce: bytes
    ticket: bytes
    extensions: Extensions = field(default_factory=dict)

    TYPE = HandshakeType.NEW_SESSION_TICKET

    @classmethod
    def parse(cls, message: bytes) -> Self:
        r = _body(message, cls.TYPE)
        lifetime = r.pull_uint32()
        age_add = r.pull_uint32()
        nonce = r.pull_uint8_prefixed()
        ticket = r.pull_uint16_prefixed()
        if not ticket:
            raise decode_error("empty ticket in NewSessionTicket")
        extensions = parse_extensions(r)
        _done(r, cls.TYPE)
        return cls(lifetime, age_add, nonce, ticket, extensions)

    def encode(self) -> bytes:
        w = _start(self.TYPE)
        w.push_uint32(self.lifetime)
        w.push_uint32(self.age_add)
        w.push_uint8_prefixed(self.nonce)
        w.push_uint16_prefixed(self.ticket)
        push_extensions(w, self.extensions)
        return _finish(w)


def message_hash(digest: bytes) -> bytes:
    """The synthetic ``message_hash`` message replacing ClientHello1 (RFC 8446 §4.4.1)."""
    return bytes((HandshakeType.MESSAGE_HASH, 0, 0, len(digest))) + digest
