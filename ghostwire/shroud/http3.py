"""HTTP/3 for the shim's routes: a native handler for :func:`ghostwire.http3.serve`.

Each request's body is read whole (up to ``max_request_body_size``, else
413), the :class:`~ghostwire.shroud.UnifiedServer` answers it, and the
response goes back with its fields lowercased and the connection-specific
ones dropped (RFC 9114 §4.2). WebSocket routes answer 426 here: WebSocket
over HTTP/3 (RFC 9220) is not offered, the HTTP/1.1 listener serves them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..http3 import Request, Response
from ..http3.net.server import NativeHandler
from .config import ServerProtocol
from .errors import HttpError
from .message import TEXT, UnifiedRequest

if TYPE_CHECKING:
    from .server import UnifiedServer

# RFC 9114 §4.2: these must not appear in an HTTP/3 message.
CONNECTION_SPECIFIC = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
}


def native_handler(server: UnifiedServer) -> NativeHandler:
    max_body = server.config.max_request_body_size

    async def handle(request: Request) -> Response:
        body = bytearray()
        async for chunk in request.iter_bytes():
            body += chunk
            if len(body) > max_body:
                return _text(413, "Payload Too Large")
        try:
            unified = UnifiedRequest.from_target(
                request.method,
                request.path,
                ServerProtocol.http3,
                request.headers,
                bytes(body),
                request.client,
            )
        except HttpError as error:  # a method the original did not know
            return _text(error.status, error.message)
        if request.authority and "host" not in unified.headers:
            unified.headers.add("host", request.authority)
        server.stats_counter.http3_bytes_received(len(body))
        if server.find_websocket(unified) is not None:
            return _text(426, "WebSocket routes are served over HTTP/1.1")
        server.stats_counter.request_started()
        try:
            response = await server.respond(unified)
        finally:
            server.stats_counter.request_finished()
        fields = [
            (name.lower(), value)
            for name, value in response.wire_headers()
            if name.lower() not in CONNECTION_SPECIFIC and name.lower() != "content-length"
        ]
        head_only = request.method == "HEAD"
        content = b"" if head_only else response.body
        # A HEAD answer's Content-Length is optional (RFC 9110 §8.6); peers that
        # check it against the DATA received (aioquic does) reject it, so omit it.
        if response.status not in (204, 304) and not head_only:
            fields.append(("content-length", str(len(content))))
        server.stats_counter.http3_bytes_sent(len(content))
        response.is_sent = True
        return Response(status=response.status, headers=fields, content=content)

    return handle


def _text(status: int, message: str) -> Response:
    return Response(status=status, headers=[("content-type", TEXT)], content=message.encode())


__all__ = ["native_handler"]
