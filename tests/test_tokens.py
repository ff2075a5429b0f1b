"""Address validation tokens and stateless reset tokens (RFC 9000 §8.1, §10.3)."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ghostwire.quic.tokens import (
    AddressTokenMinter,
    TokenKind,
    stateless_reset_token,
    token_kind,
)

CLIENT = ("192.0.2.7", 4433)
ODCID = bytes(range(8))
RETRY_SCID = b"\xaa" * 8
KEY = b"k" * 32


def counter_random() -> Callable[[int], bytes]:
    """A deterministic random_bytes: distinct nonces, reproducible tests."""
    counter = itertools.count()

    def random_bytes(n: int) -> bytes:
        return next(counter).to_bytes(n, "big")

    return random_bytes


# -- stateless reset -----------------------------------------------------------


def test_stateless_reset_token_is_stable_keyed_and_per_cid() -> None:
    token = stateless_reset_token(KEY, b"\x01" * 8)
    assert len(token) == 16
    assert stateless_reset_token(KEY, b"\x01" * 8) == token  # recomputable without state
    assert stateless_reset_token(KEY, b"\x02" * 8) != token
    assert stateless_reset_token(b"K" * 32, b"\x01" * 8) != token  # needs the key
    assert token not in (b"\x01" * 16, bytes(16))


def test_stateless_reset_token_needs_a_real_key() -> None:
    with pytest.raises(ValueError):
        stateless_reset_token(b"short", b"\x01" * 8)


# -- Retry tokens ----------------------------------------------------------------


def test_retry_token_round_trip() -> None:
    minter = AddressTokenMinter(KEY)
    token = minter.mint_retry_token(CLIENT, ODCID, RETRY_SCID, now=100.0)
    assert token_kind(token) is TokenKind.RETRY
    assert minter.validate_retry_token(token, CLIENT, now=100.0) == (ODCID, RETRY_SCID)
    assert minter.validate_retry_token(token, CLIENT, now=109.9) == (ODCID, RETRY_SCID)


@pytest.mark.parametrize(
    ("odcid", "scid"), [(b"", b""), (b"\x01" * 20, b"\x02" * 20), (b"\x05", b"")]
)
def test_retry_token_carries_any_cid_lengths(odcid: bytes, scid: bytes) -> None:
    minter = AddressTokenMinter(KEY)
    token = minter.mint_retry_token(CLIENT, odcid, scid, now=1.0)
    assert minter.validate_retry_token(token, CLIENT, now=2.0) == (odcid, scid)


def test_retry_token_expires() -> None:
    minter = AddressTokenMinter(KEY)
    token = minter.mint_retry_token(CLIENT, ODCID, RETRY_SCID, now=100.0)
    assert minter.validate_retry_token(token, CLIENT, now=110.5) is None  # default 10 s
    assert minter.validate_retry_token(token, CLIENT, now=130.0, lifetime=60.0) is not None
    assert minter.validate_retry_token(token, CLIENT, now=99.0) is None  # from the future
    assert minter.validate_retry_token(token, CLIENT, now=float("nan")) is None


@pytest.mark.parametrize(
    "other",
    [("192.0.2.8", 4433), ("198.51.100.7", 4433), ("2001:db8::7", 4433), ("::", 4433)],
)
def test_retry_token_rejects_other_addresses(other: tuple[str, int]) -> None:
    minter = AddressTokenMinter(KEY)
    token = minter.mint_retry_token(CLIENT, ODCID, RETRY_SCID, now=0.0)
    assert minter.validate_retry_token(token, other, now=1.0) is None


def test_token_binds_the_ip_not_the_port() -> None:
    """RFC 9000 §8.1.3: the client port is not expected to stay the same."""
    minter = AddressTokenMinter(KEY)
    token = minter.mint_retry_token(CLIENT, ODCID, RETRY_SCID, now=0.0)
    assert minter.validate_retry_token(token, ("192.0.2.7", 5555), now=1.0) is not None
    new = minter.mint_new_token(CLIENT, now=0.0)
    assert minter.validate_new_token(new, ("192.0.2.7", 1), now=1.0)


def test_ipv4_mapped_ipv6_is_the_same_client() -> None:
    minter = AddressTokenMinter(KEY)
    token = minter.mint_retry_token(("::ffff:192.0.2.7", 1, 0, 0), ODCID, RETRY_SCID, now=0.0)
    assert minter.validate_retry_token(token, CLIENT, now=1.0) == (ODCID, RETRY_SCID)


def test_ipv6_clients() -> None:
    minter = AddressTokenMinter(KEY)
    token = minter.mint_new_token(("2001:db8::1", 443, 0, 0), now=0.0)
    assert minter.validate_new_token(token, ("2001:db8:0:0::1", 80), now=1.0)
    assert not minter.validate_new_token(token, ("2001:db8::2", 443), now=1.0)


def test_retry_token_tampering_is_rejected() -> None:
    minter = AddressTokenMinter(KEY)
    token = minter.mint_retry_token(CLIENT, ODCID, RETRY_SCID, now=0.0)
    for i in range(len(token)):
        for bit in (0x01, 0x80):
            tampered = bytearray(token)
            tampered[i] ^= bit
            assert minter.validate_retry_token(bytes(tampered), CLIENT, now=1.0) is None
    assert minter.validate_retry_token(token[:-1], CLIENT, now=1.0) is None
    assert minter.validate_retry_token(token + b"\x00", CLIENT, now=1.0) is None
    assert minter.validate_retry_token(b"", CLIENT, now=1.0) is None


def test_tokens_only_validate_with_the_minting_key() -> None:
    token = AddressTokenMinter(KEY).mint_retry_token(CLIENT, ODCID, RETRY_SCID, now=0.0)
    assert AddressTokenMinter(b"x" * 32).validate_retry_token(token, CLIENT, now=1.0) is None
    assert AddressTokenMinter().validate_retry_token(token, CLIENT, now=1.0) is None
    # a shared key (e.g. a server farm) accepts the other instance's tokens
    assert AddressTokenMinter(KEY).validate_retry_token(token, CLIENT, now=1.0) is not None


def test_tokens_are_opaque_and_unique() -> None:
    """RFC 9000 §8.1.3/§8.1.4: tokens reveal nothing and are not repeated."""
    minter = AddressTokenMinter(KEY)
    first = minter.mint_retry_token(CLIENT, ODCID, RETRY_SCID, now=0.0)
    second = minter.mint_retry_token(CLIENT, ODCID, RETRY_SCID, now=0.0)
    assert first != second
    assert ODCID not in first and RETRY_SCID not in first
    assert b"\xc0\x00\x02\x07" not in first  # the client's IP
    new_tokens = {minter.mint_new_token(CLIENT, now=0.0) for _ in range(50)}
    assert len(new_tokens) == 50


def test_injected_randomness_makes_tokens_reproducible() -> None:
    a = AddressTokenMinter(random_bytes=counter_random())
    b = AddressTokenMinter(random_bytes=counter_random())
    assert a.mint_new_token(CLIENT, now=5.0) == b.mint_new_token(CLIENT, now=5.0)


def test_bad_keys_and_randomness_are_refused() -> None:
    with pytest.raises(ValueError):
        AddressTokenMinter(b"too short")
    minter = AddressTokenMinter(KEY, random_bytes=lambda n: b"\x00")
    with pytest.raises(ValueError):
        minter.mint_new_token(CLIENT, now=0.0)
    with pytest.raises(ValueError):
        AddressTokenMinter(KEY).mint_retry_token(CLIENT, b"\x00" * 21, RETRY_SCID, now=0.0)


# -- NEW_TOKEN tokens -------------------------------------------------------------


def test_new_token_round_trip_and_expiry() -> None:
    minter = AddressTokenMinter(KEY)
    token = minter.mint_new_token(CLIENT, now=1000.0)
    assert token_kind(token) is TokenKind.NEW_TOKEN
    assert minter.validate_new_token(token, CLIENT, now=1000.0 + 86000)
    assert not minter.validate_new_token(token, CLIENT, now=1000.0 + 86401)
    assert not minter.validate_new_token(token, CLIENT, now=1060.0, lifetime=30.0)
    assert not minter.validate_new_token(token, ("192.0.2.99", 4433), now=1001.0)


def test_new_token_tampering_is_rejected() -> None:
    minter = AddressTokenMinter(KEY)
    token = minter.mint_new_token(CLIENT, now=0.0)
    for i in range(len(token)):
        tampered = bytearray(token)
        tampered[i] ^= 0x04
        assert not minter.validate_new_token(bytes(tampered), CLIENT, now=1.0)


def test_retry_and_new_token_tokens_are_not_interchangeable() -> None:
    """RFC 9000 §8.1.3: a server must tell them apart; one never passes as the other."""
    minter = AddressTokenMinter(KEY)
    retry = minter.mint_retry_token(CLIENT, ODCID, RETRY_SCID, now=0.0)
    new = minter.mint_new_token(CLIENT, now=0.0)
    assert minter.validate_new_token(retry, CLIENT, now=1.0) is False
    assert minter.validate_retry_token(new, CLIENT, now=1.0) is None
    # relabelling the kind byte does not help: it is authenticated
    relabelled_retry = bytes((TokenKind.NEW_TOKEN,)) + retry[1:]
    relabelled_new = bytes((TokenKind.RETRY,)) + new[1:]
    assert minter.validate_new_token(relabelled_retry, CLIENT, now=1.0) is False
    assert minter.validate_retry_token(relabelled_new, CLIENT, now=1.0) is None


def test_tokens_are_bound_to_the_quic_version() -> None:
    """RFC 9369 §5: a token from a v1 connection is not accepted for v2."""
    minter = AddressTokenMinter(KEY)
    v2 = 0x6B3343CF
    new = minter.mint_new_token(CLIENT, now=0.0, version=v2)
    assert minter.validate_new_token(new, CLIENT, now=1.0, version=v2)
    assert not minter.validate_new_token(new, CLIENT, now=1.0)  # default: v1
    retry = minter.mint_retry_token(CLIENT, ODCID, RETRY_SCID, now=0.0)
    assert minter.validate_retry_token(retry, CLIENT, now=1.0, version=v2) is None


def test_token_kind_of_unknown_tokens() -> None:
    assert token_kind(b"") is None
    assert token_kind(b"\x00abc") is None


@settings(max_examples=300, deadline=None)
@given(token=st.binary(max_size=120))
def test_random_tokens_never_validate_or_raise(token: bytes) -> None:
    minter = AddressTokenMinter(KEY)
    assert minter.validate_retry_token(token, CLIENT, now=1.0) is None
    assert minter.validate_new_token(token, CLIENT, now=1.0) is False
