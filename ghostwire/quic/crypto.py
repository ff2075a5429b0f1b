"""QUIC packet protection: RFC 9001 §5-6, with the QUIC v2 changes of RFC 9369 §3.3.

Theory of operation
-------------------
Every protected packet goes through two layers:

1. **AEAD** (RFC 9001 §5.3): the payload is sealed with the negotiated AEAD;
   the nonce is the IV XOR the full packet number, the associated data is the
   whole unprotected header up to and including the packet number.
2. **Header protection** (RFC 9001 §5.4): a 5-byte mask, computed from a
   16-byte sample of the *ciphertext*, hides the low bits of the first byte
   (packet number length, reserved bits, key phase) and the packet number.

:class:`PacketKeys` holds what one direction needs at one encryption level and
one key phase: the AEAD object (built once) and the header-protection context
(built once and shared by every key phase, because a key update keeps the
header-protection key, RFC 9001 §6.1). Sending is :func:`protect_packet`;
receiving is :func:`remove_header_protection` followed by
:meth:`PacketKeys.open` once the caller has decoded the full packet number.

Initial keys come from :func:`derive_initial_secrets`; Retry packets are not
encrypted, only tagged (:func:`encode_retry`, :func:`verify_retry`). Versions 1
and 2 differ only in constants: the initial salt, the HKDF labels, the Retry
key and nonce, and the Retry packet type bits.

Convention: every ``data``/``packet`` argument starts at the first byte of the
QUIC packet (offset 0), so ``pn_offset`` counts from the packet start. Callers
with coalesced packets pass a ``memoryview`` slice of the datagram.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from .buffer import Bytes
from .errors import PacketDropped
from .suites import CipherSuite, hkdf_label
from .suites import hmac_digest as _hmac_digest
from .suites import hmac_new as _hmac_new

_ECB: Final = modes.ECB()

# Same values as ghostwire.quic.packet's constants (kept local: no import cycle).
_QUIC_V1: Final = 0x00000001
_QUIC_V2: Final = 0x6B3343CF

INITIAL_SALT_V1: Final = bytes.fromhex("38762cf7f55934b34d179ae6a4c80cadccbb7f0a")  # RFC 9001 §5.2
INITIAL_SALT_V2: Final = bytes.fromhex(
    "0dede3def700a6db819381be6e269dcbf9bd2ed9"
)  # RFC 9369 §3.3.1

AEAD_TAG_SIZE: Final = 16
SAMPLE_SIZE: Final = 16
# RFC 9001 §5.4.2: the sample starts 4 bytes after the packet number field start.
_SAMPLE_OFFSET: Final = 4
_MAX_CID_LENGTH: Final = 20
_IV_LENGTH: Final = 12
_MAX_PACKET_NUMBER: Final = (1 << 62) - 1
_FIVE_ZEROS: Final = bytes(5)
_LONG_HEADER_BIT: Final = 0x80


class DecryptionFailed(PacketDropped):
    """A packet failed AEAD authentication (or was too short to carry a tag).

    RFC 9001 §5.5 / RFC 9000 §12.2: such packets are dropped silently; the
    connection counts them against the integrity limit (RFC 9001 §6.6).
    """


@dataclass(frozen=True, slots=True)
class _VersionParams:
    initial_salt: bytes
    key_label: bytes
    iv_label: bytes
    hp_label: bytes
    ku_label: bytes
    retry_key: bytes
    retry_nonce: bytes
    retry_type: int  # the two long-header type bits of a Retry packet


_VERSIONS: Final[dict[int, _VersionParams]] = {
    _QUIC_V1: _VersionParams(
        initial_salt=INITIAL_SALT_V1,
        key_label=b"quic key",
        iv_label=b"quic iv",
        hp_label=b"quic hp",
        ku_label=b"quic ku",
        # RFC 9001 §5.8
        retry_key=bytes.fromhex("be0c690b9f66575a1d766b54e368c84e"),
        retry_nonce=bytes.fromhex("461599d35d632bf2239825bb"),
        retry_type=0b11,
    ),
    _QUIC_V2: _VersionParams(
        initial_salt=INITIAL_SALT_V2,
        # RFC 9369 §3.3.2
        key_label=b"quicv2 key",
        iv_label=b"quicv2 iv",
        hp_label=b"quicv2 hp",
        ku_label=b"quicv2 ku",
        # RFC 9369 §3.3.3
        retry_key=bytes.fromhex("8fb4b01b56ac48e260fbcbcead7ccc92"),
        retry_nonce=bytes.fromhex("d86969bc2d7c6d9990efb04a"),
        retry_type=0b00,  # RFC 9369 §3.2
    ),
}

_RETRY_AEADS: Final = {version: AESGCM(p.retry_key) for version, p in _VERSIONS.items()}


def _params(version: int) -> _VersionParams:
    try:
        return _VERSIONS[version]
    except KeyError:
        raise _unknown_version(version) from None


def _unknown_version(version: int) -> ValueError:
    return ValueError(f"no packet protection defined for QUIC version 0x{version:08x}")


def supported_versions() -> tuple[int, ...]:
    """The QUIC versions this module can protect packets for."""
    return tuple(_VERSIONS)


# -- initial secrets ---------------------------------------------------------


def derive_initial_secrets(dcid: bytes, version: int) -> tuple[bytes, bytes]:
    """The (client, server) Initial secrets for the client's first DCID (RFC 9001 §5.2).

    Both use SHA-256 and AEAD_AES_128_GCM whatever suite TLS later picks.
    """
    # HKDF-Extract is HMAC keyed with the version's constant salt: that key is
    # set up once (_SALTED) and copied; both labels share one keyed object.
    salted = _SALTED.get(version)
    if salted is None:
        raise _unknown_version(version)
    extract = salted.copy()
    extract.update(dcid)
    prk = _hmac_new(extract.digest(), digestmod="sha256")
    client = prk.copy()
    client.update(_CLIENT_IN_INFO)
    prk.update(_SERVER_IN_INFO)
    return client.digest(), prk.digest()


_SALTED: Final = {
    version: _hmac_new(p.initial_salt, digestmod="sha256") for version, p in _VERSIONS.items()
}


# -- header protection -------------------------------------------------------


class _MaskFunction(Protocol):
    """sample -> at least 5 bytes, of which the first 5 are the mask (RFC 9001 §5.4.1)."""

    def __call__(self, sample: Bytes, /) -> bytes: ...


def _public_ecb_context(key: bytes) -> Any:
    return Cipher(algorithms.AES(key), _ECB).encryptor()


def _ecb_context_maker() -> Callable[[bytes], Any]:
    """How the AES-ECB contexts of header protection are made (six per
    connection and side). ``Cipher(...).encryptor()`` spends ~1 us per context
    on Python checks (ABC ``isinstance`` of the algorithm and the mode, ~8 per
    context) before it calls cryptography's Rust binding; that binding is
    called directly when it exists and gives RFC 9001 §A.2's mask for its
    sample, else the public API is used."""
    try:
        from cryptography.hazmat.bindings._rust import openssl as rust_openssl

        create = rust_openssl.ciphers.create_encryption_ctx

        def direct(key: bytes) -> Any:
            return create(algorithms.AES(key), _ECB)

        # RFC 9001 §A.2: the client Initial's hp key, sample and mask.
        key = bytes.fromhex("9f50449e04a0e810283a1e9933adedd2")
        sample = bytes.fromhex("d1b1c98dd7689fb8ec11d242b123dc9b")
        if direct(key).update(sample)[:5] == bytes.fromhex("437b9aec36"):
            return direct
    except Exception:  # any change in cryptography's internals: the public API
        pass
    return _public_ecb_context


_ecb_context: Final = _ecb_context_maker()


def _aes_mask_function(hp_key: bytes) -> _MaskFunction:
    """RFC 9001 §5.4.3: mask = AES-ECB(hp_key, sample). One ECB context, reused:
    ECB keeps no state between whole blocks and every sample is one block.

    The mask is the context's bound ``update`` itself (no closure: a function,
    its cell and tuple are ~240 bytes per direction). It returns the whole
    16-byte block; the mask is its first 5 bytes, and the callers read only those.
    """
    update: _MaskFunction = _ecb_context(hp_key).update
    return update


def _chacha_mask_function(hp_key: bytes) -> _MaskFunction:
    """RFC 9001 §5.4.4: mask = ChaCha20(hp_key, counter=sample[0:4] (little
    endian), nonce=sample[4:16]) over five zero bytes. cryptography's 16-byte
    ChaCha20 "nonce" is exactly counter || nonce, i.e. the sample itself."""
    context = Cipher(algorithms.ChaCha20(hp_key, bytes(16)), mode=None).encryptor()
    reset_nonce = context.reset_nonce
    update = context.update

    def mask(sample: Bytes) -> bytes:
        reset_nonce(bytes(sample))
        return update(_FIVE_ZEROS)

    return mask


def _mask_function(cipher_suite: CipherSuite, hp_key: bytes) -> _MaskFunction:
    if cipher_suite is _CHACHA20:
        return _chacha_mask_function(hp_key)
    return _aes_mask_function(hp_key)


# -- packet keys -------------------------------------------------------------


def _aead_for(cipher_suite: CipherSuite, key: bytes) -> AESGCM | ChaCha20Poly1305:
    if cipher_suite is _CHACHA20:
        return ChaCha20Poly1305(key)
    return AESGCM(key)


@dataclass(frozen=True, slots=True)
class _SuiteLabels:
    """What deriving packet keys needs for one (suite, version): the HKDF
    ``info || 0x01`` of each label (RFC 8446 §7.1 HkdfLabel; every output is
    one hash block long, so HKDF-Expand is a single HMAC) and the lengths."""

    hash_name: str
    hash_length: int
    key_length: int
    key_info: bytes
    iv_info: bytes
    hp_info: bytes
    ku_info: bytes


def _hkdf_block_info(label: bytes, length: int) -> bytes:
    """HKDF-Expand's input for one block of ``label`` (empty context): T(1)."""
    return hkdf_label(label, b"", length) + b"\x01"


