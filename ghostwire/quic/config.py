"""Client and server configuration.

Configs are plain dataclasses validated when they are made, so a bad value
fails at the line that wrote it, not deep inside a handshake. Certificates and
keys given as file paths are loaded at construction too (like
``ssl.SSLContext.load_cert_chain``); in-memory objects are accepted instead.

Secure defaults: the server's certificate is verified (chain and name) unless
``verify=False`` is passed explicitly, which warns; limits are on.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from cryptography import x509

from .packet import QUIC_V1, SUPPORTED_VERSIONS
from .suites import CipherSuite
from .tls import (
    Group,
    SignatureScheme,
    TicketIssuer,
    TicketStore,
    TrustStore,
    TrustStoreError,
    load_certificate_chain,
    load_private_key,
    system_trust_store,
)

PathLike = str | os.PathLike[str]

DEFAULT_CIPHER_SUITES = (
    CipherSuite.AES_128_GCM_SHA256,
    CipherSuite.AES_256_GCM_SHA384,
    CipherSuite.CHACHA20_POLY1305_SHA256,
)
DEFAULT_GROUPS = (Group.X25519, Group.SECP256R1)


class ConnectionIdGenerator(Protocol):
    """Makes the connection IDs a server issues (e.g. ``ghostwire.quic.lb.QuicLbCidGenerator``).

    Every call returns a new ID of ``cid_length`` bytes, unique among the
    server's live IDs."""

    @property
    def cid_length(self) -> int: ...

    def __call__(self) -> bytes: ...


class InsecureConfigurationWarning(UserWarning):
    """Certificate verification was turned off."""


