"""What a stream is, apart from the connection's set of them (RFC 9000 §2).

Stream ids (RFC 9000 §2.1), the per-stream record joining its sending and
receiving halves, the configuration :class:`~ghostwire.quic.streams.StreamManager`
reads, and the signal that the peer's stream limit is reached.
:mod:`ghostwire.quic.streams` re-exports every name.
"""

from __future__ import annotations

from typing import Protocol

from .stream_events import StreamStatistics
from .stream_recv import StreamReceiver
from .stream_send import StreamSender


def stream_is_client_initiated(stream_id: int) -> bool:
    """RFC 9000 §2.1: the least significant bit is 0 for client-initiated streams."""
    return not stream_id & 1


def stream_is_bidirectional(stream_id: int) -> bool:
    """RFC 9000 §2.1: the second least significant bit is 0 for bidirectional streams."""
    return not stream_id & 2


def stream_is_unidirectional(stream_id: int) -> bool:
    return bool(stream_id & 2)


class StreamLimitReached(Exception):
    """The peer's MAX_STREAMS does not allow another stream yet (a local condition).

    The trio layer waits for ``bidi/uni_streams_available`` in the events.
    """


class StreamConfig(Protocol):
    """The configuration fields :meth:`StreamManager.from_config` reads."""

    @property
    def initial_max_data(self) -> int: ...
    @property
    def initial_max_stream_data(self) -> int: ...
    @property
    def max_connection_window(self) -> int: ...
    @property
    def max_stream_window(self) -> int: ...
    @property
    def max_streams_bidi(self) -> int: ...
    @property
    def max_streams_uni(self) -> int: ...


class Stream:
    """One stream: its sending half and/or receiving half."""

    __slots__ = ("credited", "receiver", "sender", "stream_id")

    def __init__(
        self, stream_id: int, sender: StreamSender | None, receiver: StreamReceiver | None
    ) -> None:
        self.stream_id = stream_id
        self.sender = sender
        self.receiver = receiver
        # A peer stream whose stream credit was returned before it was
        # forgotten (see StreamManager._maybe_credit_early).
        self.credited = False

    @property
    def is_finished(self) -> bool:
        """Both halves reached a terminal state."""
        s, r = self.sender, self.receiver
        return (s is None or s.is_finished) and (r is None or r.is_finished)

    @property
    def statistics(self) -> StreamStatistics:
        s, r = self.sender, self.receiver
        return StreamStatistics(
            bytes_written=s.bytes_written if s else 0,
            bytes_sent=s.highest_sent if s else 0,
            bytes_acked=s.acked_offset if s else 0,
            bytes_buffered=s.buffered_bytes if s else 0,
            bytes_received=r.highest_received if r else 0,
            bytes_read=r.read_offset if r else 0,
        )

    def __repr__(self) -> str:
        s = self.sender.state.value if self.sender else "-"
        r = self.receiver.state.value if self.receiver else "-"
        return f"<Stream {self.stream_id} send={s} recv={r}>"
