"""The ghostwire side of the bench: server and client workloads, under trio."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Awaitable, Callable
from functools import partial

import trio

import ghostwire.http3 as http3
import ghostwire.quic as quic
from ghostwire.quic.suites import CipherSuite

from .common import (
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


def server_config(settings: Settings, alpn: str = ALPN) -> quic.ServerConfig:
    return quic.ServerConfig(
        alpn=[alpn],
        certfile=settings.certs.certfile,
        keyfile=settings.certs.keyfile,
        max_datagram_size=settings.max_datagram_size,
        pmtu_max_datagram_size=settings.pmtu_max_datagram_size,
        idle_timeout=IDLE_TIMEOUT,
        cipher_suites=[CipherSuite.AES_128_GCM_SHA256],
    )


def client_config(settings: Settings, alpn: str = ALPN) -> quic.ClientConfig:
    return quic.ClientConfig(
        alpn=[alpn],
        cafile=settings.certs.cafile,
        server_name=SERVER_NAME,
        max_datagram_size=settings.max_datagram_size,
        pmtu_max_datagram_size=settings.pmtu_max_datagram_size,
        idle_timeout=IDLE_TIMEOUT,
        cipher_suites=[CipherSuite.AES_128_GCM_SHA256],
    )


# -- server -------------------------------------------------------------------


async def _answer(request: bytes) -> bytes:
    return reply_for(len(request), request)


async def _count_upload(stream: quic.QuicStream | quic.QuicReceiveStream) -> None:
    """A stream longer than a request (the bulk upload): counted in chunks."""
    try:
        head, received = b"", 0
        while data := await stream.receive_some():
            if received < ECHO_LIMIT:
                head += data[: ECHO_LIMIT - received]
            received += len(data)
        if isinstance(stream, quic.QuicStream):
            await stream.send_all(reply_for(received, head), end_stream=True)
    except (quic.QuicError, trio.ClosedResourceError):
        pass
    finally:
        await stream.aclose()


async def _handler(conn: quic.Connection) -> None:
    # Each stream's request is read whole, answered and finished in one step
    # of its task (see docs/streams.md); longer streams go to _count_upload.
    await conn.serve_requests(_answer, ECHO_LIMIT, large=_count_upload)


_H3_BODY = request_payload(H3_BODY_SIZE)
_H3_HEADERS = [("content-type", "application/octet-stream")]


async def _h3_handler(request: http3.Request) -> http3.Response:
    if request.method == "GET" and request.path == H3_PATH:
        return http3.Response(200, _H3_HEADERS, _H3_BODY)
    return http3.Response(404, [], b"not found\n")


async def _serve(settings: Settings, protocol: str) -> None:
    # SIGTERM (the orchestrator stopping us) ends the server gracefully, so a
    # profiled server still writes its profile.
    with trio.open_signal_receiver(signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            if protocol == "h3":
                # serve() gives open connections shutdown_timeout to finish on
                # cancellation; the orchestrator kills us 3 s after SIGTERM.
                server = await nursery.start(
                    partial(http3.serve, host=HOST, shutdown_timeout=1.0),
                    _h3_handler, 0, server_config(settings, H3_ALPN),
                )  # fmt: skip
            else:
                server = await nursery.start(
                    partial(quic.serve, _handler, 0, server_config(settings), host=HOST)
                )
            print(f"{PORT_PREFIX}{server.port}", flush=True)
            async for _ in signals:
                nursery.cancel_scope.cancel()
                break


def run_server(settings: Settings, protocol: str = "raw") -> None:
    trio.run(_serve, settings, protocol)


# -- client -------------------------------------------------------------------


async def _request(conn: quic.Connection, payload: bytes) -> bytes:
    # A stream, the request and its FIN, the whole reply: one task step.
    return await conn.request(payload, ECHO_LIMIT)  # the echo, or bulk's 8-byte count


async def bulk(port: int, settings: Settings, sizes: Sizes, server_pid: int) -> Measurement:
    config = client_config(settings)
    total = sizes.bulk_bytes
    chunk = memoryview(bytes(BULK_CHUNK))
    async with quic.connect(HOST, port, config) as conn:
        stream = await conn.open_stream()
        start = time.perf_counter()
        remaining = total
        while remaining:
            size = min(remaining, BULK_CHUNK)
            await stream.send_all(chunk[:size])
            remaining -= size
        await stream.send_eof()
        reply = b""
        while True:
            data = await stream.receive_some()
            if not data:
                break
            reply += data
        elapsed = time.perf_counter() - start
        check_bulk_reply(reply, total)
        await stream.aclose()
        stats = conn.statistics()
    return Measurement(
        values={"bytes": total, "seconds": elapsed, "mbit_s": total * 8 / elapsed / 1e6},
        notes=[f"client stats: {stats}"],
    )


async def handshakes(port: int, settings: Settings, sizes: Sizes, server_pid: int) -> Measurement:
    config = client_config(settings)
    samples: list[float] = []
    for _ in range(sizes.handshake_warmup):
        async with quic.connect(HOST, port, config):
            pass
    cpu = CpuMeter(server_pid)
    for _ in range(sizes.handshakes):
        start = time.perf_counter()
        async with quic.connect(HOST, port, config):
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
            async with quic.connect(HOST, port, config):
                samples.append(time.perf_counter() - start)

    async def phase(count: int) -> float:
        nonlocal remaining
        remaining = count
        start = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(sizes.handshake_concurrency):
                nursery.start_soon(connector)
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
    async with quic.connect(HOST, port, config) as conn:
        for _ in range(sizes.request_warmup):
            await _request(conn, payload)
        cpu = CpuMeter(server_pid)
        for _ in range(sizes.requests):
            start = time.perf_counter()
            reply = await _request(conn, payload)
            samples.append(time.perf_counter() - start)
            if reply != payload:
                raise RuntimeError(f"bad echo: {len(reply)} bytes")
        values = cpu.per_request(sizes.requests)
        stats = conn.statistics()
    return Measurement(values=values, samples=samples, notes=[f"client stats: {stats}"])


async def requests_per_second(
    port: int, settings: Settings, sizes: Sizes, server_pid: int
) -> Measurement:
    config = client_config(settings)
    payload = request_payload(sizes.message_size)
    remaining = sizes.rps_requests
    done = 0

    async with quic.connect(HOST, port, config) as conn:
        # Warm up (same count as the latency workload's warm-up).
        for _ in range(sizes.request_warmup):
            await _request(conn, payload)

        async def worker() -> None:
            nonlocal remaining, done
            while remaining > 0:
                remaining -= 1
                reply = await _request(conn, payload)
                if reply != payload:
                    raise RuntimeError(f"bad echo: {len(reply)} bytes")
                done += 1

        cpu = CpuMeter(server_pid)
        start = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(sizes.rps_concurrency):
                nursery.start_soon(worker)
        elapsed = time.perf_counter() - start
        values = {"requests": done, "seconds": elapsed, "rps": done / elapsed}
        values.update(cpu.per_request(done))
        stats = conn.statistics()
    return Measurement(values=values, notes=[f"client stats: {stats}"])


async def idle_memory(port: int, settings: Settings, sizes: Sizes, server_pid: int) -> Measurement:
    config = client_config(settings)
    # Warm the server up (imports, caches, allocator arenas) before the baseline.
    for _ in range(10):
        async with quic.connect(HOST, port, config) as conn:
            await _request(conn, b"warm-up")
    await trio.sleep(1.0)
    rss_before = read_rss_bytes(server_pid)

    count = sizes.idle_connections
    limiter = trio.Semaphore(sizes.idle_concurrency)
    connected = 0
    all_connected = trio.Event()
    release = trio.Event()

    async def hold() -> None:
        nonlocal connected
        await limiter.acquire()
        acquired = True
        try:
            async with quic.connect(HOST, port, config):
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
    async with trio.open_nursery() as nursery:
        for _ in range(count):
            nursery.start_soon(hold)
        await all_connected.wait()
        setup = time.perf_counter() - start
        await trio.sleep(1.0)
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


def _h3_client(settings: Settings) -> http3.Client:
    # timeout: per request; the orchestrator's client timeout bounds the run.
    return http3.Client(client_config(settings, H3_ALPN), timeout=30.0)


def _h3_url(port: int) -> str:
    return f"https://{HOST}:{port}{H3_PATH}"


async def _h3_get(client: http3.Client, url: str) -> None:
    response = await client.get(url)
    body = await response.read()
    if response.status != 200 or body != _H3_BODY:
        raise RuntimeError(f"bad response: status {response.status}, {len(body)} bytes")


async def h3_request_latency(
    port: int, settings: Settings, sizes: Sizes, server_pid: int
) -> Measurement:
    url = _h3_url(port)
    samples: list[float] = []
    async with _h3_client(settings) as client:
        # The first warm-up request also opens the connection.
        for i in range(sizes.request_warmup + sizes.h3_requests):
            start = time.perf_counter()
            await _h3_get(client, url)
            elapsed = time.perf_counter() - start
            if i >= sizes.request_warmup:
                samples.append(elapsed)
    return Measurement(samples=samples)


async def h3_requests_per_second(
    port: int, settings: Settings, sizes: Sizes, server_pid: int
) -> Measurement:
    url = _h3_url(port)
    remaining = sizes.h3_rps_requests
    done = 0
    async with _h3_client(settings) as client:
        for _ in range(sizes.request_warmup):
            await _h3_get(client, url)

        async def worker() -> None:
            nonlocal remaining, done
            while remaining > 0:
                remaining -= 1
                await _h3_get(client, url)
                done += 1

        cpu = CpuMeter(server_pid)
        start = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(sizes.rps_concurrency):
                nursery.start_soon(worker)
        elapsed = time.perf_counter() - start
        values = {"requests": done, "seconds": elapsed, "rps": done / elapsed}
        values.update(cpu.per_request(done))
    return Measurement(values=values)


Workload = Callable[[int, Settings, Sizes, int], Awaitable[Measurement]]

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
    async def main() -> Measurement:
        return await WORKLOADS[workload](port, settings, sizes, server_pid)

    result = trio.run(main)
    print(result.to_line(), flush=True)
    sys.stdout.flush()
