"""The HTTP/3 server: ASGI 3 applications, or a small native handler form.

``await nursery.start(partial(ghostwire.http3.serve, app, port, config, host=host))``
serves ``app`` over HTTP/3 and reports a server object (``.port``) through
``task_status``, in ``trio.serve_ssl_over_tcp``'s shape (the old order
``serve(app, host, port, config)`` still works, with a DeprecationWarning).
``app`` is either

* an ASGI 3 application, ``async def app(scope, receive, send)`` (HTTP
  scope, streaming request and response bodies, the
  ``http.response.trailers`` extension), so ASGI frameworks run over HTTP/3
  on trio; or
* a native handler, ``async def handler(request) -> Response``.

The two are told apart by their number of parameters. Each request runs
in its connection's nursery; when a connection closes, its requests are
cancelled. A native handler that cannot suspend (an ``async def`` with no
``await``, ``async for`` or ``async with``) is run as the request arrives,
without a task, and a response it gives whole (bytes, no trailers) is sent
at once; anything else continues in the request's task. When ``serve`` is
cancelled, each connection is sent GOAWAY and given ``shutdown_timeout``
seconds to finish the requests in progress and have their responses
delivered; a response still unfinished then is reset (H3_REQUEST_CANCELLED),
so its client sees it incomplete, and the connection closes. A native
:class:`Response` may carry ``on_end``, called once when the response ended,
delivered or not (an access log writes its line there).
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
from collections.abc import AsyncIterable, Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

import trio

from ...quic.config import ServerConfig
from ...quic.net.api import QuicServer, legacy_serve_arguments, unwrapping_nursery
from ...quic.net.api import serve as quic_serve
from ...quic.net.connection import Connection
from ...quic.net.exceptions import ConnectionClosed, HandshakeError
from ...quic.net.suspension import may_suspend, run_to_end
from ..config import H3Config
from ..errors import H3ErrorCode, InvalidHeaders
from ..events import Headers
from .asgi import run_asgi
from .fields import TextHeaders, first_value, split_pseudo, to_text, to_wire
from .session import H3Session, HttpStreamError, MessageChannel

log = logging.getLogger("ghostwire.http3")

Scope = dict[str, Any]
ASGIReceive = Callable[[], Awaitable[dict[str, Any]]]
ASGISend = Callable[[MutableMapping[str, Any]], Awaitable[None]]  # any mapping, as apps send
ASGIApp = Callable[[Scope, ASGIReceive, ASGISend], Awaitable[None]]


@dataclass
class Request:
    """A request as the native handler sees it; the body streams."""

    method: str
    path: str
    authority: str
    scheme: str
    headers: list[tuple[str, str]]
    client: tuple[str, int] | None
    _channel: MessageChannel = field(repr=False)

    def header(self, name: str, default: str | None = None) -> str | None:
        return first_value(self.headers, name, default)

    async def iter_bytes(self) -> Any:
        while chunk := await self._channel.receive_some():
            yield chunk

    async def read(self) -> bytes:
        body = bytearray()
        async for chunk in self.iter_bytes():
            body += chunk
        return bytes(body)

    @property
    def trailers(self) -> TextHeaders:
        return to_text(self._channel.trailers or [])

    def stop_reading(self) -> None:
        """Ask the client to stop sending a request body the response does not
        need (STOP_SENDING with H3_NO_ERROR, RFC 9114 §4.1). Call it once the
        response is complete (``Response.on_end``), so the client has it whole
        before its upload ends; a no-op once the whole request arrived."""
        channel = self._channel
        session = channel.session
        if channel.ended or channel.error is not None or session.closed:
            return
        session.h3.stop_receiving(channel.stream_id)
        session.flush()

    async def wait_aborted(self) -> int:
        """Wait until the client resets the request stream or stops the
        response (STOP_SENDING); returns its error code. A handler that must
        stop work the client no longer wants waits here in a task of its own."""
        channel = self._channel
        while True:
            if channel.stopped_code is not None:
                return channel.stopped_code
            if channel.error is not None:
                return channel.error.error_code or 0
            await channel._lot.park()  # woken on every change to the stream


@dataclass(frozen=True)
class ResponseEnd:
    """How a native response ended, as :attr:`Response.on_end` hears it."""

    complete: bool
    """The whole response (body, trailers, end of stream) went to QUIC."""
    body_bytes: int
    """Body bytes sent; for a response cut short, less those its reset
    discarded unacknowledged (to within a few bytes of frame headers)."""


@dataclass
class Response:
    """What a native handler returns. ``content`` may be bytes or an async iterable.

    An async iterable with an ``aclose()`` method is closed once the response
    ends, finished or not. ``on_end``, if given, is called once then. With a
    streamed body, ``trailers`` is read once the body ended, so the body's
    producer may set them (a status known only at the end).
    """

    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    content: bytes | str | AsyncIterable[bytes] = b""
    trailers: list[tuple[str, str]] = field(default_factory=list)
    on_end: Callable[[ResponseEnd], None] | None = None


NativeHandler = Callable[[Request], Awaitable[Response]]


def _is_native(app: Callable[..., Any]) -> bool:
    try:
        params = [
            p
            for p in inspect.signature(app).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):
        return False
    return len(params) == 1


async def serve(
    app: ASGIApp | NativeHandler,
    port: int,
    config: ServerConfig,
    *legacy: Any,
    host: str | None = None,
    h3_config: H3Config | None = None,
    shutdown_timeout: float = 5.0,
    task_status: trio.TaskStatus[QuicServer] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve HTTP/3 on ``port`` (every interface, or ``host``) until cancelled;
    see the module docs."""
    port, config, host = legacy_serve_arguments(port, config, legacy, host, "serve")
    if not config.alpn:
        config = dataclasses.replace(config, alpn=["h3"])
    if "h3" not in config.alpn:
        raise ValueError("an HTTP/3 server config must offer ALPN 'h3'")
    native = _is_native(app)
    sessions: set[H3Session] = set()
    draining = False

    async def handle_connection(conn: Connection) -> None:
        await _serve_connection(conn, app, native, h3_config, sessions, lambda: draining)

    # The QUIC server (its receive loop and timers, the connections and their
    # requests) runs shielded: cancelling serve() first drains the sessions,
    # with packets still flowing, and only then stops it.
    quic_scope = trio.CancelScope(shield=True)

    async def run_quic(*, task_status: trio.TaskStatus[QuicServer]) -> None:
        with quic_scope:
            await quic_serve(handle_connection, port, config, host=host, task_status=task_status)

    async with unwrapping_nursery() as nursery:
        server: QuicServer = await nursery.start(run_quic)
        task_status.started(server)
        try:
            await trio.sleep_forever()
        finally:
            draining = True
            with trio.CancelScope(shield=True):
                async with trio.open_nursery() as drain:
                    for session in list(sessions):
                        drain.start_soon(session.graceful_shutdown, shutdown_timeout)
            quic_scope.cancel()
    raise AssertionError("unreachable")  # pragma: no cover


