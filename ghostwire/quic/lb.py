"""QUIC-LB connection IDs (draft-ietf-quic-load-balancers-21).

A layer-4 load balancer in front of several servers must send every packet
of a connection to the same server, even after the client's address
changes. QUIC-LB makes that possible without per-connection state: each
server writes its *server ID* into every connection ID it issues, and the
load balancer reads it back out of the Destination Connection ID.

Layout (draft §5.2)::

    CID = first octet || plaintext block (possibly encrypted)
    first octet = config rotation (3 bits) || length - 1 or random (5 bits)
    plaintext block = server ID (server_id_length) || nonce (nonce_length)

Without a key the block is sent as is. With a 16-byte key it is encrypted:
one AES-128-ECB block when the block is exactly 16 bytes (§5.4.1), otherwise
a four-pass Feistel network with AES-ECB as round function (§5.4.2).

:class:`QuicLbCidGenerator` is a ``ServerConfig.cid_generator``: the server
then issues only QUIC-LB CIDs. :func:`decode_server_id` is what a load
balancer does. Everything here is sans-IO; randomness is injectable.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ..errors import GhostwireError

UNROUTABLE_CONFIG_ID = 0b111  # draft §3.2: "no configuration"; never a real config
MAX_CID_LENGTH = 20  # RFC 9000 §17.2
_BLOCK = 16


class QuicLbError(GhostwireError, ValueError):
    """A QUIC-LB configuration or connection ID that cannot be used."""


@dataclass(frozen=True, kw_only=True)
class QuicLbConfig:
    """One QUIC-LB configuration (draft §5.3), shared by servers and load balancer."""

    config_id: int
    """Config rotation codepoint, 0-6, in the top three bits of every CID."""
    server_id_length: int
    """Bytes of server ID, at least 1."""
    nonce_length: int
    """Bytes of nonce, at least 4; with the server ID at most 19."""
    key: bytes | None = field(default=None, repr=False)
    """16-byte AES key: encrypted CIDs. ``None``: plaintext (linkable) CIDs."""
    encode_length: bool = True
    """Write ``cid_length - 1`` into the low five bits of the first octet (§3.3)."""

    def __post_init__(self) -> None:
        if not 0 <= self.config_id < UNROUTABLE_CONFIG_ID:
            raise QuicLbError("config_id must be 0..6 (0b111 means unroutable, draft §3.2)")
        if self.server_id_length < 1:
            raise QuicLbError("server_id_length must be at least 1 (draft §5.1)")
        if self.nonce_length < 4:
            raise QuicLbError("nonce_length must be at least 4 (draft §5.3)")
        if self.server_id_length + self.nonce_length > MAX_CID_LENGTH - 1:
            raise QuicLbError("server_id_length + nonce_length must be at most 19 (draft §5.3)")
        if self.key is not None and len(self.key) != _BLOCK:
            raise QuicLbError("a QUIC-LB key is 16 bytes (AES-128)")

    @property
    def plaintext_length(self) -> int:
        return self.server_id_length + self.nonce_length

    @property
    def cid_length(self) -> int:
        return 1 + self.plaintext_length


# -- the cipher ----------------------------------------------------------------


class _CidCipher:
    """Encrypts and decrypts the plaintext block of one keyed configuration."""

    def __init__(self, key: bytes, length: int) -> None:
        self._length = length
        self._half = (length + 1) // 2
        self._odd = length % 2 == 1
        cipher = Cipher(algorithms.AES(key), modes.ECB())
        self._encrypt_block = cipher.encryptor().update
        self._decrypt_block = cipher.decryptor().update

    def encrypt(self, plaintext: bytes) -> bytes:
        if self._length == _BLOCK:  # §5.4.1: single pass
            return self._encrypt_block(plaintext)
        left, right = self._split(plaintext)
        right = self._mix(right, left, 1, first_half=False)
        left = self._mix(left, right, 2, first_half=True)
        right = self._mix(right, left, 3, first_half=False)
        left = self._mix(left, right, 4, first_half=True)
        return self._join(left, right)

    def decrypt(self, ciphertext: bytes) -> bytes:
        if self._length == _BLOCK:
            return self._decrypt_block(ciphertext)
        left, right = self._split(ciphertext)
        left = self._mix(left, right, 4, first_half=True)
        right = self._mix(right, left, 3, first_half=False)
        left = self._mix(left, right, 2, first_half=True)
        right = self._mix(right, left, 1, first_half=False)
        return self._join(left, right)

    def _split(self, block: bytes) -> tuple[bytes, bytes]:
        """§5.4.2 step 2: equal halves; with an odd length the middle octet is shared,
        left keeping its high nibble and right its low nibble."""
        half = self._half
        left = bytearray(block[:half])
        right = bytearray(block[self._length - half :])
        if self._odd:
            left[-1] &= 0xF0
            right[0] &= 0x0F
        return bytes(left), bytes(right)

    def _join(self, left: bytes, right: bytes) -> bytes:
        if not self._odd:
            return left + right
        middle = left[-1] | right[0]
        return left[:-1] + bytes([middle]) + right[1:]

    def _mix(self, target: bytes, source: bytes, round_: int, *, first_half: bool) -> bytes:
        """target XOR truncate(AES(expand(length, round, source)), half), with the
        nibble of an odd-length half that belongs to the other side cleared."""
        expanded = source + bytes(_BLOCK - 2 - len(source)) + bytes([self._length, round_])
        pad = self._encrypt_block(expanded)
        out = bytearray(a ^ b for a, b in zip(target, pad, strict=False))
        if self._odd:
            if first_half:
                out[-1] &= 0xF0
            else:
                out[0] &= 0x0F
        return bytes(out)


# -- encoding and decoding ---------------------------------------------------------


class QuicLbCodec:
    """Builds and reads the CIDs of one configuration (a load balancer keeps one
    per config rotation codepoint)."""

    def __init__(self, config: QuicLbConfig) -> None:
        self.config = config
        self._cipher = (
            _CidCipher(config.key, config.plaintext_length) if config.key is not None else None
        )

    def encode(self, server_id: bytes, nonce: bytes, *, random_bits: int = 0) -> bytes:
        """The CID for ``server_id`` and ``nonce`` (§5.4). ``random_bits`` fill the
        low five bits of the first octet when the length is not encoded."""
        config = self.config
        if len(server_id) != config.server_id_length or len(nonce) != config.nonce_length:
            raise QuicLbError("server ID or nonce of the wrong length for this configuration")
        low = config.plaintext_length if config.encode_length else random_bits & 0x1F
        first = (config.config_id << 5) | low
        block = server_id + nonce
        if self._cipher is not None:
            block = self._cipher.encrypt(block)
        return bytes([first]) + block

    def decode(self, cid: bytes) -> tuple[bytes, bytes]:
        """(server ID, nonce) of a CID of this configuration; raises QuicLbError
        for one that is not (a load balancer then falls back, draft §4)."""
        config = self.config
        if len(cid) < config.cid_length:
            raise QuicLbError("connection ID too short for this configuration")
        if cid[0] >> 5 != config.config_id:
            raise QuicLbError("connection ID of another configuration")
        block = bytes(cid[1 : config.cid_length])
        if self._cipher is not None:
            block = self._cipher.decrypt(block)
        return block[: config.server_id_length], block[config.server_id_length :]


def decode_server_id(configs: dict[int, QuicLbCodec], dcid: bytes) -> bytes | None:
    """What a load balancer does with a DCID: the server ID, or None when the CID
    is unroutable (unknown config, 0b111, too short) and 4-tuple routing applies."""
    if not dcid:
        return None
    codec = configs.get(dcid[0] >> 5)
    if codec is None:
        return None
    try:
        return codec.decode(dcid)[0]
    except QuicLbError:
        return None


class QuicLbCidGenerator:
    """A ``ServerConfig.cid_generator`` issuing QUIC-LB CIDs for one server.

    Nonces: with a key, a counter from a random start (§8.6: never reused under
    one key; exhausting it raises, time for a new configuration); without a
    key, random bytes (plaintext nonces must not be linkable).
    ``nonce_prefix`` pins the first nonce bytes (``serve(workers=N)`` puts the
    worker index there, readable only in plaintext configurations).
    """

    def __init__(
        self,
        config: QuicLbConfig,
        server_id: bytes,
        *,
        nonce_prefix: bytes = b"",
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        if len(server_id) != config.server_id_length:
            raise QuicLbError(f"server_id must be {config.server_id_length} bytes")
        if len(nonce_prefix) > config.nonce_length - 4:
            raise QuicLbError("nonce_prefix leaves fewer than 4 nonce bytes")
        if nonce_prefix and config.key is not None:
            raise QuicLbError("a nonce prefix is only visible in plaintext configurations")
        self.config = config
        self.server_id = server_id
        self.nonce_prefix = nonce_prefix
        self._codec = QuicLbCodec(config)
        self._random = random_bytes
        self._free_length = config.nonce_length - len(nonce_prefix)
        self._counter_start = int.from_bytes(random_bytes(self._free_length), "big")
        self._issued = 0

    @property
    def cid_length(self) -> int:
        return self.config.cid_length

    def with_nonce_prefix(self, prefix: bytes) -> QuicLbCidGenerator:
        return QuicLbCidGenerator(
            self.config, self.server_id, nonce_prefix=prefix, random_bytes=self._random
        )

    def __call__(self) -> bytes:
        if self.config.key is None:
            nonce = self.nonce_prefix + self._random(self._free_length)
        else:
            space = 1 << (8 * self._free_length)
            if self._issued >= space:
                raise QuicLbError("QUIC-LB nonce space exhausted: rotate the configuration")
            value = (self._counter_start + self._issued) % space
            self._issued += 1
            nonce = value.to_bytes(self._free_length, "big")
        return self._codec.encode(self.server_id, nonce, random_bits=self._random(1)[0])


__all__ = [
    "UNROUTABLE_CONFIG_ID",
    "QuicLbCidGenerator",
    "QuicLbCodec",
    "QuicLbConfig",
    "QuicLbError",
    "decode_server_id",
]
