"""The aioquic side of the bench: server and client workloads, under asyncio."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import serve
from aioquic.h3.connection import H3Connection
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import ProtocolNegotiated, QuicEvent, StreamDataReceived, StreamReset
from aioquic.tls import CipherSuite

from .common import (
    AIOQUIC_SEND_BUFFER,
    ALPN,
    BULK_CHUNK,
    ECHO_LIMIT,
    H3_ALPN,
    H3_BODY_SIZE,
    H3_PATH,
    HANDSHAKE8_FACTOR,
    HOST,
    IDLE_TIMEOUT,
    PORT_PREFIX,
    SERVER_NAME,
    CpuMeter,
    Measurement,
    Settings,
    Sizes,
    check_bulk_reply,
    read_rss_bytes,
    reply_for,
    request_payload,
)


def server_config(settings: Settings, alpn: str = ALPN) -> QuicConfiguration:
    config = QuicConfiguration(
        is_client=False,
        alpn_protocols=[alpn],
        max_datagram_size=settings.max_datagram_size,
        idle_timeout=IDLE_TIMEOUT,
        cipher_suites=[CipherSuite.AES_128_GCM_SHA256],
    )
    config.load_cert_chain(settings.certs.certfile, settings.certs.keyfile)
    return config


def client_config(settings: Settings, alpn: str = ALPN) -> QuicConfiguration:
    config = QuicConfiguration(
        is_client=True,
        alpn_protocols=[alpn],
        max_datagram_size=settings.max_datagram_size,
        idle_timeout=IDLE_TIMEOUT,
        cipher_suites=[CipherSuite.AES_128_GCM_SHA256],
        server_name=SERVER_NAME,
    )
    config.load_verify_locations(settings.certs.cafile)  # verify_mode stays CERT_REQUIRED
    return config


# -- server -------------------------------------------------------------------


class CoalescingProtocol(QuicConnectionProtocol):
    """aioquic at its fastest: one ``transmit()`` per event-loop pass.

    aioquic's base class transmits after every datagram, and a client that
    calls ``transmit()`` after every request sends a datagram per request.
    aioquic's best users instead schedule a single ``transmit()`` with
    ``loop.call_soon`` whenever there is something to send, so everything
    queued in one pass of the event loop (replies to the requests of one
    datagram; the requests of every task woken in one pass, and the ACKs
    of what just arrived) leaves in shared datagrams.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._transmit_handle: asyncio.Handle | None = None

    def transmit_soon(self) -> None:
        if self._transmit_handle is None:
            self._transmit_handle = self._loop.call_soon(self._transmit_now)

    def _transmit_now(self) -> None:
        self._transmit_handle = None
        self.transmit()

    def datagram_received(self, data: bytes | str, addr: Any) -> None:
        # The base class: receive, process events, transmit. Here the
        # transmit waits for the end of this event-loop pass.
        self._quic.receive_datagram(data, addr, now=self._loop.time())  # type: ignore[arg-type]
        self._process_events()
        self.transmit_soon()


