"""aioquic's HTTP/3 (aioquic.h3) as an independent interop peer (test helper).

Built on tests/aioquic_peer.py: the aioquic side runs on the asyncio loop of
a :class:`~aioquic_peer.PeerLoop` thread and the trio tests await coroutines
submitted to it. :class:`H3PeerProtocol` wires aioquic's sans-IO
``H3Connection`` into ``QuicConnectionProtocol`` the way aioquic's examples
(http3_client.py / http3_server.py) do: every QUIC event goes through
``H3Connection.handle_event`` and the HTTP/3 events come back.

Both servers in the interop tests (aioquic's here, ghostwire's in the test
module) answer the same routes, computed by :func:`route` once the request
(body and trailers included) has been read:

* ``/bytes/<n>``      ``n`` bytes of :func:`~aioquic_peer.pattern`, with
  ``x-body-sha256`` (the body's sha256) in the headers;
* ``/sha256``         the request body's sha256 and length, as headers
  ``x-request-sha256`` / ``x-request-length`` and as the body
  ``"<sha256> <length>\\n"``; request trailers come back as headers
  ``x-echo-trailer-<name>``;
* ``/trailers/<n>``   like ``/bytes/<n>``, but the sha256 (and a note) are
  sent as response trailers;
* ``/echo-headers``   every request header starting with ``x-`` comes back
  as a response header (large header sets: QPACK in both directions);
* anything else: 404.

Every coroutine run on the loop has an asyncio-side timeout (``PeerLoop``);
senders keep at most ``SEND_HIGH_WATER`` bytes unacknowledged, as in
aioquic_peer (aioquic itself buffers without limit).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aioquic.asyncio.client import connect
from aioquic.asyncio.server import QuicServer
from aioquic.asyncio.server import serve as aioquic_serve
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration
from aioquic_peer import (
    PEER_TIMEOUT,
    SEND_CHUNK,
    SEND_HIGH_WATER,
    EventLog,
    PeerProtocol,
    PeerStreamReset,
    pattern,
    peer_configuration,
    wait_until_stdin_closes,
)

Headers = list[tuple[bytes, bytes]]
TextHeaders = Sequence[tuple[str, str]]

H3_INTERNAL_ERROR = 0x102
H3_REQUEST_CANCELLED = 0x10C


# -- the routes both servers answer --------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    trailers: list[tuple[str, str]] = field(default_factory=list)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def route(
    method: str,
    path: str,
    headers: TextHeaders,
    body_sha256: str,
    body_length: int,
    trailers: TextHeaders,
) -> Reply:
    """The response to a complete request (see the module docstring)."""
    parts = path.split("?", 1)[0].strip("/").split("/")
    if parts[0] == "bytes" and len(parts) == 2 and method in ("GET", "HEAD"):
        body = pattern(int(parts[1]))
        return Reply(
            200,
            [("content-type", "application/octet-stream"), ("x-body-sha256", sha256_hex(body))],
            body,
        )
    if parts == ["sha256"] and method == "POST":
        echoed = [(f"x-echo-trailer-{name}", value) for name, value in trailers]
        return Reply(
            200,
            [("x-request-sha256", body_sha256), ("x-request-length", str(body_length)), *echoed],
            f"{body_sha256} {body_length}\n".encode(),
        )
    if parts[0] == "trailers" and len(parts) == 2 and method == "GET":
        body = pattern(int(parts[1]))
        return Reply(
            200,
            [("content-type", "application/octet-stream")],
            body,
            [("x-body-sha256", sha256_hex(body)), ("x-trailer-note", "sent after the body")],
        )
    if parts == ["echo-headers"]:
        echoed = [(name, value) for name, value in headers if name.startswith("x-")]
        return Reply(200, [("content-type", "text/plain"), *echoed], f"{len(echoed)}\n".encode())
    return Reply(404, [("content-type", "text/plain")], b"not found\n")


# -- one request stream as aioquic sees it -------------------------------------------------


def _text(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    return [(n.decode("latin-1"), v.decode("latin-1")) for n, v in headers]


@dataclass
class PeerResponse:
    """A complete HTTP/3 message received by aioquic (a response, or a request)."""

    stream_id: int
    status: int | None
    pseudo: dict[str, str]
    headers: list[tuple[str, str]]
    trailers: list[tuple[str, str]]
    sha256: str
    length: int
    body: bytes | None

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


class H3Message:
    """Headers, body (hashed; kept if asked) and trailers received on one stream."""

    def __init__(self, protocol: H3PeerProtocol, stream_id: int, keep_body: bool) -> None:
        self.protocol = protocol
        self.stream_id = stream_id
        self.headers: Headers | None = None
        self.interim: list[Headers] = []
        self.trailers: Headers = []
        self.body: bytearray | None = bytearray() if keep_body else None
        self.hash = hashlib.sha256()
        self.length = 0
        self.ended = False
        self.reset_code: int | None = None  # the peer's RESET_STREAM
        self.stop_code: int | None = None  # the peer's STOP_SENDING
        self._changed = asyncio.Event()

    def on_headers(self, headers: Headers) -> None:
        if self.headers is None:
            status = dict(headers).get(b":status", b"")
            if status.startswith(b"1"):
                self.interim.append(headers)
            else:
                self.headers = headers
        else:
            self.trailers = headers

    def on_data(self, data: bytes) -> None:
        self.hash.update(data)
        self.length += len(data)
        if self.body is not None:
            self.body += data

    def notify(self) -> None:
        self._changed.set()

    async def wait_end(self) -> None:
        """Until the whole message arrived; raises PeerStreamReset / ConnectionError."""
        while not self.ended:
            if self.reset_code is not None:
                raise PeerStreamReset(self.reset_code)
            if self.protocol.terminated is not None:
                raise ConnectionError(f"connection terminated: {self.protocol.terminated}")
            self._changed.clear()
            await self._changed.wait()

    def result(self) -> PeerResponse:
        assert self.headers is not None
        pseudo = {n.decode(): v.decode("latin-1") for n, v in self.headers if n.startswith(b":")}
        status = pseudo.get(":status")
        return PeerResponse(
            stream_id=self.stream_id,
            status=int(status) if status is not None else None,
            pseudo=pseudo,
            headers=_text((n, v) for n, v in self.headers if not n.startswith(b":")),
            trailers=_text(self.trailers),
            sha256=self.hash.hexdigest(),
            length=self.length,
            body=bytes(self.body) if self.body is not None else None,
        )


# -- the protocol: aioquic QUIC + aioquic H3 -----------------------------------------------


class H3PeerProtocol(PeerProtocol):
    """aioquic's QuicConnectionProtocol running aioquic's H3Connection.

    As a server it answers every request with :func:`route`; as a client,
    :meth:`request` sends one and returns the complete response. Inherits the
    event log, ``wait_progress`` and ``describe`` from aioquic_peer.
    """

    def __init__(self, *args: Any, log: EventLog | None = None, **kwargs: Any) -> None:
        super().__init__(*args, log=log, **kwargs)
        self.serve_commands = False
        self.is_client = self._quic.configuration.is_client
        # as in aioquic's examples: the client speaks h3 from the start, the
        # server once ALPN chose it
        self.h3: H3Connection | None = H3Connection(self._quic) if self.is_client else None
        self.messages: dict[int, H3Message] = {}
        self.handler_errors: list[BaseException] = []
        self.requests: list[PeerResponse] = []  # server: every request seen, complete

    def quic_event_received(self, event: events.QuicEvent) -> None:
        self.log.add(event)
        if isinstance(event, events.ProtocolNegotiated):
            if self.h3 is None and event.alpn_protocol in H3_ALPN:
                self.h3 = H3Connection(self._quic)
        elif isinstance(event, events.HandshakeCompleted):
            self.handshake = event
        elif isinstance(event, events.StreamReset):
            message = self.messages.get(event.stream_id)
            if message is not None:
                message.reset_code = event.error_code
                message.notify()
        elif isinstance(event, events.StopSendingReceived):
            message = self.messages.get(event.stream_id)
            if message is not None:
                message.stop_code = event.error_code
                message.notify()
        elif isinstance(event, events.ConnectionTerminated):
            self.terminated = event
            for message in self.messages.values():
                message.notify()
            self._progress.set()
        if self.h3 is not None:
            for h3_event in self.h3.handle_event(event):
                self._h3_event_received(h3_event)

    def _h3_event_received(self, event: H3Event) -> None:
        if not isinstance(event, HeadersReceived | DataReceived) or event.push_id is not None:
            return
        message = self.messages.get(event.stream_id)
        if message is None:
            if self.is_client or not isinstance(event, HeadersReceived):
                return
            message = self.messages[event.stream_id] = H3Message(self, event.stream_id, False)
            task = asyncio.get_running_loop().create_task(self._serve(message))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if isinstance(event, HeadersReceived):
            message.on_headers(event.headers)
        else:
            message.on_data(event.data)
        if event.stream_ended:
            message.ended = True
        message.notify()

    # -- sending (both sides) ----------------------------------------------------------

    def _unacknowledged(self, stream_id: int) -> int:
        stream = self._quic._streams.get(stream_id)
        return len(stream.sender._buffer) if stream is not None else 0

    async def send_message(
        self,
        stream_id: int,
        headers: Headers,
        body: bytes = b"",
        trailers: Headers | None = None,
    ) -> None:
        """HEADERS, DATA in chunks (bounded by SEND_HIGH_WATER), trailers or FIN."""
        h3 = self.h3
        assert h3 is not None
        h3.send_headers(stream_id, headers, end_stream=not body and not trailers)
        self.transmit()
        view = memoryview(body)
        while view:
            message = self.messages.get(stream_id)
            if message is not None and message.stop_code is not None:
                return  # aioquic reset our side in reply to STOP_SENDING
            if self._unacknowledged(stream_id) > SEND_HIGH_WATER:
                await self.wait_progress()
                continue
            chunk, view = view[:SEND_CHUNK], view[SEND_CHUNK:]
            h3.send_data(stream_id, bytes(chunk), end_stream=not view and not trailers)
            self.transmit()
        if trailers:
            h3.send_headers(stream_id, trailers, end_stream=True)
            self.transmit()

    # -- server -------------------------------------------------------------------------

    async def _serve(self, message: H3Message) -> None:
        try:
            await message.wait_end()
            request = message.result()
            self.requests.append(request)
            reply = route(
                request.pseudo.get(":method", ""),
                request.pseudo.get(":path", ""),
                request.headers,
                request.sha256,
                request.length,
                request.trailers,
            )
            head = [(b":status", str(reply.status).encode())]
            head += [(n.encode(), v.encode()) for n, v in reply.headers]
            head.append((b"content-length", str(len(reply.body)).encode()))
            trailers = [(n.encode(), v.encode()) for n, v in reply.trailers]
            await self.send_message(message.stream_id, head, reply.body, trailers)
        except (PeerStreamReset, ConnectionError, asyncio.CancelledError):
            pass
        except Exception as exc:  # surfaced by the tests through handler_errors
            self.handler_errors.append(exc)
            with contextlib.suppress(Exception):
                self._quic.reset_stream(message.stream_id, H3_INTERNAL_ERROR)
                self.transmit()
        finally:
            self.messages.pop(message.stream_id, None)

    # -- client -------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        authority: str,
        path: str,
        *,
        headers: TextHeaders = (),
        body: bytes = b"",
        trailers: TextHeaders = (),
        keep_body: bool = True,
    ) -> PeerResponse:
        """Send one request and wait for the complete response."""
        stream_id = self._quic.get_next_available_stream_id()
        message = self.messages[stream_id] = H3Message(self, stream_id, keep_body)
        head: Headers = [
            (b":method", method.encode()),
            (b":scheme", b"https"),
            (b":authority", authority.encode()),
            (b":path", path.encode()),
        ]
        head += [(n.lower().encode(), v.encode()) for n, v in headers]
        if body:
            head.append((b"content-length", str(len(body)).encode()))
        try:
            # (send_headers creates the stream before the first await, so
            # concurrent requests each get their own stream id)
            await self.send_message(
                stream_id, head, body, [(n.encode(), v.encode()) for n, v in trailers]
            )
            await message.wait_end()
            return message.result()
        finally:
            self.messages.pop(stream_id, None)

    async def abandon_request(
        self,
        authority: str,
        path: str,
        body_prefix: bytes,
        error_code: int,
        *,
        at_once: bool = False,
    ) -> int | None:
        """Send a POST's headers and part of its body, then RESET_STREAM (only).

        ``at_once``: reset in the same flight (the server may never see the
        headers), else only after the next datagram from the server. Waits
        until the server ends its side of the stream and returns the code of
        its RESET_STREAM (None if it sent a complete response instead);
        raises ConnectionError if the connection ends.
        """
        stream_id = self._quic.get_next_available_stream_id()
        head: Headers = [
            (b":method", b"POST"),
            (b":scheme", b"https"),
            (b":authority", authority.encode()),
            (b":path", path.encode()),
        ]
        message = self.messages[stream_id] = H3Message(self, stream_id, False)
        try:
            h3 = self.h3
            assert h3 is not None
            h3.send_headers(stream_id, head)
            h3.send_data(stream_id, body_prefix, end_stream=False)
            if not at_once:
                self.transmit()
                await self.wait_progress()  # let the request reach the server first
            self._quic.reset_stream(stream_id, error_code)
            self.transmit()
            await message.wait_end()
        except PeerStreamReset as exc:
            return exc.error_code
        finally:
            self.messages.pop(stream_id, None)
        return None

    def qpack_stats(self) -> dict[str, int]:
        """aioquic's own QPACK counters (bytes on the encoder and decoder streams)."""
        h3 = self.h3
        assert h3 is not None
        return {
            "encoder_bytes_sent": h3._encoder_bytes_sent,
            "encoder_bytes_received": h3._encoder_bytes_received,
            "decoder_bytes_sent": h3._decoder_bytes_sent,
            "decoder_bytes_received": h3._decoder_bytes_received,
        }


