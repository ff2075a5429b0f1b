"""Bidirectional streams of messages: :class:`BidiStream`, the same on both sides."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import trio

from .codec import decode
from .framing import MESSAGE, TRAILERS, FramingError
from .status import RpcError, Status
from .transport import FrameReader
from .wire import encode_message, parse_trailer


class BidiStream:
    """Messages both ways on one call: ``await send(msg)``, ``await receive()``,
    ``async for msg in stream``.

    ``receive`` raises :class:`trio.EndOfChannel` when the other side has
    finished sending (the caller's ``send_eof``; on the caller's side, the
    server's handler returning), and :class:`RpcError` when the call failed.
    A sender and a receiver may run in different tasks at once.
    """

    #: How the caller's side reads the server's trailer (the client refines it).
    _parse_trailer = staticmethod(parse_trailer)

    def __init__(self, reader: FrameReader, *, is_client: bool) -> None:
        self._reader = reader
        self._stream = reader.stream
        self._is_client = is_client
        self.finished = False  # the server's trailer arrived (caller's side)

    async def send(self, message: Any) -> None:
        """Send one message (any msgpack value); blocks under flow control."""
        await self._stream.send_all(encode_message(message))

    async def send_eof(self) -> None:
        """The caller has nothing more to send (the server sees EndOfChannel)."""
        if not self._is_client:
            raise RuntimeError("a server handler ends its side by returning")
        await self._stream.send_eof()

    async def receive(self) -> Any:
        """The next message; EndOfChannel at the end, RpcError on failure."""
        if self.finished:
            raise trio.EndOfChannel
        frame = await self._reader.receive_frame()
        if frame is None:
            if self._is_client:
                raise RpcError(Status.INTERNAL, "the server ended the stream without a status")
            raise trio.EndOfChannel
        frame_type, payload = frame
        if frame_type == MESSAGE:
            return decode(payload)
        if frame_type == TRAILERS and self._is_client:
            self.finished = True
            error = self._parse_trailer(payload)
            if error is not None:
                raise error
            raise trio.EndOfChannel
        raise FramingError(f"unexpected frame type {frame_type} on a stream")

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Any]:
        while True:
            try:
                yield await self.receive()
            except trio.EndOfChannel:
                return


__all__ = ["BidiStream"]
