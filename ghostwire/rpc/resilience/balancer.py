"""Choosing an endpoint for each call: ``least_outstanding`` and ``round_robin``.

Theory of operation
-------------------
A client holds one :class:`EndpointHandle` per endpoint (``"node-a:4433"``):
its connectivity :class:`~.states.StateHolder`, its
:class:`~.circuit.CircuitBreaker`, its last health answer and the number of
calls outstanding on it. An endpoint is *up* when all three agree::

    state is READY  and  its circuit admits a call  and  health is not NOT_SERVING

A health of UNKNOWN (not checked yet, or the server has no health service)
counts as up: only an explicit NOT_SERVING takes an endpoint out.

:meth:`Balancer.pick` chooses among the endpoints that are up and returns a
:class:`Lease`: it holds the circuit's permit and one unit of the
endpoint's outstanding count until the call ends. Report the outcome on the
lease (``record`` / ``record_status``), or let the ``with`` block end, which
releases it without an outcome (a cancelled call). Either way the count goes
down exactly once.

* ``least_outstanding`` (the default): the endpoint with the fewest calls
  outstanding; ties are broken in rotation, so an idle pool still spreads.
  A slow or distant endpoint accumulates outstanding calls and so gets fewer
  new ones, which plain rotation cannot do.
* ``round_robin``: the next endpoint that is up, in order (gRPC's
  ``round_robin`` over READY subchannels).

``avoid`` lets a retry prefer another endpoint than the one that just
failed; if no other endpoint is up, an avoided one is still used.

Sans-IO: time is passed in (the circuit's cool-down needs it). When nothing is
up, :meth:`Balancer.pick` returns None and the caller decides: wait for a
state change (``wait_for_ready``), or fail with UNAVAILABLE at once.
:meth:`Balancer.next_half_open_at` says when an open circuit will let a trial
through, so that wait can be bounded without polling.
"""

from __future__ import annotations

import abc
from collections.abc import Collection, Iterable, Sequence
from types import TracebackType

from .circuit import CircuitBreaker, CircuitOpen, CircuitState, Permit
from .states import ConnectivityState, ServingStatus, StateHolder

__all__ = [
    "BALANCERS",
    "Balancer",
    "EndpointHandle",
    "Lease",
    "LeastOutstanding",
    "RoundRobin",
    "make_balancer",
]

# Read for every call (is_up): module globals cost ~5 ns where an enum
# member lookup costs ~75 (CPython 3.11, timeit).
_READY = ConnectivityState.READY
_NOT_SERVING = ServingStatus.NOT_SERVING