# -- server and client ---------------------------------------------------------------------


class H3PeerServer:
    """An aioquic HTTP/3 server (made on the peer loop with :meth:`start`)."""

    def __init__(self, server: QuicServer, connections: list[H3PeerProtocol]) -> None:
        self.server = server
        self.connections = connections

    @property
    def port(self) -> int:
        transport = self.server._transport
        assert transport is not None
        return int(transport.get_extra_info("sockname")[1])

    @classmethod
    async def start(cls, configuration: QuicConfiguration, host: str = "127.0.0.1") -> H3PeerServer:
        connections: list[H3PeerProtocol] = []
        log = EventLog()

        def create_protocol(*args: Any, **kwargs: Any) -> H3PeerProtocol:
            protocol = H3PeerProtocol(*args, log=log, **kwargs)
            connections.append(protocol)
            return protocol

        server = await aioquic_serve(
            host, 0, configuration=configuration, create_protocol=create_protocol
        )
        return cls(server, connections)

    async def stop(self) -> None:
        self.server.close()

    async def qpack_stats(self) -> list[dict[str, int]]:
        return [c.qpack_stats() for c in self.connections if c.h3 is not None]

    async def describe(self) -> list[dict[str, Any]]:
        return [c.describe() for c in self.connections if c.handshake is not None]

    @property
    def handler_errors(self) -> list[BaseException]:
        return [e for c in self.connections for e in c.handler_errors]


