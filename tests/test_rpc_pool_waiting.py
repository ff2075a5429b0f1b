"""Calls waiting for an endpoint or a connection: an endpoint whose
connection ended (still READY while it closes) gets no call and nothing
spins on it; a GOAWAY releases the calls waiting for an extra connection."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing
from test_rpc_faults_support import ServerSlot, fast_options
from test_rpc_support import rpc_client_config, rpc_server_config

import ghostwire.rpc as rpc
from ghostwire.rpc.resilience import BackoffPolicy
from ghostwire.rpc.supervisor import EndpointSupervisor

READY = rpc.ConnectivityState.READY
SERVING = rpc.ServingStatus.SERVING


def _count_acquires(supervisor: EndpointSupervisor, limit: int = 50) -> list[int]:
    """Count ``supervisor.acquire`` calls; fail loudly past ``limit`` (a
    loop without a schedule point would otherwise freeze the test)."""
    count = [0]
    inner = supervisor.acquire

    async def acquire() -> Any:
        count[0] += 1
        if count[0] > limit:
            raise AssertionError("acquire called in a loop")
        return await inner()

    supervisor.acquire = acquire  # type: ignore[method-assign]
    return count


async def test_a_subscription_waits_while_the_only_endpoint_winds_down() -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            slot = ServerSlot(nursery)
            await slot.start()
            async with rpc.connect(slot.address, config=rpc_client_config()) as client:
                supervisor = client.pool.supervisors[slot.address]
                acquires = _count_acquires(supervisor)
                # the connection ended: READY until its nursery has closed
                supervisor.links.accepting = False
                outcome: list[str] = []

                async def subscribe() -> None:
                    async with client.subscribe("chain.heads"):
                        outcome.append("subscribed")  # pragma: no cover

                async def call() -> None:
                    try:
                        await client.call("chain.get", 1)
                    except rpc.RpcError as exc:  # pragma: no cover
                        outcome.append(f"failed {exc.status.name}")

                async with trio.open_nursery() as waiters:
                    waiters.start_soon(subscribe)
                    waiters.start_soon(call)
                    # Both park (a reconnect is coming); nothing loops.
                    await trio.testing.wait_all_tasks_blocked()
                    assert outcome == [] and acquires[0] == 0
                    assert client.states()[slot.address] is READY
                    waiters.cancel_scope.cancel()
                supervisor.links.accepting = True
                assert await client.call("chain.get", 2) == 2
            nursery.cancel_scope.cancel()


async def test_calls_skip_an_endpoint_that_winds_down() -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            a, b = ServerSlot(nursery), ServerSlot(nursery)
            await a.start()
            await b.start()
            addresses = [a.address, b.address]
            async with rpc.connect(addresses, config=rpc_client_config()) as client:
                for address in addresses:
                    await client.wait_for_state(address, READY)
                winding_down = client.pool.supervisors[a.address]
                acquires = _count_acquires(winding_down)
                winding_down.links.accepting = False
                for n in range(6):
                    assert await client.call("chain.put", n) == n  # not retried if it failed
                async with client.subscribe("chain.heads") as events:
                    assert events.endpoint == b.address
            nursery.cancel_scope.cancel()
    assert acquires[0] == 0
    assert a.chain.calls["put"] == 0 and b.chain.calls["put"] == 6


class _FewStreams(ServerSlot):
    """A server slot whose server allows 4 bidirectional streams."""

    async def start(self) -> None:
        server = rpc.Server([self.chain.service()], config=rpc_server_config(max_streams_bidi=4))
        self.server = server
        self.stopped = trio.Event()
        listener = await self._nursery.start(self._run, server)
        self.port = listener.port


async def test_a_goaway_releases_the_calls_waiting_for_an_extra_connection() -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            a, b = _FewStreams(nursery), ServerSlot(nursery)
            a.chain.release = trio.Event()  # calls on a wait in its server
            await a.start()
            await b.start()
            addresses = [a.address, b.address]
            # (No health.watch: the serving status the test sets stays. An
            # extra connection's attempt may take 20 s, the drain 30 s.)
            backoff = BackoffPolicy(initial=0.05, max_backoff=0.5, min_connect_timeout=20.0)
            options = fast_options(backoff=backoff, drain_grace=30.0, health_watch=False)
            async with rpc.connect(
                addresses, config=rpc_client_config(), options=options
            ) as client:
                for address in addresses:
                    await client.wait_for_state(address, READY)
                on_b = client.pool.supervisors[b.address].handle
                on_b.serving = rpc.ServingStatus.NOT_SERVING  # every call goes to a
                supervisor = client.pool.supervisors[a.address]
                # An extra connection to a is opened only once the test says so.
                gate = trio.Event()
                connect = supervisor._connector

                @asynccontextmanager
                async def held(address: str) -> AsyncIterator[Any]:
                    await gate.wait()
                    async with connect(address) as conn:  # pragma: no cover
                        yield conn

                supervisor._connector = held
                results: dict[int, int] = {}
                last_done = trio.Event()
                last = 0

                async def call(n: int) -> None:
                    results[n] = await client.call("chain.get", n)
                    if n == last:
                        last_done.set()

                async with trio.open_nursery() as calls:
                    # Calls until the first connection to a has no stream left.
                    running = 0
                    while not supervisor.links.all[0].saturated:
                        running += 1
                        calls.start_soon(call, running)
                        while a.chain.calls["get"] < running:
                            await a.chain.arrived.park()
                    last = running + 1
                    calls.start_soon(call, last)
                    await trio.testing.wait_all_tasks_blocked()
                    assert supervisor.links.opening == 1  # the last waits for an extra
                    on_b.serving = SERVING
                    assert supervisor.rpc is not None
                    assert len(supervisor.links.capacity_changed) == 1
                    supervisor.goaway(supervisor.rpc)
                    # Released at once (not when the extra's attempt or the
                    # drain ends), and retried on b while a's calls run.
                    assert len(supervisor.links.capacity_changed) == 0
                    await last_done.wait()
                    assert results == {last: last} and b.chain.calls["get"] == 1
                    assert a.chain.calls["get"] == running and running >= 1
                    a.chain.release.set()
                assert results == {n: n for n in range(1, last + 1)}
            nursery.cancel_scope.cancel()


class _Streams:
    """A connection's stream credit, as the test sets it."""

    def __init__(self) -> None:
        self.free = 0

    def streams_available(self, bidi: bool) -> int:
        return self.free


