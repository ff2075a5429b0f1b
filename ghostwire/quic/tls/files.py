"""Certificates, private keys and CA bundles read from files.

Theory of operation: reading files is slow and blocking, so it happens when a
config is built (``ClientConfig(cafile=...)``, ``ServerConfig(certfile=...)``),
or once in a worker thread, never inside a handshake. The TLS core
(:mod:`.verify`, the handshake) only ever sees the parsed objects.

The system bundle is found where OpenSSL would look (``SSL_CERT_FILE``,
``SSL_CERT_DIR``, then :func:`ssl.get_default_verify_paths`), loaded on first
use and cached for the life of the process.
"""

from __future__ import annotations

import os
import re
import threading
import warnings
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.utils import CryptographyDeprecationWarning

from .signatures import PrivateKey, check_private_key
from .verify import TrustStore

PemSource = bytes | str | os.PathLike[str]

_PEM_CERT = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n.+?\r?\n-----END CERTIFICATE-----", re.DOTALL
)
_PEM_KEY = re.compile(
    rb"-----BEGIN ((?:RSA |EC |ENCRYPTED )?PRIVATE KEY)-----.+?-----END \1-----", re.DOTALL
)

_system: TrustStore | None = None
_system_lock = threading.Lock()  # two threads loading at once load once


class TrustStoreError(RuntimeError):
    """No usable trust anchors (e.g. no system CA bundle was found)."""


def _read_source(source: PemSource) -> bytes:
    """PEM/DER bytes, PEM text, or a path to a file holding them."""
    if isinstance(source, bytes):
        return source
    if isinstance(source, str) and "-----BEGIN" in source:
        return source.encode("ascii")
    return Path(source).read_bytes()


def load_certificate_chain(source: PemSource) -> list[x509.Certificate]:
    """All certificates in a PEM file or PEM/DER bytes, in file order (leaf first)."""
    data = _read_source(source)
    if b"-----BEGIN" not in data:
        return [x509.load_der_x509_certificate(data)]
    return x509.load_pem_x509_certificates(data)


def load_private_key(source: PemSource, password: bytes | None = None) -> PrivateKey:
    """The private key in a PEM file or PEM/DER bytes (a combined cert+key PEM works)."""
    data = _read_source(source)
    key: object
    if b"-----BEGIN" in data:
        match = _PEM_KEY.search(data)
        if match is None:
            raise ValueError("no PEM private key found")
        key = serialization.load_pem_private_key(match.group(0), password)
    else:
        key = serialization.load_der_private_key(data, password)
    check_private_key(key)
    return key  # type: ignore[return-value]


def load_trust_store(source: PemSource) -> TrustStore:
    """Every certificate in a PEM file (a CA bundle, or a pinned self-signed leaf)."""
    return TrustStore.from_pem(_read_source(source))


def system_trust_store() -> TrustStore:
    """The operating system's CA bundle, loaded on first use and cached.

    Raises :class:`TrustStoreError` if no certificate is found.
    """
    global _system
    with _system_lock:
        if _system is None:
            _system = TrustStore(_load_system_certificates())
        return _system


def _load_pem_lenient(data: bytes) -> list[x509.Certificate]:
    """Certificates in ``data``, skipping blocks that do not parse.

    System bundles hold a few old roots that ``cryptography`` warns about
    (e.g. non-positive serial numbers); those warnings are not the user's
    business, so they are silenced here.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        try:
            return x509.load_pem_x509_certificates(data)
        except ValueError:
            pass
        certs = []
        for block in _PEM_CERT.findall(data):
            try:
                certs.append(x509.load_pem_x509_certificate(block))
            except ValueError:
                continue
        return certs


def _load_system_certificates() -> list[x509.Certificate]:
    import ssl  # only to ask where OpenSSL keeps its bundle

    paths = ssl.get_default_verify_paths()
    files = [os.environ.get(paths.openssl_cafile_env), paths.cafile, paths.openssl_cafile]
    dirs = [os.environ.get(paths.openssl_capath_env), paths.capath, paths.openssl_capath]
    certs: list[x509.Certificate] = []
    for name in files:
        if name and os.path.isfile(name):
            certs += _load_pem_lenient(Path(name).read_bytes())
            break
    if not certs:
        # A hashed directory (c_rehash) only when there is no bundle file.
        for name in dirs:
            if name and os.path.isdir(name):
                for entry in sorted(Path(name).iterdir()):
                    if entry.is_file():
                        certs += _load_pem_lenient(entry.read_bytes())
                if certs:
                    break
    if not certs:
        raise TrustStoreError(
            "no system CA certificates found (looked at SSL_CERT_FILE, SSL_CERT_DIR and "
            f"{paths.cafile or paths.openssl_cafile}); pass a CA file (cafile=...) instead"
        )
    return certs
