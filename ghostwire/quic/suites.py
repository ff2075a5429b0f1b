"""TLS 1.3 cipher suites and the HKDF functions of RFC 5869 / RFC 8446 §7.1.

Shared by the TLS handshake (key schedule) and QUIC packet protection
(RFC 9001 §5.1), so it lives below both.
"""

from __future__ import annotations

import hashlib
import hmac
from enum import IntEnum


class CipherSuite(IntEnum):
    """The TLS 1.3 cipher suites QUIC can use (RFC 9001 §5.3)."""

    AES_128_GCM_SHA256 = 0x1301
    AES_256_GCM_SHA384 = 0x1302
    CHACHA20_POLY1305_SHA256 = 0x1303

    @property
    def hash_name(self) -> str:
        """hashlib name of the suite's hash (``"sha256"`` or ``"sha384"``)."""
        return "sha384" if self is CipherSuite.AES_256_GCM_SHA384 else "sha256"

    @property
    def hash_length(self) -> int:
        return 48 if self is CipherSuite.AES_256_GCM_SHA384 else 32

    @property
    def key_length(self) -> int:
        """AEAD key length in bytes."""
        return 16 if self is CipherSuite.AES_128_GCM_SHA256 else 32

    @property
    def tls_name(self) -> str:
        """IANA name, e.g. ``TLS_AES_128_GCM_SHA256``."""
        return "TLS_" + self.name


def hkdf_extract(hash_name: str, salt: bytes, ikm: bytes) -> bytes:
    """HKDF-Extract (RFC 5869 §2.2). An empty salt means a string of zeros."""
    if not salt:
        salt = bytes(hashlib.new(hash_name).digest_size)
    return hmac.digest(salt, ikm, hash_name)


def hkdf_expand(hash_name: str, prk: bytes, info: bytes, length: int) -> bytes:
    """HKDF-Expand (RFC 5869 §2.3)."""
    output = b""
    block = b""
    counter = 1
    while len(output) < length:
        block = hmac.digest(prk, block + info + bytes((counter,)), hash_name)
        output += block
        counter += 1
    return output[:length]


def hkdf_expand_label(
    hash_name: str, secret: bytes, label: bytes, context: bytes, length: int
) -> bytes:
    """HKDF-Expand-Label (RFC 8446 §7.1); ``label`` is given without ``"tls13 "``."""
    full_label = b"tls13 " + label
    info = (
        length.to_bytes(2, "big")
        + bytes((len(full_label),))
        + full_label
        + bytes((len(context),))
        + context
    )
    return hkdf_expand(hash_name, secret, info, length)


class Epoch(IntEnum):
    """Encryption levels (RFC 9001 §4): the packet number spaces map onto them,
    with 0-RTT and 1-RTT sharing the application data space."""

    INITIAL = 0
    ZERO_RTT = 1
    HANDSHAKE = 2
    ONE_RTT = 3