async def test_a_call_ending_wakes_every_call_waiting_for_capacity() -> None:
    from types import SimpleNamespace

    from ghostwire.rpc.links import Link
    from ghostwire.rpc.resilience import ClientMetrics, EndpointHandle

    def unused(*args: Any) -> Any:
        raise AssertionError("no connection is made")  # pragma: no cover

    supervisor = EndpointSupervisor(
        EndpointHandle("x"), ClientMetrics(["x"]).endpoint("x"), rpc.PoolOptions(), unused, unused
    )
    streams = _Streams()
    conn: Any = SimpleNamespace(core=SimpleNamespace(streams=streams))
    no_rpc: Any = None
    link = Link(conn, no_rpc, key=1)
    links = supervisor.links
    links.add(link)
    links.accepting = True
    link.active = 1  # a call runs; its connection is saturated
    links.opening = 1  # an extra connection is being opened
    got: list[Link | None] = []

    async def wait() -> None:
        got.append(await supervisor.acquire())

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait)
            nursery.start_soon(wait)
            await trio.testing.wait_all_tasks_blocked()
            assert got == [] and len(links.capacity_changed) == 2
            streams.free = 2  # the peer's credit came back: nobody is told
            supervisor.release(link)  # the call ends: both waiters look
            await trio.testing.wait_all_tasks_blocked()
            assert got == [link, link] and link.active == 2
            nursery.cancel_scope.cancel()


async def test_stream_credit_wakes_the_calls_waiting_for_an_extra_connection() -> None:
    """A call waiting for an extra connection should take the stream
    MAX_STREAMS frees on the first one: a reset call's credit comes back a
    round trip after the call left (Connection.wait_stream_credit wakes the waiter)."""
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            a = _FewStreams(nursery)
            a.chain.release = trio.Event()  # calls on a wait in its server
            await a.start()
            # (An extra connection's attempt may take 20 s: it is never let through.)
            backoff = BackoffPolicy(initial=0.05, max_backoff=0.5, min_connect_timeout=20.0)
            options = fast_options(backoff=backoff, health_watch=False)
            async with rpc.connect(
                a.address, config=rpc_client_config(), options=options
            ) as client:
                supervisor = client.pool.supervisors[a.address]
                gate = trio.Event()
                connect = supervisor._connector

                @asynccontextmanager
                async def held(address: str) -> AsyncIterator[Any]:
                    await gate.wait()
                    async with connect(address) as conn:  # pragma: no cover
                        yield conn

                supervisor._connector = held
                first = supervisor.links.all[0]
                scopes: list[trio.CancelScope] = []

                async def call(n: int) -> None:
                    with trio.CancelScope() as scope:
                        scopes.append(scope)
                        await client.call("chain.get", n)

                async with trio.open_nursery() as calls:
                    running = 0
                    while not first.saturated:
                        running += 1
                        calls.start_soon(call, running)
                        while a.chain.calls["get"] < running:
                            await a.chain.arrived.park()
                    got: list[str] = []
                    done = trio.Event()

                    async def waiting() -> None:
                        got.append(await client.call("chain.flaky"))
                        done.set()

                    calls.start_soon(waiting)
                    await trio.testing.wait_all_tasks_blocked()
                    assert supervisor.links.opening == 1 and got == []
                    scopes[0].cancel()  # the stream is reset: its credit comes later
                    with trio.fail_after(10):  # (without the wakeup: until the gate opens)
                        await done.wait()
                    # ... on the first connection, the extra one still opening
                    assert got == ["ok"] and supervisor.links.opening == 1
                    assert len(supervisor.links.all) == 1
                    a.chain.release.set()
            nursery.cancel_scope.cancel()


