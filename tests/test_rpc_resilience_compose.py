"""The pieces composed as the client's pool will compose them, over simulated
endpoints on trio's fake clock: one of two endpoints dies under load."""

from __future__ import annotations

import random

import trio
import trio.testing

from ghostwire.errors import GhostwireError
from ghostwire.rpc.resilience.balancer import EndpointHandle, make_balancer
from ghostwire.rpc.resilience.metrics import ClientMetrics
from ghostwire.rpc.resilience.retry import CallRetryState, RetryPolicy, RetryThrottle
from ghostwire.rpc.resilience.runners import AttemptFailure, call_with_retries
from ghostwire.rpc.resilience.states import ConnectivityState

S = ConnectivityState
OK = 0
UNAVAILABLE = 14


class CallFailed(GhostwireError):
    def __init__(self, status: int, *, server_started: bool) -> None:
        super().__init__(f"status {status}")
        self.status = status
        self.server_started = server_started


def classify(exc: Exception) -> AttemptFailure | None:
    if isinstance(exc, CallFailed):
        return AttemptFailure(exc.status, exc.server_started)
    return None


async def test_one_of_two_endpoints_killed_under_load(
    autojump_clock: trio.testing.MockClock,
) -> None:
    endpoints = [EndpointHandle("a:1"), EndpointHandle("b:1")]
    for endpoint in endpoints:
        endpoint.state.set(S.CONNECTING)
        endpoint.state.set(S.READY)
    balancer = make_balancer("least_outstanding", endpoints)
    throttle = RetryThrottle()
    metrics = ClientMetrics([e.address for e in endpoints])
    killed = trio.Event()
    executed: list[tuple[str, str]] = []  # (call id, endpoint) the server really ran

    async def serve(endpoint: EndpointHandle, call_id: str) -> str:
        """A server: 50 ms per call; endpoint a dies mid-call when ``killed`` is set."""
        if endpoint.address == "a:1":
            with trio.move_on_after(0.05):
                await killed.wait()
                # The connection broke under the call: the server may have run it.
                endpoint.state.set(S.TRANSIENT_FAILURE)
                raise CallFailed(UNAVAILABLE, server_started=True)
        else:
            await trio.sleep(0.05)
        executed.append((call_id, endpoint.address))
        return f"{call_id}@{endpoint.address}"

    async def call(call_id: str, *, idempotent: bool) -> str:
        tried: set[str] = set()
        record = metrics.method("zvm.call")

        async def attempt(number: int) -> str:
            lease = balancer.pick(trio.current_time(), avoid=tried)
            if lease is None:  # nothing up: the call never left the client
                raise CallFailed(UNAVAILABLE, server_started=False)
            with lease:
                tried.add(lease.endpoint.address)
                try:
                    result = await serve(lease.endpoint, call_id)
                except CallFailed as exc:
                    lease.record_status(exc.status, now=trio.current_time())
                    raise
                lease.record_status(OK, now=trio.current_time())
                return result

        state = CallRetryState(
            RetryPolicy(), throttle, idempotent=idempotent, rng=random.Random(call_id)
        )
        start = trio.current_time()
        record.started()
        try:
            result = await call_with_retries(attempt, state, classify)
        except CallFailed as exc:
            record.finished(exc.status, trio.current_time() - start)
            raise
        record.finished(OK, trio.current_time() - start)
        return result

    outcomes: dict[str, str | int] = {}

    async def caller(index: int) -> None:
        for n in range(10):
            call_id = f"{index}.{n}"
            idempotent = index % 2 == 0
            try:
                outcomes[call_id] = await call(call_id, idempotent=idempotent)
            except CallFailed as exc:
                outcomes[call_id] = exc.status

    with trio.fail_after(60):  # nothing hangs
        async with trio.open_nursery() as nursery:
            for index in range(20):
                nursery.start_soon(caller, index)
            await trio.sleep(0.12)  # mid-way through the load
            killed.set()

    assert len(outcomes) == 200
    idempotent = {k: v for k, v in outcomes.items() if int(k.split(".")[0]) % 2 == 0}
    others = {k: v for k, v in outcomes.items() if k not in idempotent}
    # Every idempotent call succeeded (retried on b when a died under it).
    assert all(isinstance(v, str) for v in idempotent.values())
    # Non-idempotent calls that were on a when it died failed with UNAVAILABLE;
    # they are the only failures, and each of them was never run twice.
    failed = {k for k, v in others.items() if v == UNAVAILABLE}
    assert failed and all(v == UNAVAILABLE or isinstance(v, str) for v in others.values())
    runs = [call_id for call_id, _ in executed]
    assert len(runs) == len(set(runs))  # no call ran twice
    assert not failed & set(runs)  # in this simulation a's calls died before running
    # After the kill everything went to b.
    assert endpoints[0].state.state is S.TRANSIENT_FAILURE
    assert endpoints[0].outstanding == endpoints[1].outstanding == 0
    snap = metrics.snapshot().methods["zvm.call"]
    assert snap.calls == 200 and snap.in_flight == 0
    assert snap.errors == {"14": len(failed)}
