"""The receiving part of a stream (RFC 9000 §2.2, §3.2, §4), sans-IO.

Theory of operation
-------------------
Received bytes live in one ``bytearray`` that mirrors the stream from
``read_offset`` (what the application has read) onwards; a byte received at
offset ``o`` is stored at ``buf[o - read_offset]``. ``contiguous_offset``
is where the data received in order from offset 0 ends. Data arriving in
order (the common case) is appended and moves it, with no other
bookkeeping. Data beyond a gap is stored after zero-filled placeholders and
a :class:`RangeList` of "islands" (created only then) records which offsets
beyond ``contiguous_offset`` really arrived; filling the gap merges the
first island. Inserting a segment costs O(segment + log ranges) plus a list
splice, and reading is a copy of the bytes read plus an O(1) front
deletion. A peer may keep at most ``MAX_ISLANDS`` islands open per stream
(RFC 9000 §21.7): without a bound, tiny frames sent back to front would make
each splice O(islands) and the whole stream quadratic. The buffer never extends
past the flow-control limit we advertised, so its size is bounded by our
receive window (and all streams together by MAX_DATA).

Flow control: the limit we enforce and the window auto-tuning live in a
:class:`~ghostwire.quic.flow.ReceiveWindow`; credit comes back as the
application reads (``consumed``), and bytes discarded by a reset or after
STOP_SENDING count as consumed so connection credit is not leaked.

Validation order for every frame: final size (RFC 9000 §4.5), then flow
control (§4.1), then the data is stored or, in a discarding state, dropped.

Policy for the optional arrows of RFC 9000 Figure 3: a RESET_STREAM that
arrives once all data is in ("Data Recvd") is ignored, so the application
still gets the complete data; data completing a reset stream is ignored.
After :meth:`stop_sending`, nothing is delivered any more: the stream goes
straight to a terminal state when the FIN or the peer's RESET_STREAM
completes it (the application asked to stop, there is nobody to tell).
"""

from __future__ import annotations

from .errors import QuicProtocolError, TransportErrorCode
from .flow import DEFAULT_MAX_STREAM_WINDOW, ReceiveWindow
from .stream_ranges import RangeList, write_at
from .stream_states import (
    RECV_TERMINAL_STATES,
    RecvEvent,
    RecvState,
    recv_transition,
)

_R = RecvState
# Separate out-of-order ranges one stream may hold. Loss and reordering
# leave one per lost packet in the window, far fewer in practice; many
# more is a peer fragmenting on purpose (RFC 9000 §21.7).
MAX_ISLANDS = 1000
_OPEN = frozenset({_R.RECV, _R.SIZE_KNOWN})
_READABLE = frozenset({_R.RECV, _R.SIZE_KNOWN, _R.DATA_RECVD})
# Globals: enum member lookups are slow on CPython 3.11.
_RECV = _R.RECV
_SIZE_KNOWN = _R.SIZE_KNOWN
_DATA_RECVD = _R.DATA_RECVD
_DATA_READ = _R.DATA_READ
_RESET_RECVD = _R.RESET_RECVD


def _final_size_error(
    end: int, fin: bool, final_size: int | None, highest: int
) -> QuicProtocolError:
    """RFC 9000 §4.5: the final size never changes and bounds all data."""
    if final_size is None:
        reason = f"final size {end} below data already received ({highest})"
    elif end > final_size:
        reason = f"data up to {end} beyond final size {final_size}"
    else:
        reason = f"final size changed from {final_size} to {end}"
    return QuicProtocolError(TransportErrorCode.FINAL_SIZE_ERROR, reason)


