"""The CRYPTO stream of one encryption level (RFC 9000 §19.6, RFC 9001 §4.1.3).

TLS handshake bytes travel in CRYPTO frames, which have offsets like STREAM
frames but no flow control and no FIN. The receive side reassembles frames
that arrive out of order and hands TLS the contiguous prefix; it buffers at
most ``max_buffer`` bytes ahead of what was delivered and answers a peer that
sends more with CRYPTO_BUFFER_EXCEEDED (RFC 9000 §7.5). The send side keeps
everything until it is acknowledged so lost ranges can be sent again, and
can mark all unacknowledged bytes for retransmission at once (a PTO probe,
or the restart after a Retry).
"""

from __future__ import annotations

from .errors import QuicProtocolError, TransportErrorCode
from .frames import FrameType
from .rangeset import RangeSet


class CryptoStream:
    """Both directions of the CRYPTO stream at one encryption level."""

    __slots__ = (
        "_acked",
        "_max_buffer",
        "_pending",
        "_received",
        "_recv_chunks",
        "_recv_offset",
        "_send_base",
        "_send_buffer",
    )

    def __init__(self, max_buffer: int = 128 * 1024) -> None:
        self._max_buffer = max_buffer
        # Receiving.
        self._recv_offset = 0  # everything below was handed to TLS
        self._recv_chunks: dict[int, bytes] = {}
        self._received = RangeSet()
        # Sending: _send_buffer holds bytes from offset _send_base on.
        self._send_base = 0
        self._send_buffer = bytearray()
        self._pending = RangeSet()  # [start, stop) ranges to (re)send
        self._acked = RangeSet()

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
        if offset < self._recv_offset:
            data = data[self._recv_offset - offset :]
            offset = self._recv_offset
        if offset > self._recv_offset:
            self._recv_chunks[offset] = data
            self._received.add(offset, end)
            return b""
        out = bytearray(data)
        self._recv_offset = end
        self._received.subtract(0, end)
        while self._recv_chunks:
            start = min(self._recv_chunks)
            if start > self._recv_offset:
                break
            chunk = self._recv_chunks.pop(start)
            chunk_end = start + len(chunk)
            if chunk_end > self._recv_offset:
                out += chunk[self._recv_offset - start :]
                self._recv_offset = chunk_end
        return bytes(out)

    # -- sending ---------------------------------------------------------

    def write(self, data: bytes) -> None:
        start = self._send_base + len(self._send_buffer)
        self._send_buffer += data
        self._pending.add(start, start + len(data))

    def has_pending(self) -> bool:
        return bool(self._pending)

    @property
    def received_offset(self) -> int:
        """Every byte below this offset was received (and handed to TLS)."""
        return self._recv_offset

    def has_unacked(self) -> bool:
        return bool(self._unacked_ranges())

    def next_frame(self, max_bytes: int) -> tuple[int, bytes] | None:
        """The next (offset, data) to send, at most ``max_bytes`` long."""
        if not self._pending or max_bytes <= 0:
            return None
        start, stop = next(iter(self._pending))
        stop = min(stop, start + max_bytes)
        self._pending.subtract(start, stop)
        lo = start - self._send_base
        return start, bytes(self._send_buffer[lo : lo + (stop - start)])

    def on_delivered(self, delivered: bool, offset: int, length: int) -> None:
        """Delivery handler for a CRYPTO frame: acked, or lost and to be resent."""
        stop = offset + length
        if delivered:
            self._acked.add(offset, stop)
            self._pending.subtract(offset, stop)
            self._trim_acked_prefix()
        else:
            for start, end in self._missing_in(offset, stop):
                self._pending.add(start, end)

    def requeue_unacked(self) -> None:
        """Mark every sent but unacknowledged byte for sending again."""
        for start, stop in self._unacked_ranges():
            self._pending.add(start, stop)

    def _unacked_ranges(self) -> list[tuple[int, int]]:
        return self._missing_in(self._send_base, self._send_base + len(self._send_buffer))

    def _missing_in(self, start: int, stop: int) -> list[tuple[int, int]]:
        """Sub-ranges of [start, stop) not yet acknowledged."""
        start = max(start, self._send_base)
        out: list[tuple[int, int]] = []
        cursor = start
        for a_start, a_stop in self._acked:
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

    def _trim_acked_prefix(self) -> None:
        for a_start, a_stop in self._acked:
            if a_start <= self._send_base < a_stop:
                drop = a_stop - self._send_base
                del self._send_buffer[:drop]
                self._send_base = a_stop
            break


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
# nothing of its own (two streams with their range sets are ~1.3 KB).
RELEASED_CRYPTO_STREAM: CryptoStream = _ReleasedCryptoStream()
