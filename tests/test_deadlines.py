"""One task keeps the deadlines of many waits (ghostwire.deadlines): in any
order, ended waits never fire, the task starts on first use and ends with
its nursery. Used by the RPC client (tests/test_rpc_deadlines.py) and the
HTTP/3 client (tests/test_h3_client_timeouts.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio
import trio.testing

from ghostwire.deadlines import Deadlines


@asynccontextmanager
async def _running(deadlines: Deadlines) -> AsyncIterator[trio.Nursery]:
    """``deadlines`` attached to a nursery that is cancelled as the block ends."""
    async with trio.open_nursery() as nursery:
        deadlines.attach(nursery)
        yield nursery
        nursery.cancel_scope.cancel()


def _recording() -> tuple[list[tuple[str, float]], Deadlines]:
    """Deadlines whose expiries are listed: (target, time)."""
    expired: list[tuple[str, float]] = []
    return expired, Deadlines(lambda target: expired.append((target, trio.current_time())))


async def test_deadlines_expire_in_order_and_not_after_done(
    autojump_clock: trio.testing.MockClock,
) -> None:
    expired, deadlines = _recording()
    async with _running(deadlines):
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
    assert expired == [("a", start + 1), ("c", start + 3), ("d", start + 3)]
    assert deadlines.live == 0
    assert not deadlines.running


async def test_expired_watch_is_marked_and_done_is_idempotent(
    autojump_clock: trio.testing.MockClock,
) -> None:
    deadlines = Deadlines(lambda target: None)
    async with _running(deadlines):
        watch = deadlines.watch(trio.current_time() + 1, "x")
        kept = deadlines.watch(trio.current_time() + 10, "y")
        await trio.sleep(2)
        assert Deadlines.expired(watch) and Deadlines.ended(watch)
        assert not Deadlines.expired(kept) and not Deadlines.ended(kept)
        deadlines.done(watch)  # the call ends after its deadline passed: counted once
        deadlines.done(kept)
        deadlines.done(kept)
        assert deadlines.live == 0


async def test_ended_entries_do_not_pile_up() -> None:
    # Calls far from their deadlines ending one after another: the heap is
    # rebuilt once it holds twice its live entries of the last rebuild and 64.
    deadlines = Deadlines(lambda target: None)
    async with _running(deadlines):
        start = trio.current_time()
        live = [deadlines.watch(start + 1000 + i, i) for i in range(10)]
        for i in range(10_000):
            deadlines.done(deadlines.watch(start + 2000 + i, i))
            assert deadlines.held <= 2 * len(live) + 64 + 1
        assert deadlines.live == len(live)


async def test_a_later_wait_with_an_earlier_deadline_expires_at_its_own(
    autojump_clock: trio.testing.MockClock,
) -> None:
    expired, deadlines = _recording()
    async with _running(deadlines):
        start = trio.current_time()
        early = deadlines.watch(start + 10, "early")
        await trio.testing.wait_all_tasks_blocked()  # the task sleeps until start + 10
        late = deadlines.watch(start + 4, "late")  # registered after, due before
        await trio.sleep(5)
        assert expired == [("late", start + 4)]
        assert Deadlines.expired(late) and not Deadlines.ended(early)  # the earlier goes on
        await trio.sleep(10)
    assert expired == [("late", start + 4), ("early", start + 10)]


async def test_ended_waits_never_fire(autojump_clock: trio.testing.MockClock) -> None:
    expired: list[str] = []
    deadlines = Deadlines(expired.append)
    async with _running(deadlines):
        start = trio.current_time()
        watches = [deadlines.watch(start + 1 + i % 3, str(i)) for i in range(6)]
        await trio.testing.wait_all_tasks_blocked()
        for watch in watches:
            deadlines.done(watch)  # every one before its deadline, the earliest included
        await trio.sleep(10)
        assert expired == [] and deadlines.live == 0 and deadlines.held == 0
        assert not any(Deadlines.expired(watch) for watch in watches)


async def test_the_task_starts_on_first_use_and_ends_with_its_nursery(
    autojump_clock: trio.testing.MockClock,
) -> None:
    deadlines = Deadlines(lambda target: None, name="test deadlines")
    assert not deadlines.available
    async with _running(deadlines) as nursery:
        await trio.testing.wait_all_tasks_blocked()
        running = [deadlines.running]  # attached, no wait yet
        assert len(nursery.child_tasks) == 0
        watch = deadlines.watch(trio.current_time() + 1, "x")
        running.append(deadlines.running)  # started with the first watch
        assert running == [False, True]
        await trio.testing.wait_all_tasks_blocked()
        assert [task.name for task in nursery.child_tasks] == ["test deadlines"]
        deadlines.done(watch)
        deadlines.watch(trio.current_time() + 1, "y")  # no second task
        await trio.testing.wait_all_tasks_blocked()
        assert len(nursery.child_tasks) == 1
    assert not deadlines.running
    # Attached to a new nursery, it starts there again on its next watch.
    expired: list[str] = []
    deadlines = Deadlines(expired.append)
    async with _running(deadlines):
        deadlines.watch(trio.current_time() + 1, "z")
        await trio.sleep(2)
    async with _running(deadlines):
        assert not deadlines.running
        deadlines.watch(trio.current_time() + 1, "w")
        await trio.sleep(2)
    deadlines.attach(None)
    assert expired == ["z", "w"] and not deadlines.available


async def test_the_wait_that_triggers_a_rebuild_still_expires(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The heap is rebuilt inside watch(); the new entry goes into the rebuilt
    # heap (it once went into the old list and never expired).
    expired: list[str] = []
    deadlines = Deadlines(expired.append)
    async with _running(deadlines):
        start = trio.current_time()
        for i in range(65):
            deadlines.done(deadlines.watch(start + 100, str(i)))
        watch = deadlines.watch(start + 1, "rebuilt")  # 65 entries > 2 * 0 + 64
        assert deadlines.held == 1
        await trio.sleep(2)
        assert expired == ["rebuilt"] and Deadlines.expired(watch)
