"""Retries: only where safe, bounded by attempts, the deadline and gRPC's token budget."""

from __future__ import annotations

import random

import pytest
import trio
import trio.testing

from ghostwire.errors import GhostwireError
from ghostwire.rpc.resilience.backoff import BackoffPolicy
from ghostwire.rpc.resilience.retry import (
    CallRetryState,
    GiveUp,
    RetryPolicy,
    RetryThrottle,
)
from ghostwire.rpc.resilience.runners import AttemptFailure, call_with_retries

UNAVAILABLE = 14
INVALID_ARGUMENT = 3
INTERNAL = 13


class FakeRpcError(GhostwireError):
    """Stands in for rpc.RpcError: a status, and whether the server began the call."""

    def __init__(self, status: int, *, server_started: bool = True) -> None:
        super().__init__(f"status {status}")
        self.status = status
        self.server_started = server_started


def classify(exc: Exception) -> AttemptFailure | None:
    if isinstance(exc, FakeRpcError):
        return AttemptFailure(exc.status, exc.server_started)
    return None


# -- the throttle ----------------------------------------------------------------


def test_throttle_follows_grpc_token_accounting() -> None:
    throttle = RetryThrottle(max_tokens=10, token_ratio=0.1)
    assert throttle.tokens == 10 and throttle.retry_allowed()
    for _ in range(4):
        throttle.record_failure()
    assert throttle.tokens == 6 and throttle.retry_allowed()
    throttle.record_failure()
    assert throttle.tokens == 5
    assert not throttle.retry_allowed()  # retries need tokens > max / 2, strictly
    # Ten successes at 0.1 add exactly one token (no float drift).
    for _ in range(10):
        throttle.record_success()
    assert throttle.tokens == 6.0 and throttle.retry_allowed()
    for _ in range(100):
        throttle.record_failure()
    assert throttle.tokens == 0  # floor at zero
    for _ in range(1000):
        throttle.record_success()
    assert throttle.tokens == 10  # capped at max_tokens


@pytest.mark.parametrize("kwargs", [{"max_tokens": 0}, {"max_tokens": 1001}, {"token_ratio": 0}])
def test_throttle_refuses_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryThrottle(**kwargs)


# -- what is safe to retry ------------------------------------------------------


def test_retry_safety() -> None:
    policy = RetryPolicy()
    # Idempotent and a retryable status: safe.
    assert policy.retry_safe(UNAVAILABLE, idempotent=True, server_started=True)
    # Not idempotent and the server may have run it: never.
    assert not policy.retry_safe(UNAVAILABLE, idempotent=False, server_started=True)
    # Idempotent but the status is the application's final answer: no.
    assert not policy.retry_safe(INVALID_ARGUMENT, idempotent=True, server_started=True)
    # The server provably never started it: safe whatever the method.
    assert policy.retry_safe(UNAVAILABLE, idempotent=False, server_started=False)
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=6)  # gRPC caps maxAttempts at 5


def test_decisions_and_their_reasons() -> None:
    rng = random.Random(1)
    state = CallRetryState(RetryPolicy(max_attempts=3), None, idempotent=True, rng=rng)
    state.begin_attempt()
    first = state.on_failure(UNAVAILABLE, server_started=True, now=100.0)
    assert first.retry and first.retry_at is not None
    assert 100.0 <= first.retry_at <= 100.1  # full jitter under the 0.1 s initial backoff
    state.begin_attempt()
    assert state.on_failure(UNAVAILABLE, server_started=True, now=101.0).retry
    state.begin_attempt()
    last = state.on_failure(UNAVAILABLE, server_started=True, now=102.0)
    assert (last.retry, last.give_up) == (False, GiveUp.MAX_ATTEMPTS)

    unsafe = CallRetryState(RetryPolicy(), None, idempotent=False)
    unsafe.begin_attempt()
    assert unsafe.on_failure(UNAVAILABLE, server_started=True, now=0.0).give_up is (
        GiveUp.NOT_RETRY_SAFE
    )

    near_deadline = CallRetryState(RetryPolicy(), None, idempotent=True, deadline=10.0)
    near_deadline.begin_attempt()
    assert near_deadline.on_failure(UNAVAILABLE, server_started=True, now=10.0).give_up is (
        GiveUp.DEADLINE
    )


def test_only_retryable_failures_drain_the_budget() -> None:
    throttle = RetryThrottle(max_tokens=4, token_ratio=1)
    state = CallRetryState(RetryPolicy(), throttle, idempotent=True)
    state.begin_attempt()
    state.on_failure(INVALID_ARGUMENT, server_started=True, now=0.0)
    assert throttle.tokens == 4
    state.on_failure(UNAVAILABLE, server_started=True, now=0.0)
    state.on_failure(INTERNAL, server_started=False, now=0.0)  # never reached the server
    assert throttle.tokens == 2
    state.on_success()
    assert throttle.tokens == 3


# -- the loop on trio's clock ---------------------------------------------------


