"""Frames over a QUIC stream: the reading half shared by server and client,
and the one-shot writes of a whole request or reply.

A unary call is small and bounded: its request (HEADERS, arguments, FIN) and
its reply (result, trailer, FIN) usually arrive in one packet each. Reading
and writing them through the stream's awaitable API costs a schedule point
(a task switch, ~5 µs) per ``receive_some``, ``send_all`` and ``send_eof``.
So :meth:`FrameReader.receive_frame_eager` and :func:`send_nowait` take what
the QUIC core already holds, or queue what it has room for, in one core call
without yielding, through the connection's protocol-driver API
(``Connection.core`` and ``flush_soon``, as the HTTP/3 layer drives it), and
fall back to the awaitable API whenever that cannot finish the job at once
(nothing received yet, a reset, a full send buffer, a stopped stream): the
stream's own methods then wait, or raise the documented errors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..quic.stream_states import StreamStateError
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
        return await self._receive_frame(eager=False)

    async def receive_frame_eager(self) -> tuple[int, bytes] | None:
        """:meth:`receive_frame`, without a schedule point while the bytes are
        already received. For the bounded reads of one request or reply only:
        a loop over an endless stream must use :meth:`receive_frame`."""
        return await self._receive_frame(eager=True)

    async def _receive_frame(self, *, eager: bool) -> tuple[int, bytes] | None:
        decoder = self._decoder
        while True:
            frame = decoder.next_frame()
            if frame is not None:
                return frame
            if self._eof:
                decoder.check_eof()
                return None
            data = _receive_nowait(self.stream) if eager else None
            if data is None:
                data = await self.stream.receive_some(RECEIVE_SIZE)
            self.feed(data)

    def receive_whole_nowait(self) -> bool:
        """Read, without a schedule point, the rest of the stream if all of
        it is here (its FIN too): True when it was, and :meth:`next_frame_now`
        then returns its frames. False leaves what was read in the decoder:
        the caller reads on with :meth:`receive_frame_eager`. At most two
        core calls (the read that reaches the FIN is the second)."""
        stream = self.stream
        try:
            conn = stream.connection
            streams = conn.core.streams
            stream_id = stream.stream_id
        except AttributeError:
            return False
        data = streams.read_or_eof(stream_id, RECEIVE_SIZE)
        end = streams.read_or_eof(stream_id, RECEIVE_SIZE) if data else data
        if data is not None and streams.has_pending_control():
            conn.flush_soon()  # the read freed credit worth announcing
        if data:
            self._decoder.feed(data)
        if end == b"":
            self._eof = True
            return True
        if end:  # more than one read's worth: rare for a request
            self._decoder.feed(end)
        return False

    def take_pair_now(self, first: int, second: int) -> tuple[bytes, bytes] | None:
        """After :meth:`receive_whole_nowait` returned True: the two payloads
        if the stream held exactly a ``first`` frame then a ``second`` one
        (see :meth:`.FrameDecoder.take_pair`); else None, nothing taken."""
        return self._decoder.take_pair(first, second)

    def next_frame_now(self) -> tuple[int, bytes] | None:
        """After :meth:`receive_whole_nowait` returned True: the next frame,
        or None at the end of the stream (FramingError if one was cut short)."""
        decoder = self._decoder
        frame = decoder.next_frame()
        if frame is None:
            decoder.check_eof()
        return frame

    def feed(self, data: bytes) -> None:
        """Take bytes read off the stream by the caller (``b""``: its end)."""
        if data:
            self._decoder.feed(data)
        else:
            self._eof = True


def _receive_nowait(stream: Any) -> bytes | None:
    """What ``stream.receive_some`` would return at once (``b""`` at the end
    of the stream), in one core call; None when it would have to wait, after
    a reset (``receive_some`` raises it), or for a stream that is not QUIC's."""
    try:
        conn = stream.connection
        streams = conn.core.streams
        stream_id = stream.stream_id
    except AttributeError:
        return None
    data: bytes | None = streams.read_or_eof(stream_id, RECEIVE_SIZE)
    if data is not None and streams.has_pending_control():
        conn.flush_soon()  # the read freed credit worth announcing (MAX_STREAM_DATA, MAX_STREAMS)
    return data


def send_nowait(stream: Any, data: bytes, *, end_stream: bool = False) -> bool:
    """Queue ``data`` (and the FIN if ``end_stream``) on ``stream`` in one core
    call, without a schedule point; it leaves in the scheduler's next pass,
    in the packets of what other tasks write in this one. False (nothing
    written) when that cannot be done at once: the caller then uses
    ``send_all`` (and ``send_eof``), which wait for room under the stream's
    back-pressure or raise its errors."""
    try:
        conn = stream.connection
        core = conn.core
        stream_id = stream.stream_id
    except AttributeError:
        return False
    if len(data) > core.config.stream_send_buffer - core.stream_send_buffered(stream_id):
        return False
    try:
        core.send_stream_data(stream_id, data, end_stream)
    except StreamStateError:  # stopped, reset, finished or closed: send_all says which
        return False
    conn.flush_soon()
    return True


def close_now(stream: Any) -> None:
    """``stream.aclose()`` without its schedule point (for a caller that
    has just had one, or runs outside a task); a stream that is not QUIC's
    has no such call: nothing is done (the caller closes it)."""
    close = getattr(stream, "_close_now", None)
    if close is not None:
        close()


def close_ended(stream: Any) -> None:
    """Close ``stream`` once both of its directions ended (read to its FIN
    with :class:`FrameReader`, our FIN queued by :func:`send_nowait` or
    sent): nothing is left to finish or stop, so no write and no schedule
    point. A stream that is not QUIC's: as :func:`close_now`."""
    close = getattr(stream, "_close_ended", None)
    if close is not None:
        close()
    else:
        close_now(stream)


def send_room(stream: Any) -> int:
    """The bytes :func:`send_nowait` accepts on ``stream`` now (0 for a stream
    that is not QUIC's)."""
    try:
        core = stream.connection.core
        stream_id = stream.stream_id
    except AttributeError:
        return 0
    return core.config.stream_send_buffer - core.stream_send_buffered(stream_id)  # type: ignore[no-any-return]


def on_peer_abort(stream: Any, callback: Callable[[int | None], object]) -> None:
    """Call ``callback(code)`` as soon as the peer resets ``stream`` or asks us
    to stop sending on it (``code`` is its error code), or the connection
    closes (``code`` None); at once if that already happened. At most once.

    The QUIC stream's public ``on_peer_abort`` does it without a task (a task
    per call waiting for the abort would cost ~70 µs).
    """
    stream.on_peer_abort(callback)
