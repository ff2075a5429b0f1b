"""The client pool: several endpoints, balancing, states, learned idempotency,
metrics, and the backoff schedule of a supervisor on trio's fake clock."""

from __future__ import annotations

import itertools
import random
from contextlib import AbstractAsyncContextManager

import pytest
import trio
import trio.testing
from test_rpc_faults_support import HOST, ServerSlot, fast_options
from test_rpc_support import rpc_client_config

import ghostwire.quic as quic
import ghostwire.rpc as rpc
from ghostwire.rpc.resilience import DEFAULT_CONNECT_BACKOFF, Backoff, EndpointHandle

READY = rpc.ConnectivityState.READY


async def test_calls_spread_over_two_endpoints() -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            a, b = ServerSlot(nursery), ServerSlot(nursery)
            await a.start()
            await b.start()
            addresses = [a.address, b.address]
            async with rpc.connect(addresses, config=rpc_client_config()) as client:
                # connect returns once one endpoint is READY; wait for both
                for address in addresses:
                    await client.wait_for_state(address, READY)
                assert client.states() == {a.address: READY, b.address: READY}
                for n in range(20):
                    assert await client.call("chain.get", n) == n
                # the servers told the client which methods are idempotent
                assert "chain.get" in client.pool.idempotent_methods
                assert "chain.put" not in client.pool.idempotent_methods
                snapshot = client.metrics()
            assert client.states() == {a.address: rpc.ConnectivityState.SHUTDOWN} | {
                b.address: rpc.ConnectivityState.SHUTDOWN
            }
            nursery.cancel_scope.cancel()
    # least_outstanding breaks ties in rotation: sequential calls alternate
    assert a.chain.calls["get"] == 10 and b.chain.calls["get"] == 10
    assert snapshot.methods["chain.get"].calls == 20
    assert {e.state for e in snapshot.endpoints.values()} == {"READY"}
    assert a.server is not None and a.server.metrics().methods["chain.get"].calls == 10


async def test_round_robin_alternates_and_skips_a_dead_endpoint() -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            a, b, c = ServerSlot(nursery), ServerSlot(nursery), ServerSlot(nursery)
            for slot in (a, b, c):
                await slot.start()
            options = fast_options(balancing="round_robin")
            addresses = [a.address, b.address, c.address]
            async with rpc.connect(
                addresses, config=rpc_client_config(), options=options
            ) as client:
                for address in addresses:
                    await client.wait_for_state(address, READY)
                for n in range(9):
                    await client.call("chain.put", n)
                assert [s.chain.calls["put"] for s in (a, b, c)] == [3, 3, 3]
                await b.kill()  # closes its connections: the client sees it at once
                await client.wait_for_state(
                    b.address,
                    rpc.ConnectivityState.TRANSIENT_FAILURE,
                    rpc.ConnectivityState.CONNECTING,
                )
                for n in range(10):
                    await client.call("chain.put", n)
            nursery.cancel_scope.cancel()
    assert b.chain.calls["put"] == 3
    assert a.chain.calls["put"] + c.chain.calls["put"] == 16


async def test_a_single_unreachable_address_raises_as_before() -> None:
    # One address, nothing listening: connect raises the connection's error
    # (as a plain quic.connect did), here a handshake timeout.
    sock = trio.socket.socket(type=trio.socket.SOCK_DGRAM)
    await sock.bind((HOST, 0))  # a port that never answers
    port = sock.getsockname()[1]
    config = rpc_client_config(handshake_timeout=0.5)
    with trio.fail_after(30), sock:
        with pytest.raises(quic.QuicError):
            async with rpc.connect(f"{HOST}:{port}", config=config, options=fast_options()):
                pass  # pragma: no cover


async def test_starting_without_any_endpoint_up_fails_calls_at_once() -> None:
    sock = trio.socket.socket(type=trio.socket.SOCK_DGRAM)
    await sock.bind((HOST, 0))
    port = sock.getsockname()[1]
    options = fast_options(connect_required=False, connect_wait=0.0)
    config = rpc_client_config(handshake_timeout=0.5)
    with trio.fail_after(30), sock:
        async with rpc.connect(f"{HOST}:{port}", config=config, options=options) as client:
            assert client.states()[f"{HOST}:{port}"] is not READY
            with pytest.raises(rpc.RpcError) as info:
                await client.call("chain.get", 1)
            assert info.value.status is rpc.Status.UNAVAILABLE


