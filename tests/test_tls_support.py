"""Shared helpers for the TLS tests (no tests here).

Certificates are made once per session (RSA key generation is slow) and an
in-memory driver moves ``outgoing`` bytes between two handshakes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from ghostwire.certs import CertificateAuthority, IssuedCertificate
from ghostwire.quic.suites import Epoch
from ghostwire.quic.tls import KeyChange, TlsHandshake, TlsSettings, TrustStore

CLIENT_TP = b"client transport parameters"
SERVER_TP = b"server transport parameters"
EPOCHS = (Epoch.INITIAL, Epoch.HANDSHAKE, Epoch.ONE_RTT)


@cache
def ca() -> CertificateAuthority:
    return CertificateAuthority.create("ghostwire TLS test CA")


@cache
def other_ca() -> CertificateAuthority:
    return CertificateAuthority.create("some other CA")


@cache
def trust_store() -> TrustStore:
    return TrustStore([ca().certificate])


@cache
def server_cert(key_type: str = "ec") -> IssuedCertificate:
    return ca().issue(["localhost", "127.0.0.1", "::1"], key_type=key_type)  # type: ignore[arg-type]


@cache
def client_cert(key_type: str = "ec") -> IssuedCertificate:
    return ca().issue(["client.test"], key_type=key_type, client=True)  # type: ignore[arg-type]


def client_settings(**overrides: Any) -> TlsSettings:
    options: dict[str, Any] = {
        "is_client": True,
        "alpn_protocols": ["h3"],
        "server_name": "localhost",
        "trust_store": trust_store(),
    }
    options.update(overrides)
    return TlsSettings(**options)


def server_settings(key_type: str = "ec", **overrides: Any) -> TlsSettings:
    cert = server_cert(key_type)
    options: dict[str, Any] = {
        "is_client": False,
        "alpn_protocols": ["h3"],
        "certificate_chain": cert.chain,
        "private_key": cert.private_key,
        "trust_store": trust_store(),
    }
    options.update(overrides)
    return TlsSettings(**options)


@dataclass
class Pair:
    client: TlsHandshake
    server: TlsHandshake
    client_keys: list[KeyChange] = field(default_factory=list)
    server_keys: list[KeyChange] = field(default_factory=list)

    def collect_keys(self) -> None:
        self.client_keys += self.client.pop_key_changes()
        self.server_keys += self.server.pop_key_changes()


def make_pair(client: TlsSettings | None = None, server: TlsSettings | None = None) -> Pair:
    return Pair(
        TlsHandshake(client or client_settings(), CLIENT_TP),
        TlsHandshake(server or server_settings(), SERVER_TP),
    )


def take(hs: TlsHandshake, epoch: Epoch) -> bytes:
    data = bytes(hs.outgoing[epoch])
    hs.outgoing[epoch].clear()
    return data


Feed = Callable[[TlsHandshake, Epoch, bytes], None]


def feed_whole(hs: TlsHandshake, epoch: Epoch, data: bytes) -> None:
    hs.receive(epoch, data)


def feed_bytewise(hs: TlsHandshake, epoch: Epoch, data: bytes) -> None:
    for i in range(len(data)):
        hs.receive(epoch, data[i : i + 1])


def flush(sender: TlsHandshake, receiver: TlsHandshake, feed: Feed = feed_whole) -> bool:
    """Move everything ``sender`` has queued to ``receiver``; True if anything moved."""
    moved = False
    for epoch in EPOCHS:
        data = take(sender, epoch)
        if data:
            feed(receiver, epoch, data)
            moved = True
    return moved


def drive(pair: Pair, feed: Feed = feed_whole, start: bool = True) -> Pair:
    """Run the handshake to the end (or until an exception)."""
    if start:
        pair.client.start()
    for _ in range(10):
        moved = flush(pair.client, pair.server, feed)
        pair.collect_keys()
        moved = flush(pair.server, pair.client, feed) or moved
        pair.collect_keys()
        if not moved:
            break
    return pair


def assert_keys_match(pair: Pair) -> None:
    """Client write == server read and vice versa, for every epoch."""
    client = {(k.epoch, k.is_write): k for k in pair.client_keys}
    server = {(k.epoch, k.is_write): k for k in pair.server_keys}
    for epoch in (Epoch.HANDSHAKE, Epoch.ONE_RTT):
        assert client[epoch, True].secret == server[epoch, False].secret
        assert client[epoch, False].secret == server[epoch, True].secret
        assert client[epoch, True].secret != client[epoch, False].secret
        assert client[epoch, True].cipher_suite == server[epoch, False].cipher_suite
    assert len(client) == len(pair.client_keys) == 4
    assert len(server) == len(pair.server_keys) == 4