# The Initial secrets' HkdfLabel blocks (RFC 9001 §5.2), for derive_initial_secrets.
_CLIENT_IN_INFO: Final = _hkdf_block_info(b"client in", 32)
_SERVER_IN_INFO: Final = _hkdf_block_info(b"server in", 32)

# Enum members read per packet or per handshake, as globals: on CPython 3.11
# ``Enum.MEMBER`` takes EnumType.__getattr__'s slow path (~1 K instructions
# a read, against ~10 for a global).
_CHACHA20 = CipherSuite.CHACHA20_POLY1305_SHA256


def _suite_labels(cipher_suite: CipherSuite, version: int) -> _SuiteLabels:
    params = _params(version)
    key_length = cipher_suite.key_length
    hash_length = cipher_suite.hash_length
    return _SuiteLabels(
        hash_name=cipher_suite.hash_name,
        hash_length=hash_length,
        key_length=key_length,
        key_info=_hkdf_block_info(params.key_label, key_length),
        iv_info=_hkdf_block_info(params.iv_label, _IV_LENGTH),
        hp_info=_hkdf_block_info(params.hp_label, key_length),
        ku_info=_hkdf_block_info(params.ku_label, hash_length),
    )


_LABELS: Final[dict[tuple[CipherSuite, int], _SuiteLabels]] = {
    (suite, version): _suite_labels(suite, version)
    for suite in CipherSuite
    for version in _VERSIONS
}


