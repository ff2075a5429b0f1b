"""WebSocket routes (RFC 6455) over the HTTP/1.1 listeners, with wsproto.

A WebSocket route (``server.websocket(path, handler)``) takes one of two
handler forms:

* a **message source**: an async (or plain) generator, ``h(req)`` or
  ``h(req, ws)``, whose every yielded item is sent: ``str`` as a text
  message, ``bytes`` as binary, anything else as JSON text. When it ends
  the socket is closed normally (1000). This is the shape of an event
  channel: a route can be backed by any async iterator of events (an RPC
  event channel slots in here: see :mod:`.ws_events`).
  While it runs, incoming frames are read (pings answered); the client
  closing the socket cancels the generator.
* a **session**: ``async def h(ws)`` or ``async def h(req, ws)`` using
  ``await ws.receive()`` / ``async for message in ws`` and ``await ws.send(...)``.

An exception in the handler closes the socket with 1011 (internal error).
Messages are reassembled up to ``max_message_size`` (1 MiB, the original's
default); a longer one closes the socket with 1009.
"""

from __future__ import annotations

import base64
import inspect
import json
import logging
from collections.abc import AsyncIterator, Callable
from enum import IntEnum
from typing import Any

import trio
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Event,
    Message,
    Ping,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError, generate_accept_token

from .message import Headers, UnifiedRequest, _json_default

log = logging.getLogger("ghostwire.shroud")

SERVER_HEADER = "Shroud-WebSocket/1.0"
DEFAULT_MAX_MESSAGE_SIZE = 1 << 20
CLOSE_TIMEOUT = 5.0  # the original's close_timeout_ms
RECEIVE_SIZE = 65536


class WebSocketCloseCode(IntEnum):
    """RFC 6455 §7.4.1 close codes, with the original's names."""

    normal = 1000
    going_away = 1001
    protocol_error = 1002
    unsupported_data = 1003
    no_status_received = 1005
    abnormal_closure = 1006
    invalid_frame_payload_data = 1007
    policy_violation = 1008
    message_too_big = 1009
    mandatory_extension = 1010
    internal_server_error = 1011
    service_restart = 1012
    try_again_later = 1013
    bad_gateway = 1014
    tls_handshake = 1015

    def toString(self) -> str:
        return _CLOSE_NAMES[self]

    to_string = toString


_CLOSE_NAMES = {
    WebSocketCloseCode.normal: "Normal Closure",
    WebSocketCloseCode.going_away: "Going Away",
    WebSocketCloseCode.protocol_error: "Protocol Error",
    WebSocketCloseCode.unsupported_data: "Unsupported Data",
    WebSocketCloseCode.no_status_received: "No Status Received",
    WebSocketCloseCode.abnormal_closure: "Abnormal Closure",
    WebSocketCloseCode.invalid_frame_payload_data: "Invalid Frame Payload Data",
    WebSocketCloseCode.policy_violation: "Policy Violation",
    WebSocketCloseCode.message_too_big: "Message Too Big",
    WebSocketCloseCode.mandatory_extension: "Mandatory Extension",
    WebSocketCloseCode.internal_server_error: "Internal Server Error",
    WebSocketCloseCode.service_restart: "Service Restart",
    WebSocketCloseCode.try_again_later: "Try Again Later",
    WebSocketCloseCode.bad_gateway: "Bad Gateway",
    WebSocketCloseCode.tls_handshake: "TLS Handshake",
}


# -- the opening handshake (RFC 6455 §4.2) --------------------------------------------------


def handshake_error(headers: Headers, method: str) -> str | None:
    """Why this request cannot be upgraded (the original's 400 texts), or ``None``."""
    upgrade = (headers.get("upgrade") or "").lower()
    connection = (headers.get("connection") or "").lower()
    if method != "GET" or upgrade != "websocket" or "upgrade" not in connection:
        return "Not a WebSocket request"
    key = headers.get("sec-websocket-key") or ""
    try:
        key_ok = len(base64.b64decode(key, validate=True)) == 16  # §4.2.1 item 5
    except ValueError:
        key_ok = False
    if headers.get("sec-websocket-version") != "13" or not key_ok:
        return "Invalid WebSocket version or key"
    return None


def accept_headers(headers: Headers) -> list[tuple[str, str]]:
    """The 101 response's fields."""
    key = headers.get("sec-websocket-key") or ""
    return [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Accept", generate_accept_token(key.encode()).decode()),
        ("Server", SERVER_HEADER),
    ]


def is_upgrade_request(headers: Headers) -> bool:
    return (headers.get("upgrade") or "").lower() == "websocket"


# -- one open socket ------------------------------------------------------------------------


class WebSocketClosed(Exception):
    """Internal: the socket is closed (``receive`` returns ``None`` instead)."""


