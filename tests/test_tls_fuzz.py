"""Random and mutated input at every handshake stage only ever raises TlsAlert.

The one other allowed failure is RFC 9001 §8.4's PROTOCOL_VIOLATION for a
ClientHello with a legacy_session_id, which a mutation can produce.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_tls_support import (
    CLIENT_TP,
    SERVER_TP,
    client_cert,
    client_settings,
    server_settings,
    take,
)

from ghostwire.quic.errors import BufferReadError, QuicProtocolError, TransportErrorCode
from ghostwire.quic.suites import Epoch
from ghostwire.quic.tls import Group, TlsAlert, TlsHandshake
from ghostwire.quic.tls import extensions as ext
from ghostwire.quic.tls import messages as msg

FUZZ = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

Stage = tuple[TlsHandshake, Epoch, bytes]


def _client_start() -> Stage:
    """Client waiting for the ServerHello; the genuine ServerHello follows."""
    client = TlsHandshake(client_settings(), CLIENT_TP)
    server = TlsHandshake(server_settings(), SERVER_TP)
    client.start()
    server.receive(Epoch.INITIAL, take(client, Epoch.INITIAL))
    return client, Epoch.INITIAL, take(server, Epoch.INITIAL)


def _client_handshake(request: bool) -> Stage:
    """Client after the ServerHello; the server's encrypted flight follows."""
    client = TlsHandshake(client_settings(), CLIENT_TP)
    server = TlsHandshake(server_settings(request_client_certificate=request), SERVER_TP)
    client.start()
    server.receive(Epoch.INITIAL, take(client, Epoch.INITIAL))
    client.receive(Epoch.INITIAL, take(server, Epoch.INITIAL))
    return client, Epoch.HANDSHAKE, take(server, Epoch.HANDSHAKE)


def _client_connected() -> Stage:
    client, _, flight = _client_handshake(False)
    client.receive(Epoch.HANDSHAKE, flight)
    ticket = msg.NewSessionTicket(7200, 1, b"\x00", b"ticket").encode()
    return client, Epoch.ONE_RTT, ticket


def _server_start() -> Stage:
    client = TlsHandshake(client_settings(), CLIENT_TP)
    server = TlsHandshake(server_settings(), SERVER_TP)
    client.start()
    return server, Epoch.INITIAL, take(client, Epoch.INITIAL)


def _server_after_retry() -> Stage:
    client = TlsHandshake(client_settings(groups=[Group.X25519, Group.SECP256R1]), CLIENT_TP)
    server = TlsHandshake(server_settings(groups=[Group.SECP256R1]), SERVER_TP)
    client.start()
    server.receive(Epoch.INITIAL, take(client, Epoch.INITIAL))
    client.receive(Epoch.INITIAL, take(server, Epoch.INITIAL))
    return server, Epoch.INITIAL, take(client, Epoch.INITIAL)


def _server_client_flight(with_cert: bool) -> Stage:
    """Server after its flight; the client's Certificate/CertificateVerify/Finished follow."""
    cert = client_cert()
    identity = {"certificate_chain": cert.chain, "private_key": cert.private_key}
    client = TlsHandshake(client_settings(**(identity if with_cert else {})), CLIENT_TP)
    server = TlsHandshake(server_settings(request_client_certificate=True), SERVER_TP)
    client.start()
    server.receive(Epoch.INITIAL, take(client, Epoch.INITIAL))
    client.receive(Epoch.INITIAL, take(server, Epoch.INITIAL))
    client.receive(Epoch.HANDSHAKE, take(server, Epoch.HANDSHAKE))
    return server, Epoch.HANDSHAKE, take(client, Epoch.HANDSHAKE)


STAGES: dict[str, Callable[[], Stage]] = {
    "client-start": _client_start,
    "client-handshake": lambda: _client_handshake(False),
    "client-handshake-cr": lambda: _client_handshake(True),
    "client-connected": _client_connected,
    "server-start": _server_start,
    "server-after-hrr": _server_after_retry,
    "server-client-flight": lambda: _server_client_flight(False),
    "server-client-flight-cert": lambda: _server_client_flight(True),
}


def _feed(hs: TlsHandshake, epoch: Epoch, data: bytes, chunk: int) -> None:
    """Feed ``data``; only a TlsAlert (or the §8.4 violation) may come out."""
    try:
        for i in range(0, len(data), chunk):
            hs.receive(epoch, data[i : i + chunk])
    except TlsAlert:
        return
    except QuicProtocolError as exc:
        assert exc.error_code == TransportErrorCode.PROTOCOL_VIOLATION
        assert "legacy_session_id" in exc.reason


_OPS = ["flip", "set", "truncate", "insert", "delete", "length"]
_mutation = st.tuples(
    st.sampled_from(_OPS),
    st.integers(0, 1 << 16),  # position, taken modulo the length
    st.integers(0, 255),  # a byte value, bit number or length delta
    st.binary(min_size=1, max_size=8),
)