class ServerProtocol(CoalescingProtocol):
    """Reads each stream to its end, then replies (see bench.common)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._received: dict[int, int] = {}
        self._heads: dict[int, bytes] = {}

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, StreamDataReceived):
            sid = event.stream_id
            received = self._received.get(sid, 0)
            if received < ECHO_LIMIT:
                self._heads[sid] = self._heads.get(sid, b"") + event.data[: ECHO_LIMIT - received]
            received += len(event.data)
            self._received[sid] = received
            if event.end_stream:
                head = self._heads.pop(sid, b"")
                del self._received[sid]
                # Transmitted at the end of this event-loop pass (CoalescingProtocol).
                self._quic.send_stream_data(sid, reply_for(received, head), end_stream=True)
        elif isinstance(event, StreamReset):
            self._received.pop(event.stream_id, None)
            self._heads.pop(event.stream_id, None)


_H3_BODY = request_payload(H3_BODY_SIZE)


class H3ServerProtocol(CoalescingProtocol):
    """HTTP/3 over aioquic, wired as in aioquic's examples/http3_server.py.

    Every QUIC event goes through ``H3Connection.handle_event``. A complete
    request (its stream ended) is answered at once, inside the event handler:
    no task per request; one transmit per event-loop pass (CoalescingProtocol).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._http: H3Connection | None = None
        self._requests: dict[int, list[tuple[bytes, bytes]]] = {}

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, ProtocolNegotiated):
            self._http = H3Connection(self._quic)
        elif isinstance(event, StreamReset):
            self._requests.pop(event.stream_id, None)
        if self._http is not None:
            for http_event in self._http.handle_event(event):
                self._http_event_received(http_event)

    def _http_event_received(self, event: H3Event) -> None:
        if isinstance(event, HeadersReceived):
            self._requests[event.stream_id] = event.headers
            ended = event.stream_ended
        elif isinstance(event, DataReceived):  # a request body: ignored
            ended = event.stream_ended
        else:
            return
        if ended:
            self._respond(event.stream_id, self._requests.pop(event.stream_id, []))

    def _respond(self, stream_id: int, headers: list[tuple[bytes, bytes]]) -> None:
        assert self._http is not None
        pseudo = dict(headers)
        if pseudo.get(b":method") == b"GET" and pseudo.get(b":path") == H3_PATH.encode():
            status, body = b"200", _H3_BODY
        else:
            status, body = b"404", b"not found\n"
        self._http.send_headers(
            stream_id,
            [
                (b":status", status),
                (b"content-type", b"application/octet-stream"),
                (b"content-length", str(len(body)).encode()),
            ],
        )
        self._http.send_data(stream_id, body, end_stream=True)


async def _serve(settings: Settings, protocol: str) -> None:
    if protocol == "h3":
        server = await serve(
            HOST, 0, configuration=server_config(settings, H3_ALPN),
            create_protocol=H3ServerProtocol,
        )  # fmt: skip
    else:
        server = await serve(
            HOST, 0, configuration=server_config(settings), create_protocol=ServerProtocol
        )
    assert server._transport is not None
    port = server._transport.get_extra_info("sockname")[1]
    print(f"{PORT_PREFIX}{port}", flush=True)
    stop = asyncio.Event()  # SIGTERM ends the server gracefully (see bench.gw)
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    server.close()


def run_server(settings: Settings, protocol: str = "raw") -> None:
    asyncio.run(_serve(settings, protocol))


# -- client -------------------------------------------------------------------


