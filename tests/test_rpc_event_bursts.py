"""Event channels write a burst of events together: the events a generator
yields in one go share QUIC packets, and the buffer's policies still hold."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio
from test_rpc_support import connected

import ghostwire.rpc as rpc
from ghostwire.rpc.events import EventBuffer

COUNT = 500
EVENT_SIZE = 100


async def test_a_burst_of_events_shares_datagrams() -> None:
    svc = rpc.Service("burst")

    @svc.events
    async def ticks(ctx: rpc.Context, count: int) -> AsyncIterator[rpc.Event]:
        for i in range(count):
            yield rpc.Event(b"x" * EVENT_SIZE, cursor=i)

    with trio.fail_after(20):
        async with connected([svc]) as (_server, client):
            async with client.subscribe("burst.ticks", count=1) as events:
                assert [e.cursor async for e in events] == [0]
            stats = client.connection.connection.core.stats
            received = stats.packets_received
            async with client.subscribe("burst.ticks", count=COUNT) as events:
                cursors = [event.cursor async for event in events]
            datagrams = stats.packets_received - received
    assert cursors == list(range(COUNT))
    # ~110 bytes an event: about ten fit a 1200-byte packet. One task switch
    # and one flush per event sent one to three events a datagram.
    assert datagrams < COUNT // 5, datagrams


@pytest.mark.parametrize("policy", ["backpressure", "drop_oldest", "end"])
async def test_a_consumer_that_keeps_up_loses_nothing(policy: rpc.Policy) -> None:
    """A producer that never awaits fills a small buffer in bursts; a consumer
    that takes whatever is ready each turn gets every event, under every
    policy: a full buffer whose consumer was woken but has not run yet is not
    a slow subscriber (``end`` must not fire, ``drop_oldest`` must not drop)."""
    buffer = EventBuffer(4, policy)
    got: list[int] = []

    async def produce() -> None:
        for i in range(1000):
            await buffer.put(rpc.Event(i, cursor=i))
        buffer.close()

    async def consume() -> None:
        while True:
            try:
                ready = await buffer.wait_ready()
            except trio.EndOfChannel:
                return
            got.extend(event.cursor for event in ready)
            buffer.take(len(ready))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(consume)
            nursery.start_soon(produce)
    assert got == list(range(1000))
    assert buffer.dropped == 0 and buffer.peak <= 4


async def test_a_full_buffer_lets_the_consumer_in() -> None:
    """With no consumer waiting, puts do not yield until the buffer is full."""
    buffer = EventBuffer(8)
    with trio.CancelScope() as scope:
        scope.cancel()
        for i in range(7):
            await buffer.put(rpc.Event(i))  # no schedule point: not cancelled
        with pytest.raises(trio.Cancelled):
            await buffer.put(rpc.Event(7))  # full: a schedule point
    assert len(buffer) == 8
