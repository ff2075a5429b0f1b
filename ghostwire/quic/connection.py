"""The QUIC connection state machine (sans-IO).

Theory of operation
-------------------
A :class:`QuicConnection` is driven from outside with explicit time:

* ``receive_datagram(data, addr, now)`` feeds it what arrived;
* ``datagrams_to_send(now)`` returns what should go out now;
* ``get_timer()`` says when it next needs ``handle_timer(now)``;
* ``next_event()`` yields what the application should hear about.

The application side (open streams, write, read, reset, close) is a set of
plain methods. Nothing here does I/O, reads the clock or imports trio.

The work is split over collaborators, each in its own module:

========================  ==================================================
``PacketNumberSpace``     keys, packet numbers, what we received, ACK policy
``TlsHandshake``          the TLS 1.3 handshake (``tls/``)
``CryptoStream``          CRYPTO frames of one encryption level
``LossRecovery``          RTT, loss detection, PTO, congestion control
``StreamSet``             streams, stream and connection flow control
``Local/PeerConnectionIds``  connection IDs both ways
``FrameReceiver``         what each received frame does (``frame_receiver``)
``FrameWriter``           what goes into the next packet (``frame_writer``)
========================  ==================================================

This module owns packet decryption, the application-side API and the
sending bookkeeping; two mixins hold the rest of the connection's lifecycle:
``handshake.HandshakeMixin`` (versions, Retry, TLS glue, key installation
and discarding) and ``lifecycle.LifecycleMixin`` (the idle, handshake and
keep-alive timers, and the closing and draining periods of RFC 9000 §10.2).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .cid import LocalConnectionIds, PeerConnectionIds
from .config import ClientConfig, ServerConfig
from .congestion import create_congestion_controller
from .crypto import DecryptionFailed, remove_header_protection
from .crypto_stream import RELEASED_CRYPTO_STREAM, CryptoStream
from .errors import PacketDropped, QuicProtocolError, TransportErrorCode
from .events import (
    CloseReason,
    ConnectionIdIssued,
    ConnectionIdRetired,
    ConnectionTerminated,
    Event,
    StopSendingReceived,
    StreamOpened,
    StreamReadable,
    StreamResetReceived,
    StreamsAvailable,
    StreamWritable,
)
from .frame_receiver import FrameReceiver
from .frame_writer import MAX_DATAGRAMS_PER_CALL, FrameWriter
from .handshake import _SPACE_OF_EPOCH, HandshakeMixin
from .key_update import KeyPhases
from .lifecycle import ConnectionState as ConnectionState
from .lifecycle import LifecycleMixin
from .packet import PacketHeader, PacketType, decode_packet_number, parse_header
from .packet_space import PacketNumberSpace
from .path import PathManager, same_address
from .pmtud import PathMtuDiscovery
from .qlog import QlogSink
from .recovery import LossRecovery, SentPacket, Space
from .stream_api import StreamApiMixin
from .streams import StreamSet
from .suites import CipherSuite, Epoch
from .tls import TlsHandshake
from .transport_params import TransportParameters
from .transport_setup import build_tls_settings, local_transport_parameters
from .versions import first_flight_version

Address = Any  # whatever the shell uses for peer addresses (a tuple for UDP)

# For per-packet and per-handshake checks. On CPython 3.11 reading a member off
# an enum class (``ConnectionState.CLOSING``) costs ~0.1 µs, ~1 K instructions:
# EnumType.__getattr__ sends every class attribute lookup down a slow path.
# Module globals are fast.
_CLOSING, _DRAINING, _TERMINATED = _CLOSED_STATES = (
    ConnectionState.CLOSING,
    ConnectionState.DRAINING,
    ConnectionState.TERMINATED,
)
_SILENT_STATES = (ConnectionState.DRAINING, ConnectionState.TERMINATED)
_CONNECTED = ConnectionState.CONNECTED
_APPLICATION = Space.APPLICATION
_ONE_RTT_EPOCH = Epoch.ONE_RTT
_HANDSHAKE_EPOCH = Epoch.HANDSHAKE
_ZERO_RTT_PACKET = PacketType.ZERO_RTT
_RETRY_PACKET = PacketType.RETRY
_VERSION_NEGOTIATION_PACKET = PacketType.VERSION_NEGOTIATION


@dataclass(slots=True)
class ConnectionStats:
    """Counters a user can read without poking private fields."""

    packets_sent: int = 0
    packets_received: int = 0
    packets_lost: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    smoothed_rtt: float = 0.0
    min_rtt: float = 0.0
    latest_rtt: float = 0.0
    congestion_window: int = 0
    bytes_in_flight: int = 0
    pto_count: int = 0
    max_datagram_size: int = 0  # the current UDP payload size (path MTU discovery)
    pmtu_probes_sent: int = 0
    pmtu_probes_lost: int = 0
    pmtu_black_holes: int = 0  # times the path stopped carrying the size (RFC 8899 §4.3)


_EPOCH_OF_TYPE = {
    PacketType.INITIAL: Epoch.INITIAL,
    PacketType.HANDSHAKE: Epoch.HANDSHAKE,
    PacketType.ZERO_RTT: Epoch.ZERO_RTT,
    PacketType.ONE_RTT: Epoch.ONE_RTT,
}


class QuicConnection(HandshakeMixin, LifecycleMixin, StreamApiMixin):
    """One QUIC connection, client or server side."""

    # Over 30 attributes, CPython 3.11 gives each instance a full dict (~1.6 KB);
    # slots hold them in ~0.4 KB. The mixins keep a __dict__ for anything not
    # listed (tests patch methods on instances); test_memory checks it stays empty.
    __slots__ = (
        "_ack_eliciting_sent_since_receive",
        "_close_sent_pending",
        "_event_head",
        "_events",
        "_idle_restarted_at",
        "_local_params",
        "_packets_since_close",
        "_random",
        "_received_first_packet",
        "_retry_received",
        "_started_at",
        "close_deadline",
        "close_frame",
        "config",
        "crypto",
        "handshake_complete",
        "handshake_confirmed",
        "handshake_deadline",
        "idle_deadline",
        "idle_timeout",
        "initial_dcid_for_keys",
        "is_client",
        "keep_alive_deadline",
        "key_phases",
        "local_cids",
        "max_datagram_size",
        "new_token",
        "original_dcid",
        "original_version",
        "path",
        "peer_cids",
        "peer_initial_scid",
        "peer_params",
        "pmtud",
        "qlog",
        "receiver",
        "recovery",
        "retry_scid",
        "spaces",
        "state",
        "stats",
        "streams",
        "tls",
        "token",
        "version",
        "writer",
    )

    def __init__(
        self,
        config: ClientConfig | ServerConfig,
        *,
        peer_address: Address,
        now: float,
        server_name: str | None = None,
        original_dcid: bytes | None = None,
        client_scid: bytes | None = None,
        retry_scid: bytes | None = None,
        address_validated: bool = False,
        version: int | None = None,
        random_bytes: Callable[[int], bytes] = os.urandom,
        reset_token_for: Callable[[bytes], bytes] | None = None,
        keylog: Callable[[str], None] | None = None,
        qlog: QlogSink | None = None,
    ) -> None:
        """Create a connection.

        A client needs ``server_name`` (may be None for IP targets with
        ``config.server_name`` unset). A server connection is made by the
        endpoint from the client's first Initial: ``original_dcid`` is that
        packet's DCID (or the one before a Retry), ``client_scid`` its SCID,
        ``retry_scid`` the SCID of our Retry if one was validated.
        """
        self.config = config
        self.is_client = isinstance(config, ClientConfig)
        # Owns the peer's address and its validation (RFC 9000 §8, §9).
        self.path = PathManager(
            self, random_bytes, peer_address, validated=self.is_client or address_validated
        )
        self._random = random_bytes
        self.qlog = qlog
        self.version = version if version is not None else first_flight_version(config)
        self.original_version = self.version  # of the client's first flight (RFC 9368)
        self.state = ConnectionState.HANDSHAKE
        # A list read from _event_head on, cleared once read to the end: an
        # empty deque is 760 bytes (a 64-slot block), an empty list 56.
        self._events: list[Event] = []
        self._event_head = 0
        self.stats = ConnectionStats()

        self._init_connection_ids(
            random_bytes, original_dcid, client_scid, retry_scid, reset_token_for
        )

        # Lists by Space and Epoch (a dict of 3-4 is 224 B, a list 80-88); 0-RTT
        # has no CRYPTO (RFC 9001 §4.1.4): the shared stand-in takes nothing.
        self.spaces = [PacketNumberSpace(space) for space in Space]
        self.key_phases = KeyPhases(config.aead_confidentiality_limit, config.aead_integrity_limit)
        self.crypto = [CryptoStream(), RELEASED_CRYPTO_STREAM, CryptoStream(), CryptoStream()]
        self._install_initial_keys()

        self.recovery = LossRecovery(
            congestion=create_congestion_controller(
                config.congestion_control, max_datagram_size=config.max_datagram_size
            ),
            initial_rtt=config.initial_rtt,
            is_client=self.is_client,
        )
        self._init_datagram_size(config)
        self.streams = StreamSet.from_config(config, is_client=self.is_client)
        self.peer_params: TransportParameters | None = None
        self.handshake_complete = False
        self.handshake_confirmed = False
        self._received_first_packet = False
        self._retry_received = False

        self._local_params: TransportParameters | bytes = local_transport_parameters(self)
        hooks = (None, None) if self.is_client else (self._choose_version, self._early_data_ok)
        settings = build_tls_settings(config, server_name, keylog, *hooks)
        # A server's transport parameters are encoded by _choose_version (hooks[0]).
        self.tls = TlsHandshake(settings, b"" if hooks[0] else self.local_params_bytes)

        self._init_timers(now)

        self.receiver = FrameReceiver(self)
        self.writer = FrameWriter(self)
        if qlog is not None:
            qlog.bind(self, now)  # names the trace by original_dcid; opens nothing yet

    def _init_datagram_size(self, config: ClientConfig | ServerConfig) -> None:
        """The datagram size, and the search for a larger one (RFC 8899, RFC 9000 §14.3)."""
        self.max_datagram_size = config.max_datagram_size
        self.pmtud = PathMtuDiscovery(
            config.max_datagram_size, enabled=config.pmtu_discovery, apply=self._set_datagram_size
        )
        if config.pmtu_discovery:
            self.recovery.pmtud = self.pmtud  # told of losses and timeouts: black holes

    def _init_connection_ids(
        self,
        random_bytes: Callable[[int], bytes],
        original_dcid: bytes | None,
        client_scid: bytes | None,
        retry_scid: bytes | None,
        reset_token_for: Callable[[bytes], bytes] | None,
    ) -> None:
        """Connection IDs both ways, and what the handshake checks about them."""
        config = self.config
        cid_length = config.connection_id_length
        generator = config.cid_generator if isinstance(config, ServerConfig) else None
        our_cid = generator() if generator is not None else random_bytes(cid_length)
        if self.is_client:
            self.original_dcid = random_bytes(max(8, cid_length))
            peer_cid = self.original_dcid
        else:
            if original_dcid is None or client_scid is None:
                raise ValueError("a server connection needs the client's original_dcid and scid")
            self.original_dcid = original_dcid
            peer_cid = client_scid
        self.retry_scid = retry_scid
        # The SCID of the peer's first Initial, checked against its transport
        # parameters (RFC 9000 §7.3). The client learns it from the server.
        self.peer_initial_scid: bytes | None = None if self.is_client else client_scid
        self.initial_dcid_for_keys = self.original_dcid if retry_scid is None else retry_scid
        self.local_cids = LocalConnectionIds(
            our_cid,
            cid_length,
            random_bytes,
            reset_token_for,  # None: random tokens (no per-connection closure)
            new_cid=generator,
        )
        self.peer_cids = PeerConnectionIds(peer_cid, config.active_connection_id_limit)
        self._events.append(ConnectionIdIssued(our_cid))
        self.token = b""  # client: address validation token to put in Initials
        self.new_token = b""  # client: a NEW_TOKEN from the server, for next time

    # ------------------------------------------------------------------
    # Public API
    # ------------------------------------------------------------------

    def connect(self, now: float) -> None:
        """Client: start the handshake (queues the ClientHello)."""
        if not self.is_client:
            raise RuntimeError("connect() is for client connections")
        self.tls.start()
        self._drain_tls(now)

    def next_event(self) -> Event | None:
        if self.streams.has_events():
            self._collect_stream_events()
        events = self._events
        if not events:  # emptied whenever read to the end
            return None
        head = self._event_head
        event = events[head]
        head += 1
        if head == len(events):
            del events[:]  # frees the storage (no method call: a hot path)
            head = 0
        self._event_head = head
        return event

    def _collect_stream_events(self) -> None:
        batch = self.streams.pop_events()
        append = self._events.append
        for stream_id in batch.opened:
            append(StreamOpened(stream_id))
        for stream_id, code in batch.reset:
            append(StreamResetReceived(stream_id, code))
        for stream_id, code in batch.stop_sending:
            append(StopSendingReceived(stream_id, code))
        for stream_id in batch.readable:
            append(StreamReadable(stream_id))
        for stream_id in batch.writable:
            append(StreamWritable(stream_id))
        if batch.bidi_streams_available:
            append(StreamsAvailable(bidirectional=True))
        if batch.uni_streams_available:
            append(StreamsAvailable(bidirectional=False))

    @property
    def host_cid(self) -> bytes:
        """Our first connection ID (what the peer sends to)."""
        return self.local_cids.initial.cid

    @property
    def alpn_protocol(self) -> str | None:
        return self.tls.alpn_protocol

    @property
    def cipher_suite(self) -> CipherSuite | None:
        return self.tls.cipher_suite

    @property
    def is_closed(self) -> bool:
        """True once the application can no longer use the connection."""
        return self.state in _CLOSED_STATES

    @property
    def is_terminated(self) -> bool:
        """True once the endpoint may forget the connection."""
        return self.state is _TERMINATED

    def close(
        self,
        error_code: int = 0,
        reason: str = "",
        *,
        is_application: bool = True,
        frame_type: int | None = None,
        now: float,
    ) -> None:
        """Close the connection with CONNECTION_CLOSE (RFC 9000 §10.2)."""
        if self.is_closed:
            return
        self._enter_closing(
            error_code,
            frame_type,
            reason,
            is_application,
            now,
            ConnectionTerminated(
                CloseReason.LOCAL,
                error_code=error_code,
                frame_type=frame_type,
                reason=reason,
                is_application=is_application,
            ),
        )
        self._release_parts()

    def request_key_update(self) -> None:
        """Switch to the next generation of 1-RTT keys (RFC 9001 §6): now if
        allowed, else once the handshake is confirmed and the current keys
        have an acknowledged packet (RFC 9001 §6.1)."""
        self.key_phases.request()
        if self.handshake_confirmed:
            self.key_phases.maybe_initiate(self.spaces[_APPLICATION].next_pn)

    def get_statistics(self) -> ConnectionStats:
        stats = self.stats
        rtt = self.recovery.rtt
        cc = self.recovery.congestion
        stats.smoothed_rtt = rtt.smoothed_rtt
        stats.min_rtt = rtt.min_rtt
        stats.latest_rtt = rtt.latest_rtt
        stats.congestion_window = cc.congestion_window
        stats.bytes_in_flight = cc.bytes_in_flight
        stats.pto_count = self.recovery.pto_count
        pmtud = self.pmtud
        stats.max_datagram_size = self.max_datagram_size
        stats.pmtu_probes_sent = pmtud.probes_sent
        stats.pmtu_probes_lost = pmtud.probes_lost
        stats.pmtu_black_holes = pmtud.black_holes
        return ConnectionStats(**{k: getattr(stats, k) for k in stats.__slots__})

    # ------------------------------------------------------------------
    # Receiving
    # ------------------------------------------------------------------

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        """Process one UDP datagram from ``addr``."""
        state = self.state
        if state in _SILENT_STATES:
            return
        if self.is_client and not same_address(addr, self.peer_address):
            # RFC 9000 §9: a client MUST discard packets from an unknown server address.
            return
        self.stats.bytes_received += len(data)
        amplification = self.path.amplification
        if not amplification.validated and same_address(addr, self.path.address):
            # Only what arrives from the address being validated counts (RFC 9000 §8.1).
            amplification.on_received(len(data))
        if state is _CLOSING:
            self._on_packet_while_closing()
            return
        offset = 0
        first_dcid: bytes | None = None
        processed = False
        # Every ID we issue has this length (what host_cid would say, without its calls).
        dcid_length = self.config.connection_id_length
        size = len(data)
        while offset < size:
            try:
                header = parse_header(data, offset, dcid_length)
            except PacketDropped:
                break
            start, offset = offset, header.end
            # RFC 9000 §12.2: ignore coalesced packets for another connection.
            if first_dcid is None:
                first_dcid = header.dcid
            elif header.dcid != first_dcid:
                break
            try:
                if self._receive_packet(header, data, start, addr, now):
                    processed = True
            except QuicProtocolError as exc:
                self._close_on_error(exc, now)
                self._release_parts()
                return
            if self.state in _CLOSED_STATES:
                self._release_parts()
                return
        if not processed and self.peer_cids.is_stateless_reset(data):
            self._terminate(ConnectionTerminated(CloseReason.STATELESS_RESET), now)

    def _receive_packet(
        self, header: PacketHeader, data: bytes, start: int, addr: Address, now: float
    ) -> bool:
        """Decrypt and process one packet; False if it was dropped."""
        ptype = header.packet_type
        # (the checks 1-RTT packets need not pay for)
        if header.is_long and not self._long_header_packet_wanted(header, data, start, now):
            return False
        epoch = _EPOCH_OF_TYPE[ptype]
        one_rtt = epoch is _ONE_RTT_EPOCH
        space = self.spaces[_SPACE_OF_EPOCH[epoch]]
        keys = space.recv_keys if ptype is not _ZERO_RTT_PACKET else self.zero_rtt_recv_keys
        if keys is None:
            if self.is_client and not self.recovery.has_handshake_keys:
                # RFC 9002 §6.2.3: Handshake or 1-RTT packets but no Handshake
                # keys: the server's Initial packets were lost; resend ours.
                self.writer.on_peer_crypto_repeated(Epoch.INITIAL)
            return False  # keys not yet available, or discarded (RFC 9001 §5.7)
        packet = memoryview(data)[start : header.end]
        pn_offset = header.pn_offset - start
        try:
            plain_header, pn_length = remove_header_protection(keys, packet, pn_offset)
        except PacketDropped:
            return False
        first_byte = plain_header[0]
        truncated = int.from_bytes(plain_header[pn_offset:], "big")
        pn = decode_packet_number(truncated, pn_length * 8, space.largest_received + 1)
        if one_rtt:
            phase_keys = self.key_phases.keys_for(first_byte, pn)
            if phase_keys is None:
                return False
            keys = phase_keys
        try:
            payload = keys.open(pn, plain_header, packet[pn_offset + pn_length :])
        except DecryptionFailed:
            if self.key_phases.on_decryption_failed():
                raise QuicProtocolError(
                    TransportErrorCode.AEAD_LIMIT_REACHED,
                    "too many packets failed authentication (RFC 9001 §6.6)",
                ) from None
            return False
        if one_rtt and keys is not self.key_phases.recv:
            # Only keys of another phase can start one (the PTO costs per packet).
            self.key_phases.on_decrypted(
                keys,
                pn,
                now,
                self.recovery.pto_duration(_APPLICATION),
                self.spaces[_APPLICATION].next_pn,
            )
        # RFC 9000 §17.2, §17.3.1: reserved bits must be zero once unprotected.
        if first_byte & (0x0C if header.is_long else 0x18):
            raise QuicProtocolError(TransportErrorCode.PROTOCOL_VIOLATION, "reserved bits set")
        if space.is_duplicate(pn):
            return True
        self.stats.packets_received += 1
        if self.is_client and not self._received_first_packet and header.is_long:
            # RFC 9000 §7.2: use the server's chosen connection ID from now on.
            self.peer_cids.replace_initial(header.scid)
            self.peer_initial_scid = header.scid
        self._received_first_packet = True
        if self.qlog is not None:
            self.qlog.packet_received(ptype, pn, len(packet), now, payload)
        ack_eliciting = self.receiver.process_payload(payload, ptype, epoch, header.dcid, now)
        if self.state in _CLOSED_STATES:
            return True
        highest = pn > space.largest_received
        space.on_packet_received(pn, ack_eliciting, now, self.writer.max_ack_delay)
        self._on_packet_processed(epoch, addr, now)
        if one_rtt and not self.is_client:
            if same_address(addr, self.path.address):
                self.path.on_packet_from_current(header.dcid)
            else:
                # NAT rebinding or migration (RFC 9000 §9.3).
                self.path.on_packet(
                    addr, self.receiver.non_probing, highest, len(data), header.dcid, now
                )
        return True

    def _long_header_packet_wanted(
        self, header: PacketHeader, data: bytes, start: int, now: float
    ) -> bool:
        """Version Negotiation and Retry are handled here; a long-header packet
        in a version we do not follow, or 0-RTT sent to a client, is dropped (False)."""
        ptype = header.packet_type
        if ptype is _VERSION_NEGOTIATION_PACKET:
            self._on_version_negotiation(header, now)
            return False
        if ptype is _RETRY_PACKET:
            self._on_retry(header, data[start : header.end], now)
            return False
        if header.version != self.version and not self._follow_version(header):
            return False
        # RFC 9000 §17.2.3: only clients send 0-RTT.
        return ptype is not _ZERO_RTT_PACKET or not self.is_client

    def _on_packet_processed(self, epoch: Epoch, addr: Address, now: float) -> None:
        if not self.is_client and epoch is _HANDSHAKE_EPOCH:
            # RFC 9000 §8.1: a Handshake packet proves the client owns its address;
            # RFC 9001 §4.9.1: the server discards Initial keys now.
            self.path.amplification.validate()
            self.recovery.peer_completed_address_validation = True
            self._discard_space(Space.INITIAL)
        if self.recovery.amplification_blocked and self.path.amplification.has_room():
            self.recovery.set_amplification_blocked(False)
        # RFC 9000 §10.1: any processed packet restarts the idle timer. Packets
        # received together share ``now``: once per batch is enough (the
        # timeout is fixed once the handshake is confirmed, but for the PTO).
        if now != self._idle_restarted_at or not self.handshake_confirmed:
            self._idle_restarted_at = now
            self.idle_deadline = now + self._effective_idle_timeout()
        self._ack_eliciting_sent_since_receive = False
        self._arm_keep_alive(now)

    def publish_cid_changes(self) -> None:
        self._publish_cid_changes()

    def _publish_cid_changes(self) -> None:
        local = self.local_cids
        for cid in local.issued:
            self._events.append(ConnectionIdIssued(cid))
        for cid in local.retired:
            self._events.append(ConnectionIdRetired(cid))
        local.issued = local.retired = ()

    # ------------------------------------------------------------------
    # Sending
    # ------------------------------------------------------------------

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        """Everything that should be sent now, as (datagram, address) pairs."""
        if self.state is _TERMINATED or self.state is _DRAINING:
            return []
        if self.state is _CLOSING:
            return self._close_datagrams(now)
        address = self.peer_address
        return [
            (datagram, address)
            for datagram in self.writer.build_datagrams(now, MAX_DATAGRAMS_PER_CALL)
        ]

    def has_nothing_to_send(self, now: float) -> bool:
        """True when :meth:`datagrams_to_send` is sure to return nothing now
        (an open connection past its handshake with no frame pending and no
        ACK due); False means "maybe". For a caller deciding whether a flush
        is worth its cost."""
        return self.state is _CONNECTED and self.writer.has_nothing_due(now)

    def on_packets_sent(self, packets: list[SentPacket], datagram_size: int, now: float) -> None:
        """Bookkeeping once the writer built a datagram."""
        self.stats.bytes_sent += datagram_size
        amplification = self.path.amplification
        if not amplification.validated:
            amplification.on_sent(datagram_size)
        ack_eliciting = False
        for packet in packets:
            self.stats.packets_sent += 1
            self.recovery.on_packet_sent(packet)
            if packet.ack_eliciting:
                ack_eliciting = True
            if self.qlog is not None:
                self.qlog.packet_sent(packet, now)
        if ack_eliciting and not self._ack_eliciting_sent_since_receive:
            # RFC 9000 §10.1: restart the idle timer on the first ack-eliciting
            # packet sent after receiving.
            self._ack_eliciting_sent_since_receive = True
            self.idle_deadline = now + self._effective_idle_timeout()
        self._arm_keep_alive(now)

    def start_pmtu_discovery(self) -> None:
        """The handshake is confirmed: search up to the configured size and the
        peer's max_udp_payload_size (RFC 9000 §18.2), whichever is smaller."""
        cap = self.config.pmtu_max_datagram_size
        if self.peer_params is not None:
            cap = min(cap, self.peer_params.max_udp_payload_size)
        self.pmtud.start(self.max_datagram_size, cap)

    def _set_datagram_size(self, size: int) -> None:
        """Path MTU discovery confirmed a size, or fell back to the base."""
        self.max_datagram_size = size
        self.recovery.congestion.max_datagram_size = size
        self.writer.on_datagram_size(size)

    def amplification_room(self) -> int | None:
        """Bytes a server may still send to an unvalidated address (None: no limit)."""
        return self.path.amplification.room()

    def on_close_datagram_sent(self, size: int, packets: int) -> None:
        """Bookkeeping for a datagram carrying CONNECTION_CLOSE (not tracked
        by loss recovery)."""
        self.stats.bytes_sent += size
        self.stats.packets_sent += packets
        self.path.amplification.on_sent(size)

    @property
    def peer_address(self) -> Address:
        """Where the peer is (the path manager follows a client that moves)."""
        return self.path.address

    @property
    def address_validated(self) -> bool:
        """The peer's address is validated (RFC 9000 §8): no amplification limit."""
        return self.path.amplification.validated

    # ------------------------------------------------------------------
    # Acknowledgements and loss (called by the frame receiver)
    # ------------------------------------------------------------------

    def on_ack_frame(
        self, space_id: Space, ranges: tuple[tuple[int, int], ...], ack_delay: float, now: float
    ) -> None:
        result = self.recovery.on_ack_received(space_id, ranges, ack_delay, now)
        space = self.spaces[space_id]
        largest = ranges[0][1]
        if space.discarded:
            pass  # an ACK after the discard, in the same packet: nothing goes there again
        elif space.largest_acked_by_peer is None or largest > space.largest_acked_by_peer:
            space.largest_acked_by_peer = largest
        for packet in result.acked:
            self._run_handlers(packet, True)
        if result.spurious:  # declared lost, but arrived after all
            for packet in result.spurious:
                self._run_handlers(packet, True)
        self._on_lost(result.lost)
        if self.qlog is not None:
            self.qlog.packets_lost(result.lost, now)
            self.qlog.observe(now)
        if space_id is _APPLICATION and result.acked:
            if largest >= self.first_one_rtt_pn:  # 0-RTT is no 1-RTT key phase (RFC 9001 §6.1)
                self.key_phases.on_ack(largest)
            if self.handshake_confirmed:
                self._check_key_limits(now)
        if result.acked and space_id is _APPLICATION and self.is_client:
            # RFC 9001 §4.1.2: an acknowledged 1-RTT packet (not a 0-RTT one)
            # confirms the handshake.
            if (
                not self.handshake_confirmed
                and self.handshake_complete
                and largest >= self.first_one_rtt_pn
            ):
                self._confirm_handshake()

    def _check_key_limits(self, now: float) -> None:
        """RFC 9001 §6.6: update the keys before the confidentiality limit, or stop."""
        next_pn = self.spaces[_APPLICATION].next_pn
        phases = self.key_phases
        if not phases.maybe_initiate(next_pn) and phases.confidentiality_exhausted(next_pn):
            self._close_on_error(
                QuicProtocolError(
                    TransportErrorCode.AEAD_LIMIT_REACHED,
                    "1-RTT keys used up and no key update possible (RFC 9001 §6.6)",
                ),
                now,
            )

    def _on_lost(self, lost: list[SentPacket]) -> None:
        for packet in lost:
            self.stats.packets_lost += 1
            self._run_handlers(packet, False)

    @staticmethod
    def _run_handlers(packet: SentPacket, delivered: bool) -> None:
        for callback, args in packet.handlers:
            callback(delivered, *args)