class ClientProtocol(CoalescingProtocol):
    """Request/response streams, and a bulk sender with back-pressure."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._replies: dict[int, tuple[list[bytes], asyncio.Future[bytes]]] = {}
        self._drain_waiter: asyncio.Future[None] | None = None
        self._drain_stream = -1

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, StreamDataReceived):
            entry = self._replies.get(event.stream_id)
            if entry is None:
                return
            entry[0].append(event.data)
            if event.end_stream:
                del self._replies[event.stream_id]
                if not entry[1].done():
                    entry[1].set_result(b"".join(entry[0]))
        elif isinstance(event, StreamReset):
            entry = self._replies.pop(event.stream_id, None)
            if entry is not None and not entry[1].done():
                entry[1].set_exception(RuntimeError(f"stream {event.stream_id} reset"))

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        for _, future in self._replies.values():
            if not future.done():
                future.set_exception(ConnectionError("connection lost"))

    def datagram_received(self, data: bytes | str, addr: Any) -> None:
        super().datagram_received(data, addr)
        waiter = self._drain_waiter
        if waiter is not None and self._unacked(self._drain_stream) <= AIOQUIC_SEND_BUFFER:
            self._drain_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _unacked(self, stream_id: int) -> int:
        sender = self._quic._streams[stream_id].sender
        return sender._buffer_stop - sender._buffer_start

    def _expect_reply(self, stream_id: int) -> asyncio.Future[bytes]:
        future: asyncio.Future[bytes] = self._loop.create_future()
        self._replies[stream_id] = ([], future)
        return future

    async def request(self, payload: bytes) -> bytes:
        stream_id = self._quic.get_next_available_stream_id()
        future = self._expect_reply(stream_id)
        self._quic.send_stream_data(stream_id, payload, end_stream=True)
        self.transmit_soon()
        return await future

    async def send_bulk(self, total: int) -> bytes:
        stream_id = self._quic.get_next_available_stream_id()
        future = self._expect_reply(stream_id)
        chunk = bytes(BULK_CHUNK)
        remaining = total
        while remaining:
            size = min(remaining, BULK_CHUNK)
            self._quic.send_stream_data(stream_id, chunk[:size])
            remaining -= size
            self.transmit()
            if self._unacked(stream_id) > AIOQUIC_SEND_BUFFER:
                self._drain_stream = stream_id
                self._drain_waiter = self._loop.create_future()
                await self._drain_waiter
        self._quic.send_stream_data(stream_id, b"", end_stream=True)
        self.transmit()
        return await future


def _connect(port: int, config: QuicConfiguration) -> Any:
    return connect(HOST, port, configuration=config, create_protocol=ClientProtocol)


@contextlib.asynccontextmanager
async def _connect_and_leave(port: int, config: QuicConfiguration) -> AsyncIterator[Any]:
    """aioquic's ``connect`` without its wait for the closing period at the end.

    ``connect`` closes with ``close()`` (CONNECTION_CLOSE sent at once) and
    then waits for ``wait_closed()``: three PTOs (~0.1 s on loopback) in
    which a client that connects in a loop sits idle. ghostwire's ``connect``
    returns once its CONNECTION_CLOSE is sent, so for the handshake
    workloads aioquic's client does the same: the socket is closed right
    after ``close()``.
    """
    loop = asyncio.get_running_loop()
    connection = QuicConnection(configuration=config)
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: ClientProtocol(connection), local_addr=(HOST, 0)
    )
    try:
        protocol.connect((HOST, port))
        await protocol.wait_connected()
        yield protocol
    finally:
        protocol.close()
        transport.close()


async def bulk(port: int, settings: Settings, sizes: Sizes, server_pid: int) -> Measurement:
    config = client_config(settings)
    total = sizes.bulk_bytes
    async with _connect(port, config) as protocol:
        start = time.perf_counter()
        reply = await protocol.send_bulk(total)
        elapsed = time.perf_counter() - start
        check_bulk_reply(reply, total)
    return Measurement(
        values={"bytes": total, "seconds": elapsed, "mbit_s": total * 8 / elapsed / 1e6},
    )


async def handshakes(port: int, settings: Settings, sizes: Sizes, server_pid: int) -> Measurement:
    config = client_config(settings)
    samples: list[float] = []
    for _ in range(sizes.handshake_warmup):
        async with _connect_and_leave(port, config):
            pass
    cpu = CpuMeter(server_pid)
    for _ in range(sizes.handshakes):
        start = time.perf_counter()
        async with _connect_and_leave(port, config):
            samples.append(time.perf_counter() - start)
    return Measurement(values=cpu.per_request(sizes.handshakes), samples=samples)


async def concurrent_handshakes(
    port: int, settings: Settings, sizes: Sizes, server_pid: int
) -> Measurement:
    """``handshake_concurrency`` tasks connect (and close) in a loop."""
    config = client_config(settings)
    samples: list[float] = []
    total = sizes.handshakes * HANDSHAKE8_FACTOR
    remaining = 0

    async def connector() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            start = time.perf_counter()
            async with _connect_and_leave(port, config):
                samples.append(time.perf_counter() - start)

    async def phase(count: int) -> float:
        nonlocal remaining
        remaining = count
        start = time.perf_counter()
        await asyncio.gather(*(connector() for _ in range(sizes.handshake_concurrency)))
        return time.perf_counter() - start

    await phase(max(sizes.handshake_warmup, sizes.handshake_concurrency))
    samples.clear()
    cpu = CpuMeter(server_pid)
    elapsed = await phase(total)
    values = {"handshakes": total, "seconds": elapsed, "handshakes_s": total / elapsed}
    values.update(cpu.per_request(total))
    return Measurement(values=values, samples=samples)


async def request_response(
    port: int, settings: Settings, sizes: Sizes, server_pid: int
) -> Measurement:
    config = client_config(settings)
    payload = request_payload(sizes.message_size)
    samples: list[float] = []
    async with _connect(port, config) as protocol:
        for _ in range(sizes.request_warmup):
            await protocol.request(payload)
        cpu = CpuMeter(server_pid)
        for _ in range(sizes.requests):
            start = time.perf_counter()
            reply = await protocol.request(payload)
            samples.append(time.perf_counter() - start)
            if reply != payload:
                raise RuntimeError(f"bad echo: {len(reply)} bytes")
        values = cpu.per_request(sizes.requests)
    return Measurement(values=values, samples=samples)


async def requests_per_second(
    port: int, settings: Settings, sizes: Sizes, server_pid: int
) -> Measurement:
    config = client_config(settings)
    payload = request_payload(sizes.message_size)
    remaining = sizes.rps_requests
    done = 0
    async with _connect(port, config) as protocol:
        for _ in range(sizes.request_warmup):
            await protocol.request(payload)

        async def worker() -> None:
            nonlocal remaining, done
            while remaining > 0:
                remaining -= 1
                reply = await protocol.request(payload)
                if reply != payload:
                    raise RuntimeError(f"bad echo: {len(reply)} bytes")
                done += 1

        cpu = CpuMeter(server_pid)
        start = time.perf_counter()
        async with asyncio.TaskGroup() as group:
            for _ in range(sizes.rps_concurrency):
                group.create_task(worker())
        elapsed = time.perf_counter() - start
        values = {"requests": done, "seconds": elapsed, "rps": done / elapsed}
        values.update(cpu.per_request(done))
    return Measurement(values=values)


async def idle_memory(port: int, settings: Settings, sizes: Sizes, server_pid: int) -> Measurement:
    config = client_config(settings)
    for _ in range(10):
        async with _connect(port, config) as protocol:
            await protocol.request(b"warm-up")
    await asyncio.sleep(1.0)
    rss_before = read_rss_bytes(server_pid)

    count = sizes.idle_connections
    limiter = asyncio.Semaphore(sizes.idle_concurrency)
    connected = 0
    all_connected = asyncio.Event()
    release = asyncio.Event()

    async def hold() -> None:
        nonlocal connected
        await limiter.acquire()
        acquired = True
        try:
            async with _connect(port, config):
                limiter.release()
                acquired = False
                connected += 1
                if connected == count:
                    all_connected.set()
                await release.wait()
        finally:
            if acquired:
                limiter.release()

    start = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for _ in range(count):
            group.create_task(hold())
        await all_connected.wait()
        setup = time.perf_counter() - start
        await asyncio.sleep(1.0)
        rss_after = read_rss_bytes(server_pid)
        release.set()
    return Measurement(
        values={
            "connections": count,
            "rss_before": rss_before,
            "rss_after": rss_after,
            "per_connection": (rss_after - rss_before) / count,
            "setup_seconds": setup,
        }
    )


# -- HTTP/3 client -----------------------------------------------------------


class H3ClientProtocol(CoalescingProtocol):
    """An HTTP/3 client over aioquic, wired as in aioquic's examples/http3_client.py."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._http = H3Connection(self._quic)
        # stream id -> (status, body parts, future of (status, body))
        self._pending: dict[int, tuple[list[int], list[bytes], asyncio.Future[bytes]]] = {}

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, StreamReset):
            entry = self._pending.pop(event.stream_id, None)
            if entry is not None and not entry[2].done():
                entry[2].set_exception(RuntimeError(f"stream {event.stream_id} reset"))
        for http_event in self._http.handle_event(event):
            self._http_event_received(http_event)

    def _http_event_received(self, event: H3Event) -> None:
        if isinstance(event, HeadersReceived):
            entry = self._pending.get(event.stream_id)
            if entry is None:
                return
            status = dict(event.headers).get(b":status", b"0")
            if not entry[0] and not status.startswith(b"1"):  # skip interim (1xx) heads
                entry[0].append(int(status))
            ended = event.stream_ended
        elif isinstance(event, DataReceived):
            entry = self._pending.get(event.stream_id)
            if entry is None:
                return
            entry[1].append(event.data)
            ended = event.stream_ended
        else:
            return
        if ended:
            del self._pending[event.stream_id]
            status_list, parts, future = entry
            if not future.done():
                if status_list != [200]:
                    future.set_exception(RuntimeError(f"status {status_list}"))
                else:
                    future.set_result(b"".join(parts))

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        for _, _, future in self._pending.values():
            if not future.done():
                future.set_exception(ConnectionError("connection lost"))

    async def get(self, authority: str, path: str) -> bytes:
        """GET https://authority/path; the body of a 200 response."""
        stream_id = self._quic.get_next_available_stream_id()
        future: asyncio.Future[bytes] = self._loop.create_future()
        self._pending[stream_id] = ([], [], future)
        self._http.send_headers(
            stream_id,
            [
                (b":method", b"GET"),
                (b":scheme", b"https"),
                (b":authority", authority.encode()),
                (b":path", path.encode()),
            ],
            end_stream=True,
        )
        self.transmit_soon()
        return await future


