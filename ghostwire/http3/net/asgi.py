"""Running one HTTP/3 request through an ASGI 3 application.

Scope: ``type`` "http", ``http_version`` "3", ``scheme`` "https", method,
path (percent-decoded), ``raw_path``, ``query_string``, lowercase headers,
``client`` and ``server`` addresses, and the ``http.response.trailers``
extension (ASGI HTTP spec 2.3+): a response started with ``trailers: True``
ends with ``http.response.trailers`` messages instead of the last body.

``receive()`` streams the request body in ``http.request`` messages and
then reports ``http.disconnect`` once the response is complete or the
client went away. ``send()`` enforces the message order (start, body...,
trailers) and raises on misuse, as ASGI servers do.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

import trio

from ..events import Headers
from .fields import split_pseudo
from .session import HttpStreamError, MessageChannel

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class AsgiProtocolError(RuntimeError):
    """The application sent ASGI messages out of order."""


def build_scope(channel: MessageChannel, peer: Any, local: Any) -> dict[str, Any]:
    assert channel.headers is not None
    pseudo, headers = split_pseudo(channel.headers)
    authority = pseudo.get(b":authority")
    if authority is not None and not any(n == b"host" for n, _ in headers):
        headers.insert(0, (b"host", authority))
    raw_path, _, query = pseudo.get(b":path", b"/").partition(b"?")
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "3",
        "method": pseudo.get(b":method", b"GET").decode(),
        "scheme": pseudo.get(b":scheme", b"https").decode(),
        "path": unquote(raw_path.decode("latin-1")),
        "raw_path": raw_path,
        "query_string": query,
        "root_path": "",
        "headers": headers,
        "client": tuple(peer[:2]) if peer else None,
        "server": tuple(local[:2]) if local else None,
        "extensions": {"http.response.trailers": {}},
        "state": {},
    }


async def run_asgi(channel: MessageChannel, app: Any, peer: Any, local: Any) -> None:
    scope = build_scope(channel, peer, local)
    state = _ResponseState(channel)

    async def receive() -> Message:
        if state.finished or state.disconnected:
            await state.done.wait()
            return {"type": "http.disconnect"}
        try:
            chunk = await channel.receive_some()
        except HttpStreamError:
            state.disconnected = True
            return {"type": "http.disconnect"}
        if not chunk:
            state.request_complete = True
            if state.body_sent_empty:
                await state.done.wait()
                return {"type": "http.disconnect"}
            state.body_sent_empty = True
            return {"type": "http.request", "body": b"", "more_body": False}
        return {"type": "http.request", "body": chunk, "more_body": True}

    await app(scope, receive, state.send)
    if not state.finished:
        if state.disconnected and channel.error is not None:
            # The client reset the request and the app saw http.disconnect:
            # returning then is normal ASGI, not an app error. The server
            # aborts the stream (H3_REQUEST_INCOMPLETE, RFC 9114 §4.1).
            raise channel.error
        if not state.started:
            raise AsgiProtocolError("the application returned without sending a response")
        raise AsgiProtocolError("the application returned before finishing its response")


class _ResponseState:
    def __init__(self, channel: MessageChannel) -> None:
        self.channel = channel
        self.started = False
        self.finished = False
        self.wants_trailers = False
        self.disconnected = False
        self.request_complete = False
        self.body_sent_empty = False
        self.done = trio.Event()
        self._head: Headers = []

    async def send(self, message: Message) -> None:
        kind = message.get("type")
        channel = self.channel
        if self.finished:
            raise AsgiProtocolError(f"{kind} after the response was complete")
        if kind == "http.response.start":
            if self.started:
                raise AsgiProtocolError("http.response.start sent twice")
            self.started = True
            channel.response_started = True
            self.wants_trailers = bool(message.get("trailers", False))
            status = int(message["status"])
            self._head = [(b":status", str(status).encode())]
            self._head += [(bytes(n).lower(), bytes(v)) for n, v in message.get("headers", [])]
            return  # sent with the first body chunk, so a short response is one frame burst
        if kind == "http.response.body":
            if not self.started:
                raise AsgiProtocolError("http.response.body before http.response.start")
            body = bytes(message.get("body", b""))
            more = bool(message.get("more_body", False))
            end = not more and not self.wants_trailers
            if self._head:
                head, self._head = self._head, []
                await channel.send_headers(head, end_stream=end and not body)
                if body:
                    await channel.send_data(body, end_stream=end)
            elif body or end:
                await channel.send_data(body, end_stream=end)
            if end:
                self._finish()
            return
        if kind == "http.response.trailers":
            if not self.wants_trailers:
                raise AsgiProtocolError("trailers were not announced in http.response.start")
            if self._head:
                head, self._head = self._head, []
                await channel.send_headers(head)
            headers = [(bytes(n).lower(), bytes(v)) for n, v in message.get("headers", [])]
            if message.get("more_trailers", False):
                raise AsgiProtocolError("more_trailers is not supported over HTTP/3")
            await channel.send_trailers(headers)
            self._finish()
            return
        raise AsgiProtocolError(f"unknown ASGI message type {kind!r}")

    def _finish(self) -> None:
        self.finished = True
        self.done.set()
