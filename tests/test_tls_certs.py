"""Certificate verification: names, IP addresses, trust, validity, trust stores."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from test_tls_support import (
    ca,
    client_cert,
    client_settings,
    drive,
    make_pair,
    other_ca,
    server_settings,
    trust_store,
)

from ghostwire.certs import IssuedCertificate, self_signed_certificate
from ghostwire.quic.config import ClientConfig
from ghostwire.quic.tls import (
    AlertDescription,
    CertificateVerificationError,
    TlsAlert,
    TrustStore,
    TrustStoreError,
    load_certificate_chain,
    load_private_key,
    verify_client_certificate,
    verify_server_certificate,
)
from ghostwire.quic.tls import files as files_module

A = AlertDescription


def _server_with(cert: IssuedCertificate, **client: object) -> CertificateVerificationError:
    pair = make_pair(
        client_settings(**client),
        server_settings(certificate_chain=cert.chain, private_key=cert.private_key),
    )
    with pytest.raises(CertificateVerificationError) as exc_info:
        drive(pair)
    assert not pair.client.complete
    return exc_info.value


def test_hostname_mismatch_is_bad_certificate() -> None:
    error = _server_with(ca().issue(["example.com", "www.example.com"]), server_name="other.test")
    assert error.alert == A.BAD_CERTIFICATE
    assert error.error_code == 0x100 + 42
    assert "other.test" in error.reason and "example.com" in error.reason
    assert isinstance(error, TlsAlert)


def test_wildcard_certificate() -> None:
    cert = ca().issue(["*.example.com"])
    verify_server_certificate(cert.chain, "www.example.com", trust_store())
    with pytest.raises(CertificateVerificationError) as exc_info:
        verify_server_certificate(cert.chain, "a.b.example.com", trust_store())
    assert exc_info.value.alert == A.BAD_CERTIFICATE


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "192.0.2.7"])
def test_ip_address_certificates(address: str) -> None:
    cert = ca().issue([address])
    verify_server_certificate(cert.chain, address, trust_store())
    pair = drive(
        make_pair(
            client_settings(server_name=address),
            server_settings(certificate_chain=cert.chain, private_key=cert.private_key),
        )
    )
    assert pair.client.complete


def test_ip_address_mismatch() -> None:
    cert = ca().issue(["192.0.2.7"])
    with pytest.raises(CertificateVerificationError) as exc_info:
        verify_server_certificate(cert.chain, "192.0.2.8", trust_store())
    assert exc_info.value.alert == A.BAD_CERTIFICATE
    assert "192.0.2.8" in exc_info.value.reason
    # A DNS name in the certificate does not match the IP address, nor the reverse.
    with pytest.raises(CertificateVerificationError):
        verify_server_certificate(ca().issue(["localhost"]).chain, "127.0.0.1", trust_store())


def test_untrusted_ca_is_unknown_ca() -> None:
    error = _server_with(other_ca().issue(["localhost"]))
    assert error.alert == A.UNKNOWN_CA
    assert "localhost" in error.reason


def test_expired_certificate() -> None:
    now = datetime.now(UTC)
    cert = ca().issue(
        ["localhost"], not_before=now - timedelta(days=30), not_after=now - timedelta(days=1)
    )
    error = _server_with(cert)
    assert error.alert == A.CERTIFICATE_EXPIRED
    assert error.error_code == 0x100 + 45
    assert "expired" in error.reason


def test_not_yet_valid_certificate() -> None:
    now = datetime.now(UTC)
    cert = ca().issue(["localhost"], not_before=now + timedelta(days=1))
    assert _server_with(cert).alert == A.CERTIFICATE_EXPIRED


def test_verification_time_is_injectable() -> None:
    cert = ca().issue(["localhost"])
    later = datetime.now(UTC) + timedelta(days=400)
    error = _server_with(cert, now=later)
    assert error.alert == A.CERTIFICATE_EXPIRED
    verify_server_certificate(cert.chain, "localhost", trust_store(), now=datetime.now(UTC))


def test_verify_peer_false_skips_all_checks() -> None:
    now = datetime.now(UTC)
    expired = other_ca().issue(
        ["nowhere.test"], not_before=now - timedelta(days=9), not_after=now - timedelta(days=1)
    )
    pair = drive(
        make_pair(
            client_settings(verify_peer=False, server_name="localhost"),
            server_settings(certificate_chain=expired.chain, private_key=expired.private_key),
        )
    )
    assert pair.client.complete and pair.server.complete
    assert pair.client.peer_certificates == expired.chain


def test_self_signed_certificate_trusted_as_its_own_ca(tmp_path: Path) -> None:
    cert = self_signed_certificate(["localhost", "127.0.0.1"])
    cert.write_pem(tmp_path / "cert.pem", tmp_path / "key.pem")
    store = TrustStore.from_file(tmp_path / "cert.pem")
    verify_server_certificate(cert.chain, "localhost", store)
    verify_server_certificate(cert.chain, "127.0.0.1", store)
    pair = drive(
        make_pair(
            client_settings(trust_store=store),
            server_settings(
                certificate_chain=load_certificate_chain(tmp_path / "cert.pem"),
                private_key=load_private_key(tmp_path / "key.pem"),
            ),
        )
    )
    assert pair.client.complete
    # Anyone else's self-signed certificate is not trusted.
    with pytest.raises(CertificateVerificationError):
        verify_server_certificate(self_signed_certificate(["localhost"]).chain, "localhost", store)


def test_client_certificate_verification() -> None:
    cert = client_cert()
    verify_client_certificate(cert.chain, trust_store())
    with pytest.raises(CertificateVerificationError) as exc_info:
        verify_client_certificate(cert.chain, TrustStore([other_ca().certificate]))
    assert exc_info.value.alert == A.UNKNOWN_CA
    later = datetime.now(UTC) + timedelta(days=4000)
    with pytest.raises(CertificateVerificationError) as exc_info:
        verify_client_certificate(cert.chain, trust_store(), now=later)
    assert exc_info.value.alert == A.CERTIFICATE_EXPIRED


def test_empty_chain_is_bad_certificate() -> None:
    with pytest.raises(CertificateVerificationError) as exc_info:
        verify_server_certificate([], "localhost", trust_store())
    assert exc_info.value.alert == A.BAD_CERTIFICATE


# -- trust stores ------------------------------------------------------------


def test_system_trust_store_loads_and_is_cached() -> None:
    store = TrustStore.system()
    assert len(store) > 10
    assert TrustStore.system() is store


def test_client_uses_system_store_by_default() -> None:
    # The config loads the system bundle; our test CA is not in it.
    system = ClientConfig(alpn=["x"]).trust_store
    assert system is TrustStore.system()
    error = _server_with(ca().issue(["localhost"]), trust_store=system)
    assert error.alert == A.UNKNOWN_CA


def test_system_store_honours_ssl_cert_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(ca().cert_pem() + other_ca().cert_pem())
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    certs = files_module._load_system_certificates()
    assert certs == [ca().certificate, other_ca().certificate]


def test_system_store_from_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a.0").write_bytes(ca().cert_pem())
    (tmp_path / "b.0").write_bytes(b"not a certificate")
    paths = ssl.DefaultVerifyPaths(
        str(tmp_path / "missing.pem"), str(tmp_path), "X_FILE", "/nonexistent", "X_DIR", "/none"
    )
    monkeypatch.setattr(ssl, "get_default_verify_paths", lambda: paths)
    assert files_module._load_system_certificates() == [ca().certificate]


def test_missing_system_store_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = ssl.DefaultVerifyPaths(
        str(tmp_path / "missing.pem"), str(tmp_path / "nodir"), "X_F", "/nonexistent", "X_D", "/n"
    )
    monkeypatch.setattr(ssl, "get_default_verify_paths", lambda: paths)
    with pytest.raises(TrustStoreError, match="cafile"):
        files_module._load_system_certificates()


def test_trust_store_constructors(tmp_path: Path) -> None:
    pem = ca().cert_pem() + other_ca().cert_pem()
    assert len(TrustStore.from_pem(pem)) == 2
    assert len(TrustStore.from_pem(pem.decode())) == 2
    assert len(TrustStore.from_certificates([ca().certificate, ca().certificate])) == 1
    ca().write_pem(tmp_path / "ca.pem")
    assert TrustStore.from_file(tmp_path / "ca.pem").certificates == [ca().certificate]
    with pytest.raises(ValueError):
        TrustStore([])


def test_load_helpers(tmp_path: Path) -> None:
    cert = ca().issue(["localhost"], key_type="rsa")
    combined = cert.cert_pem() + cert.key_pem()
    assert load_certificate_chain(combined) == cert.chain
    assert load_certificate_chain(combined.decode()) == cert.chain
    key = load_private_key(combined)
    assert key.public_key() == cert.private_key.public_key()
    (tmp_path / "both.pem").write_bytes(combined)
    assert load_certificate_chain(str(tmp_path / "both.pem")) == cert.chain
    with pytest.raises(ValueError, match="no PEM private key"):
        load_private_key(cert.cert_pem())


def test_load_encrypted_private_key() -> None:
    from cryptography.hazmat.primitives import serialization

    cert = client_cert()
    pem = cert.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    key = load_private_key(pem, b"secret")
    assert key.public_key() == cert.private_key.public_key()
    with pytest.raises((ValueError, TypeError)):
        load_private_key(pem, b"wrong")


def test_chain_with_intermediate_through_handshake() -> None:
    intermediate = ca().issue_intermediate("handshake intermediate")
    cert = intermediate.issue(["localhost"])
    pair = drive(
        make_pair(
            client_settings(),
            server_settings(certificate_chain=cert.chain, private_key=cert.private_key),
        )
    )
    assert pair.client.complete
    assert pair.client.peer_certificates == [cert.certificate, intermediate.certificate]
    # The same leaf without its intermediate: the chain does not reach a trust anchor.
    error = _server_with(IssuedCertificate(cert.certificate, cert.private_key))
    assert error.alert == A.UNKNOWN_CA


def test_expired_intermediate() -> None:
    now = datetime.now(UTC)
    intermediate = ca().issue_intermediate(
        "expired intermediate", not_before=now - timedelta(days=9), not_after=now - timedelta(1)
    )
    cert = intermediate.issue(["localhost"])
    error = _server_with(cert)
    assert error.alert == A.CERTIFICATE_EXPIRED
    assert "expired intermediate" in error.reason


def test_a_verified_server_chain_is_remembered_only_for_the_same_inputs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from cryptography.x509.verification import PolicyBuilder

    from ghostwire.quic.tls import verify as verify_module

    cert = ca().issue(["localhost"], not_after=datetime.now(UTC) + timedelta(days=30))
    store = trust_store()
    verify_server_certificate(cert.chain, "localhost", store)
    builds: list[int] = []

    def counting_builder() -> PolicyBuilder:
        builds.append(1)
        return PolicyBuilder()

    monkeypatch.setattr(verify_module, "PolicyBuilder", counting_builder)
    verify_server_certificate(cert.chain, "localhost", store)
    assert builds == []  # the same chain, name and store within the window: remembered
    # Anything else is verified from scratch, and fails as it should.
    with pytest.raises(CertificateVerificationError) as error:
        verify_server_certificate(cert.chain, "other.test", store)
    assert error.value.alert == A.BAD_CERTIFICATE
    with pytest.raises(CertificateVerificationError) as error:
        verify_server_certificate(cert.chain, "localhost", TrustStore([other_ca().certificate]))
    assert error.value.alert == A.UNKNOWN_CA
    with pytest.raises(CertificateVerificationError) as error:
        later = datetime.now(UTC) + timedelta(days=31)
        verify_server_certificate(cert.chain, "localhost", store, now=later)
    assert error.value.alert == A.CERTIFICATE_EXPIRED
    with pytest.raises(CertificateVerificationError) as error:
        verify_server_certificate(
            cert.chain,
            "localhost",
            store,
            now=cert.chain[0].not_valid_before_utc - timedelta(seconds=1),
        )
    assert error.value.alert == A.CERTIFICATE_EXPIRED
    other = ca().issue(["localhost"])  # another leaf (other bytes) for the same name
    builds.clear()
    verify_server_certificate(other.chain, "localhost", store)
    assert builds
    # A store that is not the same object is not trusted blindly either.
    builds.clear()
    verify_server_certificate(cert.chain, "localhost", TrustStore([ca().certificate]))
    assert builds


def test_a_remembered_chain_lapses_with_its_intermediate() -> None:
    # A remembered verdict holds while every certificate of the built path is
    # valid, not the leaf alone: past the intermediate's end, the same chain
    # verifies from scratch and fails.
    now = datetime.now(UTC)
    intermediate = ca().issue_intermediate(
        "short intermediate", not_before=now - timedelta(days=1), not_after=now + timedelta(days=5)
    )
    cert = intermediate.issue(["localhost"], not_after=now + timedelta(days=30))
    store = trust_store()
    verify_server_certificate(cert.chain, "localhost", store, now=now)
    verify_server_certificate(cert.chain, "localhost", store, now=now + timedelta(days=4))
    with pytest.raises(CertificateVerificationError) as error:
        verify_server_certificate(cert.chain, "localhost", store, now=now + timedelta(days=6))
    assert error.value.alert == A.CERTIFICATE_EXPIRED
    assert "short intermediate" in error.value.reason


def test_failed_verifications_are_not_remembered_and_the_remembered_are_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ghostwire.quic.tls import verify as verify_module

    remembered: dict[object, object] = {}
    monkeypatch.setattr(verify_module, "_VERIFIED", remembered)
    cert = ca().issue(["localhost"], not_after=datetime.now(UTC) + timedelta(days=30))
    store = trust_store()
    later = datetime.now(UTC) + timedelta(days=31)
    for _ in range(2):
        with pytest.raises(CertificateVerificationError):
            verify_server_certificate(cert.chain, "other.test", store)
        with pytest.raises(CertificateVerificationError):
            verify_server_certificate(cert.chain, "localhost", store, now=later)
        with pytest.raises(CertificateVerificationError):
            verify_server_certificate(cert.chain, "localhost", TrustStore([other_ca().certificate]))
    assert remembered == {}
    # One entry per trust store object: never more than _VERIFIED_MAX held.
    for _ in range(verify_module._VERIFIED_MAX + 5):
        verify_server_certificate(cert.chain, "localhost", TrustStore([ca().certificate]))
        assert len(remembered) <= verify_module._VERIFIED_MAX
    assert remembered


def test_a_server_presenting_a_remembered_chain_must_still_hold_its_key() -> None:
    # The chain verified once is remembered; the server's CertificateVerify
    # is still checked against its leaf: an impostor replaying the chain
    # with a key of its own fails (RFC 8446 §4.4.3: decrypt_error).
    from ghostwire.quic.tls import verify as verify_module

    assert drive(make_pair()).client.complete
    chain = server_settings().certificate_chain
    key = (id(trust_store()), "localhost", tuple(c.public_bytes(Encoding.DER) for c in chain))
    assert key in verify_module._VERIFIED
    impostor = server_settings()
    impostor.private_key = ca().issue(["localhost"]).private_key  # not the leaf's
    with pytest.raises(TlsAlert) as error:
        drive(make_pair(server=impostor))
    assert error.value.alert == A.DECRYPT_ERROR
