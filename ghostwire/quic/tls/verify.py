"""Certificate chains: trust stores and verifying peers.

Theory of operation: path building and the web-PKI policy (validity, key
usage, EKU, name constraints, SAN matching) are delegated to
``cryptography.x509.verification``. This module adds what a TLS stack needs
around it:

* :class:`TrustStore` -- the trust anchors, from PEM or a list of
  certificates. Files (a CA file, the system bundle) are read by
  :mod:`.files`, when a config is built, never during a handshake.
* :func:`verify_server_certificate` / :func:`verify_client_certificate` --
  run the verifier and translate a failure into the right TLS alert
  (certificate_expired, bad_certificate for a name mismatch, unknown_ca for a
  chain that does not lead to a trust anchor), with a reason that says what
  was expected.

The one exception to "the core never reads the clock": certificate validity
is checked at ``now`` when given (tests, reproducibility) and otherwise at
the real current time.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import NoReturn

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    ServerVerifier,
    Store,
    VerificationError,
)

from .alerts import AlertDescription, CertificateVerificationError

MAX_CHAIN_DEPTH = 8

# A pinned leaf: any extensions, but a subjectAltName to match the name against.
_PINNED_EE = ExtensionPolicy.permit_all().require_present(
    x509.SubjectAlternativeName, Criticality.AGNOSTIC, None
)


class TrustStore:
    """A set of trust anchors (root certificates) to verify peers against."""

    def __init__(self, certificates: Iterable[x509.Certificate]) -> None:
        unique: dict[bytes, x509.Certificate] = {}
        for cert in certificates:
            unique.setdefault(cert.public_bytes(serialization.Encoding.DER), cert)
        if not unique:
            raise ValueError("a trust store needs at least one certificate")
        self.certificates: list[x509.Certificate] = list(unique.values())
        self._der = frozenset(unique)
        self._store = Store(self.certificates)

    def pins(self, cert: x509.Certificate) -> bool:
        """Whether ``cert`` itself is one of the anchors (an explicitly pinned leaf)."""
        return cert.public_bytes(serialization.Encoding.DER) in self._der

    @property
    def store(self) -> Store:
        """The ``cryptography`` Store built from the certificates."""
        return self._store

    @classmethod
    def from_pem(cls, data: bytes | str) -> TrustStore:
        """Every certificate in PEM ``data``."""
        raw = data.encode("ascii") if isinstance(data, str) else data
        return cls(x509.load_pem_x509_certificates(raw))

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> TrustStore:
        """Every certificate in a PEM file (reads the file: see :mod:`.files`)."""
        from .files import load_trust_store

        return load_trust_store(path)

    @classmethod
    def from_certificates(cls, certificates: Sequence[x509.Certificate]) -> TrustStore:
        return cls(certificates)

    @classmethod
    def system(cls) -> TrustStore:
        """The system CA bundle (loaded once: see :func:`.files.system_trust_store`)."""
        from .files import system_trust_store

        return system_trust_store()

    def __len__(self) -> int:
        return len(self.certificates)

    def __repr__(self) -> str:
        return f"TrustStore({len(self.certificates)} certificates)"


# ---------------------------------------------------------------------------
# Verification
# ---------------------------------------------------------------------------


def _now(now: datetime | None) -> datetime:
    # The one clock read of the TLS core (see the module docstring).
    return now if now is not None else datetime.now(UTC)


def _trust_store(trust_store: TrustStore | None) -> TrustStore:
    # The anchors were loaded with the config; a handshake never reads files.
    if trust_store is None:
        raise CertificateVerificationError(
            AlertDescription.UNKNOWN_CA,
            "no trust anchors to verify the peer against (no system CA bundle was "
            "found); pass a CA file (cafile=...)",
        )
    return trust_store


def _subject_name(cert: x509.Certificate) -> str:
    try:
        return cert.subject.rfc4514_string() or "(empty subject)"
    except ValueError:
        return "(unreadable subject)"


def _check_validity(chain: Sequence[x509.Certificate], at: datetime) -> None:
    """certificate_expired for a certificate used outside its validity period."""
    for cert in chain:
        if at > cert.not_valid_after_utc:
            problem = f"expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC"
        elif at < cert.not_valid_before_utc:
            problem = f"not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M:%S} UTC"
        else:
            continue
        raise CertificateVerificationError(
            AlertDescription.CERTIFICATE_EXPIRED,
            f"certificate {_subject_name(cert)} {problem} (checked at {at:%Y-%m-%d %H:%M:%S})",
        )


def certificate_names(cert: x509.Certificate) -> list[str]:
    """The DNS names and IP addresses in the certificate's subjectAltName."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    names: list[str] = list(san.get_values_for_type(x509.DNSName))
    names += [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    return names


def _subject_for(name: str) -> x509.DNSName | x509.IPAddress:
    if ":" not in name and not name[-1:].isdigit():
        return x509.DNSName(name)  # fast path: not an IP literal
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


@contextmanager
def _malformed_is_bad_certificate() -> Iterator[None]:
    """Certificates parse lazily: a malformed field surfaces on first use.

    ``cryptography`` reports malformed input with a variety of exception
    types (ValueError, DuplicateExtension, InvalidVersion, ...), so anything
    but our own verdict raised while looking at the peer's certificates
    means the certificate is bad.
    """
    try:
        yield
    except CertificateVerificationError:
        raise
    except Exception as exc:
        raise CertificateVerificationError(
            AlertDescription.BAD_CERTIFICATE, f"malformed certificate: {exc}"
        ) from None


def verify_server_certificate(
    chain: Sequence[x509.Certificate],
    server_name: str,
    trust_store: TrustStore | None = None,
    now: datetime | None = None,
) -> None:
    """Verify a server's chain (leaf first) for ``server_name`` (DNS name or IP literal).

    Raises :class:`CertificateVerificationError`.
    """
    with _malformed_is_bad_certificate():
        _verify_server(chain, server_name, trust_store, now)


# Server chains that verified: (id of the trust store, server name, the DER of
# every certificate presented) -> (the store, held so that its id cannot be
# reused while cached; the validity window of the certificates the verdict
# rests on). A client connecting again to the same server gets the same chain:
# path building and signature checks (~1.7 M instructions, a third of a full
# handshake's client leg) are then a dict lookup. Safe because the verdict is
# a function of exactly these inputs and the time, and the time enters only
# through the validity periods of the leaf and the certificates of the path
# that was built: at any time inside all of them that same path verifies
# again. A time outside the window, another store object, name or chain
# (down to a byte) verifies from scratch; failures are never cached.
_VERIFIED: dict[tuple[int, str, tuple[bytes, ...]], tuple[TrustStore, datetime, datetime]] = {}
_VERIFIED_MAX = 64
_DER = serialization.Encoding.DER


def _verify_server(
    chain: Sequence[x509.Certificate],
    server_name: str,
    trust_store: TrustStore | None,
    now: datetime | None,
) -> None:
    if not chain:
        raise CertificateVerificationError(AlertDescription.BAD_CERTIFICATE, "no certificate")
    at = _now(now)
    key = (id(trust_store), server_name, tuple(cert.public_bytes(_DER) for cert in chain))
    cached = _VERIFIED.get(key)
    if cached is not None and cached[0] is trust_store and cached[1] <= at <= cached[2]:
        return
    _check_validity(chain[:1], at)
    store = _trust_store(trust_store)
    leaf, intermediates = chain[0], list(chain[1:])
    if store.pins(leaf):
        _verify_pinned_server(leaf, server_name, at)
        _remember_verified(key, store, [leaf])
        return
    builder = PolicyBuilder().store(store.store).time(at)
    builder = builder.max_chain_depth(MAX_CHAIN_DEPTH)
    verifier = _server_verifier(builder, server_name)
    try:
        path = verifier.verify(leaf, intermediates)
    except VerificationError as exc:
        failure = str(exc)
    else:
        _remember_verified(key, store, path)  # the leaf first, the anchor last
        return
    _explain_failure(builder, chain, server_name, failure, at)


def _remember_verified(
    key: tuple[int, str, tuple[bytes, ...]], store: TrustStore, certs: list[x509.Certificate]
) -> None:
    """Cache a verdict with the window in which every one of ``certs`` is valid."""
    start = max(cert.not_valid_before_utc for cert in certs)
    end = min(cert.not_valid_after_utc for cert in certs)
    if len(_VERIFIED) >= _VERIFIED_MAX:
        _VERIFIED.clear()
    _VERIFIED[key] = (store, start, end)


def _server_verifier(builder: PolicyBuilder, server_name: str) -> ServerVerifier:
    try:
        return builder.build_server_verifier(_subject_for(server_name))
    except ValueError:
        # Not a certificate problem, but a name that no certificate can match.
        raise CertificateVerificationError(
            AlertDescription.BAD_CERTIFICATE, f"{server_name!r} is not a valid host name"
        ) from None


def _check_self_signature(cert: x509.Certificate) -> None:
    """A self-issued certificate must carry a valid signature by its own key."""
    if cert.issuer != cert.subject:
        return  # pinned by its exact bytes; its issuer is not ours to know
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise CertificateVerificationError(
            AlertDescription.BAD_CERTIFICATE,
            f"pinned certificate {_subject_name(cert)} has a bad self-signature "
            f"({exc or 'invalid'})",
        ) from None


def _verify_pinned_server(leaf: x509.Certificate, server_name: str, at: datetime) -> None:
    """A leaf the user named in ``cafile`` is trusted as given (what curl and aioquic do).

    Self-signed certificates made with ``openssl req -x509`` assert
    ``basicConstraints cA=TRUE`` and may lack an Authority Key Identifier;
    the web-PKI profile rejects both in an end-entity certificate. A pinned
    leaf skips those profile checks only: its signature, validity period and
    subjectAltName match are still checked. Chains to a CA stay strict.
    """
    _check_self_signature(leaf)
    builder = (
        PolicyBuilder()
        .store(Store([leaf]))
        .time(at)
        .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=_PINNED_EE)
    )
    try:
        _server_verifier(builder, server_name).verify(leaf, [])
    except VerificationError:
        names = certificate_names(leaf)
        raise CertificateVerificationError(
            AlertDescription.BAD_CERTIFICATE,
            f"pinned certificate is for {', '.join(names) or 'no subjectAltName'}, "
            f"not {server_name}",
        ) from None


