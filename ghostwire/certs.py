"""Certificate utilities: a throwaway CA, issued and self-signed certificates.

Theory of operation: tests, the demo and ``h3-serve`` need certificates that
real verifiers accept. ``cryptography``'s verifier follows the web PKI
profile strictly, so every certificate made here carries the extensions it
checks: BasicConstraints (critical), KeyUsage (critical),
ExtendedKeyUsage, SubjectKeyIdentifier, AuthorityKeyIdentifier and, for
leaves, a non-critical SubjectAlternativeName with the DNS names / IP
addresses. EC P-256 keys are the default: they make the cheapest handshakes.

A :func:`self_signed_certificate` is a leaf that is also its own trust
anchor: a client trusts it by using the certificate itself as its CA file.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

KeyType = Literal["ec", "ec384", "rsa", "ed25519"]
SigningKeyType = Literal["ec", "ec384", "rsa"]
IssuingKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
PathLike = str | os.PathLike[str]

CA_VALIDITY = timedelta(days=3650)
LEAF_VALIDITY = timedelta(days=365)
CLOCK_SKEW = timedelta(hours=1)  # not_before is back-dated by this much


def generate_key(key_type: KeyType = "ec") -> IssuingKey:
    """A new private key: ``"ec"`` (P-256), ``"ec384"``, ``"rsa"`` (2048) or ``"ed25519"``."""
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "ec384":
        return ec.generate_private_key(ec.SECP384R1())
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if key_type == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"unknown key_type {key_type!r} (ec, ec384, rsa or ed25519)")


def _signature_hash(key: IssuingKey) -> hashes.SHA256 | hashes.SHA384 | None:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return None
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size > 256:
        return hashes.SHA384()
    return hashes.SHA256()


def _key_pem(key: IssuingKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _certs_pem(certs: Sequence[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ghostwire"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64]),
        ]
    )


def _general_names(names: Sequence[str]) -> list[x509.GeneralName]:
    result: list[x509.GeneralName] = []
    for name in names:
        try:
            result.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            result.append(x509.DNSName(name))
    return result


def _validity(
    not_before: datetime | None, not_after: datetime | None, default: timedelta
) -> tuple[datetime, datetime]:
    start = not_before if not_before is not None else datetime.now(UTC) - CLOCK_SKEW
    end = not_after if not_after is not None else start + CLOCK_SKEW + default
    if end <= start:
        raise ValueError("not_after must be later than not_before")
    return start, end


def _key_usage(*, ca: bool, key_encipherment: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


@dataclass
class IssuedCertificate:
    """A certificate, its private key, and the chain to present (leaf first)."""

    certificate: x509.Certificate
    private_key: IssuingKey
    chain: list[x509.Certificate] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.chain:
            self.chain = [self.certificate]

    def cert_pem(self) -> bytes:
        """The chain as PEM (leaf first), for a ``certfile``."""
        return _certs_pem(self.chain)

    def key_pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM, for a ``keyfile``."""
        return _key_pem(self.private_key)

    def write_pem(self, certfile: PathLike, keyfile: PathLike) -> None:
        """Write the chain and the key (the key file readable by the owner only)."""
        Path(certfile).write_bytes(self.cert_pem())
        fd = os.open(keyfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(self.key_pem())

    def sha256_fingerprint(self) -> str:
        """SHA-256 of the certificate (DER), as colon-separated upper-case hex."""
        digest = self.certificate.fingerprint(hashes.SHA256())
        return ":".join(f"{b:02X}" for b in digest)

    def spki_sha256_base64(self) -> str:
        """Base64 SHA-256 of the SubjectPublicKeyInfo (Chrome's
        ``--ignore-certificate-errors-spki-list``, HPKP-style pins)."""
        spki = self.certificate.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")


@dataclass
class CertificateAuthority:
    """A CA that issues server and client certificates.

    Made by :meth:`create` it is a root; :meth:`issue_intermediate` makes an
    intermediate CA, whose issued chains then include it (``parents`` holds
    the intermediates above it, nearest first; never the root).
    """

    certificate: x509.Certificate
    private_key: IssuingKey
    parents: list[x509.Certificate] = field(default_factory=list)

    @classmethod
    def create(
        cls,
        common_name: str = "ghostwire test CA",
        key_type: SigningKeyType = "ec",
        *,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
    ) -> CertificateAuthority:
        """A new self-signed root CA (``key_type`` "ec", "ec384" or "rsa")."""
        key = generate_key(_signing_key_type(key_type))
        start, end = _validity(not_before, not_after, CA_VALIDITY)
        name = _name(common_name)
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        certificate = (
            _ca_builder(name, key, start, end, path_length=None)
            .issuer_name(name)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                critical=False,
            )
            .sign(key, _signature_hash(key))
        )
        return cls(certificate, key)

    def issue(
        self,
        names: Sequence[str],
        *,
        key_type: KeyType = "ec",
        client: bool = False,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
        common_name: str | None = None,
    ) -> IssuedCertificate:
        """A leaf certificate for ``names`` (DNS names or IP literals).

        ``client=True`` makes a client certificate (clientAuth EKU) for mutual
        TLS instead of a server certificate.
        """
        if isinstance(names, str):
            names = [names]
        if not names:
            raise ValueError("a certificate needs at least one name")
        key = generate_key(key_type)
        certificate = _leaf_builder(
            names, key, client, not_before, not_after, common_name
        ).issuer_name(self.certificate.subject)
        ca_ski = self.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        certificate = certificate.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski.value),
            critical=False,
        )
        signed = certificate.sign(self.private_key, _signature_hash(self.private_key))
        return IssuedCertificate(signed, key, [signed, *self._chain_above()])

    def issue_intermediate(
        self,
        common_name: str = "ghostwire intermediate CA",
        key_type: SigningKeyType = "ec",
        *,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
    ) -> CertificateAuthority:
        """A new intermediate CA signed by this one."""
        key = generate_key(_signing_key_type(key_type))
        start, end = _validity(not_before, not_after, CA_VALIDITY)
        ca_ski = self.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        builder = _ca_builder(_name(common_name), key, start, end, path_length=0)
        builder = builder.issuer_name(self.certificate.subject).add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski.value),
            critical=False,
        )
        certificate = builder.sign(self.private_key, _signature_hash(self.private_key))
        return CertificateAuthority(certificate, key, self._chain_above())

    def _chain_above(self) -> list[x509.Certificate]:
        """What an issued chain carries after the leaf: this CA if it is an intermediate."""
        if self.certificate.issuer == self.certificate.subject:
            return []
        return [self.certificate, *self.parents]

    def cert_pem(self) -> bytes:
        """The CA certificate as PEM (what clients put in their ``cafile``)."""
        return _certs_pem([self.certificate])

    def write_pem(self, path: PathLike) -> None:
        """Write the CA certificate (not its key) as PEM."""
        Path(path).write_bytes(self.cert_pem())


