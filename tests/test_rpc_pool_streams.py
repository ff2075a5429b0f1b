"""Bidirectional streams through a pool: opening one that the server never
saw is retried on another endpoint; one that may have started is not."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
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
