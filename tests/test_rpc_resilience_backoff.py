"""Reconnect backoff: the gRPC numbers, full jitter, and the schedule on trio's fake clock."""

from __future__ import annotations

import functools
import itertools
import random

import pytest
import trio
import trio.testing

from ghostwire.errors import GhostwireError
from ghostwire.rpc.resilience.backoff import (
    DEFAULT_CONNECT_BACKOFF,
    Backoff,
    BackoffPolicy,
    ConnectAttempt,
)
from ghostwire.rpc.resilience.runners import (
    ConnectTimeout,
    connect_with_backoff,
    is_transient_connect_error,
    without_transient_errors,
)


def test_defaults_are_grpcs() -> None:
    policy = DEFAULT_CONNECT_BACKOFF
    assert (policy.initial, policy.multiplier, policy.max_backoff) == (1.0, 1.6, 120.0)
    assert policy.min_connect_timeout == 20.0


def test_ceiling_grows_by_the_multiplier_and_stops_at_the_cap() -> None:
    policy = BackoffPolicy()
    ceilings = [policy.ceiling(n) for n in range(13)]
    assert ceilings[:4] == pytest.approx([1.0, 1.6, 2.56, 4.096])
    for n in range(1, 13):
        assert ceilings[n] == pytest.approx(min(1.0 * 1.6**n, 120.0))
    assert ceilings[11] == 120.0  # 1.6**11 = 175.9 > 120
    # Thousands of failures neither overflow nor exceed the cap.
    assert policy.ceiling(5000) == 120.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial": 0.0},
        {"multiplier": 0.5},
        {"initial": 2.0, "max_backoff": 1.0},
        {"min_connect_timeout": -1.0},
    ],
)
def test_nonsense_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        BackoffPolicy(**kwargs)


def test_full_jitter_draws_between_zero_and_the_ceiling() -> None:
    policy = BackoffPolicy()
    backoff = Backoff(policy, random.Random(7))
    mirror = random.Random(7)
    for n in range(30):
        wait = backoff.next_wait()
        assert wait == mirror.uniform(0.0, policy.ceiling(n))
        assert 0.0 <= wait <= policy.ceiling(n)
    assert backoff.failures == 30
    # Full jitter spreads over the whole window rather than clustering near the ceiling.
    spread = Backoff(BackoffPolicy(initial=10.0, max_backoff=10.0), random.Random(3))
    waits = [spread.next_wait() for _ in range(200)]
    assert min(waits) < 2.0 and max(waits) > 8.0


def test_plan_gives_each_attempt_at_least_the_minimum_connect_timeout() -> None:
    backoff = Backoff(BackoffPolicy(), random.Random(11))
    mirror = random.Random(11)
    first = backoff.plan(100.0)
    wait = mirror.uniform(0.0, 1.0)
    assert first == ConnectAttempt(
        start=100.0, connect_deadline=120.0, retry_at=100.0 + wait, failures=0
    )
    # Far into the schedule the wait exceeds 20 s, and the attempt may use all of it.
    for _ in range(20):
        late = backoff.plan(500.0)
    assert late.failures == 20
    assert late.connect_deadline == max(late.retry_at, 520.0)
    backoff.reset()
    assert backoff.failures == 0
    assert backoff.plan(0.0).retry_at <= 1.0


