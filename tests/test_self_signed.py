"""Self-signed server certificates the way people make them, pinned with ``cafile=``.

``openssl req -x509`` makes a certificate with ``basicConstraints cA=TRUE``;
other tools make a self-signed leaf without an Authority Key Identifier. The
web-PKI profile rejects both as end-entity certificates, yet a certificate the
user names in ``cafile`` is the server's own leaf, explicitly pinned: it is
trusted as given, with its signature, validity period and names still checked.
Each shape is built by the ``openssl`` binary when present and by
``cryptography`` always, and used in a real handshake over loopback.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from ipaddress import ip_address
from pathlib import Path

import pytest
import trio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import ghostwire.quic as quic
from ghostwire.certs import CertificateAuthority
from ghostwire.quic.tls import AlertDescription, TrustStore
from ghostwire.quic.tls.alerts import CertificateVerificationError
from ghostwire.quic.tls.verify import verify_server_certificate

OPENSSL = shutil.which("openssl")
SAN = "subjectAltName=DNS:localhost,IP:127.0.0.1"


def _openssl_self_signed(tmp: Path, *extra: str) -> tuple[Path, Path]:
    assert OPENSSL is not None
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        [OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-subj", "/CN=localhost", "-addext", SAN, "-days", "2",
         "-keyout", str(key), "-out", str(cert), *extra],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return cert, key


def _built_self_signed(
    tmp: Path,
    *,
    ca: bool,
    key_ids: bool,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> tuple[Path, Path]:
    """The same shapes with ``cryptography``: openssl's default (``ca=True``,
    ``key_ids=True``) or a bare leaf with no CA flag and no key identifiers."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - timedelta(hours=1))
        .not_valid_after(not_after or now + timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    )
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
    if key_ids:
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        builder = builder.add_extension(ski, critical=False)
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
        builder = builder.add_extension(aki, critical=False)
    cert = builder.sign(key, hashes.SHA256())
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


Maker = Callable[[Path], tuple[Path, Path]]
SHAPES: dict[str, Maker] = {
    "cryptography-ca-flag": lambda tmp: _built_self_signed(tmp, ca=True, key_ids=True),
    "cryptography-no-aki": lambda tmp: _built_self_signed(tmp, ca=False, key_ids=False),
    "cryptography-ca-flag-no-aki": lambda tmp: _built_self_signed(tmp, ca=True, key_ids=False),
    "openssl-req-x509": _openssl_self_signed,
}


def _make(shape: str, tmp: Path) -> tuple[Path, Path]:
    if shape.startswith("openssl") and OPENSSL is None:
        pytest.skip("no openssl binary")
    return SHAPES[shape](tmp)


async def _handshake(cert: Path, key: Path, host: str, server_name: str | None = None) -> None:
    server_config = quic.ServerConfig(alpn=["test"], certfile=cert, keyfile=key)
    client_config = quic.ClientConfig(alpn=["test"], cafile=cert, server_name=server_name)

    async def handler(conn: quic.Connection) -> None:
        await conn.wait_closed()

    expected_leaf = x509.load_pem_x509_certificate(cert.read_bytes())  # noqa: ASYNC240
    failure: BaseException | None = None
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(
                partial(quic.serve, host="127.0.0.1"), handler, 0, server_config
            )
            try:
                async with quic.connect(host, server.port, client_config) as conn:
                    assert conn.peer_certificates[0] == expected_leaf
            except quic.CertificateError as exc:
                failure = exc  # raised below, outside the nursery's exception group
            nursery.cancel_scope.cancel()
    if failure is not None:
        raise failure


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_pinned_self_signed_leaf_handshakes(shape: str, host: str, tmp_path: Path) -> None:
    cert, key = _make(shape, tmp_path)
    await _handshake(cert, key, host)


@pytest.mark.parametrize("shape", sorted(SHAPES))
async def test_pinned_leaf_still_checks_the_name(shape: str, tmp_path: Path) -> None:
    cert, key = _make(shape, tmp_path)
    with pytest.raises(quic.CertificateError, match=r"not other\.test"):
        await _handshake(cert, key, "127.0.0.1", server_name="other.test")


async def test_expired_pinned_leaf_fails(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    cert, key = _built_self_signed(
        tmp_path,
        ca=True,
        key_ids=True,
        not_before=now - timedelta(days=10),
        not_after=now - timedelta(days=1),
    )
    with pytest.raises(quic.CertificateError, match="expired"):
        await _handshake(cert, key, "127.0.0.1")


def test_pinned_leaf_with_a_forged_self_signature_fails(tmp_path: Path) -> None:
    """The pin is the certificate's bytes, and those bytes must be self-consistent."""
    cert_path, _ = _built_self_signed(tmp_path, ca=True, key_ids=True)
    der = bytearray(
        x509.load_pem_x509_certificate(cert_path.read_bytes()).public_bytes(
            serialization.Encoding.DER
        )
    )
    der[-10] ^= 0x01  # inside the signature value
    forged = x509.load_der_x509_certificate(bytes(der))
    with pytest.raises(CertificateVerificationError, match="self-signature") as info:
        verify_server_certificate([forged], "localhost", TrustStore([forged]))
    assert info.value.alert == AlertDescription.BAD_CERTIFICATE


def test_openssl_shape_is_rejected_when_not_pinned(tmp_path: Path) -> None:
    """Only the pinned certificate itself is relaxed: a CA-flagged leaf that
    chains to some other anchor is still not a valid end-entity certificate."""
    cert_path, _ = _built_self_signed(tmp_path, ca=True, key_ids=True)
    leaf = x509.load_pem_x509_certificate(cert_path.read_bytes())
    other = CertificateAuthority.create("unrelated CA").certificate
    with pytest.raises(CertificateVerificationError) as info:
        verify_server_certificate([leaf], "localhost", TrustStore([other]))
    assert info.value.alert == AlertDescription.UNKNOWN_CA


def test_chains_to_a_ca_keep_the_strict_checks() -> None:
    """A CA-issued leaf carrying cA=TRUE is refused even though its CA is trusted."""
    authority = CertificateAuthority.create("strict CA")
    now = datetime.now(UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(authority.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(authority.private_key.public_key()),
            False,
        )
        .sign(authority.private_key, hashes.SHA256())
    )
    with pytest.raises(CertificateVerificationError, match="cA must not be asserted"):
        verify_server_certificate([leaf], "localhost", TrustStore([authority.certificate]))
