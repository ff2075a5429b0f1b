"""A QUIC connection for trio code.

:class:`Connection` wraps the sans-IO core. It is driven by

* the endpoint's receive loop, which feeds datagrams to the core and then
  calls :meth:`Connection._after_input` once per drained batch;
* the connection's own task, which runs its timers sleeping in a cancel
  scope whose deadline is brought forward in place whenever the core's
  timer comes earlier (no task per timer);
* application calls (``open_stream``, ``send_all``, ...), which act on the
  core and flush synchronously.

When it sends is decided in ``scheduling.py``; ``serve_streams``,
``serve_requests`` and ``request`` live in ``serving.py`` (both mixins).

Structured concurrency: the connection's task lives in the endpoint's nursery
and owns a nursery of its own; a server's connection handler runs in it, so
closing the connection cancels the handler and everything it started.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, Literal, overload

import trio

from ..connection import ConnectionStats, QuicConnection
from ..errors import TransportErrorCode
from ..events import (
    ConnectionIdIssued,
    ConnectionIdRetired,
    ConnectionTerminated,
    Event,
    HandshakeCompleted,
    StopSendingReceived,
    StreamOpened,
    StreamReadable,
    StreamResetReceived,
    StreamsAvailable,
    StreamWritable,
)
from ..streams import stream_is_bidirectional, stream_is_client_initiated
from .exceptions import ConnectionClosed, ConnectionRefused, QuicError, error_from_termination
from .handler import Handler, HandlerRunner
from .scheduling import FlushScheduler
from .serving import StreamServing
from .stream import AnyStream, QuicReceiveStream, QuicSendStream, QuicStream

if TYPE_CHECKING:
    from .endpoint import Endpoint

log = logging.getLogger("ghostwire.quic")


class Connection(StreamServing, FlushScheduler, HandlerRunner, trio.abc.AsyncResource):
    """An established (or establishing) QUIC connection."""

    # Set when the handshake completes; made only while wait_handshake() waits
    # past the start of a server's handler (0-RTT): a class default costs
    # other connections nothing.
    _completed_event: trio.Event | None = None

    def __init__(self, core: QuicConnection, endpoint: Endpoint) -> None:
        self._core = core
        self._endpoint = endpoint
        self._dirty = False
        self._send_buffer_limit = core.config.stream_send_buffer
        self._timer_scope: trio.CancelScope | None = None
        self._flush_pending = False
        self._flusher: trio.lowlevel.Task | None = None  # the timer task, while parked
        self._flush_requests = 0  # _flush_soon calls: tells the flusher writes go on
        self._handshake_event = trio.Event()
        self._closed_event = trio.Event()
        self._error: QuicError | None = None
        self._streams: dict[int, AnyStream] = {}
        self._incoming: list[AnyStream] = []  # short: a deque costs 0.7 KB when empty
        self._accept_lot = trio.lowlevel.ParkingLot()
        # serve_streams(): starts a handler task for each new peer stream.
        self._stream_sink: Callable[[QuicStream | QuicReceiveStream], object] | None = None
        self._early_streams = False  # 0-RTT streams arrived in this batch of datagrams
        # open_stream() waiting for credit, bidirectional and unidirectional;
        # made by _opener_lot() on first use: most connections never wait.
        self._open_lot: trio.lowlevel.ParkingLot | None = None
        self._open_uni_lot: trio.lowlevel.ParkingLot | None = None
        # While the handler runs, the end of the connection cancels it (through
        # the connection's nursery: a cancel scope of its own is 0.7 KB).
        self._handler_running = False
        self._handler: Handler | None = None  # a server's, until the handshake completes
        # Set (and dropped) when everything sent has been acknowledged; only
        # exists while someone waits in wait_delivered().
        self._delivered_event: trio.Event | None = None
        # Set (and dropped) when a packet arrives; only exists while a ping() waits.
        self._heard_event: trio.Event | None = None
        self._nursery: trio.Nursery | None = None
        self._confirmed_reported = False
        self._event_hook: Callable[[Event], None] | None = None
        self._failed = False  # an internal error closed this connection
        self._error_override: QuicError | None = None  # replaces the close event's error
        # Streams the core forgot (both sides finished): their objects are
        # dropped after the events about them were dispatched, aclose() or not.
        self._retired: list[int] = []
        # True while _after_datagrams processes events, past the handshake and
        # with no stream data queued before (a backlog waits for the flusher).
        self._answering_in_parts = False
        core.streams.on_retired = self._retired.append
        endpoint.connections[core] = self

    # -- public properties ---------------------------------------------------

    @property
    def alpn(self) -> str | None:
        """The negotiated application protocol."""
        return self._core.alpn_protocol

    @property
    def version(self) -> int:
        """The QUIC version in use (0x00000001 for QUIC v1)."""
        return self._core.version

    @property
    def cipher_suite(self) -> str | None:
        """The TLS cipher suite, e.g. ``TLS_AES_128_GCM_SHA256``."""
        suite = self._core.cipher_suite
        return suite.tls_name if suite is not None else None

    @property
    def peer_address(self) -> Any:
        return self._core.peer_address

    @property
    def local_address(self) -> tuple[str, int]:
        return self._endpoint.local_address

    @property
    def peer_certificates(self) -> list[Any]:
        """The peer's certificate chain (leaf first), as cryptography x509 objects."""
        return list(self._core.tls.peer_certificates)

    @property
    def resumed(self) -> bool:
        """The handshake resumed a session from a ticket (see ``ClientConfig.session_tickets``)."""
        return self._core.resumed

    @property
    def early_data_accepted(self) -> bool:
        """The server accepted 0-RTT data. Until the handshake completes (a
        0-RTT ``connect`` returns before), False; see :meth:`wait_handshake`."""
        return self._core.early_data_accepted

    @property
    def handshake_complete(self) -> bool:
        return self._core.handshake_complete

    async def wait_handshake(self) -> None:
        """Wait until the handshake completes; raises what a failed handshake
        raises. Returns at once on most connections: ``connect`` returns, and a
        server's handler starts, once it completed. The exceptions are 0-RTT's:
        a client's ``connect`` returns early with ``early_data=True``, and a
        server that accepted 0-RTT starts its handler on the 0-RTT streams.
        Such a server waits here before acting on a request that is not safe
        to run twice (see ``Stream.early_data``): a replayed 0-RTT flight never
        completes a handshake (RFC 8470 §3)."""
        await self._wait_handshake()
        if not self._core.handshake_complete and self._error is None:
            if self._completed_event is None:
                self._completed_event = trio.Event()
            await self._completed_event.wait()
            if self._error is not None:
                raise self._error

    @property
    def is_closed(self) -> bool:
        return self._core.is_closed

    def statistics(self) -> ConnectionStats:
        """RTT, congestion window, and packet/byte counters."""
        return self._core.get_statistics()

    def update_keys(self) -> None:
        """Switch to the next generation of 1-RTT keys (RFC 9001 §6).

        The update starts at once if allowed, else as soon as a packet sent
        with the current keys is acknowledged (RFC 9001 §6.1). Updates also
        happen by themselves before the AEAD confidentiality limit (§6.6).
        Raises :class:`ConnectionClosed` on a closed connection.
        """
        self._raise_if_closed()
        self._core.request_key_update()
        self._flush_soon()

    @property
    def core(self) -> QuicConnection:
        """The sans-IO connection underneath (for diagnostics and tests)."""
        return self._core

    def divert_events(self, hook: Callable[[Event], None]) -> None:
        """Hand every core event to ``hook`` (for protocols layered on QUIC, like HTTP/3).

        Stream events then go only to the hook: the connection no longer makes
        stream objects, so ``accept_stream`` and ``open_stream`` are not for
        use. Other events are also handled as usual (handshake, closing).
        The hook runs synchronously inside the connection's event processing:
        it must not block, and should only update state and wake tasks.
        """
        self._event_hook = hook
        # Streams the shell already learned about are replayed to the hook,
        # so nothing that arrived before the switch is lost.
        streams = sorted(self._streams.items())
        self._streams.clear()
        self._incoming.clear()
        for stream_id, _ in streams:
            if is_peer_stream(self._core, stream_id):
                hook(StreamOpened(stream_id))
        for stream_id, stream in streams:
            if stream._reset_code is not None:
                hook(StreamResetReceived(stream_id, stream._reset_code))
            else:
                hook(StreamReadable(stream_id))

    async def ping(self) -> None:
        """Send a PING (RFC 9000 §19.2) and return once the peer is heard from.

        PING is ack-eliciting, so a live peer answers within its max_ack_delay
        (RFC 9000 §13.2.1); any packet received after the PING proves it is
        alive. Bound the wait with a cancel scope: a peer that vanished without
        a word never answers. Raises :class:`ConnectionClosed` (or the close's
        error) if the connection is or becomes closed.
        """
        self._raise_if_closed()
        core = self._core
        received = core.stats.packets_received
        core.writer.ping_pending = True
        self._flush()
        while core.stats.packets_received == received:
            self._raise_if_closed()
            if self._heard_event is None:
                self._heard_event = trio.Event()
            await self._heard_event.wait()
        await trio.lowlevel.checkpoint()

    # -- streams -------------------------------------------------------------

    @overload
    async def open_stream(self, bidirectional: Literal[True] = True) -> QuicStream: ...
    @overload
    async def open_stream(self, bidirectional: Literal[False]) -> QuicSendStream: ...
    @overload
    async def open_stream(self, bidirectional: bool) -> QuicStream | QuicSendStream: ...
    async def open_stream(self, bidirectional: bool = True) -> QuicStream | QuicSendStream:
        """Open a stream, waiting while the peer's stream limit is reached."""
        await trio.lowlevel.checkpoint_if_cancelled()
        stream, parked = await self._open_stream(bidirectional)
        if not parked:  # parking was the schedule point
            await trio.lowlevel.cancel_shielded_checkpoint()
        return stream

    async def _open_stream(self, bidirectional: bool) -> tuple[QuicStream | QuicSendStream, bool]:
        """A new stream, and whether it had to wait (park) for the peer's credit."""
        parked = False
        while True:
            stream = self._try_open_stream(bidirectional)
            if stream is not None:
                return stream, parked
            self._flush()  # lets STREAMS_BLOCKED go out
            await self._opener_lot(bidirectional).park()
            parked = True

    def _try_open_stream(self, bidirectional: bool) -> QuicStream | QuicSendStream | None:
        """A new stream, or None while the peer's stream limit is reached."""
        self._raise_if_closed()
        stream_id = self._core.try_open_stream(bidirectional)
        if stream_id is None:
            return None
        stream: QuicStream | QuicSendStream = (
            QuicStream(self, stream_id) if bidirectional else QuicSendStream(self, stream_id)
        )
        self._streams[stream_id] = stream
        return stream

    async def wait_stream_credit(self, bidirectional: bool = True) -> None:
        """Wait until a stream of this kind could be opened without waiting:
        the peer's MAX_STREAMS (RFC 9000 §4.6, §19.11) leaves room for one.
        Returns at once if it does. Opens nothing, so the credit may be taken
        by the time the caller opens a stream. Raises like :meth:`open_stream`
        (:class:`ConnectionClosed` or the close's error) if the connection is
        or becomes closed. A checkpoint; cancellable while it waits."""
        await trio.lowlevel.checkpoint_if_cancelled()
        streams = self._core.streams
        lot = self._opener_lot(bidirectional)
        parked = False
        while True:
            self._raise_if_closed()
            if streams.streams_available(bidirectional):
                break
            await lot.park()
            parked = True
        if not parked:  # parking was the schedule point
            await trio.lowlevel.cancel_shielded_checkpoint()
        else:
            # New credit wakes as many parked tasks as there are new streams,
            # this one included, which opens none: pass the wake-up on so an
            # open_stream() parked behind it gets the stream.
            lot.unpark()

    def _opener_lot(self, bidirectional: bool) -> trio.lowlevel.ParkingLot:
        lot = self._open_lot if bidirectional else self._open_uni_lot
        if lot is None:
            lot = trio.lowlevel.ParkingLot()
            if bidirectional:
                self._open_lot = lot
            else:
                self._open_uni_lot = lot
        return lot

    def _unpark_openers(self) -> None:
        for lot in (self._open_lot, self._open_uni_lot):
            if lot is not None:
                lot.unpark_all()

    async def accept_stream(self) -> QuicStream | QuicReceiveStream:
        """Wait for the next stream the peer opens."""
        await trio.lowlevel.checkpoint_if_cancelled()
        parked = False
        while not self._incoming:
            self._raise_if_closed()
            await self._accept_lot.park()
            parked = True
        stream = self._incoming.pop(0)
        if not parked:  # parking was the schedule point: a second costs a pass
            await trio.lowlevel.cancel_shielded_checkpoint()
        return stream  # type: ignore[return-value]

    def __aiter__(self) -> AsyncIterator[QuicStream | QuicReceiveStream]:
        return self._iterate_streams()

    async def _iterate_streams(self) -> AsyncIterator[QuicStream | QuicReceiveStream]:
        while True:
            try:
                yield await self.accept_stream()
            except ConnectionClosed:
                return

    # -- closing -------------------------------------------------------------

    async def aclose(self, error_code: int = 0, reason: str = "") -> None:
        """Close the connection (CONNECTION_CLOSE with an application code). Idempotent."""
        if not self._core.is_closed:
            self._core.close(error_code, reason, now=trio.current_time())
            self._after_input()
        await trio.lowlevel.checkpoint()

    async def wait_closed(self) -> None:
        """Wait until the connection is closed, by either side."""
        await self._closed_event.wait()

    def _raise_if_closed(self) -> None:
        if self._error is not None:
            raise self._error
        if self._core.is_closed:
            raise ConnectionClosed("connection is closed")

    # -- protocol driver API -------------------------------------------------
    #
    # For protocols layered on QUIC that act on the sans-IO core themselves
    # (HTTP/3's session, after divert_events): they queue frames on ``core``
    # and tell the connection when to send. Thin wrappers, so the internals
    # below stay free to change.

    def raise_if_closed(self) -> None:
        """Raise the connection's error (:class:`ConnectionClosed` or the
        handshake error) if it is closed; do nothing while it is open."""
        self._raise_if_closed()

    def open_stream_nowait(self) -> QuicStream | None:
        """A new bidirectional stream, as ``open_stream()`` returns it but
        without its schedule point (nor its cancellation check); None, and no
        stream, when the peer's stream limit is reached (``open_stream`` then
        waits for credit). Raises what ``open_stream`` raises on a closed
        connection. For a caller whose next step is a schedule point anyway
        (a request whose reply it waits for): its task steps once, not twice."""
        stream = self._try_open_stream(True)
        assert stream is None or isinstance(stream, QuicStream)
        return stream

    def flush(self) -> None:
        """Send what the core has queued now (e.g. before parking on a full
        send buffer, or when a stream just ended and nothing will join it)."""
        self._flush()

    def flush_soon(self) -> None:
        """Send what the core has queued in the scheduler's next pass, so
        writes made back to back, or by tasks running in this pass, share
        packets. The usual way to send after a write."""
        self._flush_soon()

    def process_and_flush(self) -> None:
        """After acting on the core outside a write (closing it, feeding it):
        dispatch the core's events (the ``divert_events`` hook sees them),
        then send at once."""
        self._after_input()

    # -- driving the core ----------------------------------------------------

    def _flush(self) -> None:
        """Send whatever the core wants to send now and re-arm the timer."""
        self._flush_pending = False
        core = self._core
        datagrams = core.datagrams_to_send(trio.current_time())
        if datagrams:
            self._endpoint.send_datagrams(datagrams)
        self._process_events()
        self._update_timer()

    def _after_input(self) -> None:
        self._process_events()
        if self._early_flight:
            self._flush_soon()  # a 0-RTT ClientHello still waits for the first write
        else:
            self._flush()
        self._wake_ping()

    def _wake_ping(self) -> None:
        heard = self._heard_event
        if heard is not None:
            self._heard_event = None
            heard.set()

    def _after_datagrams(self) -> None:
        """The endpoint fed us a batch of datagrams: wake the tasks they concern.

        Once the handshake is confirmed, what the datagrams make us send (ACKs,
        credit) leaves with the next flush, together with what the woken tasks
        write; when they make us send nothing yet, no flush is asked for.
        Handshake flights go at once: ``connect`` returns with our Finished
        already sent; before the events are dispatched when nothing the
        dispatch runs can write into the flight (no event hook, no stream
        sink, no 0-RTT streams to answer in it), so the peer has it sooner.
        """
        core = self._core
        if (
            not core.handshake_confirmed
            and self._event_hook is None
            and self._stream_sink is None
            and (core.is_client or not core.early_data_accepted)
        ):
            self._flush()  # dispatches the events after the send
            self._wake_ping()
            return
        sent = core.stats.packets_sent
        # Past the handshake, replies answered inline go in parts and at the
        # end (_answer_after_events); a backlog queued before waits for the flusher.
        answering = core.handshake_confirmed and not core.streams.has_stream_data()
        self._answering_in_parts = answering
        if self._stream_events_seen:  # (written only when set: FlushScheduler's defaults)
            self._stream_events_seen = 0  # parts count from this batch's start
        try:
            self._process_events()
        finally:
            self._answering_in_parts = False
        self._wake_ping()
        if not core.handshake_confirmed:
            early, self._early_streams = self._early_streams, False
            if early and not core.handshake_complete and not core.is_client:
                # 0-RTT streams (accepted): the handler's reply joins the
                # server's first flight (0.5-RTT data, RFC 9001 §4.1.1), so the
                # client has it after one datagram instead of two.
                self._early_flight = True
                self._flush_soon()
            else:
                self._flush()
        elif answering and self._answer_after_events():
            return
        elif not self._flush_pending and core.stats.packets_sent != sent:
            # A reply answered inline as its stream opened (serve_requests,
            # the RPC server) was flushed after these datagrams were read:
            # what they made due left with it, the flush re-armed the timer,
            # and any later write asked for a flush of its own.
            return
        elif self._flush_pending or not core.has_nothing_to_send(trio.current_time()):
            self._flush_soon()
        else:
            # Nothing to send yet (typically: an ACK not due before its timer,
            # RFC 9000 §13.2.1): no flush, no wake-up of the timer task; the
            # timer is re-armed for what the datagrams changed (ACK, loss,
            # idle deadlines).
            self._update_timer()

    def _update_timer(self) -> None:
        """Bring the timer task's deadline forward to the core's next timer.

        Only ever forward while the connection is open: moving a trio
        deadline costs about fifteen calls, and the core's timer moves later
        after most packets (a new PTO or ACK deadline, RFC 9002 §6.2, RFC
        9000 §13.2.1). A deadline left early wakes the timer task once,
        which finds nothing due and sleeps again until the core's exact
        timer (``_timer_loop``). Once closed, it moves either way.
        """
        scope = self._timer_scope
        if scope is not None and not self._flush_pending:
            core = self._core
            timer = core.get_timer()
            if timer is not None and (
                timer < scope.deadline
                # Closed: the one timer left is the end of the closing or
                # draining period (RFC 9000 §10.2), often later than a loss
                # or ACK deadline the scope still holds; moved there once,
                # it saves the timer task a wake-up for nothing.
                or (timer != scope.deadline and core.is_closed)
            ):
                scope.deadline = timer

    def _process_events(self) -> None:
        core = self._core
        streams = self._streams
        while True:
            event = core.next_event()
            if event is None:
                break
            kind = type(event)
            hook = self._event_hook
            if hook is not None:
                hook(event)
                if kind in _STREAM_EVENTS:
                    if self._answering_in_parts:
                        self._answered_in_part()
                    continue
            if kind is StreamReadable:
                stream = streams.get(event.stream_id)  # type: ignore[attr-defined]
                if stream is not None:
                    stream._wake()
            elif kind is StreamWritable:
                # Acknowledged data only matters to a writer waiting for room;
                # waking a reader parked on the same lot would cost it a pass.
                stream = streams.get(event.stream_id)  # type: ignore[attr-defined]
                if stream is not None and stream._sending:
                    stream._wake()
            elif kind is StreamOpened:
                if not core.handshake_complete:
                    self._on_early_stream()
                self._on_stream_opened(event.stream_id)  # type: ignore[attr-defined]
                if self._answering_in_parts:
                    self._answered_in_part()
            elif kind is StreamResetReceived:
                stream = streams.get(event.stream_id)  # type: ignore[attr-defined]
                if stream is not None:
                    stream._reset_code = event.error_code  # type: ignore[attr-defined]
                    stream._wake()
            elif kind is StopSendingReceived:
                stream = streams.get(event.stream_id)  # type: ignore[attr-defined]
                if stream is not None:
                    stream._stop_code = event.error_code  # type: ignore[attr-defined]
                    stream._wake()
            elif kind is StreamsAvailable:
                # Wake only as many openers as there are new streams: with a
                # thousand waiting, waking all for each MAX_STREAMS batch costs
                # a thousand task steps to open a dozen streams. Nothing sits
                # between an opener's wake-up and its open_stream, so none of
                # the credit goes unused while others wait.
                bidi = event.bidirectional  # type: ignore[attr-defined]
                lot = self._open_lot if bidi else self._open_uni_lot
                if lot is not None:
                    lot.unpark(count=core.streams.streams_available(bidi))
            elif kind is ConnectionIdIssued:
                self._endpoint.demux.add_route(event.connection_id, core)  # type: ignore[attr-defined]
            elif kind is ConnectionIdRetired:
                self._endpoint.demux.remove_route(event.connection_id)  # type: ignore[attr-defined]
            elif kind is HandshakeCompleted:
                self._handshake_event.set()
                self._start_handler()
                if self._completed_event is not None:
                    self._completed_event.set()
            elif kind is ConnectionTerminated:
                self._on_terminated(event)  # type: ignore[arg-type]
        if self._retired:
            for stream_id in self._retired:
                streams.pop(stream_id, None)
            self._retired.clear()
        if core.handshake_confirmed and not self._confirmed_reported:
            self._confirmed_reported = True
            self._endpoint.demux.on_handshake_confirmed(core)
        if self._delivered_event is not None and self._all_delivered():
            self._delivered_event.set()
            self._delivered_event = None

    def _all_delivered(self) -> bool:
        core = self._core
        return core.is_closed or (
            core.recovery.bytes_in_flight == 0 and not core.streams.has_stream_data()
        )

    async def wait_delivered(self) -> None:
        """Wait until everything sent so far has been acknowledged by the peer
        (or the connection closed): CONNECTION_CLOSE would drop stream data
        still in flight, so a graceful close waits here first. Bound it with a
        cancel scope."""
        if self._all_delivered():
            await trio.lowlevel.checkpoint()
            return
        if self._delivered_event is None:
            self._delivered_event = trio.Event()
        await self._delivered_event.wait()

    def _on_stream_opened(self, stream_id: int) -> None:
        if stream_is_bidirectional(stream_id):
            stream: QuicStream | QuicReceiveStream = QuicStream(self, stream_id)
        else:
            stream = QuicReceiveStream(self, stream_id)
        self._streams[stream_id] = stream
        if self._stream_sink is not None:
            self._stream_sink(stream)  # serve_streams: its task starts in the next pass
            return
        self._incoming.append(stream)
        if self._accept_lot:  # an acceptor waits (the lot's unpark_all costs a generator)
            self._accept_lot.unpark_all()

    def _forget_stream(self, stream_id: int) -> None:
        self._streams.pop(stream_id, None)

    def _on_terminated(self, event: ConnectionTerminated) -> None:
        self._error = self._error_override or error_from_termination(
            event,
            during_handshake=not self._handshake_event.is_set(),
            is_client=self._core.is_client,
        )
        self._closed_event.set()
        self._handshake_event.set()
        if self._completed_event is not None:
            self._completed_event.set()
        if self._heard_event is not None:
            self._heard_event.set()
        self._accept_lot.unpark_all()
        self._unpark_openers()
        for stream in list(self._streams.values()):
            stream._wake()
        # The handler is not cancelled yet: its pending calls raise
        # ConnectionClosed so it can see why. It is cancelled when the core
        # has finished closing (see _timer_loop).

    async def _wait_handshake(self) -> None:
        await self._handshake_event.wait()
        if self._error is not None:
            raise self._error

    # -- tasks ---------------------------------------------------------------

    # KI protection: a Ctrl-C while this task runs is raised in the main task
    # instead (at its next checkpoint), not here in the middle of a core update,
    # where its cleanup would close the connection and wake the caller with a
    # HandshakeError/ConnectionClosed beside the KeyboardInterrupt. The handler
    # runs in a task of its own, unprotected (it is the user's code).
    @trio.lowlevel.enable_ki_protection
    async def _run(
        self,
        handler: Handler | None = None,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """The connection's task: runs the timers until the core is terminated."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                if handler is not None:
                    # Started when the handshake completes (handler.py).
                    self._handler = handler
                    if self._handler_due:
                        self._start_handler()
                # In this task rather than a child of its own: a task (its
                # coroutine frames, context and cancel status) per idle
                # connection is ~1 KB.
                await self._timer_loop()
        finally:
            # However the task ends (the server or the connect() block
            # cancelled, a listener closed), the peer hears of it now rather
            # than at its idle timeout.
            self._close_abruptly()
            self._handler_not_started()
            self._endpoint.connections.pop(self._core, None)
            self._endpoint.demux.forget(self._core)
            self._closed_event.set()

    def _close_abruptly(self) -> None:
        """Send CONNECTION_CLOSE without waiting (for a task being torn down)."""
        core = self._core
        if core.is_closed:
            return
        try:
            now = trio.current_time()
            core.close(0, "endpoint shutting down", is_application=False, now=now)
            self._endpoint.send_now(core.datagrams_to_send(now))
            self._process_events()
        except Exception:
            log.debug("could not send CONNECTION_CLOSE to %r", self.peer_address, exc_info=True)

    def _refused(self, address: Any) -> None:
        """An ICMP port unreachable for the server's address: if the handshake
        is still running, nobody is listening there; end it now."""
        core = self._core
        if core.handshake_complete or core.is_closed:
            return  # afterwards, loss recovery and the idle timeout decide
        self._error_override = ConnectionRefused(
            f"connection refused: nothing listens on UDP {address[0]} port {address[1]}"
        )
        core.close(0, "connection refused", is_application=False, now=trio.current_time())
        self._process_events()

    def _fail(self, exc: BaseException) -> None:
        """An internal error while processing this connection: close it alone.

        Logged once with its traceback; the peer gets INTERNAL_ERROR
        (RFC 9000 §20.1) and every other connection of the endpoint goes on.
        """
        if self._failed:
            self._abandon()
            return
        self._failed = True
        log.error(
            "internal error in the QUIC connection with %r; closing it",
            self.peer_address,
            exc_info=exc,
        )
        self._error_override = ConnectionClosed(
            f"connection closed after an internal error: {exc!r}",
            is_application=False,
            error_code=TransportErrorCode.INTERNAL_ERROR,
        )
        try:
            core = self._core
            now = trio.current_time()
            if not core.is_closed:
                core.close(
                    TransportErrorCode.INTERNAL_ERROR,
                    "internal error",
                    is_application=False,
                    now=now,
                )
            # The close goes out first: event processing may be what is broken.
            self._endpoint.send_now(core.datagrams_to_send(now))
            self._after_input()
        except Exception:
            self._abandon()

    def _abandon(self) -> None:
        """Forget a connection whose core keeps failing: no more input, no timers."""
        if self._error is None:
            self._error = self._error_override or ConnectionClosed("connection failed")
        self._endpoint.connections.pop(self._core, None)
        self._endpoint.demux.forget(self._core)
        self._closed_event.set()
        self._handshake_event.set()
        self._accept_lot.unpark_all()
        self._unpark_openers()
        for stream in list(self._streams.values()):
            stream._wake()
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    def _on_early_stream(self) -> None:
        """A server that accepted 0-RTT starts its handler on the 0-RTT streams
        now, not a round trip later (its replies go out as 0.5-RTT data)."""
        core = self._core
        if not core.is_client and core.early_data_accepted:
            self._early_streams = True
            self._handshake_event.set()
            self._start_handler()

    def __repr__(self) -> str:
        side = "client" if self._core.is_client else "server"
        return f"<Connection {side} peer={self.peer_address!r} alpn={self.alpn!r}>"


_STREAM_EVENTS = frozenset(
    {
        StreamOpened,
        StreamReadable,
        StreamWritable,
        StreamResetReceived,
        StopSendingReceived,
        StreamsAvailable,
    }
)


def is_peer_stream(core: QuicConnection, stream_id: int) -> bool:
    return stream_is_client_initiated(stream_id) != core.is_client
