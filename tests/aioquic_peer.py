"""aioquic as an independent interop peer (test helper).

aioquic is asyncio-based, ghostwire trio-based: the aioquic side runs on its
own asyncio event loop in a daemon thread (:class:`PeerLoop`), and the trio
test awaits coroutines submitted to that loop with :meth:`PeerLoop.run`, which
never blocks the trio loop and is cancellable (``trio.fail_after``). Every
coroutine submitted also gets an asyncio-side timeout, so neither side can
hang the test run.

Both peers speak the same tiny protocol on bidirectional streams: the stream
starts with one command line, then

* ``echo``          echo every byte back, FIN after the peer's FIN;
* ``sink``          read to the FIN, answer ``<sha256 hex> <length>`` and FIN;
* ``source <n>``    send :func:`pattern` (n) and FIN;
* ``reset <code>``  reset our sending side (RESET_STREAM) with ``code``;
* ``stop <code>``   STOP_SENDING with ``code``, then answer ``stopped`` and FIN.

:class:`PeerProtocol` records every QUIC event aioquic raises (in an
:class:`EventLog`, shared by all connections of a server) so tests can assert
on what the aioquic side saw: ``StreamReset``, ``StopSendingReceived``, ...

Set ``GW_INTEROP_QLOG=<dir>`` to write aioquic's qlog (and, in the tests,
ghostwire's) into a directory, and ``SSLKEYLOGFILE`` for both TLS key logs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from functools import cache
from typing import Any, TextIO, TypeVar

import trio
from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import QuicServer
from aioquic.asyncio.server import serve as aioquic_serve
from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import QuicEvent
from aioquic.quic.logger import QuicFileLogger
from aioquic.tls import CipherSuite

T = TypeVar("T")

PEER_TIMEOUT = 60.0
"""Upper bound for any coroutine run on the aioquic loop."""

SEND_CHUNK = 256 << 10
SEND_HIGH_WATER = 1 << 20
"""aioquic buffers without limit; our senders wait while this much is unacknowledged."""


@cache
def pattern(length: int) -> bytes:
    """``length`` deterministic pseudo-random bytes (what ``source`` sends)."""
    return random.Random(length).randbytes(length)


# -- the asyncio loop in a thread ---------------------------------------------


class PeerLoop:
    """An asyncio event loop running in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name="aioquic-peer", daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def submit(
        self, coro: Coroutine[Any, Any, T], timeout: float = PEER_TIMEOUT
    ) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(asyncio.wait_for(coro, timeout), self.loop)

    async def run(self, coro: Coroutine[Any, Any, T], peer_timeout: float = PEER_TIMEOUT) -> T:
        """Run ``coro`` on the aioquic loop; await its result from trio.

        ``peer_timeout`` bounds it on the asyncio side; bound the trio side
        with ``trio.fail_after`` (cancelling the wait cancels the coroutine).
        """
        return await wait_future(self.submit(coro, peer_timeout))

    def close(self) -> None:
        """Cancel what still runs on the loop, stop it and join the thread."""
        if self.loop.is_closed():
            return

        async def shutdown() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self.loop.close()


async def wait_future(future: concurrent.futures.Future[T]) -> T:
    """Await a thread-safe future from trio without blocking the trio loop."""
    token = trio.lowlevel.current_trio_token()
    done = trio.Event()

    def on_done(_: object) -> None:
        with contextlib.suppress(trio.RunFinishedError):
            token.run_sync_soon(done.set)

    future.add_done_callback(on_done)
    try:
        await done.wait()
    finally:
        if not future.done():
            future.cancel()
    return future.result()


# -- configuration --------------------------------------------------------------


SUITES = {
    "TLS_AES_128_GCM_SHA256": CipherSuite.AES_128_GCM_SHA256,
    "TLS_AES_256_GCM_SHA384": CipherSuite.AES_256_GCM_SHA384,
    "TLS_CHACHA20_POLY1305_SHA256": CipherSuite.CHACHA20_POLY1305_SHA256,
}


