"""Bidirectional streams through a pool: opening one that the server never
saw is retried on another endpoint; one that may have started is not."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing
from test_rpc_faults_support import Chain, ServerSlot, fast_options
from test_rpc_support import rpc_client_config

import ghostwire.rpc as rpc

READY = rpc.ConnectivityState.READY


def _relay_service(name: str, opened: list[str]) -> rpc.Service:
    svc = rpc.Service("relay")

    @svc.stream
    async def echo(ctx: rpc.Context, stream: rpc.BidiStream) -> None:
        opened.append(name)
        async for message in stream:
            await stream.send(message)

    return svc


class _Slot(ServerSlot):
    """A server slot whose server also has ``relay.echo``, noting who ran it."""

    def __init__(self, nursery: trio.Nursery, name: str, opened: list[str]) -> None:
        super().__init__(nursery, Chain())
        self.name = name
        self._opened = opened

    async def start(self) -> None:
        from test_rpc_support import rpc_server_config

        server = rpc.Server(
            [self.chain.service(), _relay_service(self.name, self._opened)],
            config=rpc_server_config(),
        )
        self.server = server
        self.stopped = trio.Event()
        listener = await self._nursery.start(self._run, server)
        self.port = listener.port


def _refusing(failures: list[rpc.RpcError]) -> Any:
    """A client interceptor that fails the next stream openings, before any
    byte of them is sent, with the errors in ``failures``."""

    @asynccontextmanager
    async def interceptor(info: rpc.CallInfo) -> AsyncIterator[None]:
        if info.kind == "stream" and failures:
            raise failures.pop(0)
        yield

    return interceptor


async def _two_endpoints(failures: list[rpc.RpcError], opened: list[str], *, body: Any) -> None:
    async with trio.open_nursery() as nursery:
        a, b = _Slot(nursery, "a", opened), _Slot(nursery, "b", opened)
        await a.start()
        await b.start()
        async with rpc.connect(
            [a.address, b.address],
            config=rpc_client_config(),
            options=fast_options(balancing="round_robin"),
            interceptors=[_refusing(failures)],
        ) as client:
            for address in (a.address, b.address):
                await client.wait_for_state(address, READY)
            await body(client)
        nursery.cancel_scope.cancel()


async def test_a_stream_the_server_never_saw_is_opened_on_another_endpoint() -> None:
    opened: list[str] = []
    failures: list[rpc.RpcError] = [rpc.CallNotStarted("no stream for it")]

    async def body(client: rpc.Client) -> None:
        async with client.open_stream("relay.echo") as stream:
            await stream.send("hello")
            assert await stream.receive() == "hello"
            await stream.send_eof()

    with trio.fail_after(30):
        await _two_endpoints(failures, opened, body=body)
    assert not failures  # the first opening was refused...
    assert len(opened) == 1  # ...and the second ran, on one server only


async def test_a_stream_that_may_have_started_is_not_retried() -> None:
    opened: list[str] = []
    failures = [rpc.RpcError(rpc.Status.UNAVAILABLE, "connection lost")]

    async def body(client: rpc.Client) -> None:
        with pytest.raises(rpc.RpcError) as info:
            async with client.open_stream("relay.echo"):
                pass  # pragma: no cover
        assert info.value.status is rpc.Status.UNAVAILABLE
        assert not isinstance(info.value, rpc.CallNotStarted)

    with trio.fail_after(30):
        await _two_endpoints(failures, opened, body=body)
    assert opened == []


async def test_stream_retries_are_bounded_by_max_attempts() -> None:
    opened: list[str] = []
    failures: list[rpc.RpcError] = [rpc.CallNotStarted(f"refused {n}") for n in range(10)]

    async def body(client: rpc.Client) -> None:
        with pytest.raises(rpc.CallNotStarted):
            async with client.open_stream("relay.echo"):
                pass  # pragma: no cover

    with trio.fail_after(30):
        await _two_endpoints(failures, opened, body=body)
    assert len(failures) == 10 - rpc.PoolOptions().retry.max_attempts  # 3 attempts, then up
    assert opened == []


async def test_a_stream_a_draining_server_refused_says_it_never_started() -> None:
    opened: list[str] = []
    refused: list[rpc.CallNotStarted] = []
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            a, b = _Slot(nursery, "a", opened), _Slot(nursery, "b", opened)
            await a.start()
            await b.start()
            a.chain.release = trio.Event()  # a call held on a keeps its drain going
            options = fast_options(balancing="round_robin", health_watch=False)
            addresses = [a.address, b.address]
            async with rpc.connect(
                addresses, config=rpc_client_config(), options=options
            ) as client:
                for address in addresses:
                    await client.wait_for_state(address, READY)
                direct = client.pool.supervisors[a.address].rpc
                assert direct is not None

                async def hold() -> None:
                    # (not the pool's call: a's connection closes under it)
                    with contextlib.suppress(rpc.RpcError):
                        await direct.call("chain.get", [1])

                nursery.start_soon(hold)
                while a.chain.calls["get"] < 1:
                    await a.chain.arrived.park()
                assert a.server is not None
                nursery.start_soon(a.server.shutdown, 10.0)
                await trio.testing.wait_all_tasks_blocked()
                # Round robin over two endpoints: one of two streams goes to a.
                for _ in range(2):
                    try:
                        async with client.open_stream("relay.echo") as stream:
                            await stream.send("x")
                            assert await stream.receive() == "x"
                            await stream.send_eof()
                    except rpc.CallNotStarted as exc:
                        refused.append(exc)
                        break
                assert len(refused) == 1 and refused[0].goaway
                # The pool takes a out of balancing: the caller's next try works.
                await client.wait_for_state(a.address, rpc.ConnectivityState.IDLE)
                async with client.open_stream("relay.echo") as stream:
                    await stream.send("y")
                    assert await stream.receive() == "y"
                    await stream.send_eof()
                a.chain.release.set()
            nursery.cancel_scope.cancel()
    assert opened.count("a") == 0 and opened.count("b") >= 1
