"""The connection's handshake (sans-IO): versions, Retry, TLS glue, keys.

A mixin of :class:`~ghostwire.quic.connection.QuicConnection`: Version
Negotiation and Retry packets (RFC 9000 §6, §17.2.5), compatible version
negotiation (RFC 9368), feeding CRYPTO data to TLS and installing the keys
it produces (RFC 9001 §4), the peer's transport parameters, handshake
completion and confirmation, and discarding Initial and Handshake keys;
session resumption and 0-RTT (RFC 9001 §4.6): storing the tickets TLS hands
us, the 0-RTT keys, the transport parameters a ticket remembers (RFC 9000
§7.4.1), and resending what a rejected 0-RTT carried. The state it works on
is the connection's; the names it uses from the connection are declared
below for the type checker.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from .crypto import PacketKeys, derive_initial_secrets
from .crypto_stream import RELEASED_CRYPTO_STREAM
from .errors import QuicProtocolError, TransportErrorCode
from .events import CloseReason, ConnectionTerminated, Event, HandshakeCompleted
from .lifecycle import ConnectionState
from .packet import PacketHeader, PacketType
from .packet_space import DISCARDED_PACKET_SPACES
from .recovery import SentPacket, Space
from .suites import CipherSuite, Epoch
from .transport_params import TransportParameters, decode_transport_parameters
from .transport_setup import local_params_encoding, read_local_params, validate_peer_cids
from .versions import (
    client_check_server_version,
    compatible,
    server_choose_version,
    version_information,
)

if TYPE_CHECKING:
    from .cid import LocalConnectionIds, PeerConnectionIds
    from .config import ClientConfig, ServerConfig
    from .connection import QuicConnection
    from .crypto_stream import CryptoStream
    from .frame_writer import FrameWriter
    from .key_update import KeyPhases
    from .packet_builder import PacketBuilder
    from .packet_space import PacketNumberSpace
    from .recovery import LossRecovery
    from .streams import StreamSet
    from .tls import TlsHandshake

# Also the connection's, for decryption.
_SPACE_OF_EPOCH = {
    Epoch.INITIAL: Space.INITIAL,
    Epoch.HANDSHAKE: Space.HANDSHAKE,
    Epoch.ZERO_RTT: Space.APPLICATION,
    Epoch.ONE_RTT: Space.APPLICATION,
}


# Enum members read per packet or per handshake, as globals: on CPython 3.11
# ``Enum.MEMBER`` takes EnumType.__getattr__'s slow path (~1 K instructions
# a read, against ~10 for a global).
_ZERO_RTT_EPOCH = Epoch.ZERO_RTT
_HANDSHAKE_EPOCH = Epoch.HANDSHAKE
_ONE_RTT_EPOCH = Epoch.ONE_RTT

# RFC 9000 §7.4.1: what a client remembers for 0-RTT and a server may not reduce.
_REMEMBERED_LIMITS = (
    "active_connection_id_limit",
    "initial_max_data",
    "initial_max_stream_data_bidi_local",
    "initial_max_stream_data_bidi_remote",
    "initial_max_stream_data_uni",
    "initial_max_streams_bidi",
    "initial_max_streams_uni",
)

# Server: the client's transport parameters as _choose_version decoded them, for
# _apply_peer_params right after (same ClientHello, same bytes object), so they
# are decoded once per handshake without a per-connection field. One entry,
# keyed by the identity of the (held) bytes: another connection's can only miss.
_decoded_client_params: tuple[bytes, TransportParameters] | None = None


def _first_used_later(is_client: bool, epoch: Epoch, is_write: bool) -> bool:
    """Whether keys installed now are first used only after the flight under way
    has gone out: their derivation then waits for that use, off a connect's
    critical path. Those are a server's Handshake receive keys (for the
    client's second flight) and 1-RTT send keys (a server sends its first
    1-RTT packet after the client's Finished unless it has 0.5-RTT data), and
    a client's 1-RTT receive keys (the server's first 1-RTT packet answers the
    Finished). The others are used at once: a client's Handshake receive keys
    open the rest of the ServerHello's datagram, its 1-RTT send keys go with
    its Finished, and the 1-RTT packet beside that Finished needs the server's
    receive keys."""
    if epoch is _ONE_RTT_EPOCH:
        return is_client is not is_write
    return epoch is _HANDSHAKE_EPOCH and not is_client and not is_write


class HandshakeMixin:
    """The handshake, for :class:`~ghostwire.quic.connection.QuicConnection`."""

    # 0-RTT keys (RFC 9001 §4.6): the client's to send, the server's to read
    # (class defaults: set per connection once TLS produces them).
    zero_rtt_send_keys: PacketKeys | None = None
    zero_rtt_recv_keys: PacketKeys | None = None
    # Server: when the 0-RTT keys kept for reordered packets go (RFC 9001 §4.9.3).
    zero_rtt_discard_deadline: float | None = None
    first_one_rtt_pn = 0  # client: the packet numbers below it were 0-RTT
    # Server that accepted 0-RTT: how many client bidi and uni streams were
    # open when the handshake completed (None before): those came in 0-RTT.
    early_stream_counts: tuple[int, int] | None = None

    if TYPE_CHECKING:
        config: ClientConfig | ServerConfig
        is_client: bool
        state: ConnectionState
        version: int
        original_version: int
        original_dcid: bytes
        initial_dcid_for_keys: bytes
        retry_scid: bytes | None
        token: bytes
        local_cids: LocalConnectionIds
        peer_cids: PeerConnectionIds
        spaces: list[PacketNumberSpace]
        crypto: list[CryptoStream]
        key_phases: KeyPhases
        recovery: LossRecovery
        streams: StreamSet
        writer: FrameWriter
        tls: TlsHandshake
        _local_params: TransportParameters | bytes
        peer_params: TransportParameters | None
        max_datagram_size: int
        handshake_complete: bool
        handshake_confirmed: bool
        handshake_deadline: float | None
        _received_first_packet: bool
        _retry_received: bool
        _events: list[Event]

        @property
        def host_cid(self) -> bytes: ...
        def _publish_cid_changes(self) -> None: ...
        def _terminate(self, event: ConnectionTerminated, now: float) -> None: ...
        @staticmethod
        def _run_handlers(packet: SentPacket, delivered: bool) -> None: ...

    @property
    def local_params(self) -> TransportParameters:
        """Our transport parameters (a confirmed server keeps them encoded)."""
        return read_local_params(self._local_params, self.is_client)

    @property
    def local_params_bytes(self) -> bytes:
        return local_params_encoding(self._local_params)

    def _on_version_negotiation(self, header: PacketHeader, now: float) -> None:
        # RFC 9000 §6.2: only before any other packet; ignore if it lists ours.
        if not self.is_client or self._received_first_packet:
            return
        if self.version in header.supported_versions:
            return
        if header.dcid != self.host_cid or header.scid != self.original_dcid:
            return
        offered = ", ".join(f"0x{v:08x}" for v in header.supported_versions) or "none"
        self._terminate(
            ConnectionTerminated(
                CloseReason.VERSION_NEGOTIATION,
                error_code=TransportErrorCode.VERSION_NEGOTIATION_ERROR,
                reason=f"server does not support QUIC version 0x{self.version:08x} "
                f"(it offers {offered})",
            ),
            now,
        )

    def _on_retry(self, header: PacketHeader, packet: bytes, now: float) -> None:
        from .crypto import verify_retry

        # RFC 9000 §17.2.5.2: one Retry, before any other packet, valid tag,
        # non-empty token, and a new connection ID.
        if not self.is_client or self._retry_received or self._received_first_packet:
            return
        if not header.token or header.scid == self.peer_cids.current.cid:
            return
        if not verify_retry(bytes(packet), self.original_dcid, self.version):
            return
        self._retry_received = True
        self.retry_scid = header.scid
        self.token = header.token
        self.peer_cids.replace_initial(header.scid)
        self.initial_dcid_for_keys = header.scid
        self._install_initial_keys()
        # RFC 9002 §6.3: a Retry resets recovery for the Initial space; the
        # ClientHello goes out again in a new Initial (packet numbers continue).
        for sent in self.recovery.discard_space(Space.INITIAL):
            self._run_handlers(sent, False)
        self.crypto[Epoch.INITIAL].requeue_unacked()

    # ------------------------------------------------------------------
    # TLS glue
    # ------------------------------------------------------------------

    def on_crypto_data(self, epoch: Epoch, data: bytes, now: float) -> None:
        """Called by the frame receiver with in-order CRYPTO bytes."""
        try:
            self.tls.receive(epoch, data)
        finally:
            # Even when TLS fails, what it produced (keys for an alert) applies.
            self._drain_tls(now)

    def _drain_tls(self, now: float) -> None:
        for change in self.tls.pop_key_changes():
            space = self.spaces[_SPACE_OF_EPOCH[change.epoch]]
            keys = PacketKeys.from_secret(
                change.cipher_suite,
                change.secret,
                self.version,
                lazy=_first_used_later(self.is_client, change.epoch, change.is_write),
            )
            if change.epoch is _ZERO_RTT_EPOCH:
                self._install_zero_rtt_keys(keys, change.is_write)
                continue
            if change.epoch is _HANDSHAKE_EPOCH:
                self.recovery.has_handshake_keys = True
            if change.is_write:
                space.send_keys = keys
            else:
                space.recv_keys = keys
            if change.epoch is _ONE_RTT_EPOCH:
                self.key_phases.install(keys, change.is_write)
        for epoch, data in self.tls.outgoing.items():
            if data:
                self.crypto[epoch].write(bytes(data))
                data.clear()
        if self.peer_params is None and self.tls.peer_transport_parameters is not None:
            self._apply_peer_params(self.tls.peer_transport_parameters)
        if self.tls.complete and not self.handshake_complete:
            self._on_handshake_complete(now)
        if self.is_client and self.handshake_complete:
            self._store_tickets()

    # ------------------------------------------------------------------
    # Resumption and 0-RTT
    # ------------------------------------------------------------------

    @property
    def resumed(self) -> bool:
        """The handshake resumed a session from a ticket (no certificate was sent)."""
        return self.tls.resumed

    @property
    def early_data_accepted(self) -> bool:
        """The server accepted our 0-RTT (client), or we accepted the client's (server)."""
        return self.tls.early_data_accepted

    def stream_opened_in_early_data(self, stream_id: int) -> bool:
        """Server: whether the client opened this stream in 0-RTT, so that what
        it carries may be a replay (RFC 8446 §8, RFC 8470 §5). Every stream the
        client opened before the handshake completed was: a server reads no
        1-RTT packet before then (RFC 9001 §5.7). Always False on a client, and
        on a server that accepted no 0-RTT."""
        if self.is_client or stream_id & 1 or not self.tls.early_data_accepted:
            return False
        counts = self.early_stream_counts
        if counts is None:  # the handshake is not complete yet
            return True
        return stream_id >> 2 < counts[(stream_id >> 1) & 1]

    def _store_tickets(self) -> None:
        store = getattr(self.config, "session_tickets", None)
        for ticket in self.tls.pop_new_tickets():
            if store is not None:
                store.put(ticket)

    def _install_zero_rtt_keys(self, keys: PacketKeys, is_write: bool) -> None:
        if is_write:
            # Client: 0-RTT may go out now, within what the ticket remembers.
            self.zero_rtt_send_keys = keys
            settings = self.tls.settings
            ticket = None if settings is None else settings.session_ticket
            if ticket is not None:
                self._apply_remembered_params(ticket.transport_parameters)
        else:
            self.zero_rtt_recv_keys = keys

    def _apply_remembered_params(self, raw: bytes) -> None:
        """RFC 9000 §7.4.1: the limits a client uses for 0-RTT are the server's
        from the connection the ticket came from (they only grow later, unless
        0-RTT is rejected: :meth:`_on_zero_rtt_settled`)."""
        params = decode_transport_parameters(raw, from_server=True)
        self._apply_peer_stream_limits(params)

    def _apply_peer_stream_limits(self, params: TransportParameters) -> None:
        """The peer's flow-control and stream limits, from its transport parameters."""
        self.streams.apply_peer_limits(
            initial_max_data=params.initial_max_data,
            initial_max_streams_bidi=params.initial_max_streams_bidi,
            initial_max_streams_uni=params.initial_max_streams_uni,
            initial_max_stream_data_bidi_local=params.initial_max_stream_data_bidi_local,
            initial_max_stream_data_bidi_remote=params.initial_max_stream_data_bidi_remote,
            initial_max_stream_data_uni=params.initial_max_stream_data_uni,
        )

    def _check_limits_kept(self, params: TransportParameters) -> None:
        """RFC 9000 §7.4.1: a server that accepted 0-RTT may not lower the
        limits our 0-RTT data relied on."""
        settings = self.tls.settings
        ticket = None if settings is None else settings.session_ticket
        if ticket is None:
            return
        remembered = decode_transport_parameters(ticket.transport_parameters, from_server=True)
        lowered = [n for n in _REMEMBERED_LIMITS if getattr(params, n) < getattr(remembered, n)]
        if lowered:
            raise QuicProtocolError(
                TransportErrorCode.PROTOCOL_VIOLATION,
                f"server accepted 0-RTT but lowered {', '.join(lowered)} (RFC 9000 §7.4.1)",
            )

    def _early_data_ok(self, raw: bytes) -> bool:
        """Server: RFC 9000 §7.4.1: accept 0-RTT only if none of the limits the
        ticket's connection granted has gone down since."""
        try:
            remembered = decode_transport_parameters(raw, from_server=True)
        except Exception:  # a ticket from an older release, say: no 0-RTT
            return False
        ours = self.local_params
        return all(
            getattr(ours, name) >= getattr(remembered, name) for name in _REMEMBERED_LIMITS
        ) and (remembered.max_datagram_frame_size or 0) <= (ours.max_datagram_frame_size or 0)

    def write_zero_rtt(self, builder: PacketBuilder, now: float) -> None:
        """Client, before 1-RTT keys: stream frames in a 0-RTT packet (RFC 9001
        §4.6.1); never ACK or CRYPTO there (RFC 9000 §12.5, §17.2.3). The
        frame writer calls this when it has no 1-RTT keys."""
        keys = self.zero_rtt_send_keys
        if keys is None or not self.streams.has_pending_frames():
            return
        if not self.tls.early_data_offered:
            return  # a HelloRetryRequest came: the server reads no 0-RTT now
        if not builder.start_packet(self.spaces[Space.APPLICATION], PacketType.ZERO_RTT, keys):
            return
        writer = self.writer
        writer._write_stream_control_frames(builder, now)
        if writer._may_send_data(now):
            writer._write_stream_frames(builder)
        builder.end_packet()

    def _on_zero_rtt_settled(self) -> None:
        """Client at handshake completion: 0-RTT keys go (RFC 9001 §4.9.3); if the
        server rejected 0-RTT, everything it carried is resent in 1-RTT
        (RFC 9001 §4.6.2), as if those packets were lost. After a
        HelloRetryRequest the 0-RTT sent with the first ClientHello is
        rejected too (RFC 8446 §4.2.10), though no longer "offered"."""
        if self.zero_rtt_send_keys is None:
            return  # no 0-RTT (the attributes keep their class defaults)
        self.zero_rtt_send_keys = None
        self.first_one_rtt_pn = self.spaces[Space.APPLICATION].next_pn
        if not self.tls.early_data_accepted:
            # Only 0-RTT packets are in flight in the application space yet.
            for sent in self.recovery.discard_space(Space.APPLICATION):
                self._run_handlers(sent, False)
            # RFC 9001 §4.6.2, RFC 9000 §7.4.1: the server saw none of it, and
            # its new limits, which may be lower, replace those of the ticket.
            if self.peer_params is not None:
                self.streams.forget_peer_limits()
                self._apply_peer_stream_limits(self.peer_params)

    def _follow_version(self, header: PacketHeader) -> bool:
        """Client: the server answered in another compatible version we offered
        (RFC 9368 §2.3): switch to it, with its Initial keys."""
        if not self.is_client or self._received_first_packet:
            return False
        if header.packet_type is not PacketType.INITIAL:
            return False
        if header.version not in self.config.versions:
            return False
        if not compatible(self.version, header.version):
            return False
        self.version = header.version
        self._install_initial_keys()
        return True

    def _choose_version(self, client_params: bytes) -> bytes:
        """Server: pick the version once the ClientHello is in (RFC 9368 §2.3);
        our transport parameters, naming it, go in EncryptedExtensions."""
        global _decoded_client_params
        params = decode_transport_parameters(client_params, from_server=False)
        # _apply_peer_params takes these once TLS has the whole first flight.
        _decoded_client_params = (client_params, params)
        version = server_choose_version(self.original_version, self.config.versions, params)
        if version != self.version:
            self.version = version
            self._install_initial_keys()
        self.local_params.version_information = version_information(version, self.config.versions)
        return self.local_params_bytes

    def _apply_peer_params(self, raw: bytes) -> None:
        global _decoded_client_params
        decoded = _decoded_client_params
        if decoded is not None and decoded[0] is raw and not self.is_client:
            _decoded_client_params = None
            params = decoded[1]
        else:
            params = decode_transport_parameters(raw, from_server=self.is_client)
        if self.is_client and self.tls.early_data_accepted:
            self._check_limits_kept(params)
        validate_peer_cids(cast("QuicConnection", self), params)  # the mixin is one
        if self.is_client:
            client_check_server_version(self.version, params)
        self.peer_params = params
        if params.stateless_reset_token is not None:
            self.peer_cids.set_initial_reset_token(params.stateless_reset_token)
        self.recovery.peer_max_ack_delay = params.max_ack_delay / 1000.0
        self._apply_peer_stream_limits(params)
        if params.max_udp_payload_size < self.max_datagram_size:
            self.max_datagram_size = params.max_udp_payload_size
        self.writer.on_peer_params(params)

    def _on_handshake_complete(self, now: float) -> None:
        self.handshake_complete = True
        self.handshake_deadline = None
        self.state = ConnectionState.CONNECTED
        if self.is_client:
            self._on_zero_rtt_settled()
        else:
            # RFC 9001 §4.1.2: the server's handshake is confirmed at completion.
            self.writer.handshake_done_pending = True
            self._confirm_handshake()
            self._keep_zero_rtt_keys_a_while(now)
            if self.tls.early_data_accepted:
                streams = self.streams
                self.early_stream_counts = (streams.opened_count(0), streams.opened_count(2))
        peer = self.peer_params
        if peer is not None:
            self.local_cids.issue_up_to(peer.active_connection_id_limit)
            self._publish_cid_changes()
        self._events.append(
            HandshakeCompleted(
                alpn=self.tls.alpn_protocol or "",
                version=self.version,
                cipher_suite=self.tls.cipher_suite.tls_name if self.tls.cipher_suite else "",
                session_resumed=self.tls.resumed,
            )
        )

    def on_handshake_done_received(self) -> None:
        """Client: HANDSHAKE_DONE confirms the handshake (RFC 9001 §4.1.2)."""
        if not self.handshake_confirmed:
            self._confirm_handshake()

    def _confirm_handshake(self) -> None:
        self.handshake_confirmed = True
        self.recovery.handshake_confirmed = True
        self.recovery.peer_completed_address_validation = True
        # RFC 9001 §4.9.2: Handshake keys go once the handshake is confirmed.
        self._discard_space(Space.INITIAL)
        self._discard_space(Space.HANDSHAKE)
        # ... and with them what only the handshake needed (a server's TLS
        # state, and its transport parameters but for their encoding: the one
        # EncryptedExtensions carried, not encoded a second time).
        if not self.is_client:
            self._local_params = self.tls.transport_parameters or self.local_params_bytes
        self.tls.discard_handshake_state()

    def _keep_zero_rtt_keys_a_while(self, now: float) -> None:
        """Server at completion: RFC 9001 §4.9.3 lets it keep the 0-RTT keys
        for three PTOs, so a 0-RTT packet reordered behind the client's first
        1-RTT ones is still read rather than resent; it then MUST discard them
        (from completion, which is no later than the first 1-RTT packet)."""
        if self.zero_rtt_recv_keys is not None:
            pto = self.recovery.pto_period(Space.APPLICATION)  # "the PTO interval"
            self.zero_rtt_discard_deadline = now + 3 * pto

    def discard_zero_rtt_keys_if_due(self, now: float) -> None:
        """The connection's timer: the kept 0-RTT keys go at their deadline."""
        deadline = self.zero_rtt_discard_deadline
        if deadline is not None and now >= deadline:
            self.zero_rtt_recv_keys = None
            self.zero_rtt_discard_deadline = None

    def on_handshake_packet_sent(self) -> None:
        """Client: the first Handshake packet discards Initial keys (RFC 9001 §4.9.1)."""
        if self.is_client and not self.spaces[Space.INITIAL].discarded:
            self._discard_space(Space.INITIAL)

    def _discard_space(self, space_id: Space) -> None:
        space = self.spaces[space_id]
        if space.discarded:
            return
        space.discard()  # for those still holding it (a packet being built, ACK handlers)
        self.spaces[space_id] = DISCARDED_PACKET_SPACES[space_id]  # shared, read-only
        self.recovery.release_space(space_id)
        epoch = Epoch.INITIAL if space_id is Space.INITIAL else Epoch.HANDSHAKE
        self.crypto[epoch] = RELEASED_CRYPTO_STREAM

    def _install_initial_keys(self) -> None:
        client_secret, server_secret = derive_initial_secrets(
            self.initial_dcid_for_keys, self.version
        )
        suite = CipherSuite.AES_128_GCM_SHA256
        ours, theirs = (
            (client_secret, server_secret) if self.is_client else (server_secret, client_secret)
        )
        space = self.spaces[Space.INITIAL]
        space.send_keys = PacketKeys.from_secret(suite, ours, self.version)
        space.recv_keys = PacketKeys.from_secret(suite, theirs, self.version)
