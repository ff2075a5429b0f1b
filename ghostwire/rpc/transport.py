"""Frames over a QUIC stream: the reading half shared by server and client."""

from __future__ import annotations

from collections.abc import Callable
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


def on_peer_abort(stream: Any, callback: Callable[[int | None], object]) -> None:
    """Call ``callback(code)`` as soon as the peer resets ``stream`` or asks us
    to stop sending on it (``code`` is its error code), or the connection
    closes (``code`` None); at once if that already happened. At most once.

    The QUIC stream's public ``on_peer_abort`` does it without a task (a task
    per call waiting for the abort would cost ~70 µs).
    """
    stream.on_peer_abort(callback)
