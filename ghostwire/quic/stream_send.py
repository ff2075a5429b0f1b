"""The sending part of a stream (RFC 9000 §2.2, §3.1, §4), sans-IO.

Theory of operation
-------------------
Written bytes are kept in one buffer that holds the stream from
``acked_offset`` (everything before it is acknowledged and freed) to the
write offset: the caller's ``bytes`` object itself when it was written to an
empty buffer (a request written whole is never copied before it goes into a
packet), else a ``bytearray``. Three offsets and two range sets describe the
rest:

* ``highest_sent`` -- new data starts here; everything below it was sent at
  least once. The caller charges connection flow control with its growth.
* ``_lost`` -- ranges declared lost and not acked since: retransmitted first,
  at no flow-control cost (the credit was consumed the first time).
* ``_acked`` -- acknowledged ranges; its first range ``[0, acked_offset)`` is
  the freed prefix, later ranges are acks that arrived out of order.

Both range sets, and the STREAM_DATA_BLOCKED signal, exist only once needed
(None before): a stream whose frames are acknowledged in order never makes
one, and its ACKs just move ``acked_offset``.

The FIN is tracked separately (not written / pending / in flight / acked)
so a lost FIN is resent even when its data was acked by another copy.
``next_frame`` copies only the bytes of the frame it returns; dropping the
acked prefix uses ``del buf[:n]``, which CPython does in O(1) by moving the
bytearray's start. :meth:`StreamSender.pop_frame` is the stream manager's
one call per frame: the frame and what to do with the stream next.

State changes follow the table in :mod:`ghostwire.quic.stream_states`.
"""

from __future__ import annotations

from .flow import BlockedSignal
from .stream_ranges import RangeList
from .stream_states import (
    SEND_TERMINAL_STATES,
    SendEvent,
    SendState,
    StreamStateError,
    send_transition,
)

MAX_STREAM_OFFSET = (1 << 62) - 1  # RFC 9000 §4.5: offsets are varints

_FIN_NONE = 0  # not written
_FIN_PENDING = 1  # written, must be sent
_FIN_IN_FLIGHT = 2
_FIN_ACKED = 3

_ACTIVE = frozenset({SendState.READY, SendState.SEND, SendState.DATA_SENT})
# Globals: enum member lookups are slow on CPython 3.11.
_READY = SendState.READY
_SEND = SendState.SEND
_DATA_SENT = SendState.DATA_SENT
_DATA_RECVD = SendState.DATA_RECVD

# pop_frame's status bits: what the stream manager does with the stream next.
SEND_MORE = 1  # more can be sent now: keep it queued (at the back)
SEND_WANTS_CREDIT = 2  # new data waits for connection credit (RFC 9000 §4.1)
SEND_BLOCKED_SIGNAL = 4  # a STREAM_DATA_BLOCKED is due (RFC 9000 §4.1)
SEND_NO_ROOM = 8  # no frame: the room cannot hold one; leave the queue alone
# pop_frame results without a frame.
_NOTHING = (0, 0, None, False, 0)
# A message this small (its data and FIN, none sent yet) is never split across
# packets: with too little room left in one, it goes whole in the next. The
# peer then has each request whole as its packet arrives (the RPC server and
# ``serve_requests`` answer a whole request inline, without a task, while the
# datagram is processed); the cost is at most this many bytes of a packet.
UNSPLIT_MESSAGE = 256
_NO_ROOM = (SEND_NO_ROOM, 0, None, False, 0)
_RESET = frozenset({SendState.RESET_SENT, SendState.RESET_RECVD})

StreamFrameData = tuple[int, bytes, bool]
"""(offset, data, fin) of a STREAM frame to send."""

PoppedFrame = tuple[int, int, bytes | None, bool, int]
"""What :meth:`StreamSender.pop_frame` returns: ``(status, offset, data, fin,
new_bytes)``; ``data`` is None when there is no frame."""


def _offset_size(offset: int) -> int:
    """Bytes of a STREAM frame's Offset field (none at offset 0; RFC 9000 §19.8)."""
    if offset == 0:
        return 0
    if offset < 0x40:
        return 1
    if offset < 0x4000:
        return 2
    return 4 if offset < 0x40000000 else 8