class EndpointHandle:
    """What the balancer knows of one endpoint. The pool owns it and updates
    ``serving`` from health checks; the state holder and breaker are shared
    with the endpoint's supervisor."""

    def __init__(
        self,
        address: str,
        *,
        state: StateHolder | None = None,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.address = address
        self.state = state if state is not None else StateHolder()
        self.breaker = breaker if breaker is not None else CircuitBreaker(endpoint=address)
        self.serving = ServingStatus.UNKNOWN
        self._outstanding = 0

    @property
    def outstanding(self) -> int:
        """Calls picked onto this endpoint that have not ended yet."""
        return self._outstanding

    def is_up(self, now: float) -> bool:
        return (
            self.state.state is _READY
            and self.serving is not _NOT_SERVING
            and self.breaker.available(now)
        )

    def __repr__(self) -> str:
        return (
            f"<EndpointHandle {self.address} {self.state.state.name} "
            f"serving={self.serving.name} outstanding={self._outstanding}>"
        )


class Lease:
    """One call on one endpoint, from :meth:`Balancer.pick` to its end."""

    __slots__ = ("_ended", "endpoint", "permit")

    def __init__(self, endpoint: EndpointHandle, permit: Permit) -> None:
        self.endpoint = endpoint
        self.permit = permit
        self._ended = False
        endpoint._outstanding += 1

    @property
    def ended(self) -> bool:
        return self._ended

    def record(self, *, success: bool, now: float) -> None:
        """The call ended; ``success=False`` counts against the endpoint's circuit."""
        if self._end():
            self.endpoint.breaker.record(self.permit, success=success, now=now)

    def record_status(self, status: int, *, now: float) -> None:
        """The call ended with ``status``; the circuit policy decides if that is a failure."""
        if self._end():
            self.endpoint.breaker.record_status(self.permit, status, now=now)

    def release(self) -> None:
        """The call ended without an outcome (cancelled): nothing counts either way."""
        if self._end():
            self.endpoint.breaker.release(self.permit)

    def _end(self) -> bool:
        if self._ended:
            return False
        self._ended = True
        self.endpoint._outstanding -= 1
        return True

    def __enter__(self) -> Lease:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"<Lease {self.endpoint.address}{' ended' if self._ended else ''}>"


class Balancer(abc.ABC):
    """Picks an endpoint that is up for each call. Subclasses choose how."""

    name: str = ""

    def __init__(self, endpoints: Iterable[EndpointHandle] = ()) -> None:
        self._endpoints: list[EndpointHandle] = []
        self._rotation = 0
        for endpoint in endpoints:
            self.add(endpoint)

    @property
    def endpoints(self) -> tuple[EndpointHandle, ...]:
        return tuple(self._endpoints)

    def add(self, endpoint: EndpointHandle) -> None:
        if any(e.address == endpoint.address for e in self._endpoints):
            raise ValueError(f"endpoint {endpoint.address!r} is already in the balancer")
        self._endpoints.append(endpoint)

    def remove(self, address: str) -> EndpointHandle:
        """Take an endpoint out (its leases stay valid and still end normally)."""
        for index, endpoint in enumerate(self._endpoints):
            if endpoint.address == address:
                del self._endpoints[index]
                return endpoint
        raise KeyError(address)

    def up(self, now: float) -> list[EndpointHandle]:
        """The endpoints a call may go to at ``now``, in their order."""
        return [e for e in self._endpoints if e.is_up(now)]

    def pick(self, now: float, *, avoid: Collection[str] = ()) -> Lease | None:
        """Lease an endpoint for one call, or None if no endpoint is up."""
        candidates = [e for e in self._endpoints if e.is_up(now)]  # self.up(now)
        pool = candidates
        if avoid:
            pool = [e for e in candidates if e.address not in avoid] or candidates
        while pool:
            endpoint = self._choose(pool)
            try:
                permit = endpoint.breaker.acquire(now)
            except CircuitOpen:  # pragma: no cover - is_up() checked availability
                pool = [e for e in pool if e is not endpoint]
                continue
            return Lease(endpoint, permit)
        return None

    def next_half_open_at(self, now: float) -> float | None:
        """The earliest time an open circuit of a READY endpoint half-opens, if any."""
        times = [
            e.breaker.half_open_at
            for e in self._endpoints
            if e.state.state is ConnectivityState.READY
            and e.breaker.state(now) is CircuitState.OPEN
        ]
        return min(times, default=None)

    @abc.abstractmethod
    def _choose(self, candidates: Sequence[EndpointHandle]) -> EndpointHandle:
        """One of ``candidates`` (never empty, all up)."""


class LeastOutstanding(Balancer):
    """The endpoint with the fewest calls outstanding; ties in rotation."""

    name = "least_outstanding"

    def _choose(self, candidates: Sequence[EndpointHandle]) -> EndpointHandle:
        count = len(candidates)
        start = self._rotation % count
        self._rotation += 1
        best = candidates[start]
        for offset in range(1, count):
            endpoint = candidates[(start + offset) % count]
            if endpoint.outstanding < best.outstanding:
                best = endpoint
        return best


class RoundRobin(Balancer):
    """The next endpoint that is up, in the order the endpoints were added."""

    name = "round_robin"

    def _choose(self, candidates: Sequence[EndpointHandle]) -> EndpointHandle:
        # Walk the full endpoint list from where the last pick stopped, so the
        # rotation does not jump when an endpoint goes down and comes back.
        allowed = {id(e) for e in candidates}
        total = len(self._endpoints)
        for offset in range(total):
            index = (self._rotation + offset) % total
            endpoint = self._endpoints[index]
            if id(endpoint) in allowed:
                self._rotation = index + 1
                return endpoint
        # The candidates are not (any more) in the list: rotate over them alone.
        endpoint = candidates[self._rotation % len(candidates)]
        self._rotation += 1
        return endpoint


BALANCERS: dict[str, type[Balancer]] = {
    LeastOutstanding.name: LeastOutstanding,
    RoundRobin.name: RoundRobin,
}


def make_balancer(
    name: str = "least_outstanding", endpoints: Iterable[EndpointHandle] = ()
) -> Balancer:
    """A balancer by policy name: ``"least_outstanding"`` (default) or ``"round_robin"``."""
    try:
        cls = BALANCERS[name]
    except KeyError:
        raise ValueError(
            f"unknown balancing policy {name!r}; choose one of {', '.join(sorted(BALANCERS))}"
        ) from None
    return cls(endpoints)