def _labels(cipher_suite: CipherSuite, version: int) -> _SuiteLabels:
    labels = _LABELS.get((cipher_suite, version))
    if labels is None:
        _params(version)  # the error for an unknown version
        raise ValueError(f"unknown cipher suite {cipher_suite!r}")
    return labels


# The slots PacketKeys.from_secret leaves for the first use to fill.
_LAZY_SLOTS: Final = frozenset({"_aead", "_iv_int", "_mask"})


class PacketKeys:
    """Packet protection for one direction, one encryption level, one key phase.

    Build with :meth:`from_secret`; derive the next key phase with
    :meth:`next_phase`. ``key``, ``iv`` and ``hp_key`` are exposed for tests
    and logging, derived again when read (not kept: ~140 bytes per direction);
    the hot path uses the cipher objects built once here.
    """

    __slots__ = (
        "_aead",
        "_hp_secret",
        "_iv_int",
        "_labels",
        "_mask",
        "cipher_suite",
        "secret",
        "version",
    )

    def __init__(
        self,
        cipher_suite: CipherSuite,
        secret: bytes,
        version: int,
        hp_secret: bytes,
        mask_function: _MaskFunction,
    ) -> None:
        """Internal: use :meth:`from_secret`. ``hp_secret`` is the secret the
        header-protection key came from (the first key phase's: RFC 9001 §6.1),
        ``mask_function`` the (shared) header-protection function for it."""
        self._set_keys(cipher_suite, secret, version, hp_secret, mask_function, None)

    def _set_keys(
        self,
        cipher_suite: CipherSuite,
        secret: bytes,
        version: int,
        hp_secret: bytes,
        mask_function: _MaskFunction | None,
        prk: Any,
    ) -> None:
        """``prk``: an HMAC object keyed with ``secret`` and nothing else (used up), or
        None. ``mask_function`` None: derive it from ``secret`` (RFC 9001 §5.4)."""
        labels = _labels(cipher_suite, version)
        self.cipher_suite = cipher_suite
        self.secret = secret
        self.version = version
        self._labels = labels
        # RFC 9001 §5.1: key and IV from HKDF-Expand-Label(secret, "quic key"/"quic iv"),
        # each one HMAC block; one keyed HMAC object copied per label.
        if prk is None:
            prk = _hmac_new(secret, digestmod=labels.hash_name)
        if mask_function is None:
            hp_hmac = prk.copy()
            hp_hmac.update(labels.hp_info)
            mask_function = _mask_function(cipher_suite, hp_hmac.digest()[: labels.key_length])
        # Neither is kept (``key``, ``iv`` and ``hp_key`` derive them again
        # when read: ~140 bytes per direction).
        key_hmac = prk.copy()
        key_hmac.update(labels.key_info)
        prk.update(labels.iv_info)  # its last use
        self._hp_secret = hp_secret  # the same object as ``secret`` but after a key update
        self._aead = _aead_for(cipher_suite, key_hmac.digest()[: labels.key_length])
        self._iv_int = int.from_bytes(prk.digest()[:_IV_LENGTH], "big")
        self._mask = mask_function

    @property
    def key(self) -> bytes:
        """The AEAD key: HKDF-Expand-Label(secret, "quic key") (RFC 9001 §5.1)."""
        labels = self._labels
        return _hmac_digest(self.secret, labels.key_info, labels.hash_name)[: labels.key_length]

    @property
    def iv(self) -> bytes:
        """The IV: HKDF-Expand-Label(secret, "quic iv") (RFC 9001 §5.1)."""
        labels = self._labels
        return _hmac_digest(self.secret, labels.iv_info, labels.hash_name)[:_IV_LENGTH]

    @property
    def hp_key(self) -> bytes:
        """The header-protection key: HKDF-Expand-Label(secret, "quic hp") of the
        first key phase's secret (a key update keeps it, RFC 9001 §6.1)."""
        labels = self._labels
        return _hmac_digest(self._hp_secret, labels.hp_info, labels.hash_name)[: labels.key_length]

    @classmethod
    def from_secret(
        cls, cipher_suite: CipherSuite, secret: bytes, version: int, *, lazy: bool = False
    ) -> PacketKeys:
        """Keys from a TLS traffic secret (or an Initial secret), RFC 9001 §5.1.

        ``lazy``: derive the AEAD and header-protection contexts on first use
        instead (for keys installed before they are needed; the first use
        then costs ~10 K instructions more than an eager derivation).
        """
        if type(cipher_suite) is not CipherSuite:
            cipher_suite = CipherSuite(cipher_suite)
        labels = _labels(cipher_suite, version)
        if len(secret) != labels.hash_length:
            raise ValueError(
                f"{cipher_suite.tls_name} secrets are {labels.hash_length} bytes, got {len(secret)}"
            )
        keys = cls.__new__(cls)
        if not lazy:
            keys._set_keys(cipher_suite, secret, version, secret, None, None)
            return keys
        # The slots _set_keys would fill stay unset until __getattr__ is asked for one.
        keys.cipher_suite = cipher_suite
        keys.secret = secret
        keys.version = version
        keys._labels = labels
        keys._hp_secret = secret
        return keys

    if not TYPE_CHECKING:  # (a __getattr__ would make every misspelt attribute Any)

        def __getattr__(self, name: str) -> Any:
            """Called only for an unset slot: the ones from_secret leaves, derived together."""
            if name not in _LAZY_SLOTS:
                raise AttributeError(name)
            self._derive()
            return object.__getattribute__(self, name)

    def _derive(self) -> None:
        secret = self.secret
        self._set_keys(self.cipher_suite, secret, self.version, secret, None, None)

    def next_phase(self) -> PacketKeys:
        """The keys of the next key phase (RFC 9001 §6.1).

        secret' = HKDF-Expand-Label(secret, "quic ku", "", Hash.length); the
        AEAD key and IV are derived from it, the header-protection key is kept.
        """
        labels = self._labels
        secret = _hmac_digest(self.secret, labels.ku_info, labels.hash_name)
        return PacketKeys(self.cipher_suite, secret, self.version, self._hp_secret, self._mask)

    def header_mask(self, sample: Bytes) -> bytes:
        """The 5-byte header-protection mask for a 16-byte ciphertext sample (RFC 9001 §5.4)."""
        if len(sample) != SAMPLE_SIZE:
            raise ValueError(
                f"header protection samples are {SAMPLE_SIZE} bytes, got {len(sample)}"
            )
        return self._mask(sample)[:5]

    def _nonce(self, pn: int) -> bytes:
        # RFC 9001 §5.3: the packet number, left-padded to the IV size, XOR the IV.
        return (self._iv_int ^ pn).to_bytes(_IV_LENGTH, "big")

    def seal(self, pn: int, header: Bytes, payload: Bytes) -> bytes:
        """Encrypt ``payload``; returns ciphertext || 16-byte tag. ``header`` is
        the unprotected header through the packet number (the AAD)."""
        if not 0 <= pn <= _MAX_PACKET_NUMBER:
            raise ValueError(f"packet number {pn} out of range")
        return self._aead.encrypt(self._nonce(pn), payload, header)

    def open(self, pn: int, header: Bytes, ciphertext: Bytes) -> bytes:
        """Decrypt and authenticate; raises :class:`DecryptionFailed` on failure."""
        if len(ciphertext) < AEAD_TAG_SIZE:
            raise DecryptionFailed("ciphertext shorter than the AEAD tag")
        if not 0 <= pn <= _MAX_PACKET_NUMBER:
            raise DecryptionFailed(f"packet number {pn} out of range")
        try:
            return self._aead.decrypt(self._nonce(pn), ciphertext, header)
        except InvalidTag:
            raise DecryptionFailed("AEAD authentication failed") from None

    def __repr__(self) -> str:
        return f"PacketKeys({self.cipher_suite.tls_name}, version=0x{self.version:08x})"