async def serve_h3_connection(
    conn: Connection,
    handler: NativeHandler | ASGIApp,
    *,
    h3_config: H3Config | None = None,
    sessions: set[H3Session] | None = None,
    draining: Callable[[], bool] = lambda: False,
) -> None:
    """Serve HTTP/3 on one QUIC connection (ALPN ``h3``) that another server
    accepted, until it closes: how a server that speaks several protocols on
    one port hands its ``h3`` connections over. ``handler`` is a native
    handler or an ASGI app, as for :func:`serve`. The caller owns shutdown:
    closing ``conn`` ends the requests still running. The session is in
    ``sessions`` while it runs (the caller's shutdown sends each GOAWAY), and
    is sent GOAWAY at once if ``draining()`` says the caller is stopping."""
    found = set() if sessions is None else sessions
    await _serve_connection(conn, handler, _is_native(handler), h3_config, found, draining)


async def _serve_connection(
    conn: Connection,
    app: Any,
    native: bool,
    h3_config: H3Config | None,
    sessions: set[H3Session],
    draining: Callable[[], bool],
) -> None:
    inline = native and not may_suspend(app)
    async with trio.open_nursery() as nursery:

        def on_request(channel: MessageChannel) -> None:
            # channel.session, not the ``session`` below: requests that came
            # with the handshake are dispatched while H3Session() is running.
            handler = app
            if inline:
                handler = _answer_inline(channel.session, channel, app)
                if handler is None:
                    return  # answered whole: no task
            nursery.start_soon(_handle_request, channel.session, channel, handler, native)

        session = H3Session(conn, h3_config, on_request=on_request)
        sessions.add(session)
        try:
            if draining():  # connected while the server is stopping
                session.h3.send_goaway()
                session.flush()
            await session.closed_event.wait()
        finally:
            sessions.discard(session)
            # serve() drained the session before cancelling us, if it could.
            with trio.CancelScope(shield=True):
                await session.aclose()
        nursery.cancel_scope.cancel()


