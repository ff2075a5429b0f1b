"""TLS 1.3 cipher suites and the HKDF functions of RFC 5869 / RFC 8446 §7.1.

Shared by the TLS handshake (key schedule) and QUIC packet protection
(RFC 9001 §5.1), so it lives below both.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from enum import IntEnum
from typing import Any


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


# hmac.digest's own C function, without its Python frame (~30 calls per handshake).
hmac_digest: Callable[[bytes, bytes, str], bytes] = hmac.digest
try:
    import _hashlib

    hmac_digest = _hashlib.hmac_digest
except ImportError:  # pragma: no cover - a Python without OpenSSL's hashlib
    pass

# A keyed HMAC object, ``hmac_new(key, msg, hash_name)``: where one key MACs
# several messages, setting the key up once and copying the object per message
# saves most of an HMAC (OpenSSL 3 fetches the digest and hashes the key pads).
hmac_new: Callable[..., Any] = hmac.new
try:
    hmac_new = _hashlib.hmac_new
except NameError:  # pragma: no cover - a Python without OpenSSL's hashlib
    pass

_DIGEST_SIZES = {"sha256": 32, "sha384": 48}


def hkdf_extract(hash_name: str, salt: bytes, ikm: bytes) -> bytes:
    """HKDF-Extract (RFC 5869 §2.2). An empty salt means a string of zeros."""
    if not salt:
        size = _DIGEST_SIZES.get(hash_name)
        salt = bytes(size if size is not None else hashlib.new(hash_name).digest_size)
    return hmac_digest(salt, ikm, hash_name)


def hkdf_expand(hash_name: str, prk: bytes, info: bytes, length: int) -> bytes:
    """HKDF-Expand (RFC 5869 §2.3)."""
    if length <= _DIGEST_SIZES.get(hash_name, 0):
        # One block: T(1) = HMAC(PRK, info || 0x01). Every TLS 1.3 and QUIC label.
        return hmac_digest(prk, info + b"\x01", hash_name)[:length]
    output = b""
    block = b""
    counter = 1
    while len(output) < length:
        block = hmac_digest(prk, block + info + bytes((counter,)), hash_name)
        output += block
        counter += 1
    return output[:length]


# HkdfLabel up to the context (RFC 8446 §7.1), per (label, length): labels are constants.
_LABEL_PREFIXES: dict[tuple[bytes, int], bytes] = {}
_LABEL_PREFIXES_MAX = 256


def _label_prefix(label: bytes, length: int) -> bytes:
    full_label = b"tls13 " + label
    prefix = length.to_bytes(2, "big") + bytes((len(full_label),)) + full_label
    if len(_LABEL_PREFIXES) < _LABEL_PREFIXES_MAX:
        _LABEL_PREFIXES[(label, length)] = prefix
    return prefix


def hkdf_label(label: bytes, context: bytes, length: int) -> bytes:
    """The HkdfLabel structure (RFC 8446 §7.1), HKDF-Expand's ``info``;
    ``label`` is given without ``"tls13 "``."""
    prefix = _LABEL_PREFIXES.get((label, length)) or _label_prefix(label, length)
    return prefix + bytes((len(context),)) + context


def hkdf_expand_label(
    hash_name: str, secret: bytes, label: bytes, context: bytes, length: int
) -> bytes:
    """HKDF-Expand-Label (RFC 8446 §7.1); ``label`` is given without ``"tls13 "``."""
    return hkdf_expand(hash_name, secret, hkdf_label(label, context, length), length)


def derive_secrets(
    hash_name: str, secret: bytes, labels: tuple[tuple[bytes, bytes], ...]
) -> list[bytes]:
    """Derive-Secret (RFC 8446 §7.1) of ``secret`` for each ``(label, context)``,
    ``context`` being a transcript hash: one HMAC key setup, copied per label
    (every output is one hash block)."""
    length = _DIGEST_SIZES[hash_name]
    prk = hmac_new(secret, None, hash_name)
    out = []
    for label, context in labels:
        mac = prk.copy()
        mac.update(hkdf_label(label, context, length) + b"\x01")
        out.append(mac.digest())
    return out


class Epoch(IntEnum):
    """Encryption levels (RFC 9001 §4): the packet number spaces map onto them,
    with 0-RTT and 1-RTT sharing the application data space."""

    INITIAL = 0
    ZERO_RTT = 1
    HANDSHAKE = 2
    ONE_RTT = 3
