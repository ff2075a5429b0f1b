"""The health service: the registry, ``health.check`` and ``health.watch``, in
memory through the RPC dispatcher and over loopback QUIC, and the balancer
skipping an endpoint that says NOT_SERVING."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

import ghostwire.rpc as rpc
from ghostwire.rpc.resilience.balancer import EndpointHandle, LeastOutstanding
from ghostwire.rpc.resilience.health import (
    SERVICE_NAME,
    HealthStatus,
    health_service,
    parse_status,
)
from ghostwire.rpc.resilience.states import ConnectivityState, ServingStatus

S = ServingStatus


# -- the registry -----------------------------------------------------------------


def test_registry_answers_per_service_and_for_the_server() -> None:
    health = HealthStatus(["zvm"])
    assert health.get() is S.SERVING  # "" is the whole server
    assert health.get("zvm") is S.SERVING
    assert health.get("wallet") is S.SERVICE_UNKNOWN
    health.set("wallet", S.NOT_SERVING)
    assert health.get("wallet") is S.NOT_SERVING
    health.clear("wallet")
    assert health.get("wallet") is S.SERVICE_UNKNOWN
    health.clear("")  # the server itself cannot be forgotten
    assert health.get("") is S.SERVING
    with pytest.raises(ValueError):
        health.set("zvm", S.SERVICE_UNKNOWN)
    assert health.snapshot() == {"": "SERVING", "zvm": "SERVING"}


def test_drain_pins_everything_not_serving() -> None:
    health = HealthStatus(["zvm", "wallet"])
    health.drain()
    assert health.draining
    assert {health.get(n) for n in ("", "zvm", "wallet")} == {S.NOT_SERVING}
    health.set("zvm", S.SERVING)  # an application that did not hear of the drain
    assert health.get("zvm") is S.NOT_SERVING


def test_parse_status_is_forgiving() -> None:
    assert parse_status("SERVING") is S.SERVING
    assert parse_status(2) is S.NOT_SERVING
    for junk in ("serving", 99, None, True, b"SERVING"):
        assert parse_status(junk) is S.UNKNOWN


async def test_watch_is_latest_value_not_a_backlog() -> None:
    health = HealthStatus(["zvm"])
    seen: list[ServingStatus] = []
    async with trio.open_nursery() as nursery:

        async def watcher() -> None:
            async for status in health.watch("zvm"):
                seen.append(status)
                if status is S.NOT_SERVING and len(seen) > 1:
                    return

        nursery.start_soon(watcher)
        await trio.testing.wait_all_tasks_blocked()
        assert seen == [S.SERVING]  # the current status comes first
        # A burst of changes before the watcher runs: it sees the newest only.
        health.set("zvm", S.NOT_SERVING)
        health.set("zvm", S.SERVING)
        health.set("zvm", S.NOT_SERVING)
    assert seen == [S.SERVING, S.NOT_SERVING]


# -- through the dispatcher (in memory) -----------------------------------------------


def _dispatcher(health: HealthStatus) -> Any:
    return rpc.Dispatcher([health_service(health)])


async def _check(dispatcher: Any, **kwargs: Any) -> Any:
    name = f"{SERVICE_NAME}.check"
    return await dispatcher.unary(rpc.Context(name), dispatcher.resolve(name), (), kwargs)


async def test_check_through_the_dispatcher() -> None:
    health = HealthStatus(["zvm"])
    dispatcher = _dispatcher(health)
    assert dispatcher.resolve("health.check").options.idempotent  # clients may retry it
    assert await _check(dispatcher) == "SERVING"
    assert await _check(dispatcher, service="zvm") == "SERVING"
    assert await _check(dispatcher, service="nope") == "SERVICE_UNKNOWN"
    health.set("zvm", S.NOT_SERVING)
    assert await _check(dispatcher, service="zvm") == "NOT_SERVING"
    with pytest.raises(rpc.RpcError) as info:
        await _check(dispatcher, service=7)
    assert info.value.status is rpc.Status.INVALID_ARGUMENT


async def test_watch_through_the_dispatcher() -> None:
    health = HealthStatus(["zvm"])
    dispatcher = _dispatcher(health)
    events: list[Any] = []

    async def send(event: Any) -> None:
        events.append(event)

    async def subscribe() -> None:
        name = f"{SERVICE_NAME}.watch"
        ctx = rpc.Context(name)
        await dispatcher.events(ctx, dispatcher.resolve(name), (), {"service": "zvm"}, send)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(subscribe)
        await trio.testing.wait_all_tasks_blocked()
        health.set("zvm", S.NOT_SERVING)
        await trio.testing.wait_all_tasks_blocked()
        health.drain()  # already NOT_SERVING: no new event
        await trio.testing.wait_all_tasks_blocked()
        health.clear("zvm")
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert [e.data for e in events] == ["SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"]
    assert all(e.cursor is None for e in events)  # state, not a log: nothing to resume after
    assert dispatcher.statistics().subscriptions == 0


# -- the balancer listens -------------------------------------------------------------


async def test_the_balancer_skips_an_endpoint_whose_health_says_not_serving() -> None:
    health_a, health_b = HealthStatus(["zvm"]), HealthStatus(["zvm"])
    endpoints = {"a:1": EndpointHandle("a:1"), "b:1": EndpointHandle("b:1")}
    for endpoint in endpoints.values():
        endpoint.state.set(ConnectivityState.CONNECTING)
        endpoint.state.set(ConnectivityState.READY)
    balancer = LeastOutstanding(endpoints.values())
    for address, health in (("a:1", health_a), ("b:1", health_b)):
        endpoints[address].serving = parse_status(await _check(_dispatcher(health), service="zvm"))
    assert {e.address for e in balancer.up(0.0)} == {"a:1", "b:1"}
    health_b.drain()  # b is about to be redeployed
    endpoints["b:1"].serving = parse_status(await _check(_dispatcher(health_b), service="zvm"))
    picks = [balancer.pick(0.0) for _ in range(4)]
    assert {p.endpoint.address for p in picks if p is not None} == {"a:1"}


# -- over loopback QUIC ---------------------------------------------------------------


async def test_check_and_watch_over_loopback_quic() -> None:
    import test_rpc_support as support

    health = HealthStatus(["zvm"])
    with trio.fail_after(10):
        async with support.connected([health_service(health)]) as (_server, client):
            assert await client.call("health.check", service="zvm") == "SERVING"
            assert await client.call("health.check", "wallet") == "SERVICE_UNKNOWN"
            async with client.subscribe("health.watch", service="zvm") as events:
                seen = []
                async for event in events:
                    seen.append(event.data)
                    if len(seen) == 1:
                        health.set("zvm", S.NOT_SERVING)
                    else:
                        break
            assert seen == ["SERVING", "NOT_SERVING"]
