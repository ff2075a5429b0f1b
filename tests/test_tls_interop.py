"""TLS-level interoperability with aioquic's independent sans-IO TLS engine.

aioquic is a test peer only (the library never imports it). Both directions
run in memory: messages are moved per epoch, certificates are verified
against the test CA on both sides, ALPN and QUIC transport parameters are
exchanged, and the traffic secrets both sides install must be identical.
"""

from __future__ import annotations

from typing import Any

import pytest
from test_tls_support import (
    CLIENT_TP,
    SERVER_TP,
    ca,
    client_cert,
    client_settings,
    server_cert,
    server_settings,
    take,
)

from ghostwire.quic.suites import CipherSuite, Epoch
from ghostwire.quic.tls import (
    AlertDescription,
    KeyChange,
    SignatureScheme,
    TlsAlert,
    TlsHandshake,
)

aq = pytest.importorskip("aioquic.tls")
aq_buffer = pytest.importorskip("aioquic.buffer")

pytestmark = pytest.mark.interop

TP_EXTENSION = 0x39
EPOCHS = (Epoch.INITIAL, Epoch.HANDSHAKE, Epoch.ONE_RTT)


class Peer:
    """An aioquic tls.Context with the glue to talk to ours in memory."""

    def __init__(self, context: Any) -> None:
        self.context = context
        self.secrets: dict[tuple[Epoch, bool], bytes] = {}
        self.suites: set[int] = set()
        context.update_traffic_key_cb = self._on_key

    def _on_key(self, direction: Any, epoch: Any, suite: Any, secret: bytes) -> None:
        is_write = direction == aq.Direction.ENCRYPT
        self.secrets[Epoch(epoch.value), is_write] = secret
        self.suites.add(int(suite))

    def handle(self, data: bytes) -> dict[Epoch, bytes]:
        buffers = {epoch: aq_buffer.Buffer(capacity=1 << 16) for epoch in aq.Epoch}
        self.context.handle_message(data, buffers)
        return {Epoch(epoch.value): buffers[epoch].data for epoch in aq.Epoch}

    @property
    def peer_transport_parameters(self) -> bytes | None:
        for ext_type, value in self.context.received_extensions or []:
            if ext_type == TP_EXTENSION:
                return bytes(value)
        return None

    @property
    def complete(self) -> bool:
        return bool(self.context.state.name.endswith("POST_HANDSHAKE"))


def aioquic_server(key_type: str = "ec", alpn: list[str] | None = None) -> Peer:
    cert = server_cert(key_type)
    context = aq.Context(is_client=False, alpn_protocols=alpn or ["h3"])
    context.certificate = cert.certificate
    context.certificate_private_key = cert.private_key
    context.handshake_extensions = [(TP_EXTENSION, SERVER_TP)]
    return Peer(context)


def aioquic_client(alpn: list[str] | None = None, **kwargs: Any) -> Peer:
    context = aq.Context(
        is_client=True,
        alpn_protocols=alpn or ["h3"],
        cadata=ca().cert_pem(),
        server_name="localhost",
        **kwargs,
    )
    context.handshake_extensions = [(TP_EXTENSION, CLIENT_TP)]
    return Peer(context)


def run_our_client(ours: TlsHandshake, peer: Peer) -> list[KeyChange]:
    """Our client against an aioquic server; returns our key changes."""
    changes: list[KeyChange] = []
    ours.start()
    for _ in range(6):
        data = b"".join(take(ours, epoch) for epoch in EPOCHS)
        changes += ours.pop_key_changes()
        if not data:
            break
        for epoch, chunk in peer.handle(data).items():
            if chunk:
                ours.receive(epoch, chunk)
        changes += ours.pop_key_changes()
    return changes


def run_our_server(ours: TlsHandshake, peer: Peer) -> list[KeyChange]:
    """An aioquic client against our server; returns our key changes."""
    changes: list[KeyChange] = []
    outgoing = peer.handle(b"")  # the ClientHello
    for _ in range(6):
        moved = False
        for epoch, chunk in outgoing.items():
            if chunk:
                ours.receive(epoch, chunk)
                moved = True
        changes += ours.pop_key_changes()
        reply = b"".join(take(ours, epoch) for epoch in EPOCHS)
        if not moved and not reply:
            break
        outgoing = peer.handle(reply) if reply else {}
    return changes