@dataclass(kw_only=True)
class _CommonConfig:
    alpn: Sequence[str] = ()
    """Application protocols, in preference order (mandatory in QUIC).

    Leave it empty when a protocol layer drives the connection: ``ghostwire.rpc``
    and ``ghostwire.http3`` fill in their own. ``quic.connect`` and ``quic.serve``
    need at least one name."""

    idle_timeout: float = 30.0
    """Seconds of silence after which the connection is dropped (RFC 9000 §10.1)."""

    handshake_timeout: float = 10.0
    """Seconds a handshake may take before it fails with a timeout."""

    keep_alive_interval: float | None = None
    """Send a PING after this many idle seconds to keep the connection (and NATs) alive."""

    initial_max_data: int = 1 << 20
    """Initial connection-level receive window in bytes; it grows with the measured BDP."""

    initial_max_stream_data: int = 512 << 10
    """Initial per-stream receive window in bytes; it grows with the measured BDP."""

    max_connection_window: int = 24 << 20
    """Upper bound for the connection receive window."""

    max_stream_window: int = 16 << 20
    """Upper bound for a stream receive window."""

    max_streams_bidi: int = 100
    """Concurrent bidirectional streams the peer may open."""

    max_streams_uni: int = 100
    """Concurrent unidirectional streams the peer may open."""

    stream_send_buffer: int = 1 << 20
    """Bytes a stream holds unacknowledged before ``send_all`` blocks.

    One stream moves at most this much per round trip (1 MiB at 10 ms RTT is
    about 800 Mbit/s); memory is only used by streams that have data queued."""

    max_datagram_size: int = 1200
    """UDP payload size sent from the start (1200 is always safe; larger needs a
    path that carries it). Path MTU discovery may raise it."""

    pmtu_discovery: bool = True
    """Probe for larger datagrams once the handshake is confirmed (DPLPMTUD,
    RFC 8899 and RFC 9000 §14.3), up to ``pmtu_max_datagram_size``. Probes
    that are lost cost nothing but their bytes; a path that stops carrying
    the larger size is detected and the size drops back to 1200."""

    pmtu_max_datagram_size: int = 1452
    """Largest UDP payload path MTU discovery probes for (also capped by the
    peer's max_udp_payload_size). 1452 fits Ethernet with IPv6 (1500 minus
    48 bytes of headers); on loopback or jumbo-frame networks raise it."""

    congestion_control: str = "cubic"
    """``"cubic"`` (default) or ``"newreno"``."""

    initial_rtt: float = 0.1
    """RTT assumed before the first sample (RFC 9002 §6.2.2). Below the RFC's
    333 ms so that a lost first flight is resent after 200 ms rather than 1 s
    (and the backed-off PTOs that follow are as much shorter); a path slower
    than that costs a spurious resend of the first flight at most."""

    cipher_suites: Sequence[CipherSuite] = DEFAULT_CIPHER_SUITES
    groups: Sequence[Group] = DEFAULT_GROUPS
    signature_schemes: Sequence[SignatureScheme] | None = None
    """``None`` means every scheme ghostwire supports."""

    versions: Sequence[int] = (QUIC_V1,)
    """QUIC versions, in preference order. A server answers a client in the
    first of these the client offers that is compatible with the client's
    first flight (RFC 9368): ``versions=[QUIC_V2, QUIC_V1]`` upgrades v1
    clients that support v2."""
    connection_id_length: int = 8
    active_connection_id_limit: int = 4

    aead_confidentiality_limit: int | None = None
    """Packets one 1-RTT key may protect; a key update starts at 3/4 of it.
    ``None``: the RFC 9001 §6.6 figure of the negotiated suite (2^23 for AES-GCM)."""

    aead_integrity_limit: int | None = None
    """Packets that may fail authentication before the connection closes with
    AEAD_LIMIT_REACHED. ``None``: RFC 9001 §6.6 (2^52 AES-GCM, 2^36 ChaCha20)."""

    keylog_file: PathLike | None = None
    """Append TLS secrets here in NSS key log format (for Wireshark). Off unless set."""

    qlog_dir: PathLike | None = None
    """Write one qlog file per connection into this directory. Off unless set."""

    def require_alpn(self) -> None:
        """Raise ValueError unless at least one application protocol is named."""
        if not self.alpn:
            raise ValueError(
                "alpn must name at least one protocol (ALPN is mandatory in QUIC), "
                "e.g. alpn=['echo']"
            )

    def _validate_common(self) -> None:
        if isinstance(self.alpn, str):
            raise TypeError("alpn must be a list of protocol names, e.g. alpn=['h3']")
        self.alpn = list(self.alpn)
        for name in self.alpn:
            if not name or len(name.encode()) > 255:
                raise ValueError(f"invalid ALPN protocol name {name!r}")
        _positive("idle_timeout", self.idle_timeout)
        _positive("handshake_timeout", self.handshake_timeout)
        if self.keep_alive_interval is not None:
            _positive("keep_alive_interval", self.keep_alive_interval)
        _positive("initial_rtt", self.initial_rtt)
        for name in ("aead_confidentiality_limit", "aead_integrity_limit"):
            if getattr(self, name) is not None:
                _positive(name, getattr(self, name))
        for name in (
            "initial_max_data",
            "initial_max_stream_data",
            "max_connection_window",
            "max_stream_window",
            "stream_send_buffer",
        ):
            _positive(name, getattr(self, name))
        if self.max_connection_window < self.initial_max_data:
            raise ValueError("max_connection_window must be >= initial_max_data")
        if self.max_stream_window < self.initial_max_stream_data:
            raise ValueError("max_stream_window must be >= initial_max_stream_data")
        for name in ("max_streams_bidi", "max_streams_uni"):
            value = getattr(self, name)
            if not 0 <= value <= 1 << 60:
                raise ValueError(f"{name} must be between 0 and 2**60")
        if not 1200 <= self.max_datagram_size <= 65527:
            raise ValueError("max_datagram_size must be between 1200 and 65527 (RFC 9000 §14)")
        if not 1200 <= self.pmtu_max_datagram_size <= 65527:
            raise ValueError("pmtu_max_datagram_size must be between 1200 and 65527")
        if self.congestion_control not in ("cubic", "newreno"):
            raise ValueError("congestion_control must be 'cubic' or 'newreno'")
        if not 4 <= self.connection_id_length <= 20:
            raise ValueError("connection_id_length must be between 4 and 20")
        if self.active_connection_id_limit < 2:
            raise ValueError("active_connection_id_limit must be at least 2 (RFC 9000 §18.2)")
        self.cipher_suites = [CipherSuite(s) for s in self.cipher_suites]
        self.groups = [Group(g) for g in self.groups]
        if not self.cipher_suites or not self.groups:
            raise ValueError("cipher_suites and groups must not be empty")
        if not self.versions or any(v not in SUPPORTED_VERSIONS for v in self.versions):
            raise ValueError(f"versions must be a non-empty subset of {SUPPORTED_VERSIONS!r}")


