"""One HTTP/1.1 exchange with h11 over a fresh TCP (or TLS) connection."""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult

import h11
import trio

from .errors import ClientError, ConnectionFailed, HandshakeFailed, StreamError
from .message import Headers

if TYPE_CHECKING:
    from .client import ClientConfig, ClientResponse

RECEIVE_SIZE = 65536


async def request_h1(
    method: str,
    parts: SplitResult,
    headers: Headers,
    body: bytes,
    context: ssl.SSLContext | None,
    config: ClientConfig,
) -> ClientResponse:
    from .client import ClientResponse

    host = parts.hostname or ""
    port = parts.port or (443 if context is not None else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    fields = Headers([("Host", parts.netloc.rsplit("@", 1)[-1]), *headers.items()])
    fields.set("Connection", "close")  # one request per connection
    if body or method in ("POST", "PUT", "PATCH"):
        fields.set("Content-Length", str(len(body)))
    stream = await _connect(host, port, context)
    try:
        conn = h11.Connection(h11.CLIENT)
        head = h11.Request(
            method=method,
            target=target,
            headers=[(n.encode("latin-1"), v.encode("latin-1")) for n, v in fields.items()],
        )
        out = conn.send(head) or b""
        if body:
            out += conn.send(h11.Data(data=body)) or b""
        out += conn.send(h11.EndOfMessage()) or b""
        await _send(stream, out)
        status, reply_headers, data = await _receive(stream, conn, config.max_response_size)
    finally:
        await trio.aclose_forcefully(stream)
    return ClientResponse(status, reply_headers, data)


async def _connect(host: str, port: int, context: ssl.SSLContext | None) -> trio.abc.Stream:
    try:
        tcp = await trio.open_tcp_stream(host, port)
    except OSError as exc:
        raise ConnectionFailed(f"cannot connect to {host}:{port}: {exc}") from exc
    if context is None:
        return tcp
    tls = trio.SSLStream(tcp, context, server_hostname=host, https_compatible=True)
    try:
        await tls.do_handshake()
    except (trio.BrokenResourceError, ssl.SSLError) as exc:
        await trio.aclose_forcefully(tcp)
        cause = exc.__cause__ or exc
        raise HandshakeFailed(f"TLS handshake with {host}:{port} failed: {cause}") from exc
    except BaseException:
        # Cancelled (the client's timeout) or anything else: the socket closes too.
        await trio.aclose_forcefully(tcp)
        raise
    return tls


async def _send(stream: trio.abc.Stream, data: bytes) -> None:
    try:
        await stream.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        raise StreamError(f"the connection broke while sending: {exc}") from exc


async def _receive(
    stream: trio.abc.Stream, conn: h11.Connection, limit: int
) -> tuple[int, Headers, bytes]:
    status = 0
    headers = Headers()
    body = bytearray()
    while True:
        try:
            event: Any = conn.next_event()
        except h11.RemoteProtocolError as exc:
            raise ClientError(f"malformed HTTP/1.1 response: {exc}") from exc
        if event is h11.NEED_DATA:
            try:
                conn.receive_data(bytes(await stream.receive_some(RECEIVE_SIZE)))
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise StreamError(f"the connection broke while receiving: {exc}") from exc
        elif isinstance(event, h11.InformationalResponse):
            continue
        elif isinstance(event, h11.Response):
            status = event.status_code
            headers = Headers((n.decode("latin-1"), v.decode("latin-1")) for n, v in event.headers)
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > limit:
                raise ClientError(f"response body larger than {limit} bytes")
        elif isinstance(event, h11.EndOfMessage):
            return status, headers, bytes(body)
        elif isinstance(event, h11.ConnectionClosed):
            raise StreamError("the server closed the connection before the response ended")


__all__ = ["request_h1"]