async def _handle_request(
    session: H3Session,
    channel: MessageChannel,
    app: Any,
    native: bool,
) -> None:
    try:
        if session.conn.core.stream_opened_in_early_data(channel.stream_id):
            await _admit_early_request(session, channel)
        if native:
            await _run_native(channel, app, session.conn.peer_address)
        else:
            await run_asgi(channel, app, session.conn.peer_address, session.conn.local_address)
        session.response_finished(channel.stream_id)
    except (HttpStreamError, ConnectionClosed, HandshakeError) as exc:
        # HandshakeError: a 0-RTT request waited for a handshake that failed.
        log.debug("request stream %d ended: %s", channel.stream_id, exc)
        if not session.closed:
            # Abort what is left of the stream. A request the client reset
            # before it was complete gets H3_REQUEST_INCOMPLETE (RFC 9114
            # §4.1); left open, our response side would keep the stream from
            # ever closing, and its credit (MAX_STREAMS) would never return.
            code = H3ErrorCode.H3_REQUEST_INCOMPLETE
            if channel.error is None:  # the client stopped our response (STOP_SENDING)
                code = H3ErrorCode.H3_REQUEST_CANCELLED
            channel.cancel(code)
    except InvalidHeaders as exc:
        log.warning("handler produced invalid response headers: %s", exc)
        channel.cancel(H3ErrorCode.H3_INTERNAL_ERROR)
    except Exception:
        log.exception("unhandled error in HTTP/3 handler")
        await _internal_error(channel)
    finally:
        session.forget(channel.stream_id)


# RFC 9110 §9.2.1: methods that ask for no change on the server.
_SAFE_METHODS = frozenset((b"GET", b"HEAD", b"OPTIONS", b"TRACE"))


async def _admit_early_request(session: H3Session, channel: MessageChannel) -> None:
    """A request that came in 0-RTT may be a replay (RFC 8446 §8). A safe one
    runs at once, marked ``early-data: 1`` (RFC 8470 §5.1) so the application
    can still answer 425 Too Early; any other waits until the handshake
    completes, which a replayed flight never does (RFC 8470 §3)."""
    headers = channel.headers
    assert headers is not None
    method = next((value for name, value in headers if name == b":method"), b"")
    headers.append((b"early-data", b"1"))
    if method not in _SAFE_METHODS:
        await session.conn.wait_handshake()


async def _internal_error(channel: MessageChannel) -> None:
    if channel.session.closed:
        return
    try:
        if not channel.response_started:
            await channel.send_headers(
                [(b":status", b"500"), (b"content-type", b"text/plain")], end_stream=False
            )
            await channel.send_data(b"internal server error\n", end_stream=True)
        else:
            channel.cancel(H3ErrorCode.H3_INTERNAL_ERROR)
    except (HttpStreamError, trio.BrokenResourceError):
        # The client reset the stream: abort our side too, or the stream
        # never closes (RFC 9114 §4.1; see _handle_request).
        channel.cancel(H3ErrorCode.H3_INTERNAL_ERROR)


def _native_request(channel: MessageChannel, peer: Any) -> Request:
    assert channel.headers is not None
    pseudo, regular = split_pseudo(channel.headers)
    return Request(
        method=pseudo.get(b":method", b"").decode(),
        path=pseudo.get(b":path", b"/").decode("latin-1"),
        authority=pseudo.get(b":authority", b"").decode("latin-1"),
        scheme=pseudo.get(b":scheme", b"https").decode(),
        headers=to_text(regular),
        client=tuple(peer[:2]) if peer else None,
        _channel=channel,
    )


