"""Serving a connection's streams, and one-stream requests: the part of
:class:`~.connection.Connection` for request/reply protocols.

* ``serve_streams(handler)`` starts a task per peer stream as its first
  frame is processed (no acceptor task to wake per stream);
* ``serve_requests(handler, max_bytes)`` answers each stream's whole
  request with ``handler(request)``'s reply, and ``request(data, max_bytes)``
  is the client's side: a stream per request, the request and its FIN, the
  whole reply. When the request (or the reply) is already here and the
  answer fits the send buffer, neither costs more than one task step: the
  server's per-stream task reads, calls the handler and writes in its first
  step (none when the handler cannot suspend: it is answered inline); the
  client's task parks once, for the reply. See docs/streams.md.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import trio

from .exceptions import QuicError, StreamTooLarge
from .stream import QuicReceiveStream, QuicSendStream, QuicStream
from .suspension import may_suspend, run_to_end

if TYPE_CHECKING:
    from .stream import AnyStream

StreamHandler = Callable[[QuicStream | QuicReceiveStream], Awaitable[object]]
RequestHandler = Callable[[bytes], Awaitable[bytes]]
InlineHandler = Callable[[QuicStream | QuicReceiveStream], Callable[[], Awaitable[object]] | None]


async def _reraise(exc: BaseException) -> None:
    raise exc


class StreamServing:
    """``serve_streams``, ``serve_requests`` and ``request`` of a Connection."""

    # The application error code a server's connection is closed with when
    # its handler raises (the peer sees ConnectionClosed with this code).
    handler_error_code = 0x1

    _incoming: list[AnyStream]
    _closed_event: trio.Event
    # serve_streams(): starts a handler task for each new peer stream.
    _stream_sink: Callable[[QuicStream | QuicReceiveStream], object] | None

    if TYPE_CHECKING:

        async def _open_stream(
            self, bidirectional: bool
        ) -> tuple[QuicStream | QuicSendStream, bool]: ...

    async def serve_streams(
        self, handler: StreamHandler | None = None, *, inline: InlineHandler | None = None
    ) -> None:
        """Run ``handler(stream)`` in a task of its own for every stream the
        peer opens, until the connection closes and every handler returned.

        The cheaper form of ``async for stream in conn: nursery.start_soon(
        handler, stream)``: each stream's task is started as its STREAM frame
        is processed, with no acceptor task to wake (a task switch per
        stream), and the streams of one datagram start in the same scheduler
        pass, so their replies share packets. The tasks run in a nursery of
        this call; a handler's exception cancels the others and is raised
        here. While it runs, ``accept_stream`` gets no streams.

        Give ``inline`` instead of ``handler`` to decide per stream, as it
        opens and without a task: ``inline(stream)`` (which must not block)
        returns None when it dealt with the stream itself (a request already
        here whole, answered at once), else the async function, taking no
        arguments, that the stream's task runs. An exception it raises is
        raised here, as a handler's would be.
        """
        from .api import unwrapping_nursery  # api imports the connection module

        if (handler is None) == (inline is None):
            raise TypeError("serve_streams takes a handler or inline=, one of them")
        if self._stream_sink is not None:
            raise trio.BusyResourceError("serve_streams is already running on this connection")
        async with unwrapping_nursery() as nursery:
            # One sink, made for the form given (an idle connection keeps it).
            if inline is None:

                def sink(stream: QuicStream | QuicReceiveStream) -> None:
                    nursery.start_soon(handler, stream)  # type: ignore[arg-type]

            else:

                def sink(stream: QuicStream | QuicReceiveStream) -> None:
                    try:
                        task = inline(stream)
                    except BaseException as exc:  # raised in the nursery, as a task's would be
                        nursery.start_soon(_reraise, exc)
                        return
                    if task is not None:
                        nursery.start_soon(task)

            self._stream_sink = sink
            try:
                while self._incoming:  # arrived before this call
                    self._stream_sink(self._incoming.pop(0))  # type: ignore[arg-type]
                await self._closed_event.wait()
            finally:
                self._stream_sink = None

    async def serve_requests(
        self, handler: RequestHandler, max_bytes: int, *, large: StreamHandler | None = None
    ) -> None:
        """Answer every bidirectional stream the peer opens: its whole request
        (up to its FIN, at most ``max_bytes``) goes to ``handler``, whose
        return value is sent back with the FIN; until the connection closes.

        Each stream runs in a task of its own (as with ``serve_streams``); a
        request already received whole, with a handler that returns without
        waiting and a reply that fits the send buffer, costs that task one
        step. Such a request costs no task at all when ``handler`` cannot
        reach a schedule point (an ``async def`` whose code has no
        ``await``, ``async for`` or ``async with``; see :mod:`.suspension`):
        it is answered as its stream opens, while the connection processes
        the datagram, and a lone reply leaves before the receive loop yields
        (in a copy of the context, as in a task). A stream longer than
        ``max_bytes`` goes to ``large(stream)`` if given (what was read stays
        on the stream: an upload handled in chunks), and unidirectional
        streams too. A stream that fails -- longer than ``max_bytes``
        without ``large``, reset by the peer, or a handler raising a
        ``QuicError`` -- is reset (RESET_STREAM and STOP_SENDING with
        ``handler_error_code``) and the others go on; any other exception
        from a handler resets its stream and is raised here, like
        ``serve_streams``.

        ``max_bytes`` must be a positive int: anything else raises
        ``TypeError`` (not an int) or ``ValueError`` (below 1) at once.
        """
        max_bytes = _positive_size("max_bytes", max_bytes)

        async def answer(stream: QuicStream | QuicReceiveStream) -> None:
            if not isinstance(stream, QuicStream):
                if large is not None:
                    await large(stream)
                    return
                stream.stop_sending(self.handler_error_code)  # no reply possible
                await stream.aclose()
                return
            try:
                request = stream._receive_all_nowait(max_bytes)
                if request is None:
                    try:
                        request = await stream.receive_all(max_bytes)
                    except StreamTooLarge:
                        if large is None:
                            raise
                        await large(stream)
                        return
                reply = await handler(request)
                if not stream._finish_nowait(reply):
                    await stream.send_all(reply, end_stream=True)
            except QuicError:
                self._abort(stream)
            except BaseException:
                self._abort(stream)
                raise
            else:
                stream._close_now()

        if may_suspend(handler):
            await self.serve_streams(answer)
        else:
            await self.serve_streams(
                inline=functools.partial(self._answer_now, handler, max_bytes, answer)
            )

    def _answer_now(
        self,
        handler: RequestHandler,
        max_bytes: int,
        task: StreamHandler,
        stream: QuicStream | QuicReceiveStream,
    ) -> Callable[[], Awaitable[object]] | None:
        """``serve_requests``' inline hook (``serve_streams(inline=)``), for a
        handler that cannot suspend: a request here whole is answered as its
        stream opens, without a task (None); other streams get ``task``."""
        if not isinstance(stream, QuicStream):
            return functools.partial(task, stream)
        request = stream._receive_all_nowait(max_bytes)
        if request is None:  # what was read stays on the stream for the task
            return functools.partial(task, stream)
        try:
            reply = run_to_end(handler(request))
            if not stream._finish_nowait(reply):
                return functools.partial(self._send_reply, stream, reply)
        except QuicError:
            self._abort(stream)
            return None
        except BaseException:
            self._abort(stream)
            raise  # serve_streams raises it, as a handler task's
        stream._close_now()
        return None

    async def _send_reply(self, stream: QuicStream, reply: bytes) -> None:
        """The task of an inline reply the send buffer had no room for."""
        try:
            await stream.send_all(reply, end_stream=True)
        except QuicError:
            self._abort(stream)
        except BaseException:
            self._abort(stream)
            raise
        else:
            stream._close_now()

    def _abort(self, stream: QuicStream) -> None:
        stream.reset(self.handler_error_code)
        stream.stop_sending(self.handler_error_code)
        stream._close_now()

    async def request(self, data: bytes, max_bytes: int) -> bytes:
        """Send ``data`` as a request on a new bidirectional stream, with its
        FIN, and return the peer's whole reply (to its FIN; at most
        ``max_bytes``). The stream is closed on return.

        ``open_stream``, ``send_all(data, end_stream=True)``, ``receive_all``
        and ``aclose`` in one call and one schedule point (waiting for the
        reply): four task steps become one. Raises what they raise
        (:class:`StreamReset` if the peer resets the stream, ``StreamTooLarge``
        for a longer reply, :class:`ConnectionClosed`); on an error or a
        cancellation the stream is closed (STOP_SENDING for an unread reply).
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        stream, _ = await self._open_stream(True)
        assert isinstance(stream, QuicStream)
        try:
            if not stream._finish_nowait(data):
                try:
                    await stream.send_all(data, end_stream=True)
                except BaseException:
                    # Cut off mid-request: RESET_STREAM, never a FIN after
                    # part of it (the peer would take it as whole).
                    stream.reset(self.handler_error_code)
                    raise
            return await stream.receive_all(max_bytes)  # parks: the schedule point
        finally:
            stream._close_now()


def _positive_size(name: str, value: object) -> int:
    """``value`` as an int of at least 1; TypeError or ValueError otherwise."""
    if isinstance(value, bool):  # an int to operator.index, but surely a mistake
        raise TypeError(f"{name} must be a positive int, not a bool")
    try:
        size = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{name} must be a positive int, not {type(value).__name__}") from None
    if size < 1:
        raise ValueError(f"{name} must be a positive int (bytes), got {size}")
    return size