def assert_same_secrets(changes: list[KeyChange], peer: Peer) -> None:
    ours = {(k.epoch, k.is_write): k.secret for k in changes}
    assert len(ours) == 4
    for (epoch, is_write), secret in ours.items():
        assert peer.secrets[epoch, not is_write] == secret
    assert peer.suites == {changes[0].cipher_suite}


@pytest.mark.parametrize("key_type", ["ec", "rsa", "ed25519"])
@pytest.mark.parametrize("suite", list(CipherSuite))
def test_our_client_aioquic_server(key_type: str, suite: CipherSuite) -> None:
    ours = TlsHandshake(client_settings(cipher_suites=[suite]), CLIENT_TP)
    peer = aioquic_server(key_type)
    changes = run_our_client(ours, peer)
    assert ours.complete and peer.complete
    assert ours.alpn_protocol == peer.context.alpn_negotiated == "h3"
    assert ours.peer_transport_parameters == SERVER_TP
    assert peer.peer_transport_parameters == CLIENT_TP
    assert ours.cipher_suite is suite
    assert ours.peer_certificates[0] == server_cert(key_type).certificate
    assert_same_secrets(changes, peer)


@pytest.mark.parametrize("key_type", ["ec", "rsa", "ed25519"])
@pytest.mark.parametrize("suite", list(CipherSuite))
def test_aioquic_client_our_server(key_type: str, suite: CipherSuite) -> None:
    ours = TlsHandshake(server_settings(key_type, cipher_suites=[suite]), SERVER_TP)
    peer = aioquic_client()
    changes = run_our_server(ours, peer)
    assert ours.complete and peer.complete
    assert ours.alpn_protocol == peer.context.alpn_negotiated == "h3"
    assert ours.peer_transport_parameters == CLIENT_TP
    assert peer.peer_transport_parameters == SERVER_TP
    assert ours.server_name == "localhost"
    assert ours.cipher_suite is suite
    expected = {
        "ec": SignatureScheme.ECDSA_SECP256R1_SHA256,
        "rsa": SignatureScheme.RSA_PSS_RSAE_SHA256,
        "ed25519": SignatureScheme.ED25519,
    }
    assert ours.signature_scheme is expected[key_type]
    assert_same_secrets(changes, peer)


def test_aioquic_client_alpn_mismatch() -> None:
    ours = TlsHandshake(server_settings(), SERVER_TP)
    with pytest.raises(TlsAlert) as exc_info:
        run_our_server(ours, aioquic_client(alpn=["h2"]))
    assert exc_info.value.alert == AlertDescription.NO_APPLICATION_PROTOCOL


def test_aioquic_client_with_client_certificate() -> None:
    cert = client_cert()
    peer = aioquic_client()
    peer.context.certificate = cert.certificate
    peer.context.certificate_private_key = cert.private_key
    ours = TlsHandshake(server_settings(require_client_certificate=True), SERVER_TP)
    changes = run_our_server(ours, peer)
    assert ours.complete and peer.complete
    assert ours.peer_certificates == cert.chain
    assert_same_secrets(changes, peer)


def test_our_client_certificate_to_aioquic_server() -> None:
    peer = aioquic_server()
    if not hasattr(peer.context, "_request_client_certificate"):
        pytest.skip("this aioquic cannot request client certificates")
    peer.context._request_client_certificate = True
    cert = client_cert("rsa")
    ours = TlsHandshake(
        client_settings(certificate_chain=cert.chain, private_key=cert.private_key), CLIENT_TP
    )
    changes = run_our_client(ours, peer)
    assert ours.complete and peer.complete
    assert_same_secrets(changes, peer)


def test_our_server_prefers_its_group() -> None:
    from ghostwire.quic.tls import Group

    ours = TlsHandshake(server_settings(groups=[Group.SECP256R1, Group.X25519]), SERVER_TP)
    peer = aioquic_client()
    changes = run_our_server(ours, peer)
    assert ours.complete and ours.group is Group.SECP256R1
    assert_same_secrets(changes, peer)


def test_aioquic_rejects_our_untrusted_server() -> None:
    # aioquic verifies our chain too: a certificate from another CA fails there.
    from test_tls_support import other_ca

    stranger = other_ca().issue(["localhost"])
    ours = TlsHandshake(
        server_settings(certificate_chain=stranger.chain, private_key=stranger.private_key),
        SERVER_TP,
    )
    with pytest.raises(aq.Alert):
        run_our_server(ours, aioquic_client())