# -- the backoff schedule on trio's fake clock ------------------------------------------


class _Refused:
    """A connector's context manager whose every attempt is refused."""

    def __init__(self, attempts: list[float], address: str) -> None:
        self.attempts = attempts
        self.address = address

    async def __aenter__(self) -> quic.Connection:
        self.attempts.append(trio.current_time())
        raise ConnectionRefusedError(f"{self.address} refused")

    async def __aexit__(self, *exc_info: object) -> None:
        return None  # pragma: no cover


async def test_reconnect_backoff_schedule(autojump_clock: trio.testing.MockClock) -> None:
    attempts: list[float] = []
    seen_states: list[rpc.ConnectivityState] = []

    def connector(address: str) -> AbstractAsyncContextManager[quic.Connection]:
        return _Refused(attempts, address)

    def no_rpc(conn: quic.Connection) -> rpc.RpcConnection:
        raise AssertionError("never connected")  # pragma: no cover

    pool = rpc.Pool(["10.0.0.1:4433"], connector, no_rpc, rng=random.Random(7))
    holder = pool.supervisors["10.0.0.1:4433"].handle.state
    async with trio.open_nursery() as nursery:
        nursery.start_soon(pool.run)

        async def watch() -> None:
            state = holder.state
            while state is not rpc.ConnectivityState.SHUTDOWN:
                state = await holder.wait_for_state_change(state)
                seen_states.append(state)

        nursery.start_soon(watch)
        await trio.sleep(600)  # fake time: ten minutes of attempts
        await pool.aclose()
        nursery.cancel_scope.cancel()

    # the schedule the same seed gives: full jitter under 1 s x1.6^n, capped at 120 s
    expected: list[float] = []
    backoff, now = Backoff(DEFAULT_CONNECT_BACKOFF, random.Random(7)), 0.0
    while now <= 600:
        expected.append(now)
        now = backoff.plan(now).retry_at
    assert attempts == pytest.approx(expected)
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    for n, gap in enumerate(gaps):
        assert 0 <= gap <= min(1.6**n, 120.0)
    assert max(gaps) > 30  # it did back off, far past the first second
    assert seen_states[:4] == [
        rpc.ConnectivityState.CONNECTING,
        rpc.ConnectivityState.TRANSIENT_FAILURE,
        rpc.ConnectivityState.CONNECTING,
        rpc.ConnectivityState.TRANSIENT_FAILURE,
    ]
    assert holder.state is rpc.ConnectivityState.SHUTDOWN


async def _until_serving(
    client: rpc.Client, handle: EndpointHandle, status: rpc.ServingStatus
) -> None:
    """Wait until health.watch told the client ``status``."""
    while handle.serving is not status:
        await client.pool.wait_for_change()


async def test_an_endpoint_saying_not_serving_gets_no_new_calls() -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            a, b = ServerSlot(nursery), ServerSlot(nursery)
            await a.start()
            await b.start()
            addresses = [a.address, b.address]
            async with rpc.connect(addresses, config=rpc_client_config()) as client:
                for address in addresses:
                    await client.wait_for_state(address, READY)
                handle = client.pool.supervisors[a.address].handle
                assert a.server is not None
                a.server.health.set("", rpc.ServingStatus.NOT_SERVING)
                await _until_serving(client, handle, rpc.ServingStatus.NOT_SERVING)
                for n in range(10):
                    await client.call("chain.get", n)
                assert a.chain.calls["get"] == 0 and b.chain.calls["get"] == 10
                a.server.health.set("", rpc.ServingStatus.SERVING)
                await _until_serving(client, handle, rpc.ServingStatus.SERVING)
                for n in range(10):
                    await client.call("chain.get", n)
                assert a.chain.calls["get"] == 5
            nursery.cancel_scope.cancel()