class WebSocket:
    """The server side of one WebSocket: ``send``, ``receive``, ``close``."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        request: UnifiedRequest,
        trailing_data: bytes = b"",
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    ) -> None:
        self._stream = stream
        self.request = request
        self._ws = Connection(ConnectionType.SERVER, trailing_data=trailing_data)
        self._send_lock = trio.Lock()
        self._max_message_size = max_message_size
        self._parts: list[bytes | str] = []
        self._size = 0
        self.close_code: int | None = None
        self.close_reason: str = ""
        self._closed = trio.Event()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def getRemoteAddress(self) -> str:
        return self.request.remote_addr

    get_remote_address = getRemoteAddress

    async def send(self, message: Any) -> None:
        """Send ``str`` as text, ``bytes`` as binary, anything else as JSON text."""
        if isinstance(message, bytes | bytearray | memoryview):
            await self._send_event(BytesMessage(data=bytes(message)))
        elif isinstance(message, str):
            await self._send_event(TextMessage(data=message))
        else:
            text = json.dumps(message, separators=(",", ":"), default=_json_default)
            await self._send_event(TextMessage(data=text))

    async def sendText(self, text: str) -> None:
        await self._send_event(TextMessage(data=text))

    async def sendBinary(self, data: bytes) -> None:
        await self._send_event(BytesMessage(data=bytes(data)))

    send_text = sendText
    send_binary = sendBinary

    async def receive(self) -> str | bytes | None:
        """The next whole message, or ``None`` once the socket is closed."""
        try:
            while True:
                for event in self._ws.events():
                    message = await self._on_event(event)
                    if message is not None:
                        return message
                if self.closed:
                    return None
                await self._read()
        except WebSocketClosed:
            return None

    def __aiter__(self) -> AsyncIterator[str | bytes]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[str | bytes]:
        while (message := await self.receive()) is not None:
            yield message

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Send a close frame and wait for the client's, both within
        ``CLOSE_TIMEOUT`` (a client that reads nothing cannot hold it)."""
        if self._ws.state is ConnectionState.OPEN:
            with trio.move_on_after(CLOSE_TIMEOUT):
                await self._send_event(CloseConnection(code=code, reason=reason))
                self.close_code, self.close_reason = code, reason
                while not self.closed:
                    if await self.receive() is None:
                        break
        self._closed.set()

    # -- internals ----------------------------------------------------------------------

    async def _send_event(self, event: Event) -> None:
        async with self._send_lock:
            try:
                data = self._ws.send(event)
            except LocalProtocolError:
                raise WebSocketClosed("the WebSocket is closed") from None
            try:
                await self._stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._closed.set()
                raise WebSocketClosed("the connection is gone") from None

    async def _read(self) -> None:
        try:
            data = await self._stream.receive_some(RECEIVE_SIZE)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            data = b""
        if not data:
            self.close_code = self.close_code or WebSocketCloseCode.abnormal_closure
            self._closed.set()
            raise WebSocketClosed("the connection ended")
        try:
            self._ws.receive_data(bytes(data))
        except RemoteProtocolError as exc:
            log.debug("WebSocket protocol error: %s", exc)
            self._closed.set()
            raise WebSocketClosed(str(exc)) from None

    async def _on_event(self, event: Event) -> str | bytes | None:
        if isinstance(event, Ping):
            await self._send_event(event.response())
        elif isinstance(event, CloseConnection):
            self.close_code, self.close_reason = event.code, event.reason or ""
            if self._ws.state is ConnectionState.REMOTE_CLOSING:
                await self._send_event(event.response())
            self._closed.set()
            raise WebSocketClosed("closed by the client")
        elif isinstance(event, Message):
            return await self._on_message(event)
        return None

    async def _on_message(self, event: Message[Any]) -> str | bytes | None:
        self._size += len(event.data)
        if self._size > self._max_message_size:
            await self.close(WebSocketCloseCode.message_too_big, "Message too big")
            raise WebSocketClosed("message too big")
        self._parts.append(event.data)
        if not event.message_finished:
            return None
        parts, self._parts, self._size = self._parts, [], 0
        if isinstance(event, TextMessage):
            return "".join(str(p) for p in parts)
        return b"".join(bytes(p) for p in parts)  # type: ignore[arg-type]


# -- running a route's handler --------------------------------------------------------------


def _positional_count(fn: Callable[..., Any]) -> int:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 2
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)


def is_message_source(handler: Callable[..., Any]) -> bool:
    return inspect.isasyncgenfunction(handler) or inspect.isgeneratorfunction(handler)


def is_websocket_handler(handler: Callable[..., Any]) -> bool:
    """Generators and ``async def`` functions are WebSocket handlers; a plain
    function is an ordinary GET route, as the original's ``websocket()`` made it."""
    from .chain import is_async_callable

    return is_message_source(handler) or is_async_callable(handler)


async def run_handler(handler: Callable[..., Any], ws: WebSocket) -> None:
    """Run a route's handler on an open socket, then close it (see the module docs)."""
    two = _positional_count(handler) >= 2
    try:
        if is_message_source(handler):
            source = handler(ws.request, ws) if two else handler(ws.request)
            await _pump(source, ws)
        else:
            await (handler(ws.request, ws) if two else handler(ws))
    except WebSocketClosed:
        return
    except Exception:
        log.exception("unhandled error in WebSocket handler for %s", ws.request.path)
        try:
            await ws.close(WebSocketCloseCode.internal_server_error, "Internal Server Error")
        except WebSocketClosed:
            pass
        return
    try:
        await ws.close()
    except WebSocketClosed:
        pass


async def _pump(source: Any, ws: WebSocket) -> None:
    """Send what ``source`` yields while reading (and discarding) what the client sends."""

    async def drain_incoming(cancel: trio.CancelScope) -> None:
        while await ws.receive() is not None:
            pass
        cancel.cancel()  # the client closed: stop producing

    async with trio.open_nursery() as nursery:
        nursery.start_soon(drain_incoming, nursery.cancel_scope)
        try:
            if inspect.isasyncgen(source):
                async for item in source:
                    await ws.send(item)
            else:
                for item in source:
                    await ws.send(item)
        finally:
            if inspect.isasyncgen(source):
                # Shielded (the handler may be cancelled) but bounded: a source
                # whose cleanup waits on a dead peer must not hold the connection.
                with trio.CancelScope(shield=True) as closing:
                    closing.deadline = trio.current_time() + CLOSE_TIMEOUT
                    await source.aclose()
        nursery.cancel_scope.cancel()


__all__ = [
    "SERVER_HEADER",
    "WebSocket",
    "WebSocketCloseCode",
    "accept_headers",
    "handshake_error",
    "is_upgrade_request",
    "is_websocket_handler",
    "run_handler",
]
