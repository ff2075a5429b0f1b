"""A client whose event loop is starved by its own work must not take its
lateness for a silent server.

``test_ten_thousand_calls_in_flight_on_one_connection`` once failed on a
loaded machine with thousands of ``CallNotStarted: connection closed locally
with application error 0``: one scheduler pass over ten thousand calls took
longer than ``ping_timeout``, so the supervisor's ping wait expired before
the loop could read the server's answer; it declared the server silent and
closed the connection under every call in flight.

Here the stall is made exact, with no load and no wall time: trio's MockClock
jumps past ``ping_timeout`` just as the PING goes out (what a long scheduler
pass does to the clock), and autojumps whenever every task waits.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio
import trio.testing
from test_rpc_calls import setup

import ghostwire.quic as quic
import ghostwire.rpc as rpc
from ghostwire.rpc.supervisor import answers_ping


async def test_a_ping_sent_just_before_a_stall_is_still_answered(
    autojump_clock: trio.testing.MockClock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    options = rpc.PoolOptions(max_connections_per_endpoint=1)
    real_ping = quic.Connection.ping
    pings = 0
    answered = trio.Event()

    async def ping_then_stall(self: quic.Connection) -> None:
        nonlocal pings
        pings += 1
        if pings == 1:
            # The loop stalls as the first PING goes out: by the time it can
            # read anything, ping_timeout has passed on the clock.
            autojump_clock.jump(options.ping_timeout * 5)
        await real_ping(self)
        answered.set()

    monkeypatch.setattr(quic.Connection, "ping", ping_then_stall)
    caplog.set_level(logging.INFO, logger="ghostwire.rpc")
    with trio.fail_after(60):  # mock time: only a hang gets here
        async with setup(interceptors=[], options=options) as (probe, _, client):
            first = client.connection
            async with trio.open_nursery() as nursery:
                results: list[Any] = []

                async def call() -> None:
                    results.append(await client.call("zvm.wait"))

                nursery.start_soon(call)
                await probe.started.wait()  # a call in flight: the connection is pinged
                await answered.wait()
                probe.release.set()
            assert results == ["released"]  # the call was not cut off
            assert client.connection is first  # no reconnection
            assert not first.is_closed
    assert pings >= 1
    assert not [r for r in caplog.records if "did not answer a ping" in r.getMessage()]


async def test_a_silent_peer_is_still_found(autojump_clock: trio.testing.MockClock) -> None:
    """The steps change what counts as time, not the outcome: a peer that
    never answers is reported as such (after ping_timeout on an idle loop)."""

    class Silent:
        async def ping(self) -> None:
            await trio.sleep_forever()

    start = trio.current_time()
    assert not await answers_ping(Silent(), 1.5)  # type: ignore[arg-type]
    assert trio.current_time() - start == pytest.approx(1.5)

    class Closed:
        async def ping(self) -> None:
            raise quic.ConnectionClosed("closed")

    assert not await answers_ping(Closed(), 1.5)  # type: ignore[arg-type]

    class Alive:
        async def ping(self) -> None:
            await trio.sleep(1.0)

    assert await answers_ping(Alive(), 1.5)  # type: ignore[arg-type]
