"""CertificateVerify signatures: schemes, selection, signing and checking.

Theory of operation: TLS 1.3 binds each signature scheme to one key type and
one hash (RFC 8446 §4.2.3) -- ECDSA P-256 only with SHA-256, RSA only with
PSS. :func:`schemes_for_key` lists what a key can sign with; the signer picks
the first of its own preference list that the peer offered
(:func:`choose_scheme`). The signed content is the transcript hash behind a
context string (RFC 8446 §4.4.3). The RSA PKCS#1 v1.5 schemes are offered only
so that certificate *chains* signed with them are acceptable; they are never
valid in a CertificateVerify.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from .alerts import AlertDescription, TlsAlert, illegal_parameter

PrivateKey = (
    ec.EllipticCurvePrivateKey
    | rsa.RSAPrivateKey
    | ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
)


class SignatureScheme(IntEnum):
    """Signature schemes (RFC 8446 §4.2.3)."""

    RSA_PKCS1_SHA256 = 0x0401
    RSA_PKCS1_SHA384 = 0x0501
    RSA_PKCS1_SHA512 = 0x0601
    ECDSA_SECP256R1_SHA256 = 0x0403
    ECDSA_SECP384R1_SHA384 = 0x0503
    ECDSA_SECP521R1_SHA512 = 0x0603
    RSA_PSS_RSAE_SHA256 = 0x0804
    RSA_PSS_RSAE_SHA384 = 0x0805
    RSA_PSS_RSAE_SHA512 = 0x0806
    ED25519 = 0x0807
    ED448 = 0x0808


S = SignatureScheme
DEFAULT_SIGNATURE_SCHEMES = (
    S.ECDSA_SECP256R1_SHA256,
    S.RSA_PSS_RSAE_SHA256,
    S.ED25519,
    S.ECDSA_SECP384R1_SHA384,
    S.RSA_PSS_RSAE_SHA384,
    S.RSA_PSS_RSAE_SHA512,
    S.ECDSA_SECP521R1_SHA512,
    S.ED448,
    # Certificate signatures only (RFC 8446 §4.2.3), for chains the web PKI uses.
    S.RSA_PKCS1_SHA256,
    S.RSA_PKCS1_SHA384,
    S.RSA_PKCS1_SHA512,
)
# RFC 8446 §4.4.3: RSASSA-PKCS1-v1_5 must not be used in CertificateVerify.
CERTIFICATE_ONLY = frozenset({S.RSA_PKCS1_SHA256, S.RSA_PKCS1_SHA384, S.RSA_PKCS1_SHA512})

_ECDSA_HASHES: dict[SignatureScheme, hashes.HashAlgorithm] = {
    S.ECDSA_SECP256R1_SHA256: hashes.SHA256(),
    S.ECDSA_SECP384R1_SHA384: hashes.SHA384(),
    S.ECDSA_SECP521R1_SHA512: hashes.SHA512(),
}
_PSS: dict[SignatureScheme, hashes.HashAlgorithm] = {
    S.RSA_PSS_RSAE_SHA256: hashes.SHA256(),
    S.RSA_PSS_RSAE_SHA384: hashes.SHA384(),
    S.RSA_PSS_RSAE_SHA512: hashes.SHA512(),
}
_CURVE_SCHEMES = {
    "secp256r1": S.ECDSA_SECP256R1_SHA256,
    "secp384r1": S.ECDSA_SECP384R1_SHA384,
    "secp521r1": S.ECDSA_SECP521R1_SHA512,
}

SERVER_CONTEXT = b"TLS 1.3, server CertificateVerify"
CLIENT_CONTEXT = b"TLS 1.3, client CertificateVerify"
MIN_RSA_BITS = 2048


def schemes_for_key(key: PrivateKey | CertificatePublicKeyTypes) -> tuple[SignatureScheme, ...]:
    """The CertificateVerify schemes a private or public key can be used with."""
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        scheme = _CURVE_SCHEMES.get(key.curve.name)
        return (scheme,) if scheme is not None else ()
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return tuple(_PSS)
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return (S.ED25519,)
    if isinstance(key, ed448.Ed448PrivateKey | ed448.Ed448PublicKey):
        return (S.ED448,)
    return ()


def check_private_key(key: object) -> None:
    """Raise ValueError for a key we cannot sign a CertificateVerify with."""
    if not isinstance(
        key,
        ec.EllipticCurvePrivateKey
        | rsa.RSAPrivateKey
        | ed25519.Ed25519PrivateKey
        | ed448.Ed448PrivateKey,
    ):
        raise ValueError(f"unsupported private key type {type(key).__name__}")
    if not schemes_for_key(key):
        raise ValueError("unsupported elliptic curve (use P-256, P-384 or P-521)")
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size < MIN_RSA_BITS:
        raise ValueError(f"RSA keys must have at least {MIN_RSA_BITS} bits")


def choose_scheme(
    key: PrivateKey, ours: Sequence[int], peer_offered: Sequence[int]
) -> SignatureScheme | None:
    """The first of our schemes usable with ``key`` that the peer offered."""
    usable = schemes_for_key(key)
    offered = set(peer_offered)
    for scheme in ours:
        if scheme in usable and scheme in offered:
            return SignatureScheme(scheme)
    return None


def signed_content(transcript_hash: bytes, *, server: bool) -> bytes:
    """What a CertificateVerify signs (RFC 8446 §4.4.3)."""
    context = SERVER_CONTEXT if server else CLIENT_CONTEXT
    return b" " * 64 + context + b"\x00" + transcript_hash


def sign(key: PrivateKey, scheme: SignatureScheme, content: bytes) -> bytes:
    """Sign ``content`` with ``key`` under ``scheme`` (which must suit the key)."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(content, ec.ECDSA(_ECDSA_HASHES[scheme]))
    if isinstance(key, rsa.RSAPrivateKey):
        algorithm = _PSS[scheme]
        # RFC 8446 §4.2.3: the PSS salt is as long as the digest.
        pss = padding.PSS(mgf=padding.MGF1(algorithm), salt_length=padding.PSS.DIGEST_LENGTH)
        return key.sign(content, pss, algorithm)
    return key.sign(content)


def verify(
    public_key: CertificatePublicKeyTypes, scheme: int, signature: bytes, content: bytes
) -> None:
    """Check a CertificateVerify signature; raise TlsAlert if it is not good.

    A scheme that does not fit the key is illegal_parameter; a wrong signature
    is decrypt_error (RFC 8446 §4.4.3).
    """
    if scheme not in schemes_for_key(public_key):
        raise illegal_parameter(
            f"signature scheme 0x{scheme:04x} does not match the certificate's key"
        )
    scheme = SignatureScheme(scheme)
    try:
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, content, ec.ECDSA(_ECDSA_HASHES[scheme]))
        elif isinstance(public_key, rsa.RSAPublicKey):
            algorithm = _PSS[scheme]
            pss = padding.PSS(mgf=padding.MGF1(algorithm), salt_length=padding.PSS.DIGEST_LENGTH)
            public_key.verify(signature, content, pss, algorithm)
        elif isinstance(public_key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            public_key.verify(signature, content)
    except (InvalidSignature, ValueError):
        raise TlsAlert(
            AlertDescription.DECRYPT_ERROR, "CertificateVerify signature is invalid"
        ) from None
