"""The sending part of a stream (RFC 9000 §2.2, §3.1, §4), sans-IO.

Theory of operation
-------------------
Written bytes are appended to one ``bytearray`` that holds the stream from
``acked_offset`` (everything before it is acknowledged and freed) to the
write offset. Three offsets and two range sets describe the rest:

* ``highest_sent`` -- new data starts here; everything below it was sent at
  least once. The caller charges connection flow control with its growth.
* ``_lost`` -- ranges declared lost and not acked since: retransmitted first,
  at no flow-control cost (the credit was consumed the first time).
* ``_acked`` -- acknowledged ranges; its first range ``[0, acked_offset)`` is
  the freed prefix, later ranges are acks that arrived out of order.

The FIN is tracked separately (not written / pending / in flight / acked)
so a lost FIN is resent even when its data was acked by another copy.
``next_frame`` copies only the bytes of the frame it returns; dropping the
acked prefix uses ``del buf[:n]``, which CPython does in O(1) by moving the
bytearray's start.

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
_READY = SendState.READY  # a global: enum member lookups are slow on CPython 3.11
_RESET = frozenset({SendState.RESET_SENT, SendState.RESET_RECVD})

StreamFrameData = tuple[int, bytes, bool]
"""(offset, data, fin) of a STREAM frame to send."""


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
        self.state = SendState.READY
        self.max_stream_data = max_stream_data
        self.highest_sent = 0
        self.final_size: int | None = None
        self.reset_error_code: int | None = None
        self.stop_sending_error_code: int | None = None
        self._buf = bytearray()
        self._base = 0  # stream offset of _buf[0] == acked prefix
        self._write_end = 0
        self._acked = RangeList()
        self._lost = RangeList()
        self._fin = _FIN_NONE
        self._reset_pending = False
        self._blocked = BlockedSignal()

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
            self._buf += data
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
        self._buf = bytearray()
        self._lost.clear()
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
        return lost.starts[0] if lost.starts else self.highest_sent

    def has_pending(self, max_offset: int | None = None) -> bool:
        """Whether :meth:`next_frame` (with ``max_data`` > 0) would return a frame."""
        if self.state not in _ACTIVE:
            return False
        if self._lost.starts:
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
        if max_data > 0 and self._lost.starts:
            return self._next_retransmission(max_data)
        start = self.highest_sent
        limit = min(max_offset, self.max_stream_data, self._write_end)
        if start < limit and max_data > 0:
            end = min(limit, start + max_data)
            self.highest_sent = end
            if end == self.max_stream_data and end < self._write_end:
                self._blocked.block(end)  # RFC 9000 §4.1: ran into the stream limit
            return start, self._slice(start, end), self._take_fin(end)
        if start < self._write_end and start >= self.max_stream_data:
            self._blocked.block(self.max_stream_data)  # RFC 9000 §4.1
        if self._fin == _FIN_PENDING and start == self.final_size:
            return start, b"", self._take_fin(start)
        return None

    def _next_retransmission(self, max_data: int) -> StreamFrameData:
        lost = self._lost
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
        if self.state is SendState.SEND:
            self.state = send_transition(self.state, SendEvent.SEND_FIN)
        return True

    def _slice(self, start: int, end: int) -> bytes:
        base = self._base
        # One copy of just this frame's bytes; the temporary view is released
        # at once so the bytearray can still grow and shrink.
        return bytes(memoryview(self._buf)[start - base : end - base])

    # -- delivery ---------------------------------------------------------------

    def on_frame_delivered(self, offset: int, length: int, fin: bool, delivered: bool) -> None:
        """The packet carrying STREAM(offset, length, fin) was acked or lost."""
        if self.state not in _ACTIVE:
            return  # reset or finished: nothing to free or resend
        end = offset + length
        if delivered:
            if length:
                self._acked.add(offset, end)
                if self._lost.starts:
                    self._lost.subtract(offset, end)  # a spurious loss
            if fin:
                self._fin = _FIN_ACKED
            self._advance_acked()
            return
        if length:
            for start, stop in self._acked.gaps(offset, end):
                self._lost.add(start, stop)
        if fin and self._fin == _FIN_IN_FLIGHT:
            self._fin = _FIN_PENDING

    def _advance_acked(self) -> None:
        acked = self._acked
        base = self._base
        if acked.starts and acked.starts[0] <= base < acked.ends[0]:
            new_base = acked.ends[0]
            del self._buf[: new_base - base]
            self._base = new_base
        if self._fin == _FIN_ACKED and self._base == self.final_size:
            # RFC 9000 §3.1: "Recv All ACKs"
            self.state = send_transition(self.state, SendEvent.RECV_ALL_ACKS)
            self._buf = bytearray()
            self._acked.clear()
            self._lost.clear()

    # -- flow control ---------------------------------------------------------------

    def on_max_stream_data(self, maximum: int) -> bool:
        """A MAX_STREAM_DATA from the peer; True if the limit grew (RFC 9000 §19.10)."""
        if maximum <= self.max_stream_data:
            return False
        self.max_stream_data = maximum
        self._blocked.unblock()
        return True

    def pending_data_blocked(self) -> int | None:
        """The limit to put in a STREAM_DATA_BLOCKED frame (RFC 9000 §19.13), or None."""
        if self.state not in _ACTIVE:
            return None
        return self._blocked.pending()

    def on_data_blocked_sent(self) -> None:
        self._blocked.on_sent()
        if self.state is SendState.READY:
            self.state = send_transition(self.state, SendEvent.SEND_STREAM_DATA_BLOCKED)

    def on_data_blocked_delivered(self, limit: int, delivered: bool) -> None:
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
