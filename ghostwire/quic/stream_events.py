"""Plain values the stream manager hands to the connection.

Theory of operation: the stream layer never builds frames. It answers
"what should be sent" with these small immutable values, carrying the frame
type numbers of RFC 9000 §19 so the connection can encode them directly,
and "what happened" with a :class:`StreamEvents` batch the connection turns
into application events.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from .frames import FrameType


class OutgoingStreamFrame(NamedTuple):
    """A STREAM frame to send (RFC 9000 §19.8)."""

    stream_id: int
    offset: int
    data: bytes
    fin: bool


class ControlFrame(NamedTuple):
    """A flow-control or stream-control frame to send.

    ``value`` is the limit (MAX_*, *_BLOCKED) or the application error code
    (RESET_STREAM, STOP_SENDING). ``stream_id`` is None for connection-level
    frames; ``final_size`` is only meaningful for RESET_STREAM.
    """

    frame_type: FrameType
    stream_id: int | None
    value: int
    final_size: int = 0


@dataclass(frozen=True, slots=True)
class StreamEvents:
    """What changed since the last :meth:`StreamManager.pop_events`.

    * ``opened`` -- peer-initiated streams that now exist, in id order
      (including those opened implicitly by a higher id, RFC 9000 §3.2).
    * ``readable`` -- streams with new in-order data or a newly reached EOF.
    * ``reset`` -- ``(stream_id, error_code)`` for each RESET_STREAM received.
    * ``stop_sending`` -- ``(stream_id, error_code)`` for each STOP_SENDING
      received (the send side has been reset in reply).
    * ``writable`` -- streams whose send buffer shrank (data acknowledged).
    * ``bidi_streams_available`` / ``uni_streams_available`` -- the peer
      raised MAX_STREAMS: :meth:`StreamManager.open_stream` may succeed again.
    """

    opened: tuple[int, ...] = ()
    readable: tuple[int, ...] = ()
    reset: tuple[tuple[int, int], ...] = ()
    stop_sending: tuple[tuple[int, int], ...] = ()
    writable: tuple[int, ...] = ()
    bidi_streams_available: bool = False
    uni_streams_available: bool = False

    def __bool__(self) -> bool:
        return bool(
            self.opened
            or self.readable
            or self.reset
            or self.stop_sending
            or self.writable
            or self.bidi_streams_available
            or self.uni_streams_available
        )


@dataclass(frozen=True, slots=True)
class StreamStatistics:
    """Byte counters of one stream (zero for a direction it does not have)."""

    bytes_written: int = 0  # handed to the send side by the application
    bytes_sent: int = 0  # highest offset sent
    bytes_acked: int = 0  # acknowledged prefix
    bytes_buffered: int = 0  # written, not yet acknowledged
    bytes_received: int = 0  # highest offset received
    bytes_read: int = 0  # read by the application
