"""The HTTP/3 mapping: the same services over HTTP/3 on the RPC server's port.

``rpc.Server`` registers it for ALPN ``h3`` unless made with ``http3=False``
(:func:`enable_http3` does it for a server made without). Each ``h3``
connection is served by :func:`ghostwire.http3.net.server.serve_h3_connection`
with a native handler; each request goes through the server's own hooks
(``connection_state``, ``admit``, ``track_call``) and its
:class:`~.dispatch.Dispatcher`, so a method has one implementation and the
same limits whatever the transport. docs/protocol.md §11 is the specification:

* ``POST /<service>/<method>``, the arguments a msgpack (or JSON) map;
* a reply ``200`` with the result, or an HTTP error status, the RPC status in
  ``rpc-status`` and a ``{"code", "message", "details"}`` body;
* an event channel streams length-prefixed events (the QUIC protocol's
  MESSAGE frames) and ends with its TRAILERS frame and HTTP trailers;
* ``rpc-timeout`` (seconds) is the deadline; ``rpc-meta-*`` headers are the metadata.

Per request the handler runs the call itself (unary) or starts it in the
connection's nursery (event channels, bridged to the response body by an
unbuffered memory channel, so flow control pushes back into the channel's
bounded buffer). Either way a task waits for the client to reset the stream
and cancels the call at once.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import unquote

import trio

from .. import quic
from ..http3.config import H3Config
from ..http3.errors import H3ErrorCode
from ..http3.net.server import Request, Response, ResponseEnd, serve_h3_connection
from ..http3.net.session import H3Session
from .context import Context
from .events import Event
from .framing import MessageTooLarge
from .h3_headers import (
    HTTP_STATUS,
    RequestFormat,
    error_headers,
    negotiate,
    parse_after,
    parse_metadata,
    parse_timeout,
)
from .service import Method, MethodKind
from .status import RpcError, Status

if TYPE_CHECKING:
    from .server import ConnectionState, Server

log = logging.getLogger("ghostwire.rpc")

H3_ALPN = "h3"
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _End:
    """The last item a subscription's task hands the response: how it ended."""

    error: RpcError | None