async def test_a_goaway_wakes_the_calls_waiting_for_an_endpoint() -> None:
    """A call waits for an endpoint whose connection winds down (READY, a
    reconnect coming); a GOAWAY says none is coming soon: the call is woken
    at once and fails over (here: no other endpoint, UNAVAILABLE)."""
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            slot = ServerSlot(nursery)
            await slot.start()
            options = fast_options(health_watch=False)
            async with rpc.connect(
                slot.address, config=rpc_client_config(), options=options
            ) as client:
                supervisor = client.pool.supervisors[slot.address]
                supervisor.links.accepting = False  # the connection ended, it closes
                failed: list[rpc.RpcError] = []

                async def call() -> None:
                    with pytest.raises(rpc.RpcError) as info:
                        await client.call("chain.get", 1)
                    failed.append(info.value)

                async with trio.open_nursery() as waiters:
                    waiters.start_soon(call)
                    await trio.testing.wait_all_tasks_blocked()
                    waits_for_it = supervisor.coming  # (READY, winding down)
                    assert waits_for_it and len(client.pool._changed) == 1
                    assert supervisor.rpc is not None
                    supervisor.goaway(supervisor.rpc)
                    # Woken at once, not when the endpoint's state changes later,
                    # and it does not wait again: this endpoint is going away.
                    assert len(client.pool._changed) == 0 and not supervisor.coming
                (error,) = failed
                assert isinstance(error, rpc.NoEndpointAvailable), error
            nursery.cancel_scope.cancel()


async def test_one_credit_task_per_saturated_connection() -> None:
    """watch_credit starts one task per saturated connection however often
    it is called; credit wakes the calls waiting for capacity; a closed
    connection gets no task again (nothing spins on it)."""
    from types import SimpleNamespace

    from ghostwire import quic
    from ghostwire.rpc.links import Link, Links

    streams = _Streams()
    credit = trio.Event()
    waits = [0]

    async def wait_stream_credit(bidirectional: bool = True) -> None:
        waits[0] += 1
        await credit.wait()
        if streams.free == 0:
            raise quic.ConnectionClosed("connection is closed")

    conn: Any = SimpleNamespace(
        core=SimpleNamespace(streams=streams), wait_stream_credit=wait_stream_credit
    )
    no_rpc: Any = None
    link = Link(conn, no_rpc, key=1)
    links = Links(2)
    links.add(link)
    woken: list[bool] = []

    def watching() -> bool:  # (read anew each time: mypy narrows the attribute)
        return link.watching

    async def wait_for_capacity() -> None:
        await links.capacity_changed.park()
        woken.append(True)

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait_for_capacity)
            links.watch_credit(None)  # no nursery: no task
            for _ in range(3):
                links.watch_credit(nursery)
            await trio.testing.wait_all_tasks_blocked()
            assert waits == [1] and watching() and woken == []
            streams.free = 1  # MAX_STREAMS
            credit.set()
            await trio.testing.wait_all_tasks_blocked()
            assert woken == [True] and not watching()
            links.watch_credit(nursery)  # not saturated: no task
            await trio.testing.wait_all_tasks_blocked()
            assert waits == [1]
            streams.free = 0  # saturated again, then closed
            links.watch_credit(nursery)
            await trio.testing.wait_all_tasks_blocked()
            assert waits == [2] and watching()
            links.watch_credit(nursery)
            await trio.testing.wait_all_tasks_blocked()
            assert waits == [2]
