"""Balancing over the endpoints that are up, with outstanding-call accounting."""

from __future__ import annotations

from collections import Counter

import pytest

from ghostwire.rpc.resilience.balancer import (
    EndpointHandle,
    Lease,
    LeastOutstanding,
    RoundRobin,
    make_balancer,
)
from ghostwire.rpc.resilience.circuit import CircuitBreaker, CircuitPolicy, CircuitState
from ghostwire.rpc.resilience.states import ConnectivityState, ServingStatus

S = ConnectivityState
UNAVAILABLE = 14


def ready(address: str, breaker: CircuitBreaker | None = None) -> EndpointHandle:
    endpoint = EndpointHandle(address, breaker=breaker)
    endpoint.state.set(S.CONNECTING)
    endpoint.state.set(S.READY)
    return endpoint


def addresses(leases: list[Lease | None]) -> list[str]:
    return [lease.endpoint.address for lease in leases if lease is not None]


def test_default_policy_is_least_outstanding() -> None:
    assert isinstance(make_balancer(), LeastOutstanding)
    assert isinstance(make_balancer("round_robin"), RoundRobin)
    with pytest.raises(ValueError, match="least_outstanding, round_robin"):
        make_balancer("pick_first")


def test_round_robin_rotates_over_the_endpoints_that_are_up() -> None:
    a, b, c = ready("a:1"), ready("b:1"), ready("c:1")
    balancer = RoundRobin([a, b, c])
    leases = [balancer.pick(0.0) for _ in range(6)]
    assert addresses(leases) == ["a:1", "b:1", "c:1"] * 2
    b.state.set(S.TRANSIENT_FAILURE)
    assert addresses([balancer.pick(0.0) for _ in range(4)]) == ["a:1", "c:1"] * 2
    b.state.set(S.CONNECTING)
    b.state.set(S.READY)
    assert addresses([balancer.pick(0.0) for _ in range(3)]) == ["a:1", "b:1", "c:1"]


def test_least_outstanding_prefers_the_least_loaded_endpoint() -> None:
    a, b, c = ready("a:1"), ready("b:1"), ready("c:1")
    balancer = LeastOutstanding([a, b, c])
    held = [balancer.pick(0.0) for _ in range(3)]
    assert sorted(addresses(held)) == ["a:1", "b:1", "c:1"]  # ties spread in rotation
    assert (a.outstanding, b.outstanding, c.outstanding) == (1, 1, 1)
    # b is slow: its calls stay outstanding while the others finish.
    slow = [lease for lease in held if lease is not None and lease.endpoint is b]
    for lease in held:
        if lease is not None and lease.endpoint is not b:
            lease.record(success=True, now=0.0)
    picks = [balancer.pick(0.0) for _ in range(4)]
    assert Counter(addresses(picks)) == {"a:1": 2, "c:1": 2}
    assert b.outstanding == len(slow) == 1


def test_an_idle_least_outstanding_pool_still_spreads() -> None:
    endpoints = [ready(f"n{i}:1") for i in range(3)]
    balancer = LeastOutstanding(endpoints)
    seen: Counter[str] = Counter()
    for _ in range(30):
        lease = balancer.pick(0.0)
        assert lease is not None
        seen[lease.endpoint.address] += 1
        lease.record(success=True, now=0.0)
    assert seen == {"n0:1": 10, "n1:1": 10, "n2:1": 10}


@pytest.mark.parametrize("policy", ["least_outstanding", "round_robin"])
def test_down_endpoints_are_skipped(policy: str) -> None:
    connecting = EndpointHandle("connecting:1")
    connecting.state.set(S.CONNECTING)
    not_serving = ready("draining:1")
    not_serving.serving = ServingStatus.NOT_SERVING
    tripped = ready("tripped:1", breaker=CircuitBreaker(CircuitPolicy(failure_threshold=1)))
    tripped.breaker.record(tripped.breaker.acquire(0.0), success=False, now=0.0)
    unknown_health = ready("fresh:1")  # not checked yet: UNKNOWN counts as up
    idle = EndpointHandle("idle:1")
    balancer = make_balancer(policy, [connecting, not_serving, tripped, idle, unknown_health])
    assert [e.address for e in balancer.up(1.0)] == ["fresh:1"]
    assert set(addresses([balancer.pick(1.0) for _ in range(5)])) == {"fresh:1"}
    unknown_health.state.set(S.IDLE)  # GOAWAY
    assert balancer.pick(1.0) is None


def test_leases_count_outstanding_calls_exactly_once() -> None:
    a = ready("a:1")
    balancer = LeastOutstanding([a])
    with balancer.pick(0.0) as lease:  # type: ignore[union-attr]
        assert a.outstanding == 1
        lease.record_status(UNAVAILABLE, now=0.0)
        assert a.outstanding == 0
        lease.release()  # a second end changes nothing
        assert lease.ended
    assert a.outstanding == 0
    assert a.breaker.consecutive_failures == 1
    # A call cancelled inside the block: released, and it does not count as a failure.
    with pytest.raises(KeyError):
        with balancer.pick(0.0):  # type: ignore[union-attr]
            assert a.outstanding == 1
            raise KeyError("cancelled")
    assert a.outstanding == 0
    assert a.breaker.consecutive_failures == 1


def test_a_retry_avoids_the_endpoint_that_failed_when_it_can() -> None:
    a, b = ready("a:1"), ready("b:1")
    balancer = RoundRobin([a, b])
    assert addresses([balancer.pick(0.0, avoid={"a:1"}) for _ in range(3)]) == ["b:1"] * 3
    b.state.set(S.TRANSIENT_FAILURE)
    # Nothing else is up: the avoided endpoint is better than failing.
    assert addresses([balancer.pick(0.0, avoid={"a:1"})]) == ["a:1"]


def test_half_open_endpoints_take_bounded_trials_and_open_ones_report_when() -> None:
    policy = CircuitPolicy(failure_threshold=1, cool_down=10.0, half_open_max_calls=1)
    a = ready("a:1", breaker=CircuitBreaker(policy))
    b = ready("b:1")
    balancer = LeastOutstanding([a, b])
    a.breaker.record(a.breaker.acquire(0.0), success=False, now=0.0)
    assert balancer.next_half_open_at(5.0) == 10.0
    b.state.set(S.TRANSIENT_FAILURE)
    assert balancer.pick(5.0) is None  # a is open, b is down: fail fast or wait until 10.0
    trial = balancer.pick(10.0)
    assert trial is not None and trial.permit.trial
    assert balancer.pick(10.0) is None  # the one trial is in flight
    trial.record(success=True, now=10.2)
    assert a.breaker.state(10.2) is CircuitState.CLOSED
    assert balancer.next_half_open_at(10.2) is None
    assert addresses([balancer.pick(10.2)]) == ["a:1"]


def test_endpoints_come_and_go() -> None:
    a, b = ready("a:1"), ready("b:1")
    balancer = RoundRobin([a])
    balancer.add(b)
    with pytest.raises(ValueError):
        balancer.add(ready("a:1"))
    lease = balancer.pick(0.0)
    assert lease is not None and lease.endpoint is a
    assert balancer.remove("a:1") is a
    lease.record(success=True, now=0.0)  # a lease outlives its endpoint's removal
    assert a.outstanding == 0
    assert addresses([balancer.pick(0.0) for _ in range(2)]) == ["b:1", "b:1"]
    with pytest.raises(KeyError):
        balancer.remove("a:1")
