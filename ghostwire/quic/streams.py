"""Streams of one connection: ids, limits, scheduling and events (RFC 9000 §2-4).

Theory of operation
-------------------
:class:`StreamManager` owns every :class:`Stream` of a connection (each a
:class:`~ghostwire.quic.stream_send.StreamSender` and/or
:class:`~ghostwire.quic.stream_recv.StreamReceiver`) plus connection-level
flow control (:class:`~ghostwire.quic.flow.SendCredit`,
:class:`~ghostwire.quic.flow.ReceiveCredit`). The connection talks to the
manager only; every operation updates a few small ordered sets so nothing
ever scans all streams:

* ``_send_queue`` -- round-robin queue of streams that may have STREAM data
  to send. A stream goes to the back after each frame; one found with
  nothing to send is dropped and re-added when it gets something (write,
  loss, more credit). Streams starved only of *connection* credit are
  parked in ``_conn_blocked`` and requeued by MAX_DATA.
* ``_control`` -- streams that may have RESET_STREAM, STOP_SENDING,
  MAX_STREAM_DATA or STREAM_DATA_BLOCKED to send; cleaned lazily.
* event sets drained by :meth:`StreamManager.pop_events`.

Stream ids (RFC 9000 §2.1): bit 0 is the initiator (0 client, 1 server),
bit 1 the direction (0 bidirectional, 1 unidirectional); ``id >> 2`` is the
stream's index within its type. Per type we keep one counter: the next
index we will open (local types) or the number the peer has opened (peer
types). A stream absent from the dict but below that counter existed and
was closed and forgotten; frames for it are ignored.

Closing and stream credit: a stream is forgotten (its memory freed) once
both halves are terminal (send: Data Recvd / Reset Recvd; receive: Data
Read / Reset Read, i.e. the application read everything or was told of the
reset). Each peer-initiated stream returns one unit of stream credit then,
or a bidirectional one as soon as it is read and all sent (only the peer's
ACK missing); MAX_STREAMS goes in batches (:mod:`.stream_credit`).
"""

from __future__ import annotations

from collections.abc import Callable

from .buffer import varint_size
from .errors import QuicProtocolError, TransportErrorCode
from .flow import (
    DEFAULT_MAX_CONNECTION_WINDOW,
    DEFAULT_MAX_STREAM_WINDOW,
    BlockedSignal,
    ReceiveCredit,
    SendCredit,
)
from .frames import FrameType
from .stream_credit import StreamCreditReturn
from .stream_events import (
    ControlFrame,
    OutgoingStreamFrame,
    StreamEvents,
    StreamStatistics,
)
from .stream_recv import StreamReceiver
from .stream_rewind import StreamRewindMixin
from .stream_send import StreamSender
from .stream_states import RecvState, StreamStateError
from .stream_types import (
    Stream,
    StreamConfig,
    StreamLimitReached,
    stream_is_bidirectional,
    stream_is_client_initiated,
    stream_is_unidirectional,
)

__all__ = [
    "ControlFrame",
    "FrameType",
    "OutgoingStreamFrame",
    "Stream",
    "StreamConfig",
    "StreamEvents",
    "StreamLimitReached",
    "StreamManager",
    "StreamReceiver",
    "StreamSender",
    "StreamSet",
    "StreamStateError",
    "StreamStatistics",
    "stream_is_bidirectional",
    "stream_is_client_initiated",
    "stream_is_unidirectional",
]


_STREAM_TYPES = frozenset(range(0x08, 0x10))
_STREAM = FrameType.STREAM  # a global: enum member lookups are slow on CPython 3.11
# RFC 9000 §19.8, §19.4, §19.13: frames only the sender of a stream sends.
_FROM_SENDER = frozenset({FrameType.STREAM, FrameType.RESET_STREAM, FrameType.STREAM_DATA_BLOCKED})
# RFC 9000 §19.10, §19.5: frames only the receiver of a stream sends.
_FROM_RECEIVER = frozenset({FrameType.MAX_STREAM_DATA, FrameType.STOP_SENDING})