# -- whole packets -----------------------------------------------------------


def _first_byte_mask(first_byte: int) -> int:
    # RFC 9001 §5.4.1: 4 protected bits in long headers, 5 in short headers.
    return 0x0F if first_byte & _LONG_HEADER_BIT else 0x1F


def protect_packet(
    keys: PacketKeys, packet: bytearray, pn_offset: int, pn_length: int, pn: int
) -> bytes:
    """Seal the payload and apply header protection; returns the wire packet.

    ``packet`` is the plaintext header (packet number already written at
    ``pn_offset``, its length in the first byte's low two bits) followed by
    the plaintext payload. It is not modified. The payload must be padded so
    the 16-byte sample exists (RFC 9001 §5.4.2): packet number plus payload
    of at least 4 bytes; a shorter one is our bug and raises ``ValueError``.
    """
    header_end = pn_offset + pn_length
    if not 1 <= pn_length <= 4 or pn_offset < 1 or len(packet) < header_end:
        raise ValueError("packet number field out of range")
    if (packet[0] & 0x03) + 1 != pn_length:
        raise ValueError("first byte's packet number length bits disagree with pn_length")
    if len(packet) < pn_offset + _SAMPLE_OFFSET:
        raise ValueError("payload too short for the header protection sample; pad it")
    # Slicing copies, but cryptography takes bytearrays faster than memoryviews.
    header = packet[:header_end]
    ciphertext = keys.seal(pn, header, packet[header_end:])
    sample_start = _SAMPLE_OFFSET - pn_length
    mask = keys._mask(ciphertext[sample_start : sample_start + SAMPLE_SIZE])
    header[0] ^= mask[0] & _first_byte_mask(header[0])
    for i in range(pn_length):
        header[pn_offset + i] ^= mask[1 + i]
    return bytes(header) + ciphertext


