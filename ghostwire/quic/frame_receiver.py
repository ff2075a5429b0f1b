"""What each received frame does (RFC 9000 §19).

:meth:`FrameReceiver.process_payload` parses a decrypted packet payload
frame by frame, checks that each frame may appear in that packet type
(RFC 9000 §12.4, Table 3: a violation is PROTOCOL_VIOLATION), and dispatches
it through a table to a short handler; STREAM and ACK frames, nearly all of
the traffic, are parsed straight from the payload and go to their handlers
without a frame object. Handlers delegate to the connection's
collaborators (streams, connection IDs, recovery, TLS); rules that belong to
a frame rather than to a collaborator live here, next to the handler.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .buffer import Reader
from .errors import QuicProtocolError, TransportErrorCode
from .frames import (
    AckFrame,
    ConnectionCloseFrame,
    CryptoFrame,
    DataBlockedFrame,
    DatagramFrame,
    FrameType,
    HandshakeDoneFrame,
    MaxDataFrame,
    MaxStreamDataFrame,
    MaxStreamsFrame,
    NewConnectionIdFrame,
    NewTokenFrame,
    PaddingFrame,
    PathChallengeFrame,
    PathResponseFrame,
    PingFrame,
    ResetStreamFrame,
    RetireConnectionIdFrame,
    StopSendingFrame,
    StreamDataBlockedFrame,
    StreamFrame,
    StreamsBlockedFrame,
    ack_fields_at,
    frame_allowed,
    is_ack_eliciting,
    parse_frame,
    parse_stream_frame_at,
)
from .packet import PacketType
from .recovery import Space
from .suites import Epoch

if TYPE_CHECKING:
    from .connection import QuicConnection

_PROBING_FRAMES = frozenset(
    {
        FrameType.PADDING,
        FrameType.PATH_CHALLENGE,
        FrameType.PATH_RESPONSE,
        FrameType.NEW_CONNECTION_ID,
    }
)

_STREAM_BASE = 0x08  # a STREAM frame's type byte: 0x08-0x0f (RFC 9000 §19.8)
_ACK = 0x02  # an ACK frame's type byte (not ACK_ECN, 0x03)

# Per packet type: may it carry STREAM frames, ACK frames (RFC 9000 §12.4, Table 3)?
_FAST_FRAMES_ALLOWED = {
    packet_type: (
        frame_allowed(FrameType.STREAM, packet_type),
        frame_allowed(FrameType.ACK, packet_type),
    )
    for packet_type in PacketType
}

_SPACE_OF_EPOCH = {
    Epoch.INITIAL: Space.INITIAL,
    Epoch.HANDSHAKE: Space.HANDSHAKE,
    Epoch.ZERO_RTT: Space.APPLICATION,
    Epoch.ONE_RTT: Space.APPLICATION,
}


class FrameReceiver:
    """Dispatches the frames of received packets to their handlers."""

    def __init__(self, conn: QuicConnection) -> None:
        self.conn = conn
        self._epoch = Epoch.INITIAL
        self._dcid = b""
        self._now = 0.0
        # Whether the last packet had a frame other than PADDING, PATH_CHALLENGE,
        # PATH_RESPONSE and NEW_CONNECTION_ID (RFC 9000 §9.1).
        self.non_probing = False

    def process_payload(
        self, payload: bytes, packet_type: PacketType, epoch: Epoch, dcid: bytes, now: float
    ) -> bool:
        """Handle every frame in ``payload``; returns whether it was ack-eliciting."""
        self._epoch = epoch
        self._dcid = dcid
        self._now = now
        end = len(payload)
        if not end:
            raise QuicProtocolError(
                TransportErrorCode.PROTOCOL_VIOLATION, "packet without frames (RFC 9000 §12.4)"
            )
        ack_eliciting = False
        non_probing = False
        handlers = _HANDLERS
        conn = self.conn
        streams_allowed, acks_allowed = _FAST_FRAMES_ALLOWED[packet_type]
        on_stream_frame = conn.streams.on_stream_frame
        reader: Reader | None = None
        pos = 0
        while pos < end:
            if streams_allowed and payload[pos] & 0xF8 == _STREAM_BASE:
                # The bulk of all frames: no reader, no frame object, no table
                # lookups. A STREAM frame never closes the connection (errors raise).
                stream_id, offset, data, fin, pos = parse_stream_frame_at(payload, pos, end)
                on_stream_frame(stream_id, offset, data, fin)
                ack_eliciting = non_probing = True
                continue
            if payload[pos] == _ACK and acks_allowed:  # one in most packets, both ways
                ranges, ack_delay, pos = ack_fields_at(payload, pos + 1, end)
                self._on_ack_ranges(ranges, ack_delay)
                non_probing = True
                if conn.is_closed:
                    break
                continue
            if reader is None:
                reader = Reader(payload)
            reader.pos = pos
            frame = parse_frame(reader)
            pos = reader.pos
            frame_type = frame.frame_type
            if not frame_allowed(frame_type, packet_type):
                raise QuicProtocolError(
                    TransportErrorCode.PROTOCOL_VIOLATION,
                    f"{FrameType(frame_type).name} not allowed in a {packet_type.name} packet",
                    frame_type,
                )
            if is_ack_eliciting(frame_type):
                ack_eliciting = True
            if frame_type not in _PROBING_FRAMES:
                non_probing = True
            handlers[type(frame)](self, frame)
            if conn.is_closed:
                break
        self.non_probing = non_probing
        return ack_eliciting

    # -- handshake, recovery, connection management -----------------------

    def _on_ack(self, frame: AckFrame) -> None:
        self._on_ack_ranges(frame.ranges, frame.ack_delay)

    def _on_ack_ranges(self, ranges: tuple[tuple[int, int], ...], ack_delay: int) -> None:
        conn = self.conn
        # RFC 9000 §19.3: the delay field is scaled by the peer's ack_delay_exponent.
        exponent = conn.peer_params.ack_delay_exponent if conn.peer_params is not None else 3
        delay = (ack_delay << exponent) / 1_000_000
        conn.on_ack_frame(_SPACE_OF_EPOCH[self._epoch], ranges, delay, self._now)

    def _on_crypto(self, frame: CryptoFrame) -> None:
        crypto = self.conn.crypto[self._epoch]
        if frame.offset + len(frame.data) <= crypto.received_offset:
            # The peer sent it again: it may be missing what we sent (RFC 9002 §6.2.3).
            self.conn.writer.on_peer_crypto_repeated(self._epoch)
            return
        data = crypto.receive(frame.offset, frame.data)
        if data:
            self.conn.on_crypto_data(self._epoch, data, self._now)

    def _on_new_token(self, frame: NewTokenFrame) -> None:
        if not self.conn.is_client:
            raise QuicProtocolError(
                TransportErrorCode.PROTOCOL_VIOLATION,
                "a client must not send NEW_TOKEN (RFC 9000 §19.7)",
                FrameType.NEW_TOKEN,
            )
        self.conn.new_token = frame.token

    def _on_new_connection_id(self, frame: NewConnectionIdFrame) -> None:
        self.conn.peer_cids.on_new_connection_id(
            frame.sequence_number,
            frame.retire_prior_to,
            frame.connection_id,
            frame.stateless_reset_token,
        )

    def _on_retire_connection_id(self, frame: RetireConnectionIdFrame) -> None:
        conn = self.conn
        conn.local_cids.on_retire(frame.sequence_number, self._dcid)
        if conn.peer_params is not None:
            conn.local_cids.issue_up_to(conn.peer_params.active_connection_id_limit)
        conn.publish_cid_changes()

    def _on_path_challenge(self, frame: PathChallengeFrame) -> None:
        # RFC 9000 §8.2.2: echo the data in a PATH_RESPONSE.
        self.conn.writer.queue_path_response(frame.data)

    def _on_path_response(self, frame: PathResponseFrame) -> None:
        self.conn.path.on_path_response(frame.data)

    def _on_connection_close(self, frame: ConnectionCloseFrame) -> None:
        reason = bytes(frame.reason).decode("utf-8", errors="replace")
        self.conn.on_peer_close(
            frame.error_code, frame.offending_frame_type, reason, frame.is_application, self._now
        )

    def _on_handshake_done(self, frame: HandshakeDoneFrame) -> None:
        if not self.conn.is_client:
            raise QuicProtocolError(
                TransportErrorCode.PROTOCOL_VIOLATION,
                "a client must not send HANDSHAKE_DONE (RFC 9000 §19.20)",
                FrameType.HANDSHAKE_DONE,
            )
        self.conn.on_handshake_done_received()

    def _on_datagram(self, frame: DatagramFrame) -> None:
        # RFC 9221 §3: we never advertise max_datagram_frame_size.
        raise QuicProtocolError(
            TransportErrorCode.PROTOCOL_VIOLATION,
            "DATAGRAM frames were not negotiated",
            FrameType.DATAGRAM,
        )

    # -- streams and flow control -----------------------------------------

    def _on_stream(self, frame: StreamFrame) -> None:
        self.conn.streams.on_stream_frame(frame.stream_id, frame.offset, frame.data, frame.fin)

    def _on_reset_stream(self, frame: ResetStreamFrame) -> None:
        self.conn.streams.on_reset_stream(frame.stream_id, frame.error_code, frame.final_size)

    def _on_stop_sending(self, frame: StopSendingFrame) -> None:
        self.conn.streams.on_stop_sending(frame.stream_id, frame.error_code)

    def _on_max_data(self, frame: MaxDataFrame) -> None:
        self.conn.streams.on_max_data(frame.maximum)

    def _on_max_stream_data(self, frame: MaxStreamDataFrame) -> None:
        self.conn.streams.on_max_stream_data(frame.stream_id, frame.maximum)

    def _on_max_streams(self, frame: MaxStreamsFrame) -> None:
        self.conn.streams.on_max_streams(frame.bidirectional, frame.maximum)

    def _on_data_blocked(self, frame: DataBlockedFrame) -> None:
        self.conn.streams.on_data_blocked(frame.limit)

    def _on_stream_data_blocked(self, frame: StreamDataBlockedFrame) -> None:
        self.conn.streams.on_stream_data_blocked(frame.stream_id, frame.limit)


def _ignore(receiver: FrameReceiver, frame: object) -> None:
    return None


# Frame type -> handler, shared by every connection (a per-instance table of
# bound methods cost ~1.8 KB per connection).
_HANDLERS: dict[type, Callable[[FrameReceiver, Any], None]] = {
    PaddingFrame: _ignore,
    PingFrame: _ignore,
    AckFrame: FrameReceiver._on_ack,
    CryptoFrame: FrameReceiver._on_crypto,
    NewTokenFrame: FrameReceiver._on_new_token,
    StreamFrame: FrameReceiver._on_stream,
    ResetStreamFrame: FrameReceiver._on_reset_stream,
    StopSendingFrame: FrameReceiver._on_stop_sending,
    MaxDataFrame: FrameReceiver._on_max_data,
    MaxStreamDataFrame: FrameReceiver._on_max_stream_data,
    MaxStreamsFrame: FrameReceiver._on_max_streams,
    DataBlockedFrame: FrameReceiver._on_data_blocked,
    StreamDataBlockedFrame: FrameReceiver._on_stream_data_blocked,
    StreamsBlockedFrame: _ignore,
    NewConnectionIdFrame: FrameReceiver._on_new_connection_id,
    RetireConnectionIdFrame: FrameReceiver._on_retire_connection_id,
    PathChallengeFrame: FrameReceiver._on_path_challenge,
    PathResponseFrame: FrameReceiver._on_path_response,
    ConnectionCloseFrame: FrameReceiver._on_connection_close,
    HandshakeDoneFrame: FrameReceiver._on_handshake_done,
    DatagramFrame: FrameReceiver._on_datagram,
}
