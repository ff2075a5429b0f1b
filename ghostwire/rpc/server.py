"""The RPC server: services over QUIC, one stream per call (ALPN ``ghostwire-rpc``).

::

    server = rpc.Server([zvm], config=quic.ServerConfig(alpn=["ghostwire-rpc"], ...))
    listener = await nursery.start(server.serve, 4433)      # listener.port
    ...
    await server.shutdown(grace=10.0)                       # serve() then returns

Per connection, the negotiated ALPN picks the protocol handler
(:meth:`Server.add_protocol`; ``ghostwire-rpc`` is built in, ``h3`` is the
HTTP/3 mapping's, registered unless ``Server(..., http3=False)``; see
:mod:`.http3`). The server's ALPN list is the set of registered protocols,
whatever the config says.

Per call (one bidirectional stream), a task reads the request to its FIN,
admits it (not draining, within the connection's concurrency and the client's
rate), and hands it to the :class:`~.dispatch.Dispatcher`; a hook on the stream
cancels the handler at once if the caller resets the stream (no extra task). The
reply (result, trailer and FIN) is one write. A request that arrived whole is
read, and its reply queued, without a schedule point (see :mod:`.transport`):
a call whose handler may wait costs its task one step if it does not. A unary
call whose request arrived whole and whose handler cannot wait
(:meth:`.Dispatcher.runs_inline`) costs no task at all: it is read, run and
answered as its stream opens (:meth:`Server._take_call`), with the same
limits, metrics, deadline and error mapping. Nothing is queued here: QUIC's
MAX_STREAMS bounds the calls in flight and flow control pushes back.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import trio

from .. import quic
from ..quic.net.exceptions import QuicError
from .bidi import BidiStream
from .codec import encode
from .context import Context, Peer
from .dispatch import Dispatcher, DispatchStats, Interceptor
from .events import Event
from .framing import HEADERS, MESSAGE, TRAILERS, FramingError, encode_frame
from .limits import Limits, RateLimiter
from .resilience import ServerMetrics, ServerSnapshot
from .resilience.health import HealthStatus, health_service
from .service import Method, MethodKind, Service
from .status import RpcError, Status
from .transport import FrameReader, close_ended, close_now, send_nowait, send_room
from .wire import (
    ALPN,
    DEADLINE_CODE,
    GOAWAY_CLOSE_CODE,
    KIND_CALL,
    KIND_EVENTS,
    KIND_STREAM,
    OK_TRAILER,
    REFUSED_CODE,
    RequestHeader,
    encode_event,
    encode_reply,
    encode_trailer,
    parse_arguments,
    parse_header_cached,
)

log = logging.getLogger("ghostwire.rpc")

ConnectionHandler = Callable[[quic.Connection], Awaitable[None]]
SHUTDOWN_MESSAGE = "the server is shutting down"
ACK_WAIT = 1.0  # at shutdown, the longest we wait for the last replies to be acknowledged
_GONE = (QuicError, trio.BrokenResourceError, trio.ClosedResourceError)
_CALLER_GONE = (Status.CANCELLED, Status.DEADLINE_EXCEEDED)  # ctx.cancel statuses
#: The trailer key that marks a call refused unprocessed
#: (docs/rpc-client.md, "Server restarts and draining").
REFUSED_KEY = "refused"


class _Refused(RpcError):
    """A call refused before it started (the server is draining): its
    trailer says so, so the client may send it elsewhere whatever the method."""


def _describe_service(server: Server) -> Service:
    """``rpc.describe()``: what a client learns right after connecting."""
    builtin = Service("rpc")

    @builtin.call(idempotent=True)
    async def describe(ctx: Context) -> dict[str, Any]:
        return server.describe()

    return builtin


class RpcListener:
    """What :meth:`Server.serve` reports: the bound port and the QUIC server."""

    def __init__(self, server: Server, quic_server: quic.QuicServer) -> None:
        self.server = server
        self.quic = quic_server

    @property
    def port(self) -> int:
        return self.quic.port

    @property
    def address(self) -> tuple[str, int]:
        return self.quic.address


class ConnectionState:
    """One client connection as the server's limits see it (any transport).

    ``peer`` is what handlers get as ``ctx.peer``; ``calls`` counts the calls
    running on the connection; ``rate_key`` is the client address the
    calls-per-second limit counts against. Made by :meth:`Server.connection_state`.
    """

    __slots__ = ("calls", "conn", "peer", "rate_key")

    def __init__(self, conn: quic.Connection) -> None:
        self.conn = conn
        self.peer = Peer(conn.peer_address, tuple(conn.peer_certificates))
        address = conn.peer_address
        self.rate_key = address[0] if isinstance(address, tuple) else address
        self.calls = 0


class Server:
    """Serves ``services`` over QUIC; see the module docstring."""

    def __init__(
        self,
        services: Iterable[Service],
        *,
        config: quic.ServerConfig,
        limits: Limits | None = None,
        interceptors: Sequence[Interceptor] = (),
        http3: bool = True,
    ) -> None:
        services = list(services)
        self.dispatcher = Dispatcher(services, interceptors=interceptors)
        #: The health registry ``health.check`` / ``health.watch`` answer from.
        self.health = HealthStatus(service.name for service in services)
        taken = {service.name for service in services}
        builtins = [health_service(self.health), _describe_service(self)]
        # Built-in services (health, rpc) skip the interceptors and limits; an
        # application service of the same name replaces them.
        self._builtin = Dispatcher([b for b in builtins if b.name not in taken])
        self._metrics = ServerMetrics()
        self.limits = limits if limits is not None else Limits()
        self.config = config
        self._protocols: dict[str, ConnectionHandler] = {ALPN: self._serve_rpc_connection}
        self._close_codes = {ALPN: GOAWAY_CLOSE_CODE}  # per ALPN, at the end of shutdown
        self._drain_hooks: list[Callable[[], None]] = []
        rate = self.limits.max_calls_per_second
        self._rates = RateLimiter(rate, self.limits.burst) if rate is not None else None
        self._draining = False
        self._calls: set[Context] = set()  # unary calls and streams running
        self._subscriptions: set[Context] = set()
        self._call_tasks = 0
        self._changed = trio.lowlevel.ParkingLot()  # woken when a call ends
        self._connections: set[quic.Connection] = set()
        self._scopes: list[trio.CancelScope] = []
        self._listeners: list[quic.QuicServer] = []  # refuse new connections at shutdown
        self.rejected = 0
        if http3:  # the same services over HTTP/3 on the same port (docs/protocol.md §11)
            from .http3 import enable_http3

            enable_http3(self)

    # -- configuration -------------------------------------------------------

    def add_protocol(
        self,
        alpn: str,
        handler: ConnectionHandler,
        *,
        on_drain: Callable[[], None] | None = None,
        close_code: int = 0,
    ) -> None:
        """Serve connections that negotiate ``alpn`` with ``handler(conn)``
        (call before :meth:`serve`). ``ghostwire-rpc`` is built in.
        :meth:`shutdown` calls ``on_drain()`` as it begins (to tell the
        protocol's clients, e.g. HTTP/3 GOAWAY) and closes the protocol's
        connections with ``close_code``."""
        if alpn in self._protocols:
            raise ValueError(f"a handler for ALPN {alpn!r} is already registered")
        self._protocols[alpn] = handler
        self._close_codes[alpn] = close_code
        if on_drain is not None:
            self._drain_hooks.append(on_drain)

    @property
    def alpn_protocols(self) -> list[str]:
        return list(self._protocols)

    @property
    def draining(self) -> bool:
        """True once :meth:`shutdown` began: new calls get UNAVAILABLE."""
        return self._draining

    def metrics(self) -> ServerSnapshot:
        """Connections, calls in flight and per-method figures (plain data)."""
        return self._metrics.snapshot()

    def describe(self) -> dict[str, Any]:
        """What ``rpc.describe`` answers: the idempotent methods and the health."""
        methods = [*self.dispatcher.methods.values(), *self._builtin.methods.values()]
        idempotent = sorted(
            m.name for m in methods if m.kind is MethodKind.UNARY and m.options.idempotent
        )
        return {"idempotent": idempotent, "health": self.health.get().name}

    def statistics(self) -> dict[str, int]:
        stats: DispatchStats = self.dispatcher.statistics()
        return {
            "connections": len(self._connections),
            "calls_in_flight": stats.calls_in_flight,
            "subscriptions": stats.subscriptions,
            "events_buffered": stats.events_buffered,
            "events_buffered_peak": stats.events_buffered_peak,
            "events_dropped": stats.events_dropped,
            "calls_rejected": self.rejected,
        }

    # -- running -------------------------------------------------------------

    async def serve(
        self,
        port: int,
        *,
        host: str | None = None,
        task_status: trio.TaskStatus[RpcListener] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve on (host, port) until :meth:`shutdown` finishes (or cancelled)."""
        config = dataclasses.replace(self.config, alpn=list(self._protocols))
        async with trio.open_nursery() as nursery:
            self._scopes.append(nursery.cancel_scope)
            try:
                # Keywords: works with both argument orders of quic.serve.
                start = functools.partial(
                    quic.serve, handler=self._on_connection, host=host, port=port, config=config
                )
                quic_server = await nursery.start(start)
                self._listeners.append(quic_server)
                try:
                    if self._draining:
                        quic_server.refuse_new_connections()
                    task_status.started(RpcListener(self, quic_server))
                    await trio.sleep_forever()
                finally:
                    self._listeners.remove(quic_server)
            finally:
                self._scopes.remove(nursery.cancel_scope)

    async def shutdown(self, grace: float = 10.0) -> None:
        """Stop gracefully: new calls get UNAVAILABLE (a refusal clients send
        elsewhere; the health service says NOT_SERVING); calls in flight have
        ``grace`` seconds to finish (then end with UNAVAILABLE); subscriptions
        end with UNAVAILABLE and a clean trailer; then connections close and
        :meth:`serve` returns. New connections are refused from the start
        (CONNECTION_REFUSED, RFC 9000 §20.1), as gRPC closes its listeners:
        clients connect elsewhere instead of to a server that is leaving."""
        self._draining = True
        for listener in self._listeners:
            listener.refuse_new_connections()
        for drain in self._drain_hooks:
            drain()
        self.health.drain()
        with trio.move_on_after(grace):
            while self._calls:
                await self._changed.park()
        for ctx in [*self._calls, *self._subscriptions]:
            ctx.cancel(Status.UNAVAILABLE, SHUTDOWN_MESSAGE)
        with trio.move_on_after(max(1.0, grace)):  # the ended calls write their trailers
            while self._call_tasks:
                await self._changed.park()
        with trio.move_on_after(ACK_WAIT):
            await _wait_acknowledged(list(self._connections))
        for conn in list(self._connections):
            # On RPC connections a code that tells clients the calls left
            # unanswered never started (none is admitted while draining).
            await conn.aclose(self._close_codes.get(conn.alpn or "", 0), SHUTDOWN_MESSAGE)
        for scope in self._scopes:
            scope.cancel()

    # -- connections ---------------------------------------------------------

    async def _on_connection(self, conn: quic.Connection) -> None:
        handler = self._protocols.get(conn.alpn or "")
        if handler is None:  # cannot happen: ALPN negotiation picks one of ours
            await conn.aclose(0x1, f"no handler for ALPN {conn.alpn!r}")
            return
        self._connections.add(conn)
        self._metrics.connection_opened()
        try:
            await handler(conn)
        finally:
            self._connections.discard(conn)
            self._metrics.connection_closed()

    async def _serve_rpc_connection(self, conn: quic.Connection) -> None:
        with self.connection_state(conn) as state:
            # A call whose request is here whole and whose handler cannot
            # wait is answered as its stream opens (no task); any other gets a
            # task, started as its first frame is processed (no acceptor task
            # woken per call).
            take = functools.partial(self._take_call, state)
            await conn.serve_streams(inline=take)

    # -- the hooks every transport uses (the QUIC protocol here, HTTP/3 too) -----

    @contextmanager
    def connection_state(self, conn: quic.Connection) -> Iterator[ConnectionState]:
        """The limits' view of ``conn`` for as long as the block runs."""
        state = ConnectionState(conn)
        rates = self._rates
        if rates is not None:
            rates.attach(state.rate_key, trio.current_time())
        try:
            yield state
        finally:
            if rates is not None:
                rates.detach(state.rate_key)

    def admit(self, state: ConnectionState) -> None:
        """Raise RpcError unless a new call may start on ``state``'s connection:
        UNAVAILABLE while shutting down, RESOURCE_EXHAUSTED past a limit."""
        try:
            self._admit(state)
        except RpcError:
            self.rejected += 1
            raise

    @contextmanager
    def track_call(
        self, state: ConnectionState, ctx: Context, *, subscription: bool, counted: bool = True
    ) -> Iterator[None]:
        """Count the call on its connection and let :meth:`shutdown` find it
        (to wait for it, or end it with UNAVAILABLE via ``ctx.cancel``).
        ``counted=False`` (built-in services): not against the call limit."""
        registry = self._subscriptions if subscription else self._calls
        registry.add(ctx)
        state.calls += counted
        try:
            yield
        finally:
            self._call_finished(state, registry, ctx, counted)

    def _call_finished(
        self, state: ConnectionState, registry: set[Context], ctx: Context, counted: bool
    ) -> None:
        """A call's end, task-run or inline: off its connection's count and
        out of ``registry``; :meth:`shutdown` is told."""
        state.calls -= counted
        registry.discard(ctx)
        self._tell_shutdown()

    def _tell_shutdown(self) -> None:
        """A call or a call's task ended: wake :meth:`shutdown` if it waits."""
        if self._draining and self._changed:  # only shutdown() parks there
            self._changed.unpark_all()

    # -- calls ---------------------------------------------------------------

    def _admit(self, state: ConnectionState) -> None:
        if self._draining:
            raise _Refused(Status.UNAVAILABLE, SHUTDOWN_MESSAGE)
        limit = self.limits.max_concurrent_calls
        if limit is not None and state.calls >= limit:
            raise RpcError(
                Status.RESOURCE_EXHAUSTED, f"more than {limit} calls at once on this connection"
            )
        rates = self._rates
        if rates is not None and not rates.allow(state.rate_key, trio.current_time()):
            raise RpcError(
                Status.RESOURCE_EXHAUSTED,
                f"more than {rates.rate:g} calls per second from this client",
            )

    async def _read_request(
        self, state: ConnectionState, reader: FrameReader
    ) -> tuple[RequestHeader, Method, list[Any], dict[str, Any], bool]:
        """The request's header, method and arguments, and whether the method
        is a built-in one. A request that arrived whole (the usual case) is
        read at once; else frame by frame, without a schedule point while
        the bytes are already here."""
        whole = reader.receive_whole_nowait()
        if whole:
            pair = reader.take_pair_now(HEADERS, MESSAGE)
            if pair is not None:  # a call or a subscription: headers and arguments
                return self._parse_request(state, pair)
        frame = reader.next_frame_now() if whole else await reader.receive_frame_eager()
        if frame is None or frame[0] != HEADERS:
            raise FramingError("a request starts with a HEADERS frame")
        header = parse_header_cached(frame[1])
        method, builtin = self._method_for(state, header.method)
        frame = reader.next_frame_now() if whole else await reader.receive_frame_eager()
        if frame is None or frame[0] != MESSAGE:
            raise FramingError("the request headers must be followed by the arguments")
        args, kwargs = parse_arguments(frame[1])
        if header.kind != KIND_STREAM and (
            reader.next_frame_now() if whole else await reader.receive_frame_eager()
        ):
            raise FramingError("unexpected frame after the arguments of a call")
        return header, method, args, kwargs, builtin

    def _method_for(self, state: ConnectionState, name: str) -> tuple[Method, bool]:
        """The method called ``name`` and whether it is built in; a call to an
        application method is admitted first (RpcError if it may not start)."""
        method = self._builtin.methods.get(name)
        if method is not None:
            return method, True
        limited = self._rates is not None or self.limits.max_concurrent_calls is not None
        if limited or self._draining:
            self.admit(state)
        return self.dispatcher.methods.get(name) or self.dispatcher.resolve(name), False

    def _take_call(
        self, state: ConnectionState, stream: quic.QuicStream | quic.QuicReceiveStream
    ) -> Callable[[], Awaitable[None]] | None:
        """``serve_streams``' inline hook, as ``stream`` opens: a call whose
        request is here whole (headers, arguments and FIN) and whose handler
        cannot wait (:meth:`.Dispatcher.runs_inline`) is read, run and
        answered now, without a task (None). Any other call gets its task
        (returned), with what was read and parsed so far."""
        if not isinstance(stream, quic.QuicStream):  # the protocol has no unidirectional streams
            return stream.aclose
        try:
            return self._take_whole_call(state, stream)
        except _GONE as exc:  # as in a call's task (the handler's errors are mapped)
            log.debug("call on %r ended early: %s", state.conn, exc)
            return stream.aclose

    def _take_whole_call(
        self, state: ConnectionState, stream: quic.QuicStream
    ) -> Callable[[], Awaitable[None]] | None:
        reader = FrameReader(stream, self.limits.max_message_size)
        if not reader.receive_whole_nowait():
            return functools.partial(self._serve_call, state, stream, reader)
        pair = reader.take_pair_now(HEADERS, MESSAGE)
        if pair is None:  # not a plain call: the task reads it frame by frame
            return functools.partial(self._serve_call, state, stream, reader)
        try:
            request = self._parse_request(state, pair)
        except RpcError as exc:
            return self._answer_now(stream, _refusal_trailer(exc))
        header, method, args, kwargs, builtin = request
        dispatcher = self._builtin if builtin else self.dispatcher
        if (
            header.kind != KIND_CALL
            or not dispatcher.runs_inline(method)
            or _may_be_replayed(stream, method, builtin)  # waits for the handshake
        ):
            return functools.partial(self._serve_call, state, stream, reader, request)
        ctx = self._context(state, header, method)
        return self._answer_now(
            stream, self._run_now(state, ctx, dispatcher, method, args, kwargs, builtin)
        )

    def _answer_now(
        self, stream: quic.QuicStream, reply: bytes | None
    ) -> Callable[[], Awaitable[None]] | None:
        """Queue ``reply`` and the FIN, and close the stream, without a task
        (None) when the send buffer has room; else the task that sends it."""
        if reply is None:  # the caller went away: finish and stop what is left
            close_now(stream)
            return None
        if send_nowait(stream, reply, end_stream=True):
            close_ended(stream)
            return None
        return functools.partial(self._send_and_close, stream, reply)

    async def _send_and_close(self, stream: quic.QuicStream, reply: bytes) -> None:
        """The task of a reply the send buffer had no room for (counted as a
        call's task: shutdown waits for it to write the reply)."""
        self._call_tasks += 1
        try:
            await _send_reply(stream, reply)
        except _GONE as exc:
            log.debug("call on %r ended early: %s", stream.connection, exc)
        finally:
            self._call_tasks -= 1
            self._tell_shutdown()
            await stream.aclose()

    def _parse_request(
        self, state: ConnectionState, pair: tuple[bytes, bytes]
    ) -> tuple[RequestHeader, Method, list[Any], dict[str, Any], bool]:
        """A whole request's header, method (admitted) and arguments."""
        header = parse_header_cached(pair[0])
        method, builtin = self._method_for(state, header.method)
        args, kwargs = parse_arguments(pair[1])
        return header, method, args, kwargs, builtin

    @staticmethod
    def _context(state: ConnectionState, header: RequestHeader, method: Method) -> Context:
        timeout = header.timeout
        return Context(
            method.name,
            deadline=None if timeout is None else trio.current_time() + timeout,
            metadata=header.metadata,
            peer=state.peer,
            resume_after=header.after,
        )

    async def _serve_call(
        self,
        state: ConnectionState,
        stream: quic.QuicStream,
        reader: FrameReader | None = None,
        request: tuple[RequestHeader, Method, list[Any], dict[str, Any], bool] | None = None,
    ) -> None:
        """A call in a task of its own: ``reader`` holds what
        :meth:`_take_call` read, ``request`` what it parsed, if anything."""
        if reader is None:
            reader = FrameReader(stream, self.limits.max_message_size)
        self._call_tasks += 1
        ended = False  # both directions: the request read to its FIN, the reply's FIN queued
        try:
            try:
                if request is None:
                    request = await self._read_request(state, reader)
            except RpcError as exc:
                if not reader.at_eof:
                    stream.stop_sending(REFUSED_CODE)
                await _send_reply(stream, _refusal_trailer(exc))
                return
            header, method, args, kwargs, builtin = request
            if _may_be_replayed(stream, method, builtin):
                await state.conn.wait_handshake()
            ctx = self._context(state, header, method)
            reply = await self._run(state, ctx, header.kind, method, args, kwargs, reader, builtin)
            # The reply and FIN in one core write when the send buffer has room.
            if reply is not None and not send_nowait(stream, reply, end_stream=True):
                await stream.send_all(reply)
                await stream.send_eof()
            ended = reply is not None and reader.at_eof
        except _GONE as exc:
            log.debug("call on %r ended early: %s", state.conn, exc)
        finally:
            self._call_tasks -= 1
            self._tell_shutdown()
            if ended:  # nothing left to send or stop: no aclose (and its schedule point)
                close_ended(stream)
            else:
                await stream.aclose()

    async def _run(
        self,
        state: ConnectionState,
        ctx: Context,
        kind: str,
        method: Method,
        args: list[Any],
        kwargs: dict[str, Any],
        reader: FrameReader,
        builtin: bool,
    ) -> bytes | None:
        """Run the call under :meth:`track_call` and the metrics (inlined: per
        call): its reply (None: the caller went away, nothing to send)."""
        registry = self._subscriptions if kind == KIND_EVENTS else self._calls
        registry.add(ctx)
        counted = not builtin
        state.calls += counted
        status: int = Status.CANCELLED
        record = self._metrics.call_started(method.name) if counted else None
        started = trio.current_time()
        stream: quic.QuicStream = reader.stream
        dispatcher = self._builtin if builtin else self.dispatcher
        try:
            # The caller resetting the stream cancels the handler at once (no task).
            stream.on_peer_abort(functools.partial(_caller_aborted, ctx))
            if kind == KIND_CALL:
                reply = _reply_for(ctx, await dispatcher.unary(ctx, method, args, kwargs))
            elif kind == KIND_EVENTS:
                send = functools.partial(_send_event, stream, ctx)
                send_now = functools.partial(_send_events_now, stream)
                await dispatcher.events(ctx, method, args, kwargs, send, send_now)
                reply = OK_TRAILER
            else:
                bidi = _ServerBidiStream(reader, ctx)
                await dispatcher.stream(ctx, method, args, kwargs, bidi)
                reply = OK_TRAILER
            status = Status.OK
        except RpcError as exc:
            reply = encode_trailer(exc)
            status = exc.status
        finally:
            if record is not None:
                self._metrics.call_ended(record, status, trio.current_time() - started)
            self._call_finished(state, registry, ctx, counted)
        if ctx._cancel_status in _CALLER_GONE:
            return None  # the caller reset the stream: nobody to answer
        return reply

    def _run_now(
        self,
        state: ConnectionState,
        ctx: Context,
        dispatcher: Dispatcher,
        method: Method,
        args: list[Any],
        kwargs: dict[str, Any],
        builtin: bool,
    ) -> bytes | None:
        """:meth:`_run` for a unary call the dispatcher runs inline
        (:meth:`.Dispatcher.unary_now`): the same bookkeeping, metrics and
        reply, without a task. Nothing can reset the stream meanwhile, so no
        abort hook is needed."""
        calls = self._calls
        calls.add(ctx)
        counted = not builtin
        state.calls += counted
        status: int = Status.CANCELLED
        record = self._metrics.call_started(method.name) if counted else None
        started = trio.current_time()
        try:
            reply = _reply_for(ctx, dispatcher.unary_now(ctx, method, args, kwargs))
            status = Status.OK
        except RpcError as exc:
            reply = encode_trailer(exc)
            status = exc.status
        finally:
            if record is not None:
                self._metrics.call_ended(record, status, trio.current_time() - started)
            self._call_finished(state, calls, ctx, counted)
        if ctx._cancel_status in _CALLER_GONE:
            return None  # the handler cancelled its own call as the caller's going
        return reply


class _ServerBidiStream(BidiStream):
    """The handler's side: a caller that went away ends the call (CANCELLED)."""

    def __init__(self, reader: FrameReader, ctx: Context) -> None:
        super().__init__(reader, is_client=False)
        self._ctx = ctx

    async def send(self, message: Any) -> None:
        try:
            await super().send(message)
        except _GONE:
            await _caller_gone(self._ctx)

    async def receive(self) -> Any:
        try:
            return await super().receive()
        except _GONE:
            await _caller_gone(self._ctx)


def _may_be_replayed(stream: quic.QuicStream, method: Method, builtin: bool) -> bool:
    """A call to a method not marked idempotent that came in 0-RTT, which may
    be a replay (RFC 8446 §8): it waits for the handshake to complete, which a
    replayed flight never does (RFC 8470 §3), so it runs once."""
    return not (builtin or method.options.idempotent) and stream.early_data


async def _caller_gone(ctx: Context) -> Any:
    """The stream broke under the handler: cancel the call (the dispatcher
    reports CANCELLED) rather than let a transport error look like a bug."""
    ctx.cancel(Status.CANCELLED, "the caller went away")
    await trio.lowlevel.checkpoint()
    raise RpcError(Status.CANCELLED, "the caller went away")


def _caller_aborted(ctx: Context, code: int | None) -> None:
    """The caller reset the stream (or the connection closed): cancel the handler now."""
    if code == DEADLINE_CODE:
        ctx.cancel(Status.DEADLINE_EXCEEDED, "deadline exceeded (the caller gave up)")
    else:
        ctx.cancel(Status.CANCELLED, "the caller cancelled the call")


async def _send_event(stream: quic.QuicStream, ctx: Context, event: Event) -> None:
    try:
        data = encode_event(event)
    except RpcError:
        log.error("%s yielded an event the codec cannot carry: %r", ctx.method, event)
        raise RpcError(
            Status.INTERNAL, "internal error (details are in the server's log)"
        ) from None
    if send_nowait(stream, data):
        # No schedule point: the producer's put has one, and the sending loop
        # parks when the buffer is empty or the send buffer full.
        return
    try:
        await stream.send_all(data)
    except _GONE:
        await _caller_gone(ctx)


def _send_events_now(stream: quic.QuicStream, events: Sequence[Event]) -> int:
    """Queue the oldest of a burst of events in one write (they share
    packets), as many as the send buffer has room for, without a schedule
    point; how many. It stops before an event the codec cannot carry:
    :func:`_send_event` then reports it (and sends, waiting for room, an
    event that does not fit now)."""
    room = send_room(stream)
    chunks: list[bytes] = []
    for event in events:
        try:
            data = encode_event(event)
        except RpcError:
            break
        room -= len(data)
        if room < 0:
            break
        chunks.append(data)
    if not chunks or not send_nowait(stream, b"".join(chunks)):
        return 0
    return len(chunks)


def _reply_for(ctx: Context, result: Any) -> bytes:
    """A unary call's reply carrying ``result`` (INTERNAL if it cannot)."""
    try:
        return encode_reply(result)
    except RpcError:
        return _unencodable(ctx, result)


def _unencodable(ctx: Context, result: Any) -> bytes:
    """The reply of a call whose result the codec cannot carry: INTERNAL."""
    log.error("%s returned a value the codec cannot carry: %r", ctx.method, type(result))
    return encode_trailer(
        RpcError(Status.INTERNAL, "internal error (details are in the server's log)")
    )


def _refusal_trailer(error: RpcError) -> bytes:
    """The trailer of a call that never started; a draining server's refusal
    carries ``"refused": true`` (docs/rpc-client.md, "Server restarts and draining")."""
    if not isinstance(error, _Refused):
        return encode_trailer(error)
    trailer = {"status": int(error.status), "message": error.message, REFUSED_KEY: True}
    return encode_frame(TRAILERS, encode(trailer))


async def _send_reply(stream: quic.QuicStream, reply: bytes) -> None:
    """The reply and FIN: one core write without a schedule point when the
    send buffer has room, else ``send_all`` and ``send_eof``."""
    if not send_nowait(stream, reply, end_stream=True):
        await stream.send_all(reply)
        await stream.send_eof()


async def _wait_acknowledged(connections: list[quic.Connection]) -> None:
    """Let the last replies reach their callers before the connections close
    (CONNECTION_CLOSE would drop unacknowledged stream data)."""
    for conn in connections:
        await conn.wait_delivered()


async def serve(
    services: Iterable[Service],
    port: int,
    config: quic.ServerConfig,
    *,
    host: str | None = None,
    task_status: trio.TaskStatus[RpcListener] = trio.TASK_STATUS_IGNORED,
    **options: Any,
) -> None:
    """``Server(services, config=config, **options).serve(port, host=host)``."""
    server = Server(services, config=config, **options)
    await server.serve(port, host=host, task_status=task_status)


__all__ = ["ConnectionHandler", "ConnectionState", "RpcListener", "Server", "serve"]