async def test_an_idempotent_call_survives_a_blip(autojump_clock: trio.testing.MockClock) -> None:
    attempts: list[tuple[int, float]] = []

    async def attempt(number: int) -> str:
        attempts.append((number, trio.current_time()))
        if number < 3:
            raise FakeRpcError(UNAVAILABLE)
        return "balance: 10**30"

    state = CallRetryState(RetryPolicy(), RetryThrottle(), idempotent=True, rng=random.Random(4))
    assert await call_with_retries(attempt, state, classify) == "balance: 10**30"
    assert [n for n, _ in attempts] == [1, 2, 3]
    # Waits grow under the policy's ceilings: 0.1 s, then 0.2 s.
    (_, t1), (_, t2), (_, t3) = attempts
    assert 0 <= t2 - t1 <= 0.1 and 0 <= t3 - t2 <= 0.2


async def test_a_call_that_may_have_run_is_not_repeated(
    autojump_clock: trio.testing.MockClock,
) -> None:
    attempts = 0

    async def transfer(number: int) -> None:
        nonlocal attempts
        attempts += 1
        raise FakeRpcError(UNAVAILABLE)  # the connection broke after the server got it

    state = CallRetryState(RetryPolicy(), RetryThrottle(), idempotent=False)
    with pytest.raises(FakeRpcError) as info:
        await call_with_retries(transfer, state, classify)
    assert info.value.status == UNAVAILABLE
    assert attempts == 1


async def test_a_refused_call_is_retried_even_if_not_idempotent(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def transfer(number: int) -> str:
        if number == 1:
            raise FakeRpcError(UNAVAILABLE, server_started=False)  # refused stream / GOAWAY
        return "sent"

    state = CallRetryState(RetryPolicy(), RetryThrottle(), idempotent=False)
    assert await call_with_retries(transfer, state, classify) == "sent"


class Ceiling:
    """A "random" source that always waits the longest allowed: a fixed schedule."""

    def uniform(self, a: float, b: float) -> float:
        return b


async def test_the_callers_deadline_bounds_all_attempts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    times: list[float] = []

    async def slow_failure(number: int) -> None:
        times.append(trio.current_time())
        await trio.sleep(0.1)
        raise FakeRpcError(UNAVAILABLE)

    fixed = BackoffPolicy(initial=0.2, multiplier=1.0, max_backoff=0.2, min_connect_timeout=0)
    state = CallRetryState(
        RetryPolicy(max_attempts=5, backoff=fixed), RetryThrottle(), idempotent=True, rng=Ceiling()
    )
    start = trio.current_time()
    with trio.move_on_after(0.5) as scope:
        with pytest.raises(FakeRpcError):
            await call_with_retries(slow_failure, state, classify)
    # The deadline came from the caller's cancel scope. Attempt 2 fails at 0.4;
    # a third would start at 0.6, past the deadline, so the call gives up at
    # once with the last error instead of waiting to be cancelled.
    assert state.deadline == pytest.approx(start + 0.5)
    assert times == pytest.approx([start, start + 0.3])
    assert not scope.cancelled_caught
    assert trio.current_time() == pytest.approx(start + 0.4)


async def test_other_exceptions_are_not_retried(autojump_clock: trio.testing.MockClock) -> None:
    async def bug(number: int) -> None:
        raise KeyError("not an RPC failure")

    state = CallRetryState(RetryPolicy(), RetryThrottle(), idempotent=True)
    with pytest.raises(KeyError):
        await call_with_retries(bug, state, classify)
    assert state.attempts == 1


async def test_a_retry_storm_is_prevented_by_the_budget(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An outage under load: 500 idempotent calls from 50 concurrent callers to
    a server that answers UNAVAILABLE to everything. Without a budget every
    call is sent max_attempts times (load x5 on a server that is already
    down); with gRPC's throttle the retries stop after a handful of failures,
    and after recovery successes refill the bucket so retries resume."""
    policy = RetryPolicy(max_attempts=5)
    calls = 500

    async def run(throttle: RetryThrottle | None, server_up: bool) -> int:
        sent = 0

        async def attempt(number: int) -> str:
            nonlocal sent
            sent += 1
            await trio.sleep(0.01)
            if not server_up:
                raise FakeRpcError(UNAVAILABLE)
            return "ok"

        async def caller(index: int) -> None:
            for _ in range(calls // 50):
                state = CallRetryState(policy, throttle, idempotent=True, rng=random.Random(index))
                try:
                    await call_with_retries(attempt, state, classify)
                except FakeRpcError:
                    pass

        async with trio.open_nursery() as nursery:
            for index in range(50):
                nursery.start_soon(caller, index)
        return sent

    unthrottled = await run(None, server_up=False)
    assert unthrottled == calls * 5

    throttle = RetryThrottle(max_tokens=10, token_ratio=0.1)
    throttled = await run(throttle, server_up=False)
    # Only the tokens above half the bucket pay for retries: at most 5 here.
    assert calls <= throttled <= calls + 5
    assert not throttle.retry_allowed()

    # Recovery: successes give back 0.1 token each, so retries are allowed again.
    await run(throttle, server_up=True)
    assert throttle.retry_allowed()

    # The default budget (100 tokens) pays for at most 50 retries in an outage.
    default = RetryThrottle()
    assert calls <= await run(default, server_up=False) <= calls + 50
