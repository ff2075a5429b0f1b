"""The CRYPTO stream of one encryption level (RFC 9000 §19.6, RFC 9001 §4.1.3).

TLS handshake bytes travel in CRYPTO frames, which have offsets like STREAM
frames but no flow control and no FIN. The receive side reassembles frames
that arrive out of order and hands TLS the contiguous prefix; it buffers at
most ``max_buffer`` bytes ahead of what was delivered and answers a peer that
sends more with CRYPTO_BUFFER_EXCEEDED (RFC 9000 §7.5). Reassembly costs
O(frame + log gaps): the data waits in one buffer mirroring the stream past
the gap, its ranges in a :class:`RangeList` of at most ``MAX_GAPS`` entries
(RFC 9000 §21.7: a peer sending many tiny frames out of order must not cost
us time or memory beyond what it sends). The send side keeps
everything until it is acknowledged so lost ranges can be sent again, and
can mark all unacknowledged bytes for retransmission at once (a PTO probe,
or the restart after a Retry).
"""

from __future__ import annotations

from .errors import QuicProtocolError, TransportErrorCode
from .frames import FrameType
from .rangeset import RangeSet
from .stream_ranges import RangeList, write_at

# Separate out-of-order ranges a CRYPTO stream holds at most. A handshake
# flight is a few packets, so even heavy reordering leaves a handful; more
# is a peer fragmenting on purpose (RFC 9000 §21.7).
MAX_GAPS = 256


class _Reassembly:
    """Received bytes past a gap: ``buf[i]`` is the byte at ``base + i``
    (zeros where nothing arrived); ``ranges`` says which really did."""

    __slots__ = ("buf", "ranges")

    def __init__(self) -> None:
        self.buf = bytearray()
        self.ranges = RangeList()


class _SendState:
    """What the send side keeps while some of its bytes are unacknowledged."""

    __slots__ = ("acked", "buffer", "pending")

    def __init__(self) -> None:
        self.buffer = bytearray()  # bytes from the stream's _send_base on
        self.pending = RangeSet()  # [start, stop) ranges to (re)send
        self.acked = RangeSet()


