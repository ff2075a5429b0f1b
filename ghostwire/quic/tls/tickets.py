"""Session tickets: the server's sealed tickets and the client's store (RFC 8446 §4.6.1).

Theory of operation
-------------------
Server: a :class:`TicketIssuer` keeps no per-client state. Each ticket is
the session's resumption state (PSK, cipher suite, ALPN, SNI, age_add,
issue time, lifetime, whether 0-RTT is allowed, the transport parameters
to hold to for 0-RTT) sealed with AES-256-GCM under a *ticket key*. Keys
rotate: the key of period ``n`` is derived from the issuer's secret and
``n = floor(time / rotation)``, and a ticket is accepted under the current
or the previous period's key, so a key lives at most two periods. Servers
that share a ``secret`` (worker processes, a fleet) accept each other's
tickets without talking to each other; without one, a random secret per
issuer. Neither the secret nor any key is ever logged or repr'd.

0-RTT anti-replay (RFC 8446 §8): a ticket opens for 0-RTT at most once per
issuer (:meth:`TicketIssuer.claim_early_data` remembers the ticket until it
expires, in a bounded table; when the table is full, 0-RTT is refused, never
replayed), and only if the client's idea of the ticket's age is within
``age_tolerance`` seconds of ours (§8.3), which bounds the window in which
a copied ClientHello is of use.

Client: a received ticket becomes a :class:`SessionTicket` (the PSK already
derived) kept in a :class:`TicketStore`, keyed by server name and ALPN. A
ticket is taken out when used (§C.4: a ticket is used once, for privacy,
and the server refuses replayed 0-RTT anyway). ``to_bytes``/``from_bytes``
let an application keep tickets across restarts; they hold a secret, so
store them like one.
"""

from __future__ import annotations

import os
import struct
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..buffer import Reader, Writer
from ..errors import BufferReadError
from ..suites import CipherSuite, hkdf_expand_label

_TICKET_VERSION = 1
_KEY_ID = struct.Struct("!Q")
_NONCE_LENGTH = 12
# Bounds of what we accept from outside (a ticket file, a ticket identity).
_MAX_TICKET = 4096


def wall_clock() -> float:
    """Seconds since the epoch: ticket ages are wall-clock times, since tickets
    outlive processes (the TLS core's only other clock read is certificate
    validity, RFC 5280)."""
    return datetime.now(UTC).timestamp()


class TicketError(ValueError):
    """Serialized ticket data that cannot be read."""


@dataclass(frozen=True, slots=True)
class TicketState:
    """What a server sealed into a ticket, as :meth:`TicketIssuer.open` returns it."""

    cipher_suite: CipherSuite
    psk: bytes = field(repr=False)
    alpn: str
    server_name: str | None
    age_add: int
    issued_at: float  # wall clock, seconds
    lifetime: int  # seconds
    max_early_data: int
    transport_parameters: bytes  # ours when the ticket was issued (RFC 9000 §7.4.1)
    ticket_id: bytes  # the AEAD nonce: unique per ticket, the anti-replay key


def _encode_state(state: TicketState) -> bytes:
    w = Writer()
    w.push_uint8(_TICKET_VERSION)
    w.push_uint16(state.cipher_suite)
    w.push_uint64(int(state.issued_at * 1000))
    w.push_uint32(state.lifetime)
    w.push_uint32(state.age_add)
    w.push_uint32(state.max_early_data)
    w.push_uint8_prefixed(state.psk)
    w.push_uint8_prefixed(state.alpn.encode())
    w.push_uint8_prefixed((state.server_name or "").encode())
    w.push_uint16_prefixed(state.transport_parameters)
    return bytes(w.buf)


def _decode_state(data: bytes, ticket_id: bytes) -> TicketState:
    r = Reader(data)
    if r.pull_uint8() != _TICKET_VERSION:
        raise BufferReadError("unknown ticket version")
    suite = CipherSuite(r.pull_uint16())
    issued_at = r.pull_uint64() / 1000
    lifetime, age_add, max_early = r.pull_uint32(), r.pull_uint32(), r.pull_uint32()
    psk = r.pull_uint8_prefixed()
    alpn = r.pull_uint8_prefixed().decode()
    server_name = r.pull_uint8_prefixed().decode() or None
    params = r.pull_uint16_prefixed()
    return TicketState(
        suite, psk, alpn, server_name, age_add, issued_at, lifetime, max_early, params, ticket_id
    )


