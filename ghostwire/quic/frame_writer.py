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
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .buffer import encode_varint, varint_size
from .congestion import Pacer
from .crypto import protect_packet
from .crypto_stream import CryptoStream
from .frames import (
    ConnectionCloseFrame,
    FrameType,
    NewConnectionIdFrame,
    RetireConnectionIdFrame,
    encode_frame,
)
from .packet import PacketType, encode_packet_number, encode_short_header
from .packet_builder import (
    AEAD_TAG_SIZE,
    MIN_PN_AND_PAYLOAD,
    Handler,
    PacketBuilder,
    build_pmtu_probe,
)
from .packet_space import PacketNumberSpace
from .recovery import SentPacket, Space
from .stream_events import ControlFrame
from .streams import StreamManager
from .suites import Epoch
from .transport_params import TransportParameters
from .transport_setup import ACK_DELAY_EXPONENT, MAX_ACK_DELAY_MS

if TYPE_CHECKING:
    from .connection import QuicConnection

MIN_INITIAL_DATAGRAM = 1200  # RFC 9000 §14.1
# Smallest datagram worth building for an unvalidated path after the handshake.
_MIN_PATH_DATAGRAM = 64
# Room an ACK frame with a few ranges needs; smaller packets skip the ACK.
_ACK_FRAME_MIN = 8
# Largest number of datagrams built per datagrams_to_send() call: lets the
# shell flush and the event loop breathe during bulk sends.
MAX_DATAGRAMS_PER_CALL = 64
# RFC 9002 §6.2.3: how many times per connection the handshake data is resent
# early, when the peer's repeated CRYPTO data shows it is missing ours.
MAX_EARLY_HANDSHAKE_RESENDS = 4
# Smallest room worth a STREAM frame (type, id, offset, length, some data).
_STREAM_FRAME_MIN = 16
# Room left in a datagram that any pending frame would have used (the largest
# frame that is not split, NEW_CONNECTION_ID, takes at most 54 bytes).
_SHORT_DATAGRAM_ROOM = 64
_STREAM_OFF = 0x04
_STREAM_LEN = 0x02
_STREAM_BASE = int(FrameType.STREAM)  # a global: enum member lookups are slow on CPython 3.11

_SPACE_PACKET = (
    (Space.INITIAL, PacketType.INITIAL, Epoch.INITIAL),
    (Space.HANDSHAKE, PacketType.HANDSHAKE, Epoch.HANDSHAKE),
)
_EPOCH_OF_SPACE = {space: epoch for space, _, epoch in _SPACE_PACKET}


def write_ack_frame(
    payload: bytearray, room: int, ranges: tuple[tuple[int, int], ...], delay: int
) -> int | None:
    """Append an ACK frame with as many ranges as fit in ``room``.

    Returns the largest packet number acknowledged, or None if nothing fit.
    """
    largest = ranges[0][1]
    head = bytearray(b"\x02")
    head += encode_varint(largest)
    head += encode_varint(delay)
    body = bytearray(encode_varint(largest - ranges[0][0]))
    count = 0
    previous_smallest = ranges[0][0]
    for smallest, top in ranges[1:]:
        entry = encode_varint(previous_smallest - top - 2) + encode_varint(top - smallest)
        if len(head) + varint_size(count + 1) + len(body) + len(entry) > room:
            break
        body += entry
        count += 1
        previous_smallest = smallest
    frame = head + encode_varint(count) + body
    if len(frame) > room:
        return None
    payload += frame
    return largest


