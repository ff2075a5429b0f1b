"""HTTP/3 over a trio QUIC connection: the driver both client and server use.

An :class:`H3Session` owns the sans-IO :class:`~ghostwire.http3.H3Connection`
of one QUIC connection. The QUIC shell hands it every core event
synchronously (``Connection.divert_events``); the session turns them into
HTTP/3 events and files them under their request stream's
:class:`MessageChannel`, waking whoever waits there. Nothing here awaits per
packet.

Back-pressure, both ways:

* receiving: the H3 layer only pulls DATA from QUIC while a stream's window
  has room; :meth:`MessageChannel.receive_some` returns credit as the
  application consumes bytes, so a slow reader stalls the peer, not memory;
* sending: :meth:`MessageChannel.send_data` waits while the stream holds
  more than ``send_buffer`` unacknowledged bytes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import trio

from ...quic.events import (
    ConnectionTerminated,
    Event,
    StreamResetReceived,
    StreamsAvailable,
    StreamWritable,
)
from ...quic.net.connection import Connection
from ...quic.net.exceptions import ConnectionClosed, StreamReset
from ...quic.sent_packet import Space
from ...quic.streams import StreamLimitReached
from ..config import H3Config
from ..connection import H3Connection
from ..errors import ConnectionGoingAway, H3ErrorCode, HttpError, InvalidStreamState
from ..events import (
    ConnectionShutdown,
    DataReceived,
    GoAwayReceived,
    H3Event,
    Headers,
    HeadersReceived,
    SendingStopped,
    StreamAborted,
    TrailersReceived,
)

DEFAULT_SEND_BUFFER = 256 << 10


class HttpStreamError(StreamReset, HttpError):
    """The peer reset the request stream (or we aborted it): ``error_code`` says why.

    A :class:`~ghostwire.quic.StreamReset` (a reset stream has one name
    everywhere) and an :class:`~ghostwire.http3.HttpError`.
    """


class HeadersTimedOut(Exception):
    """A request's deadline passed before its response's headers
    (:meth:`MessageChannel.time_out`, called by the client's deadlines)."""


def _code_name(code: int) -> str:
    try:
        return H3ErrorCode(code).name
    except ValueError:
        return f"0x{code:x}"


class MessageChannel:
    """One request stream as seen by its task: headers, body chunks, trailers."""

    def __init__(self, session: H3Session, stream_id: int) -> None:
        self.session = session
        self.stream_id = stream_id
        self.headers: Headers | None = None
        self.trailers: Headers | None = None
        self.interim: list[Headers] = []
        self._chunks: deque[bytes] = deque()
        self.ended = False
        self.error: HttpStreamError | None = None
        self.stopped_code: int | None = None
        self.response_started = False  # server side: the application began its response
        self.body_sent = 0  # body bytes handed to QUIC (send_data)
        self.unsent: int | None = None  # bytes still unacknowledged when the stream was aborted
        self.timed_out = False  # client: its deadline ended the wait for headers
        self.awaiting_headers = False  # a task is parked in wait_headers
        self._lot = trio.lowlevel.ParkingLot()
        self._headers_event = trio.Event()

    # -- session side --------------------------------------------------------

    def wake(self) -> None:
        lot = self._lot
        if lot:  # about three calls per request; unpark_all on nobody costs ten Python calls
            lot.unpark_all()

    def on_headers(self, headers: Headers, ended: bool) -> None:
        status = _status(headers)
        if status is not None and 100 <= status < 200 and self.headers is None:
            self.interim.append(headers)  # 1xx: the final response is still to come
            return
        self.headers = headers
        self.ended = self.ended or ended
        self._headers_event.set()
        self.wake()

    def on_data(self, data: bytes, ended: bool) -> None:
        if data:
            self._chunks.append(data)
        self.ended = self.ended or ended
        self.wake()

    def on_trailers(self, headers: Headers, ended: bool) -> None:
        self.trailers = headers
        self.ended = True
        self.wake()

    def on_error(self, error: HttpStreamError) -> None:
        if self.error is None:
            self.error = error
        self._headers_event.set()
        self.wake()

    # -- task side -----------------------------------------------------------

    def time_out(self) -> None:
        """End the wait for headers: the request's deadline passed (the
        ``on_expired`` of the client's :class:`~ghostwire.deadlines.Deadlines`)."""
        self.timed_out = True
        self._headers_event.set()

    async def wait_headers(self) -> Headers:
        """The response's headers; raises the stream's error, or
        :class:`HeadersTimedOut` if its deadline ended the wait (:meth:`time_out`)."""
        self.awaiting_headers = True
        try:
            await self._headers_event.wait()
        finally:
            self.awaiting_headers = False
        session = self.session
        if session._ack_carrier is self:
            session.place_acks()
        if self.headers is None:
            if self.error is not None:
                raise self.error
            assert self.timed_out
            raise HeadersTimedOut(self.stream_id)
        return self.headers

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Body bytes; ``b""`` once the body is complete."""
        while True:
            if self._chunks:
                chunk = self._chunks.popleft()
                if max_bytes is not None and len(chunk) > max_bytes:
                    self._chunks.appendleft(chunk[max_bytes:])
                    chunk = chunk[:max_bytes]
                self.session.consumed(self.stream_id, len(chunk))
                await trio.lowlevel.checkpoint()
                return chunk
            if self.ended:
                await trio.lowlevel.checkpoint()
                return b""
            if self.error is not None:
                raise self.error
            self.session.raise_if_closed()
            await self._lot.park()

    # Sends yield before their work, and the one ending the stream after it,
    # so headers, body and FIN written back to back leave in the same packets.

    async def send_headers(self, headers: Headers, end_stream: bool = False) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        if not end_stream:
            await trio.lowlevel.cancel_shielded_checkpoint()
        self._check_send()
        self.session.h3.send_headers(self.stream_id, headers, end_stream=end_stream)
        self.session.flush(now=end_stream)
        if end_stream:
            await trio.lowlevel.cancel_shielded_checkpoint()

    async def send_data(self, data: bytes, end_stream: bool = False) -> None:
        session = self.session
        view = memoryview(data)
        await trio.lowlevel.checkpoint_if_cancelled()
        if not end_stream:
            await trio.lowlevel.cancel_shielded_checkpoint()
        while True:
            self._check_send()
            room = session.send_buffer - session.h3.stream_send_buffered(self.stream_id)
            if room <= 0:
                session.conn.flush()
                await self._lot.park()
                continue
            chunk, view = view[:room], view[room:]
            last = not len(view)
            session.h3.send_data(self.stream_id, bytes(chunk), end_stream=end_stream and last)
            self.body_sent += len(chunk)
            session.flush(now=end_stream and last)
            if last:
                break
        if end_stream:
            await trio.lowlevel.cancel_shielded_checkpoint()

    # The forms without a schedule point, for callers whose next step is a
    # schedule point anyway (a request waiting for its response) or whose
    # task ends right after (a response given whole): each request then costs
    # its task one step where the async forms cost one per call.

    def send_headers_nowait(self, headers: Headers, end_stream: bool = False) -> None:
        """``send_headers`` without its schedule points (nor its cancellation check)."""
        self._check_send()
        self.session.h3.send_headers(self.stream_id, headers, end_stream=end_stream)
        self.session.flush(now=end_stream)

    def send_message_nowait(self, headers: Headers, body: bytes, *, inline: bool = False) -> bool:
        """Headers, ``body`` (if any) and the end of the stream, without a
        schedule point; False (nothing sent) when the body does not fit in
        the send buffer (the caller then uses the async forms, which wait).

        ``inline``: called while the connection processes events (a request
        answered as it arrives), where sending at once would re-enter it:
        the flush that follows the events sends it."""
        session = self.session
        if body and len(body) > session.send_buffer - session.h3.stream_send_buffered(
            self.stream_id
        ):
            return False
        self._check_send()
        h3 = session.h3
        h3.send_headers(self.stream_id, headers, end_stream=not body)
        if body:
            h3.send_data(self.stream_id, body, end_stream=True)
            self.body_sent += len(body)
        if inline:
            session.conn.flush_soon()  # settled as the datagrams end: no wake-up
        else:
            session.flush(now=True)
        return True

    def take_body_nowait(self) -> bytes | None:
        """The whole body, when all of it has arrived (and no error): what
        ``receive_some`` would return chunk by chunk, without its schedule
        points; None otherwise."""
        if not self.ended or self.error is not None:
            return None
        chunks = self._chunks
        if not chunks:
            return b""
        body = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self.session.consumed(self.stream_id, len(body))
        return body

    async def send_trailers(self, headers: Headers) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        self._check_send()
        self.session.h3.send_trailers(self.stream_id, headers)
        self.session.flush(now=True)
        await trio.lowlevel.cancel_shielded_checkpoint()

    def _check_send(self) -> None:
        if self.stopped_code is not None:
            raise HttpStreamError(
                f"peer stopped stream {self.stream_id} ({_code_name(self.stopped_code)})",
                error_code=self.stopped_code,
            )
        if self.error is not None:
            raise self.error
        self.session.raise_if_closed()

    def note_unsent(self) -> None:
        """Remember what a reset or close is about to discard (unacknowledged bytes)."""
        if self.unsent is None:
            self.unsent = self.session.h3.stream_send_buffered(self.stream_id)

    @property
    def body_delivered(self) -> int:
        """Body bytes sent, less those an abort discarded unacknowledged (approximately:
        the discarded count includes a few bytes of frame headers)."""
        return max(0, self.body_sent - (self.unsent or 0))

    def cancel(self, error_code: int = H3ErrorCode.H3_REQUEST_CANCELLED) -> None:
        """Abandon the stream both ways (RESET_STREAM and STOP_SENDING)."""
        if self.ended and self.error is None and self.session.closed:
            return
        self.note_unsent()
        try:
            self.session.h3.cancel_request(self.stream_id, error_code)
        except (InvalidStreamState, ConnectionClosed):
            pass
        self.session.forget(self.stream_id)
        self.session.flush()


def _status(headers: Headers) -> int | None:
    for name, value in headers:
        if name == b":status":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class H3Session:
    """HTTP/3 on one trio QUIC connection (see the module docs)."""

    def __init__(
        self,
        conn: Connection,
        config: H3Config | None = None,
        *,
        send_buffer: int = DEFAULT_SEND_BUFFER,
        on_request: Callable[[MessageChannel], None] | None = None,
    ) -> None:
        self.conn = conn
        self.h3 = H3Connection(conn.core, config)
        self.send_buffer = send_buffer
        self.channels: dict[int, MessageChannel] = {}
        self._on_request = on_request
        self.goaway_id: int | None = None
        self.shutdown: ConnectionShutdown | None = None
        self._open_lot = trio.lowlevel.ParkingLot()
        self._idle_lot = trio.lowlevel.ParkingLot()  # woken when no request is left
        self._unacknowledged: set[int] = set()  # finished responses not yet acknowledged
        self._draining = False
        # Client: the request whose task, woken by its response's headers,
        # writes the QPACK decoder's acknowledgements of them (place_acks).
        self._ack_carrier: MessageChannel | None = None
        self.h3.hold_decoder_acks = on_request is None
        self.closed_event = trio.Event()
        conn.divert_events(self._on_quic_event)
        # Events that arrived before we took over (the handshake's) are gone;
        # the control streams open on the next StreamsAvailable, or now:
        self._feed(StreamsAvailable(bidirectional=False))

    # -- events --------------------------------------------------------------

    def _on_quic_event(self, event: Event) -> None:
        kind = type(event)
        if kind is StreamWritable:
            channel = self.channels.get(event.stream_id)  # type: ignore[attr-defined]
            if channel is not None:
                channel.wake()
            elif self._draining and event.stream_id in self._unacknowledged:  # type: ignore[attr-defined]
                self._idle_lot.unpark_all()  # graceful_shutdown checks what is left
            return  # nothing for the HTTP/3 layer (about one per request: skip it)
        if kind is StreamsAvailable:
            self._open_lot.unpark_all()
        elif kind is StreamResetReceived and self.conn.is_closed:
            self._on_reset_with_close(event)  # type: ignore[arg-type]
        elif kind is ConnectionTerminated:
            self._deliver_received()
        self._feed(event)

    def _on_reset_with_close(self, event: StreamResetReceived) -> None:
        """A RESET_STREAM that came with the peer's CONNECTION_CLOSE.

        The HTTP/3 layer ignores stream events once QUIC is closing, but the
        reader must learn that its body ends here because it was reset (not
        take the stream's end for a complete body).
        """
        channel = self.channels.get(event.stream_id)
        if channel is not None and not channel.ended:
            code = event.error_code
            message = f"peer reset stream {event.stream_id} ({_code_name(code)})"
            channel.on_error(HttpStreamError(message, error_code=code))

    def _deliver_received(self) -> None:
        """The connection is ending: hand every channel what already arrived.

        The HTTP/3 layer reads DATA only as the application consumes it, so a
        response the peer sent completely (and QUIC acknowledged) may still sit
        in QUIC's receive buffer when the peer closes the connection, as a
        server does right after its last response is acknowledged (RFC 9114
        §5.2). Read it all now, past the window: it is bounded by the flow
        control credit we gave, and a body that arrived whole must not be
        reported cut short.
        """
        now = trio.current_time()
        for stream_id, channel in list(self.channels.items()):
            while not channel.ended and channel.error is None:
                events = self.h3.acknowledge_received_data(stream_id, 1 << 62, now)
                if not events:
                    break
                for h3_event in events:
                    self._dispatch(h3_event)

    def _feed(self, event: Event) -> None:
        for h3_event in self.h3.handle_event(event, trio.current_time()):
            self._dispatch(h3_event)
        if self.h3.decoder.pending:
            self._acks_unless_carried()

    def _acks_unless_carried(self) -> None:
        """Held QPACK decoder acknowledgements (a client's): they wait for the
        woken requester (see place_acks) while it is still to run; else they
        are written now, as a server's are."""
        carrier = self._ack_carrier
        if carrier is None or carrier.stream_id not in self.channels:
            self.place_acks()

    def place_acks(self) -> None:
        """Write the QPACK decoder's held acknowledgements to its stream.

        RFC 9204 §4.4.1 wants a Section Acknowledgment for each field section
        with a non-zero Required Insert Count -- a response whose fields the
        server's encoder found in the dynamic table -- but sets no deadline.
        A client holds them from the response's arrival until its requester
        runs (``wait_headers``): they leave with that task's next request,
        or with the ACK the connection owes for the response (sent within
        max_ack_delay, RFC 9000 §13.2.1), whichever goes first. Sent at once,
        they cost a datagram per sequential GET, and the server its receipt.
        Only when no ACK is owed is a flush asked for.
        """
        self._ack_carrier = None
        h3 = self.h3
        if not h3.decoder.pending:
            return
        h3.flush_qpack()
        if self.conn.core.spaces[Space.APPLICATION].ack_timer() is None:
            self.flush()

    def _dispatch(self, event: H3Event) -> None:
        kind = type(event)
        if kind is DataReceived:
            channel = self.channels.get(event.stream_id)  # type: ignore[attr-defined]
            if channel is not None:
                channel.on_data(event.data, event.stream_ended)  # type: ignore[attr-defined]
        elif kind is HeadersReceived:
            self._on_headers(event)  # type: ignore[arg-type]
        elif kind is TrailersReceived:
            channel = self.channels.get(event.stream_id)  # type: ignore[attr-defined]
            if channel is not None:
                channel.on_trailers(event.headers, event.stream_ended)  # type: ignore[attr-defined]
        elif kind is StreamAborted:
            channel = self.channels.get(event.stream_id)  # type: ignore[attr-defined]
            if channel is not None:
                code = event.error_code  # type: ignore[attr-defined]
                who = "peer reset" if event.by_peer else "aborted"  # type: ignore[attr-defined]
                channel.on_error(
                    HttpStreamError(
                        f"{who} stream {event.stream_id} ({_code_name(code)})",  # type: ignore[attr-defined]
                        error_code=code,
                    )
                )
        elif kind is SendingStopped:
            channel = self.channels.get(event.stream_id)  # type: ignore[attr-defined]
            if channel is not None:
                channel.note_unsent()
                channel.stopped_code = event.error_code  # type: ignore[attr-defined]
                channel.wake()
        elif kind is GoAwayReceived:
            self.goaway_id = event.id  # type: ignore[attr-defined]
            self._open_lot.unpark_all()
        elif kind is ConnectionShutdown:
            self.shutdown = event  # type: ignore[assignment]
            self._on_closed()

    def _on_headers(self, event: HeadersReceived) -> None:
        if event.push_id is not None:
            return  # pushed responses are not surfaced by this API
        channel = self.channels.get(event.stream_id)
        if channel is None:
            if self._on_request is None:
                return
            channel = MessageChannel(self, event.stream_id)
            self.channels[event.stream_id] = channel
            channel.on_headers(event.headers, event.stream_ended)
            self._on_request(channel)
            return
        channel.on_headers(event.headers, event.stream_ended)
        if self.h3.hold_decoder_acks and channel.awaiting_headers and channel.headers is not None:
            self._ack_carrier = channel  # its task, woken now, writes the acknowledgements

    def _on_closed(self) -> None:
        message = "HTTP/3 connection closed"
        shutdown = self.shutdown
        if shutdown is not None:
            who = "by the peer" if shutdown.by_peer else "locally"
            if shutdown.is_application:
                code = _code_name(shutdown.error_code)
            else:
                code = f"QUIC error 0x{shutdown.error_code:x}"
            reason = f": {shutdown.reason}" if shutdown.reason else ""
            message = f"{message} {who} ({code}{reason})"
        for channel in list(self.channels.values()):
            channel.note_unsent()
            if not channel.ended:
                channel.on_error(HttpStreamError(message, error_code=0))
            channel.wake()
        self._open_lot.unpark_all()
        self._idle_lot.unpark_all()
        self.closed_event.set()

    # -- helpers for channels ----------------------------------------------------

    @property
    def closed(self) -> bool:
        return self.conn.is_closed

    def raise_if_closed(self) -> None:
        self.conn.raise_if_closed()

    def flush(self, *, now: bool = False) -> None:
        """Send what is queued once the task yields, so headers, data and FIN
        written back to back, and the writes of the other requests running
        in this scheduler pass, share packets.

        ``now``: a stream just ended. When it is the connection's only
        request and no other task is about to run, nothing can join its
        packet, so it goes at once (a sequential request, or its response)
        rather than a scheduler pass later. With several requests in flight
        the flusher gathers them as usual: a datagram per response costs
        both peers far more than the pass it waits.
        """
        if (
            now
            and len(self.channels) <= 1
            and not trio.lowlevel.current_statistics().tasks_runnable
        ):
            self.conn.flush()
        else:
            self.conn.flush_soon()

    def consumed(self, stream_id: int, nbytes: int) -> None:
        h3 = self.h3
        for h3_event in h3.acknowledge_received_data(stream_id, nbytes, trio.current_time()):
            self._dispatch(h3_event)
        if h3.decoder.pending:
            self._acks_unless_carried()
        streams = self.conn.core.streams
        if streams.has_pending_control() or (
            not h3.hold_decoder_acks and streams.has_pending_frames()
        ):
            # Freed credit (or a server's QPACK acknowledgements) to send; a
            # client's acknowledgements have their own rule (place_acks).
            self.flush()

    def forget(self, stream_id: int) -> None:
        carrier = self._ack_carrier
        if carrier is not None and carrier.stream_id == stream_id:
            self.place_acks()
        self.channels.pop(stream_id, None)
        if not self.channels and self._idle_lot:
            self._idle_lot.unpark_all()

    # -- client side ------------------------------------------------------------

    async def open_request(self) -> MessageChannel:
        """A new request stream; waits while the peer's stream limit is reached."""
        while True:
            self.raise_if_closed()
            if self.goaway_id is not None:
                raise ConnectionGoingAway("the server is shutting this connection down")
            try:
                stream_id = self.h3.open_request_stream()
            except StreamLimitReached:
                self.flush()
                await self._open_lot.park()
                continue
            channel = MessageChannel(self, stream_id)
            self.channels[stream_id] = channel
            await trio.lowlevel.checkpoint()
            return channel

    def open_request_nowait(self) -> MessageChannel | None:
        """``open_request`` without its schedule point: None (and no stream)
        when it would wait or raise (the caller then uses ``open_request``)."""
        if self.conn.is_closed or self.goaway_id is not None:
            return None
        try:
            stream_id = self.h3.open_request_stream()
        except (StreamLimitReached, ConnectionGoingAway):
            return None
        channel = MessageChannel(self, stream_id)
        self.channels[stream_id] = channel
        return channel

    # -- shutting down ------------------------------------------------------------

    async def aclose(self, error_code: int = H3ErrorCode.H3_NO_ERROR, reason: str = "") -> None:
        if not self.conn.is_closed:
            self.h3.close(trio.current_time(), error_code=error_code, reason=reason)
            self.conn.process_and_flush()
        await trio.lowlevel.checkpoint()

    def response_finished(self, stream_id: int) -> None:
        """A handler handed its whole response to QUIC.

        It is not delivered yet: closing the connection now would cut the
        tail, so :meth:`graceful_shutdown` waits for such streams too.
        """
        buffered = self.h3.stream_send_buffered
        if len(self._unacknowledged) >= 64:
            self._unacknowledged = {sid for sid in self._unacknowledged if buffered(sid)}
        if buffered(stream_id):
            self._unacknowledged.add(stream_id)

    def _busy(self) -> bool:
        buffered = self.h3.stream_send_buffered
        self._unacknowledged = {sid for sid in self._unacknowledged if buffered(sid)}
        return bool(self.channels or self._unacknowledged)

    async def graceful_shutdown(self, grace_period: float) -> None:
        """GOAWAY; let requests in progress finish and their responses arrive
        (up to ``grace_period``); reset what is still unfinished; close.

        A response cut short by the deadline is reset (RESET_STREAM with
        H3_REQUEST_CANCELLED) before the connection closes, so its client
        knows the response is incomplete rather than merely ended.
        """
        if self.conn.is_closed:
            return
        self.h3.send_goaway()
        self.flush()
        self._draining = True
        with trio.move_on_after(grace_period):
            # Woken by the last forget(), the last acknowledgement of a
            # finished response (StreamWritable), or the close.
            while not self.conn.is_closed and self._busy():
                await self._idle_lot.park()
        if not self.conn.is_closed:
            cut = len(self.channels) + len(self._unacknowledged)
            for channel in list(self.channels.values()):
                channel.cancel(H3ErrorCode.H3_REQUEST_CANCELLED)
            for stream_id in self._unacknowledged:
                # Handed to QUIC whole, not yet delivered: reset too (RFC 9114 §4.1.1).
                try:
                    self.h3.cancel_request(stream_id, H3ErrorCode.H3_REQUEST_CANCELLED)
                except (InvalidStreamState, ConnectionClosed):
                    pass
            self.flush(now=True)  # the resets go first, as far as congestion control allows
            if cut:
                await self.aclose(reason=f"shutting down: {cut} response(s) cut short")
                return
        await self.aclose()