class TicketIssuer:
    """Seals and opens session tickets under rotating keys (one per server).

    * ``lifetime`` -- seconds a ticket may be used (RFC 8446 §4.6.1 caps it
      at 7 days);
    * ``rotation`` -- seconds a ticket key is current (tickets sealed under
      the previous key are still accepted, older ones are not);
    * ``secret`` -- 32+ bytes shared by servers that should accept each
      other's tickets; ``None``: random, for this issuer only;
    * ``age_tolerance`` -- how far (seconds) the client's ticket age may
      differ from ours for 0-RTT to be accepted (RFC 8446 §8.3);
    * ``replay_table_size`` -- tickets remembered for single-use 0-RTT;
    * ``clock`` -- the wall clock (tests pass their own).
    """

    def __init__(
        self,
        *,
        lifetime: int = 86400,
        rotation: float = 3600.0,
        secret: bytes | None = None,
        age_tolerance: float = 10.0,
        replay_table_size: int = 100_000,
        clock: Callable[[], float] = wall_clock,
    ) -> None:
        if not 0 < lifetime <= 604800:
            raise ValueError("ticket lifetime must be between 1 s and 7 days (RFC 8446 §4.6.1)")
        if not rotation > 0:
            raise ValueError("ticket key rotation must be positive")
        if secret is not None and len(secret) < 32:
            raise ValueError("a ticket secret must be at least 32 bytes")
        self.lifetime = lifetime
        self.rotation = rotation
        self.age_tolerance = age_tolerance
        self.clock = clock
        self._secret = secret if secret is not None else os.urandom(32)
        self._keys: dict[int, AESGCM] = {}
        self._replay_table_size = replay_table_size
        # ticket id -> expiry. Not locked: one issuer serves one event loop's thread.
        self._claimed: OrderedDict[bytes, float] = OrderedDict()

    def __reduce__(self) -> tuple[object, ...]:
        # For a server config pickled to worker processes: the same keys there.
        args = (self.lifetime, self.rotation, self._secret, self.age_tolerance)
        return (_rebuild_issuer, (*args, self._replay_table_size))

    def __repr__(self) -> str:
        return f"<TicketIssuer lifetime={self.lifetime}s rotation={self.rotation}s>"

    @property
    def usable_lifetime(self) -> int:
        """The lifetime a ticket is issued with: ``lifetime``, but at most one
        rotation period, since a ticket opens only while its key is the current
        or the previous one. A longer promise would have clients offer tickets
        (and 0-RTT) that can only be refused (RFC 8446 §4.6.1)."""
        return min(self.lifetime, int(self.rotation))

    def _key(self, period: int) -> AESGCM:
        key = self._keys.get(period)
        if key is None:
            material = hkdf_expand_label(
                "sha256", self._secret, b"gw ticket key", period.to_bytes(8, "big"), 32
            )
            if len(self._keys) >= 4:
                self._keys.clear()
            key = self._keys[period] = AESGCM(material)
        return key

    def _period(self, now: float) -> int:
        return int(now // self.rotation)

    def seal(
        self,
        *,
        cipher_suite: CipherSuite,
        psk: bytes,
        alpn: str,
        server_name: str | None,
        age_add: int,
        max_early_data: int,
        transport_parameters: bytes,
    ) -> bytes:
        """A new ticket (the opaque ``ticket`` field of NewSessionTicket)."""
        now = self.clock()
        period = self._period(now)
        nonce = os.urandom(_NONCE_LENGTH)
        state = TicketState(
            cipher_suite,
            psk,
            alpn,
            server_name,
            age_add,
            now,
            self.usable_lifetime,
            max_early_data,
            transport_parameters,
            nonce,
        )
        key_id = _KEY_ID.pack(period)
        return key_id + nonce + self._key(period).encrypt(nonce, _encode_state(state), key_id)

    def open(self, ticket: bytes, server_name: str | None) -> TicketState | None:
        """The state sealed in ``ticket``; None when it is not ours, too old,
        expired, or issued under another ``server_name`` (SNI): a PSK belongs to
        the server name of the connection it came from (RFC 8446 §4.6.1, §4.2.11),
        so a mismatch falls back to a full handshake, with or without 0-RTT."""
        if len(ticket) < _KEY_ID.size + _NONCE_LENGTH + 16 or len(ticket) > _MAX_TICKET:
            return None
        (period,) = _KEY_ID.unpack_from(ticket)
        now = self.clock()
        current = self._period(now)
        if period not in (current, current - 1):
            return None  # sealed under a retired (or future) key
        key_id, nonce = ticket[: _KEY_ID.size], ticket[_KEY_ID.size : _KEY_ID.size + _NONCE_LENGTH]
        try:
            plain = self._key(period).decrypt(nonce, ticket[_KEY_ID.size + _NONCE_LENGTH :], key_id)
            state = _decode_state(plain, nonce)
        except (InvalidTag, BufferReadError, ValueError):
            return None
        if not state.issued_at - 1 <= now <= state.issued_at + state.lifetime:
            return None  # expired (RFC 8446 §4.6.1), or from the future
        if state.server_name != server_name:
            return None
        return state

    def age_is_fresh(self, state: TicketState, obfuscated_age: int) -> bool:
        """RFC 8446 §8.3: the client's ticket age agrees with ours."""
        client_age = ((obfuscated_age - state.age_add) % (1 << 32)) / 1000
        our_age = self.clock() - state.issued_at
        return abs(client_age - our_age) <= self.age_tolerance

    def claim_early_data(self, state: TicketState) -> bool:
        """Single-use 0-RTT: True the first time a ticket is claimed, then False."""
        now = self.clock()
        claimed = self._claimed
        while claimed:
            oldest, expiry = next(iter(claimed.items()))
            if expiry > now:
                break
            del claimed[oldest]
        if state.ticket_id in claimed or len(claimed) >= self._replay_table_size:
            return False
        claimed[state.ticket_id] = state.issued_at + state.lifetime + self.age_tolerance
        return True


def _rebuild_issuer(
    lifetime: int, rotation: float, secret: bytes, age_tolerance: float, table: int
) -> TicketIssuer:
    return TicketIssuer(
        lifetime=lifetime,
        rotation=rotation,
        secret=secret,
        age_tolerance=age_tolerance,
        replay_table_size=table,
    )


# -- the client side ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SessionTicket:
    """A ticket a client received, with what it needs to resume."""

    server_name: str
    alpn: str
    cipher_suite: CipherSuite
    ticket: bytes = field(repr=False)
    psk: bytes = field(repr=False)
    age_add: int = field(repr=False)
    lifetime: int
    received_at: float  # wall clock, seconds
    max_early_data: int
    transport_parameters: bytes = field(repr=False)  # the server's, for 0-RTT (RFC 9000 §7.4.1)

    def expired(self, now: float) -> bool:
        return not self.received_at - 1 <= now < self.received_at + self.lifetime

    def obfuscated_age(self, now: float) -> int:
        """RFC 8446 §4.2.11: the ticket age in ms plus age_add, modulo 2^32."""
        age_ms = max(0, int((now - self.received_at) * 1000))
        return (age_ms + self.age_add) % (1 << 32)

    def to_bytes(self) -> bytes:
        """A serialization to keep the ticket (it holds a secret: store it like one)."""
        w = Writer()
        w.push_uint8(_TICKET_VERSION)
        w.push_uint8_prefixed(self.server_name.encode())
        w.push_uint8_prefixed(self.alpn.encode())
        w.push_uint16(self.cipher_suite)
        w.push_uint16_prefixed(self.ticket)
        w.push_uint8_prefixed(self.psk)
        w.push_uint32(self.age_add)
        w.push_uint32(self.lifetime)
        w.push_uint64(int(self.received_at * 1000))
        w.push_uint32(self.max_early_data)
        w.push_uint16_prefixed(self.transport_parameters)
        return bytes(w.buf)

    @classmethod
    def from_bytes(cls, data: bytes) -> SessionTicket:
        """The ticket :meth:`to_bytes` wrote; TicketError for anything else."""
        try:
            r = Reader(data)
            if r.pull_uint8() != _TICKET_VERSION:
                raise TicketError("unknown session ticket format")
            ticket = cls(
                server_name=r.pull_uint8_prefixed().decode(),
                alpn=r.pull_uint8_prefixed().decode(),
                cipher_suite=CipherSuite(r.pull_uint16()),
                ticket=r.pull_uint16_prefixed(),
                psk=r.pull_uint8_prefixed(),
                age_add=r.pull_uint32(),
                lifetime=r.pull_uint32(),
                received_at=r.pull_uint64() / 1000,
                max_early_data=r.pull_uint32(),
                transport_parameters=r.pull_uint16_prefixed(),
            )
            if not r.eof():
                raise TicketError("trailing bytes after a session ticket")
        except (BufferReadError, UnicodeDecodeError, ValueError) as exc:
            raise TicketError(f"not a session ticket: {exc}") from None
        if not ticket.ticket or not ticket.psk:
            raise TicketError("not a session ticket: empty ticket or key")
        return ticket


class TicketStore(Protocol):
    """Where a client keeps session tickets (keyed by server name and ALPN)."""

    def put(self, ticket: SessionTicket) -> None:
        """Keep a ticket received from ``ticket.server_name``."""

    def take(self, server_name: str, alpn: list[str]) -> SessionTicket | None:
        """Remove and return a usable ticket for ``server_name`` and one of ``alpn``."""


class MemoryTicketStore:
    """A :class:`TicketStore` in memory: the newest few tickets per server and ALPN."""

    def __init__(
        self,
        *,
        per_key: int = 4,
        max_keys: int = 1024,
        clock: Callable[[], float] = wall_clock,
    ) -> None:
        self._tickets: OrderedDict[tuple[str, str], list[SessionTicket]] = OrderedDict()
        self._per_key = per_key
        self._max_keys = max_keys
        self._clock = clock

    def __repr__(self) -> str:
        return f"<MemoryTicketStore {len(self)} tickets>"

    def __len__(self) -> int:
        return sum(len(v) for v in self._tickets.values())

    def put(self, ticket: SessionTicket) -> None:
        key = (ticket.server_name, ticket.alpn)
        tickets = self._tickets.setdefault(key, [])
        self._tickets.move_to_end(key)
        tickets.append(ticket)
        del tickets[: -self._per_key]
        while len(self._tickets) > self._max_keys:
            self._tickets.popitem(last=False)

    def take(self, server_name: str, alpn: list[str]) -> SessionTicket | None:
        now = self._clock()
        for protocol in alpn:
            tickets = self._tickets.get((server_name, protocol))
            while tickets:
                ticket = tickets.pop()  # the newest
                if not ticket.expired(now):
                    return ticket
        return None