class StreamManager(StreamRewindMixin):
    """All streams of one connection plus connection-level flow control.

    Our limits (what we allow the peer, i.e. our transport parameters) are
    given here; the peer's arrive later through :meth:`apply_peer_limits`.
    """

    def __init__(
        self,
        is_client: bool,
        *,
        max_streams_bidi: int,
        max_streams_uni: int,
        max_stream_data_bidi_local: int,
        max_stream_data_bidi_remote: int,
        max_stream_data_uni: int,
        max_data: int,
        max_stream_window: int = DEFAULT_MAX_STREAM_WINDOW,
        max_connection_window: int = DEFAULT_MAX_CONNECTION_WINDOW,
    ) -> None:
        self.is_client = is_client
        self._local_bit = 0 if is_client else 1
        self._streams: dict[int, Stream] = {}
        # per stream type (id & 3): next local index / number of peer streams opened
        self._next_index = [0, 0, 0, 0]
        # per direction [bidi, uni]
        # our MAX_STREAMS, per direction
        self._credit = (StreamCreditReturn(max_streams_bidi), StreamCreditReturn(max_streams_uni))
        self._peer_max_streams = [0, 0]  # the peer allows us
        self._streams_blocked = [BlockedSignal(), BlockedSignal()]
        # initial receive windows (ours) and send limits (the peer's), RFC 9000 §18.2
        self._recv_bidi_local = max_stream_data_bidi_local
        self._recv_bidi_remote = max_stream_data_bidi_remote
        self._recv_uni = max_stream_data_uni
        self._send_bidi_local = 0  # peer's initial_max_stream_data_bidi_local
        self._send_bidi_remote = 0
        self._send_uni = 0
        self._max_stream_window = max_stream_window
        self.send_credit = SendCredit(0)
        self.recv_credit = ReceiveCredit(max_data, max_connection_window)
        # scheduling (dicts used as ordered sets)
        self._send_queue: dict[int, None] = {}
        self._conn_blocked: dict[int, None] = {}
        self._control: dict[int, None] = {}
        # events
        self._ev_opened: list[int] = []
        self._ev_readable: dict[int, None] = {}
        self._ev_reset: dict[int, int] = {}
        self._ev_stop: dict[int, int] = {}
        self._ev_writable: dict[int, None] = {}
        self._ev_available = [False, False]
        # Told the id of each stream forgotten (both halves terminal), so a
        # layer above can drop what it keeps per stream without polling.
        self.on_retired: Callable[[int], None] | None = None

    @classmethod
    def from_config(cls, config: StreamConfig, *, is_client: bool) -> StreamManager:
        """A manager with our limits taken from a client or server config."""
        window = config.initial_max_stream_data
        return cls(
            is_client,
            max_streams_bidi=config.max_streams_bidi,
            max_streams_uni=config.max_streams_uni,
            max_stream_data_bidi_local=window,
            max_stream_data_bidi_remote=window,
            max_stream_data_uni=window,
            max_data=config.initial_max_data,
            max_stream_window=config.max_stream_window,
            max_connection_window=config.max_connection_window,
        )

    # -- limits --------------------------------------------------------------

    def apply_peer_limits(
        self,
        *,
        initial_max_data: int,
        initial_max_streams_bidi: int,
        initial_max_streams_uni: int,
        initial_max_stream_data_bidi_local: int,
        initial_max_stream_data_bidi_remote: int,
        initial_max_stream_data_uni: int,
    ) -> None:
        """The peer's transport parameters arrived (RFC 9000 §18.2).

        The peer's ``bidi_local`` applies to bidirectional streams *the peer*
        opened, its ``bidi_remote`` to those we opened. Limits only grow (to
        lower them after a rejected 0-RTT: :meth:`forget_peer_limits` first).
        """
        self._send_bidi_local = max(self._send_bidi_local, initial_max_stream_data_bidi_local)
        self._send_bidi_remote = max(self._send_bidi_remote, initial_max_stream_data_bidi_remote)
        self._send_uni = max(self._send_uni, initial_max_stream_data_uni)
        self.on_max_data(initial_max_data)
        self.on_max_streams(True, initial_max_streams_bidi)
        self.on_max_streams(False, initial_max_streams_uni)
        for stream_id, stream in self._streams.items():
            sender = stream.sender
            if sender is not None and sender.on_max_stream_data(self._send_limit(stream_id)):
                self._send_queue[stream_id] = None

    def _is_local(self, stream_id: int) -> bool:
        return (stream_id & 1) == self._local_bit

    def _send_limit(self, stream_id: int) -> int:
        if stream_id & 2:
            return self._send_uni
        return self._send_bidi_remote if self._is_local(stream_id) else self._send_bidi_local

    def _recv_window(self, stream_id: int) -> int:
        if stream_id & 2:
            return self._recv_uni
        return self._recv_bidi_local if self._is_local(stream_id) else self._recv_bidi_remote

    def _create(self, stream_id: int) -> Stream:
        local = self._is_local(stream_id)
        uni = stream_id & 2
        sender = StreamSender(self._send_limit(stream_id)) if local or not uni else None
        receiver = None
        if not local or not uni:
            receiver = StreamReceiver(self._recv_window(stream_id), self._max_stream_window)
        stream = Stream(stream_id, sender, receiver)
        self._streams[stream_id] = stream
        return stream

    # -- opening and lookup -------------------------------------------------------

    def open_stream(self, bidirectional: bool) -> int:
        """Open the next locally-initiated stream and return its id.

        Raises StreamLimitReached when the peer's MAX_STREAMS is used up
        (and queues STREAMS_BLOCKED once for that limit, RFC 9000 §4.6).
        """
        uni = 0 if bidirectional else 1
        stream_type = self._local_bit | (uni << 1)
        index = self._next_index[stream_type]
        limit = self._peer_max_streams[uni]
        if index >= limit:
            self._streams_blocked[uni].block(limit)
            raise StreamLimitReached(
                f"peer allows {limit} {'bidirectional' if bidirectional else 'unidirectional'}"
                " streams"
            )
        self._next_index[stream_type] = index + 1
        stream_id = (index << 2) | stream_type
        self._create(stream_id)
        return stream_id

    def streams_available(self, bidirectional: bool) -> int:
        """How many more streams of a type the peer's MAX_STREAMS lets us open now."""
        uni = 0 if bidirectional else 1
        index = self._next_index[self._local_bit | (uni << 1)]
        return max(0, self._peer_max_streams[uni] - index)

    def get(self, stream_id: int) -> Stream | None:
        """The live stream with this id, or None (never opened, or closed and forgotten)."""
        return self._streams.get(stream_id)

    def was_opened(self, stream_id: int) -> bool:
        """Whether this stream was ever opened, by us or the peer (it may be forgotten since)."""
        return stream_id >= 0 and stream_id >> 2 < self._next_index[stream_id & 3]

    def __len__(self) -> int:
        return len(self._streams)

    def get_for_frame(self, stream_id: int, frame_type: int) -> Stream | None:
        """The stream an incoming stream-related frame is about, or None to ignore it.

        Opens peer-initiated streams as needed (with all lower-numbered ones
        of the same type, RFC 9000 §3.2). Raises QuicProtocolError:
        STREAM_STATE_ERROR for a frame the stream's direction forbids or for
        a locally-initiated stream not opened yet; STREAM_LIMIT_ERROR for a
        peer-initiated stream beyond the limit we advertised (§4.6).
        """
        kind = _STREAM if frame_type in _STREAM_TYPES else frame_type
        local = (stream_id & 1) == self._local_bit
        if stream_id & 2:
            if local and kind in _FROM_SENDER:
                raise QuicProtocolError(
                    TransportErrorCode.STREAM_STATE_ERROR,
                    f"frame on our send-only stream {stream_id}",
                    frame_type,
                )
            if not local and kind in _FROM_RECEIVER:
                raise QuicProtocolError(
                    TransportErrorCode.STREAM_STATE_ERROR,
                    f"frame on the peer's send-only stream {stream_id}",
                    frame_type,
                )
        stream = self._streams.get(stream_id)
        if stream is not None:
            return stream
        index = stream_id >> 2
        stream_type = stream_id & 3
        opened = self._next_index[stream_type]
        if local:
            if index >= opened:
                raise QuicProtocolError(
                    TransportErrorCode.STREAM_STATE_ERROR,
                    f"stream {stream_id} has not been opened",
                    frame_type,
                )
            return None  # closed and forgotten
        if index < opened:
            return None  # closed and forgotten
        if index >= self._credit[stream_type >> 1].limit:
            raise QuicProtocolError(
                TransportErrorCode.STREAM_LIMIT_ERROR,
                f"stream {stream_id} beyond the stream limit we advertised",
                frame_type,
            )
        for i in range(opened, index + 1):  # RFC 9000 §3.2: implicitly opened
            new_id = (i << 2) | stream_type
            stream = self._create(new_id)
            self._ev_opened.append(new_id)
        self._next_index[stream_type] = index + 1
        return stream

    # -- incoming frames ---------------------------------------------------------------

    def on_stream_frame(
        self,
        stream_id: int,
        offset: int,
        data: bytes | memoryview,
        fin: bool,
        frame_type: int = FrameType.STREAM,
    ) -> None:
        """A STREAM frame (RFC 9000 §19.8); charges connection flow control."""
        stream = self.get_for_frame(stream_id, frame_type)
        if stream is None or stream.receiver is None:
            return
        receiver = stream.receiver
        contiguous = receiver.contiguous_offset
        state = receiver.state
        consumed = receiver.consumed
        try:
            growth = receiver.handle_stream_frame(offset, data, fin)
            if growth:
                self.recv_credit.on_data(growth)
        except QuicProtocolError as exc:
            exc.frame_type = frame_type
            raise
        if receiver.consumed != consumed:
            self.recv_credit.on_consumed(receiver.consumed - consumed)
        if receiver.is_finished:
            self._maybe_forget(stream_id)
        elif receiver.contiguous_offset != contiguous or receiver.state is not state:
            self._ev_readable[stream_id] = None

    def on_reset_stream(self, stream_id: int, error_code: int, final_size: int) -> None:
        """A RESET_STREAM frame (RFC 9000 §19.4)."""
        frame_type = FrameType.RESET_STREAM
        stream = self.get_for_frame(stream_id, frame_type)
        if stream is None or stream.receiver is None:
            return
        receiver = stream.receiver
        state = receiver.state
        consumed = receiver.consumed
        try:
            growth = receiver.handle_reset(error_code, final_size)
            if growth:
                self.recv_credit.on_data(growth)
        except QuicProtocolError as exc:
            exc.frame_type = frame_type
            raise
        if receiver.consumed != consumed:
            self.recv_credit.on_consumed(receiver.consumed - consumed)
        if receiver.state is RecvState.RESET_RECVD and state is not RecvState.RESET_RECVD:
            self._ev_reset[stream_id] = error_code
            self._ev_readable.pop(stream_id, None)
        self._maybe_forget(stream_id)

    def on_stop_sending(self, stream_id: int, error_code: int) -> None:
        """A STOP_SENDING frame (RFC 9000 §19.5): reset our send side in reply (§3.5)."""
        stream = self.get_for_frame(stream_id, FrameType.STOP_SENDING)
        if stream is None or stream.sender is None:
            return
        sender = stream.sender
        if sender.stop_sending_error_code is None:
            self._ev_stop[stream_id] = error_code
        if sender.on_stop_sending(error_code):
            self._control[stream_id] = None
            self._send_queue.pop(stream_id, None)
            self._conn_blocked.pop(stream_id, None)

    def on_max_stream_data(self, stream_id: int, maximum: int) -> None:
        """A MAX_STREAM_DATA frame (RFC 9000 §19.10)."""
        stream = self.get_for_frame(stream_id, FrameType.MAX_STREAM_DATA)
        if stream is None or stream.sender is None:
            return
        if stream.sender.on_max_stream_data(maximum) and stream.sender.has_pending():
            self._send_queue[stream_id] = None

    def on_stream_data_blocked(self, stream_id: int, limit: int) -> None:
        """A STREAM_DATA_BLOCKED frame (RFC 9000 §19.13): validated, otherwise informational."""
        self.get_for_frame(stream_id, FrameType.STREAM_DATA_BLOCKED)

    def on_max_data(self, maximum: int) -> None:
        """A MAX_DATA frame (RFC 9000 §19.9): requeue streams waiting for credit."""
        if self.send_credit.on_max_data(maximum) and self._conn_blocked:
            self._send_queue.update(self._conn_blocked)
            self._conn_blocked.clear()

    def on_data_blocked(self, limit: int) -> None:
        """A DATA_BLOCKED frame (RFC 9000 §19.12): informational only.

        Credit is returned as the application reads, not on request.
        """

    def on_max_streams(self, bidirectional: bool, maximum: int) -> None:
        """A MAX_STREAMS frame (RFC 9000 §19.11); lower values are ignored.

        (Values above 2^60 are a FRAME_ENCODING_ERROR, checked by the parser.)
        """
        uni = 0 if bidirectional else 1
        if maximum > self._peer_max_streams[uni]:
            self._peer_max_streams[uni] = maximum
            self._streams_blocked[uni].unblock()
            self._ev_available[uni] = True
            if self._held_streams:  # (only after a rejected 0-RTT)
                self._release_held(uni)

    # -- application side -----------------------------------------------------------------

    def _live(self, stream_id: int) -> Stream:
        stream = self._streams.get(stream_id)
        if stream is None:
            raise StreamStateError(f"stream {stream_id} is not open")
        return stream

    def write(
        self, stream_id: int, data: bytes | bytearray | memoryview, end_stream: bool = False
    ) -> None:
        """Queue ``data`` (and the FIN) on a stream's send side."""
        sender = self._live(stream_id).sender
        if sender is None:
            raise StreamStateError(f"stream {stream_id} is receive-only")
        sender.write(data, end_stream)
        self._send_queue[stream_id] = None

    def read(self, stream_id: int, max_bytes: int | None = None) -> bytes:
        """Read in-order data; returns flow-control credit as it goes."""
        receiver = self._live(stream_id).receiver
        if receiver is None:
            raise StreamStateError(f"stream {stream_id} is send-only")
        consumed = receiver.consumed
        data = receiver.read(max_bytes)
        if receiver.consumed != consumed:
            self.recv_credit.on_consumed(receiver.consumed - consumed)
        if receiver.wants_max_stream_data():
            self._control[stream_id] = None
        if receiver.is_finished:
            self._maybe_forget(stream_id)
        return data

    def read_or_eof(self, stream_id: int, max_bytes: int | None = None) -> bytes | None:
        """One call for a reader's step: in-order data if any; ``b""`` at the end
        of the stream (the read that reaches it is "Data Read", RFC 9000 §3.2,
        and a stream already forgotten is over); ``None`` when nothing is
        readable yet (also after a reset: the caller checks for one first).

        ``read`` then ``at_eof`` do the same in two lookups and a second read.
        """
        stream = self._streams.get(stream_id)
        if stream is None:
            return b""  # both halves finished and forgotten
        receiver = stream.receiver
        if receiver is None:
            return None
        consumed = receiver.consumed
        data = receiver.read(max_bytes)
        if receiver.consumed != consumed:
            self.recv_credit.on_consumed(receiver.consumed - consumed)
        if receiver.wants_max_stream_data():
            self._control[stream_id] = None
        if receiver.is_finished:
            self._maybe_forget(stream_id)
        if data:
            return data
        return b"" if receiver.at_eof else None

    def reset_stream(self, stream_id: int, error_code: int) -> None:
        """Abandon the send side with RESET_STREAM (no-op if already finished)."""
        sender = self._live(stream_id).sender
        if sender is None:
            raise StreamStateError(f"stream {stream_id} is receive-only")
        if sender.reset(error_code):
            self._control[stream_id] = None
            self._send_queue.pop(stream_id, None)
            self._conn_blocked.pop(stream_id, None)
            self._maybe_forget(stream_id)  # may return the stream's credit early

    def stop_sending(self, stream_id: int, error_code: int) -> None:
        """Ask the peer to stop sending (STOP_SENDING); incoming data is discarded."""
        receiver = self._live(stream_id).receiver
        if receiver is None:
            raise StreamStateError(f"stream {stream_id} is send-only")
        consumed = receiver.consumed
        receiver.stop_sending(error_code)
        if receiver.consumed != consumed:
            self.recv_credit.on_consumed(receiver.consumed - consumed)
        self._ev_readable.pop(stream_id, None)
        self._control[stream_id] = None
        self._maybe_forget(stream_id)

    def statistics(self, stream_id: int) -> StreamStatistics:
        """Byte counters of a live stream."""
        return self._live(stream_id).statistics

    # -- sending ------------------------------------------------------------------------

    def has_pending_frames(self) -> bool:
        """Cheap check: is any STREAM or control frame possibly due?"""
        return bool(self._send_queue) or self.has_pending_control()

    def has_pending_control(self) -> bool:
        """Cheap check: may :meth:`pending_control_frames` return a frame?"""
        return bool(
            self._control
            or self.recv_credit.window.wants_update()
            or self.send_credit.pending_data_blocked() is not None
            or self._credit[0].pending
            or self._credit[1].pending
            or self._streams_blocked[0].pending() is not None
            or self._streams_blocked[1].pending() is not None
        )

    def has_max_streams_pending(self) -> bool:
        """Cheap check: is a MAX_STREAMS frame waiting to be sent?"""
        return self._credit[0].pending or self._credit[1].pending

    def has_stream_data(self) -> bool:
        """Cheap check: may :meth:`next_stream_frame` return a frame?"""
        return bool(self._send_queue)

    def next_stream_frame(self, max_frame_size: int) -> OutgoingStreamFrame | None:
        """The next STREAM frame, picking streams round-robin, or None.

        ``max_frame_size`` bounds the whole frame (type, id, offset, length
        and data). New data is charged to connection credit here; retransmitted
        data is free. Returns None when nothing fits or nothing is sendable.
        """
        queue = self._send_queue
        credit = self.send_credit
        length_size = varint_size(max(max_frame_size, 0))
        while queue:
            stream_id = next(iter(queue))
            stream = self._streams.get(stream_id)
            sender = stream.sender if stream is not None else None
            if sender is None:
                del queue[stream_id]
                continue
            offset = sender.next_offset()
            header = 1 + varint_size(stream_id) + length_size
            if offset:
                header += varint_size(offset)
            max_data = max_frame_size - header
            if max_data < 1:
                return None  # the packet is full
            before = sender.highest_sent
            frame = sender.next_frame(max_data, before + credit.available())
            del queue[stream_id]
            if frame is None:
                self._park(stream_id, sender)
                continue
            if sender.highest_sent != before:
                credit.consume(sender.highest_sent - before)
            if sender.has_pending(sender.highest_sent + credit.available()):
                queue[stream_id] = None  # to the back: round-robin
            else:
                self._park(stream_id, sender)
            if frame[2] and stream is not None and stream_id & 1 != self._local_bit:
                self._credit[0].credit_if_done(stream)  # the FIN went: all sent once
            return OutgoingStreamFrame(stream_id, frame[0], frame[1], frame[2])
        return None

    def _park(self, stream_id: int, sender: StreamSender) -> None:
        """A stream left the send queue: note why it is waiting, if it is."""
        credit = self.send_credit
        if sender.wants_credit():
            self._conn_blocked[stream_id] = None
            credit.note_blocked()
        if sender.pending_data_blocked() is not None:
            self._control[stream_id] = None

    def on_stream_frame_delivered(
        self, stream_id: int, offset: int, length: int, fin: bool, delivered: bool
    ) -> None:
        """The packet carrying a STREAM frame was acked (True) or lost (False)."""
        stream = self._streams.get(stream_id)
        if stream is None or stream.sender is None:
            return  # forgotten: nothing left to do for it
        sender = stream.sender
        if delivered:
            buffered = sender.buffered_bytes
            sender.on_frame_delivered(offset, length, fin, True)
            if sender.buffered_bytes != buffered or sender.is_finished:
                # The last acknowledgement too, so whoever waits for a stream's
                # data to be delivered (the HTTP/3 drain) hears of it.
                self._ev_writable[stream_id] = None
            if sender.is_finished:
                self._maybe_forget(stream_id)
        else:
            sender.on_frame_delivered(offset, length, fin, False)
            if sender.has_pending(sender.highest_sent):
                self._send_queue[stream_id] = None

    # -- control frames ---------------------------------------------------------------

    def pending_control_frames(self, now: float, rtt: float) -> list[ControlFrame]:
        """Every flow-control / stream-control frame due now.

        Call :meth:`on_control_sent` for each one put in a packet and
        :meth:`on_control_delivered` when that packet is acked or lost.
        """
        out: list[ControlFrame] = []
        limit = self.recv_credit.pending_max_data(now, rtt)
        if limit is not None:
            out.append(ControlFrame(FrameType.MAX_DATA, None, limit))
        limit = self.send_credit.pending_data_blocked()
        if limit is not None:
            out.append(ControlFrame(FrameType.DATA_BLOCKED, None, limit))
        for uni in (0, 1):
            if self._credit[uni].pending:
                frame_type = FrameType.MAX_STREAMS_UNI if uni else FrameType.MAX_STREAMS_BIDI
                out.append(ControlFrame(frame_type, None, self._credit[uni].limit))
            limit = self._streams_blocked[uni].pending()
            if limit is not None:
                kind = FrameType.STREAMS_BLOCKED_UNI if uni else FrameType.STREAMS_BLOCKED_BIDI
                out.append(ControlFrame(kind, None, limit))
        if self._control:
            self._stream_control_frames(now, rtt, out)
        return out

    def _stream_control_frames(self, now: float, rtt: float, out: list[ControlFrame]) -> None:
        for stream_id in list(self._control):
            stream = self._streams.get(stream_id)
            count = len(out)
            if stream is not None and stream.sender is not None:
                sender = stream.sender
                reset = sender.pending_reset()
                if reset is not None:
                    out.append(ControlFrame(FrameType.RESET_STREAM, stream_id, *reset))
                limit = sender.pending_data_blocked()
                if limit is not None:
                    out.append(ControlFrame(FrameType.STREAM_DATA_BLOCKED, stream_id, limit))
            if stream is not None and stream.receiver is not None:
                receiver = stream.receiver
                code = receiver.pending_stop_sending()
                if code is not None:
                    out.append(ControlFrame(FrameType.STOP_SENDING, stream_id, code))
                limit = receiver.pending_max_stream_data(now, rtt)
                if limit is not None:
                    out.append(ControlFrame(FrameType.MAX_STREAM_DATA, stream_id, limit))
                    # keep the connection window ahead of the stream windows
                    self.recv_credit.window.ensure_window(receiver.window * 3 // 2)
            if len(out) == count:
                del self._control[stream_id]

    def pending_max_streams(self, bidirectional: bool) -> int | None:
        """A MAX_STREAMS limit to advertise for one direction, or None."""
        uni = 0 if bidirectional else 1
        credit = self._credit[uni]
        return credit.limit if credit.pending else None

    def on_control_sent(self, frame: ControlFrame) -> None:
        """``frame`` (from :meth:`pending_control_frames`) was put in a packet."""
        kind, value = frame.frame_type, frame.value
        if kind == FrameType.MAX_DATA:
            self.recv_credit.on_max_data_sent(value)
        elif kind == FrameType.DATA_BLOCKED:
            self.send_credit.on_data_blocked_sent()
        elif kind in (FrameType.MAX_STREAMS_BIDI, FrameType.MAX_STREAMS_UNI):
            self._credit[kind - FrameType.MAX_STREAMS_BIDI].on_sent(value)
        elif kind in (FrameType.STREAMS_BLOCKED_BIDI, FrameType.STREAMS_BLOCKED_UNI):
            self._streams_blocked[kind - FrameType.STREAMS_BLOCKED_BIDI].on_sent()
        else:
            self._stream_control_sent(frame)

    def _stream_control_sent(self, frame: ControlFrame) -> None:
        stream = self._streams.get(frame.stream_id) if frame.stream_id is not None else None
        if stream is None:
            return
        kind = frame.frame_type
        if kind == FrameType.RESET_STREAM and stream.sender is not None:
            stream.sender.on_reset_sent()
        elif kind == FrameType.STREAM_DATA_BLOCKED and stream.sender is not None:
            stream.sender.on_data_blocked_sent()
        elif kind == FrameType.STOP_SENDING and stream.receiver is not None:
            stream.receiver.on_stop_sending_sent()
        elif kind == FrameType.MAX_STREAM_DATA and stream.receiver is not None:
            stream.receiver.on_max_stream_data_sent(frame.value)

    def on_control_delivered(self, frame: ControlFrame, delivered: bool) -> None:
        """The packet carrying ``frame`` was acked (True) or lost (False)."""
        kind, value = frame.frame_type, frame.value
        if kind == FrameType.MAX_DATA:
            self.recv_credit.on_max_data_delivered(value, delivered)
        elif kind == FrameType.DATA_BLOCKED:
            self.send_credit.on_data_blocked_delivered(value, delivered)
        elif kind in (FrameType.MAX_STREAMS_BIDI, FrameType.MAX_STREAMS_UNI):
            self._credit[kind - FrameType.MAX_STREAMS_BIDI].on_delivered(value, delivered)
        elif kind in (FrameType.STREAMS_BLOCKED_BIDI, FrameType.STREAMS_BLOCKED_UNI):
            uni = kind - FrameType.STREAMS_BLOCKED_BIDI
            limit = self._peer_max_streams[uni]
            blocked = self._next_index[self._local_bit | (uni << 1)] >= limit
            self._streams_blocked[uni].on_delivered(value, delivered, limit, blocked)
        elif frame.stream_id is not None:
            self._stream_control_delivered(frame, frame.stream_id, delivered)

    def _stream_control_delivered(
        self, frame: ControlFrame, stream_id: int, delivered: bool
    ) -> None:
        stream = self._streams.get(stream_id)
        if stream is None:
            return
        kind = frame.frame_type
        sender, receiver = stream.sender, stream.receiver
        if kind == FrameType.RESET_STREAM and sender is not None:
            sender.on_reset_delivered(delivered)
        elif kind == FrameType.STREAM_DATA_BLOCKED and sender is not None:
            sender.on_data_blocked_delivered(frame.value, delivered)
        elif kind == FrameType.STOP_SENDING and receiver is not None:
            receiver.on_stop_sending_delivered(delivered)
        elif kind == FrameType.MAX_STREAM_DATA and receiver is not None:
            receiver.on_max_stream_data_delivered(frame.value, delivered)
        if delivered:
            self._maybe_forget(stream_id)
        else:
            self._control[stream_id] = None

    # -- events and closing ------------------------------------------------------------

    def has_events(self) -> bool:
        """Cheap check: would :meth:`pop_events` return anything?"""
        return bool(
            self._ev_opened
            or self._ev_readable
            or self._ev_reset
            or self._ev_stop
            or self._ev_writable
            or True in self._ev_available
        )

    def pop_events(self) -> StreamEvents:
        """What happened since the last call (the connection turns it into events).

        Handing out a reset counts as telling the application about it
        ("App Read Reset", RFC 9000 §3.2).
        """
        reset = tuple(self._ev_reset.items())
        events = StreamEvents(
            opened=tuple(self._ev_opened),
            readable=tuple(self._ev_readable),
            reset=reset,
            stop_sending=tuple(self._ev_stop.items()),
            writable=tuple(self._ev_writable),
            bidi_streams_available=self._ev_available[0],
            uni_streams_available=self._ev_available[1],
        )
        self._ev_opened = []
        self._ev_readable.clear()
        self._ev_reset.clear()
        self._ev_stop.clear()
        self._ev_writable.clear()
        self._ev_available = [False, False]
        for stream_id, _code in reset:
            stream = self._streams.get(stream_id)
            if stream is not None and stream.receiver is not None:
                stream.receiver.acknowledge_reset()
                self._maybe_forget(stream_id)
        return events

    def _maybe_forget(self, stream_id: int) -> None:
        """Drop a stream whose both halves are terminal; return peer stream credit."""
        stream = self._streams.get(stream_id)
        if stream is None:
            return
        if not stream.is_finished:
            if stream_id & 1 != self._local_bit:  # a peer stream
                self._credit[(stream_id >> 1) & 1].credit_if_done(stream)
            return
        del self._streams[stream_id]
        self._send_queue.pop(stream_id, None)
        self._conn_blocked.pop(stream_id, None)
        self._control.pop(stream_id, None)
        if not self._is_local(stream_id):
            self._credit[(stream_id >> 1) & 1].on_forgotten(stream.credited)
        if self.on_retired is not None:
            self.on_retired(stream_id)


StreamSet = StreamManager
"""Alias: the name the architecture notes use."""
