"""QUIC-LB connection IDs (draft-ietf-quic-load-balancers-21) against the draft's
test vectors, and against a load-balancer decoder written here, independently of
ghostwire.quic.lb, from the draft's "Load Balancer Actions" text (§5.5)."""

from __future__ import annotations

import os
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st
from quic_pair import client_config, handshake, make_pair, server_config

from ghostwire.errors import GhostwireError
from ghostwire.quic.connection import QuicConnection
from ghostwire.quic.demux import Demux
from ghostwire.quic.lb import (
    QuicLbCidGenerator,
    QuicLbCodec,
    QuicLbConfig,
    QuicLbError,
    decode_server_id,
)

h = bytes.fromhex

# -- an independent load balancer, from the draft's pseudocode -------------------------


def lb_decode(cid: bytes, sid_len: int, nonce_len: int, key: bytes | None) -> bytes:
    """Extract the server ID the way draft §5.5 tells a load balancer to."""
    plaintext_len = sid_len + nonce_len
    body = cid[1 : 1 + plaintext_len]
    if key is None:
        return body[:sid_len]
    ecb = Cipher(algorithms.AES(key), modes.ECB())
    if plaintext_len == 16:
        return ecb.decryptor().update(body)[:sid_len]
    half_len = (plaintext_len + 1) // 2
    odd = plaintext_len % 2 == 1

    def aes(data: bytes) -> bytes:
        return ecb.encryptor().update(data)

    def expand(pass_: int, input_bytes: bytes) -> bytes:
        # input_bytes || zero pad || length (8) || pass (8): 16 octets
        return input_bytes + b"\x00" * (14 - len(input_bytes)) + bytes([plaintext_len, pass_])

    def xor(a: bytes, b: bytes) -> bytes:
        return bytes(x ^ y for x, y in zip(a, b, strict=False))

    def clear_last_bits(value: bytes) -> bytes:
        return value[:-1] + bytes([value[-1] & 0xF0]) if odd else value

    def clear_first_bits(value: bytes) -> bytes:
        return bytes([value[0] & 0x0F]) + value[1:] if odd else value

    left_2 = clear_last_bits(body[:half_len])
    right_2 = clear_first_bits(body[plaintext_len - half_len :])
    left_1 = clear_last_bits(xor(left_2, aes(expand(4, right_2))[:half_len]))
    right_1 = clear_first_bits(xor(right_2, aes(expand(3, left_1))[:half_len]))
    left_0 = clear_last_bits(xor(left_1, aes(expand(2, right_1))[:half_len]))
    if sid_len <= len(left_0) - (1 if odd else 0):
        return left_0[:sid_len]  # three passes were enough: the server ID is in left_0
    right_0 = clear_first_bits(xor(right_1, aes(expand(1, left_0))[:half_len]))
    if odd:  # left_0's low nibble and right_0's high nibble are the shared octet
        plain = left_0[:-1] + bytes([left_0[-1] | right_0[0]]) + right_0[1:]
    else:
        plain = left_0 + right_0
    return plain[:sid_len]


# -- the draft's test vectors (Appendix B) ---------------------------------------------

KEY = h("8f95f09245765f80256934e50c66207f")

# (config rotation, server ID, nonce, CID). The config ID is read from each
# CID's first octet: in the last vector the draft's table says 3 but its CID
# starts 0x12 (config 0, length 18).
ENCRYPTED = [
    (0, "ed793a", "ee080dbf", "0720b1d07b359d3c"),
    (1, "ed793a51d49b8f5fab65", "ee080dbf48", "2fcc381bc74cb4fbad2823a3d1f8fed2"),
    (2, "ed793a51d49b8f5f", "ee080dbf48c0d1e5", "504dd2d05a7b0de9b2b9907afb5ecf8cc3"),
    (0, "ed793a51d49b8f5fab", "ee080dbf48c0d1e55d", "125779c9cc86beb3a3a4a3ca96fce4bfe0cdbc"),
]
# The second plaintext vector of the draft has a nine-digit nonce and a CID
# whose first octet disagrees with its config; only the first is well formed.
PLAINTEXT = [(0, "c4605e", "4504cc4f", "07c4605e4504cc4f")]


