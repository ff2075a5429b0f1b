"""Streams of one connection: ids, limits, scheduling and events (RFC 9000 §2-4).

Theory of operation
-------------------
:class:`StreamManager` owns every :class:`Stream` of a connection (each a
:class:`~ghostwire.quic.stream_send.StreamSender` and/or
:class:`~ghostwire.quic.stream_recv.StreamReceiver`) plus connection-level
flow control (:class:`~ghostwire.quic.flow.SendCredit`,
:class:`~ghostwire.quic.flow.ReceiveCredit`). The connection talks to the
manager only (its receiving side -- STREAM and RESET_STREAM frames, reads
-- is the :class:`~ghostwire.quic.stream_receiving.StreamReceiving` mixin);
every operation updates a few small ordered sets so nothing ever scans all
streams:

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
from .stream_receiving import StreamReceiving
from .stream_recv import StreamReceiver
from .stream_rewind import StreamRewindMixin
from .stream_send import (
    SEND_BLOCKED_SIGNAL,
    SEND_MORE,
    SEND_NO_ROOM,
    SEND_WANTS_CREDIT,
    StreamSender,
)
from .stream_states import RECV_TERMINAL_STATES, SendState, StreamStateError
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


_RECV_TERMINAL = RECV_TERMINAL_STATES  # a global: read per stream
_DATA_RECVD = SendState.DATA_RECVD


class StreamManager(StreamReceiving, StreamRewindMixin):
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
        # STREAMS_BLOCKED signals [bidi, uni], made when first blocked (two
        # signals in a list are ~170 B; a connection under its limits never is).
        self._streams_blocked: list[BlockedSignal] | None = None
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
        # The rarer ones are created on their first event (an idle connection
        # keeps none: ~80 B each).
        self._ev_reset: dict[int, int] | None = None
        self._ev_stop: dict[int, int] | None = None
        self._ev_writable: dict[int, None] | None = None
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

    def _blocked_signals(self) -> list[BlockedSignal]:
        """The STREAMS_BLOCKED signals [bidi, uni], made on first use."""
        signals = self._streams_blocked
        if signals is None:
            signals = self._streams_blocked = [BlockedSignal(), BlockedSignal()]
        return signals

    def _is_local(self, stream_id: int) -> bool:
        return (stream_id & 1) == self._local_bit

    def _send_limit(self, stream_id: int) -> int:
        if stream_id & 2:
            return self._send_uni
        return self._send_bidi_remote if self._is_local(stream_id) else self._send_bidi_local

    def _create(self, stream_id: int) -> Stream:
        # Per stream opened: the windows and limits picked inline (RFC 9000 §18.2).
        sender: StreamSender | None = None
        receiver: StreamReceiver | None = None
        if (stream_id & 1) == self._local_bit:
            if stream_id & 2:
                sender = StreamSender(self._send_uni)
            else:
                sender = StreamSender(self._send_bidi_remote)
                receiver = StreamReceiver(self._recv_bidi_local, self._max_stream_window)
        elif stream_id & 2:
            receiver = StreamReceiver(self._recv_uni, self._max_stream_window)
        else:
            sender = StreamSender(self._send_bidi_local)
            receiver = StreamReceiver(self._recv_bidi_remote, self._max_stream_window)
        stream = Stream(stream_id, sender, receiver)
        self._streams[stream_id] = stream
        return stream

    # -- opening and lookup -------------------------------------------------------

    def open_stream(self, bidirectional: bool) -> int:
        """Open the next locally-initiated stream and return its id.

        Raises StreamLimitReached when the peer's MAX_STREAMS is used up
        (and queues STREAMS_BLOCKED once for that limit, RFC 9000 §4.6).
        """
        stream_id = self.try_open_stream(bidirectional)
        if stream_id is None:
            limit = self._peer_max_streams[0 if bidirectional else 1]
            raise StreamLimitReached(
                f"peer allows {limit} {'bidirectional' if bidirectional else 'unidirectional'}"
                " streams"
            )
        return stream_id

    def try_open_stream(self, bidirectional: bool) -> int | None:
        """:meth:`open_stream` without the exception: None at the peer's limit
        (STREAMS_BLOCKED queued as there). For callers that wait for credit
        and try again: a raise and catch per try costs more than the open."""
        uni = 0 if bidirectional else 1
        stream_type = self._local_bit | (uni << 1)
        index = self._next_index[stream_type]
        limit = self._peer_max_streams[uni]
        if index >= limit:
            # RFC 9000 §4.6: STREAMS_BLOCKED, once per limit.
            self._blocked_signals()[uni].block(limit)
            return None
        self._next_index[stream_type] = index + 1
        stream_id = (index << 2) | stream_type
        self._create(stream_id)
        return stream_id

    def streams_available(self, bidirectional: bool) -> int:
        """How many more streams of a type the peer's MAX_STREAMS lets us open now."""
        uni = 0 if bidirectional else 1
        index = self._next_index[self._local_bit | (uni << 1)]
        available = self._peer_max_streams[uni] - index
        return available if available > 0 else 0  # (per call: no call to max())

    def get(self, stream_id: int) -> Stream | None:
        """The live stream with this id, or None (never opened, or closed and forgotten)."""
        return self._streams.get(stream_id)

    def was_opened(self, stream_id: int) -> bool:
        """Whether this stream was ever opened, by us or the peer (it may be forgotten since)."""
        return stream_id >= 0 and stream_id >> 2 < self._next_index[stream_id & 3]

    def opened_count(self, stream_type: int) -> int:
        """How many streams of this type (the id's two low bits) were opened so far."""
        return self._next_index[stream_type]

    def __len__(self) -> int:
        return len(self._streams)

    # -- incoming frames ---------------------------------------------------------------

    def on_stop_sending(self, stream_id: int, error_code: int) -> None:
        """A STOP_SENDING frame (RFC 9000 §19.5): reset our send side in reply (§3.5)."""
        stream = self.get_for_frame(stream_id, FrameType.STOP_SENDING)
        if stream is None or stream.sender is None:
            return
        sender = stream.sender
        if sender.stop_sending_error_code is None:
            if self._ev_stop is None:
                self._ev_stop = {}
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
            if self._streams_blocked is not None:
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
        if self._control or self._credit[0].pending or self._credit[1].pending:
            return True
        if self.recv_credit.window.wants_update():
            return True
        # A blocked signal is only ever pending at the limit (flow.BlockedSignal):
        # the attribute checks spare the calls while below it.
        credit = self.send_credit
        if credit.used >= credit.limit and credit.pending_data_blocked() is not None:
            return True
        signals = self._streams_blocked
        if signals is None:
            return False
        next_index, local = self._next_index, self._local_bit
        for uni in (0, 1):
            if next_index[local | (uni << 1)] >= self._peer_max_streams[uni]:
                if signals[uni].pending() is not None:
                    return True
        return False

    def has_max_streams_pending(self) -> bool:
        """Cheap check: is a MAX_STREAMS frame waiting to be sent?"""
        return self._credit[0].pending or self._credit[1].pending

    def has_stream_data(self) -> bool:
        """Cheap check: may :meth:`next_stream_frame` return a frame?"""
        return bool(self._send_queue)

    def next_stream_frame(self, max_frame_size: int) -> OutgoingStreamFrame | None:
        """The next STREAM frame, picking streams round-robin, or None (nothing
        fits or is sendable). ``max_frame_size`` bounds the whole frame. New data
        is charged to connection credit here; retransmitted data is free."""
        queue = self._send_queue
        credit = self.send_credit
        streams = self._streams
        # RFC 9000 §19.8: type, Stream ID and Length (sized for the whole room).
        length_size = 1 if max_frame_size < 0x40 else 2 if max_frame_size < 0x4000 else 4
        while queue:
            for stream_id in queue:  # noqa: B007 -- the head, without next(iter())
                break
            stream = streams.get(stream_id)
            if stream is None or stream.sender is None:
                del queue[stream_id]
                continue
            sender = stream.sender
            id_size = 1 if stream_id < 0x40 else 2 if stream_id < 0x4000 else varint_size(stream_id)
            status, offset, data, fin, new_bytes = sender.pop_frame(
                max_frame_size - 1 - id_size - length_size, credit.limit - credit.used
            )
            if status & SEND_NO_ROOM:
                return None  # the packet is full
            del queue[stream_id]
            if new_bytes:
                credit.used += new_bytes  # at most the credit pop_frame was given
            if status & SEND_MORE:
                queue[stream_id] = None  # to the back: round-robin
            elif status:
                self._park(stream_id, status)
            if data is None:
                continue
            if fin and stream_id & 1 != self._local_bit:
                self._credit[0].credit_if_done(stream)  # the FIN went: all sent once
            # tuple.__new__ rather than the class: no Python-level __new__ per frame.
            return tuple.__new__(OutgoingStreamFrame, (stream_id, offset, data, fin))
        return None

    def _park(self, stream_id: int, status: int) -> None:
        """A stream left the queue waiting for credit or a STREAM_DATA_BLOCKED to send."""
        if status & SEND_WANTS_CREDIT:
            self._conn_blocked[stream_id] = None
            self.send_credit.note_blocked()
        if status & SEND_BLOCKED_SIGNAL:
            self._control[stream_id] = None

    def on_stream_frame_delivered(
        self, stream_id: int, offset: int, length: int, fin: bool, delivered: bool
    ) -> None:
        """The packet carrying a STREAM frame was acked (True) or lost (False)."""
        self.on_stream_frames_delivered(delivered, [(stream_id, offset, length, fin)])

    def on_stream_frames_delivered(
        self, delivered: bool, frames: list[tuple[int, int, int, bool]]
    ) -> None:
        """The packet carrying these STREAM frames (``(stream_id, offset, length,
        fin)`` each) was acked or lost: the writer's one handler per packet."""
        streams = self._streams
        for stream_id, offset, length, fin in frames:
            stream = streams.get(stream_id)
            sender = stream.sender if stream is not None else None
            if sender is None:
                continue  # forgotten: nothing left to do for it
            if delivered:
                if sender.on_frame_delivered(offset, length, fin, True):
                    # The buffer shrank or all is acknowledged: whoever waits for
                    # the data to be delivered (the HTTP/3 drain) hears of it.
                    writable = self._ev_writable
                    if writable is None:
                        writable = self._ev_writable = {}
                    writable[stream_id] = None
                    if sender.state is _DATA_RECVD:
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
            signals = self._streams_blocked
            limit = signals[uni].pending() if signals is not None else None
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
            self._blocked_signals()[kind - FrameType.STREAMS_BLOCKED_BIDI].on_sent()
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
            self._blocked_signals()[uni].on_delivered(value, delivered, limit, blocked)
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
        reset = tuple(self._ev_reset.items()) if self._ev_reset else ()
        events = StreamEvents(
            opened=tuple(self._ev_opened),
            readable=tuple(self._ev_readable),
            reset=reset,
            stop_sending=tuple(self._ev_stop.items()) if self._ev_stop else (),
            writable=tuple(self._ev_writable) if self._ev_writable else (),
            bidi_streams_available=self._ev_available[0],
            uni_streams_available=self._ev_available[1],
        )
        self._ev_opened = []
        self._ev_readable.clear()
        self._ev_reset = self._ev_stop = self._ev_writable = None
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
        sender, receiver = stream.sender, stream.receiver
        if receiver is not None and receiver.state not in _RECV_TERMINAL:
            return  # (and no credit to return early: that needs the receiving half done)
        if sender is not None and not sender.is_finished:
            if stream_id & 1 != self._local_bit and not stream.credited:  # a peer stream
                self._credit[(stream_id >> 1) & 1].credit_if_done(stream)
            return
        del self._streams[stream_id]
        if stream_id in self._send_queue:
            del self._send_queue[stream_id]
        if stream_id in self._conn_blocked:
            del self._conn_blocked[stream_id]
        if stream_id in self._control:
            del self._control[stream_id]
        if stream_id & 1 != self._local_bit:
            self._credit[(stream_id >> 1) & 1].on_forgotten(stream.credited)
        if self.on_retired is not None:
            self.on_retired(stream_id)


StreamSet = StreamManager
"""Alias: the name the architecture notes use."""
