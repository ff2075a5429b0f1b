"""What goes into the next datagram (the send half of the connection).

:meth:`FrameWriter.build_datagram` fills one datagram with up to three
coalesced packets (Initial, Handshake, 1-RTT; RFC 9000 §12.2), each with the
frames its space has pending, in priority order:

1. ACK when one is due (and piggybacked whenever the packet goes anyway);
2. CRYPTO data (new, or lost and re-queued);
3. for 1-RTT: HANDSHAKE_DONE, PATH_RESPONSE, PATH_CHALLENGE, connection IDs, flow control
   and stream control frames, then stream data, then PING.

Limits applied here: the anti-amplification budget of an unvalidated server
(RFC 9000 §8.1), the congestion window and the pacer for ack-eliciting data
(RFC 9002 §7; ACK-only packets and PTO probes are exempt, §7 and §7.5),
and the datagram padding rules (RFC 9000 §14.1).

A PTO probe (:meth:`FrameWriter.request_probe`) carries data whenever there is
some (RFC 9002 §6.2.4): new data first, else the unacknowledged CRYPTO data of
its space, else the frames of the oldest 1-RTT packets in flight; a PING only
when there is nothing else.

Every frame that needs reliable delivery registers a delivery handler on its
packet so that a loss puts exactly that frame back in the queue.

Modules: this one (the datagram, the spaces, probes and limits),
:mod:`.ack_writer` (ACK frames), :mod:`.control_writer` (control frames),
:mod:`.stream_writer` (STREAM frames and bulk bursts) and
:mod:`.close_writer` (CONNECTION_CLOSE).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .ack_writer import settle_ack, write_ack
from .buffer import encode_varint
from .close_writer import MIN_INITIAL_DATAGRAM, build_close_datagram, datagram_builder
from .congestion import Pacer
from .control_writer import ControlFrameWriter
from .crypto_stream import CryptoStream
from .frames import FrameType
from .packet import PacketType
from .packet_builder import PacketBuilder, build_pmtu_probe
from .recovery import Space
from .stream_writer import StreamWriter
from .suites import Epoch
from .transport_params import TransportParameters
from .transport_setup import MAX_ACK_DELAY_MS

if TYPE_CHECKING:
    from .connection import QuicConnection

__all__ = ["MAX_DATAGRAMS_PER_CALL", "MIN_INITIAL_DATAGRAM", "FrameWriter"]

# Smallest datagram worth building for an unvalidated path after the handshake.
_MIN_PATH_DATAGRAM = 64
# Largest number of datagrams built per datagrams_to_send() call: lets the
# shell flush and the event loop breathe during bulk sends.
MAX_DATAGRAMS_PER_CALL = 64
# RFC 9002 §6.2.3: how many times per connection the handshake data is resent
# early, when the peer's repeated CRYPTO data shows it is missing ours.
MAX_EARLY_HANDSHAKE_RESENDS = 4

_SPACE_PACKET = (
    (Space.INITIAL, PacketType.INITIAL, Epoch.INITIAL),
    (Space.HANDSHAKE, PacketType.HANDSHAKE, Epoch.HANDSHAKE),
)
_EPOCH_OF_SPACE = {space: epoch for space, _, epoch in _SPACE_PACKET}

# Enum members read per packet or per handshake, as globals: on CPython 3.11
# ``Enum.MEMBER`` takes EnumType.__getattr__'s slow path (~1 K instructions
# a read, against ~10 for a global).
_APPLICATION = Space.APPLICATION
_ONE_RTT_EPOCH = Epoch.ONE_RTT
_INITIAL_PACKET = PacketType.INITIAL
_HANDSHAKE_PACKET = PacketType.HANDSHAKE
_ONE_RTT_PACKET = PacketType.ONE_RTT
_CRYPTO_FRAME = FrameType.CRYPTO


class FrameWriter(ControlFrameWriter, StreamWriter):
    """Builds datagrams for one connection."""

    def __init__(self, conn: QuicConnection) -> None:
        self.conn = conn
        self.max_ack_delay = MAX_ACK_DELAY_MS / 1000.0
        self._probes = [0, 0, 0]  # by Space
        self._early_resends = MAX_EARLY_HANDSHAKE_RESENDS
        self.ping_pending = False
        self.handshake_done_pending = False
        self._handshake_done_in_flight = False  # sent, not yet acknowledged
        self._path_responses: list[bytes] = []
        self._pad_for_path = False  # the datagram carries PATH_CHALLENGE/PATH_RESPONSE
        self._pacer = Pacer(max_datagram_size=conn.config.max_datagram_size)
        self._pacing_wait: float | None = None

    # -- configuration hooks ---------------------------------------------

    def on_peer_params(self, params: TransportParameters) -> None:
        """Peer transport parameters arrived (nothing to do here yet)."""

    def on_datagram_size(self, size: int) -> None:
        """Path MTU discovery changed the datagram size."""
        self._pacer.max_datagram_size = size

    def request_probe(self, space: Space, count: int) -> None:
        """A PTO fired: send ``count`` ack-eliciting probe packets (RFC 9002 §6.2.4).

        Probes carry data when there is some: new data first, else data sent
        but not yet acknowledged (the CRYPTO data of a handshake space; in the
        application space the frames of the oldest packets in flight), and a
        PING only when there is nothing else.
        """
        self._probes[space] = max(self._probes[space], count)
        conn = self.conn
        if space is not _APPLICATION:
            conn.crypto[_EPOCH_OF_SPACE[space]].requeue_unacked()
            return
        if not self._probes_have_data():
            self._requeue_oldest(count)

    def _probes_have_data(self) -> bool:
        conn = self.conn
        return conn.streams.has_stream_data() or conn.crypto[_ONE_RTT_EPOCH].has_pending()

    def _requeue_oldest(self, count: int) -> None:
        """Put the frames of the ``count`` oldest application packets in flight
        back in their queues as if lost (a later ACK of those packets still
        counts); bytes in flight are not touched."""
        for packet in self.conn.recovery.oldest_in_flight(_APPLICATION, count):
            for callback, args in packet.handlers:
                callback(False, *args)

    def on_peer_crypto_repeated(self, epoch: Epoch) -> None:
        """The peer sent CRYPTO data again (or, to a client without Handshake
        keys, sent packets it cannot read yet): our handshake data may be lost.
        RFC 9002 §6.2.3: resend what is unacknowledged now rather than at the
        PTO, a limited number of times per connection."""
        if self._early_resends <= 0 or epoch is _ONE_RTT_EPOCH:
            return
        resent = False
        for space_id, _, space_epoch in _SPACE_PACKET:
            space = self.conn.spaces[space_id]
            crypto = self.conn.crypto[space_epoch]
            if space.send_keys is not None and not space.discarded and crypto.has_unacked():
                self.request_probe(space_id, 1)
                resent = True
        if resent:
            self._early_resends -= 1

    def queue_path_response(self, data: bytes) -> None:
        if len(self._path_responses) < 4:  # don't let a flood of challenges grow a queue
            self._path_responses.append(data)

    def next_timer(self) -> float | None:
        """When pacing will allow the data that is waiting."""
        return self._pacing_wait

    def on_timer(self, now: float) -> None:
        if self._pacing_wait is not None and now >= self._pacing_wait:
            self._pacing_wait = None
        self.conn.key_phases.on_timer(now)

    # -- datagrams -------------------------------------------------------

    def build_datagrams(self, now: float, limit: int) -> list[bytes]:
        """Up to ``limit`` datagrams that should be sent now, and a PMTU probe.

        Every datagram can come from :meth:`build_datagram`, which considers
        every space and frame kind. That costs too much per packet during a
        bulk transfer (DESIGN.md "Hot paths"), so once one was built and only
        stream data is left (:meth:`_burst_allowed`), the following datagrams
        come from :meth:`_stream_burst`; whatever stops the burst sends us back
        to :meth:`build_datagram`.
        """
        out: list[bytes] = []
        while len(out) < limit:
            datagram = self.build_datagram(now)
            if datagram is None:
                break
            out.append(datagram)
            if self._short_datagram_was_last(len(datagram)):
                break  # saves a build_datagram call that would find nothing
            if len(out) < limit and self._burst_allowed():
                self._stream_burst(now, limit, out)
        if now >= self.conn.pmtud.probe_at and (probe := self._pmtu_probe(now)) is not None:
            out.append(probe)
        return out

    def _pmtu_probe(self, now: float) -> bytes | None:
        """A PMTU probe (:mod:`.pmtud`) when one is due, within the congestion
        window, once the handshake is confirmed (RFC 9000 §14.3). Built last, so
        it never leads a GSO run its being too big would fail (RFC 9000 §14.4)."""
        conn = self.conn
        pmtud = conn.pmtud
        keys = conn.key_phases.send
        if not conn.handshake_confirmed or keys is None or conn.amplification_room() is not None:
            return None
        if not pmtud.started:
            conn.start_pmtu_discovery()
        size = pmtud.probe_size(now)
        if size is None or not conn.recovery.congestion.can_send():
            return None
        builder = PacketBuilder(
            max_size=size,
            version=conn.version,
            dcid=conn.peer_cids.current.cid,
            scid=conn.host_cid,
            key_phase=conn.key_phases.send_phase,
        )
        space = conn.spaces[_APPLICATION]
        number = pmtud.probes_sent + 1
        built = build_pmtu_probe(builder, space, keys, now, pmtud.on_probe_delivered, number)
        if built is None:
            return None
        datagram, packet = built
        pmtud.on_probe_sent()
        conn.on_packets_sent([packet], len(datagram), now)
        self._pacer.on_packet_sent(len(datagram), now)
        return datagram

    def build_datagram(self, now: float) -> bytes | None:
        """Build the next datagram, or None when there is nothing to send."""
        conn = self.conn
        max_size = conn.max_datagram_size
        room = conn.amplification_room()
        if room is not None:
            # Datagrams with Initial packets need 1200 bytes (RFC 9000 §14.1); once the
            # handshake is over (a client that moved, RFC 9000 §9.3.1) smaller ones may go.
            floor = _MIN_PATH_DATAGRAM if conn.handshake_complete else MIN_INITIAL_DATAGRAM
            if room < floor:
                conn.recovery.set_amplification_blocked(True)
                return None
            max_size = min(max_size, room)
        builder = datagram_builder(conn, max_size)
        spaces = conn.spaces
        for space_id, packet_type, epoch in _SPACE_PACKET:
            space = spaces[space_id]
            if space.send_keys is not None and not space.discarded:
                self._write_handshake_space(builder, space_id, packet_type, epoch, now)
        self._write_application_space(builder, now)
        if builder.is_empty:
            return None
        pad_to = 0
        if builder.has_packet_type(_INITIAL_PACKET) and (
            conn.is_client or builder.has_ack_eliciting(_INITIAL_PACKET)
        ):
            pad_to = MIN_INITIAL_DATAGRAM
        elif (
            conn.is_client
            and not conn.recovery.peer_completed_address_validation
            and builder.has_ack_eliciting(_HANDSHAKE_PACKET)
        ):
            # Until the server has validated our address its anti-amplification
            # limit may hold its retransmissions back; every byte we send raises
            # it (RFC 9000 §8.1, RFC 9002 §6.2.2.1).
            pad_to = MIN_INITIAL_DATAGRAM
        if self._pad_for_path:
            # RFC 9000 §8.2.1, §8.2.2: path validation frames travel in datagrams of at
            # least 1200 bytes, unless the anti-amplification limit forbids it.
            self._pad_for_path = False
            pad_to = max(pad_to, min(MIN_INITIAL_DATAGRAM, max_size))
        datagram, sent = builder.finish(pad_to, now)
        conn.on_packets_sent(sent, len(datagram), now)
        if builder.has_ack_eliciting():  # so in flight
            self._pacer.on_packet_sent(len(datagram), now)
        if conn.is_client and builder.has_packet_type(_HANDSHAKE_PACKET):
            conn.on_handshake_packet_sent()
        return datagram

    def _may_send_data(self, now: float) -> bool:
        """Congestion window and pacer allow more ack-eliciting data."""
        recovery = self.conn.recovery
        if not recovery.congestion.can_send():
            return False
        pacer = self._pacer
        pacer.update(recovery.congestion.congestion_window, recovery.rtt.smoothed_rtt, now)
        wait = pacer.next_send_time(now)
        if wait is not None:
            self._pacing_wait = wait
            return False
        return True

    def _write_handshake_space(
        self,
        builder: PacketBuilder,
        space_id: Space,
        packet_type: PacketType,
        epoch: Epoch,
        now: float,
    ) -> None:
        conn = self.conn
        space = conn.spaces[space_id]
        keys = space.send_keys
        if keys is None or space.discarded:
            return
        crypto = conn.crypto[epoch]
        probe = self._probes[space_id] > 0
        if probe:
            if not crypto.has_pending():
                # The probe before this one took it all: each probe carries
                # the unacknowledged data (RFC 9002 §6.2.4), not a bare PING.
                crypto.requeue_unacked()
            if space.largest_received >= 0:
                # Acknowledge again: the ACK we sent may be lost with the rest,
                # and it gives the peer an RTT sample.
                space.ack_needed = True
        if not (space.ack_needed or crypto.has_pending() or probe):
            return
        if not builder.start_packet(space, packet_type, keys):
            return
        ack_due = space.ack_due(now)
        ack = write_ack(builder, space, now)
        if probe or self._may_send_data(now):
            self._write_crypto(builder, crypto)
        if probe:
            if not builder.has_current_ack_eliciting:
                builder.payload.append(FrameType.PING)
                builder.mark_ack_eliciting()
            self._probes[space_id] -= 1
        settle_ack(builder, space, ack, ack_due)
        builder.end_packet()

    def _write_crypto(self, builder: PacketBuilder, crypto: CryptoStream) -> None:
        while True:
            room = builder.remaining - 1 - 8 - 4  # type, offset, length
            chunk = crypto.next_frame(room)
            if chunk is None:
                return
            offset, data = chunk
            payload = builder.payload
            payload.append(_CRYPTO_FRAME)
            payload += encode_varint(offset)
            payload += encode_varint(len(data))
            payload += data
            builder.mark_ack_eliciting()
            builder.add_handler(crypto.on_delivered, offset, len(data))

    def _write_application_space(self, builder: PacketBuilder, now: float) -> None:
        conn = self.conn
        space = conn.spaces[_APPLICATION]
        keys = conn.key_phases.send
        if keys is None:
            return conn.write_zero_rtt(builder, now)  # a client's 0-RTT, if any
        probe = self._probes[_APPLICATION] > 0
        if probe and not self._probes_have_data():
            self._requeue_oldest(1)  # RFC 9002 §6.2.4: resend rather than PING
        streams = conn.streams
        wants_data = self._application_wants_data()
        ack_due = space.ack_due(now)
        if not (ack_due or probe or wants_data):
            return
        if not builder.start_packet(space, _ONE_RTT_PACKET, keys):
            return
        ack = write_ack(builder, space, now)
        if probe and self._handshake_done_in_flight:
            # RFC 9002 §6.2.4: a probe should carry data in flight rather than
            # a bare PING. HANDSHAKE_DONE is what the client waits for: without
            # it the client cannot confirm the handshake (no application PTO,
            # RFC 9002 §6.2.1), and its Handshake probes reach a server that
            # already discarded those keys.
            self.handshake_done_pending = True
        if wants_data or probe:
            # Each writer is called only when it may have something: this runs
            # for every 1-RTT packet.
            if self.handshake_done_pending or self._path_responses or conn.path.challenge_pending:
                self._write_control_frames(builder)
            cids = conn.local_cids.has_pending_announcements()
            if cids or conn.peer_cids.has_pending_retirements():
                self._write_cid_frames(builder)
            self._write_stream_control_frames(builder, now)
            if probe or self._may_send_data(now):
                crypto = conn.crypto[_ONE_RTT_EPOCH]
                if crypto.has_pending():
                    self._write_crypto(builder, crypto)
                self._write_stream_frames(builder)
                if streams.has_max_streams_pending():  # a FIN sent returned credit
                    self._write_stream_control_frames(builder, now)
        if (probe or self.ping_pending) and not builder.has_current_ack_eliciting:
            if builder.remaining >= 1:
                builder.payload.append(FrameType.PING)
                builder.mark_ack_eliciting()
        if probe:
            self._probes[_APPLICATION] -= 1
        if builder.has_current_ack_eliciting:
            self.ping_pending = False
        settle_ack(builder, space, ack, ack_due)
        builder.end_packet()

    def _application_wants_data(self) -> bool:
        """Cheap check: may a 1-RTT packet have an ack-eliciting frame to carry?"""
        conn = self.conn
        return bool(
            self.handshake_done_pending
            or self._path_responses
            or conn.path.challenge_pending
            or self.ping_pending
            or conn.crypto[_ONE_RTT_EPOCH].has_pending()
            or conn.streams.has_pending_frames()
            or conn.local_cids.has_pending_announcements()
            or conn.peer_cids.has_pending_retirements()
        )

    def has_nothing_due(self, now: float) -> bool:
        """True when :meth:`build_datagram` is sure to find nothing to send now:
        handshake confirmed, no PTO probe or frame pending, no ACK due (one merely
        needed waits, RFC 9000 §13.2.1). A due PMTU probe does not count: probes
        ride on other sending (ACKs too), so an idle connection never probes."""
        conn = self.conn
        return not (
            not conn.handshake_confirmed
            or conn.amplification_room() is not None
            or any(self._probes)
            or self._application_wants_data()
            or conn.spaces[_APPLICATION].ack_due(now)
        )

    # -- closing ---------------------------------------------------------

    def build_close_datagram(self, now: float) -> bytes | None:
        """A datagram carrying CONNECTION_CLOSE (:mod:`.close_writer`)."""
        return build_close_datagram(self.conn, now)
