"""The TLS 1.3 key schedule and handshake transcript (RFC 8446 §7.1, §4.4.1).

Theory of operation: :class:`Transcript` hashes handshake messages
incrementally. Until the cipher suite (and so the hash) is known -- a client
has sent its ClientHello but not seen the ServerHello -- messages are kept
and hashed once the hash is chosen. After a HelloRetryRequest the first
ClientHello is replaced by the synthetic ``message_hash`` message.

:class:`KeySchedule` walks the secret chain of RFC 8446 §7.1 for a (EC)DHE
handshake without a PSK::

    early = Extract(0, 0)          -- a constant per hash; cached
    handshake = Extract(Derive-Secret(early, "derived", ""), shared secret)
    master = Extract(Derive-Secret(handshake, "derived", ""), 0)

with the traffic secrets derived from the transcript hash at the points the
RFC names. A resumption PSK changes only ``early = Extract(0, PSK)``, from
which the 0-RTT secret (``c e traffic``) also comes; the (EC)DHE input
stays (psk_dhe_ke, RFC 8446 §4.2.9).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Any

from ..suites import CipherSuite, derive_secrets, hkdf_expand_label, hkdf_extract, hmac_digest
from .messages import message_hash


class Transcript:
    """Running hash of the handshake messages (RFC 8446 §4.4.1)."""

    __slots__ = ("_hash", "_pending")

    def __init__(self) -> None:
        self._hash: Any = None  # a hashlib object once the suite is known
        self._pending: list[bytes] = []

    @property
    def hash_chosen(self) -> bool:
        return self._hash is not None

    def choose_hash(self, hash_name: str) -> None:
        """Fix the hash function (once the cipher suite is negotiated)."""
        if self._hash is not None:
            return
        self._hash = hashlib.new(hash_name)
        for message in self._pending:
            self._hash.update(message)
        self._pending.clear()

    def update(self, message: bytes) -> None:
        if self._hash is None:
            self._pending.append(message)
        else:
            self._hash.update(message)

    def digest_with(self, hash_name: str, extra: bytes) -> bytes:
        """Hash of everything so far plus ``extra``, in ``hash_name`` (for PSK
        binders, which may be computed before the suite is chosen)."""
        if self._hash is not None:
            if self._hash.name != hash_name:
                raise RuntimeError("transcript hash differs from the PSK's")
            h = self._hash.copy()
        else:
            h = hashlib.new(hash_name)
            for message in self._pending:
                h.update(message)
        h.update(extra)
        return bytes(h.digest())

    def digest(self) -> bytes:
        """Hash of everything so far (the hash must have been chosen)."""
        if self._hash is None:
            raise RuntimeError("transcript hash not chosen yet")
        return bytes(self._hash.copy().digest())

    def replace_with_message_hash(self) -> None:
        """Replace ClientHello1 by ``message_hash`` (RFC 8446 §4.4.1, HRR).

        Must be called when the transcript holds exactly ClientHello1.
        """
        digest = self.digest()
        self._hash = hashlib.new(self._hash.name)
        self._hash.update(message_hash(digest))


@lru_cache(maxsize=4)
def _derived_from_early(hash_name: str) -> bytes:
    """Derive-Secret(early_secret, "derived", "") with no PSK: a constant."""
    zeros = bytes(hashlib.new(hash_name).digest_size)
    early = hkdf_extract(hash_name, b"", zeros)
    return _derive_secret(hash_name, early, b"derived", hashlib.new(hash_name).digest())


@lru_cache(maxsize=4)
def _empty_hash(hash_name: str) -> bytes:
    return hashlib.new(hash_name).digest()


def _derive_secret(hash_name: str, secret: bytes, label: bytes, transcript_hash: bytes) -> bytes:
    """Derive-Secret (RFC 8446 §7.1) given the transcript hash."""
    return hkdf_expand_label(hash_name, secret, label, transcript_hash, len(transcript_hash))


class KeySchedule:
    """The secrets of one handshake; call the methods in protocol order."""

    __slots__ = (
        "_early_secret",
        "_handshake_secret",
        "_hash_length",
        "_hash_name",
        "_master_secret",
    )

    def __init__(self, cipher_suite: CipherSuite, psk: bytes | None = None) -> None:
        self._hash_name = cipher_suite.hash_name
        self._hash_length = cipher_suite.hash_length
        self._early_secret = b"" if psk is None else hkdf_extract(self._hash_name, b"", psk)
        self._handshake_secret = b""
        self._master_secret = b""

    def client_early_traffic_secret(self, client_hello_hash: bytes) -> bytes:
        """The 0-RTT secret (RFC 8446 §7.1 ``c e traffic``); hash of the ClientHello."""
        if not self._early_secret:
            raise RuntimeError("0-RTT needs a PSK")
        return _derive_secret(
            self._hash_name, self._early_secret, b"c e traffic", client_hello_hash
        )

    def handshake_traffic_secrets(
        self, shared_secret: bytes, transcript_hash: bytes
    ) -> tuple[bytes, bytes]:
        """``(client, server)`` handshake traffic secrets; hash of ClientHello..ServerHello."""
        name = self._hash_name
        if self._early_secret:
            derived = _derive_secret(name, self._early_secret, b"derived", _empty_hash(name))
        else:
            derived = _derived_from_early(name)
        self._handshake_secret = hkdf_extract(name, derived, shared_secret)
        client, server, master_salt = derive_secrets(
            name,
            self._handshake_secret,
            (
                (b"c hs traffic", transcript_hash),
                (b"s hs traffic", transcript_hash),
                (b"derived", _empty_hash(name)),
            ),
        )
        self._master_secret = hkdf_extract(name, master_salt, bytes(self._hash_length))
        return client, server

    def application_traffic_secrets(self, transcript_hash: bytes) -> tuple[bytes, bytes]:
        """``(client, server)`` first application traffic secrets; hash up to server Finished."""
        if not self._master_secret:
            raise RuntimeError("handshake secrets first")
        name = self._hash_name
        client, server = derive_secrets(
            name,
            self._master_secret,
            ((b"c ap traffic", transcript_hash), (b"s ap traffic", transcript_hash)),
        )
        return client, server

    def resumption_master_secret(self, transcript_hash: bytes) -> bytes:
        """RFC 8446 §7.1 ``res master``; hash up to the client Finished (for future PSKs)."""
        return _derive_secret(self._hash_name, self._master_secret, b"res master", transcript_hash)

    def finished_verify_data(self, base_key: bytes, transcript_hash: bytes) -> bytes:
        """Finished.verify_data for ``base_key`` (a handshake traffic secret), RFC 8446 §4.4.4."""
        name = self._hash_name
        finished_key = hkdf_expand_label(name, base_key, b"finished", b"", self._hash_length)
        return hmac_digest(finished_key, transcript_hash, name)
