"""Faults over loopback, each asserting what the caller saw: a server that
vanishes and comes back mid-subscription, an endpoint killed under load, a
circuit opening and closing, a retry storm held back by the budget, a
draining server, and a client closed while it reconnects."""

from __future__ import annotations

import os
from typing import Any

import pytest
import trio
import trio.testing
from test_rpc_faults_support import HOST, Relay, ServerSlot, fast_options, start_relay
from test_rpc_support import rpc_client_config

import ghostwire.rpc as rpc
from ghostwire.rpc.resilience import CircuitPolicy

UNAVAILABLE = rpc.Status.UNAVAILABLE
NOT_READY = (
    rpc.ConnectivityState.TRANSIENT_FAILURE,
    rpc.ConnectivityState.CONNECTING,
    rpc.ConnectivityState.IDLE,
)


async def _vanish_and_return(slot: ServerSlot, relay: Relay, client: rpc.Client) -> None:
    """Pull the cable, kill the server, wait until the client noticed (no
    CONNECTION_CLOSE reaches it: only an unanswered ping tells), then start
    the server again on the same port and plug the cable back in."""
    relay.drop = True
    port = slot.port
    await slot.kill()
    await client.wait_for_state(f"{HOST}:{relay.port}", *NOT_READY)
    await slot.start()
    assert slot.port == port
    relay.drop = False


async def test_server_vanishes_and_restarts_mid_subscription() -> None:
    seen: list[int] = []
    markers: list[rpc.Reconnected] = []
    # 20 s: well under the 30 s idle timeout, so only the pings can notice
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            slot = ServerSlot(nursery)
            await slot.start()
            relay = await start_relay(nursery, slot.port)
            async with rpc.connect(
                f"{HOST}:{relay.port}", config=rpc_client_config(), options=fast_options()
            ) as client:
                async with client.subscribe("chain.heads", markers=True) as events:
                    async for item in events:
                        if isinstance(item, rpc.Reconnected):
                            markers.append(item)
                            continue
                        seen.append(item.cursor)
                        if item.cursor == 20:
                            await _vanish_and_return(slot, relay, client)
                        if item.cursor == 60:
                            break
                    reconnects = events.reconnects
            nursery.cancel_scope.cancel()
    assert seen == list(range(61))  # no gap, no duplicate
    assert reconnects == 1
    assert len(markers) == 1 and markers[0].after is not None and markers[0].after >= 20
    assert markers[0].after == seen[seen.index(markers[0].after)]


async def test_one_of_two_endpoints_killed_under_load() -> None:
    gets: list[Any] = []
    puts: list[Any] = []
    stop = trio.Event()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            a, b = ServerSlot(nursery), ServerSlot(nursery)
            await a.start()
            await b.start()
            relay = await start_relay(nursery, a.port)
            addresses = [f"{HOST}:{relay.port}", b.address]
            # round_robin: a keeps getting calls although they hang there
            # (least_outstanding would soon send them all to b)
            options = fast_options(balancing="round_robin")
            async with rpc.connect(
                addresses, config=rpc_client_config(), options=options
            ) as client:

                async def worker(method: str, out: list[Any]) -> None:
                    n = 0
                    while not stop.is_set():
                        try:
                            out.append(await client.call(method, n))
                        except rpc.RpcError as exc:
                            out.append(exc)
                        n += 1

                a.chain.release = trio.Event()  # calls on a hang until it dies
                async with trio.open_nursery() as load:
                    for _ in range(4):
                        load.start_soon(worker, "chain.get", gets)
                        load.start_soon(worker, "chain.put", puts)
                    while a.chain.calls["get"] < 2 or a.chain.calls["put"] < 2:
                        await a.chain.arrived.park()
                    relay.drop = True
                    await a.kill()
                    served = b.chain.calls.total()
                    while b.chain.calls.total() < served + 200:
                        await b.chain.arrived.park()
                    stop.set()
            nursery.cancel_scope.cancel()
    # every idempotent call succeeded (those on a were retried on b) ...
    assert gets and all(isinstance(r, int) for r in gets)
    # ... and a call that may have run failed with UNAVAILABLE, none otherwise
    failed = [r for r in puts if not isinstance(r, int)]
    assert failed and all(isinstance(r, rpc.RpcError) and r.status is UNAVAILABLE for r in failed)
    assert len(failed) <= 4  # only those in flight on a when it died (one per worker)
    assert any(isinstance(r, int) for r in puts)