class CryptoStream:
    """Both directions of the CRYPTO stream at one encryption level.

    An idle stream holds two offsets and nothing else: the out-of-order
    chunks exist only while a gap is open, the send state only while some
    written bytes are unacknowledged (a server's 1-RTT stream carries its
    session tickets, then nothing for the connection's lifetime).
    """

    __slots__ = ("_max_buffer", "_recv_gaps", "_recv_offset", "_send", "_send_base")

    def __init__(self, max_buffer: int = 128 * 1024) -> None:
        self._max_buffer = max_buffer
        # Receiving: everything below _recv_offset was handed to TLS; later
        # bytes wait here (from _recv_offset on) for the gap to close.
        self._recv_offset = 0
        self._recv_gaps: _Reassembly | None = None
        # Sending: _send.buffer holds bytes from offset _send_base on.
        self._send_base = 0
        self._send: _SendState | None = None

    # -- receiving -------------------------------------------------------

    def receive(self, offset: int, data: bytes) -> bytes:
        """Accept a CRYPTO frame; return newly contiguous bytes (maybe b"")."""
        end = offset + len(data)
        if end <= self._recv_offset or not data:
            return b""
        if end - self._recv_offset > self._max_buffer:
            raise QuicProtocolError(
                TransportErrorCode.CRYPTO_BUFFER_EXCEEDED,
                "too much out-of-order CRYPTO data",
                FrameType.CRYPTO,
            )
        base = self._recv_offset
        if offset < base:
            data = data[base - offset :]
            offset = base
        gaps = self._recv_gaps
        if gaps is None:
            if offset == base:  # in order, nothing waiting: the common case
                self._recv_offset = end
                return bytes(data)
            gaps = self._recv_gaps = _Reassembly()
        write_at(gaps.buf, offset - base, data)
        ranges = gaps.ranges
        ranges.add(offset, end)
        if len(ranges) > MAX_GAPS:
            raise QuicProtocolError(
                TransportErrorCode.CRYPTO_BUFFER_EXCEEDED,
                f"CRYPTO data in more than {MAX_GAPS} separate pieces",
                FrameType.CRYPTO,
            )
        if ranges.starts[0] > base:
            return b""  # the gap is still open
        # The first range starts at ``base``: hand it over, keep the rest.
        ready = ranges.ends[0] - base
        out = bytes(gaps.buf[:ready])
        del gaps.buf[:ready]
        del ranges.starts[0], ranges.ends[0]
        self._recv_offset = base + ready
        if not ranges:
            self._recv_gaps = None
        return out

    # -- sending ---------------------------------------------------------

    def write(self, data: bytes) -> None:
        if not data:
            return
        send = self._send
        if send is None:
            send = self._send = _SendState()
        start = self._send_base + len(send.buffer)
        send.buffer += data
        send.pending.add(start, start + len(data))

    def has_pending(self) -> bool:
        return self._send is not None and bool(self._send.pending)

    @property
    def received_offset(self) -> int:
        """Every byte below this offset was received (and handed to TLS)."""
        return self._recv_offset

    def has_unacked(self) -> bool:
        send = self._send  # released once everything is acknowledged
        return send is not None and bool(send.buffer)

    def next_frame(self, max_bytes: int) -> tuple[int, bytes] | None:
        """The next (offset, data) to send, at most ``max_bytes`` long."""
        send = self._send
        if send is None or not send.pending or max_bytes <= 0:
            return None
        start, stop = next(iter(send.pending))
        stop = min(stop, start + max_bytes)
        send.pending.subtract(start, stop)
        lo = start - self._send_base
        return start, bytes(send.buffer[lo : lo + (stop - start)])

    def on_delivered(self, delivered: bool, offset: int, length: int) -> None:
        """Delivery handler for a CRYPTO frame: acked, or lost and to be resent."""
        send = self._send
        if send is None:
            return  # everything was acknowledged already (this was a repeat)
        stop = offset + length
        if delivered:
            send.acked.add(offset, stop)
            send.pending.subtract(offset, stop)
            self._trim_acked_prefix(send)
        else:
            for start, end in self._missing_in(send, offset, stop):
                send.pending.add(start, end)

    def requeue_unacked(self) -> None:
        """Mark every sent but unacknowledged byte for sending again."""
        send = self._send
        if send is None:
            return
        for start, stop in self._missing_in(
            send, self._send_base, self._send_base + len(send.buffer)
        ):
            send.pending.add(start, stop)

    def _missing_in(self, send: _SendState, start: int, stop: int) -> list[tuple[int, int]]:
        """Sub-ranges of [start, stop) not yet acknowledged."""
        start = max(start, self._send_base)
        out: list[tuple[int, int]] = []
        cursor = start
        for a_start, a_stop in send.acked:
            if a_stop <= cursor:
                continue
            if a_start >= stop:
                break
            if a_start > cursor:
                out.append((cursor, a_start))
            cursor = max(cursor, a_stop)
        if cursor < stop:
            out.append((cursor, stop))
        return out

    def _trim_acked_prefix(self, send: _SendState) -> None:
        for a_start, a_stop in send.acked:
            if a_start <= self._send_base < a_stop:
                drop = a_stop - self._send_base
                del send.buffer[:drop]
                self._send_base = a_stop
            break
        if not send.buffer and not send.pending:
            self._send = None  # all acknowledged: an idle stream keeps no containers


class _ReleasedCryptoStream(CryptoStream):
    """The CRYPTO stream of a discarded level (RFC 9001 §4.9): nothing more is
    sent there, and a CRYPTO frame still read at that level (later in the
    packet whose processing discarded it) counts as already received. One
    instance stands in for every connection's, so nothing may change it."""

    __slots__ = ()

    @property
    def received_offset(self) -> int:
        return 1 << 62  # above any CRYPTO offset (RFC 9000 §19.6)

    def receive(self, offset: int, data: bytes) -> bytes:
        return b""

    def write(self, data: bytes) -> None:
        raise RuntimeError("CRYPTO data written at a discarded encryption level")

    def on_delivered(self, delivered: bool, offset: int, length: int) -> None:
        return None

    def requeue_unacked(self) -> None:
        return None


# What an idle connection keeps of its Initial and Handshake CRYPTO streams:
# nothing of its own (two streams as they were after the handshake, with their
# buffers and range sets, were ~1.3 KB).
RELEASED_CRYPTO_STREAM: CryptoStream = _ReleasedCryptoStream()