async def test_reconnect_schedule_on_the_fake_clock(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Attempts that fail at once start at t0, t0 + w0, t0 + w0 + w1, ... with
    w_n = uniform(0, min(1 * 1.6**n, 120)) from the seeded generator."""
    policy = BackoffPolicy()
    mirror = random.Random(2024)
    starts: list[float] = []
    failures: list[tuple[ConnectAttempt, Exception]] = []

    async def refuse() -> None:
        starts.append(trio.current_time())
        if len(starts) < 16:
            raise ConnectionRefusedError("nobody listening")

    t0 = trio.current_time()
    with trio.fail_after(10_000):
        await connect_with_backoff(
            refuse,
            Backoff(policy, random.Random(2024)),
            on_failure=lambda attempt, exc: failures.append((attempt, exc)),
        )
    expected = [t0]
    for n in range(15):
        expected.append(expected[-1] + mirror.uniform(0.0, policy.ceiling(n)))
    assert starts == pytest.approx(expected, abs=1e-9)
    assert len(failures) == 15
    assert all(isinstance(exc, ConnectionRefusedError) for _, exc in failures)
    assert [a.failures for a, _ in failures] == list(range(15))
    # The last waits are drawn under the 120 s cap, and the schedule really grew.
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert all(0 <= gap <= policy.ceiling(n) for n, gap in enumerate(gaps))
    assert sum(gaps[-5:]) > sum(gaps[:5])


async def test_a_hanging_attempt_is_cut_at_its_connect_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    starts: list[float] = []
    failures: list[Exception] = []

    async def hang() -> None:
        starts.append(trio.current_time())
        await trio.sleep_forever()

    with trio.move_on_after(65.0):
        await connect_with_backoff(
            hang,
            Backoff(BackoffPolicy(), random.Random(1)),
            on_failure=lambda attempt, exc: failures.append(exc),
        )
    # Early waits are under 20 s, so each attempt gets the full minimum connect timeout.
    assert starts == pytest.approx([0.0, 20.0, 40.0, 60.0], abs=1e-9)
    assert len(failures) == 3
    assert all(isinstance(exc, ConnectTimeout) for exc in failures)
    assert all(isinstance(exc, GhostwireError) for exc in failures)


async def test_success_resets_the_backoff(autojump_clock: trio.testing.MockClock) -> None:
    backoff = Backoff(BackoffPolicy(), random.Random(5))
    attempts = 0

    async def third_time_lucky() -> str:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise OSError("unreachable")
        return "connected"

    assert await connect_with_backoff(third_time_lucky, backoff) == "connected"
    assert attempts == 3
    assert backoff.failures == 0


async def test_a_non_transient_error_propagates_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    calls = 0

    async def broken() -> None:
        nonlocal calls
        calls += 1
        raise TypeError("a bug, not an outage")

    with pytest.raises(TypeError):
        await connect_with_backoff(broken, Backoff(rng=random.Random(0)))
    assert calls == 1


async def test_cancelling_the_loop_mid_wait_leaves_nothing_behind(
    autojump_clock: trio.testing.MockClock,
) -> None:
    attempts = 0

    async def refuse() -> None:
        nonlocal attempts
        attempts += 1
        raise ConnectionRefusedError

    async with trio.open_nursery() as nursery:
        nursery.start_soon(connect_with_backoff, refuse, Backoff(rng=random.Random(9)))
        await trio.sleep(30.0)
        assert attempts > 1
        nursery.cancel_scope.cancel()
    seen = attempts
    await trio.sleep(600.0)
    assert attempts == seen  # the loop ended with its nursery


async def test_a_refusal_inside_a_group_is_transient_and_unwrapped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # A connect deadline that cancels a handshake just as its refusal arrives
    # leaves the refusal in a group once the deadline's scope took its
    # Cancelled out: still an outage, not a bug.
    seen: list[Exception] = []
    attempts = 0

    async def refused_then_up() -> str:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise ExceptionGroup("connect", [ExceptionGroup("inner", [ConnectionRefusedError()])])
        return "connected"

    backoff = Backoff(rng=random.Random(3))
    result = await connect_with_backoff(
        refused_then_up, backoff, on_failure=lambda attempt, exc: seen.append(exc)
    )
    assert result == "connected" and attempts == 3
    assert [type(exc) for exc in seen] == [ConnectionRefusedError, ConnectionRefusedError]
    assert is_transient_connect_error(ExceptionGroup("x", [OSError(), ConnectTimeout()]))
    assert not is_transient_connect_error(ExceptionGroup("x", [OSError(), TypeError()]))
    with pytest.raises(ExceptionGroup):
        await connect_with_backoff(
            functools.partial(_raise, ExceptionGroup("bug", [TypeError("a bug")])),
            Backoff(rng=random.Random(0)),
        )


async def _raise(exc: BaseException) -> None:
    raise exc


def test_without_transient_errors_keeps_what_is_not_a_failed_attempt() -> None:
    refused, interrupt = ConnectionRefusedError("nothing listens"), KeyboardInterrupt()
    assert without_transient_errors(refused) is None
    assert without_transient_errors(interrupt) is interrupt
    assert without_transient_errors(ExceptionGroup("connect", [refused])) is None
    rest = without_transient_errors(BaseExceptionGroup("connect", [interrupt, refused]))
    assert isinstance(rest, BaseExceptionGroup) and rest.exceptions == (interrupt,)