async def test_circuit_opens_fails_fast_half_opens_and_closes() -> None:
    policy = CircuitPolicy(failure_threshold=3, cool_down=0.5)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            slot = ServerSlot(nursery)
            await slot.start()
            chain = slot.chain
            options = fast_options(circuit=policy)
            async with rpc.connect(
                slot.address, config=rpc_client_config(), options=options
            ) as client:
                breaker = client.pool.supervisors[slot.address].handle.breaker

                def circuit() -> str:
                    return client.metrics().endpoints[slot.address].circuit_state

                chain.failing = True
                for _ in range(3):
                    with pytest.raises(rpc.RpcError) as info:
                        await client.call("chain.flaky")
                    assert info.value.status is UNAVAILABLE
                assert chain.calls["flaky"] == 3 and circuit() == "OPEN"
                # open: fails at once, without reaching the server
                with pytest.raises(rpc.NoEndpointAvailable) as fast:
                    await client.call("chain.flaky")
                assert fast.value.status is UNAVAILABLE and "circuit OPEN" in fast.value.message
                assert chain.calls["flaky"] == 3
                # half-open: one trial; it fails, so the circuit opens again
                await trio.sleep_until(breaker.half_open_at)
                assert circuit() == "HALF_OPEN"
                with pytest.raises(rpc.RpcError):
                    await client.call("chain.flaky")
                assert chain.calls["flaky"] == 4 and circuit() == "OPEN"
                # the next trial succeeds: closed
                await trio.sleep_until(breaker.half_open_at)
                chain.failing = False
                assert await client.call("chain.flaky") == "ok"
                assert circuit() == "CLOSED"
                assert await client.call("chain.flaky") == "ok"
                assert client.metrics().endpoints[slot.address].circuit_opened == 2
            nursery.cancel_scope.cancel()


async def _storm(retry_tokens: float, calls: int) -> tuple[int, list[Any]]:
    """``calls`` idempotent calls to a server answering UNAVAILABLE: how many
    reached it, and what the callers saw."""
    no_circuit = CircuitPolicy(failure_threshold=10_000)
    options = fast_options(retry_tokens=retry_tokens, circuit=no_circuit)
    outcomes: list[Any] = []
    async with trio.open_nursery() as nursery:
        slot = ServerSlot(nursery)
        await slot.start()
        slot.chain.failing = True
        async with rpc.connect(slot.address, config=rpc_client_config(), options=options) as client:
            for _ in range(calls):
                try:
                    outcomes.append(await client.call("chain.flaky", idempotent=True))
                except rpc.RpcError as exc:
                    outcomes.append(exc.status)
        nursery.cancel_scope.cancel()
    return slot.chain.calls["flaky"], outcomes


async def test_a_retry_storm_is_prevented_by_the_budget() -> None:
    with trio.fail_after(60):
        unlimited, _ = await _storm(retry_tokens=1000, calls=10)
        limited, outcomes = await _storm(retry_tokens=10, calls=100)
    assert unlimited == 30  # 3 attempts each when nothing holds retries back
    assert outcomes == [UNAVAILABLE] * 100
    # ten tokens, retries only above half: a handful of retries, then none
    assert 100 < limited <= 110


async def test_draining_server_fails_no_call() -> None:
    results: list[Any] = []
    stop = trio.Event()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            a, b = ServerSlot(nursery), ServerSlot(nursery)
            await a.start()
            await b.start()
            async with rpc.connect(
                [a.address, b.address], config=rpc_client_config(), options=fast_options()
            ) as client:

                async def worker(method: str) -> None:
                    n = 0
                    while not stop.is_set():
                        try:
                            results.append(await client.call(method, n))
                        except rpc.RpcError as exc:
                            results.append(exc)
                        n += 1

                async with trio.open_nursery() as load:
                    for _ in range(3):
                        load.start_soon(worker, "chain.get")
                        load.start_soon(worker, "chain.put")
                    while a.chain.calls.total() < 50:
                        await a.chain.arrived.park()
                    assert a.server is not None
                    await a.server.shutdown(grace=5.0)
                    await a.stopped.wait()
                    served = b.chain.calls.total()
                    while b.chain.calls.total() < served + 100:
                        await b.chain.arrived.park()
                    stop.set()
                assert client.states()[a.address] is not rpc.ConnectivityState.READY
            nursery.cancel_scope.cancel()
    failures = [r for r in results if not isinstance(r, int)]
    assert failures == []
    assert len(results) > 150


def _task_count() -> int:
    def count(task: trio.lowlevel.Task) -> int:
        return 1 + sum(count(t) for n in task.child_nurseries for t in n.child_tasks)

    root = trio.lowlevel.current_root_task()
    assert root is not None
    return count(root)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts fds in /proc")
async def test_client_closed_while_reconnecting_leaks_nothing() -> None:
    silent = trio.socket.socket(type=trio.socket.SOCK_DGRAM)
    await silent.bind((HOST, 0))  # never answers: every handshake hangs
    address = f"{HOST}:{silent.getsockname()[1]}"
    with trio.fail_after(30), silent:
        tasks, fds = _task_count(), _open_fds()
        options = fast_options(connect_required=False, connect_wait=0.0)
        config = rpc_client_config(handshake_timeout=60)
        async with rpc.connect(address, config=config, options=options) as client:
            await client.wait_for_state(address, rpc.ConnectivityState.CONNECTING)
            await trio.testing.wait_all_tasks_blocked()  # the handshake is under way
            assert _task_count() > tasks and _open_fds() > fds
        assert client.states()[address] is rpc.ConnectivityState.SHUTDOWN
        assert _task_count() == tasks
        assert _open_fds() == fds
