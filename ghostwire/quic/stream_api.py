"""The application's side of streams, for :class:`~ghostwire.quic.connection.QuicConnection`.

Open, write, read, reset and stop streams by id; the state lives in the
connection's :class:`~ghostwire.quic.streams.StreamSet`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .stream_states import StreamStateError

if TYPE_CHECKING:
    from .streams import StreamSet


class StreamApiMixin:
    """Stream methods of :class:`~ghostwire.quic.connection.QuicConnection`."""

    if TYPE_CHECKING:
        streams: StreamSet

        @property
        def is_closed(self) -> bool: ...

    def open_stream(self, bidirectional: bool = True) -> int:
        """Open a stream; raises StreamLimitReached at the peer's MAX_STREAMS."""
        if self.is_closed:
            raise StreamStateError("the connection is closed")
        return self.streams.open_stream(bidirectional)

    def try_open_stream(self, bidirectional: bool = True) -> int | None:
        """:meth:`open_stream`, but None (no exception) at the peer's MAX_STREAMS."""
        if self.is_closed:
            raise StreamStateError("the connection is closed")
        return self.streams.try_open_stream(bidirectional)

    def send_stream_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        """Queue data (and optionally the FIN) on a stream."""
        if self.is_closed:
            raise StreamStateError("the connection is closed")
        self.streams.write(stream_id, data, end_stream)

    def stream_send_buffered(self, stream_id: int) -> int:
        """Bytes written to a stream and not yet acknowledged (0 once finished)."""
        stream = self.streams.get(stream_id)
        if stream is None or stream.sender is None:
            return 0
        return stream.sender.buffered_bytes

    def read_stream(self, stream_id: int, max_bytes: int | None = None) -> bytes:
        """In-order data from a stream; b"" when none is available or the stream is over."""
        stream = self.streams.get(stream_id)
        if stream is None or stream.receiver is None:
            return b""
        return self.streams.read(stream_id, max_bytes)

    def stream_at_eof(self, stream_id: int) -> bool:
        """Whether all of a stream's data up to its FIN has been read.

        Raises :class:`StreamStateError` for a stream never opened, as reading it would.
        """
        stream = self.streams.get(stream_id)
        if stream is None:
            if not self.streams.was_opened(stream_id):
                raise StreamStateError(f"stream {stream_id} is not open")
            return True  # finished and forgotten
        receiver = stream.receiver
        if receiver is None or not receiver.at_eof:
            return False
        self.streams.read(stream_id)  # reading at EOF completes the stream (Data Read)
        return True

    def reset_stream(self, stream_id: int, error_code: int) -> None:
        """Abandon a stream's send side (RESET_STREAM); no-op once it is finished."""
        stream = self.streams.get(stream_id)
        if stream is not None and stream.sender is not None and not self.is_closed:
            self.streams.reset_stream(stream_id, error_code)

    def stop_sending(self, stream_id: int, error_code: int) -> None:
        """Ask the peer to stop sending on a stream (STOP_SENDING)."""
        stream = self.streams.get(stream_id)
        if stream is not None and stream.receiver is not None and not self.is_closed:
            self.streams.stop_sending(stream_id, error_code)
