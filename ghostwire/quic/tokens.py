"""Address validation tokens and stateless reset tokens (RFC 9000 §8.1, §10.3).

Theory of operation
-------------------
*Stateless reset tokens* are ``HMAC-SHA256(static_key, label || cid)[:16]``:
the server can recompute the token of any connection ID it issued without
keeping state, and nobody without the key can predict it (RFC 9000 §10.3.2).

*Address validation tokens* let a server offload address validation state to
the client (RFC 9000 §8.1.4). A token is::

    kind (1) || nonce (12) || AES-256-GCM(issued_at || version || body)

with the kind byte and the client's IP address as associated data. The AEAD
makes tokens unforgeable and opaque; the IP in the associated data binds a
token to the address it was issued to without carrying that address; the
kind byte keeps Retry tokens and NEW_TOKEN tokens apart (RFC 9000 §8.1.3:
a server must tell them apart, and one must not pass for the other).
``issued_at`` makes tokens expire. Only the IP is bound, not the port: NAT
rebinding and new connections change ports (RFC 9000 §8.1.3).

Nonces are random (96 bits), which keeps AES-GCM safe for about 2^32 tokens
per key; servers that mint more should rotate keys.

This module is sans-IO: ``now`` is always passed in, in seconds, from a clock
that is consistent for the lifetime of the key (a monotonic clock is fine for
a per-process random key; a persisted key needs wall-clock time).
"""

from __future__ import annotations

import ipaddress
import os
import struct
from collections.abc import Callable
from enum import IntEnum
from typing import Any, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .suites import hkdf_expand, hkdf_extract
from .suites import hmac_new as _hmac_new

Address = tuple[str, int] | tuple[str, int, int, int]

STATELESS_RESET_TOKEN_SIZE: Final = 16
_MIN_KEY_SIZE: Final = 16
_NONCE_SIZE: Final = 12
_TAG_SIZE: Final = 16
_HEADER = struct.Struct("!dI")  # issued_at, QUIC version
_MAX_CID_LENGTH: Final = 20
_RESET_LABEL: Final = b"ghostwire stateless reset token\x00"
_TOKEN_KEY_SALT: Final = b"ghostwire address validation token"


class TokenKind(IntEnum):
    """The first byte of an address validation token."""

    RETRY = 0x52  # "R"
    NEW_TOKEN = 0x4E  # "N"


def token_kind(token: bytes) -> TokenKind | None:
    """Which kind of token ``token`` claims to be (unauthenticated), or None.

    Lets a server choose how strictly to validate (RFC 9000 §8.1.3); the
    claim is checked by the ``validate_*`` methods.
    """
    if not token:
        return None
    try:
        return TokenKind(token[0])
    except ValueError:
        return None


def stateless_reset_token(static_key: bytes, connection_id: bytes) -> bytes:
    """The 16-byte stateless reset token for ``connection_id`` (RFC 9000 §10.3.2).

    A keyed MAC of the connection ID, so it cannot be derived from the CID
    alone and is the same every time the server computes it.
    """
    if len(static_key) < _MIN_KEY_SIZE:
        raise ValueError(f"the static key must be at least {_MIN_KEY_SIZE} bytes")
    if type(static_key) is not bytes:
        static_key = bytes(static_key)  # a dict key
    keyed = _RESET_KEYS.get(static_key)
    if keyed is None:
        # The key is the server's, the same for every token: set up once.
        if len(_RESET_KEYS) >= _RESET_KEYS_MAX:
            _RESET_KEYS.clear()
        keyed = _RESET_KEYS[static_key] = _hmac_new(static_key, _RESET_LABEL, "sha256")
    mac = keyed.copy()
    mac.update(connection_id)
    digest: bytes = mac.digest()
    return digest[:STATELESS_RESET_TOKEN_SIZE]


# static key -> HMAC object keyed with it, fed _RESET_LABEL (copied per token).
_RESET_KEYS: dict[bytes, Any] = {}
_RESET_KEYS_MAX = 16


def _address_bytes(address: Address) -> bytes:
    """The client's IP in a canonical, tagged form (IPv4-mapped IPv6 folds to IPv4)."""
    host = address[0]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return b"h" + host.encode("utf-8", "surrogateescape")
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (b"4" if ip.version == 4 else b"6") + ip.packed