def peer_configuration(
    *,
    is_client: bool,
    alpn: list[str],
    cafile: str | None = None,
    certfile: str | None = None,
    keyfile: str | None = None,
    server_name: str | None = None,
    cipher_suites: list[str] | None = None,
    keylog: TextIO | None = None,
    **options: Any,
) -> QuicConfiguration:
    """A QuicConfiguration; ``cipher_suites`` are TLS names (``TLS_AES_128_GCM_SHA256``)."""
    config = QuicConfiguration(
        is_client=is_client, alpn_protocols=alpn, server_name=server_name, **options
    )
    if cafile is not None:
        config.load_verify_locations(cafile)
    if certfile is not None:
        config.load_cert_chain(certfile, keyfile)
    if cipher_suites is not None:
        config.cipher_suites = [SUITES[name] for name in cipher_suites]
    if keylog is None and os.environ.get("SSLKEYLOGFILE"):
        # debugging only: the file stays open for the life of the process
        keylog = open(os.environ["SSLKEYLOGFILE"], "a", encoding="ascii")  # noqa: SIM115
    if keylog is not None:
        config.secrets_log_file = keylog
    qlog_dir = os.environ.get("GW_INTEROP_QLOG")
    if qlog_dir:
        os.makedirs(qlog_dir, exist_ok=True)
        config.quic_logger = QuicFileLogger(qlog_dir)
    return config


# -- events and streams -----------------------------------------------------------


@dataclass
class EventLog:
    """Every QUIC event the aioquic side raised, in order, with waiters."""

    events: list[QuicEvent] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, event: QuicEvent) -> None:
        self.events.append(event)
        self._changed.set()

    async def wait_for(self, predicate: Callable[[QuicEvent], bool]) -> QuicEvent:
        seen = 0
        while True:
            for event in self.events[seen:]:
                if predicate(event):
                    return event
            seen = len(self.events)
            self._changed.clear()
            await self._changed.wait()

    def of(self, kind: type[T]) -> list[T]:
        return [e for e in self.events if isinstance(e, kind)]


class PeerStreamReset(Exception):
    def __init__(self, error_code: int) -> None:
        super().__init__(f"stream reset by ghostwire with code {error_code}")
        self.error_code = error_code


class PeerStream:
    """One aioquic stream with a small async read/write API."""

    def __init__(self, protocol: PeerProtocol, stream_id: int) -> None:
        self.protocol = protocol
        self.stream_id = stream_id
        self._buffer = bytearray()
        self.ended = False
        self.reset_code: int | None = None  # the peer's RESET_STREAM
        self.stop_code: int | None = None  # the peer's STOP_SENDING
        self._changed = asyncio.Event()

    def _notify(self) -> None:
        self._changed.set()

    async def _wait(self) -> None:
        if self.protocol.terminated is not None:
            raise ConnectionError(f"connection terminated: {self.protocol.terminated}")
        self._changed.clear()
        await self._changed.wait()

    async def read(self, max_bytes: int = 65536) -> bytes:
        """Some data, ``b""`` at the FIN; raises :class:`PeerStreamReset`."""
        while True:
            if self._buffer:
                chunk = bytes(self._buffer[:max_bytes])
                del self._buffer[:max_bytes]
                return chunk
            if self.reset_code is not None:
                raise PeerStreamReset(self.reset_code)
            if self.ended:
                return b""
            await self._wait()

    async def readline(self) -> bytes:
        while True:
            index = self._buffer.find(b"\n")
            if index >= 0:
                line = bytes(self._buffer[: index + 1])
                del self._buffer[: index + 1]
                return line
            if self.reset_code is not None:
                raise PeerStreamReset(self.reset_code)
            if self.ended:
                line = bytes(self._buffer)
                self._buffer.clear()
                return line
            await self._wait()

    async def read_all(self) -> bytes:
        parts = []
        while chunk := await self.read(1 << 20):
            parts.append(chunk)
        return b"".join(parts)

    async def hash_all(self) -> tuple[str, int]:
        data_hash = hashlib.sha256()
        length = 0
        while chunk := await self.read(1 << 20):
            data_hash.update(chunk)
            length += len(chunk)
        return data_hash.hexdigest(), length

    def write(self, data: bytes, end_stream: bool = False) -> None:
        self.protocol._quic.send_stream_data(self.stream_id, data, end_stream=end_stream)
        self.protocol.transmit()

    def _unacknowledged(self) -> int:
        stream = self.protocol._quic._streams.get(self.stream_id)
        return len(stream.sender._buffer) if stream is not None else 0

    async def write_all(self, data: bytes, end_stream: bool = False) -> None:
        """Write in chunks, waiting while more than SEND_HIGH_WATER is unacknowledged.

        Stops early (without FIN) once the peer sent STOP_SENDING: aioquic
        then resets the stream itself and refuses more data.
        """
        view = memoryview(data)
        while view:
            if self.stop_code is not None:
                return
            if self._unacknowledged() > SEND_HIGH_WATER:
                await self.protocol.wait_progress()
                continue
            self.write(bytes(view[:SEND_CHUNK]))
            view = view[SEND_CHUNK:]
        if end_stream and self.stop_code is None:
            self.write(b"", end_stream=True)

    def reset(self, error_code: int) -> None:
        self.protocol._quic.reset_stream(self.stream_id, error_code)
        self.protocol.transmit()

    def stop(self, error_code: int) -> None:
        self.protocol._quic.stop_stream(self.stream_id, error_code)
        self.protocol.transmit()


