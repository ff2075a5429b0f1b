"""Calls' own deadlines kept by one task (ghostwire.rpc.deadlines), and the
client's timed calls that use it instead of a cancel scope each."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from test_rpc_calls import setup

import ghostwire.rpc as rpc
from ghostwire.rpc.deadlines import CallDeadlines

Status = rpc.Status


async def test_deadlines_expire_in_order_and_not_after_done(
    autojump_clock: trio.testing.MockClock,
) -> None:
    expired: list[tuple[str, float]] = []
    deadlines = CallDeadlines(lambda target: expired.append((target, trio.current_time())))
    async with trio.open_nursery() as nursery:
        deadlines.attach(nursery)
        assert deadlines.available and not deadlines.running
        start = trio.current_time()
        deadlines.watch(start + 3, "c")  # starts the task
        await trio.testing.wait_all_tasks_blocked()
        finished = deadlines.watch(start + 2, "b")
        deadlines.watch(start + 1, "a")  # earlier than the task's wait: it wakes for it
        deadlines.watch(start + 3, "d")  # a tie: after "c", registered first
        deadlines.done(finished)
        assert deadlines.live == 3
        await trio.sleep(5)
        nursery.cancel_scope.cancel()
    assert expired == [("a", start + 1), ("c", start + 3), ("d", start + 3)]
    assert deadlines.live == 0
    assert not deadlines.running


async def test_expired_watch_is_marked_and_done_is_idempotent(
    autojump_clock: trio.testing.MockClock,
) -> None:
    deadlines = CallDeadlines(lambda target: None)
    async with trio.open_nursery() as nursery:
        deadlines.attach(nursery)
        watch = deadlines.watch(trio.current_time() + 1, "x")
        kept = deadlines.watch(trio.current_time() + 10, "y")
        await trio.sleep(2)
        assert watch.expired and watch.done and not kept.expired
        deadlines.done(watch)  # the call ends after its deadline passed: counted once
        deadlines.done(kept)
        deadlines.done(kept)
        assert deadlines.live == 0
        nursery.cancel_scope.cancel()


async def test_ended_entries_do_not_pile_up() -> None:
    # Calls far from their deadlines ending one after another: the heap is
    # rebuilt once the ended ones outnumber the live ones.
    deadlines = CallDeadlines(lambda target: None)
    async with trio.open_nursery() as nursery:
        deadlines.attach(nursery)
        start = trio.current_time()
        live = [deadlines.watch(start + 1000 + i, i) for i in range(10)]
        for i in range(10_000):
            deadlines.done(deadlines.watch(start + 2000 + i, i))
            assert deadlines.held <= 2 * len(live) + 64 + 1
        assert deadlines.live == len(live)
        nursery.cancel_scope.cancel()


async def test_timed_calls_use_the_pools_deadlines() -> None:
    async with setup() as (probe, _, client):
        deadlines = client.pool.deadlines
        assert deadlines.available and not deadlines.running  # no timed call yet: no task
        with trio.fail_after(10):
            assert await client.call("zvm.echo", "quick", timeout=5) == "quick"
            # registered (its deadline is earlier than fail_after's), then done
            assert deadlines.held == 1 and deadlines.live == 0
            with pytest.raises(rpc.RpcError) as info:
                await client.call("zvm.hang", timeout=0.2)
            await probe.cancelled.wait()  # the server's handler was cancelled
        assert info.value.status is Status.DEADLINE_EXCEEDED
        assert "zvm.hang" in info.value.message
        assert deadlines.live == 0
        assert await client.call("zvm.echo", "alive", timeout=5) == "alive"


async def test_a_timeout_already_over_sends_nothing() -> None:
    async with setup() as (probe, _, client):
        with trio.fail_after(10):
            with pytest.raises(rpc.RpcError) as info:
                await client.call("zvm.get_balance", b"\x01", timeout=0)
            assert info.value.status is Status.DEADLINE_EXCEEDED
            assert await client.call("zvm.echo", "next") == "next"
        # The first call never left: the server saw only the second.
        assert [method for method, _ in probe.outcomes] == ["zvm.echo"]
        assert client.pool.deadlines.held == 0