class H3PeerClient:
    """An aioquic HTTP/3 client connection that stays open across PeerLoop.run calls."""

    def __init__(
        self, protocol: H3PeerProtocol, authority: str, stack: contextlib.AsyncExitStack
    ) -> None:
        self.protocol = protocol
        self.authority = authority
        self._stack = stack

    @classmethod
    async def connect(cls, host: str, port: int, configuration: QuicConfiguration) -> H3PeerClient:
        stack = contextlib.AsyncExitStack()
        protocol = await stack.enter_async_context(
            connect(host, port, configuration=configuration, create_protocol=H3PeerProtocol)
        )
        assert isinstance(protocol, H3PeerProtocol)
        authority = f"{configuration.server_name or host}:{port}"
        return cls(protocol, authority, stack)

    async def request(self, method: str, path: str, **kwargs: Any) -> PeerResponse:
        return await self.protocol.request(method, self.authority, path, **kwargs)

    async def qpack_stats(self) -> dict[str, int]:
        return self.protocol.qpack_stats()

    async def describe(self) -> dict[str, Any]:
        return self.protocol.describe()

    async def close(self) -> None:
        """Send CONNECTION_CLOSE and wait (bounded) for the connection to end."""
        await asyncio.wait_for(self._stack.aclose(), 10)


