"""The gRPC peers of the RPC bench: grpcio (asyncio and thread-pool servers)
and grpclib, each over TLS (HTTP/2 on one TCP connection per client).

They are driven the way their fastest users drive them:

* grpcio: the ``grpc.aio`` client (one channel, calls issued concurrently as
  coroutines) for both servers; the ``grpc.aio`` server, and the classic
  server on a ``ThreadPoolExecutor``. Messages are raw bytes (no protobuf
  serialisation at all), which flatters gRPC: ghostwire pays for msgpack.
* grpclib: on uvloop (its recommended loop), with a codec that passes raw
  bytes through, for the same reason.
"""

from __future__ import annotations

import asyncio
import ssl
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent import futures
from pathlib import Path
from typing import Any

from .common import (
    AWAITING,
    CALL_DEADLINE,
    HOST,
    PORT_PREFIX,
    SERVER_NAME,
    WORKLOADS,
    CpuMeter,
    Result,
    payload,
    record_failure,
)

SERVICE = "bench.Bench"
ECHO = f"/{SERVICE}/Echo"
ECHO_AWAIT = f"/{SERVICE}/EchoAwait"
EVENTS = f"/{SERVICE}/Events"


def _read(path: str) -> bytes:
    return Path(path).read_bytes()


# -- grpcio --------------------------------------------------------------------


def _grpcio_handlers(threaded: bool) -> Any:
    import grpc

    if threaded:

        def echo_sync(request: bytes, context: Any) -> bytes:
            return request

        def events_sync(request: bytes, context: Any) -> Any:
            count = int.from_bytes(request[:8], "big")
            body = payload()
            for _ in range(count):
                yield body

        echo_h = grpc.unary_unary_rpc_method_handler(echo_sync)
        echo_await_h = echo_h  # a pool thread blocks where a coroutine would yield
        events_h = grpc.unary_stream_rpc_method_handler(events_sync)
    else:

        async def echo(request: bytes, context: Any) -> bytes:
            return request

        async def echo_await(request: bytes, context: Any) -> bytes:
            await asyncio.sleep(0)  # as a handler waiting on a database would
            return request

        async def events(request: bytes, context: Any) -> AsyncIterator[bytes]:
            count = int.from_bytes(request[:8], "big")
            body = payload()
            for _ in range(count):
                yield body

        echo_h = grpc.unary_unary_rpc_method_handler(echo)
        echo_await_h = grpc.unary_unary_rpc_method_handler(echo_await)
        events_h = grpc.unary_stream_rpc_method_handler(events)
    handlers = {"Echo": echo_h, "EchoAwait": echo_await_h, "Events": events_h}
    return grpc.method_handlers_generic_handler(SERVICE, handlers)


def run_grpcio_server(certfile: str, keyfile: str, threaded: bool) -> None:
    import grpc

    credentials = grpc.ssl_server_credentials([(_read(keyfile), _read(certfile))])
    if threaded:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
        server.add_generic_rpc_handlers((_grpcio_handlers(True),))
        port = server.add_secure_port(f"{HOST}:0", credentials)
        server.start()
        print(f"{PORT_PREFIX}{port}", flush=True)
        server.wait_for_termination()
        return

    async def main() -> None:
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((_grpcio_handlers(False),))
        port = server.add_secure_port(f"{HOST}:0", credentials)
        await server.start()
        print(f"{PORT_PREFIX}{port}", flush=True)
        await server.wait_for_termination()

    asyncio.run(main())


def run_grpcio_client(workload: str, port: int, cafile: str, server_pid: int, count: int) -> None:
    import grpc

    async def main() -> Result:
        credentials = grpc.ssl_channel_credentials(root_certificates=_read(cafile))
        options = [("grpc.ssl_target_name_override", SERVER_NAME)]
        async with grpc.aio.secure_channel(f"{HOST}:{port}", credentials, options) as channel:
            events = channel.unary_stream(EVENTS)
            if workload in AWAITING:
                echo = channel.unary_unary(ECHO_AWAIT)
                timeout: float | None = CALL_DEADLINE
            else:
                echo, timeout = channel.unary_unary(ECHO), None

            async def call(body: bytes) -> bytes:
                return await echo(body, timeout=timeout)  # type: ignore[no-any-return]

            async def stream(n: int) -> AsyncIterator[bytes]:
                async for message in events(n.to_bytes(8, "big")):
                    yield message

            return await run_asyncio_workload(workload, call, stream, server_pid, count)

    print(asyncio.run(main()).to_line(), flush=True)


# -- grpclib -------------------------------------------------------------------


class _RawCodec:
    """A grpclib codec that passes bytes through untouched."""

    __content_subtype__ = "proto"

    def encode(self, message: Any, message_type: Any) -> bytes:
        return bytes(message)

    def decode(self, data: bytes, message_type: Any) -> bytes:
        return data


def _uvloop_run(coro: Awaitable[Any]) -> Any:
    import uvloop

    return uvloop.run(coro)  # type: ignore[arg-type]


