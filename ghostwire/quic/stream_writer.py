"""STREAM frames on the send side (RFC 9000 §19.8), and bulk bursts.

:class:`StreamWriter` is a part of :class:`.frame_writer.FrameWriter`: it
fills a packet's remaining room with STREAM frames, and during a bulk
transfer builds whole 1-RTT datagrams of stream data without going through
:meth:`.frame_writer.FrameWriter.build_datagram` (DESIGN.md "Hot paths").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .congestion import Pacer
from .crypto import protect_packet
from .frames import FrameType
from .packet import encode_packet_number, encode_short_header
from .packet_builder import AEAD_TAG_SIZE, MIN_PN_AND_PAYLOAD, Handler, PacketBuilder
from .sent_packet import SentPacket, Space
from .streams import StreamManager
from .suites import Epoch

if TYPE_CHECKING:
    from .connection import QuicConnection

# Smallest room worth a STREAM frame (type, id, offset, length, some data).
_STREAM_FRAME_MIN = 16
# Room left in a datagram that any pending frame would have used (the largest
# frame that is not split, NEW_CONNECTION_ID, takes at most 54 bytes).
_SHORT_DATAGRAM_ROOM = 64
_STREAM_OFF = 0x04
_STREAM_LEN = 0x02
_STREAM_BASE = int(FrameType.STREAM)  # a global: enum member lookups are slow on CPython 3.11


class StreamWriter:
    """The STREAM frame writers of :class:`.frame_writer.FrameWriter`."""

    conn: QuicConnection
    ping_pending: bool
    handshake_done_pending: bool
    _probes: list[int]  # by Space
    _path_responses: list[bytes]
    _pacer: Pacer
    _pacing_wait: float | None
    # The last packet's STREAM frames stopped with stream data still queued: a
    # small message kept whole for the next packet (UNSPLIT_MESSAGE) can leave
    # up to that much room unused, and the next datagram is not empty.
    _stream_data_left = False

    def _short_datagram_was_last(self, size: int) -> bool:
        """A datagram with room to spare after the handshake means that every
        frame writer ran out of things to send (or was stopped by congestion
        control or pacing, which still hold): the next datagram would be empty.
        Pending probes are the exception: each asks for a packet of its own;
        so is a small message left for the next packet (``_stream_data_left``)."""
        if self._stream_data_left:
            self._stream_data_left = False
            return False
        conn = self.conn
        return (
            size + _SHORT_DATAGRAM_ROOM <= conn.max_datagram_size
            and conn.handshake_confirmed
            and conn.amplification_room() is None
            and not any(self._probes)
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
            handler = append_stream_frames(packet, streams, room)
            if handler is None:
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
                handlers=[handler],
            )
            conn.on_packets_sent([sent], size, now)
            pacer.on_packet_sent(size, now)
            out.append(datagram)

    def _write_stream_frames(self, builder: PacketBuilder) -> None:
        streams = self.conn.streams
        if not streams.has_stream_data():
            return
        room = builder.remaining
        if room <= _STREAM_FRAME_MIN:
            return
        handler = append_stream_frames(builder.payload, streams, room)
        if handler is not None:
            callback, args = handler
            builder.mark_ack_eliciting()
            builder.add_handler(callback, *args)
        if streams.has_stream_data():
            self._stream_data_left = True  # no room for the next frame (UNSPLIT_MESSAGE)


def append_stream_frames(packet: bytearray, streams: StreamManager, room: int) -> Handler | None:
    """Fill ``room`` bytes of ``packet`` with STREAM frames: one frame when a
    bulk stream fills the packet, many when small streams (requests, replies)
    are queued. Returns the packet's one delivery handler for all of them
    (None: nothing to send)."""
    frames: list[tuple[int, int, int, bool]] = []
    while room > _STREAM_FRAME_MIN:
        frame = streams.next_stream_frame(room)
        if frame is None:
            break
        stream_id, offset, data, fin = frame
        length = len(data)
        header = stream_frame_header(stream_id, offset, length, fin)
        packet += header
        packet += data
        room -= len(header) + length
        frames.append((stream_id, offset, length, fin))
    if not frames:
        return None
    return streams.on_stream_frames_delivered, (frames,)


def stream_frame_header(stream_id: int, offset: int, length: int, fin: bool) -> bytes:
    """A STREAM frame up to its data, always with a Length (RFC 9000 §19.8).

    The fields are varints (RFC 9000 §16) gathered into one integer and
    converted once: this runs for every frame sent.
    """
    value = _STREAM_BASE | _STREAM_LEN | (_STREAM_OFF if offset else 0) | fin
    size = 1
    for field in (stream_id, offset, length) if offset else (stream_id, length):
        if field < 0x40:
            value = value << 8 | field
            size += 1
        elif field < 0x4000:
            value = value << 16 | field | 0x4000
            size += 2
        elif field < 0x40000000:
            value = value << 32 | field | 0x80000000
            size += 4
        else:
            value = value << 64 | field | 0xC000000000000000
            size += 8
    return value.to_bytes(size, "big")