def _mutate(data: bytes, mutations: list[tuple[str, int, int, bytes]]) -> bytes:
    """Apply mutations; the draws do not depend on ``data`` (whose length varies)."""
    buf = bytearray(data)
    for kind, position, value, blob in mutations:
        if len(buf) < 2:
            break
        i = position % len(buf)
        if kind == "flip":
            buf[i] ^= 1 << (value % 8)
        elif kind == "set":
            buf[i] = value
        elif kind == "truncate":
            del buf[i:]
        elif kind == "insert":
            buf[i:i] = blob
        elif kind == "delete":
            del buf[i : i + 1 + value % 8]
        else:  # nudge a plausible 16-bit length field
            j = min(i, len(buf) - 2)
            field = int.from_bytes(buf[j : j + 2], "big") + value % 7 - 3
            buf[j : j + 2] = (field & 0xFFFF).to_bytes(2, "big")
    return bytes(buf)


@pytest.mark.parametrize("stage", list(STAGES))
@FUZZ
@given(
    mutations=st.lists(_mutation, min_size=1, max_size=4),
    chunk=st.sampled_from([1, 7, 64, 1 << 20]),
)
def test_mutated_input_only_raises_tls_alert(
    stage: str, mutations: list[tuple[str, int, int, bytes]], chunk: int
) -> None:
    hs, epoch, genuine = STAGES[stage]()
    _feed(hs, epoch, _mutate(genuine, mutations), chunk)


@pytest.mark.parametrize("stage", list(STAGES))
@FUZZ
@given(noise=st.binary(max_size=300), epoch=st.sampled_from(list(Epoch)))
def test_random_input_only_raises_tls_alert(stage: str, noise: bytes, epoch: Epoch) -> None:
    hs, _, _ = STAGES[stage]()
    _feed(hs, epoch, noise, 1 << 20)


@pytest.mark.parametrize("stage", list(STAGES))
@FUZZ
@given(body=st.binary(max_size=200), msg_type=st.integers(0, 255))
def test_random_messages_only_raise_tls_alert(stage: str, body: bytes, msg_type: int) -> None:
    hs, epoch, _ = STAGES[stage]()
    message = bytes([msg_type]) + len(body).to_bytes(3, "big") + body
    _feed(hs, epoch, message, 1 << 20)


PARSERS: list[Callable[[bytes], object]] = [
    msg.ClientHello.parse,
    msg.ServerHello.parse,
    msg.EncryptedExtensions.parse,
    msg.CertificateRequest.parse,
    msg.Certificate.parse,
    msg.CertificateVerify.parse,
    msg.Finished.parse,
    msg.NewSessionTicket.parse,
]
DECODERS: list[Callable[[bytes], object]] = [
    ext.decode_supported_groups,
    ext.decode_signature_algorithms,
    ext.decode_client_versions,
    ext.decode_selected_version,
    ext.decode_client_key_shares,
    ext.decode_server_key_share,
    ext.decode_hrr_key_share,
    ext.decode_cookie,
    ext.decode_alpn,
    ext.decode_server_name,
]


@FUZZ
@given(
    parser=st.sampled_from(PARSERS),
    msg_type=st.integers(0, 25),
    body=st.binary(max_size=300),
)
def test_message_parsers(parser: Callable[[bytes], object], msg_type: int, body: bytes) -> None:
    message = bytes([msg_type]) + len(body).to_bytes(3, "big") + body
    with contextlib.suppress(TlsAlert, BufferReadError):
        parser(message)


@FUZZ
@given(decoder=st.sampled_from(DECODERS), body=st.binary(max_size=100))
def test_extension_decoders(decoder: Callable[[bytes], object], body: bytes) -> None:
    with contextlib.suppress(TlsAlert, BufferReadError):
        decoder(body)


def test_message_round_trips() -> None:
    """Parsers invert encoders (so the fuzzers start from meaningful bytes)."""
    samples = [
        msg.ClientHello(bytes(range(32)), [0x1301, 0x1302], {0: b"\x00\x01", 0x39: b"tp"}),
        msg.ServerHello(msg.HRR_RANDOM, 0x1301, {43: b"\x03\x04"}),
        msg.EncryptedExtensions({16: b"\x00\x03\x02h3"}),
        msg.CertificateRequest(b"", {13: b"\x00\x02\x04\x03"}),
        msg.Certificate(b"", [msg.CertificateEntry(b"der", {})]),
        msg.CertificateVerify(0x0403, b"sig"),
        msg.Finished(bytes(32)),
        msg.NewSessionTicket(1, 2, b"n", b"t", {42: b"\x00\x00\x00\x01"}),
    ]
    for sample in samples:
        encoded = sample.encode()  # type: ignore[attr-defined]
        assert type(sample).parse(encoded) == sample  # type: ignore[attr-defined]
        assert encoded[0] == type(sample).TYPE  # type: ignore[attr-defined]
    assert msg.ServerHello.parse(samples[1].encode()).is_hello_retry_request  # type: ignore[attr-defined]
    groups = [Group.X25519, Group.SECP256R1]
    assert ext.decode_supported_groups(ext.encode_supported_groups(groups)) == groups
    assert ext.decode_alpn(ext.encode_alpn([b"h3", b"hq"])) == [b"h3", b"hq"]
    assert ext.decode_server_name(ext.encode_server_name("example.com")) == "example.com"
    shares = [(0x1D, b"k" * 32), (0x17, b"p" * 65)]
    assert ext.decode_client_key_shares(ext.encode_client_key_shares(shares)) == shares