# -- as a separate process -----------------------------------------------------------------
#
# As in aioquic_peer: in-process, both stacks share one GIL, which distorts
# bulk-transfer timings. ``python tests/aioquic_h3_peer.py ...`` runs the
# aioquic side in its own interpreter:
#
#   serve --certfile F --keyfile F      prints "port <n>", serves until stdin closes
#   get   --port N --cafile F --path P  prints "<status> <sha256> <length> <seconds>"
#   post  --port N --cafile F --size N  POSTs pattern(N) to /sha256;
#                                       prints "<status> <x-request-sha256> <length> <seconds>"


async def _serve_until_stdin_closes(args: Any) -> None:
    configuration = peer_configuration(
        is_client=False, alpn=["h3"], certfile=args.certfile, keyfile=args.keyfile
    )
    server = await H3PeerServer.start(configuration, args.host)
    print(f"port {server.port}", flush=True)
    await wait_until_stdin_closes()
    server.server.close()
    if server.handler_errors:
        raise SystemExit(f"handler errors: {server.handler_errors!r}")


async def _client(args: Any) -> None:
    configuration = peer_configuration(
        is_client=True, alpn=["h3"], cafile=args.cafile, server_name=args.server_name
    )
    client = await H3PeerClient.connect(args.host, args.port, configuration)
    try:
        await client.request("GET", "/bytes/1")  # SETTINGS exchanged before the timing
        started = time.perf_counter()
        if args.command == "get":
            response = await client.request("GET", args.path, keep_body=False)
            digest, length = response.sha256, response.length
        else:
            response = await client.request("POST", "/sha256", body=pattern(args.size))
            digest = response.header("x-request-sha256") or "-"
            length = int(response.header("x-request-length") or -1)
        elapsed = time.perf_counter() - started
        print(f"{response.status} {digest} {length} {elapsed:.6f}", flush=True)
    finally:
        await client.close()


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="aioquic HTTP/3 interop peer")
    parser.add_argument("command", choices=["serve", "get", "post"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--certfile")
    parser.add_argument("--keyfile")
    parser.add_argument("--cafile")
    parser.add_argument("--server-name", default="localhost")
    parser.add_argument("--path", default="/")
    parser.add_argument("--size", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=PEER_TIMEOUT)
    args = parser.parse_args(argv)
    runner = _serve_until_stdin_closes if args.command == "serve" else _client
    asyncio.run(asyncio.wait_for(runner(args), args.timeout))


if __name__ == "__main__":
    main()
