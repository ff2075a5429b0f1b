"""Frames over a QUIC stream: the reading half shared by server and client."""

from __future__ import annotations

from typing import Any

from .framing import FrameDecoder

RECEIVE_SIZE = 65536


class FrameReader:
    """Reads ``(type, payload)`` frames off a stream until its FIN.

    ``stream`` is any trio receive stream (a QUIC stream in practice).
    Framing errors and oversized messages raise their RpcError subclasses.
    """

    __slots__ = ("_decoder", "_eof", "stream")

    def __init__(self, stream: Any, max_message_size: int) -> None:
        self.stream = stream
        self._decoder = FrameDecoder(max_message_size)
        self._eof = False

    @property
    def at_eof(self) -> bool:
        return self._eof

    async def receive_frame(self) -> tuple[int, bytes] | None:
        """The next frame, or None at the end of the stream."""
        decoder = self._decoder
        while True:
            frame = decoder.next_frame()
            if frame is not None:
                return frame
            if self._eof:
                decoder.check_eof()
                return None
            data = await self.stream.receive_some(RECEIVE_SIZE)
            if data:
                decoder.feed(data)
            else:
                self._eof = True


async def wait_peer_abort(stream: Any) -> int | None:
    """Return once the peer reset ``stream`` or asked us to stop sending on it
    (with the error code it gave), or the connection closed (None).

    The QUIC trio API has no public "wait until the peer aborts" yet; this
    waits on the stream's wake-up lot and reads the codes its connection
    records (``_reset_code`` / ``_stop_code``), the least intrusive way to
    cancel a server handler at once when its caller goes away.
    """
    conn = stream.connection
    while True:
        code: int | None = stream._reset_code
        if code is None:
            code = stream._stop_code
        if code is not None or conn.is_closed:
            return code
        await stream._lot.park()