def _config(cr: int, sid: str, nonce: str, key: bytes | None) -> QuicLbConfig:
    return QuicLbConfig(
        config_id=cr, server_id_length=len(sid) // 2, nonce_length=len(nonce) // 2, key=key
    )


@pytest.mark.parametrize(("cr", "sid", "nonce", "cid"), ENCRYPTED)
def test_encrypted_vectors(cr: int, sid: str, nonce: str, cid: str) -> None:
    codec = QuicLbCodec(_config(cr, sid, nonce, KEY))
    assert codec.encode(h(sid), h(nonce)).hex() == cid
    assert codec.decode(h(cid)) == (h(sid), h(nonce))
    assert lb_decode(h(cid), len(sid) // 2, len(nonce) // 2, KEY) == h(sid)


@pytest.mark.parametrize(("cr", "sid", "nonce", "cid"), PLAINTEXT)
def test_plaintext_vectors(cr: int, sid: str, nonce: str, cid: str) -> None:
    codec = QuicLbCodec(_config(cr, sid, nonce, None))
    assert codec.encode(h(sid), h(nonce)).hex() == cid
    assert codec.decode(h(cid)) == (h(sid), h(nonce))
    assert lb_decode(h(cid), len(sid) // 2, len(nonce) // 2, None) == h(sid)


def test_worked_encryption_example() -> None:
    """The step-by-step example of draft §5.4.2 (odd length: a shared middle octet)."""
    config = QuicLbConfig(
        config_id=0, server_id_length=3, nonce_length=4, key=h("fdf726a9893ec05c0632d3956680baf0")
    )
    cid = QuicLbCodec(config).encode(h("31441a"), h("9c69c275"))
    assert cid.hex() == "0767947d29be054a"


@settings(max_examples=150, deadline=None)
@given(
    sid_len=st.integers(1, 15),
    nonce_len=st.integers(4, 18),
    keyed=st.booleans(),
    config_id=st.integers(0, 6),
    data=st.data(),
)
def test_round_trips_through_the_independent_decoder(
    sid_len: int, nonce_len: int, keyed: bool, config_id: int, data: Any
) -> None:
    if sid_len + nonce_len > 19:
        nonce_len = 19 - sid_len
        if nonce_len < 4:
            return
    key = os.urandom(16) if keyed else None
    config = QuicLbConfig(
        config_id=config_id, server_id_length=sid_len, nonce_length=nonce_len, key=key
    )
    server_id = data.draw(st.binary(min_size=sid_len, max_size=sid_len))
    generator = QuicLbCidGenerator(config, server_id)
    for _ in range(3):
        cid = generator()
        assert len(cid) == config.cid_length == generator.cid_length
        assert cid[0] >> 5 == config_id
        assert cid[0] & 0x1F == sid_len + nonce_len  # length self-description (§3.3)
        assert lb_decode(cid, sid_len, nonce_len, key) == server_id
        assert decode_server_id({config_id: QuicLbCodec(config)}, cid) == server_id


def test_keyed_nonces_never_repeat_and_run_out() -> None:
    """With a key the nonce is a counter from a random start: unique until exhausted."""
    config = QuicLbConfig(config_id=1, server_id_length=1, nonce_length=4, key=KEY)
    generator = QuicLbCidGenerator(
        config, b"\x07", random_bytes=lambda n: b"\xff" * (n - 1) + b"\xfd"
    )  # the counter starts at 2**32 - 3
    codec = QuicLbCodec(config)
    nonces = [codec.decode(generator())[1] for _ in range(5)]
    assert len(set(nonces)) == 5  # wraps past 2**32 - 1 to 0 without repeating
    assert nonces[3] == bytes(4)
    exhausted = QuicLbCidGenerator(config, b"\x07")
    exhausted._issued = 2**32
    with pytest.raises(QuicLbError):
        exhausted()


def test_unroutable_and_foreign_cids_fall_back() -> None:
    config = QuicLbConfig(config_id=2, server_id_length=2, nonce_length=6, key=KEY)
    codecs = {2: QuicLbCodec(config)}
    good = QuicLbCidGenerator(config, b"\xab\xcd")()
    assert decode_server_id(codecs, good) == b"\xab\xcd"
    assert decode_server_id(codecs, bytes([0xE0]) + good[1:]) is None  # 0b111: unroutable
    assert decode_server_id(codecs, bytes([0x20]) + good[1:]) is None  # config 1: unknown
    assert decode_server_id(codecs, good[:5]) is None  # too short
    assert decode_server_id(codecs, b"") is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"config_id": 7, "server_id_length": 1, "nonce_length": 4},
        {"config_id": 0, "server_id_length": 0, "nonce_length": 4},
        {"config_id": 0, "server_id_length": 1, "nonce_length": 3},
        {"config_id": 0, "server_id_length": 10, "nonce_length": 10},
        {"config_id": 0, "server_id_length": 1, "nonce_length": 4, "key": b"short"},
    ],
)
def test_bad_configurations_are_typed_errors(kwargs: dict[str, Any]) -> None:
    with pytest.raises(QuicLbError) as info:
        QuicLbConfig(**kwargs)
    assert isinstance(info.value, GhostwireError)
    assert isinstance(info.value, ValueError)