@dataclass(kw_only=True)
class ClientConfig(_CommonConfig):
    """Configuration of a QUIC client.

    ``server_name`` is the name sent in SNI and checked against the server's
    certificate; it defaults to the host passed to ``connect``. ``cafile`` (or
    ``cadata``, PEM) replaces the system CA bundle; a certificate in it that
    is the server's own leaf is pinned (trusted as given: self-signed
    certificates from ``openssl req -x509`` work). Every file, and the system
    bundle, is loaded when the config is built, never during a handshake. ``verify=False`` turns off
    certificate verification entirely: never do that outside tests.
    """

    server_name: str | None = None
    original_version: int | None = None
    """Version of the first flight (default: ``versions[0]``). With
    ``versions=[QUIC_V2, QUIC_V1], original_version=QUIC_V1`` the client
    starts in v1, which every server reads, and offers v2 (RFC 9368)."""
    cafile: PathLike | None = None
    cadata: bytes | None = None
    verify: bool = True
    certfile: PathLike | None = None
    """Client certificate chain (PEM) for mutual TLS."""
    keyfile: PathLike | None = None
    certificate_chain: Sequence[x509.Certificate] = ()
    private_key: Any = None
    trust_store: TrustStore | None = field(default=None, repr=False)
    session_tickets: TicketStore | None = field(default=None, repr=False)
    """Where tickets for session resumption are kept and taken from, e.g.
    ``MemoryTicketStore()`` (share one between configs to share tickets).
    A resumed connect skips the server's certificate and signature.
    ``None``: no tickets, full handshakes."""
    early_data: bool = False
    """Send 0-RTT data (before the handshake completes) when a stored ticket
    allows it. 0-RTT can be replayed by an attacker: send only idempotent
    requests in it (see docs/security.md). Needs ``session_tickets``."""

    def __post_init__(self) -> None:
        self._validate_common()
        if self.early_data and self.session_tickets is None:
            raise ValueError("early_data needs session_tickets= (0-RTT resumes a session)")
        if self.original_version is not None and self.original_version not in self.versions:
            raise ValueError("original_version must be one of versions")
        if not self.verify:
            warnings.warn(
                "certificate verification is OFF (verify=False): anyone can impersonate "
                "the server. Use cafile= with a test CA instead.",
                InsecureConfigurationWarning,
                stacklevel=3,
            )
        if self.trust_store is None and (self.cafile is not None or self.cadata is not None):
            self.trust_store = TrustStore.from_pem(
                _read(self.cafile) if self.cafile is not None else self.cadata or b""
            )
        elif self.trust_store is None and self.verify:
            # Loaded here (once per process), never in a handshake. Without a
            # system bundle the handshake fails with a clear unknown_ca.
            with contextlib.suppress(TrustStoreError):
                self.trust_store = system_trust_store()
        self.certificate_chain, self.private_key = _load_identity(
            self.certfile, self.keyfile, self.certificate_chain, self.private_key
        )


