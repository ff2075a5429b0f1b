"""Connectivity states: gRPC's table, and changes that are awaited, never polled."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from ghostwire.errors import GhostwireError
from ghostwire.rpc.resilience.states import (
    TRANSITIONS,
    ConnectivityState,
    InvalidStateTransition,
    ServingStatus,
    StateHolder,
    StateShutdown,
)

S = ConnectivityState


def test_the_five_grpc_states_and_health_numbers() -> None:
    assert [s.name for s in S] == [
        "IDLE",
        "CONNECTING",
        "READY",
        "TRANSIENT_FAILURE",
        "SHUTDOWN",
    ]
    # grpc.health.v1 HealthCheckResponse.ServingStatus numbering.
    assert [(s.name, int(s)) for s in ServingStatus] == [
        ("UNKNOWN", 0),
        ("SERVING", 1),
        ("NOT_SERVING", 2),
        ("SERVICE_UNKNOWN", 3),
    ]


def test_every_move_follows_the_table() -> None:
    for old in S:
        for new in S:
            if old is new:
                continue
            holder = StateHolder(old)
            if new in TRANSITIONS[old]:
                assert holder.set(new) is True
                assert holder.state is new
            else:
                with pytest.raises(InvalidStateTransition) as info:
                    holder.set(new)
                assert isinstance(info.value, GhostwireError)
                assert holder.state is old
    # Every state can shut down; nothing leaves SHUTDOWN; READY is reached only by connecting.
    assert all(S.SHUTDOWN in TRANSITIONS[s] for s in S if s is not S.SHUTDOWN)
    assert TRANSITIONS[S.SHUTDOWN] == frozenset()
    assert [s for s in S if S.READY in TRANSITIONS[s]] == [S.CONNECTING]


def test_setting_the_same_state_is_a_no_op_and_hooks_see_real_changes() -> None:
    seen: list[tuple[ConnectivityState, ConnectivityState]] = []
    holder = StateHolder(on_change=lambda old, new: seen.append((old, new)))
    assert holder.set(S.IDLE) is False
    holder.set(S.CONNECTING)
    holder.set(S.CONNECTING)
    holder.set(S.READY)
    holder.shutdown()
    holder.shutdown()
    assert seen == [(S.IDLE, S.CONNECTING), (S.CONNECTING, S.READY), (S.READY, S.SHUTDOWN)]
    assert holder.changes == 3


async def test_wait_for_state_change_wakes_on_the_next_change() -> None:
    holder = StateHolder()
    results: list[ConnectivityState] = []

    async def watcher() -> None:
        results.append(await holder.wait_for_state_change(S.IDLE))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watcher)
        nursery.start_soon(watcher)
        await trio.testing.wait_all_tasks_blocked()
        assert results == []  # parked, not spinning
        holder.set(S.CONNECTING)
    assert results == [S.CONNECTING, S.CONNECTING]


async def test_wait_for_state_change_returns_at_once_if_already_different() -> None:
    holder = StateHolder(S.READY)
    with trio.testing.assert_checkpoints():
        assert await holder.wait_for_state_change(S.CONNECTING) is S.READY


async def test_a_change_that_comes_and_goes_is_still_reported() -> None:
    holder = StateHolder(S.CONNECTING)
    results: list[ConnectivityState] = []

    async def watcher() -> None:
        results.append(await holder.wait_for_state_change(S.CONNECTING))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watcher)
        await trio.testing.wait_all_tasks_blocked()
        # Two changes before the watcher gets to run: it reports the first, not CONNECTING.
        holder.set(S.TRANSIENT_FAILURE)
        holder.set(S.CONNECTING)
    assert results == [S.TRANSIENT_FAILURE]


async def test_wait_for_sees_a_target_entered_and_left_before_it_ran() -> None:
    holder = StateHolder()
    results: list[ConnectivityState] = []

    async def wait_ready() -> None:
        results.append(await holder.wait_for(S.READY))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait_ready)
        await trio.testing.wait_all_tasks_blocked()
        holder.set(S.CONNECTING)
        holder.set(S.READY)
        holder.set(S.IDLE)  # GOAWAY right after connecting
    assert results == [S.READY]


async def test_waits_end_with_an_error_at_shutdown_instead_of_hanging() -> None:
    holder = StateHolder(S.CONNECTING)

    async def wait_ready() -> None:
        with pytest.raises(StateShutdown):
            await holder.wait_for(S.READY)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait_ready)
        await trio.testing.wait_all_tasks_blocked()
        holder.set(S.TRANSIENT_FAILURE)
        holder.shutdown()
    with pytest.raises(StateShutdown):
        await holder.wait_for_state_change(S.SHUTDOWN)
    assert await holder.wait_for(S.READY, S.SHUTDOWN) is S.SHUTDOWN


async def test_a_timeout_is_the_callers_cancel_scope(
    autojump_clock: trio.testing.MockClock,
) -> None:
    holder = StateHolder()
    with trio.move_on_after(5.0) as scope:
        await holder.wait_for_state_change(S.IDLE)
    assert scope.cancelled_caught
    assert trio.current_time() == pytest.approx(5.0)
    with pytest.raises(ValueError):
        await holder.wait_for()