# -- the server issues QUIC-LB CIDs --------------------------------------------------


def test_server_issues_only_quic_lb_cids() -> None:
    """Every CID a server with ``cid_generator`` issues (handshake SCID and
    NEW_CONNECTION_ID) decodes to its server ID; the client learns them all."""
    config = QuicLbConfig(config_id=3, server_id_length=3, nonce_length=8, key=KEY)
    server_id = b"\x01\x02\x03"
    sconfig = server_config(cid_generator=QuicLbCidGenerator(config, server_id))
    assert sconfig.connection_id_length == config.cid_length
    pair = handshake(make_pair(server=sconfig))
    pair.advance(0.5)  # NEW_CONNECTION_ID frames delivered
    server = pair.server
    assert server is not None
    issued = server.local_cids.all_cids()
    assert len(issued) >= 2  # the handshake CID and at least one NEW_CONNECTION_ID
    for cid in issued:
        assert lb_decode(cid, 3, 8, KEY) == server_id
    client_view = [entry.cid for entry in pair.client.peer_cids.available]
    assert set(client_view) <= set(issued)
    for cid in client_view:
        assert lb_decode(cid, 3, 8, KEY) == server_id


def test_retry_source_cid_carries_the_server_id() -> None:
    config = QuicLbConfig(config_id=0, server_id_length=1, nonce_length=6)
    sconfig = server_config(retry=True, cid_generator=QuicLbCidGenerator(config, b"\x05"))
    client = QuicConnection(
        client_config(), peer_address=("127.0.0.1", 4433), now=0.0, server_name="localhost"
    )
    client.connect(0.0)
    [(initial, _)] = client.datagrams_to_send(0.0)
    received = Demux(sconfig).receive(initial, ("127.0.0.1", 40000), 0.0)
    [(retry, _)] = received.replies
    scid_len = retry[6 + retry[5]]
    retry_scid = retry[7 + retry[5] : 7 + retry[5] + scid_len]
    assert lb_decode(retry_scid, 1, 6, None) == b"\x05"


def test_generator_length_must_fit_quic() -> None:
    config = QuicLbConfig(config_id=0, server_id_length=1, nonce_length=4)
    with pytest.raises(QuicLbError):
        QuicLbCidGenerator(config, b"\x01\x02")  # server ID of the wrong length
    with pytest.raises(QuicLbError):
        QuicLbCidGenerator(
            QuicLbConfig(config_id=0, server_id_length=1, nonce_length=4, key=KEY),
            b"\x01",
            nonce_prefix=b"\x00",
        )