class StreamSender:
    """Send buffer, retransmission and flow-control bookkeeping for one stream.

    ``max_stream_data`` is the peer's limit for this stream (initial
    transport parameter, then MAX_STREAM_DATA frames).
    """

    __slots__ = (
        "_acked",
        "_base",
        "_blocked",
        "_buf",
        "_fin",
        "_lost",
        "_reset_pending",
        "_write_end",
        "final_size",
        "highest_sent",
        "max_stream_data",
        "reset_error_code",
        "state",
        "stop_sending_error_code",
    )

    def __init__(self, max_stream_data: int = 0) -> None:
        self.state = _READY
        self.max_stream_data = max_stream_data
        self.highest_sent = 0
        self.final_size: int | None = None
        self.reset_error_code: int | None = None
        self.stop_sending_error_code: int | None = None
        self._buf: bytes | bytearray = b""
        self._base = 0  # stream offset of _buf[0] == acked prefix
        self._write_end = 0
        self._acked: RangeList | None = None  # None: nothing acked out of order
        self._lost: RangeList | None = None  # None: nothing lost since
        self._fin = _FIN_NONE
        self._reset_pending = False
        self._blocked: BlockedSignal | None = None  # None: never blocked

    # -- application side -------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview, end_stream: bool = False) -> None:
        """Append ``data`` (and the FIN if ``end_stream``) to the send buffer.

        Raises StreamStateError after a FIN was written or the stream reset.
        """
        if self._fin != _FIN_NONE or self.state not in _ACTIVE:
            raise StreamStateError(f"cannot write: stream is {self.state.value} / finished")
        n = len(data)
        if n:
            if self._write_end + n > MAX_STREAM_OFFSET:
                raise StreamStateError("stream offset would exceed 2^62-1")
            buf = self._buf
            if not buf:
                # Nothing buffered: keep the caller's (immutable) bytes as is.
                self._buf = data if type(data) is bytes else bytearray(data)
            else:
                if isinstance(buf, bytes):
                    buf = self._buf = bytearray(buf)
                buf += data
            self._write_end += n
        if end_stream:
            self._fin = _FIN_PENDING
            self.final_size = self._write_end

    def reset(self, error_code: int) -> bool:
        """Abandon the stream with RESET_STREAM (RFC 9000 §3.1, §19.4).

        No-op (returns False) if the stream already finished or was reset.
        """
        if self.state not in _ACTIVE:
            return False
        self.state = send_transition(self.state, SendEvent.SEND_RESET)
        # RFC 9000 §4.5: the final size is the flow credit consumed, i.e.
        # the largest offset sent, whatever was written beyond it.
        self.final_size = self.highest_sent
        self.reset_error_code = error_code
        self._reset_pending = True
        self._buf = b""
        self._lost = None
        if self._blocked is not None:
            self._blocked.unblock()
        return True

    @property
    def buffered_bytes(self) -> int:
        """Bytes written but not yet acknowledged (what the buffer holds)."""
        if self.state in _RESET:
            return 0
        return self._write_end - self._base

    @property
    def bytes_written(self) -> int:
        return self._write_end

    @property
    def acked_offset(self) -> int:
        """Everything before this offset is acknowledged."""
        return self._base

    @property
    def is_finished(self) -> bool:
        """Terminal state reached: Data Recvd or Reset Recvd."""
        return self.state in SEND_TERMINAL_STATES

    # -- what to send ----------------------------------------------------------

    def next_offset(self) -> int:
        """Offset of the frame :meth:`next_frame` would start with."""
        lost = self._lost
        return lost.starts[0] if lost is not None and lost.starts else self.highest_sent

    def has_pending(self, max_offset: int | None = None) -> bool:
        """Whether :meth:`next_frame` (with ``max_data`` > 0) would return a frame."""
        if self.state not in _ACTIVE:
            return False
        if self._lost is not None and self._lost.starts:
            return True
        limit = min(self.max_stream_data, self._write_end)
        if max_offset is not None and max_offset < limit:
            limit = max_offset
        if self.highest_sent < limit:
            return True
        return self._fin == _FIN_PENDING and self.highest_sent == self.final_size

    def wants_credit(self) -> bool:
        """New data is waiting that the stream limit allows but was not sent."""
        return self.state in _ACTIVE and self.highest_sent < min(
            self._write_end, self.max_stream_data
        )

    def next_frame(self, max_data: int, max_offset: int) -> StreamFrameData | None:
        """The next STREAM frame payload, as ``(offset, data, fin)``, or None.

        At most ``max_data`` bytes. Lost ranges go first (no flow-control
        cost); new data is bounded by both ``max_offset`` (the caller's cap,
        typically ``highest_sent`` + connection credit) and the peer's
        ``max_stream_data``. The growth of ``highest_sent`` is the new data
        to charge to connection flow control. A FIN with no data is a frame.
        """
        if self.state not in _ACTIVE:
            return None
        if max_data > 0 and self._lost is not None and self._lost.starts:
            return self._next_retransmission(max_data)
        start = self.highest_sent
        limit = min(max_offset, self.max_stream_data, self._write_end)
        if start < limit and max_data > 0:
            end = min(limit, start + max_data)
            self.highest_sent = end
            if end == self.max_stream_data and end < self._write_end:
                self._block(end)  # RFC 9000 §4.1: ran into the stream limit
            return start, self._slice(start, end), self._take_fin(end)
        if start < self._write_end and start >= self.max_stream_data:
            self._block(self.max_stream_data)  # RFC 9000 §4.1
        if self._fin == _FIN_PENDING and start == self.final_size:
            return start, b"", self._take_fin(start)
        return None

    def pop_frame(self, room: int, credit: int) -> PoppedFrame:
        """The stream manager's call per frame: the next frame whose Offset
        field and data fit in ``room`` bytes, with ``credit`` bytes of
        connection credit for new data, and what to do with the stream next.

        Returns ``(status, offset, data, fin, new_bytes)``: ``status`` is a
        combination of the ``SEND_*`` bits, ``data`` None when there is no
        frame, ``new_bytes`` the connection credit the frame used.
        """
        start = self.highest_sent
        end = self._write_end
        state = self.state
        buf = self._buf
        if (
            start == 0
            and self._fin == _FIN_PENDING
            and end <= room
            and end <= credit
            and end <= self.max_stream_data
            and type(buf) is bytes
            and self._lost is None
            and self._blocked is None
            and state is _READY
        ):
            # Fast path: a whole message and its FIN in one frame, the bytes
            # as written (RFC 9000 §3.1: "Send STREAM" and "Send STREAM + FIN",
            # Ready -> Send -> Data Sent).
            self.highest_sent = end
            self._fin = _FIN_IN_FLIGHT
            self.state = _DATA_SENT
            return 0, 0, buf, True, end
        return self._pop_frame_slow(room, credit)

    def _pop_frame_slow(self, room: int, credit: int) -> PoppedFrame:
        if self.state not in _ACTIVE:
            return _NOTHING
        end = self._write_end
        if (
            room < end <= UNSPLIT_MESSAGE
            and self.highest_sent == 0
            and self._fin == _FIN_PENDING
            and end <= credit
            and end <= self.max_stream_data
            and self._lost is None
        ):
            return _NO_ROOM  # a small whole message: in the next packet (UNSPLIT_MESSAGE)
        max_data = room - _offset_size(self.next_offset())
        if max_data < 1:
            return _NO_ROOM  # the packet is full
        before = self.highest_sent
        frame = self.next_frame(max_data, before + credit)
        new_bytes = self.highest_sent - before
        status = 0
        if self.has_pending(self.highest_sent + credit - new_bytes):
            status = SEND_MORE
        else:
            if self.wants_credit():
                status |= SEND_WANTS_CREDIT
            if self.pending_data_blocked() is not None:
                status |= SEND_BLOCKED_SIGNAL
        if frame is None:
            return status, 0, None, False, 0
        return status, frame[0], frame[1], frame[2], new_bytes

    def _block(self, limit: int) -> None:
        if self._blocked is None:
            self._blocked = BlockedSignal()
        self._blocked.block(limit)

    def _next_retransmission(self, max_data: int) -> StreamFrameData:
        lost = self._lost
        assert lost is not None
        start = lost.starts[0]
        end = lost.ends[0]
        if end - start > max_data:
            end = start + max_data
            lost.starts[0] = end
        else:
            del lost.starts[0], lost.ends[0]
        return start, self._slice(start, end), self._take_fin(end)

    def _take_fin(self, end: int) -> bool:
        """Whether a frame ending at ``end`` carries the FIN; updates the state."""
        if self.state is _READY:
            self.state = send_transition(self.state, SendEvent.SEND_STREAM)
        if self._fin != _FIN_PENDING or end != self.final_size:
            return False
        self._fin = _FIN_IN_FLIGHT
        if self.state is _SEND:
            self.state = send_transition(self.state, SendEvent.SEND_FIN)
        return True

    def _slice(self, start: int, end: int) -> bytes:
        base = self._base
        buf = self._buf
        if type(buf) is bytes:
            if start == base and end - base == len(buf):
                return buf  # the caller's bytes, whole: no copy
            return buf[start - base : end - base]
        # One copy of just this frame's bytes; the temporary view is released
        # at once so the bytearray can still grow and shrink.
        return bytes(memoryview(buf)[start - base : end - base])

    # -- delivery ---------------------------------------------------------------

    def on_frame_delivered(self, offset: int, length: int, fin: bool, delivered: bool) -> bool:
        """The packet carrying STREAM(offset, length, fin) was acked or lost.

        Returns True when an acknowledgement freed buffered bytes or finished
        the stream (Data Recvd).
        """
        if self.state not in _ACTIVE:
            return False  # reset or finished: nothing to free or resend
        end = offset + length
        if delivered:
            if length and self._lost is not None:
                self._lost.subtract(offset, end)  # a spurious loss
            base = self._base
            acked = self._acked
            if acked is None and offset <= base:
                # Acknowledged in order (the common case): the prefix grows.
                if fin:
                    # Through the FIN: everything is acknowledged. RFC 9000
                    # §3.1: "Recv All ACKs", Data Sent -> Data Recvd.
                    self._base = end
                    self._fin = _FIN_ACKED
                    self.state = _DATA_RECVD
                    self._buf = b""
                    self._lost = None
                    return True
                if end <= base:
                    return False
                self._free_to(end)
                if self._fin == _FIN_ACKED and self._base == self.final_size:
                    self._all_acked()  # the FIN was acknowledged first
                return True
            if length:
                if acked is None:
                    acked = self._acked = RangeList()
                    acked.add(0, base)
                acked.add(offset, end)
                self._advance_acked(acked)
            if fin:
                self._fin = _FIN_ACKED
            if self._fin == _FIN_ACKED and self._base == self.final_size:
                self._all_acked()
                return True
            return self._base != base
        if length:
            base = self._base
            if self._acked is not None:
                gaps = self._acked.gaps(offset, end)
            else:
                gaps = [(max(offset, base), end)] if end > base else []
            if gaps:
                lost = self._lost
                if lost is None:
                    lost = self._lost = RangeList()
                for start, stop in gaps:
                    lost.add(start, stop)
        if fin and self._fin == _FIN_IN_FLIGHT:
            self._fin = _FIN_PENDING
        return False

    def _all_acked(self) -> None:
        # RFC 9000 §3.1: "Recv All ACKs", Data Sent -> Data Recvd (the FIN was
        # sent, so the state is Data Sent).
        self.state = _DATA_RECVD
        self._buf = b""
        self._acked = None
        self._lost = None

    def _advance_acked(self, acked: RangeList) -> None:
        """Free the acknowledged prefix; forget the ranges once only it is left."""
        base = self._base
        if acked.starts[0] <= base < acked.ends[0]:
            self._free_to(acked.ends[0])
        if len(acked.starts) == 1 and acked.ends[0] == self._base:
            self._acked = None  # back to in-order acknowledgements

    def _free_to(self, new_base: int) -> None:
        """Drop the buffered bytes below ``new_base`` (acknowledged)."""
        buf = self._buf
        n = new_base - self._base
        if n >= len(buf):
            self._buf = b""
        else:
            if isinstance(buf, bytes):
                buf = self._buf = bytearray(buf)
            del buf[:n]
        self._base = new_base

    # -- flow control ---------------------------------------------------------------

    def on_max_stream_data(self, maximum: int) -> bool:
        """A MAX_STREAM_DATA from the peer; True if the limit grew (RFC 9000 §19.10)."""
        if maximum <= self.max_stream_data:
            return False
        self.max_stream_data = maximum
        if self._blocked is not None:
            self._blocked.unblock()
        return True

    def pending_data_blocked(self) -> int | None:
        """The limit to put in a STREAM_DATA_BLOCKED frame (RFC 9000 §19.13), or None."""
        if self.state not in _ACTIVE or self._blocked is None:
            return None
        return self._blocked.pending()

    def on_data_blocked_sent(self) -> None:
        if self._blocked is not None:
            self._blocked.on_sent()
        if self.state is _READY:
            self.state = send_transition(self.state, SendEvent.SEND_STREAM_DATA_BLOCKED)

    def on_data_blocked_delivered(self, limit: int, delivered: bool) -> None:
        if self._blocked is None:
            return
        blocked = self.state in _ACTIVE and self.highest_sent < self._write_end
        self._blocked.on_delivered(limit, delivered, self.max_stream_data, blocked)

    # -- reset and STOP_SENDING ---------------------------------------------------------

    def pending_reset(self) -> tuple[int, int] | None:
        """``(error_code, final_size)`` for a RESET_STREAM frame to send, or None."""
        if not self._reset_pending or self.reset_error_code is None or self.final_size is None:
            return None
        return self.reset_error_code, self.final_size

    def on_reset_sent(self) -> None:
        self._reset_pending = False

    def on_reset_delivered(self, delivered: bool) -> None:
        """The RESET_STREAM was acked (-> Reset Recvd) or lost (-> send again)."""
        if self.state is not SendState.RESET_SENT:
            return
        if delivered:
            self.state = send_transition(self.state, SendEvent.RECV_RESET_ACK)
        else:
            self._reset_pending = True

    def on_stop_sending(self, error_code: int) -> bool:
        """The peer sent STOP_SENDING: reset with its error code (RFC 9000 §3.5).

        Records ``stop_sending_error_code`` (the application must be told).
        Returns True if a RESET_STREAM was queued.
        """
        if self.stop_sending_error_code is None:
            self.stop_sending_error_code = error_code
        return self.reset(error_code)