class PeerProtocol(QuicConnectionProtocol):
    """aioquic's connection protocol with streams, an event log and the command protocol."""

    def __init__(self, *args: Any, log: EventLog | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.log = log if log is not None else EventLog()
        self.streams: dict[int, PeerStream] = {}
        self.terminated: events.ConnectionTerminated | None = None
        self.handshake: events.HandshakeCompleted | None = None
        self.serve_commands = not self._quic.configuration.is_client
        self._progress = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self.command_errors: list[BaseException] = []

    # aioquic calls these on every datagram / timer: wake writers waiting for acks.
    def datagram_received(self, data: bytes | str, addr: Any) -> None:
        super().datagram_received(data, addr)
        self._progress.set()

    def _handle_timer(self) -> None:
        super()._handle_timer()
        self._progress.set()

    async def wait_progress(self) -> None:
        if self.terminated is not None:
            raise ConnectionError(f"connection terminated: {self.terminated}")
        self._progress.clear()
        await self._progress.wait()

    def open_stream(self) -> PeerStream:
        stream_id = self._quic.get_next_available_stream_id()
        # aioquic only allocates the ID once the stream exists on its send side
        self._quic._get_or_create_stream_for_send(stream_id)
        return self._stream(stream_id)

    def _stream(self, stream_id: int) -> PeerStream:
        stream = self.streams.get(stream_id)
        if stream is None:
            stream = self.streams[stream_id] = PeerStream(self, stream_id)
            locally_initiated = (stream_id & 1) == (0 if self._quic.configuration.is_client else 1)
            if self.serve_commands and not locally_initiated and not stream_id & 2:
                task = asyncio.get_running_loop().create_task(self._serve_stream(stream))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        return stream

    def quic_event_received(self, event: events.QuicEvent) -> None:
        self.log.add(event)
        if isinstance(event, events.StreamDataReceived):
            stream = self._stream(event.stream_id)
            stream._buffer += event.data
            if event.end_stream:
                stream.ended = True
            stream._notify()
        elif isinstance(event, events.StreamReset):
            stream = self._stream(event.stream_id)
            stream.reset_code = event.error_code
            stream._notify()
        elif isinstance(event, events.StopSendingReceived):
            stream = self._stream(event.stream_id)
            stream.stop_code = event.error_code
            stream._notify()
        elif isinstance(event, events.HandshakeCompleted):
            self.handshake = event
        elif isinstance(event, events.ConnectionTerminated):
            self.terminated = event
            for stream in self.streams.values():
                stream._notify()
            self._progress.set()

    def describe(self) -> dict[str, Any]:
        """What aioquic negotiated: ALPN, version, cipher suite, peer certificate."""
        tls = self._quic.tls
        schedule = tls.key_schedule
        return {
            "alpn": tls.alpn_negotiated,
            "version": self._quic._version,
            "cipher_suite": schedule.cipher_suite.name if schedule is not None else None,
            "peer_certificate": tls._peer_certificate,
        }

    # -- the command protocol (server side) ---------------------------------------

    async def _serve_stream(self, stream: PeerStream) -> None:
        try:
            await run_command(stream)
        except (PeerStreamReset, ConnectionError, asyncio.CancelledError):
            pass
        except Exception as exc:  # surfaced by the tests through command_errors
            self.command_errors.append(exc)


async def run_command(stream: PeerStream) -> None:
    """Serve one stream of the command protocol (see the module docstring)."""
    line = (await stream.readline()).decode().split()
    if not line:
        return
    command, args = line[0], [int(a, 0) for a in line[1:]]
    if command == "echo":
        while chunk := await stream.read():
            stream.write(chunk)
        stream.write(b"", end_stream=True)
    elif command == "sink":
        data_hash, length = await stream.hash_all()
        stream.write(f"{data_hash} {length}\n".encode(), end_stream=True)
    elif command == "source":
        await stream.write_all(pattern(args[0]), end_stream=True)
    elif command == "reset":
        stream.reset(args[0])
    elif command == "stop":
        stream.stop(args[0])
        stream.write(b"stopped\n", end_stream=True)
    else:
        stream.reset(0x99)


# -- server and client --------------------------------------------------------------


class PeerServer:
    """An aioquic server (made on the peer loop with :meth:`start`)."""

    def __init__(self, server: QuicServer, log: EventLog, connections: list[PeerProtocol]) -> None:
        self.server = server
        self.log = log
        self.connections = connections

    @property
    def port(self) -> int:
        transport = self.server._transport
        assert transport is not None
        return int(transport.get_extra_info("sockname")[1])

    @classmethod
    async def start(
        cls,
        configuration: QuicConfiguration,
        host: str = "127.0.0.1",
        *,
        retry: bool = False,
        **serve_options: Any,
    ) -> PeerServer:
        """An aioquic server; ``serve_options`` go to aioquic's ``serve`` (e.g.
        its session ticket fetcher and handler)."""
        log = EventLog()
        connections: list[PeerProtocol] = []

        def create_protocol(*args: Any, **kwargs: Any) -> PeerProtocol:
            protocol = PeerProtocol(*args, log=log, **kwargs)
            connections.append(protocol)
            return protocol

        server = await aioquic_serve(
            host,
            0,
            configuration=configuration,
            create_protocol=create_protocol,
            retry=retry,
            **serve_options,
        )
        return cls(server, log, connections)

    async def wait_for(self, predicate: Callable[[events.QuicEvent], bool]) -> events.QuicEvent:
        return await self.log.wait_for(predicate)

    async def describe(self) -> list[dict[str, Any]]:
        return [c.describe() for c in self.connections if c.handshake is not None]

    async def stop(self) -> None:
        self.server.close()

    @property
    def command_errors(self) -> list[BaseException]:
        return [e for c in self.connections for e in c.command_errors]


class PeerClient:
    """An aioquic client connection that stays open across :meth:`PeerLoop.run` calls."""

    def __init__(self, protocol: PeerProtocol, stack: contextlib.AsyncExitStack) -> None:
        self.protocol = protocol
        self._stack = stack

    @classmethod
    async def connect(cls, host: str, port: int, configuration: QuicConfiguration) -> PeerClient:
        stack = contextlib.AsyncExitStack()
        protocol = await stack.enter_async_context(
            connect(host, port, configuration=configuration, create_protocol=PeerProtocol)
        )
        assert isinstance(protocol, PeerProtocol)
        return cls(protocol, stack)

    @property
    def log(self) -> EventLog:
        return self.protocol.log

    async def close(self) -> None:
        """Send CONNECTION_CLOSE and wait (bounded) for the connection to end."""
        await asyncio.wait_for(self._stack.aclose(), 10)


# -- as a separate process -------------------------------------------------------------
#
# In-process, aioquic and ghostwire share one GIL: every sendto/recvfrom hands
# it over and the other side may keep it for up to sys.getswitchinterval(),
# which distorts bulk-transfer timings. ``python tests/aioquic_peer.py ...``
# runs the aioquic side in its own interpreter instead:
#
#   serve  --certfile F --keyfile F [--alpn A]        prints "port <n>", serves until stdin closes
#   upload|download --port N --cafile F --size N [--alpn A] [--server-name S]
#                                                     prints "<sha256> <length> <seconds>"


@contextlib.asynccontextmanager
async def peer_server_process(command: list[str]) -> AsyncIterator[int]:
    """Run a peer script's ``serve`` command in a subprocess (from trio);
    yields the port it reports, and stops it by closing its stdin."""
    process = await trio.lowlevel.open_process(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert process.stdout is not None and process.stdin is not None
        line = b""
        while not line.endswith(b"\n"):
            chunk = await process.stdout.receive_some()
            assert chunk, "the aioquic server exited before reporting its port"
            line += chunk
        word, port = line.split()
        assert word == b"port"
        yield int(port)
        await process.stdin.aclose()
        with trio.move_on_after(10):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            with trio.CancelScope(shield=True):
                await process.wait()


async def wait_until_stdin_closes() -> None:
    """Return once the parent process closes our stdin (how it stops a peer script)."""
    loop = asyncio.get_running_loop()
    stdin_closed = asyncio.Event()

    def wait_stdin() -> None:
        sys.stdin.buffer.read()
        loop.call_soon_threadsafe(stdin_closed.set)

    # a daemon thread, so that a timeout can end the process while it blocks
    threading.Thread(target=wait_stdin, daemon=True).start()
    await stdin_closed.wait()


async def _serve_until_stdin_closes(args: Any) -> None:
    configuration = peer_configuration(
        is_client=False, alpn=[args.alpn], certfile=args.certfile, keyfile=args.keyfile
    )
    server = await PeerServer.start(configuration, args.host)
    print(f"port {server.port}", flush=True)
    await wait_until_stdin_closes()
    server.server.close()
    errors = server.command_errors
    if errors:
        raise SystemExit(f"command errors: {errors!r}")


async def _transfer(args: Any) -> None:
    configuration = peer_configuration(
        is_client=True, alpn=[args.alpn], cafile=args.cafile, server_name=args.server_name
    )
    client = await PeerClient.connect(args.host, args.port, configuration)
    try:
        stream = client.protocol.open_stream()
        started = time.perf_counter()
        if args.command == "upload":
            stream.write(b"sink\n")
            await stream.write_all(pattern(args.size), end_stream=True)
            digest, length = (await stream.read_all()).decode().split()
            result = f"{digest} {length}"
        else:
            stream.write(f"source {args.size}\n".encode(), end_stream=True)
            digest, size = await stream.hash_all()
            result = f"{digest} {size}"
        print(f"{result} {time.perf_counter() - started:.6f}", flush=True)
    finally:
        await client.close()


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="aioquic interop peer")
    parser.add_argument("command", choices=["serve", "upload", "download"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--alpn", default="gw-interop")
    parser.add_argument("--certfile")
    parser.add_argument("--keyfile")
    parser.add_argument("--cafile")
    parser.add_argument("--server-name", default="localhost")
    parser.add_argument("--size", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=PEER_TIMEOUT)
    args = parser.parse_args(argv)
    runner = _serve_until_stdin_closes if args.command == "serve" else _transfer
    asyncio.run(asyncio.wait_for(runner(args), args.timeout))


if __name__ == "__main__":
    main()