async def _run_native(channel: MessageChannel, handler: NativeHandler, peer: Any) -> None:
    response = await handler(_native_request(channel, peer))
    complete = False
    try:
        await _send_native(channel, response)
        complete = True
    finally:
        await _close_content(response.content)
        _report_end(channel, response, complete)


def _report_end(channel: MessageChannel, response: Response, complete: bool) -> None:
    if response.on_end is not None:
        body_bytes = channel.body_sent if complete else channel.body_delivered
        response.on_end(ResponseEnd(complete, body_bytes))


def _answer_inline(
    session: H3Session, channel: MessageChannel, handler: NativeHandler
) -> NativeHandler | None:
    """Answer a request without a task, as its headers arrive: for a handler
    that cannot suspend (``ghostwire.quic.net.suspension``: it runs to its
    end in one step, as in a task of its own) whose response is given whole
    (bytes, no trailers) and fits the send buffer. None when answered; else
    the handler for the request's task to run instead, which finishes the
    job as usual: returns the response (a streamed or large one), or raises
    the handler's exception (the task's error handling applies).

    Not for a request that came in 0-RTT (its admission may wait for the
    handshake). Called while the connection processes events: the response
    leaves with the flush that follows them.
    """
    if session.conn.core.stream_opened_in_early_data(channel.stream_id):
        return handler
    try:
        response: Response = run_to_end(
            handler(_native_request(channel, session.conn.peer_address))
        )
    except Exception as exc:
        return _raising(exc)
    try:
        sent = _send_native_nowait(channel, response, inline=True)
    except Exception as exc:
        _report_end(channel, response, complete=False)
        return _raising(exc)
    if not sent:
        return _returning(response)
    try:
        session.response_finished(channel.stream_id)
        _report_end(channel, response, complete=True)
    except Exception:
        log.exception("unhandled error in HTTP/3 handler")
        channel.cancel(H3ErrorCode.H3_INTERNAL_ERROR)
    finally:
        session.forget(channel.stream_id)
    return None


def _raising(exc: Exception) -> NativeHandler:
    async def handler(request: Request) -> Response:
        raise exc

    return handler


def _returning(response: Response) -> NativeHandler:
    async def handler(request: Request) -> Response:
        return response

    return handler


def _response_head(response: Response, body: bytes | None) -> Headers:
    """The response's header section; with content-length for a body given whole."""
    head: Headers = [(b":status", str(response.status).encode())]
    head += to_wire(response.headers)
    if body is not None and not any(n == b"content-length" for n, _ in head):
        head.append((b"content-length", str(len(body)).encode()))
    return head


def _send_native_nowait(channel: MessageChannel, response: Response, *, inline: bool) -> bool:
    """Send a response given whole (bytes, no trailers) without a schedule
    point; False (nothing sent) for any other, or one the send buffer cannot
    take now."""
    content = response.content
    if not isinstance(content, bytes | str) or response.trailers:
        return False
    body = content.encode() if isinstance(content, str) else content
    channel.response_started = True
    return channel.send_message_nowait(_response_head(response, body), body, inline=inline)


async def _send_native(channel: MessageChannel, response: Response) -> None:
    if _send_native_nowait(channel, response, inline=False):
        return  # sent whole without a schedule point: the task ends here
    content = response.content
    channel.response_started = True
    if isinstance(content, bytes | str):
        trailers = to_wire(response.trailers)
        body = content.encode() if isinstance(content, str) else content
        head = _response_head(response, body)
        await channel.send_headers(head, end_stream=not body and not trailers)
        if body:
            await channel.send_data(body, end_stream=not trailers)
    else:
        await channel.send_headers(_response_head(response, None))
        async for chunk in content:
            await channel.send_data(bytes(chunk))
        # Read after the body: a streamed body may decide its trailers as it ends.
        trailers = to_wire(response.trailers)
        if not trailers:
            await channel.send_data(b"", end_stream=True)
    if trailers:
        await channel.send_trailers(trailers)


_CLOSE_TIMEOUT = 1.0  # seconds an abandoned body's aclose() may take


async def _close_content(content: object) -> None:
    aclose = getattr(content, "aclose", None)
    if aclose is None:
        return
    with trio.CancelScope(shield=True) as scope:
        scope.deadline = trio.current_time() + _CLOSE_TIMEOUT
        try:
            await aclose()
        except Exception:
            log.exception("closing a response body failed")
