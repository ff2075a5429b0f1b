"""Helpers for the pool and fault tests: a chain service with cursors, a
server that can be killed and restarted on the same port, and a UDP relay
that can drop everything (a pulled cable: nothing, not even
CONNECTION_CLOSE, reaches the client).

(A helper module: it defines no tests.)
"""

from __future__ import annotations

import socket
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import trio
from test_rpc_support import rpc_server_config

import ghostwire.rpc as rpc

HOST = "127.0.0.1"


class Chain:
    """What one server process knows: a chain whose head n has cursor n.

    ``chain.heads`` yields every head after ``ctx.resume_after``; ``chain.get``
    (idempotent) and ``chain.put`` (not) count their calls; ``chain.flaky``
    answers UNAVAILABLE while ``failing`` is set."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.arrived = trio.lowlevel.ParkingLot()  # unparked as each call arrives
        self.failing = False
        self.release = trio.Event()
        self.release.set()

    def service(self) -> rpc.Service:
        svc = rpc.Service("chain")

        @svc.events
        async def heads(ctx: rpc.Context) -> AsyncIterator[rpc.Event]:
            start = 0 if ctx.resume_after is None else int(ctx.resume_after) + 1
            n = start
            while True:
                yield rpc.Event(n, cursor=n)
                n += 1
                await trio.sleep(0.001)  # a producer's pace (not a wait for an event)

        @svc.call(idempotent=True)
        async def get(ctx: rpc.Context, n: int) -> int:
            self.calls["get"] += 1
            self.arrived.unpark_all()
            await self.release.wait()
            return n

        @svc.call
        async def put(ctx: rpc.Context, n: int) -> int:
            self.calls["put"] += 1
            self.arrived.unpark_all()
            await self.release.wait()
            return n

        @svc.call
        async def flaky(ctx: rpc.Context) -> str:
            self.calls["flaky"] += 1
            if self.failing:
                raise rpc.RpcError(rpc.Status.UNAVAILABLE, "flaky says no")
            return "ok"

        return svc


class ServerSlot:
    """An RPC server on a fixed port that a test can kill and start again.

    ``kill`` cancels the server (through a relay in ``drop`` mode its
    CONNECTION_CLOSE never arrives: the server vanished); ``start`` serves a
    fresh :class:`rpc.Server` on the same port."""

    def __init__(self, nursery: trio.Nursery, chain: Chain | None = None) -> None:
        self._nursery = nursery
        self.chain = chain if chain is not None else Chain()
        self.port = 0
        self.server: rpc.Server | None = None
        self._scope: trio.CancelScope | None = None
        self.stopped = trio.Event()

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    async def start(self) -> None:
        server = rpc.Server([self.chain.service()], config=rpc_server_config())
        self.server = server
        self.stopped = trio.Event()
        listener = await self._nursery.start(self._run, server)
        self.port = listener.port

    async def _run(
        self, server: rpc.Server, *, task_status: Any = trio.TASK_STATUS_IGNORED
    ) -> None:
        try:
            with trio.CancelScope() as scope:
                self._scope = scope
                await server.serve(self.port, host=HOST, task_status=task_status)
        finally:
            self.stopped.set()

    async def kill(self) -> None:
        if self._scope is not None:
            self._scope.cancel()
        await self.stopped.wait()


class Relay:
    """A UDP relay on loopback: the client talks to ``port``, the relay to
    ``target`` (one upstream socket per client address). With ``drop`` set
    every datagram is dropped, both ways."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.drop = False
        self.port = 0
        self._sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._upstream: dict[Any, trio.socket.SocketType] = {}

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        await self._sock.bind((HOST, 0))
        self.port = self._sock.getsockname()[1]
        try:
            async with trio.open_nursery() as nursery:
                task_status.started(self.port)
                while True:
                    data, client = await self._sock.recvfrom(65536)
                    upstream = self._upstream.get(client)
                    if upstream is None:
                        upstream = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                        await upstream.bind((HOST, 0))
                        self._upstream[client] = upstream
                        nursery.start_soon(self._back, upstream, client)
                    if not self.drop:
                        await _send_quietly(upstream, data, (HOST, self.target))
        finally:
            self._sock.close()
            for upstream in self._upstream.values():
                upstream.close()

    async def _back(self, upstream: trio.socket.SocketType, client: Any) -> None:
        while True:
            try:
                data, _ = await upstream.recvfrom(65536)
            except OSError:  # ICMP port unreachable from a killed server
                continue
            if not self.drop:
                await _send_quietly(self._sock, data, client)


async def _send_quietly(sock: trio.socket.SocketType, data: bytes, to: Any) -> None:
    try:
        await sock.sendto(data, to)
    except OSError:
        pass  # nobody listening there right now: as a network would, drop it


async def start_relay(nursery: trio.Nursery, target: int) -> Relay:
    relay = Relay(target)
    await nursery.start(relay.run)
    return relay


def fast_options(**overrides: Any) -> rpc.PoolOptions:
    """Pool options with a short reconnect backoff, for tests over loopback."""
    from ghostwire.rpc.resilience import BackoffPolicy

    options: dict[str, Any] = {
        "backoff": BackoffPolicy(
            initial=0.05, multiplier=1.6, max_backoff=0.5, min_connect_timeout=2.0
        )
    }
    options.update(overrides)
    return rpc.PoolOptions(**options)
