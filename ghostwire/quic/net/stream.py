"""QUIC streams as trio streams.

A bidirectional stream is a :class:`trio.abc.HalfCloseableStream`
(``send_eof`` sends FIN); a unidirectional one is a
:class:`trio.abc.SendStream` or :class:`trio.abc.ReceiveStream`. Both add
``reset(code)`` (RESET_STREAM) and ``stop_sending(code)`` (STOP_SENDING).

For a request or a reply whose size is bounded and known at the end,
``send_all(data, end_stream=True)`` writes the data and the FIN, and
``receive_all(max_bytes)`` reads to the peer's FIN, each with one schedule
point: a request/reply exchange costs a task four steps (``open_stream`` or
its spawn, the write, the read, ``aclose``) instead of six, and one with
``Connection.request`` and ``Connection.serve_requests`` (``serving.py``).

Back-pressure: ``send_all`` hands the core at most ``stream_send_buffer``
bytes beyond what the peer has acknowledged, then parks until
acknowledgements make room. Receive credit (MAX_STREAM_DATA) is returned to
the peer only as ``receive_some`` consumes data, so a slow reader slows the
sender instead of growing a buffer.

Errors: a peer reset makes ``receive_some`` (and ``receive_all``) raise :class:`StreamReset`
(every time); a peer STOP_SENDING makes ``send_all`` and ``send_eof`` raise
:class:`StreamStopped` (a ``StreamReset``); a closed connection raises
:class:`ConnectionClosed`; using a stream after ``aclose``, sending after
``send_eof`` or our own ``reset``, or receiving after our own
``stop_sending``, raises :class:`trio.ClosedResourceError`. A ``send_all``
cut off (cancelled) after part of its data was queued breaks the send side:
later sends raise :class:`StreamSendBroken`, and closing the stream resets
that side (RESET_STREAM with ``Connection.handler_error_code``) instead of
sending a FIN, so the peer never takes a truncated message for a whole one.
Nothing else escapes (the core's internal state errors are translated).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from ..stream_states import StreamStateError
from .exceptions import StreamReset, StreamSendBroken, StreamStopped, StreamTooLarge

if TYPE_CHECKING:
    from .connection import Connection

DEFAULT_RECEIVE_SIZE = 65536


class _StreamBase:
    # State starts as these class attributes: a stream is made per request,
    # and its instance holds only what changed.
    _sending = False  # a send_all / wait_send_all_might_not_block is running
    _closed = False
    _reset_code: int | None = None  # the peer's RESET_STREAM
    _stop_code: int | None = None  # the peer's STOP_SENDING
    # The tasks parked on this stream (a reader, a writer: at most one of
    # each), woken on any news for it. A list and plain reschedules, not a
    # ParkingLot: made by the first task to park (a stream whose data is
    # there when it is read never needs one), and waking nobody costs an
    # attribute check.
    _waiters: list[trio.lowlevel.Task] | None = None

    def __init__(self, conn: Connection, stream_id: int) -> None:
        self._conn = conn
        self._core = conn._core
        self._stream_id = stream_id

    @property
    def stream_id(self) -> int:
        return self._stream_id

    @property
    def connection(self) -> Connection:
        return self._conn

    @property
    def early_data(self) -> bool:
        """Server: the client opened this stream in 0-RTT (only when the server
        accepted 0-RTT, ``ServerConfig(early_data=True)``), so what it carries
        may be a replay (RFC 8446 §8). Before acting on a request that is not
        safe to run twice, ``await stream.connection.wait_handshake()``: a
        replayed flight never completes the handshake (RFC 8470 §3)."""
        return self._core.stream_opened_in_early_data(self._stream_id)

    def _wake(self) -> None:
        waiters = self._waiters
        if waiters:
            self._waiters = None
            for task in waiters:
                trio.lowlevel.reschedule(task)

    async def _park(self) -> None:
        """Wait for ``_wake`` (a schedule point; cancellable)."""
        task = trio.lowlevel.current_task()
        waiters = self._waiters
        if waiters is None:
            waiters = self._waiters = []
        waiters.append(task)

        def abort(_: object) -> trio.lowlevel.Abort:
            waiting = self._waiters
            if waiting is not None and task in waiting:
                waiting.remove(task)
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)

    def on_peer_abort(self, callback: Callable[[int | None], object]) -> None:
        """Call ``callback(code)`` as soon as the peer resets this stream
        (RESET_STREAM) or asks us to stop sending on it (STOP_SENDING), with
        its error code, or the connection closes (``code`` None); at once if
        that already happened. At most once per registration.

        For protocols that must notice an abort without a task waiting on the
        stream (an RPC server cancelling a call whose caller went away). No
        task is spawned: the callback runs synchronously when the connection
        records the abort, so it must not block.
        """
        conn = self._conn
        wake = self._wake
        fired = False

        def check() -> None:
            nonlocal fired
            if fired:
                return
            code = self._reset_code
            if code is None:
                code = self._stop_code
            if code is not None or conn.is_closed:
                fired = True
                callback(code)

        def wake_and_check() -> None:
            wake()
            check()

        # The connection wakes the stream right after recording a peer's
        # RESET_STREAM or STOP_SENDING, and on close: hooking the wake-up
        # costs nothing for streams nobody watches.
        self._wake = wake_and_check  # type: ignore[method-assign]
        check()

    def _mark_closed(self) -> bool:
        """Mark the stream closed; True if it already was (aclose is idempotent)."""
        was_closed = self._closed
        self._closed = True
        return was_closed

    async def _finish_close(self, wrote: bool = False) -> None:
        self._release(wrote)
        await trio.lowlevel.checkpoint()

    def _release(self, wrote: bool) -> None:
        """``wrote``: closing queued a frame (FIN, STOP_SENDING). A stream
        both sides finished costs no flush request (one would keep the
        flusher waiting another scheduler pass for writes)."""
        conn = self._conn
        if wrote or (not conn._flush_pending and self._core.streams.has_pending_frames()):
            conn._flush_soon()
        self._wake()
        conn._forget_stream(self._stream_id)

    def _check_open(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("this stream was closed")


class _SendSide(_StreamBase):
    _eof_sent = False
    _reset_sent = False
    # A send_all was cut off after queueing part of its data: no more sends,
    # and closing resets instead of finishing (a FIN would pass the partial
    # message off as whole).
    _send_broken = False

    def _send_room(self) -> int:
        return self._conn._send_buffer_limit - self._core.stream_send_buffered(self._stream_id)

    def _check_send(self) -> None:
        self._check_open()
        if self._eof_sent:
            raise trio.ClosedResourceError("send_eof() was already called on this stream")
        if self._reset_sent:
            raise trio.ClosedResourceError("this stream was reset")
        if self._send_broken:
            raise StreamSendBroken(
                f"a send_all on stream {self._stream_id} was cut off after part of its "
                "data was sent: the stream can no longer send (close it: that resets it)"
            )
        self._conn._raise_if_closed()
        code = self._stop_code
        if code is not None:
            raise StreamStopped(
                f"peer asked us to stop sending on stream {self._stream_id} (code {code})",
                error_code=code,
            )

    def _write(self, data: bytes, end_stream: bool = False) -> None:
        """Hand data to the core; its internal state errors become the
        exceptions this module documents."""
        try:
            self._core.send_stream_data(self._stream_id, data, end_stream)
        except StreamStateError:
            self._conn._raise_if_closed()
            stream = self._core.streams.get(self._stream_id)
            if self._stop_code is None and stream is not None and stream.sender is not None:
                self._stop_code = stream.sender.stop_sending_error_code
            self._check_send()  # StreamStopped, with the peer's code
            raise trio.ClosedResourceError(
                f"stream {self._stream_id} can no longer send (finished or reset)"
            ) from None

    async def send_all(
        self, data: bytes | bytearray | memoryview, *, end_stream: bool = False
    ) -> None:
        """Send all of ``data``; blocks while the send buffer is full.

        With ``end_stream=True`` the FIN goes with the last of the data: one
        call and one schedule point for ``send_all`` then ``send_eof`` (a
        request or a reply whose end is known), and the write is done before
        the schedule point, so a lone request or reply leaves a scheduler
        pass earlier. Later sends raise :class:`trio.ClosedResourceError`, as
        after ``send_eof``.

        Otherwise the call's schedule point comes first and the data goes out
        when the task next yields, so a ``send_eof`` (or another write) made
        right after shares the packet instead of following in its own.
        """
        if self._sending:
            raise trio.BusyResourceError("another task is already sending on this stream")
        self._sending = True
        try:
            if end_stream:
                await trio.lowlevel.checkpoint_if_cancelled()
            else:
                await trio.lowlevel.checkpoint()
            self._check_send()
            parked = False
            if type(data) is bytes and len(data) <= self._send_room():
                last = data  # the usual case: no copy, no memoryview
            else:
                last, parked = await self._send_until_the_rest_fits(memoryview(data).cast("B"))
            if not end_stream:
                if last:
                    self._write(last)
                    self._conn._flush_soon()
                return
            self._write(last, end_stream=True)
            self._eof_sent = True
            # As send_eof: alone on the connection, nothing can join the
            # packet, so it goes now.
            self._conn._flush_last_write()
            if not parked:  # parking was the schedule point
                await trio.lowlevel.cancel_shielded_checkpoint()
        finally:
            self._sending = False

    def _finish_nowait(self, data: bytes) -> bool:
        """``send_all(data, end_stream=True)`` without a schedule point, when
        it can be done at once: False (nothing written) if the send buffer
        lacks room or the call would raise; the caller then uses send_all."""
        if self._sending or self._eof_sent or self._reset_sent or self._stop_code is not None:
            return False
        if self._send_broken:
            return False
        if type(data) is not bytes:  # send_all copies what the caller may change
            return False
        if self._closed or self._core.is_closed or len(data) > self._send_room():
            return False
        self._write(data, end_stream=True)
        self._eof_sent = True
        self._conn._flush_last_write()
        return True

    async def _send_until_the_rest_fits(self, view: memoryview) -> tuple[bytes, bool]:
        """Write ``view`` as the send buffer makes room, parking while it is
        full, until what is left fits; return that (a copy: the caller may
        reuse its buffer once ``send_all`` returns), and whether it parked.

        Cut off (cancelled, or raising) after writing part of it, it breaks
        the send side (``_send_broken``)."""
        parked = False
        wrote = False
        try:
            while len(view) > (room := self._send_room()):
                if room <= 0:
                    self._conn._flush()  # what is buffered must go out to be acknowledged
                    await self._park()
                    parked = True
                    self._check_send()
                    continue
                self._write(bytes(view[:room]))
                wrote = True
                view = view[room:]
                self._conn._flush_soon()
        except BaseException:
            if wrote:
                self._send_broken = True
            raise
        return bytes(view), parked

    async def wait_send_all_might_not_block(self) -> None:
        if self._sending:
            raise trio.BusyResourceError("another task is already sending on this stream")
        self._sending = True
        try:
            await trio.lowlevel.checkpoint_if_cancelled()
            self._check_send()
            parked = False
            while self._send_room() <= 0:
                self._conn._flush()
                await self._park()
                parked = True
                self._check_send()
            if not parked:  # parking was the schedule point
                await trio.lowlevel.cancel_shielded_checkpoint()
        finally:
            self._sending = False

    async def send_eof(self) -> None:
        """Finish the sending side (FIN). Idempotent. Raises
        :class:`StreamSendBroken` after a ``send_all`` was cut off."""
        await trio.lowlevel.checkpoint_if_cancelled()
        self._check_open()
        if self._eof_sent or self._reset_sent:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this stream")
        self._check_send()  # ConnectionClosed, or StreamStopped after STOP_SENDING
        self._write(b"", end_stream=True)
        self._eof_sent = True
        # The FIN joins the data the last send_all queued (it yielded before
        # its work, so nothing went out yet); it leaves with the next pass's
        # flush, together with what other tasks write in this pass, or now
        # when this is the connection's only stream.
        self._conn._flush_last_write()
        await trio.lowlevel.cancel_shielded_checkpoint()

    def reset(self, error_code: int = 0) -> None:
        """Abandon the sending side with RESET_STREAM (RFC 9000 §19.4)."""
        if self._reset_sent or self._conn._core.is_closed:
            return
        self._reset_sent = True
        self._core.reset_stream(self._stream_id, error_code)
        self._conn._flush_soon()
        self._wake()

    def _close_send_side(self) -> bool:
        """FIN unless finished or reset (RESET_STREAM after a cut-off
        ``send_all``); True if it queued one."""
        if self._eof_sent or self._reset_sent or self._core.is_closed:
            return False
        if self._send_broken:
            self._reset_sent = True
            self._core.reset_stream(self._stream_id, self._conn.handler_error_code)
            return True
        self._eof_sent = True
        try:
            self._core.send_stream_data(self._stream_id, b"", end_stream=True)
        except StreamStateError:
            return False  # the peer's STOP_SENDING already reset this side: nothing to finish
        return True


class _ReceiveSide(_StreamBase):
    # Bytes a receive_all read but did not return (cancelled, or over its
    # limit): the next read returns them first.
    _unread = b""

    _receiving = False
    _stop_sent = False
    _eof_read = False  # receive_some returned b"": nothing left to stop

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Return some data; ``b""`` only at the end of the stream."""
        if max_bytes is not None:
            max_bytes = operator.index(max_bytes)  # TypeError for floats and the like
            if max_bytes < 1:
                raise ValueError("max_bytes must be at least 1")
        if self._receiving:
            raise trio.BusyResourceError("another task is already receiving on this stream")
        self._receiving = True
        try:
            await trio.lowlevel.checkpoint_if_cancelled()
            size = max_bytes or DEFAULT_RECEIVE_SIZE
            core = self._core
            streams = core.streams
            stream_id = self._stream_id
            parked = False  # parking is a schedule point: no second one after it
            while True:
                self._check_open()
                if self._stop_sent:
                    # The core discards everything after STOP_SENDING (RFC 9000 §3.5) and
                    # the peer may never answer with RESET_STREAM (only a SHOULD): without
                    # this a reader would wait forever, or see the FIN as a clean EOF.
                    raise trio.ClosedResourceError("stop_sending() was called on this stream")
                data: bytes | None
                if self._unread:
                    data = self._unread[:size]
                    self._unread = self._unread[size:]
                else:
                    data = streams.read_or_eof(stream_id, size)
                if data:
                    if streams.has_pending_control():
                        self._conn._flush_soon()  # the read freed credit worth announcing
                    if not parked:
                        await trio.lowlevel.cancel_shielded_checkpoint()
                    return data
                code = self._reset_code
                if code is not None:
                    raise StreamReset(
                        f"peer reset stream {stream_id} with code {code}", error_code=code
                    )
                if data is not None:  # the end of the stream
                    self._eof_read = True
                    if streams.has_pending_control():
                        self._conn._flush_soon()  # e.g. MAX_STREAMS for a finished stream
                    if not parked:
                        await trio.lowlevel.cancel_shielded_checkpoint()
                    return b""
                self._conn._raise_if_closed()
                await self._park()
                parked = True
        finally:
            self._receiving = False

    def _receive_all_nowait(self, max_bytes: int) -> bytes | None:
        """What ``receive_all(max_bytes)`` returns, without a schedule point,
        when the whole stream is already here; None when it is not, or when
        the call would raise (what was read is kept: receive_all returns or
        reports it)."""
        if self._receiving or self._closed or self._stop_sent or self._reset_code is not None:
            return None
        if self._unread:
            return None
        streams = self._core.streams
        stream_id = self._stream_id
        parts: list[bytes] = []
        size = 0
        while True:
            data = streams.read_or_eof(stream_id, max_bytes - size + 1)
            if data:
                parts.append(data)
                size += len(data)
                if size <= max_bytes:
                    continue
            elif data is not None:  # the end of the stream
                self._eof_read = True
                if streams.has_pending_control():
                    self._conn._flush_soon()  # credit worth announcing
                return parts[0] if len(parts) == 1 else b"".join(parts)
            if streams.has_pending_control():
                self._conn._flush_soon()
            if parts:
                self._unread = b"".join(parts)
            return None

    async def receive_all(self, max_bytes: int) -> bytes:
        """Receive the rest of the stream, to its end (the peer's FIN), and return it.

        For a request or a reply of bounded size: one call and one schedule
        point where a ``receive_some`` loop takes two (the data, then ``b""``).
        Raises :class:`StreamTooLarge` (a ``ValueError``) when the stream
        carries more than ``max_bytes``, and what ``receive_some`` raises
        (:class:`StreamReset`, ...). If it raises or is cancelled, nothing
        read is lost: ``receive_some`` and ``receive_all`` return it first.
        """
        max_bytes = operator.index(max_bytes)
        if max_bytes < 0:
            raise ValueError("max_bytes must not be negative")
        if self._receiving:
            raise trio.BusyResourceError("another task is already receiving on this stream")
        self._receiving = True
        parts: list[bytes] = []
        try:
            await trio.lowlevel.checkpoint_if_cancelled()
            if self._unread:
                parts.append(self._unread)
                self._unread = b""
            size = len(parts[0]) if parts else 0
            streams = self._core.streams
            stream_id = self._stream_id
            parked = False  # parking is a schedule point: no second one after it
            while True:
                self._check_open()
                if self._stop_sent:  # see receive_some
                    raise trio.ClosedResourceError("stop_sending() was called on this stream")
                if size > max_bytes:  # what an earlier call kept may be too much already
                    raise StreamTooLarge(
                        f"stream {stream_id} carries more than {max_bytes} bytes",
                        limit=max_bytes,
                    )
                # One byte more than allowed tells an oversized stream apart.
                data = streams.read_or_eof(stream_id, max_bytes - size + 1)
                if data:
                    parts.append(data)
                    size += len(data)
                    if streams.has_pending_control():
                        self._conn._flush_soon()  # the read freed credit worth announcing
                    continue
                code = self._reset_code
                if code is not None:
                    raise StreamReset(
                        f"peer reset stream {stream_id} with code {code}", error_code=code
                    )
                if data is not None:  # the end of the stream
                    self._eof_read = True
                    if streams.has_pending_control():
                        self._conn._flush_soon()  # e.g. MAX_STREAMS for a finished stream
                    result = parts[0] if len(parts) == 1 else b"".join(parts)
                    parts = []
                    if not parked:
                        await trio.lowlevel.cancel_shielded_checkpoint()
                    return result
                self._conn._raise_if_closed()
                await self._park()
                parked = True
        finally:
            if parts:  # raised or cancelled: the next read returns them
                self._unread = b"".join(parts)
            self._receiving = False

    def stop_sending(self, error_code: int = 0) -> None:
        """Ask the peer to stop sending (STOP_SENDING, RFC 9000 §19.5)."""
        if self._stop_sent or self._conn._core.is_closed:
            return
        self._stop_sent = True
        self._core.stop_sending(self._stream_id, error_code)
        self._conn._flush_soon()
        self._wake()  # a task parked in receive_some must learn of it

    def _close_receive_side(self) -> bool:
        """STOP_SENDING unless all of the stream was read; True if it queued one."""
        if not self._stop_sent and not self._eof_read and not self._core.is_closed:
            if not self._core.stream_at_eof(self._stream_id):
                self._stop_sent = True
                self._core.stop_sending(self._stream_id, 0)
                return True
        return False


