"""The Client's per-request timeout on an open connection.

A bodiless request on an open connection is timed by the client's deadlines
task (ghostwire.deadlines: one task for every waiting request, in any
order) rather than by a cancel scope of its own. It raises RequestTimeout at
its own deadline and cancels its stream.

The tests run on a MockClock (``clock``) against a real loopback server, by
address (a name is looked up in a thread, which the clock does not wait
for). The clock jumps once every task has waited 20 ms of real time (a
datagram on loopback is in the peer's socket when sendto returns); the
timeouts used (5-20 s of fake time) stay under the idle timeout.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing
from h3_server import h3_server
from quic_pair import client_config

import ghostwire.http3 as h3


async def handler(request: h3.Request) -> h3.Response:
    if request.path == "/never":
        await trio.sleep_forever()
    return h3.Response(200, content=b"ok")


@pytest.fixture
def clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0.02)


@asynccontextmanager
async def _connected(limit: float | None = 30.0) -> AsyncIterator[tuple[h3.Client, str]]:
    """A client (its timeout: ``limit``) and the loopback server's base URL,
    its connection open (its first request, which connects, answered)."""
    config = client_config(alpn=["h3"], server_name="localhost")
    async with h3_server(handler) as server:
        async with h3.Client(config, timeout=limit) as client:
            base = f"https://127.0.0.1:{server.port}"
            response = await client.get(f"{base}/")
            assert await response.read() == b"ok"
            yield client, base


def _waiting(client: h3.Client) -> int:
    return client._deadlines.live


async def test_a_request_on_an_open_connection_times_out_by_the_deadlines_task(
    clock: trio.testing.MockClock,
) -> None:
    async with _connected() as (client, base):
        client.timeout = 5.0
        start = trio.current_time()
        with pytest.raises(h3.RequestTimeout) as info:
            await client.get(f"{base}/never")
        assert trio.current_time() - start == 5.0
        assert isinstance(info.value.__cause__, trio.TooSlowError)
        assert _waiting(client) == 0
        # The connection goes on; answered requests leave nothing watched.
        for _ in range(3):
            response = await client.get(f"{base}/")
            assert await response.read() == b"ok"
        assert _waiting(client) == 0


async def test_a_later_request_with_an_earlier_deadline_times_out_at_its_own(
    clock: trio.testing.MockClock,
) -> None:
    async with _connected() as (client, base):
        took: dict[str, float] = {}

        async def never(name: str, seconds: float) -> None:
            client.timeout = seconds  # (read as the request starts)
            start = trio.current_time()
            with pytest.raises(h3.RequestTimeout):
                await client.get(f"{base}/never")
            took[name] = trio.current_time() - start

        async with trio.open_nursery() as nursery:
            nursery.start_soon(never, "first", 20.0)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(never, "second", 5.0)  # registered later, due earlier
            await trio.testing.wait_all_tasks_blocked()
            assert _waiting(client) == 2  # both by the deadlines task, no scope
        assert list(took) == ["second", "first"]
        assert took == {"second": 5.0, "first": 20.0}  # each at its own deadline
        assert _waiting(client) == 0


async def test_an_answered_request_does_not_time_out_later(clock: trio.testing.MockClock) -> None:
    async with _connected() as (client, base):
        client.timeout = 5.0
        answered = await client.get(f"{base}/")  # watched, then done
        assert await answered.read() == b"ok"
        client.timeout = 10.0
        start = trio.current_time()
        with pytest.raises(h3.RequestTimeout):
            await client.get(f"{base}/never")  # the clock passes the first's deadline
        assert trio.current_time() - start == 10.0
        assert not answered._channel.timed_out
        assert _waiting(client) == 0 and client._deadlines.held == 0


async def test_the_deadlines_task_starts_with_the_first_timed_request(
    clock: trio.testing.MockClock,
) -> None:
    async with _connected() as (client, base):
        deadlines = client._deadlines
        assert deadlines.available
        running = [deadlines.running]  # the request that connected had a cancel scope
        response = await client.get(f"{base}/")  # on the open connection: watched
        assert await response.read() == b"ok"
        running.append(deadlines.running)
    running.append(deadlines.running)  # ended with the client's nursery
    assert running == [False, True, False]
    assert not deadlines.available


async def test_no_timeout_watches_nothing(clock: trio.testing.MockClock) -> None:
    async with _connected(limit=None) as (client, base):
        for _ in range(3):
            response = await client.get(f"{base}/")
            assert await response.read() == b"ok"
        with trio.move_on_after(5.0) as scope:  # the caller's own scope
            await client.get(f"{base}/never")
        assert scope.cancelled_caught
        assert _waiting(client) == 0
        assert not client._deadlines.running
