"""Packet protection behaviour beyond the RFC vectors: round trips for every
suite and version, tampering, key updates, Retry packets, AEAD limits."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from ghostwire.quic.crypto import (
    AEAD_TAG_SIZE,
    DecryptionFailed,
    PacketKeys,
    confidentiality_limit,
    derive_initial_secrets,
    encode_retry,
    integrity_limit,
    protect_packet,
    remove_header_protection,
    verify_retry,
)
from ghostwire.quic.errors import PacketDropped
from ghostwire.quic.suites import CipherSuite, hkdf_expand_label

QUIC_V1 = 0x00000001
QUIC_V2 = 0x6B3343CF
VERSIONS = [QUIC_V1, QUIC_V2]
SUITES = list(CipherSuite)

all_suites = pytest.mark.parametrize("suite", SUITES, ids=lambda s: s.name)
all_versions = pytest.mark.parametrize("version", VERSIONS, ids=["v1", "v2"])


def make_keys(suite: CipherSuite, version: int = QUIC_V1, seed: int = 1) -> PacketKeys:
    secret = bytes((seed + i) % 256 for i in range(suite.hash_length))
    return PacketKeys.from_secret(suite, secret, version)


def long_header(
    pn: int, pn_length: int, payload_length: int, dcid: bytes = b"\x11" * 8
) -> bytearray:
    """A Handshake-style long header (v1 type bits 0b10) ending with the packet number."""
    first = 0xC0 | (0b10 << 4) | (pn_length - 1)
    length = pn_length + payload_length + AEAD_TAG_SIZE
    header = bytearray((first,)) + (1).to_bytes(4, "big")
    header += bytes((len(dcid),)) + dcid + b"\x04" + b"\x22" * 4
    header += (0x4000 | length).to_bytes(2, "big")
    header += (pn & ((1 << (8 * pn_length)) - 1)).to_bytes(pn_length, "big")
    return header


def short_header(
    pn: int, pn_length: int, dcid: bytes = b"\x33" * 8, key_phase: int = 0
) -> bytearray:
    first = 0x40 | (key_phase << 2) | (pn_length - 1)
    header = bytearray((first,)) + dcid
    header += (pn & ((1 << (8 * pn_length)) - 1)).to_bytes(pn_length, "big")
    return header


def build(
    long: bool, pn: int, pn_length: int, payload: bytes, dcid: bytes = b"\x33" * 8
) -> tuple[bytearray, int]:
    """(plaintext packet, pn_offset)."""
    header = (
        long_header(pn, pn_length, len(payload), dcid)
        if long
        else short_header(pn, pn_length, dcid)
    )
    return header + payload, len(header) - pn_length


def unprotect(keys: PacketKeys, wire: bytes, pn_offset: int, pn: int) -> tuple[bytearray, bytes]:
    """Receive side: header protection off, then open with the full packet number."""
    header, _ = remove_header_protection(keys, wire, pn_offset)
    return header, keys.open(pn, header, wire[len(header) :])


# -- round trips ---------------------------------------------------------------


@all_suites
@all_versions
@pytest.mark.parametrize("long", [True, False], ids=["long", "short"])
@pytest.mark.parametrize("pn_length", [1, 2, 3, 4])
def test_round_trip(suite: CipherSuite, version: int, long: bool, pn_length: int) -> None:
    keys = make_keys(suite, version)
    pn = 0x12345678 & ((1 << (8 * pn_length)) - 1)
    payload = os.urandom(1100)
    plain, pn_offset = build(long, pn, pn_length, payload)
    wire = protect_packet(keys, plain, pn_offset, pn_length, pn)
    assert len(wire) == len(plain) + AEAD_TAG_SIZE
    assert payload not in wire
    header, opened = unprotect(keys, wire, pn_offset, pn)
    assert bytes(header) == plain[: pn_offset + pn_length]
    assert opened == payload


@all_suites
def test_full_packet_number_feeds_the_nonce(suite: CipherSuite) -> None:
    """The nonce uses the full 62-bit packet number, not the truncated one on
    the wire (RFC 9001 §5.3)."""
    keys = make_keys(suite)
    pn = (1 << 40) + 0x0102
    plain, pn_offset = build(False, pn, 2, b"\x01" * 40)
    wire = protect_packet(keys, plain, pn_offset, 2, pn)
    header, _ = remove_header_protection(keys, wire, pn_offset)
    assert header[pn_offset:] == b"\x01\x02"
    assert keys.open(pn, header, wire[len(header) :]) == b"\x01" * 40
    with pytest.raises(DecryptionFailed):
        keys.open(0x0102, header, wire[len(header) :])


@all_suites
def test_minimum_padding_is_enough_and_less_is_a_bug(suite: CipherSuite) -> None:
    """RFC 9001 §5.4.2: packet number + payload must be at least 4 bytes."""
    keys = make_keys(suite)
    plain, pn_offset = build(False, 7, 1, b"\x01\x00\x00")  # 1 + 3 bytes: just enough
    wire = protect_packet(keys, plain, pn_offset, 1, 7)
    assert len(wire) == pn_offset + 4 + 16  # the sample ends exactly at the packet end
    assert unprotect(keys, wire, pn_offset, 7)[1] == b"\x01\x00\x00"
    short, pn_offset = build(False, 7, 1, b"\x01\x00")
    with pytest.raises(ValueError, match="sample"):
        protect_packet(keys, short, pn_offset, 1, 7)


def test_protect_rejects_inconsistent_arguments() -> None:
    keys = make_keys(CipherSuite.AES_128_GCM_SHA256)
    plain, pn_offset = build(False, 7, 2, b"\x00" * 30)
    with pytest.raises(ValueError, match="length bits"):
        protect_packet(keys, plain, pn_offset, 3, 7)
    with pytest.raises(ValueError):
        protect_packet(keys, plain, pn_offset, 5, 7)
    with pytest.raises(ValueError):
        protect_packet(keys, plain, pn_offset, 2, -1)
    with pytest.raises(ValueError):
        protect_packet(keys, plain, pn_offset, 2, 1 << 62)


# -- header protection ---------------------------------------------------------


@all_suites
@pytest.mark.parametrize("long", [True, False], ids=["long", "short"])
def test_header_protection_covers_exactly_the_protected_bits(
    suite: CipherSuite, long: bool
) -> None:
    """4 low bits of the first byte for long headers, 5 for short ones, plus
    the packet number; everything else in the header is untouched (RFC 9001 §5.4.1)."""
    keys = make_keys(suite)
    protected_bits = 0x0F if long else 0x1F
    seen_low_bits = set()
    seen_pn_bytes = set()
    for pn in range(64):
        plain, pn_offset = build(long, pn, 4, bytes(20))
        wire = protect_packet(keys, plain, pn_offset, 4, pn)
        assert wire[0] & ~protected_bits & 0xFF == plain[0] & ~protected_bits & 0xFF
        assert wire[1:pn_offset] == plain[1:pn_offset]
        seen_low_bits.add(wire[0] & protected_bits)
        seen_pn_bytes.add(bytes(wire[pn_offset : pn_offset + 4]))
    assert len(seen_low_bits) > 4  # the masked bits really vary
    assert len(seen_pn_bytes) == 64


@all_suites
def test_header_mask_matches_the_rfc_definition(suite: CipherSuite) -> None:
    """AES-ECB(hp, sample)[:5], or ChaCha20 keyed by hp with the sample as
    counter || nonce over five zero bytes (RFC 9001 §5.4.3, §5.4.4)."""
    keys = make_keys(suite)
    for _ in range(20):
        sample = os.urandom(16)
        if suite is CipherSuite.CHACHA20_POLY1305_SHA256:
            chacha = Cipher(algorithms.ChaCha20(keys.hp_key, sample), mode=None)
            expected = chacha.encryptor().update(bytes(5))
        else:
            aes = Cipher(algorithms.AES(keys.hp_key), modes.ECB())
            expected = aes.encryptor().update(sample)[:5]
        assert keys.header_mask(sample) == expected


@all_suites
def test_header_mask_has_no_state_between_calls(suite: CipherSuite) -> None:
    """The cipher context is reused across packets; it must not carry over."""
    keys = make_keys(suite)
    a, b = os.urandom(16), os.urandom(16)
    first = keys.header_mask(a)
    keys.header_mask(b)
    assert keys.header_mask(memoryview(bytearray(a))) == first
    assert len(first) == 5


def test_header_mask_rejects_wrong_sample_size() -> None:
    keys = make_keys(CipherSuite.AES_128_GCM_SHA256)
    with pytest.raises(ValueError):
        keys.header_mask(bytes(15))


@all_suites
def test_too_short_to_sample_is_dropped(suite: CipherSuite) -> None:
    keys = make_keys(suite)
    plain, pn_offset = build(False, 1, 1, b"\x01\x00\x00")
    wire = protect_packet(keys, plain, pn_offset, 1, 1)
    with pytest.raises(PacketDropped):
        remove_header_protection(keys, wire[:-1], pn_offset)


# -- tampering -----------------------------------------------------------------


@all_suites
@pytest.mark.parametrize("long", [True, False], ids=["long", "short"])
def test_every_flipped_bit_is_detected(suite: CipherSuite, long: bool) -> None:
    keys = make_keys(suite)
    pn = 0x0A0B
    plain, pn_offset = build(long, pn, 2, b"\x06\x00\x05hello" + bytes(12), dcid=b"\x44" * 4)
    wire = protect_packet(keys, plain, pn_offset, 2, pn)
    for bit in range(len(wire) * 8):
        tampered = bytearray(wire)
        tampered[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(PacketDropped):
            header, pn_length = remove_header_protection(keys, tampered, pn_offset)
            truncated = int.from_bytes(header[pn_offset:], "big")
            # a receiver expecting packet 0x0A0B reconstructs the full number
            full = (pn & ~((1 << (8 * pn_length)) - 1)) | truncated
            keys.open(full, header, tampered[len(header) :])


@all_suites
def test_open_rejects_short_wrong_and_foreign_input(suite: CipherSuite) -> None:
    keys = make_keys(suite)
    header = b"\x40\x01"
    sealed = keys.seal(1, header, b"payload")
    assert keys.open(1, header, sealed) == b"payload"
    for bad in (sealed[:-1] + bytes((sealed[-1] ^ 1,)), sealed[:15], b""):
        with pytest.raises(DecryptionFailed):
            keys.open(1, header, bad)
    with pytest.raises(DecryptionFailed):
        keys.open(2, header, sealed)
    with pytest.raises(DecryptionFailed):
        keys.open(1, b"\x40\x02", sealed)
    with pytest.raises(DecryptionFailed):
        make_keys(suite, seed=2).open(1, header, sealed)
    with pytest.raises(DecryptionFailed):
        keys.open(-1, header, sealed)
    assert issubclass(DecryptionFailed, PacketDropped)


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=80), pn_offset=st.integers(1, 40), pn=st.integers(0, 2**62 - 1))
def test_garbage_only_ever_drops(data: bytes, pn_offset: int, pn: int) -> None:
    """Network input can only make the receive path raise PacketDropped."""
    keys = make_keys(CipherSuite.AES_128_GCM_SHA256)
    try:
        header, _ = remove_header_protection(keys, data, pn_offset)
        keys.open(pn, header, data[len(header) :])
    except PacketDropped:
        return
    pytest.fail("random bytes authenticated")


# -- key update ----------------------------------------------------------------


@all_suites
@all_versions
def test_next_phase_changes_aead_keys_and_keeps_header_protection(
    suite: CipherSuite, version: int
) -> None:
    keys = make_keys(suite, version)
    updated = keys.next_phase()
    label = b"quic ku" if version == QUIC_V1 else b"quicv2 ku"
    expected = hkdf_expand_label(suite.hash_name, keys.secret, label, b"", suite.hash_length)
    assert updated.secret == expected  # RFC 9001 §6.1 / RFC 9369 §3.3.2
    assert (updated.cipher_suite, updated.version) == (suite, version)
    assert updated.key != keys.key and updated.iv != keys.iv
    assert updated.hp_key == keys.hp_key
    assert updated.next_phase().secret != updated.secret
    assert updated.next_phase().hp_key == keys.hp_key


@all_suites
def test_packets_of_one_phase_do_not_open_with_the_other(suite: CipherSuite) -> None:
    keys = make_keys(suite)
    updated = keys.next_phase()
    plain, pn_offset = build(False, 9, 2, bytes(30))
    old_wire = protect_packet(keys, plain, pn_offset, 2, 9)
    new_wire = protect_packet(updated, plain, pn_offset, 2, 9)
    # header protection is shared: either key set removes it from either packet
    assert remove_header_protection(updated, old_wire, pn_offset)[0] == plain[: pn_offset + 2]
    assert unprotect(updated, new_wire, pn_offset, 9)[1] == bytes(30)
    with pytest.raises(DecryptionFailed):
        unprotect(updated, old_wire, pn_offset, 9)
    with pytest.raises(DecryptionFailed):
        unprotect(keys, new_wire, pn_offset, 9)


def test_from_secret_validates_its_inputs() -> None:
    with pytest.raises(ValueError, match="48 bytes"):
        PacketKeys.from_secret(CipherSuite.AES_256_GCM_SHA384, bytes(32), QUIC_V1)
    with pytest.raises(ValueError, match="version"):
        PacketKeys.from_secret(CipherSuite.AES_128_GCM_SHA256, bytes(32), 0xFF00001D)
    with pytest.raises(ValueError, match="version"):
        derive_initial_secrets(b"\x01" * 8, 0x0A0A0A0A)


def test_suite_key_sizes() -> None:
    assert len(make_keys(CipherSuite.AES_128_GCM_SHA256).key) == 16
    assert len(make_keys(CipherSuite.AES_256_GCM_SHA384).key) == 32
    chacha = make_keys(CipherSuite.CHACHA20_POLY1305_SHA256)
    assert (len(chacha.key), len(chacha.hp_key), len(chacha.iv)) == (32, 32, 12)


@all_versions
def test_initial_secrets_depend_on_dcid_and_version(version: int) -> None:
    client, server = derive_initial_secrets(b"\x01" * 8, version)
    assert client != server and len(client) == len(server) == 32
    assert derive_initial_secrets(b"\x02" * 8, version)[0] != client
    other = QUIC_V2 if version == QUIC_V1 else QUIC_V1
    assert derive_initial_secrets(b"\x01" * 8, other)[0] != client
    assert len(derive_initial_secrets(b"", version)[0]) == 32  # zero-length DCID after Retry


# -- Retry ---------------------------------------------------------------------


@all_versions
def test_retry_round_trip_and_layout(version: int) -> None:
    packet = encode_retry(
        version=version,
        dcid=b"\x01\x02\x03",
        scid=b"\x09" * 20,
        original_dcid=b"\x07" * 8,
        token=b"opaque token",
        first_byte_random=0x35,
    )
    retry_type = 0b11 if version == QUIC_V1 else 0b00  # RFC 9369 §3.2
    assert packet[0] == 0xC0 | (retry_type << 4) | 0x05
    assert packet[1:5] == version.to_bytes(4, "big")
    assert packet[5:9] == b"\x03\x01\x02\x03"
    assert packet[9:30] == b"\x14" + b"\x09" * 20
    assert packet[30:-16] == b"opaque token"
    assert verify_retry(packet, b"\x07" * 8, version)
    assert verify_retry(memoryview(packet), b"\x07" * 8, version)


@all_versions
def test_retry_tampering_is_detected(version: int) -> None:
    packet = encode_retry(
        version=version, dcid=b"\x01", scid=b"\x02" * 8, original_dcid=b"\x03" * 8, token=b"t"
    )
    for i in range(len(packet)):
        tampered = bytearray(packet)
        tampered[i] ^= 0x10
        assert not verify_retry(bytes(tampered), b"\x03" * 8, version)
    assert not verify_retry(packet[:-1], b"\x03" * 8, version)
    assert not verify_retry(packet[:10], b"\x03" * 8, version)
    assert not verify_retry(b"", b"\x03" * 8, version)


def test_encode_retry_rejects_our_own_mistakes() -> None:
    with pytest.raises(ValueError, match="token"):
        encode_retry(version=QUIC_V1, dcid=b"", scid=b"\x01", original_dcid=b"\x02", token=b"")
    with pytest.raises(ValueError):
        encode_retry(version=QUIC_V1, dcid=b"\x00" * 21, scid=b"", original_dcid=b"", token=b"t")
    with pytest.raises(ValueError):
        encode_retry(version=0x12345678, dcid=b"", scid=b"", original_dcid=b"", token=b"t")


# -- AEAD limits (RFC 9001 §6.6) -----------------------------------------------


def test_aead_limits() -> None:
    aes = (CipherSuite.AES_128_GCM_SHA256, CipherSuite.AES_256_GCM_SHA384)
    for suite in aes:
        assert confidentiality_limit(suite) == 2**23
        assert integrity_limit(suite) == 2**52
    chacha = CipherSuite.CHACHA20_POLY1305_SHA256
    assert confidentiality_limit(chacha) >= 2**62  # beyond any packet number
    assert integrity_limit(chacha) == 2**36


# -- cross-check with an independent implementation ---------------------------


@pytest.mark.interop
@all_suites
@all_versions
def test_aioquic_opens_our_packets_and_we_open_theirs(suite: CipherSuite, version: int) -> None:
    aioquic_crypto = pytest.importorskip("aioquic.quic.crypto")
    aioquic_tls = pytest.importorskip("aioquic.tls")
    keys = make_keys(suite, version)
    theirs = aioquic_crypto.CryptoContext()
    theirs.setup(
        cipher_suite=aioquic_tls.CipherSuite(int(suite)), secret=keys.secret, version=version
    )
    for long in (True, False):
        for pn in (0, 1, 300, 70000):
            payload = os.urandom(200)
            plain, pn_offset = build(long, pn, 4, payload)
            header = bytes(plain[: pn_offset + 4])
            ours = protect_packet(keys, plain, pn_offset, 4, pn)
            assert ours == theirs.encrypt_packet(header, payload, pn)
            _, plain_payload, decoded_pn, _ = theirs.decrypt_packet(ours, pn_offset, pn)
            assert (plain_payload, decoded_pn) == (payload, pn)


def _derived(keys: object) -> bool:
    """Whether the AEAD context exists yet (without asking __getattr__ to make it)."""
    try:
        object.__getattribute__(keys, "_aead")
    except AttributeError:
        return False
    return True


@all_suites
@all_versions
@pytest.mark.parametrize("first_use", ["protect", "unprotect", "next_phase"])
def test_lazy_keys_derive_on_first_use_and_match_eager_ones(
    suite: CipherSuite, version: int, first_use: str
) -> None:
    secret = bytes(range(suite.hash_length))
    eager = PacketKeys.from_secret(suite, secret, version)
    lazy = PacketKeys.from_secret(suite, secret, version, lazy=True)
    assert _derived(eager) and not _derived(lazy)
    assert (lazy.key, lazy.iv, lazy.hp_key) == (eager.key, eager.iv, eager.hp_key)
    assert not _derived(lazy)  # the exposed values are derived apart from the contexts
    plain, pn_offset = build(True, 7, 2, bytes(40))
    if first_use == "protect":
        wire = protect_packet(lazy, plain, pn_offset, 2, 7)
        assert wire == protect_packet(eager, plain, pn_offset, 2, 7)
    elif first_use == "unprotect":
        wire = protect_packet(eager, plain, pn_offset, 2, 7)
        assert unprotect(lazy, wire, pn_offset, 7)[1] == bytes(40)
    else:
        assert lazy.next_phase().key == eager.next_phase().key
    assert _derived(lazy)
    with pytest.raises(AttributeError):
        lazy.no_such_attribute  # type: ignore[attr-defined]  # noqa: B018