class FrameWriter:
    """Builds datagrams for one connection."""

    def __init__(self, conn: QuicConnection) -> None:
        self.conn = conn
        self.max_ack_delay = MAX_ACK_DELAY_MS / 1000.0
        self._probes = {space: 0 for space in Space}
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
        if space is not Space.APPLICATION:
            conn.crypto[_EPOCH_OF_SPACE[space]].requeue_unacked()
            return
        if not self._probes_have_data():
            self._requeue_oldest(count)

    def _probes_have_data(self) -> bool:
        conn = self.conn
        return conn.streams.has_stream_data() or conn.crypto[Epoch.ONE_RTT].has_pending()

    def _requeue_oldest(self, count: int) -> None:
        """Put the frames of the ``count`` oldest application packets in flight
        back in their queues as if lost (a later ACK of those packets still
        counts); bytes in flight are not touched."""
        for packet in self.conn.recovery.oldest_in_flight(Space.APPLICATION, count):
            for callback, args in packet.handlers:
                callback(False, *args)

    def on_peer_crypto_repeated(self, epoch: Epoch) -> None:
        """The peer sent CRYPTO data again (or, to a client without Handshake
        keys, sent packets it cannot read yet): our handshake data may be lost.
        RFC 9002 §6.2.3: resend what is unacknowledged now rather than at the
        PTO, a limited number of times per connection."""
        if self._early_resends <= 0 or epoch is Epoch.ONE_RTT:
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
        space = conn.spaces[Space.APPLICATION]
        number = pmtud.probes_sent + 1
        built = build_pmtu_probe(builder, space, keys, now, pmtud.on_probe_delivered, number)
        if built is None:
            return None
        datagram, packet = built
        pmtud.on_probe_sent()
        conn.on_packets_sent([packet], len(datagram), now)
        self._pacer.on_packet_sent(len(datagram), now)
        return datagram

    def _short_datagram_was_last(self, size: int) -> bool:
        """A datagram with room to spare after the handshake means that every
        frame writer ran out of things to send (or was stopped by congestion
        control or pacing, which still hold): the next datagram would be empty.
        Pending probes are the exception: each asks for a packet of its own."""
        conn = self.conn
        return (
            size + _SHORT_DATAGRAM_ROOM <= conn.max_datagram_size
            and conn.handshake_confirmed
            and conn.amplification_room() is None
            and not any(self._probes.values())
        )

    def _burst_allowed(self) -> bool:
        """Nothing but STREAM frames is due in the 1-RTT space, and nothing at all
        in the others (they are discarded), so 1-RTT packets holding one STREAM
        frame each are exactly what :meth:`build_datagram` would build."""
        conn = self.conn
        streams = conn.streams
        return (
            conn.handshake_confirmed  # Initial and Handshake spaces are discarded
            and streams.has_stream_data()
            and conn.amplification_room() is None
            and not conn.spaces[Space.APPLICATION].ack_needed
            and not self._probes[Space.APPLICATION]
            and not self.ping_pending
            and not self.handshake_done_pending
            and not self._path_responses
            and not conn.path.challenge_pending
            and not streams.has_pending_control()
            and not conn.crypto[Epoch.ONE_RTT].has_pending()
            and not conn.local_cids.has_pending_announcements()
            and not conn.peer_cids.has_pending_retirements()
        )

    def _stream_burst(self, now: float, limit: int, out: list[bytes]) -> None:
        """Append 1-RTT datagrams of one STREAM frame each to ``out`` while the
        congestion window, the pacer and flow control allow.

        Only the packet number and the frame change from packet to packet, so
        the header layout and the room for the frame are worked out once. Just
        called :meth:`build_datagram`, which refreshed the pacer (RFC 9002 §7.7)
        and whose checks (:meth:`_burst_allowed`) still hold: nothing is received
        while we build, and sending STREAM frames queues no other frame that
        could not wait for the :meth:`build_datagram` call that ends a burst.
        """
        conn = self.conn
        keys = conn.key_phases.send
        if keys is None:
            return
        space = conn.spaces[Space.APPLICATION]
        streams = conn.streams
        congestion = conn.recovery.congestion
        pacer = self._pacer
        # RFC 9000 §17.1: a packet number length that suits the last packet of
        # the burst suits the earlier ones too.
        _, pn_length = encode_packet_number(
            space.next_pn + limit - len(out), space.largest_acked_by_peer
        )
        prefix = bytearray()
        pn_offset = encode_short_header(
            prefix,
            dcid=conn.peer_cids.current.cid,
            pn_length=pn_length,
            key_phase=conn.key_phases.send_phase,
        )
        room = conn.max_datagram_size - pn_offset - pn_length - AEAD_TAG_SIZE
        pn_mask = (1 << (8 * pn_length)) - 1
        space_id = space.space
        while len(out) < limit:
            if not congestion.can_send():
                return
            wait = pacer.next_send_time(now)
            if wait is not None:
                self._pacing_wait = wait
                return
            pn = space.next_pn
            packet = prefix + (pn & pn_mask).to_bytes(pn_length, "big")
            handlers = _append_stream_frames(packet, streams, room)
            if not handlers:
                return
            space.next_pn = pn + 1
            if len(packet) < pn_offset + MIN_PN_AND_PAYLOAD:
                packet += bytes(pn_offset + MIN_PN_AND_PAYLOAD - len(packet))  # PADDING
            datagram = protect_packet(keys, packet, pn_offset, pn_length, pn)
            size = len(datagram)
            sent = SentPacket(
                packet_number=pn,
                space=space_id,
                time_sent=now,
                size=size,
                ack_eliciting=True,
                in_flight=True,
                handlers=handlers,
            )
            conn.on_packets_sent([sent], size, now)
            pacer.on_packet_sent(size, now)
            out.append(datagram)

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
        builder = PacketBuilder(
            max_size=max_size,
            version=conn.version,
            dcid=conn.peer_cids.current.cid,
            scid=conn.host_cid,
            token=conn.token,
            key_phase=conn.key_phases.send_phase,
        )
        for space_id, packet_type, epoch in _SPACE_PACKET:
            self._write_handshake_space(builder, space_id, packet_type, epoch, now)
        self._write_application_space(builder, now)
        if builder.is_empty:
            return None
        pad_to = 0
        if builder.has_packet_type(PacketType.INITIAL) and (
            conn.is_client or builder.has_ack_eliciting(PacketType.INITIAL)
        ):
            pad_to = MIN_INITIAL_DATAGRAM
        elif (
            conn.is_client
            and not conn.recovery.peer_completed_address_validation
            and builder.has_ack_eliciting(PacketType.HANDSHAKE)
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
        if any(p.ack_eliciting and p.in_flight for p in sent):
            self._pacer.on_packet_sent(len(datagram), now)
        if conn.is_client and builder.has_packet_type(PacketType.HANDSHAKE):
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

    def _write_ack(
        self, builder: PacketBuilder, space: PacketNumberSpace, now: float
    ) -> tuple[int, int, int] | None:
        """Append an ACK frame if one is needed; :meth:`_settle_ack` decides
        once the packet is filled whether it stays. Returns (start, end,
        largest acknowledged) or None."""
        if not space.ack_needed or builder.remaining < _ACK_FRAME_MIN:
            return None
        ranges = space.ack_ranges()
        if not ranges:
            space.on_ack_sent()
            return None
        delay_us = max(0, int((now - space.largest_received_time) * 1_000_000))
        start = len(builder.payload)
        largest = write_ack_frame(
            builder.payload, builder.remaining, ranges, delay_us >> ACK_DELAY_EXPONENT
        )
        if largest is None:
            return None
        return start, len(builder.payload), largest

    def _settle_ack(
        self,
        builder: PacketBuilder,
        space: PacketNumberSpace,
        ack: tuple[int, int, int] | None,
        due: bool,
    ) -> None:
        """Keep the ACK if it was due or rides on an ack-eliciting packet.

        Otherwise it is taken out again and waits for the next ack-eliciting
        packet (or its own timer): an ACK that is merely needed -- e.g. for
        ACK-only packets received -- must not go out on its own, or two
        congestion-blocked senders bounce ACK-only packets forever
        (RFC 9000 §13.2.1: no non-ack-eliciting packet in response to a
        non-ack-eliciting packet).
        """
        if ack is None:
            return
        start, end, largest = ack
        if due or builder.has_current_ack_eliciting:
            space.on_ack_sent()
            builder.add_handler(_on_ack_delivered, space, largest)
        else:
            del builder.payload[start:end]

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
        ack = self._write_ack(builder, space, now)
        if probe or self._may_send_data(now):
            self._write_crypto(builder, crypto)
        if probe:
            if not builder.has_current_ack_eliciting:
                builder.payload.append(FrameType.PING)
                builder.mark_ack_eliciting()
            self._probes[space_id] -= 1
        self._settle_ack(builder, space, ack, ack_due)
        builder.end_packet()

    def _write_crypto(self, builder: PacketBuilder, crypto: CryptoStream) -> None:
        while True:
            room = builder.remaining - 1 - 8 - 4  # type, offset, length
            chunk = crypto.next_frame(room)
            if chunk is None:
                return
            offset, data = chunk
            payload = builder.payload
            payload.append(FrameType.CRYPTO)
            payload += encode_varint(offset)
            payload += encode_varint(len(data))
            payload += data
            builder.mark_ack_eliciting()
            builder.add_handler(crypto.on_delivered, offset, len(data))

    def _write_application_space(self, builder: PacketBuilder, now: float) -> None:
        conn = self.conn
        space = conn.spaces[Space.APPLICATION]
        keys = conn.key_phases.send
        if keys is None:
            return conn.write_zero_rtt(builder, now)  # a client's 0-RTT, if any
        probe = self._probes[Space.APPLICATION] > 0
        if probe and not self._probes_have_data():
            self._requeue_oldest(1)  # RFC 9002 §6.2.4: resend rather than PING
        streams = conn.streams
        wants_data = self._application_wants_data()
        ack_due = space.ack_due(now)
        if not (ack_due or probe or wants_data):
            return
        if not builder.start_packet(space, PacketType.ONE_RTT, keys):
            return
        ack = self._write_ack(builder, space, now)
        if probe and self._handshake_done_in_flight:
            # RFC 9002 §6.2.4: a probe should carry data in flight rather than
            # a bare PING. HANDSHAKE_DONE is what the client waits for: without
            # it the client cannot confirm the handshake (no application PTO,
            # RFC 9002 §6.2.1), and its Handshake probes reach a server that
            # already discarded those keys.
            self.handshake_done_pending = True
        if wants_data or probe:
            self._write_control_frames(builder)
            self._write_stream_control_frames(builder, now)
            if probe or self._may_send_data(now):
                self._write_crypto(builder, conn.crypto[Epoch.ONE_RTT])
                self._write_stream_frames(builder)
                if streams.has_max_streams_pending():  # a FIN sent returned credit
                    self._write_stream_control_frames(builder, now)
        if (probe or self.ping_pending) and not builder.has_current_ack_eliciting:
            if builder.remaining >= 1:
                builder.payload.append(FrameType.PING)
                builder.mark_ack_eliciting()
        if probe:
            self._probes[Space.APPLICATION] -= 1
        if builder.has_current_ack_eliciting:
            self.ping_pending = False
        self._settle_ack(builder, space, ack, ack_due)
        builder.end_packet()

    def _application_wants_data(self) -> bool:
        """Cheap check: may a 1-RTT packet have an ack-eliciting frame to carry?"""
        conn = self.conn
        return bool(
            self.handshake_done_pending
            or self._path_responses
            or conn.path.challenge_pending
            or self.ping_pending
            or conn.crypto[Epoch.ONE_RTT].has_pending()
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
            or any(self._probes.values())
            or self._application_wants_data()
            or conn.spaces[Space.APPLICATION].ack_due(now)
        )

    def _write_control_frames(self, builder: PacketBuilder) -> None:
        payload = builder.payload
        if self.handshake_done_pending and builder.remaining >= 1:
            payload.append(FrameType.HANDSHAKE_DONE)
            builder.mark_ack_eliciting()
            builder.add_handler(self._on_handshake_done_delivered)
            self.handshake_done_pending = False
            self._handshake_done_in_flight = True
        while self._path_responses and builder.remaining >= 9:
            payload.append(FrameType.PATH_RESPONSE)
            payload += self._path_responses.pop(0)
            builder.mark_ack_eliciting()
            self._pad_for_path = True
        path = self.conn.path
        if path.challenge_pending and builder.remaining >= 9:
            challenge = path.challenge_to_send()
            if challenge is not None:
                payload.append(FrameType.PATH_CHALLENGE)
                payload += challenge
                builder.mark_ack_eliciting()
                builder.add_handler(path.on_challenge_delivered, challenge)
                self._pad_for_path = True
        self._write_cid_frames(builder)

    def _write_cid_frames(self, builder: PacketBuilder) -> None:
        conn = self.conn
        for entry in conn.local_cids.pending_announcements():
            frame = encode_frame(
                NewConnectionIdFrame(
                    entry.sequence_number,
                    conn.local_cids.retire_prior_to,
                    entry.cid,
                    entry.stateless_reset_token,
                )
            )
            if len(frame) > builder.remaining:
                return
            builder.payload.extend(frame)
            builder.mark_ack_eliciting()
            builder.add_handler(conn.local_cids.on_announcement_delivered, entry.sequence_number)
            conn.local_cids.on_announcement_sent(entry.sequence_number)
        for sequence_number in conn.peer_cids.pending_retirements():
            frame = encode_frame(RetireConnectionIdFrame(sequence_number))
            if len(frame) > builder.remaining:
                return
            builder.payload.extend(frame)
            builder.mark_ack_eliciting()
            builder.add_handler(conn.peer_cids.on_retirement_delivered, sequence_number)
            conn.peer_cids.on_retirement_sent(sequence_number)

    def _write_stream_control_frames(self, builder: PacketBuilder, now: float) -> None:
        streams = self.conn.streams
        rtt = self.conn.recovery.rtt.smoothed_rtt
        for frame in streams.pending_control_frames(now, rtt):
            encoded = _encode_control_frame(frame)
            if len(encoded) > builder.remaining:
                return  # stays pending for the next packet
            builder.payload.extend(encoded)
            builder.mark_ack_eliciting()
            builder.add_handler(_on_control_delivered, streams, frame)
            streams.on_control_sent(frame)

    def _write_stream_frames(self, builder: PacketBuilder) -> None:
        streams = self.conn.streams
        if not streams.has_stream_data():
            return
        while builder.remaining > _STREAM_FRAME_MIN:
            frame = streams.next_stream_frame(builder.remaining)
            if frame is None:
                return
            stream_id, offset, data, fin = frame
            payload = builder.payload
            payload += _stream_frame_header(stream_id, offset, len(data), fin)
            payload += data
            builder.mark_ack_eliciting()
            builder.add_handler(_on_stream_delivered, streams, stream_id, offset, len(data), fin)

    def _on_handshake_done_delivered(self, delivered: bool) -> None:
        if delivered:
            self._handshake_done_in_flight = False
            self.handshake_done_pending = False  # a copy sent by a probe was enough
        elif self._handshake_done_in_flight:
            self.handshake_done_pending = True

    # -- closing ---------------------------------------------------------

    def build_close_datagram(self, now: float) -> bytes | None:
        """A datagram carrying CONNECTION_CLOSE in every space we have keys for.

        RFC 9000 §10.2.3: before the handshake is confirmed the peer may lack
        1-RTT keys, so the close also goes in Initial and Handshake packets,
        where an application close is sent as a transport APPLICATION_ERROR.
        """
        conn = self.conn
        if conn.close_frame is None:
            return None
        error_code, frame_type, reason, is_application = conn.close_frame
        max_size = conn.max_datagram_size
        room = conn.amplification_room()
        if room is not None:
            max_size = min(max_size, room)
        builder = PacketBuilder(
            max_size=max_size,
            version=conn.version,
            dcid=conn.peer_cids.current.cid,
            scid=conn.host_cid,
            token=conn.token,
            key_phase=conn.key_phases.send_phase,
        )
        candidates: list[tuple[PacketNumberSpace, PacketType, object]] = []
        for space_id, packet_type, _ in _SPACE_PACKET:
            space = conn.spaces[space_id]
            if space.send_keys is not None and not space.discarded:
                candidates.append((space, packet_type, space.send_keys))
        if conn.key_phases.send is not None and (conn.handshake_complete or not candidates):
            candidates.append(
                (conn.spaces[Space.APPLICATION], PacketType.ONE_RTT, conn.key_phases.send)
            )
        for space, packet_type, keys in candidates:
            if not builder.start_packet(space, packet_type, keys):  # type: ignore[arg-type]
                break
            app_close = is_application and packet_type is PacketType.ONE_RTT
            frame = _encode_close(
                error_code if app_close or not is_application else 0xC,
                None if app_close else (frame_type or 0),
                reason if app_close or not is_application else b"",
                room=builder.remaining,
            )
            builder.payload.extend(frame)
            builder.end_packet()
        if builder.is_empty:
            return None
        pad_to = (
            MIN_INITIAL_DATAGRAM
            if conn.is_client and builder.has_packet_type(PacketType.INITIAL)
            else 0
        )
        if room is not None:
            pad_to = min(pad_to, max_size)
        datagram, sent = builder.finish(pad_to, now)
        conn.on_close_datagram_sent(len(datagram), len(sent))
        return datagram


def _encode_close(error_code: int, frame_type: int | None, reason: bytes, room: int) -> bytes:
    """CONNECTION_CLOSE (0x1c transport, or 0x1d application when frame_type is None),
    with the reason cut to fit ``room`` (a 2-byte length is assumed)."""
    head = len(encode_frame(ConnectionCloseFrame(error_code, frame_type))) - 1
    reason = reason[: max(0, room - head - 2)]
    return encode_frame(ConnectionCloseFrame(error_code, frame_type, reason))


def _append_stream_frames(packet: bytearray, streams: StreamManager, room: int) -> list[Handler]:
    """Fill ``room`` bytes of ``packet`` with STREAM frames: one frame when a
    bulk stream fills the packet, many when small streams (requests, replies)
    are queued. Returns the packet's delivery handlers (none: nothing to send)."""
    handlers: list[Handler] = []
    while room > _STREAM_FRAME_MIN:
        frame = streams.next_stream_frame(room)
        if frame is None:
            break
        stream_id, offset, data, fin = frame
        header = _stream_frame_header(stream_id, offset, len(data), fin)
        packet += header
        packet += data
        room -= len(header) + len(data)
        handlers.append((_on_stream_delivered, (streams, stream_id, offset, len(data), fin)))
    return handlers


def _stream_frame_header(stream_id: int, offset: int, length: int, fin: bool) -> bytes:
    """A STREAM frame up to its data, always with a Length (RFC 9000 §19.8)."""
    frame_type = _STREAM_BASE | _STREAM_LEN | (_STREAM_OFF if offset else 0) | (fin and 1)
    if offset:
        return (
            bytes((frame_type,))
            + encode_varint(stream_id)
            + encode_varint(offset)
            + encode_varint(length)
        )
    return bytes((frame_type,)) + encode_varint(stream_id) + encode_varint(length)


def _encode_control_frame(frame: ControlFrame) -> bytes:
    """The wire form of a flow-control or stream-control frame (RFC 9000 §19.4-19.14)."""
    kind, stream_id, value, final_size = frame
    out = bytearray(encode_varint(kind))
    if stream_id is not None:
        out += encode_varint(stream_id)
    out += encode_varint(value)
    if kind == FrameType.RESET_STREAM:
        out += encode_varint(final_size)
    return bytes(out)


def _on_control_delivered(delivered: bool, streams: StreamManager, frame: ControlFrame) -> None:
    streams.on_control_delivered(frame, delivered)


def _on_stream_delivered(
    delivered: bool, streams: StreamManager, stream_id: int, offset: int, length: int, fin: bool
) -> None:
    streams.on_stream_frame_delivered(stream_id, offset, length, fin, delivered)


def _on_ack_delivered(delivered: bool, space: PacketNumberSpace, largest: int) -> None:
    if delivered:
        space.on_ack_acknowledged(largest)