class StreamReceiver:
    """Reassembly buffer and receive-side flow control for one stream."""

    __slots__ = (
        "_buf",
        "_flow",
        "_islands",
        "_read_offset",
        "_stop_pending",
        "contiguous_offset",
        "discarding",
        "final_size",
        "highest_received",
        "reset_error_code",
        "state",
        "stop_sending_code",
    )

    def __init__(
        self, initial_window: int = 0, max_window: int = DEFAULT_MAX_STREAM_WINDOW
    ) -> None:
        self.state = _RECV
        self.highest_received = 0
        # End of the data received in order from offset 0 (what a reader can
        # get up to); not maintained once the stream was reset.
        self.contiguous_offset = 0
        self.final_size: int | None = None
        self.reset_error_code: int | None = None
        self.stop_sending_code: int | None = None
        self._flow = ReceiveWindow(initial_window, max_window)
        self._buf = bytearray()
        self._read_offset = 0
        # Ranges received beyond ``contiguous_offset``; None while there are none.
        self._islands: RangeList | None = None
        self.discarding = False  # after stop_sending: drop incoming data
        self._stop_pending = False

    # -- incoming frames --------------------------------------------------------

    def handle_stream_frame(self, offset: int, data: bytes | memoryview, fin: bool) -> int:
        """Take a STREAM frame; returns the growth of ``highest_received``.

        Raises QuicProtocolError with FINAL_SIZE_ERROR or FLOW_CONTROL_ERROR.
        """
        end = offset + len(data)
        final_size = self.final_size
        # RFC 9000 §4.5: the final size never changes and bounds all data.
        if final_size is not None:
            if end > final_size or (fin and end != final_size):
                raise _final_size_error(end, fin, final_size, self.highest_received)
        elif fin and end < self.highest_received:
            raise _final_size_error(end, fin, final_size, self.highest_received)
        if end > self._flow.limit:  # RFC 9000 §4.1
            raise QuicProtocolError(
                TransportErrorCode.FLOW_CONTROL_ERROR,
                f"stream data up to {end} exceeds MAX_STREAM_DATA {self._flow.limit}",
            )
        growth = end - self.highest_received
        if growth > 0:
            self.highest_received = end
        else:
            growth = 0
        state = self.state
        if state is _RECV:
            if fin:  # Recv -> Size Known (RFC 9000 §3.2)
                self.final_size = end
                state = self.state = _SIZE_KNOWN
        elif state is not _SIZE_KNOWN:
            return growth  # complete, read or reset: late copies are ignored
        contiguous = self.contiguous_offset
        if end > contiguous:
            if offset <= contiguous and self._islands is None:
                # In order with nothing beyond: the buffer ends at ``contiguous``.
                if not self.discarding:
                    if offset == contiguous:
                        self._buf += data
                    else:
                        self._buf += memoryview(data)[contiguous - offset :]
                self.contiguous_offset = end
            else:
                self._receive_out_of_order(offset, data, end)
            if self.discarding:  # (only new data moves highest_received)
                self._flow.consumed = self.highest_received
        if state is _SIZE_KNOWN and self.contiguous_offset == self.final_size:
            self.state = _DATA_RECVD  # Size Known -> Data Recvd (RFC 9000 §3.2)
            self._islands = None
            if self.discarding:
                self._flow.consumed = self.highest_received
                self.state = recv_transition(self.state, RecvEvent.APP_READ_ALL_DATA)
        return growth

    def _receive_out_of_order(self, offset: int, data: bytes | memoryview, end: int) -> None:
        """Data beyond a gap, or filling one: store it, merge the islands."""
        if offset == end:
            return  # an empty frame (a FIN) beyond the gap
        islands = self._islands
        if islands is None:
            islands = self._islands = RangeList()
        if not self.discarding:
            self._store(offset, data)
        islands.add(offset, end)
        if len(islands) > MAX_ISLANDS:
            raise QuicProtocolError(
                TransportErrorCode.PROTOCOL_VIOLATION,
                f"stream data in more than {MAX_ISLANDS} separate pieces",
            )
        starts = islands.starts
        if starts[0] <= self.contiguous_offset:  # the gap is filled
            ends = islands.ends
            self.contiguous_offset = max(self.contiguous_offset, ends[0])
            del starts[0]
            del ends[0]
            if not starts:
                self._islands = None

    def _store(self, offset: int, data: bytes | memoryview) -> None:
        read_offset = self._read_offset
        if offset < read_offset:  # drop the already-read head
            data = memoryview(data)[read_offset - offset :]
            offset = read_offset
        write_at(self._buf, offset - read_offset, data)

    def handle_reset(self, error_code: int, final_size: int) -> int:
        """Take a RESET_STREAM (RFC 9000 §19.4); returns the growth of ``highest_received``.

        Raises FINAL_SIZE_ERROR on a final size conflict and FLOW_CONTROL_ERROR
        if the final size exceeds our limit.
        """
        if self.final_size is not None and final_size != self.final_size:
            raise QuicProtocolError(
                TransportErrorCode.FINAL_SIZE_ERROR,
                f"RESET_STREAM final size {final_size} != {self.final_size}",
            )
        if final_size < self.highest_received:
            raise QuicProtocolError(
                TransportErrorCode.FINAL_SIZE_ERROR,
                f"RESET_STREAM final size {final_size} below data received",
            )
        if final_size > self._flow.limit:
            raise QuicProtocolError(
                TransportErrorCode.FLOW_CONTROL_ERROR,
                f"RESET_STREAM final size {final_size} exceeds MAX_STREAM_DATA",
            )
        growth = final_size - self.highest_received
        self.highest_received = final_size
        self.final_size = final_size
        if self.state in _OPEN:
            self.state = recv_transition(self.state, RecvEvent.RECV_RESET)
            self.reset_error_code = error_code
            self._drop_buffer()
            # RFC 9000 §4.5: the whole final size counts as consumed.
            self._flow.consumed = final_size
            if self.discarding:
                self.state = recv_transition(self.state, RecvEvent.APP_READ_RESET)
        return growth

    # -- application side --------------------------------------------------------

    @property
    def readable_bytes(self) -> int:
        """Bytes :meth:`read` can return right now."""
        if self.discarding or self.state not in _READABLE:
            return 0
        return self.contiguous_offset - self._read_offset

    @property
    def read_offset(self) -> int:
        """Bytes the application has read."""
        return self._read_offset

    @property
    def consumed(self) -> int:
        """Bytes read or discarded: what connection flow control gets back."""
        return self._flow.consumed

    @property
    def at_eof(self) -> bool:
        """The FIN was reached and everything before it has been read."""
        return (
            self.state in (_DATA_RECVD, _DATA_READ)
            and not self.discarding
            and self._read_offset == self.final_size
        )

    @property
    def is_finished(self) -> bool:
        """Terminal state reached: Data Read or Reset Read."""
        return self.state in RECV_TERMINAL_STATES

    def read(self, max_bytes: int | None = None) -> bytes:
        """Up to ``max_bytes`` of in-order data (all that is available if None).

        Returns ``b""`` when nothing is available, at EOF (see
        :attr:`at_eof`) and after a reset (see :attr:`reset_error_code`;
        reading the reset counts as the application having been told).
        A read that returns ``b""`` at EOF is when the application has seen
        all the data ("Data Read"); only then can the stream be forgotten.
        """
        return self.read_or_eof(max_bytes) or b""

    def read_or_eof(self, max_bytes: int | None = None) -> bytes | None:
        """:meth:`read`, but ``None`` rather than ``b""`` when not at EOF
        (nothing available yet, or the reset was read): ``b""`` means
        :attr:`at_eof`. Data read is exactly what :attr:`consumed` grows by."""
        state = self.state
        read_offset = self._read_offset
        n = self.contiguous_offset - read_offset
        if max_bytes is not None and max_bytes < n:
            n = max(max_bytes, 0)
        if n and state in _READABLE and not self.discarding:
            buf = self._buf
            if n == len(buf):
                data = bytes(buf)
                buf.clear()
            else:
                data = bytes(memoryview(buf)[:n])
                del buf[:n]
            self._read_offset = read_offset = read_offset + n
            self._flow.consumed = read_offset
            return data
        if state is _DATA_RECVD:
            if read_offset != self.final_size:
                return None
            # "App Read All Data": the application has seen the EOF.
            self.state = _DATA_READ
            return b""
        if state is _RESET_RECVD:
            self.acknowledge_reset()
        elif state is _DATA_READ and not self.discarding and read_offset == self.final_size:
            return b""
        return None

    def acknowledge_reset(self) -> None:
        """The application has been told about the reset ("App Read Reset")."""
        if self.state is _RESET_RECVD:
            self.state = recv_transition(self.state, RecvEvent.APP_READ_RESET)

    def _drop_buffer(self) -> None:
        self._buf = bytearray()
        self._islands = None
        self._flow.cancel()

    # -- STOP_SENDING ----------------------------------------------------------------

    def stop_sending(self, error_code: int) -> None:
        """The application wants no more data: queue STOP_SENDING (RFC 9000 §3.5).

        Buffered and later data is discarded (still flow-control checked).
        If all data already arrived, there is nothing to stop: the buffered
        data is dropped and the stream is done.
        """
        state = self.state
        if state is _DATA_RECVD:
            self._drop_buffer()
            self._flow.consumed = self.highest_received
            self.state = recv_transition(state, RecvEvent.APP_READ_ALL_DATA)
            return
        if state not in _OPEN or self.discarding:
            return
        self.stop_sending_code = error_code
        self._stop_pending = True
        # From now on only ``contiguous_offset`` and the islands track what
        # arrived: enough to see the stream complete.
        self.discarding = True
        self._buf = bytearray()
        self._flow.cancel()
        self._flow.consumed = self.highest_received

    def pending_stop_sending(self) -> int | None:
        """Error code for a STOP_SENDING frame to send, or None.

        Only while the peer may still be sending (RFC 9000 §3.5: not once
        the stream was reset or all data arrived).
        """
        if self._stop_pending and self.state in _OPEN:
            return self.stop_sending_code
        return None

    def on_stop_sending_sent(self) -> None:
        self._stop_pending = False

    def on_stop_sending_delivered(self, delivered: bool) -> None:
        if not delivered and self.discarding and self.state in _OPEN:
            self._stop_pending = True

    # -- MAX_STREAM_DATA -----------------------------------------------------------------

    @property
    def max_stream_data(self) -> int:
        """The limit we enforce (the highest MAX_STREAM_DATA we advertised)."""
        return self._flow.limit

    @property
    def window(self) -> int:
        """The current (auto-tuned) receive window size."""
        return self._flow.window

    def wants_max_stream_data(self) -> bool:
        """Cheap check: would :meth:`pending_max_stream_data` return a limit?"""
        return self.state is _RECV and not self.discarding and self._flow.wants_update()

    def pending_max_stream_data(self, now: float, rtt: float) -> int | None:
        """A new MAX_STREAM_DATA limit to advertise, or None.

        Due once the application has consumed at least half the window past
        the last limit; the window doubles when it was consumed within ~2 RTTs
        (see :mod:`ghostwire.quic.flow`). Only in "Recv": once the final size
        is known the peer needs no more credit (RFC 9000 §3.2).
        """
        if self.state is not _RECV or self.discarding:
            return None
        return self._flow.pending(now, rtt)

    def on_max_stream_data_sent(self, limit: int) -> None:
        self._flow.on_sent(limit)

    def on_max_stream_data_delivered(self, limit: int, delivered: bool) -> None:
        """Lost -> re-arm, if ``limit`` is still the latest value."""
        if self.state is _RECV and not self.discarding:
            self._flow.on_delivered(limit, delivered)
