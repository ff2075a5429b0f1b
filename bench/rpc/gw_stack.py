"""The ghostwire side of the RPC bench: a ``ghostwire.rpc`` service under trio."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import trio

import ghostwire.quic as quic
import ghostwire.rpc as rpc

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

bench = rpc.Service("bench")


@bench.call
async def echo(ctx: rpc.Context, body: bytes) -> bytes:
    return body


@bench.call
async def echo_await(ctx: rpc.Context, body: bytes) -> bytes:
    await trio.lowlevel.checkpoint()  # as a handler waiting on a database would
    return body


@bench.events
async def events(ctx: rpc.Context, count: int) -> AsyncIterator[rpc.Event]:
    body = payload()
    for i in range(count):
        yield rpc.Event(body, cursor=i)


def run_server(certfile: str, keyfile: str) -> None:
    async def main() -> None:
        config = quic.ServerConfig(certfile=certfile, keyfile=keyfile)
        server = rpc.Server([bench], config=config)
        async with trio.open_nursery() as nursery:
            listener = await nursery.start(server.serve, 0)
            print(f"{PORT_PREFIX}{listener.port}", flush=True)

    trio.run(main)


def run_client(workload: str, port: int, cafile: str, server_pid: int, count: int) -> None:
    async def main() -> Result:
        config = quic.ClientConfig(cafile=cafile, server_name=SERVER_NAME)
        async with rpc.connect(f"{HOST}:{port}", config=config) as client:
            return await _workload(client, workload, server_pid, count)

    print(trio.run(main).to_line(), flush=True)


async def _workload(client: rpc.Client, workload: str, server_pid: int, count: int) -> Result:
    body = payload()
    result = Result()
    if workload == "events":
        async with client.subscribe("bench.events", count=10) as warm:
            async for _ in warm:
                pass
        meter = CpuMeter(server_pid)
        async with client.subscribe("bench.events", count=count) as stream:
            async for event in stream:
                if len(event.data) != len(body):
                    raise RuntimeError("short event")
                result.operations += 1
        meter.finish(result)
        return result
    method, timeout = (
        ("bench.echo_await", CALL_DEADLINE) if workload in AWAITING else ("bench.echo", None)
    )
    for _ in range(min(200, count)):
        await client.call(method, body=body, timeout=timeout)
    in_flight = WORKLOADS[workload]
    meter = CpuMeter(server_pid)

    async def worker(n: int) -> None:
        for _ in range(n):
            started = time.perf_counter()
            try:
                reply = await client.call(method, body=body, timeout=timeout)
            except rpc.RpcError as exc:  # counted and reported, not timed
                record_failure(result, exc)
                continue
            result.latencies.append(time.perf_counter() - started)
            if reply != body:
                raise RuntimeError("wrong reply")

    share, extra = divmod(count, in_flight)
    async with trio.open_nursery() as nursery:
        for i in range(in_flight):
            nursery.start_soon(worker, share + (i < extra))
    meter.finish(result)
    result.operations = len(result.latencies)
    return result


def run(role: str, argv: list[str]) -> None:
    if role == "server":
        run_server(*argv)
        return
    workload, port, cafile, server_pid, count = argv
    run_client(workload, int(port), cafile, int(server_pid), int(count))
