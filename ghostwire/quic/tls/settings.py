"""What one TLS handshake is configured with (:class:`TlsSettings`).

Theory of operation: a plain dataclass, validated when made so that a bad
configuration fails at the line that wrote it (ValueError / TypeError), never
as an alert in the middle of a handshake. The QUIC connection builds one per
connection, so validation is kept cheap.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum
from typing import TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ..suites import CipherSuite
from .key_exchange import DEFAULT_GROUPS, Group
from .signatures import DEFAULT_SIGNATURE_SCHEMES, PrivateKey, SignatureScheme, check_private_key
from .tickets import SessionTicket, TicketIssuer, wall_clock
from .verify import TrustStore

DEFAULT_CIPHER_SUITES = (
    CipherSuite.AES_128_GCM_SHA256,
    CipherSuite.AES_256_GCM_SHA384,
    CipherSuite.CHACHA20_POLY1305_SHA256,
)
DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024


@dataclass
class TlsSettings:
    """Configuration of one TLS 1.3 handshake for QUIC.

    * ``alpn_protocols`` -- mandatory in QUIC (RFC 9001 §8.1), preference order.
    * ``server_name`` -- client: sent as SNI when it is a DNS name, and the
      name the server's certificate must match (a DNS name or an IP literal).
    * ``groups`` -- client: the first is the key_share sent in the first
      ClientHello; server: the groups accepted, in preference order.
    * ``certificate_chain`` / ``private_key`` -- our identity, leaf first
      (servers always; clients for mutual TLS).
    * ``verify_peer`` -- client: verify the server (chain + name); server:
      verify client certificates when one is sent.
    * ``trust_store`` -- ``None`` means the system CA bundle.
    * ``request_client_certificate`` / ``require_client_certificate`` --
      server: send a CertificateRequest / fail with certificate_required when
      the client sends no certificate (implies requesting one).
    * ``keylog`` -- receives NSS key log lines (SSLKEYLOGFILE format).
    * ``transport_parameters_for`` -- server: called with the client's
      transport parameters once its ClientHello is accepted; returns ours
      (QUIC picks the version there, RFC 9368 §2.3). ``None``: ours are fixed.
    * ``now`` -- the time certificates are checked at; ``None`` reads the
      real clock at verification (the only clock read of the TLS core).
    * ``max_message_size`` -- the largest handshake message accepted.
    * ``session_ticket`` -- client: a ticket to resume with (RFC 8446 §2.2).
    * ``request_tickets`` -- client: ask for session tickets (we send
      psk_key_exchange_modes; servers issue tickets only then).
    * ``early_data`` -- client: offer 0-RTT with ``session_ticket`` when it
      allows it; server: accept 0-RTT (and say so in the tickets we issue).
    * ``ticket_issuer`` -- server: seals the tickets we send and opens the
      ones clients offer; ``None``: no tickets, no resumption.
    * ``early_data_check`` -- server: called with the transport parameters
      a ticket remembers; False refuses 0-RTT (RFC 9000 §7.4.1).
    * ``clock`` -- the wall clock ticket ages are measured with.
    """

    is_client: bool
    alpn_protocols: list[str]
    server_name: str | None = None
    cipher_suites: list[CipherSuite] = field(default_factory=lambda: list(DEFAULT_CIPHER_SUITES))
    groups: list[Group] = field(default_factory=lambda: list(DEFAULT_GROUPS))
    signature_schemes: list[SignatureScheme] = field(
        default_factory=lambda: list(DEFAULT_SIGNATURE_SCHEMES)
    )
    certificate_chain: list[x509.Certificate] = field(default_factory=list)
    private_key: PrivateKey | None = None
    verify_peer: bool = True
    trust_store: TrustStore | None = None
    request_client_certificate: bool = False
    require_client_certificate: bool = False
    keylog: Callable[[str], None] | None = field(default=None, repr=False)
    transport_parameters_for: Callable[[bytes], bytes] | None = field(default=None, repr=False)
    now: datetime | None = None
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    request_tickets: bool = False
    session_ticket: SessionTicket | None = field(default=None, repr=False)
    early_data: bool = False
    ticket_issuer: TicketIssuer | None = field(default=None, repr=False)
    early_data_check: Callable[[bytes], bool] | None = field(default=None, repr=False)
    clock: Callable[[], float] = field(default=wall_clock, repr=False)

    def __post_init__(self) -> None:
        self._check_lists()
        self._check_identity()
        if self.is_client:
            self._check_client()
        elif not self.certificate_chain:
            raise ValueError("a TLS server needs a certificate_chain and a private_key")
        if self.require_client_certificate:
            self.request_client_certificate = True
        if self.max_message_size < 1024:
            raise ValueError("max_message_size must be at least 1024")

    def _check_lists(self) -> None:
        protocols: object = self.alpn_protocols
        if isinstance(protocols, str):
            raise TypeError("alpn_protocols must be a list of protocol names")
        if not self.alpn_protocols:
            raise ValueError("alpn_protocols must not be empty (ALPN is mandatory in QUIC)")
        for name in self.alpn_protocols:
            if not 1 <= len(name.encode()) <= 255:
                raise ValueError(f"invalid ALPN protocol name {name!r}")
        self.cipher_suites = _as_enums(CipherSuite, self.cipher_suites)
        self.groups = _as_enums(Group, self.groups)
        self.signature_schemes = _as_enums(SignatureScheme, self.signature_schemes)
        if not (self.cipher_suites and self.groups and self.signature_schemes):
            raise ValueError("cipher_suites, groups and signature_schemes must not be empty")
        if len(set(self.groups)) != len(self.groups):
            raise ValueError("groups must not repeat")

    def _check_identity(self) -> None:
        if bool(self.certificate_chain) != (self.private_key is not None):
            raise ValueError("certificate_chain and private_key go together")
        if self.private_key is None:
            return
        _check_key_matches(self.private_key, self.certificate_chain[0])

    def _check_client(self) -> None:
        if self.server_name is not None:
            self.server_name = normalize_server_name(self.server_name)
        if self.verify_peer and not self.server_name:
            raise ValueError("server_name is required to verify the server's certificate")

    @property
    def sni(self) -> str | None:
        """The server_name to send in SNI: DNS names only (RFC 6066 §3)."""
        name = self.server_name
        if name is None or is_ip_literal(name):
            return None
        return name


_E = TypeVar("_E", bound=IntEnum)


def _as_enums(enum: type[_E], values: Iterable[int]) -> list[_E]:
    """``values`` as members of ``enum`` (ValueError for unknown ones)."""
    return [v if type(v) is enum else enum(v) for v in values]


# (id(key), id(cert)) -> (key, cert) of pairs already checked. Holding the
# objects keeps their ids from being reused while they are in the cache.
_CHECKED_PAIRS: dict[tuple[int, int], tuple[PrivateKey, x509.Certificate]] = {}
_CHECKED_PAIRS_MAX = 64


def _check_key_matches(key: PrivateKey, leaf: x509.Certificate) -> None:
    """ValueError unless ``key`` belongs to ``leaf`` (cached: settings are made per connection)."""
    ids = (id(key), id(leaf))
    if ids in _CHECKED_PAIRS:
        return
    check_private_key(key)
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*spki) != leaf.public_key().public_bytes(*spki):
        raise ValueError("private_key does not match the first certificate of the chain")
    if len(_CHECKED_PAIRS) >= _CHECKED_PAIRS_MAX:
        _CHECKED_PAIRS.clear()
    _CHECKED_PAIRS[ids] = (key, leaf)


def is_ip_literal(name: str) -> bool:
    """True for an IPv4 or IPv6 address literal."""
    if ":" not in name and not name[-1:].isdigit():
        return False  # fast path: a DNS name (its last label is not numeric)
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def normalize_server_name(name: str) -> str:
    """A server name as SNI and verification use it: IDNA A-labels, no trailing dot."""
    name = name.strip()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]  # a bracketed IPv6 literal
    name = name.rstrip(".")
    if is_ip_literal(name):
        return name
    name = name.lower()
    if not name.isascii():
        name = name.encode("idna").decode("ascii")
    return name