def run_grpclib_server(certfile: str, keyfile: str) -> None:
    from grpclib.const import Cardinality, Handler
    from grpclib.server import Server, Stream

    class Bench:
        async def echo(self, stream: Stream[bytes, bytes]) -> None:
            request = await stream.recv_message()
            assert request is not None
            await stream.send_message(request)

        async def echo_await(self, stream: Stream[bytes, bytes]) -> None:
            request = await stream.recv_message()
            assert request is not None
            await asyncio.sleep(0)  # as a handler waiting on a database would
            await stream.send_message(request)

        async def events(self, stream: Stream[bytes, bytes]) -> None:
            request = await stream.recv_message()
            assert request is not None
            body = payload()
            for _ in range(int.from_bytes(request[:8], "big")):
                await stream.send_message(body)

        def __mapping__(self) -> dict[str, Handler]:
            return {
                ECHO: Handler(self.echo, Cardinality.UNARY_UNARY, bytes, bytes),
                ECHO_AWAIT: Handler(self.echo_await, Cardinality.UNARY_UNARY, bytes, bytes),
                EVENTS: Handler(self.events, Cardinality.UNARY_STREAM, bytes, bytes),
            }

    async def main() -> None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(certfile, keyfile)
        context.set_alpn_protocols(["h2"])
        server = Server([Bench()], codec=_RawCodec())  # type: ignore[arg-type]
        await server.start(HOST, 0, ssl=context)
        assert server._server is not None
        port = server._server.sockets[0].getsockname()[1]
        print(f"{PORT_PREFIX}{port}", flush=True)
        await server.wait_closed()

    _uvloop_run(main())


def run_grpclib_client(workload: str, port: int, cafile: str, server_pid: int, count: int) -> None:
    from grpclib.client import Channel, UnaryStreamMethod, UnaryUnaryMethod

    async def main() -> Result:
        context = ssl.create_default_context(cafile=cafile)
        context.set_alpn_protocols(["h2"])
        channel = Channel(HOST, port, ssl=context, codec=_RawCodec())  # type: ignore[arg-type]
        try:
            awaiting = workload in AWAITING
            path = ECHO_AWAIT if awaiting else ECHO
            echo = UnaryUnaryMethod(channel, path, bytes, bytes)  # type: ignore[var-annotated]
            events = UnaryStreamMethod(channel, EVENTS, bytes, bytes)  # type: ignore[var-annotated]
            timeout = CALL_DEADLINE if awaiting else None

            async def call(body: bytes) -> bytes:
                return await echo(body, timeout=timeout)  # type: ignore[no-any-return]

            async def stream(n: int) -> AsyncIterator[bytes]:
                async with events.open() as s:
                    await s.send_message(n.to_bytes(8, "big"), end=True)
                    async for message in s:
                        yield message

            return await run_asyncio_workload(workload, call, stream, server_pid, count)
        finally:
            channel.close()

    print(_uvloop_run(main()).to_line(), flush=True)


# -- the workloads, for any asyncio stack --------------------------------------


async def run_asyncio_workload(
    workload: str,
    call: Callable[[bytes], Awaitable[bytes]],
    stream: Callable[[int], AsyncIterator[bytes]],
    server_pid: int,
    count: int,
) -> Result:
    body = payload()
    result = Result()
    if workload == "events":
        async for _ in stream(10):  # warm-up
            pass
        meter = CpuMeter(server_pid)
        async for message in stream(count):
            if len(message) != len(body):
                raise RuntimeError("short event")
            result.operations += 1
        meter.finish(result)
        return result
    for _ in range(min(200, count)):  # warm-up: connection, caches, JITs
        await call(body)
    in_flight = WORKLOADS[workload]
    meter = CpuMeter(server_pid)

    async def worker(n: int) -> None:
        for _ in range(n):
            started = time.perf_counter()
            try:
                reply = await call(body)
            except Exception as exc:  # counted and reported, not timed
                record_failure(result, exc)
                continue
            result.latencies.append(time.perf_counter() - started)
            if reply != body:
                raise RuntimeError("wrong reply")

    share, extra = divmod(count, in_flight)
    await asyncio.gather(*(worker(share + (i < extra)) for i in range(in_flight)))
    meter.finish(result)
    result.operations = len(result.latencies)
    return result


def run(role: str, stack: str, argv: list[str]) -> None:
    if role == "server":
        certfile, keyfile = argv
        if stack == "grpclib":
            run_grpclib_server(certfile, keyfile)
        else:
            run_grpcio_server(certfile, keyfile, threaded=stack == "grpcio-threaded")
        return
    workload, port, cafile, server_pid, count = argv
    client = run_grpclib_client if stack == "grpclib" else run_grpcio_client
    client(workload, int(port), cafile, int(server_pid), int(count))


if __name__ == "__main__":  # pragma: no cover
    run(sys.argv[1], sys.argv[2], sys.argv[3:])
