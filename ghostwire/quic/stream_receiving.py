"""The receiving side of :class:`~ghostwire.quic.streams.StreamManager` (RFC 9000 §2-4).

A mixin: the frames that carry a peer's stream data (STREAM, RESET_STREAM),
the lookup that opens the peer's streams as their frames arrive, and the
application's reads, which return flow-control credit. Per request these
run once or twice each, so the common case -- an in-order STREAM frame on a
stream we hold, a read that takes everything -- is a dictionary lookup and
one call into the :class:`~ghostwire.quic.stream_recv.StreamReceiver`. The
state it works on is the manager's; the names it uses are declared below
for the type checker.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import QuicProtocolError, TransportErrorCode
from .frames import FrameType
from .stream_states import RECV_TERMINAL_STATES, RecvState, StreamStateError

if TYPE_CHECKING:
    from .flow import ReceiveCredit
    from .stream_credit import StreamCreditReturn
    from .stream_types import Stream

_STREAM_TYPES = frozenset(range(0x08, 0x10))
# Globals: enum member lookups are slow on CPython 3.11.
_STREAM = FrameType.STREAM
_RECV = RecvState.RECV
_RESET_RECVD = RecvState.RESET_RECVD
_RECV_TERMINAL = RECV_TERMINAL_STATES
# RFC 9000 §19.8, §19.4, §19.13: frames only the sender of a stream sends.
_FROM_SENDER = frozenset({FrameType.STREAM, FrameType.RESET_STREAM, FrameType.STREAM_DATA_BLOCKED})
# RFC 9000 §19.10, §19.5: frames only the receiver of a stream sends.
_FROM_RECEIVER = frozenset({FrameType.MAX_STREAM_DATA, FrameType.STOP_SENDING})


class StreamReceiving:
    """Incoming stream data and reads, for :class:`~ghostwire.quic.streams.StreamManager`."""

    if TYPE_CHECKING:
        _streams: dict[int, Stream]
        _local_bit: int
        _next_index: list[int]
        _credit: tuple[StreamCreditReturn, StreamCreditReturn]
        _control: dict[int, None]
        _ev_opened: list[int]
        _ev_readable: dict[int, None]
        _ev_reset: dict[int, int] | None
        recv_credit: ReceiveCredit

        def _create(self, stream_id: int) -> Stream: ...
        def _live(self, stream_id: int) -> Stream: ...
        def _maybe_forget(self, stream_id: int) -> None: ...

    # -- lookup and incoming frames ----------------------------------------------------

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

    def on_stream_frame(
        self,
        stream_id: int,
        offset: int,
        data: bytes | memoryview,
        fin: bool,
        frame_type: int = _STREAM,
    ) -> None:
        """A STREAM frame (RFC 9000 §19.8); charges connection flow control."""
        stream = self._streams.get(stream_id)
        if stream is None:  # new (opened here), forgotten or invalid
            stream = self.get_for_frame(stream_id, frame_type)
            if stream is None:
                return
        receiver = stream.receiver
        if receiver is None:  # only our unidirectional streams have no receiving part
            raise QuicProtocolError(
                TransportErrorCode.STREAM_STATE_ERROR,
                f"frame on our send-only stream {stream_id}",
                frame_type,
            )
        contiguous = receiver.contiguous_offset
        state = receiver.state
        discarding = receiver.discarding
        consumed = receiver.consumed if discarding else 0
        try:
            growth = receiver.handle_stream_frame(offset, data, fin)
            if growth:
                self.recv_credit.on_data(growth)
        except QuicProtocolError as exc:
            exc.frame_type = frame_type
            raise
        if discarding and receiver.consumed != consumed:  # only discarding consumes here
            self.recv_credit.on_consumed(receiver.consumed - consumed)
        if receiver.state in _RECV_TERMINAL:
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
        if receiver.state is _RESET_RECVD and state is not _RESET_RECVD:
            if self._ev_reset is None:
                self._ev_reset = {}
            self._ev_reset[stream_id] = error_code
            self._ev_readable.pop(stream_id, None)
        self._maybe_forget(stream_id)

    # -- application side ------------------------------------------------------------

    def read(self, stream_id: int, max_bytes: int | None = None) -> bytes:
        """Read in-order data; returns flow-control credit as it goes."""
        receiver = self._live(stream_id).receiver
        if receiver is None:
            raise StreamStateError(f"stream {stream_id} is send-only")
        return self.read_or_eof(stream_id, max_bytes) or b""

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
        data = receiver.read_or_eof(max_bytes)
        if data:
            # What a read returns is what it consumed (RFC 9000 §4.1: credit
            # comes back as the application reads).
            self.recv_credit.window.consumed += len(data)
            if receiver.state is _RECV and receiver.wants_max_stream_data():
                self._control[stream_id] = None
        elif receiver.state in _RECV_TERMINAL:  # the EOF or the reset was read
            self._maybe_forget(stream_id)
        return data