def remove_header_protection(
    keys: PacketKeys, data: Bytes, pn_offset: int
) -> tuple[bytearray, int]:
    """Undo header protection of the packet starting at ``data[0]``.

    Returns a copy of the header from the first byte through the packet
    number, unprotected (the AEAD's associated data), and the packet number
    length. ``data`` may extend past this packet (only the sample is read).
    Raises :class:`PacketDropped` if the packet is too short to sample
    (RFC 9001 §5.4.2: such packets MUST be discarded).
    """
    sample_start = pn_offset + _SAMPLE_OFFSET
    if pn_offset < 1 or len(data) < sample_start + SAMPLE_SIZE:
        raise PacketDropped("packet too short for the header protection sample")
    mask = keys._mask(data[sample_start : sample_start + SAMPLE_SIZE])
    first = data[0] ^ (mask[0] & _first_byte_mask(data[0]))
    pn_length = (first & 0x03) + 1
    header = bytearray(data[: pn_offset + pn_length])
    header[0] = first
    for i in range(pn_length):
        header[pn_offset + i] ^= mask[1 + i]
    return header, pn_length


# -- Retry integrity ---------------------------------------------------------


def retry_integrity_tag(original_dcid: bytes, retry_without_tag: Bytes, version: int) -> bytes:
    """The Retry Integrity Tag (RFC 9001 §5.8; RFC 9369 §3.3.3 for v2).

    AES-128-GCM with a fixed key and nonce over an empty plaintext; the AAD is
    the Retry pseudo-packet: ODCID length, ODCID, then the Retry packet
    without its tag.
    """
    params = _params(version)
    if len(original_dcid) > _MAX_CID_LENGTH:
        raise ValueError("connection IDs are at most 20 bytes")
    pseudo_packet = bytes((len(original_dcid),)) + original_dcid + bytes(retry_without_tag)
    return _RETRY_AEADS[version].encrypt(params.retry_nonce, b"", pseudo_packet)