class AddressTokenMinter:
    """Mints and validates address validation tokens (RFC 9000 §8.1).

    ``secret_key`` (at least 16 bytes) is random when omitted; share one key
    between servers (or across restarts) to accept each other's tokens.
    ``random_bytes`` supplies nonces (and the key when none is given).
    """

    def __init__(
        self,
        secret_key: bytes | None = None,
        *,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        if secret_key is None:
            secret_key = random_bytes(32)
        if len(secret_key) < _MIN_KEY_SIZE:
            raise ValueError(f"the token key must be at least {_MIN_KEY_SIZE} bytes")
        prk = hkdf_extract("sha256", _TOKEN_KEY_SALT, secret_key)
        self._aead = AESGCM(hkdf_expand("sha256", prk, b"aes-256-gcm key", 32))
        self._random = random_bytes

    # -- Retry tokens (RFC 9000 §8.1.2) -----------------------------------------

    def mint_retry_token(
        self,
        client_address: Address,
        original_dcid: bytes,
        retry_scid: bytes,
        now: float,
        *,
        version: int = 1,
    ) -> bytes:
        """A token for a Retry packet. It carries the client's original DCID and
        the SCID of the Retry, both needed later for the transport parameters
        that authenticate the exchange (RFC 9000 §7.3)."""
        if len(original_dcid) > _MAX_CID_LENGTH or len(retry_scid) > _MAX_CID_LENGTH:
            raise ValueError("connection IDs are at most 20 bytes")
        body = bytes((len(original_dcid),)) + original_dcid + bytes((len(retry_scid),)) + retry_scid
        return self._seal(TokenKind.RETRY, client_address, now, version, body)

    def validate_retry_token(
        self,
        token: bytes,
        client_address: Address,
        now: float,
        lifetime: float = 10.0,
        *,
        version: int = 1,
    ) -> tuple[bytes, bytes] | None:
        """``(original_dcid, retry_scid)`` if ``token`` is a Retry token we
        minted for this client IP and version within ``lifetime`` seconds; else None."""
        body = self._open(TokenKind.RETRY, token, client_address, now, lifetime, version)
        if body is None:
            return None
        return _parse_retry_body(body)

    # -- NEW_TOKEN tokens (RFC 9000 §8.1.3) --------------------------------------

    def mint_new_token(self, client_address: Address, now: float, *, version: int = 1) -> bytes:
        """A token for a NEW_TOKEN frame, valid for future connections from
        this client IP and QUIC version (RFC 9369 §5: tokens are per version)."""
        return self._seal(TokenKind.NEW_TOKEN, client_address, now, version, b"")

    def validate_new_token(
        self,
        token: bytes,
        client_address: Address,
        now: float,
        lifetime: float = 86400.0,
        *,
        version: int = 1,
    ) -> bool:
        """Whether ``token`` is a NEW_TOKEN token we minted for this client IP
        and version within ``lifetime`` seconds."""
        body = self._open(TokenKind.NEW_TOKEN, token, client_address, now, lifetime, version)
        return body == b""

    # -- sealing -------------------------------------------------------------

    def _seal(
        self, kind: TokenKind, address: Address, now: float, version: int, body: bytes
    ) -> bytes:
        nonce = self._random(_NONCE_SIZE)
        if len(nonce) != _NONCE_SIZE:
            raise ValueError("random_bytes returned the wrong number of bytes")
        prefix = bytes((kind,))
        plaintext = _HEADER.pack(now, version) + body
        return (
            prefix + nonce + self._aead.encrypt(nonce, plaintext, prefix + _address_bytes(address))
        )

    def _open(
        self,
        kind: TokenKind,
        token: bytes,
        address: Address,
        now: float,
        lifetime: float,
        version: int,
    ) -> bytes | None:
        if len(token) < 1 + _NONCE_SIZE + _HEADER.size + _TAG_SIZE or token[0] != kind:
            return None
        prefix = bytes((kind,))
        nonce = bytes(token[1 : 1 + _NONCE_SIZE])
        try:
            plaintext = self._aead.decrypt(
                nonce, bytes(token[1 + _NONCE_SIZE :]), prefix + _address_bytes(address)
            )
        except InvalidTag:
            return None
        issued_at, token_version = _HEADER.unpack_from(plaintext)
        if token_version != version:
            return None  # RFC 9369 §5: reject tokens issued under another version
        if not 0.0 <= now - issued_at <= lifetime:  # also rejects NaN
            return None
        return plaintext[_HEADER.size :]


def _parse_retry_body(body: bytes) -> tuple[bytes, bytes] | None:
    """Split ``odcid_len || odcid || scid_len || scid``; None if malformed
    (only possible with a key compromise or a format change)."""
    if not body:
        return None
    odcid_end = 1 + body[0]
    if odcid_end >= len(body):
        return None
    scid_end = odcid_end + 1 + body[odcid_end]
    if scid_end != len(body):
        return None
    return body[1:odcid_end], body[odcid_end + 1 : scid_end]
