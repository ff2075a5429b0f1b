"""The TLS 1.3 key schedule against RFC 8448 §3 (Simple 1-RTT Handshake).

The published intermediate values of the trace: the (EC)DHE shared secret and
transcript hashes in, the handshake and application traffic secrets and the
TLS record keys out (RFC 8446 §7.1, §7.3). QUIC packet keys are checked
against RFC 9001 Appendix A in test_crypto_vectors.py.
"""

from __future__ import annotations

from ghostwire.quic.suites import CipherSuite, hkdf_expand, hkdf_expand_label, hkdf_extract
from ghostwire.quic.tls.key_schedule import KeySchedule

H = bytes.fromhex
SHARED_SECRET = H("8bd4054fb55b9d63fdfbacf9f04b9f0d35e6d63f537563efd46272900f89492d")
HASH_CLIENT_HELLO_SERVER_HELLO = H(
    "860c06edc07858ee8e78f0e7428c58edd6b43f2ca3e6e95f02ed063cf0e1cad8"
)
HASH_TO_SERVER_FINISHED = H("9608102a0f1ccc6db6250b7b7e417b1a000eaada3daae4777a7686c9ff83df13")
EARLY_SECRET = H("33ad0a1c607ec03b09e6cd9893680ce210adf300aa1f2660e1b22e10f170f92a")
CLIENT_HS_TRAFFIC = H("b3eddb126e067f35a780b3abf45e2d8f3b1a950738f52e9600746a0e27a55a21")
SERVER_HS_TRAFFIC = H("b67b7d690cc16c4e75e54213cb2d37b4e9c912bcded9105d42befd59d391ad38")
CLIENT_AP_TRAFFIC = H("9e40646ce79a7f9dc05af8889bce6552875afa0b06df0087f792ebb7c17504a5")
SERVER_AP_TRAFFIC = H("a11af9f05531f856ad47116b45a950328204b4f44bfb6b3a4b4f1f3fcb631643")


def test_early_secret_without_psk() -> None:
    assert hkdf_extract("sha256", b"", bytes(32)) == EARLY_SECRET


def test_handshake_and_application_traffic_secrets() -> None:
    schedule = KeySchedule(CipherSuite.AES_128_GCM_SHA256)
    client, server = schedule.handshake_traffic_secrets(
        SHARED_SECRET, HASH_CLIENT_HELLO_SERVER_HELLO
    )
    assert (client, server) == (CLIENT_HS_TRAFFIC, SERVER_HS_TRAFFIC)
    assert schedule.application_traffic_secrets(HASH_TO_SERVER_FINISHED) == (
        CLIENT_AP_TRAFFIC,
        SERVER_AP_TRAFFIC,
    )


def test_record_keys_from_the_handshake_traffic_secrets() -> None:
    # RFC 8446 §7.3: key = HKDF-Expand-Label(secret, "key", "", 16), iv likewise.
    assert hkdf_expand_label("sha256", SERVER_HS_TRAFFIC, b"key", b"", 16) == H(
        "3fce516009c21727d0f2e4e86ee403bc"
    )
    assert hkdf_expand_label("sha256", SERVER_HS_TRAFFIC, b"iv", b"", 12) == H(
        "5d313eb2671276ee13000b30"
    )
    assert hkdf_expand_label("sha256", CLIENT_HS_TRAFFIC, b"key", b"", 16) == H(
        "dbfaa693d1762c5b666af5d950258d01"
    )
    assert hkdf_expand_label("sha256", CLIENT_HS_TRAFFIC, b"iv", b"", 12) == H(
        "5bd3c71b836e0b76bb73265f"
    )


def test_hkdf_rfc5869_case_1() -> None:
    # RFC 5869 A.1: a 42-byte output, two HMAC blocks (TLS labels take one).
    prk = hkdf_extract("sha256", bytes(range(13)), b"\x0b" * 22)
    assert prk == H("077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5")
    okm = hkdf_expand("sha256", prk, bytes(range(0xF0, 0xFA)), 42)
    assert okm == H(
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    )