@dataclass(kw_only=True)
class ServerConfig(_CommonConfig):
    """Configuration of a QUIC server.

    ``certfile`` / ``keyfile`` are PEM paths like ``ssl``'s ``load_cert_chain``
    (or pass ``certificate_chain`` / ``private_key`` objects). With
    ``client_cafile`` set, clients are asked for a certificate, which
    ``require_client_cert`` makes mandatory (mutual TLS). ``retry=True``
    validates client addresses with a Retry round trip before any work.
    """

    certfile: PathLike | None = None
    keyfile: PathLike | None = None
    password: bytes | None = field(default=None, repr=False)  # secrets stay out of logs
    certificate_chain: Sequence[x509.Certificate] = ()
    private_key: Any = field(default=None, repr=False)
    client_cafile: PathLike | None = None
    require_client_cert: bool = False
    retry: bool = False
    max_connections: int = 10_000
    cid_generator: ConnectionIdGenerator | None = field(default=None, repr=False)
    """Makes every connection ID the server issues (handshake, NEW_CONNECTION_ID,
    Retry), e.g. QUIC-LB IDs a load balancer routes by
    (``ghostwire.quic.lb.QuicLbCidGenerator``); its ``cid_length`` replaces
    ``connection_id_length``. ``None``: random IDs."""
    client_trust_store: TrustStore | None = field(default=None, repr=False)
    session_tickets: bool = True
    """Send session tickets after each handshake and accept them for resumption
    (RFC 8446 §4.6.1; never with ``client_cafile``: clients authenticate anew)."""
    ticket_lifetime: int = 86400
    """Seconds a session ticket may be used (at most 7 days); tickets are issued
    for at most ``ticket_key_rotation`` seconds, the time their key surely opens."""
    ticket_key_rotation: float = 3600.0
    """Seconds a ticket key is current; tickets of the previous key are still accepted."""
    ticket_secret: bytes | None = field(default=None, repr=False)
    """32+ secret bytes ticket keys derive from; servers sharing it accept each
    other's tickets. ``None``: a random one (kept by workers of ``serve``)."""
    early_data: bool = False
    """Accept 0-RTT data from resuming clients. Off by default: 0-RTT can be
    replayed (single-use tickets bound it per server process, see docs/security.md)."""
    _ticket_issuer: TicketIssuer | None = field(init=False, default=None, repr=False, compare=False)

    @property
    def ticket_issuer(self) -> TicketIssuer | None:
        """The issuer of this server's tickets (None with ``session_tickets=False``)."""
        return self._ticket_issuer

    def __post_init__(self) -> None:
        self._validate_common()
        if self.session_tickets:
            if self.ticket_secret is None:
                self.ticket_secret = os.urandom(32)
            self._ticket_issuer = TicketIssuer(
                lifetime=self.ticket_lifetime,
                rotation=self.ticket_key_rotation,
                secret=self.ticket_secret,
            )
        self.certificate_chain, self.private_key = _load_identity(
            self.certfile, self.keyfile, self.certificate_chain, self.private_key, self.password
        )
        if not self.certificate_chain or self.private_key is None:
            raise ValueError("a server needs a certificate: pass certfile= and keyfile=")
        if self.client_cafile is not None and self.client_trust_store is None:
            self.client_trust_store = TrustStore.from_pem(_read(self.client_cafile))
        if self.require_client_cert and self.client_trust_store is None:
            raise ValueError("require_client_cert needs client_cafile= to verify clients against")
        _positive("max_connections", self.max_connections)
        if self.cid_generator is not None:
            length = self.cid_generator.cid_length
            if not 4 <= length <= 20:
                raise ValueError("cid_generator.cid_length must be between 4 and 20")
            self.connection_id_length = length


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{name} must be positive, got {value!r}")


def _read(path: PathLike) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _load_identity(
    certfile: PathLike | None,
    keyfile: PathLike | None,
    chain: Sequence[x509.Certificate],
    key: Any,
    password: bytes | None = None,
) -> tuple[list[x509.Certificate], Any]:
    if certfile is not None:
        chain = load_certificate_chain(_read(certfile))
        if not chain:
            raise ValueError(f"no certificate found in {os.fspath(certfile)!r}")
        key = load_private_key(_read(keyfile if keyfile is not None else certfile), password)
    elif keyfile is not None:
        raise ValueError("keyfile= given without certfile=")
    if chain and key is None:
        raise ValueError("a certificate chain needs its private key")
    return list(chain), key
