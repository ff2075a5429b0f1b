"""Bounded writes for the HTTP/1.1 (and WebSocket) side: a client that stops
reading cannot hold a connection's task forever.

:class:`SendTimeoutStream` wraps a connection's trio stream; every write
must hand each ``SEND_CHUNK`` bytes of its data to the transport within
``send_timeout`` seconds (``send_timeout_ms`` of
:class:`~ghostwire.shroud.UnifiedServerConfig`). A client that reads slowly
but steadily is not cut off; one that stopped reading is: the write raises
:class:`~ghostwire.shroud.errors.SendTimeout` (a ``trio.BrokenResourceError``,
so the connection's task ends as for a client that went away) and the
connection is closed. Other connections are not affected.
"""

from __future__ import annotations

import trio

from .errors import SendTimeout

# The timeout bounds each piece of this size: progress, not the whole write.
SEND_CHUNK = 64 << 10


class SendTimeoutStream(trio.abc.Stream):
    """``stream`` whose ``send_all`` and ``wait_send_all_might_not_block``
    give up after ``send_timeout`` seconds without progress.

    After a timeout the stream is broken (what went out of the write is
    unknown): later writes raise :class:`SendTimeout` at once. Reading and
    closing are passed through.
    """

    def __init__(self, stream: trio.abc.Stream, send_timeout: float) -> None:
        if not send_timeout > 0:
            raise ValueError(f"send_timeout must be positive, got {send_timeout!r}")
        self.stream = stream
        self.send_timeout = send_timeout
        self._timed_out = False

    @property
    def transport_stream(self) -> trio.abc.Stream:
        """The transport under the wrapped stream (as trio's ``SSLStream``
        names it): its socket gives the peer's address."""
        inner: trio.abc.Stream = getattr(self.stream, "transport_stream", self.stream)
        return inner

    def _timeout(self) -> SendTimeout:
        self._timed_out = True
        ms = round(self.send_timeout * 1000)
        return SendTimeout(f"the client took nothing for {ms} ms (send_timeout_ms): closing")

    def _check(self) -> None:
        if self._timed_out:
            raise SendTimeout("an earlier write on this connection timed out")

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self._check()
        view = memoryview(data)
        if len(view) <= SEND_CHUNK:
            with trio.move_on_after(self.send_timeout):
                await self.stream.send_all(data)
                return
            raise self._timeout()
        for start in range(0, len(view), SEND_CHUNK):
            with trio.move_on_after(self.send_timeout):
                await self.stream.send_all(view[start : start + SEND_CHUNK])
                continue
            raise self._timeout()

    async def wait_send_all_might_not_block(self) -> None:
        self._check()
        with trio.move_on_after(self.send_timeout):
            await self.stream.wait_send_all_might_not_block()
            return
        raise self._timeout()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.stream.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.stream.aclose()


__all__ = ["SEND_CHUNK", "SendTimeoutStream"]