def _explain_failure(
    builder: PolicyBuilder,
    chain: Sequence[x509.Certificate],
    server_name: str,
    failure: str,
    at: datetime,
) -> NoReturn:
    """Raise the alert that best describes why a server chain did not verify."""
    # Expired intermediates only matter when no path avoided them.
    _check_validity(chain[1:], at)
    # A name mismatch, or an untrusted chain? Try a name the certificate carries.
    leaf, intermediates = chain[0], list(chain[1:])
    names = certificate_names(leaf)
    for name in names[:1]:
        probe = "wildcard-probe" + name[1:] if name.startswith("*.") else name
        try:
            builder.build_server_verifier(_subject_for(probe)).verify(leaf, intermediates)
        except (VerificationError, ValueError):
            break
        raise CertificateVerificationError(
            AlertDescription.BAD_CERTIFICATE,
            f"certificate is for {', '.join(names)}, not {server_name}",
        )
    raise CertificateVerificationError(
        AlertDescription.UNKNOWN_CA, f"certificate chain not trusted for {server_name}: {failure}"
    )


def verify_client_certificate(
    chain: Sequence[x509.Certificate],
    trust_store: TrustStore | None = None,
    now: datetime | None = None,
) -> None:
    """Verify a client's chain (leaf first; the leaf needs the clientAuth EKU).

    Raises :class:`CertificateVerificationError`.
    """
    with _malformed_is_bad_certificate():
        _verify_client(chain, trust_store, now)


def _verify_client(
    chain: Sequence[x509.Certificate], trust_store: TrustStore | None, now: datetime | None
) -> None:
    if not chain:
        raise CertificateVerificationError(AlertDescription.BAD_CERTIFICATE, "no certificate")
    at = _now(now)
    _check_validity(chain[:1], at)
    store = _trust_store(trust_store)
    if store.pins(chain[0]):
        _check_self_signature(chain[0])  # a pinned client leaf, as for servers
        return
    verifier = (
        PolicyBuilder()
        .store(store.store)
        .time(at)
        .max_chain_depth(MAX_CHAIN_DEPTH)
        .build_client_verifier()
    )
    try:
        verifier.verify(chain[0], list(chain[1:]))
    except VerificationError as exc:
        _check_validity(chain[1:], at)
        raise CertificateVerificationError(
            AlertDescription.UNKNOWN_CA, f"client certificate chain not trusted: {exc}"
        ) from None