class Http3Mapping:
    """Serves one :class:`~.server.Server`'s services to HTTP/3 connections."""

    def __init__(self, server: Server, h3_config: H3Config | None = None) -> None:
        self.server = server
        self.h3_config = h3_config
        self.sessions: set[H3Session] = set()  # the connections being served

    async def serve_connection(self, conn: quic.Connection) -> None:
        """The ``h3`` ALPN's connection handler (``server.add_protocol``)."""
        server = self.server
        with server.connection_state(conn) as state:
            async with trio.open_nursery() as subscriptions:
                handler = functools.partial(self.handle, state, subscriptions)
                await serve_h3_connection(
                    conn,
                    handler,
                    h3_config=self.h3_config,
                    sessions=self.sessions,
                    draining=lambda: server.draining,
                )
                subscriptions.cancel_scope.cancel()

    def drain(self) -> None:
        """The server began a graceful shutdown: send every connection GOAWAY
        (RFC 9114 §5.2). Requests already received are answered; the client
        sends new ones elsewhere, and a request that crossed the GOAWAY is
        refused unprocessed with H3_REQUEST_REJECTED (safe to retry). The
        server closes the connections, with H3_NO_ERROR, once its calls ended."""
        for session in self.sessions:
            if not session.closed and session.h3.goaway_sent is None:
                session.h3.send_goaway()
                session.flush()

    async def handle(
        self, state: ConnectionState, nursery: trio.Nursery, request: Request
    ) -> Response:
        """One HTTP request: a call, or the start of a subscription."""
        response = await self._respond(state, nursery, request)
        # An error may answer before the body was read: once it is sent, the
        # client need not send the rest (it would wait for flow control credit).
        then = response.on_end

        def on_end(end: ResponseEnd) -> None:
            request.stop_reading()
            if then is not None:
                then(end)

        response.on_end = on_end
        return response

    async def _respond(
        self, state: ConnectionState, nursery: trio.Nursery, request: Request
    ) -> Response:
        fmt = negotiate(request)
        try:
            if request.method != "POST":
                return fmt.error_response(
                    RpcError(Status.UNIMPLEMENTED, "RPC calls are POST requests"),
                    status=405,
                    extra=[("allow", "POST")],
                )
            self.server.admit(state)
            method = self.server.dispatcher.resolve(_method_name(request.path))
            fmt.check_content_type()
            kwargs = fmt.decode_arguments(await self._read_body(request))
            ctx = Context.from_timeout(
                method.name,
                parse_timeout(request),
                metadata=parse_metadata(request.headers),
                peer=state.peer,
                resume_after=parse_after(request),
            )
        except RpcError as exc:
            return fmt.error_response(exc)
        if method.kind is MethodKind.UNARY:
            return await self._call(state, request, ctx, method, kwargs, fmt)
        if method.kind is MethodKind.EVENTS:
            return await self._subscribe(state, nursery, request, ctx, method, kwargs, fmt)
        error = RpcError(
            Status.UNIMPLEMENTED,
            f"{method.name} is a bidirectional stream: not offered over HTTP/3",
        )
        return fmt.error_response(error)

    async def _read_body(self, request: Request) -> bytes:
        limit = self.server.limits.max_message_size
        declared = request.header("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise MessageTooLarge(int(declared), limit)
        body = bytearray()
        async for chunk in request.iter_bytes():
            body += chunk
            if len(body) > limit:
                raise MessageTooLarge(len(body), limit)
        return bytes(body)

    # -- unary calls -------------------------------------------------------------

    async def _call(
        self,
        state: ConnectionState,
        request: Request,
        ctx: Context,
        method: Method,
        kwargs: dict[str, Any],
        fmt: RequestFormat,
    ) -> Response:
        dispatcher = self.server.dispatcher
        # The call counts as in flight until its reply is sent (Response.on_end),
        # so a graceful shutdown waits for the reply, not just the handler.
        tracking = ExitStack()
        tracking.enter_context(self.server.track_call(state, ctx, subscription=False))
        try:
            result, error = await _guarded(
                request, ctx, lambda: dispatcher.unary(ctx, method, (), kwargs)
            )
            response = _unary_response(ctx, fmt, result, error)
        except BaseException:
            tracking.close()
            raise
        response.on_end = lambda _: tracking.close()
        return response

    # -- event channels ------------------------------------------------------------

    async def _subscribe(
        self,
        state: ConnectionState,
        nursery: trio.Nursery,
        request: Request,
        ctx: Context,
        method: Method,
        kwargs: dict[str, Any],
        fmt: RequestFormat,
    ) -> Response:
        """Start the subscription; answer once its first event (or its end) is known,
        so a subscription refused at once gets a plain HTTP error."""
        sender, receiver = trio.open_memory_channel[bytes | _End](0)
        nursery.start_soon(self._produce, state, request, ctx, method, kwargs, fmt, sender)
        try:
            first = await receiver.receive()
        except BaseException:
            receiver.close()
            raise
        if isinstance(first, _End) and first.error is not None:
            receiver.close()
            return fmt.error_response(first.error)
        response = Response(200, [("content-type", fmt.events_type), ("rpc-status", "0")])
        response.content = _stream_events(first, receiver, fmt, response)
        return response

    async def _produce(
        self,
        state: ConnectionState,
        request: Request,
        ctx: Context,
        method: Method,
        kwargs: dict[str, Any],
        fmt: RequestFormat,
        sender: trio.MemorySendChannel[bytes | _End],
    ) -> None:
        """The subscription's task: runs the channel, hands each encoded event over."""

        async def send(event: Event) -> None:
            try:
                chunk = fmt.encode_event(event)
            except RpcError as exc:
                log.error("%s yielded an event the codec cannot carry: %r", ctx.method, event)
                raise fmt.unencodable(exc) from None
            try:
                await sender.send(chunk)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                ctx.cancel(Status.CANCELLED, "the caller went away")
                await trio.lowlevel.checkpoint()
                raise RpcError(Status.CANCELLED, "the caller went away") from None

        dispatcher = self.server.dispatcher
        async with sender:
            with self.server.track_call(state, ctx, subscription=True):
                _, error = await _guarded(
                    request, ctx, lambda: dispatcher.events(ctx, method, (), kwargs, send)
                )
                try:
                    await sender.send(_End(error))
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass  # the response already ended: nobody to tell


def _unary_response(
    ctx: Context, fmt: RequestFormat, result: Any, error: RpcError | None
) -> Response:
    if error is not None:
        return fmt.error_response(error)
    try:
        body = fmt.encode_value(result)
    except RpcError as exc:
        log.error("%s returned a value the codec cannot carry: %r", ctx.method, type(result))
        return fmt.error_response(fmt.unencodable(exc))
    return Response(200, [("content-type", fmt.content_type), ("rpc-status", "0")], body)


async def _stream_events(
    first: bytes | _End,
    receiver: trio.MemoryReceiveChannel[bytes | _End],
    fmt: RequestFormat,
    response: Response,
) -> AsyncIterator[bytes]:
    """The response body of a subscription: its events, then the final frame
    (and the status as HTTP trailers). Closing it ends the subscription."""
    try:
        item = first
        while not isinstance(item, _End):
            yield item
            item = await receiver.receive()
        response.trailers = error_headers(item.error)
        yield fmt.encode_end(item.error)
    finally:
        receiver.close()


async def _guarded(
    request: Request, ctx: Context, run: Callable[[], Awaitable[T]]
) -> tuple[T | None, RpcError | None]:
    """``run()``'s result or RpcError, cancelling the call at once if the client
    resets the stream meanwhile (the dispatcher then reports CANCELLED, or
    DEADLINE_EXCEEDED once the deadline passed)."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_cancel_on_abort, request, ctx)
        try:
            return await run(), None
        except RpcError as exc:
            return None, exc
        finally:
            nursery.cancel_scope.cancel()


async def _cancel_on_abort(request: Request, ctx: Context) -> None:
    code = await request.wait_aborted()
    ctx.cancel(Status.CANCELLED, f"the caller reset the stream (0x{code:x})")


def _method_name(path: str) -> str:
    """``/<service>/<method>`` as the dispatcher's ``service.method``."""
    parts = path.split("?", 1)[0].split("/")
    if len(parts) != 3 or parts[0] or not parts[1] or not parts[2]:
        message = f"no method at {path!r}: calls are POST /<service>/<method>"
        raise RpcError(Status.UNIMPLEMENTED, message)
    return f"{unquote(parts[1])}.{unquote(parts[2])}"


def enable_http3(server: Server, *, h3_config: H3Config | None = None) -> Http3Mapping:
    """Serve ``server``'s services over HTTP/3 too (ALPN ``h3``, same port)."""
    mapping = Http3Mapping(server, h3_config)
    server.add_protocol(
        H3_ALPN,
        mapping.serve_connection,
        on_drain=mapping.drain,
        close_code=H3ErrorCode.H3_NO_ERROR,  # a graceful close (RFC 9114 §5.2)
    )
    return mapping


__all__ = ["H3_ALPN", "HTTP_STATUS", "Http3Mapping", "enable_http3"]