def _h3_connect(port: int, settings: Settings) -> Any:
    return connect(
        HOST, port, configuration=client_config(settings, H3_ALPN),
        create_protocol=H3ClientProtocol,
    )  # fmt: skip


async def _h3_get(protocol: H3ClientProtocol, authority: str) -> None:
    # Per-request timeout, as ghostwire's Client has (30 s).
    body = await asyncio.wait_for(protocol.get(authority, H3_PATH), 30.0)
    if body != _H3_BODY:
        raise RuntimeError(f"bad response body: {len(body)} bytes")


async def h3_request_latency(
    port: int, settings: Settings, sizes: Sizes, server_pid: int
) -> Measurement:
    authority = f"{HOST}:{port}"
    samples: list[float] = []
    async with _h3_connect(port, settings) as protocol:
        for i in range(sizes.request_warmup + sizes.h3_requests):
            start = time.perf_counter()
            await _h3_get(protocol, authority)
            elapsed = time.perf_counter() - start
            if i >= sizes.request_warmup:
                samples.append(elapsed)
    return Measurement(samples=samples)


async def h3_requests_per_second(
    port: int, settings: Settings, sizes: Sizes, server_pid: int
) -> Measurement:
    authority = f"{HOST}:{port}"
    remaining = sizes.h3_rps_requests
    done = 0
    async with _h3_connect(port, settings) as protocol:
        for _ in range(sizes.request_warmup):
            await _h3_get(protocol, authority)

        async def worker() -> None:
            nonlocal remaining, done
            while remaining > 0:
                remaining -= 1
                await _h3_get(protocol, authority)
                done += 1

        cpu = CpuMeter(server_pid)
        start = time.perf_counter()
        async with asyncio.TaskGroup() as group:
            for _ in range(sizes.rps_concurrency):
                group.create_task(worker())
        elapsed = time.perf_counter() - start
        values = {"requests": done, "seconds": elapsed, "rps": done / elapsed}
        values.update(cpu.per_request(done))
    return Measurement(values=values)


Workload = Callable[[int, Settings, Sizes, int], Coroutine[Any, Any, Measurement]]

WORKLOADS: dict[str, Workload] = {
    "bulk": bulk,
    "handshake": handshakes,
    "handshake8": concurrent_handshakes,
    "rr": request_response,
    "rps": requests_per_second,
    "memory": idle_memory,
    "h3rr": h3_request_latency,
    "h3rps": h3_requests_per_second,
}


def run_client(workload: str, port: int, settings: Settings, sizes: Sizes, server_pid: int) -> None:
    result = asyncio.run(WORKLOADS[workload](port, settings, sizes, server_pid))
    print(result.to_line(), flush=True)