def _ca_builder(
    name: x509.Name, key: IssuingKey, start: datetime, end: datetime, path_length: int | None
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(_key_usage(ca=True, key_encipherment=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )


def _leaf_builder(
    names: Sequence[str],
    key: IssuingKey,
    client: bool,
    not_before: datetime | None,
    not_after: datetime | None,
    common_name: str | None,
) -> x509.CertificateBuilder:
    start, end = _validity(not_before, not_after, LEAF_VALIDITY)
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    return (
        x509.CertificateBuilder()
        .subject_name(_name(common_name or names[0]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            _key_usage(ca=False, key_encipherment=isinstance(key, rsa.RSAPrivateKey)),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectAlternativeName(_general_names(names)), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )


def _signing_key_type(key_type: str) -> KeyType:
    # Web PKI verifiers (cryptography's included) reject Ed25519-signed certificates.
    if key_type not in ("ec", "ec384", "rsa"):
        raise ValueError(
            f"certificates signed with {key_type!r} keys are not widely accepted; "
            "use 'ec', 'ec384' or 'rsa'"
        )
    return key_type  # type: ignore[return-value]


def self_signed_certificate(
    names: Sequence[str],
    key_type: SigningKeyType = "ec",
    *,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> IssuedCertificate:
    """A self-signed server certificate for ``names``; trust it by using it as the CA file."""
    if isinstance(names, str):
        names = [names]
    if not names:
        raise ValueError("a certificate needs at least one name")
    key = generate_key(_signing_key_type(key_type))
    builder = _leaf_builder(names, key, False, not_before, not_after, None)
    builder = builder.issuer_name(_name(names[0]))
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    builder = builder.add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
    )
    certificate = builder.sign(key, _signature_hash(key))
    return IssuedCertificate(certificate, key, [certificate])
