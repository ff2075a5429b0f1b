"""Control frames of the 1-RTT space: HANDSHAKE_DONE, path validation,
connection IDs, and flow and stream control (RFC 9000 §19).

:class:`ControlFrameWriter` is a part of :class:`.frame_writer.FrameWriter`;
each frame that needs reliable delivery registers a delivery handler so a
loss queues exactly that frame again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .buffer import encode_varint
from .frames import (
    FrameType,
    RetireConnectionIdFrame,
    encode_frame,
    encode_new_connection_id,
)
from .packet_builder import PacketBuilder
from .stream_events import ControlFrame
from .streams import StreamManager

if TYPE_CHECKING:
    from .connection import QuicConnection


class ControlFrameWriter:
    """The control-frame writers of :class:`.frame_writer.FrameWriter`."""

    conn: QuicConnection
    handshake_done_pending: bool
    _handshake_done_in_flight: bool
    _path_responses: list[bytes]
    _pad_for_path: bool

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

    def _write_cid_frames(self, builder: PacketBuilder) -> None:
        conn = self.conn
        for entry in conn.local_cids.pending_announcements():
            frame = encode_new_connection_id(
                entry.sequence_number,
                conn.local_cids.retire_prior_to,
                entry.cid,
                entry.stateless_reset_token,
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
            encoded = encode_control_frame(frame)
            if len(encoded) > builder.remaining:
                return  # stays pending for the next packet
            builder.payload.extend(encoded)
            builder.mark_ack_eliciting()
            builder.add_handler(_on_control_delivered, streams, frame)
            streams.on_control_sent(frame)

    def _on_handshake_done_delivered(self, delivered: bool) -> None:
        if delivered:
            self._handshake_done_in_flight = False
            self.handshake_done_pending = False  # a copy sent by a probe was enough
        elif self._handshake_done_in_flight:
            self.handshake_done_pending = True


def encode_control_frame(frame: ControlFrame) -> bytes:
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
