"""Certificates and CA bundles are read when a config is built, never in a handshake.

A handshake runs on the event loop; reading a CA bundle there (the system one
holds ~150 certificates) would stall every other connection. These tests count
file opens (through an audit hook) and system-bundle loads across many
handshakes that share one config.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
from quic_pair import server_identity, test_ca

import ghostwire.quic as quic
from ghostwire.quic.tls import CertificateVerificationError, verify_server_certificate
from ghostwire.quic.tls import files as files_module

HANDSHAKES = 8
_watchers: list[Callable[[str, tuple[Any, ...]], None]] = []


def _audit(event: str, args: tuple[Any, ...]) -> None:
    for watcher in _watchers:
        watcher(event, args)


sys.addaudithook(_audit)  # audit hooks cannot be removed; this one is idle unless watched


@contextmanager
def opened_files() -> Iterator[list[str]]:
    """The paths opened inside the block."""
    opened: list[str] = []

    def watch(event: str, args: tuple[Any, ...]) -> None:
        if event == "open" and isinstance(args[0], (str, bytes, Path)):
            opened.append(str(args[0]))

    _watchers.append(watch)
    try:
        yield opened
    finally:
        _watchers.remove(watch)


def _server_config(tmp_path: Path) -> quic.ServerConfig:
    identity = server_identity()
    identity.write_pem(tmp_path / "server.pem", tmp_path / "server.key")
    return quic.ServerConfig(
        alpn=["test"], certfile=tmp_path / "server.pem", keyfile=tmp_path / "server.key"
    )


async def _handshakes(
    server_config: quic.ServerConfig, client_config: quic.ClientConfig, count: int
) -> list[BaseException | None]:
    """Run ``count`` handshakes; the outcome of each (None when it succeeded)."""
    outcomes: list[BaseException | None] = []

    async def handler(conn: quic.Connection) -> None:
        await conn.wait_closed()

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(
                partial(quic.serve, host="127.0.0.1"), handler, 0, server_config
            )
            for _ in range(count):
                try:
                    async with quic.connect("127.0.0.1", server.port, client_config):
                        outcomes.append(None)
                except quic.HandshakeError as exc:
                    outcomes.append(exc)
            nursery.cancel_scope.cancel()
    return outcomes


async def test_no_file_is_opened_during_handshakes(tmp_path: Path) -> None:
    server_config = _server_config(tmp_path)
    test_ca().write_pem(tmp_path / "ca.pem")
    client_config = quic.ClientConfig(alpn=["test"], cafile=tmp_path / "ca.pem")
    assert await _handshakes(server_config, client_config, 1) == [None]  # warm-up: imports
    with opened_files() as opened:
        outcomes = await _handshakes(server_config, client_config, HANDSHAKES)
    assert outcomes == [None] * HANDSHAKES
    assert [p for p in opened if p.endswith(".pem") or "cert" in p] == []


async def test_system_bundle_loads_once_when_the_config_is_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads: list[int] = []
    real_loader = files_module._load_system_certificates

    def counting_loader() -> Any:
        loads.append(1)
        return real_loader()

    monkeypatch.setattr(files_module, "_system", None)
    monkeypatch.setattr(files_module, "_load_system_certificates", counting_loader)
    server_config = _server_config(tmp_path)
    client_config = quic.ClientConfig(alpn=["test"])  # verify against the system bundle
    assert len(loads) == 1
    assert client_config.trust_store is quic.ClientConfig(alpn=["test"]).trust_store
    assert len(loads) == 1  # cached for the process
    with opened_files() as opened:
        outcomes = await _handshakes(server_config, client_config, HANDSHAKES)
    # Our test CA is not in the system bundle: every handshake is refused, and
    # none of them loaded anything.
    assert all(isinstance(o, quic.CertificateError) for o in outcomes), outcomes
    assert len(loads) == 1
    assert [p for p in opened if "cert" in p or p.endswith((".pem", ".crt"))] == []


def test_missing_system_bundle_fails_the_handshake_not_the_config(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_bundle() -> Any:
        raise files_module.TrustStoreError("no system CA certificates found")

    monkeypatch.setattr(files_module, "_system", None)
    monkeypatch.setattr(files_module, "_load_system_certificates", no_bundle)
    config = quic.ClientConfig(alpn=["test"])
    assert config.trust_store is None
    with pytest.raises(CertificateVerificationError, match=r"cafile="):
        verify_server_certificate([server_identity().certificate], "localhost", None)


def test_repr_of_a_server_config_shows_no_key_and_no_password(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    identity = server_identity()
    secret = b"hunter2-key-password"
    encrypted = identity.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(secret),
    )
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    certfile.write_bytes(identity.cert_pem())
    keyfile.write_bytes(encrypted)
    config = quic.ServerConfig(certfile=certfile, keyfile=keyfile, password=secret)
    assert config.private_key is not None  # the key was loaded with the password
    text = repr(config)
    assert "hunter2" not in text and "private_key=" not in text and "password=" not in text
