"""Calls waiting for an endpoint or a connection: an endpoint whose
connection ended (still READY while it closes) gets no call and nothing
spins on it; a GOAWAY releases the calls waiting for an extra connection."""

from __future__ import annotations

from typing import Any

import trio
import trio.testing
from test_rpc_faults_support import ServerSlot
from test_rpc_support import rpc_client_config

import ghostwire.rpc as rpc
from ghostwire.rpc.supervisor import EndpointSupervisor

READY = rpc.ConnectivityState.READY


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
