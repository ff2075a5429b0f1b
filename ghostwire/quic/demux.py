"""Routing datagrams to connections, and answering the ones no connection owns.

One UDP socket serves many connections. :class:`Demux` maps every connection
ID we issued to its connection and decides, for a datagram matching none:

* an Initial of a version we don't speak, in a datagram large enough to start
  a connection → Version Negotiation (RFC 9000 §6.1);
* a client Initial in a datagram under 1200 bytes, or with a Destination
  Connection ID under 8 bytes → drop (RFC 9000 §14.1, §7.2);
* with ``retry=True``, an Initial without a valid token → a Retry carrying a
  token that binds the client's address (RFC 9000 §8.1.2); with an invalid
  Retry token → close with INVALID_TOKEN (RFC 9000 §8.1.3);
* past ``max_connections``, or once ``refusing`` is set (a server shutting
  down) → close with CONNECTION_REFUSED, statelessly (RFC 9000 §20.1);
* otherwise a new server connection;
* a short-header packet for an unknown ID → a Stateless Reset
  (RFC 9000 §10.3), smaller than what triggered it so two endpoints can never
  loop.

Everything here is sans-IO: answers are returned as datagrams to send.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .config import ServerConfig
from .connection import QuicConnection
from .crypto import PacketKeys, derive_initial_secrets, encode_retry
from .errors import PacketDropped, TransportErrorCode
from .frame_writer import MIN_INITIAL_DATAGRAM
from .packet import (
    SUPPORTED_VERSIONS,
    PacketType,
    UnsupportedVersion,
    encode_version_negotiation,
    parse_header,
)
from .packet_builder import PacketBuilder
from .packet_space import PacketNumberSpace
from .recovery import Space
from .suites import CipherSuite
from .tokens import AddressTokenMinter, stateless_reset_token

Address = Any
# RFC 9000 §10.3: a stateless reset looks like a short-header packet of at
# least 21 bytes; we never answer anything smaller than this.
MIN_RESET_TRIGGER = 43
MAX_REFUSE_REASON = 256  # bytes of a refusal's CONNECTION_CLOSE reason phrase
MIN_CLIENT_DCID = 8  # RFC 9000 §7.2


@dataclass(slots=True)
class DemuxStats:
    datagrams_dropped: int = 0
    version_negotiations_sent: int = 0
    retries_sent: int = 0
    stateless_resets_sent: int = 0
    connections_refused: int = 0


@dataclass(slots=True)
class Received:
    """What :meth:`Demux.receive` did with a datagram."""

    connection: QuicConnection | None = None
    new_connection: bool = False
    replies: list[tuple[bytes, Address]] = field(default_factory=list)


ConnectionFactory = Callable[..., QuicConnection]


class Demux:
    """Connection-ID routing for one endpoint (server side, and client side too)."""

    def __init__(
        self,
        config: ServerConfig | None,
        *,
        cid_length: int = 8,
        random_bytes: Callable[[int], bytes] = os.urandom,
        static_key: bytes | None = None,
        connection_factory: ConnectionFactory | None = None,
    ) -> None:
        self.config = config
        self.cid_length = config.connection_id_length if config is not None else cid_length
        self._random = random_bytes
        self._static_key = static_key or None
        self._minter: AddressTokenMinter | None = None
        if config is not None:
            # A server's keys, made now and in this order (random_bytes may be
            # scripted). A client's demux never mints a token or sends a reset:
            # a connect does not pay for them (an HKDF and an AES-GCM context).
            self._reset_key()
            self._tokens()
        self._factory = connection_factory or QuicConnection
        self.routes: dict[bytes, QuicConnection] = {}
        # Each tracked connection's routes, so forgetting it is O(its CIDs).
        # A list: a handful of CIDs each, and a set of five is 0.7 KB.
        self._routes_of: dict[QuicConnection, list[bytes]] = {}
        self._original_dcids: dict[QuicConnection, bytes] = {}
        self.connection_count = 0
        self.stats = DemuxStats()
        #: When set, new connections are refused with this reason (shutting down).
        self.refusing: str | None = None

    def reset_token_for(self, cid: bytes) -> bytes:
        return stateless_reset_token(self._reset_key(), cid)

    def _reset_key(self) -> bytes:
        """The static key of our stateless reset tokens (RFC 9000 §10.3.2)."""
        key = self._static_key
        if key is None:
            key = self._static_key = self._random(32)
        return key

    def _tokens(self) -> AddressTokenMinter:
        """The minter of our Retry tokens (RFC 9000 §8.1.2)."""
        minter = self._minter
        if minter is None:
            minter = self._minter = AddressTokenMinter(self._random(32))
        return minter

    # -- routes ------------------------------------------------------------

    def add_route(self, cid: bytes, conn: QuicConnection) -> None:
        previous = self.routes.get(cid)
        if previous is not None and previous is not conn:
            self._unlist(previous, cid)
        self.routes[cid] = conn
        cids = self._routes_of.get(conn)
        if cids is not None and cid not in cids:
            cids.append(cid)

    def remove_route(self, cid: bytes) -> None:
        conn = self.routes.pop(cid, None)
        if conn is not None:
            self._unlist(conn, cid)

    def _unlist(self, conn: QuicConnection, cid: bytes) -> None:
        cids = self._routes_of.get(conn)
        if cids is not None and cid in cids:
            cids.remove(cid)

    def add_connection(self, conn: QuicConnection) -> None:
        """Track a connection (client connections register themselves here)."""
        self.connection_count += 1
        self._routes_of[conn] = []
        for cid in conn.local_cids.all_cids():
            self.add_route(cid, conn)

    def forget(self, conn: QuicConnection) -> None:
        """Drop every route to a finished connection (idempotent).

        Costs O(the connection's CIDs), not O(all routes): the connection's
        own CID lists name every route it may still have.
        """
        cids = self._routes_of.pop(conn, None)
        if cids is None:
            return
        for cid in cids:
            if self.routes.get(cid) is conn:
                del self.routes[cid]
        self._original_dcids.pop(conn, None)
        self.connection_count -= 1

    def on_handshake_confirmed(self, conn: QuicConnection) -> None:
        """The client stops using its original DCID once it has ours."""
        odcid = self._original_dcids.pop(conn, None)
        if odcid is not None and self.routes.get(odcid) is conn:
            self.remove_route(odcid)

    # -- receiving -----------------------------------------------------------

    def existing_connection(self, data: bytes) -> QuicConnection | None:
        """The connection a 1-RTT (short header) datagram routes to, or None: then
        ask :meth:`receive`. The per-datagram case of a transfer, answered
        without building a :class:`Received`."""
        if not data or data[0] & 0x80:
            return None
        return self.routes.get(bytes(data[1 : 1 + self.cid_length]))

    def receive(self, data: bytes, addr: Address, now: float, **conn_kwargs: Any) -> Received:
        """Find (or make) the connection for a datagram; ``conn_kwargs`` go to new ones."""
        if len(data) < 1:
            return Received()
        first = data[0]
        is_long = bool(first & 0x80)
        if is_long:
            if len(data) < 6:
                self.stats.datagrams_dropped += 1
                return Received()
            dcid_len = data[5]
            dcid = bytes(data[6 : 6 + dcid_len])
        else:
            dcid = bytes(data[1 : 1 + self.cid_length])
        conn = self.routes.get(dcid)
        if conn is not None:
            return Received(connection=conn)
        if self.config is None:
            self.stats.datagrams_dropped += 1
            return Received()
        if not is_long:
            if not first & 0x40:  # fixed bit clear: not a QUIC packet (RFC 9000 §17.3.1)
                self.stats.datagrams_dropped += 1
                return Received()
            return Received(replies=self._stateless_reset(data, dcid, addr))
        return self._new_initial(data, addr, now, conn_kwargs)

    def _new_initial(
        self, data: bytes, addr: Address, now: float, conn_kwargs: dict[str, Any]
    ) -> Received:
        config = self.config
        if config is None:
            return Received()
        try:
            header = parse_header(data, 0, self.cid_length)
        except UnsupportedVersion as exc:
            return self._version_negotiation(data, exc.dcid, exc.scid, addr)
        except PacketDropped:
            self.stats.datagrams_dropped += 1
            return Received()
        if header.version not in config.versions:
            # A version we implement but this server does not offer (RFC 9000 §6.1).
            return self._version_negotiation(data, header.dcid, header.scid, addr)
        if header.packet_type is not PacketType.INITIAL:
            self.stats.datagrams_dropped += 1
            return Received()
        if len(data) < MIN_INITIAL_DATAGRAM or len(header.dcid) < MIN_CLIENT_DCID:
            self.stats.datagrams_dropped += 1
            return Received()
        original_dcid = header.dcid
        retry_scid: bytes | None = None
        if config.retry:
            if not header.token:
                return self._send_retry(header.version, header.dcid, header.scid, addr, now)
            validated = self._tokens().validate_retry_token(header.token, addr, now)
            if validated is None:
                return self._refuse(
                    header.version,
                    header.dcid,
                    header.scid,
                    addr,
                    TransportErrorCode.INVALID_TOKEN,
                    "invalid address validation token",
                )
            original_dcid, retry_scid = validated
            if retry_scid != header.dcid:
                self.stats.datagrams_dropped += 1
                return Received()
        if self.refusing is not None or self.connection_count >= config.max_connections:
            self.stats.connections_refused += 1
            return self._refuse(
                header.version,
                header.dcid,
                header.scid,
                addr,
                TransportErrorCode.CONNECTION_REFUSED,
                self.refusing or "server is at its connection limit",
            )
        conn = self._factory(
            config,
            peer_address=addr,
            now=now,
            original_dcid=original_dcid,
            client_scid=header.scid,
            retry_scid=retry_scid,
            address_validated=retry_scid is not None,
            version=header.version,
            random_bytes=self._random,
            reset_token_for=self.reset_token_for,
            **conn_kwargs,
        )
        self.add_connection(conn)
        # Until the handshake is confirmed the client still sends to the DCID
        # it chose (RFC 9000 §7.2).
        self.add_route(header.dcid, conn)
        self._original_dcids[conn] = header.dcid
        return Received(connection=conn, new_connection=True)

    def _version_negotiation(
        self, data: bytes, dcid: bytes, scid: bytes, addr: Address
    ) -> Received:
        # RFC 9000 §6.1: answer only datagrams large enough to be a client
        # Initial, so the reply cannot amplify an attack.
        if len(data) < MIN_INITIAL_DATAGRAM or self.config is None:
            self.stats.datagrams_dropped += 1
            return Received()
        self.stats.version_negotiations_sent += 1
        reply = encode_version_negotiation(
            dcid=scid,
            scid=dcid,
            versions=list(self.config.versions),
            first_byte_random=self._random(1)[0],
        )
        return Received(replies=[(reply, addr)])

    def _send_retry(
        self, version: int, dcid: bytes, scid: bytes, addr: Address, now: float
    ) -> Received:
        # A Retry's SCID becomes the DCID of the client's next Initial: it must
        # route back here like any ID we issue (QUIC-LB, workers).
        generator = self.config.cid_generator if self.config is not None else None
        new_scid = generator() if generator is not None else self._random(self.cid_length)
        token = self._tokens().mint_retry_token(addr, dcid, new_scid, now)
        packet = encode_retry(
            version=version,
            dcid=scid,
            scid=new_scid,
            original_dcid=dcid,
            token=token,
            first_byte_random=self._random(1)[0],
        )
        self.stats.retries_sent += 1
        return Received(replies=[(packet, addr)])

    def _refuse(
        self,
        version: int,
        dcid: bytes,
        scid: bytes,
        addr: Address,
        error_code: int,
        reason: str,
    ) -> Received:
        """Close a connection attempt without keeping state: an Initial packet
        with CONNECTION_CLOSE, protected with the client's Initial keys."""
        _, server_secret = derive_initial_secrets(dcid, version)
        space = PacketNumberSpace(Space.INITIAL)
        keys = PacketKeys.from_secret(CipherSuite.AES_128_GCM_SHA256, server_secret, version)
        builder = PacketBuilder(
            max_size=MIN_INITIAL_DATAGRAM,
            version=version,
            dcid=scid,
            scid=self._random(self.cid_length),
        )
        builder.start_packet(space, PacketType.INITIAL, keys)
        frame = bytearray(b"\x1c")
        from .buffer import encode_varint

        frame += encode_varint(error_code) + encode_varint(0)
        # RFC 9000 §19.19: the length counts the UTF-8 bytes; capped so that
        # any reason fits the packet, cut where a character starts.
        encoded = reason.encode()[:MAX_REFUSE_REASON]
        encoded = encoded.decode(errors="ignore").encode()
        frame += encode_varint(len(encoded)) + encoded
        builder.payload.extend(frame)
        builder.end_packet()
        datagram, _ = builder.finish(0, 0.0)
        return Received(replies=[(datagram, addr)])

    def _stateless_reset(
        self, data: bytes, dcid: bytes, addr: Address
    ) -> list[tuple[bytes, Address]]:
        if len(data) < MIN_RESET_TRIGGER:
            self.stats.datagrams_dropped += 1
            return []
        # RFC 9000 §10.3: unpredictable bits, a short-header first byte, the
        # token last, and shorter than the packet that triggered it.
        size = min(len(data) - 1, 64)
        body = bytearray(self._random(size - 16))
        body[0] = 0x40 | (body[0] & 0x3F)
        self.stats.stateless_resets_sent += 1
        return [(bytes(body) + self.reset_token_for(dcid), addr)]


__all__ = ["SUPPORTED_VERSIONS", "Demux", "DemuxStats", "Received"]