class QuicStream(_SendSide, _ReceiveSide, trio.abc.HalfCloseableStream):
    """A bidirectional QUIC stream."""

    async def aclose(self) -> None:
        """Close both directions: FIN our side (RESET_STREAM after a cut-off
        ``send_all``), STOP_SENDING theirs if unfinished.

        After ``send_all(..., end_stream=True)`` and a read to the end (or
        ``receive_all``), there is nothing left to send: it only checkpoints."""
        self._close_now()
        await trio.lowlevel.checkpoint()

    def _close_now(self) -> None:
        """``aclose`` without its checkpoint (for callers that had one)."""
        wrote = False
        if not self._mark_closed():
            wrote = self._close_send_side()
            wrote = self._close_receive_side() or wrote
        self._release(wrote)

    def _close_ended(self) -> None:
        """``_close_now`` for a stream whose two directions its user ended
        through the core (read to its FIN, our FIN queued): nothing is left
        to finish or stop, so nothing is written or looked up."""
        if not self._mark_closed():
            self._eof_sent = self._eof_read = True
            self._release(False)

    def __repr__(self) -> str:
        return f"<QuicStream {self._stream_id}>"


class QuicSendStream(_SendSide, trio.abc.SendStream):
    """A unidirectional stream we send on."""

    async def aclose(self) -> None:
        """Close the stream: FIN unless it was finished or reset (RESET_STREAM
        after a cut-off ``send_all``)."""
        wrote = not self._mark_closed() and self._close_send_side()
        await self._finish_close(wrote)


class QuicReceiveStream(_ReceiveSide, trio.abc.ReceiveStream):
    """A unidirectional stream the peer sends on."""

    async def aclose(self) -> None:
        """Close the stream: STOP_SENDING unless all of it was read."""
        wrote = not self._mark_closed() and self._close_receive_side()
        await self._finish_close(wrote)


AnyStream = QuicStream | QuicSendStream | QuicReceiveStream
