"""The HTTP/3 client: ``async with Client() as client: await client.get(url)``.

One :class:`Client` keeps one QUIC connection per origin (scheme, host,
port) and reuses it for every request to that origin; a connection the
server closed or is shutting down (GOAWAY) is replaced by a fresh one on the
next request. Each connection is a task in the client's nursery, so leaving
the ``async with`` block closes them all.

A :class:`Response` arrives once its headers do; the body streams:
``await response.read()`` or ``async for chunk in response.iter_bytes()``.
Reading slowly slows the server (flow control), it never buffers the whole
body unless you ask for it with ``read()``.

Errors: a failed request raises :class:`~ghostwire.http3.HttpError`, from
``request``/``get``/``post`` as from reading the body:
:class:`~ghostwire.http3.HttpConnectionError` (no connection, or it broke; the
QUIC exception is the ``__cause__``), ``HttpStreamError`` (the server reset
the request stream; a ``StreamReset`` with ``error_code``), or
:class:`~ghostwire.http3.RequestTimeout`. A request we cannot send as asked
(invalid headers) raises :class:`~ghostwire.http3.H3UsageError` instead, and
exceptions from the caller's own ``content`` iterator pass through unchanged.
No ``ExceptionGroup`` comes out of these calls.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import trio

from ...deadlines import Deadlines
from ...quic.config import ClientConfig
from ...quic.net.api import connect, exception_leaves
from ...quic.net.exceptions import ConnectionClosed, QuicError
from ..config import H3Config
from ..errors import (
    ConnectionGoingAway,
    H3ErrorCode,
    HttpConnectionError,
    HttpError,
    RequestTimeout,
)
from ..events import Headers
from .fields import TextHeaders, first_value, split_pseudo, to_text, to_wire
from .session import H3Session, HeadersTimedOut, HttpStreamError, MessageChannel

HeaderInput = Mapping[str, str] | Iterable[tuple[str, str]] | None
Content = bytes | bytearray | memoryview | str | AsyncIterable[bytes] | Iterable[bytes] | None


@dataclass(frozen=True)
class _Origin:
    host: str
    port: int


class Response:
    """An HTTP/3 response: status and headers now, the body as it arrives."""

    def __init__(self, channel: MessageChannel, headers: Headers, method: str) -> None:
        self._channel = channel
        self.status = int(dict(headers)[b":status"])
        self.headers: TextHeaders = to_text(split_pseudo(headers)[1])
        self.method = method
        self._consumed = False

    def header(self, name: str, default: str | None = None) -> str | None:
        """The first value of a header (names are lowercase in HTTP/3)."""
        return first_value(self.headers, name, default)

    @property
    def trailers(self) -> TextHeaders:
        """Trailers, once the body has been read to the end."""
        return to_text(self._channel.trailers or [])

    async def iter_bytes(self, chunk_size: int | None = None) -> AsyncIterator[bytes]:
        """The body in chunks, as they arrive."""
        if self._consumed:
            raise RuntimeError("the response body was already read")
        self._consumed = True
        channel = self._channel
        try:
            while True:
                try:
                    chunk = await channel.receive_some(chunk_size)
                except HttpError:
                    raise
                except QuicError as exc:
                    raise HttpConnectionError(f"connection failed during the body: {exc}") from exc
                if not chunk:
                    break
                yield chunk
        finally:
            channel.session.forget(channel.stream_id)

    async def read(self) -> bytes:
        """The whole body."""
        channel = self._channel
        if not self._consumed and channel.ended and channel.error is None:
            # It all arrived already: one schedule point, not one per chunk
            # and one for the end.
            await trio.lowlevel.checkpoint_if_cancelled()
            whole = channel.take_body_nowait()
            assert whole is not None
            self._consumed = True
            channel.session.forget(channel.stream_id)
            await trio.lowlevel.cancel_shielded_checkpoint()
            return whole
        body = bytearray()
        async for chunk in self.iter_bytes():
            body += chunk
        return bytes(body)

    async def aclose(self) -> None:
        """Stop receiving the body (cancels the request if it is unfinished)."""
        channel = self._channel
        if not channel.ended or channel._chunks:
            channel.cancel(H3ErrorCode.H3_REQUEST_CANCELLED)
        channel.session.forget(channel.stream_id)
        await trio.lowlevel.checkpoint()

    async def __aenter__(self) -> Response:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<Response {self.status}>"


class Client:
    """An HTTP/3 client; see the module docs."""

    def __init__(
        self,
        config: ClientConfig | None = None,
        *,
        cafile: str | None = None,
        verify: bool = True,
        timeout: float | None = 30.0,
        h3_config: H3Config | None = None,
        headers: HeaderInput = None,
    ) -> None:
        self._config = config or ClientConfig(alpn=["h3"], cafile=cafile, verify=verify)
        if not self._config.alpn:
            self._config = dataclasses.replace(self._config, alpn=["h3"])
        if "h3" not in self._config.alpn:
            raise ValueError("an HTTP/3 client config must offer ALPN 'h3'")
        self._h3_config = h3_config
        self.timeout = timeout
        self._default_headers = _header_list(headers)
        self._sessions: dict[_Origin, H3Session] = {}
        self._connecting: dict[_Origin, trio.Event] = {}
        self._nursery: trio.Nursery | None = None
        self._nursery_manager: Any = None
        # Bodiless requests' timeouts, by one task in the nursery (see request).
        self._deadlines = Deadlines(MessageChannel.time_out, "http3 request deadlines")
        # URL -> what a request needs of it: most clients ask a few URLs often.
        self._targets: dict[str, tuple[_Origin, bytes, bytes]] = {}

    async def __aenter__(self) -> Client:
        self._nursery_manager = trio.open_nursery()
        self._nursery = await self._nursery_manager.__aenter__()
        self._deadlines.attach(self._nursery)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._nursery is not None
        for session in list(self._sessions.values()):
            with trio.CancelScope(shield=True):
                await session.aclose()
        self._nursery.cancel_scope.cancel()
        try:
            result: bool | None = await self._nursery_manager.__aexit__(exc_type, exc, tb)
        except BaseExceptionGroup as group:
            # One exception (say, the caller's own) comes out as itself, as
            # from any trio resource; a group only when there really are several.
            leaves = exception_leaves(group)
            if len(leaves) == 1:
                raise leaves[0] from leaves[0].__cause__  # its own cause, not the group
            raise
        finally:
            self._deadlines.attach(None)
            self._nursery = None
        return result

    # -- requests -------------------------------------------------------------

    async def get(self, url: str, **kwargs: Any) -> Response:
        return await self.request("GET", url, **kwargs)

    async def post(self, url: str, content: Content = None, **kwargs: Any) -> Response:
        return await self.request("POST", url, content=content, **kwargs)

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: HeaderInput = None,
        content: Content = None,
        trailers: HeaderInput = None,
    ) -> Response:
        """Send a request; returns once the response headers arrive.

        Raises :class:`~ghostwire.http3.HttpError` if the request fails:
        :class:`~ghostwire.http3.HttpConnectionError`, ``HttpStreamError``
        (a ``StreamReset``) or :class:`~ghostwire.http3.RequestTimeout`.
        """
        if self._nursery is None:
            raise RuntimeError("use the client as 'async with Client() as client:'")
        target = self._targets.get(url)
        if target is None:
            target = _target(url)
            if len(self._targets) >= _TARGET_CACHE_SIZE:
                self._targets.clear()
            self._targets[url] = target
        origin, authority, path = target
        request_headers: Headers = [
            (b":method", method.upper().encode()),
            (b":scheme", b"https"),
            (b":authority", authority),
            (b":path", path),
        ]
        request_headers += to_wire(self._default_headers + _header_list(headers))
        deadline = math.inf if self.timeout is None else trio.current_time() + self.timeout
        await trio.lowlevel.checkpoint_if_cancelled()
        channel: MessageChannel | None = None
        if content is None and trailers is None:
            # A bodiless request on an open connection with stream credit is
            # sent without a schedule point (waiting for the response is its
            # one), and the client's deadlines task times it out (in any
            # order, see ghostwire.deadlines): no cancel scope (about 5.7 us
            # on every request against 0.4 for a watch and its end).
            channel = self._open_request_nowait(origin)
            if channel is not None:
                deadlines = self._deadlines
                watch = None if deadline == math.inf else deadlines.watch(deadline, channel)
                try:
                    headers_in = await self._exchange(
                        channel, request_headers, None, None, method, url
                    )
                finally:
                    if watch is not None:
                        deadlines.done(watch)
                return Response(channel, headers_in, method.upper())
        with trio.CancelScope(deadline=deadline) as scope:
            if channel is None:
                channel = await self._open_request(origin)
            headers_in = await self._exchange(
                channel, request_headers, content, trailers, method, url
            )
        if scope.cancelled_caught:
            raise self._timeout(method, url) from trio.TooSlowError()
        assert channel is not None
        return Response(channel, headers_in, method.upper())

    async def _exchange(
        self,
        channel: MessageChannel,
        headers: Headers,
        content: Content,
        trailers: HeaderInput,
        method: str,
        url: str,
    ) -> Headers:
        """Send the request on ``channel`` and wait for the response's headers;
        the stream is cancelled if that fails."""
        try:
            try:
                if content is None and trailers is None:
                    channel.send_headers_nowait(headers, end_stream=True)
                else:
                    await self._send_request(channel, headers, content, trailers)
            except HttpStreamError:
                # RFC 9114 §4.1: STOP_SENDING with H3_NO_ERROR means the
                # server answers without the rest of the request.
                if channel.stopped_code != H3ErrorCode.H3_NO_ERROR or channel.error:
                    raise
            return await channel.wait_headers()
        except HeadersTimedOut:
            channel.cancel()
            raise self._timeout(method, url) from trio.TooSlowError()
        except HttpError:
            channel.cancel()
            raise
        except QuicError as exc:
            channel.cancel()
            raise HttpConnectionError(f"{method} {url} failed: {exc}") from exc
        except BaseException:
            channel.cancel()
            raise

    def _timeout(self, method: str, url: str) -> RequestTimeout:
        return RequestTimeout(f"{method} {url}: no response within {self.timeout:g} s")

    def _open_request_nowait(self, origin: _Origin) -> MessageChannel | None:
        """A request stream on the origin's open connection, if that needs no
        wait (a connection to make, stream credit to wait for); else None."""
        session = self._sessions.get(origin)
        return None if session is None else session.open_request_nowait()

    async def _open_request(self, origin: _Origin) -> MessageChannel:
        """A request stream on the origin's connection (one fresh connection if
        the pooled one is closing); connection failures become HttpConnectionError."""
        for attempt in range(2):
            try:
                session = await self._session_for(origin)
            except (QuicError, OSError) as exc:
                raise HttpConnectionError(
                    f"cannot connect to {origin.host}:{origin.port}: {exc}"
                ) from exc
            try:
                return await session.open_request()
            except (ConnectionGoingAway, ConnectionClosed) as exc:
                self._drop(origin, session)
                if attempt:
                    raise HttpConnectionError(
                        f"the connection to {origin.host}:{origin.port} closed: {exc}"
                    ) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def _send_request(
        self, channel: MessageChannel, headers: Headers, content: Content, trailers: HeaderInput
    ) -> None:
        trailer_list = _header_list(trailers)
        if content is None:
            await channel.send_headers(headers, end_stream=not trailer_list)
        elif isinstance(content, bytes | bytearray | memoryview | str):
            body = content.encode() if isinstance(content, str) else bytes(content)
            headers = [*headers, (b"content-length", str(len(body)).encode())]
            await channel.send_headers(headers)
            await channel.send_data(body, end_stream=not trailer_list)
        else:
            await channel.send_headers(headers)
            if isinstance(content, AsyncIterable):
                async for chunk in content:
                    await channel.send_data(bytes(chunk))
            else:
                for chunk in content:
                    await channel.send_data(bytes(chunk))
            if not trailer_list:
                await channel.send_data(b"", end_stream=True)
        if trailer_list:
            await channel.send_trailers(to_wire(trailer_list))

    # -- connections per origin --------------------------------------------------

    async def _session_for(self, origin: _Origin) -> H3Session:
        while True:
            session = self._sessions.get(origin)
            if session is not None and not session.closed and session.goaway_id is None:
                return session
            if session is not None:
                self._drop(origin, session)
            pending = self._connecting.get(origin)
            if pending is not None:
                await pending.wait()
                continue
            done = self._connecting[origin] = trio.Event()
            try:
                assert self._nursery is not None
                started: H3Session = await self._nursery.start(self._run_connection, origin)
                self._sessions[origin] = started
                return started
            finally:
                del self._connecting[origin]
                done.set()

    async def _run_connection(
        self, origin: _Origin, *, task_status: trio.TaskStatus[H3Session] = trio.TASK_STATUS_IGNORED
    ) -> None:
        started = False
        try:
            async with connect(origin.host, origin.port, self._config) as conn:
                session = H3Session(conn, self._h3_config)
                task_status.started(session)
                started = True
                await conn.wait_closed()
        except QuicError:
            if not started:
                raise  # the handshake failed: the request that asked reports it
            # Once running, a connection's end is seen by its requests, and
            # the next request to the origin opens a new connection.

    def _drop(self, origin: _Origin, session: H3Session) -> None:
        if self._sessions.get(origin) is session:
            del self._sessions[origin]


_TARGET_CACHE_SIZE = 256  # URLs whose parse is kept (the cache is emptied when full)


def _target(url: str) -> tuple[_Origin, bytes, bytes]:
    """A URL's origin, ``:authority`` and ``:path`` (raises ValueError)."""
    parts = urlsplit(url)
    if parts.scheme != "https":
        raise ValueError(f"HTTP/3 URLs are https:// (got {url!r})")
    if not parts.hostname:
        raise ValueError(f"no host in {url!r}")
    origin = _Origin(parts.hostname, parts.port or 443)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    authority = parts.netloc.rsplit("@", 1)[-1]
    return origin, authority.encode(), path.encode()


def _header_list(headers: HeaderInput) -> list[tuple[str, str]]:
    if headers is None:
        return []
    if isinstance(headers, Mapping):
        return [(str(k), str(v)) for k, v in headers.items()]
    return [(str(k), str(v)) for k, v in headers]


__all__ = ["Client", "HttpConnectionError", "HttpError", "RequestTimeout", "Response"]