def encode_retry(
    *,
    version: int,
    dcid: bytes,
    scid: bytes,
    original_dcid: bytes,
    token: bytes,
    first_byte_random: int = 0,
) -> bytes:
    """A complete Retry packet (RFC 9000 §17.2.5) with its integrity tag.

    ``dcid`` is the client's SCID, ``scid`` the server's new CID, ``original_dcid``
    the DCID of the client's Initial. The low 4 bits of the first byte are
    unused and taken from ``first_byte_random``.
    """
    params = _params(version)
    if len(dcid) > _MAX_CID_LENGTH or len(scid) > _MAX_CID_LENGTH:
        raise ValueError("connection IDs are at most 20 bytes")
    if not token:
        # RFC 9000 §17.2.5.2: a client discards a Retry with an empty token.
        raise ValueError("a Retry packet needs a non-empty token")
    first_byte = 0xC0 | (params.retry_type << 4) | (first_byte_random & 0x0F)
    body = (
        bytes((first_byte,))
        + version.to_bytes(4, "big")
        + bytes((len(dcid),))
        + dcid
        + bytes((len(scid),))
        + scid
        + token
    )
    return body + retry_integrity_tag(original_dcid, body, version)


def verify_retry(packet: Bytes, original_dcid: bytes, version: int) -> bool:
    """Whether ``packet`` (a whole Retry packet) carries a valid integrity tag
    for ``original_dcid`` under ``version`` (RFC 9001 §5.8)."""
    # first byte, version, two CID lengths, tag
    if len(packet) < 1 + 4 + 1 + 1 + AEAD_TAG_SIZE:
        return False
    split = len(packet) - AEAD_TAG_SIZE
    expected = retry_integrity_tag(original_dcid, packet[:split], version)
    return hmac.compare_digest(expected, bytes(packet[split:]))


# -- AEAD usage limits (RFC 9001 §6.6) ---------------------------------------


def confidentiality_limit(cipher_suite: CipherSuite) -> int:
    """Packets one key may protect before a key update is due (RFC 9001 §6.6).

    AES-GCM: 2^23. ChaCha20-Poly1305: the limit exceeds the number of possible
    packets, so the packet number space (2^62) is returned.
    """
    if cipher_suite is _CHACHA20:
        return 1 << 62
    return 1 << 23


def integrity_limit(cipher_suite: CipherSuite) -> int:
    """Packets failing authentication, across all keys of a connection, after
    which it closes with AEAD_LIMIT_REACHED (RFC 9001 §6.6).

    AES-GCM: 2^52. ChaCha20-Poly1305: 2^36.
    """
    if cipher_suite is _CHACHA20:
        return 1 << 36
    return 1 << 52
