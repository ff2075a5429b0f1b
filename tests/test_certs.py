"""ghostwire.certs: generated CAs and certificates pass a strict web-PKI verifier."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from ghostwire.certs import CertificateAuthority, IssuedCertificate, self_signed_certificate
from ghostwire.quic.tls import load_certificate_chain, load_private_key


@pytest.fixture(scope="module")
def authority() -> CertificateAuthority:
    return CertificateAuthority.create("certs test CA")


def _verify_server(cert: IssuedCertificate, roots: list[x509.Certificate], name: str) -> None:
    subject: x509.DNSName | x509.IPAddress
    try:
        subject = x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        subject = x509.DNSName(name)
    verifier = PolicyBuilder().store(Store(roots)).build_server_verifier(subject)
    verifier.verify(cert.certificate, cert.chain[1:])


@pytest.mark.parametrize("key_type", ["ec", "ec384", "rsa", "ed25519"])
def test_issued_server_certificate_verifies(authority: CertificateAuthority, key_type: str) -> None:
    cert = authority.issue(["example.test", "192.0.2.1", "2001:db8::1"], key_type=key_type)  # type: ignore[arg-type]
    for name in ("example.test", "192.0.2.1", "2001:db8::1"):
        _verify_server(cert, [authority.certificate], name)
    with pytest.raises(VerificationError):
        _verify_server(cert, [authority.certificate], "other.test")
    expected = {
        "ec": ec.EllipticCurvePrivateKey,
        "ec384": ec.EllipticCurvePrivateKey,
        "rsa": rsa.RSAPrivateKey,
        "ed25519": ed25519.Ed25519PrivateKey,
    }[key_type]
    assert isinstance(cert.private_key, expected)
    assert cert.chain == [cert.certificate]


def test_default_key_is_p256(authority: CertificateAuthority) -> None:
    key = authority.issue(["a.test"]).private_key
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    assert isinstance(authority.private_key, ec.EllipticCurvePrivateKey)


def test_extensions_of_leaf_and_ca(authority: CertificateAuthority) -> None:
    leaf = authority.issue(["a.test"]).certificate
    ext = leaf.extensions
    constraints = ext.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and not constraints.value.ca
    usage = ext.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and not usage.value.key_cert_sign
    eku = ext.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    san = ext.get_extension_for_class(x509.SubjectAlternativeName)
    assert not san.critical and san.value.get_values_for_type(x509.DNSName) == ["a.test"]
    aki = ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ca_ski = authority.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert aki.key_identifier == ca_ski.value.digest
    ca_constraints = authority.certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    assert ca_constraints.critical and ca_constraints.value.ca


def test_client_certificate_verifies_as_client(authority: CertificateAuthority) -> None:
    cert = authority.issue(["client.test"], client=True)
    eku = cert.certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    verifier = PolicyBuilder().store(Store([authority.certificate])).build_client_verifier()
    verifier.verify(cert.certificate, [])
    server_cert = authority.issue(["client.test"])
    with pytest.raises(VerificationError):
        verifier.verify(server_cert.certificate, [])


def test_rsa_authority(authority: CertificateAuthority) -> None:
    rsa_ca = CertificateAuthority.create("rsa CA", key_type="rsa")
    cert = rsa_ca.issue(["r.test"], key_type="rsa")
    _verify_server(cert, [rsa_ca.certificate], "r.test")
    with pytest.raises(VerificationError):
        _verify_server(cert, [authority.certificate], "r.test")


def test_ed25519_signing_rejected() -> None:
    with pytest.raises(ValueError, match="ed25519"):
        CertificateAuthority.create(key_type="ed25519")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ed25519"):
        self_signed_certificate(["a.test"], key_type="ed25519")  # type: ignore[arg-type]


def test_self_signed_is_its_own_trust_anchor() -> None:
    cert = self_signed_certificate(["localhost", "127.0.0.1"])
    assert cert.certificate.issuer == cert.certificate.subject
    _verify_server(cert, [cert.certificate], "localhost")
    _verify_server(cert, [cert.certificate], "127.0.0.1")
    with pytest.raises(VerificationError):
        _verify_server(cert, [self_signed_certificate(["localhost"]).certificate], "localhost")


def test_validity_window(authority: CertificateAuthority) -> None:
    start = datetime(2030, 1, 1, tzinfo=UTC)
    cert = authority.issue(["a.test"], not_before=start, not_after=start + timedelta(days=2))
    assert cert.certificate.not_valid_before_utc == start
    assert cert.certificate.not_valid_after_utc == start + timedelta(days=2)
    now = datetime.now(UTC)
    default = authority.issue(["a.test"]).certificate
    assert default.not_valid_before_utc <= now <= default.not_valid_after_utc
    with pytest.raises(ValueError):
        authority.issue(["a.test"], not_before=start, not_after=start)
    with pytest.raises(ValueError):
        authority.issue([])


def test_pem_round_trip(tmp_path: Path, authority: CertificateAuthority) -> None:
    cert = authority.issue(["a.test"], key_type="rsa")
    certfile, keyfile = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_pem(certfile, keyfile)
    assert load_certificate_chain(certfile) == cert.chain
    assert load_private_key(keyfile).public_key() == cert.private_key.public_key()
    assert stat.S_IMODE(os.stat(keyfile).st_mode) == 0o600
    assert cert.key_pem().startswith(b"-----BEGIN PRIVATE KEY-----")
    authority.write_pem(tmp_path / "ca.pem")
    assert load_certificate_chain(tmp_path / "ca.pem") == [authority.certificate]
    assert authority.cert_pem() == (tmp_path / "ca.pem").read_bytes()


def test_fingerprints(authority: CertificateAuthority) -> None:
    cert = authority.issue(["a.test"])
    der = cert.certificate.public_bytes(serialization.Encoding.DER)
    fingerprint = cert.sha256_fingerprint()
    assert fingerprint == ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())
    spki = cert.certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert base64.b64decode(cert.spki_sha256_base64()) == hashlib.sha256(spki).digest()
    assert cert.spki_sha256_base64() != authority.issue(["a.test"]).spki_sha256_base64()


def test_intermediate_chain(authority: CertificateAuthority) -> None:
    intermediate = authority.issue_intermediate("test intermediate")
    cert = intermediate.issue(["chain.test"])
    assert cert.chain == [cert.certificate, intermediate.certificate]
    _verify_server(cert, [authority.certificate], "chain.test")
    constraints = intermediate.certificate.extensions.get_extension_for_class(
        x509.BasicConstraints
    ).value
    assert constraints.ca and constraints.path_length == 0
    # Without the intermediate the leaf does not lead to the root.
    leaf_only = IssuedCertificate(cert.certificate, cert.private_key)
    with pytest.raises(VerificationError):
        _verify_server(leaf_only, [authority.certificate], "chain.test")
