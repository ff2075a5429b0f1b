"""The per-endpoint circuit breaker: open, fail fast, half-open, close."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from ghostwire.errors import GhostwireError
from ghostwire.rpc.resilience.circuit import (
    CircuitBreaker,
    CircuitOpen,
    CircuitPolicy,
    CircuitState,
)

UNAVAILABLE = 14
INVALID_ARGUMENT = 3
C = CircuitState


def _fail(breaker: CircuitBreaker, now: float, times: int = 1) -> None:
    for _ in range(times):
        breaker.record(breaker.acquire(now), success=False, now=now)


async def test_open_fail_fast_half_open_close_on_the_fake_clock(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A server that is down: five failures open the circuit; calls then fail at
    once (no waiting on the dead server) until the cool-down; one trial goes
    through half-open; its success closes the circuit."""
    policy = CircuitPolicy(failure_threshold=5, cool_down=10.0)
    breaker = CircuitBreaker(policy, endpoint="node-a:4433")
    server_up = False
    outcomes: list[tuple[float, str]] = []

    async def call() -> None:
        now = trio.current_time()
        try:
            permit = breaker.acquire(now)
        except CircuitOpen:
            outcomes.append((now, "fast-fail"))
            assert trio.current_time() == now  # failed without a single checkpoint
            return
        # A call to a dead server costs a 1 s timeout; to a live one, a little work.
        await trio.sleep(0.01 if server_up else 1.0)
        outcomes.append((trio.current_time(), "ok" if server_up else "timeout"))
        breaker.record_status(permit, 0 if server_up else UNAVAILABLE, now=trio.current_time())

    for _ in range(5):
        await call()
    assert [o for _, o in outcomes] == ["timeout"] * 5
    assert breaker.state(trio.current_time()) is C.OPEN
    opened_at = trio.current_time()
    assert breaker.half_open_at == pytest.approx(opened_at + 10.0)

    # Open: 100 calls within the cool-down fail at once, none reaches the server.
    outcomes.clear()
    for _ in range(100):
        await call()
        await trio.sleep(0.05)
    assert [o for _, o in outcomes] == ["fast-fail"] * 100
    assert trio.current_time() - opened_at == pytest.approx(5.0)

    # Half-open after the cool-down; the server came back meanwhile.
    await trio.sleep_until(opened_at + 10.0)
    server_up = True
    assert breaker.state(trio.current_time()) is C.HALF_OPEN
    outcomes.clear()
    async with trio.open_nursery() as nursery:
        for _ in range(3):  # three callers at once; the policy allows one trial
            nursery.start_soon(call)
    assert sorted(o for _, o in outcomes) == ["fast-fail", "fast-fail", "ok"]
    assert breaker.state(trio.current_time()) is C.CLOSED
    outcomes.clear()
    await call()
    assert outcomes[-1][1] == "ok"
    assert breaker.times_opened == 1


def test_a_failed_trial_reopens_for_a_new_cool_down() -> None:
    breaker = CircuitBreaker(CircuitPolicy(failure_threshold=2, cool_down=10.0))
    _fail(breaker, 0.0, times=2)
    assert breaker.state(9.99) is C.OPEN
    with pytest.raises(CircuitOpen) as info:
        breaker.acquire(9.99)
    assert info.value.retry_at == 10.0
    assert isinstance(info.value, GhostwireError)
    trial = breaker.acquire(10.0)
    assert trial.trial
    breaker.record(trial, success=False, now=10.5)
    assert breaker.state(10.5) is C.OPEN
    assert breaker.half_open_at == 20.5
    assert breaker.state(20.5) is C.HALF_OPEN
    assert breaker.times_opened == 2


def test_only_consecutive_failures_open_the_circuit() -> None:
    breaker = CircuitBreaker(CircuitPolicy(failure_threshold=3))
    for _ in range(10):
        _fail(breaker, 0.0, times=2)
        breaker.record(breaker.acquire(0.0), success=True, now=0.0)
    assert breaker.state(0.0) is C.CLOSED
    _fail(breaker, 0.0, times=3)
    assert breaker.state(0.0) is C.OPEN


def test_application_errors_do_not_count_against_the_endpoint() -> None:
    breaker = CircuitBreaker(CircuitPolicy(failure_threshold=1))
    breaker.record_status(breaker.acquire(0.0), INVALID_ARGUMENT, now=0.0)
    assert breaker.state(0.0) is C.CLOSED
    breaker.record_status(breaker.acquire(0.0), UNAVAILABLE, now=0.0)
    assert breaker.state(0.0) is C.OPEN


def test_half_open_admits_a_bounded_number_of_trials() -> None:
    policy = CircuitPolicy(failure_threshold=1, cool_down=1.0, half_open_max_calls=2,
                           success_threshold=2)  # fmt: skip
    breaker = CircuitBreaker(policy)
    _fail(breaker, 0.0)
    first, second = breaker.acquire(1.0), breaker.acquire(1.0)
    assert breaker.available(1.0) is False
    with pytest.raises(CircuitOpen) as info:
        breaker.acquire(1.0)
    assert info.value.retry_at is None  # not time-bound: trials are in flight
    # A trial the caller abandoned frees its slot without deciding anything.
    breaker.release(first)
    assert breaker.state(1.0) is C.HALF_OPEN
    third = breaker.acquire(1.0)
    breaker.record(second, success=True, now=1.1)
    assert breaker.state(1.1) is C.HALF_OPEN  # needs two successes
    breaker.record(third, success=True, now=1.2)
    assert breaker.state(1.2) is C.CLOSED


def test_late_outcomes_of_calls_admitted_before_the_circuit_opened() -> None:
    breaker = CircuitBreaker(CircuitPolicy(failure_threshold=2, cool_down=5.0))
    early_ok = breaker.acquire(0.0)
    early_fail = breaker.acquire(0.0)
    _fail(breaker, 0.0, times=2)
    assert breaker.state(0.0) is C.OPEN
    trial = breaker.acquire(5.0)
    # Neither decides the half-open trial: only the trial's own outcome does.
    breaker.record(early_ok, success=True, now=5.1)
    assert breaker.state(5.1) is C.HALF_OPEN
    breaker.record(early_fail, success=False, now=5.2)
    assert breaker.state(5.2) is C.HALF_OPEN
    breaker.record(trial, success=True, now=5.3)
    assert breaker.state(5.3) is C.CLOSED
    # A permit reports once; a second report is ignored.
    breaker.record(trial, success=False, now=5.4)
    assert breaker.consecutive_failures == 0


def test_reset_closes_the_circuit() -> None:
    breaker = CircuitBreaker(CircuitPolicy(failure_threshold=1, cool_down=60.0))
    _fail(breaker, 0.0)
    assert not breaker.available(1.0)
    breaker.reset()
    assert breaker.available(1.0)
    assert breaker.state(1.0) is C.CLOSED


@pytest.mark.parametrize(
    "kwargs",
    [
        {"failure_threshold": 0},
        {"cool_down": -1.0},
        {"half_open_max_calls": 0},
        {"success_threshold": 0},
    ],
)
def test_nonsense_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        CircuitPolicy(**kwargs)  # type: ignore[arg-type]
