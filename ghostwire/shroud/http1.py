"""HTTP/1.1 over TCP (plaintext or TLS) with h11, for clients not yet on QUIC.

Each connection is a task; requests on it are handled one after another
(keep-alive, ``Content-Length`` and chunked bodies as h11 parses them).
Limits: ``keep_alive_timeout_ms`` of idleness between requests,
``request_timeout_ms`` to receive a whole request (else 408),
``send_timeout_ms`` for a write to make progress (a client that stops reading
is disconnected: :mod:`.sending`),
``max_request_body_size`` (else 413), ``max_connections`` at once (more get
503). Every response carries ``Alt-Svc`` naming the HTTP/3 port when HTTP/3
is served. A request asking for ``Upgrade: websocket`` on a WebSocket route
is switched to :mod:`ghostwire.shroud.websocket`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import h11
import trio

from .config import ServerProtocol
from .errors import HttpError
from .message import TEXT, Headers, UnifiedRequest, UnifiedResponse
from .sending import SendTimeoutStream
from .websocket import WebSocket, accept_headers, handshake_error, is_upgrade_request, run_handler

if TYPE_CHECKING:
    from .server import UnifiedServer

log = logging.getLogger("ghostwire.shroud")

RECEIVE_SIZE = 65536
MAX_HEAD_SIZE = 16 << 10
# RFC 9110 §7.6.1: connection-specific fields are not the application's to set.
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "upgrade", "te"}


@dataclass
class Http1Options:
    keep_alive_timeout: float
    request_timeout: float
    send_timeout: float
    max_body: int
    max_connections: int
    alt_svc: Callable[[], str | None]
    scheme: str


class _Reject(Exception):
    """Answer with ``status``/``message`` and close the connection."""

    def __init__(self, status: int, message: str) -> None:
        self.status, self.message = status, message


async def serve_connection(
    server: UnifiedServer, stream: trio.abc.Stream, options: Http1Options
) -> None:
    """Serve one TCP (or TLS) connection until it closes; never raises.

    Every write on it is bounded by ``options.send_timeout``: a client that
    stops reading gets its connection closed (:class:`SendTimeout`)."""
    stream = SendTimeoutStream(stream, options.send_timeout)
    stats = server.stats_counter
    stats.http1_connection_opened()
    try:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_SIZE)
        if stats.http1_active > options.max_connections:
            await _send_simple(stream, conn, 503, "Service Unavailable", options)
            return
        await _serve_requests(server, stream, conn, options)
    except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError) as exc:
        log.debug("HTTP/1.1 connection ended: %r", exc)
    except Exception:
        # One connection's failure must not reach the others (they share a nursery).
        log.exception("HTTP/1.1 connection failed")
    finally:
        stats.http1_connection_closed()
        with trio.move_on_after(1) as cleanup:
            cleanup.shield = True
            await trio.aclose_forcefully(stream)


async def _serve_requests(
    server: UnifiedServer, stream: trio.abc.Stream, conn: h11.Connection, options: Http1Options
) -> None:
    stats = server.stats_counter
    while True:
        try:
            received = await _read_request(stream, conn, options)
        except _Reject as reject:
            if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                await _send_simple(stream, conn, reject.status, reject.message, options)
            return
        if received is None:
            return
        head, body = received
        try:
            request = _unified_request(head, body, stream)
        except HttpError as error:  # a method the original did not know
            await _send_simple(stream, conn, error.status, error.message, options)
            return
        match = server.find_websocket(request)
        if match is not None and is_upgrade_request(request.headers):
            await _upgrade(server, stream, conn, request, match, options)
            return
        stats.request_started()  # a graceful stop waits until the response is out
        try:
            response = await server.respond(request)
            await _send_response(stream, conn, response, request.method == "HEAD", options)
        finally:
            stats.request_finished()
        if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
            return
        conn.start_next_cycle()


async def _read_request(
    stream: trio.abc.Stream, conn: h11.Connection, options: Http1Options
) -> tuple[h11.Request, bytes] | None:
    """The next request and its whole body; ``None`` if the client went away or idled.

    Idle time before a request's first byte is bounded by the keep-alive
    timeout; from that byte on, the head and body by the request timeout.
    """
    buffered, _ = conn.trailing_data  # a pipelined request may already be here
    if not buffered:
        data: bytes | bytearray = b""
        with trio.move_on_after(options.keep_alive_timeout):
            data = await stream.receive_some(RECEIVE_SIZE)
            if not data:
                return None
            conn.receive_data(bytes(data))
        if not data:
            return None  # idle past keep_alive_timeout
    with trio.move_on_after(options.request_timeout):
        event = await _next_event(stream, conn)
        if isinstance(event, h11.ConnectionClosed):
            return None
        assert isinstance(event, h11.Request)
        return event, await _read_body(stream, conn, event, options.max_body)
    raise _Reject(408, "Request Timeout")


async def _read_body(
    stream: trio.abc.Stream, conn: h11.Connection, head: h11.Request, max_body: int
) -> bytes:
    length = dict(head.headers).get(b"content-length")
    if length is not None and length.isdigit() and int(length) > max_body:
        raise _Reject(413, "Payload Too Large")  # before reading any of it
    if conn.they_are_waiting_for_100_continue:
        await stream.send_all(conn.send(h11.InformationalResponse(status_code=100, headers=[])))
    body = bytearray()
    while True:
        event = await _next_event(stream, conn)
        if isinstance(event, h11.Data):
            body += event.data
            if len(body) > max_body:
                raise _Reject(413, "Payload Too Large")
        elif isinstance(event, h11.EndOfMessage):
            return bytes(body)
        elif isinstance(event, h11.ConnectionClosed):
            raise trio.BrokenResourceError("the client closed mid-request")


async def _next_event(stream: trio.abc.Stream, conn: h11.Connection) -> Any:
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            raise _Reject(exc.error_status_hint, "Bad Request") from None
        if event is h11.NEED_DATA:
            conn.receive_data(bytes(await stream.receive_some(RECEIVE_SIZE)))
            continue
        if event is h11.PAUSED:  # a switched protocol; handled by the caller
            return h11.ConnectionClosed()
        return event


def _unified_request(head: h11.Request, body: bytes, stream: trio.abc.Stream) -> UnifiedRequest:
    headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in head.headers]
    return UnifiedRequest.from_target(
        head.method.decode("ascii", "replace"),
        head.target.decode("latin-1"),
        ServerProtocol.http1_1,
        headers,
        body,
        _peer(stream),
    )


def _peer(stream: trio.abc.Stream) -> tuple[str, int] | None:
    inner: Any = getattr(stream, "transport_stream", stream)
    sock = getattr(inner, "socket", None)
    try:
        address = sock.getpeername() if sock is not None else None
    except OSError:
        return None
    return (str(address[0]), int(address[1])) if address else None


async def _send_response(
    stream: trio.abc.Stream,
    conn: h11.Connection,
    response: UnifiedResponse,
    head_only: bool,
    options: Http1Options,
) -> None:
    body = response.body
    fields = [(n, v) for n, v in response.wire_headers() if n.lower() not in HOP_BY_HOP]
    fields = [(n, v) for n, v in fields if n.lower() != "content-length"]
    no_body = response.status in (204, 304) or response.status < 200
    if not no_body:
        fields.append(("Content-Length", str(len(body))))
    alt_svc = options.alt_svc()
    if alt_svc and not any(n.lower() == "alt-svc" for n, _ in fields):
        fields.append(("Alt-Svc", alt_svc))
    head = h11.Response(
        status_code=response.status,
        headers=[(n.encode("latin-1"), v.encode("latin-1")) for n, v in fields],
        reason=_reason(response.status),
    )
    data = conn.send(head) or b""
    if body and not no_body and not head_only:
        data += conn.send(h11.Data(data=body)) or b""
    data += conn.send(h11.EndOfMessage()) or b""
    await stream.send_all(data)
    response.is_sent = True


async def _send_simple(
    stream: trio.abc.Stream, conn: h11.Connection, status: int, message: str, options: Http1Options
) -> None:
    """A short text answer, then the connection closes (written directly: h11 may
    not have a request to answer, for a 503 at accept or a malformed head)."""
    body = message.encode()
    head = (
        f"HTTP/1.1 {status} {_reason(status).decode()}\r\n"
        f"Content-Type: {TEXT}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n"
    )
    alt_svc = options.alt_svc()
    if alt_svc:
        head += f"Alt-Svc: {alt_svc}\r\n"
    await stream.send_all(head.encode("latin-1") + b"\r\n" + body)


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


async def _upgrade(
    server: UnifiedServer,
    stream: trio.abc.Stream,
    conn: h11.Connection,
    request: UnifiedRequest,
    match: Any,
    options: Http1Options,
) -> None:
    """Switch to WebSocket (RFC 6455 §4.2.2) and run the route's handler."""
    problem = handshake_error(request.headers, str(request.method))
    if problem is not None:
        response = UnifiedResponse()
        response.setStatus(400)
        response.text(problem)
        response.setHeader("Connection", "close")
        await _send_response(stream, conn, response, False, options)
        return
    request.path_params = match.params
    request.version = ServerProtocol.websocket
    fields = Headers(accept_headers(request.headers))
    switch = h11.InformationalResponse(
        status_code=101,
        headers=[(n.encode(), v.encode()) for n, v in fields.items()],
        reason=b"Switching Protocols",
    )
    await stream.send_all(conn.send(switch) or b"")
    trailing, _closed = conn.trailing_data
    ws = WebSocket(stream, request, bytes(trailing), server.websocket_max_message_size)
    server.stats_counter.websocket_opened()
    try:
        await run_handler(match.route.handler, ws)
    finally:
        server.stats_counter.websocket_closed()


__all__ = ["Http1Options", "serve_connection"]
