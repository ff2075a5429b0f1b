"""A per-endpoint circuit breaker (sans-IO: time is passed in).

Theory of operation
-------------------
When an endpoint keeps failing, waiting on it again costs the caller a
timeout and the endpoint more load. The breaker counts *consecutive*
failures of calls sent to one endpoint::

    CLOSED --(failure_threshold consecutive failures)--> OPEN
    OPEN   --(cool_down elapsed)-----------------------> HALF_OPEN
    HALF_OPEN --(success_threshold trial successes)----> CLOSED
    HALF_OPEN --(a trial fails)------------------------> OPEN (a new cool-down)

An open circuit admits nothing: :meth:`CircuitBreaker.acquire` raises
:class:`CircuitOpen` at once (the client turns that into UNAVAILABLE, or
sends the call to another endpoint), and the balancer skips the endpoint.
A half-open circuit lets at most ``half_open_max_calls`` trial calls through
at a time; their outcome decides.

Every admission is a :class:`Permit`, and the outcome is reported on the
permit (:meth:`CircuitBreaker.record`), never on the breaker alone: a call
admitted before the circuit opened that fails later must not count as a
half-open trial, and a permit that is dropped (the caller cancelled) frees
its trial slot without counting either way. Permits from an older
*generation* (before the last state change) only count while CLOSED, where
consecutive failures are what matter.

What counts as a failure is the caller's call: transport failures
(connection lost, refused, connect timeout) and the statuses in
``CircuitPolicy.failure_statuses`` (UNAVAILABLE by default). An application
error such as INVALID_ARGUMENT says the endpoint is alive; report it as a
success. :meth:`CircuitPolicy.is_failure` makes that choice for a status.

The defaults follow the outlier detection of common proxies (Envoy ejects a
host after 5 consecutive errors); there is no gRPC equivalent in its
channel defaults.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field

from ...errors import GhostwireError
from ..status import Status

__all__ = [
    "UNAVAILABLE",
    "CircuitBreaker",
    "CircuitOpen",
    "CircuitPolicy",
    "CircuitState",
    "Permit",
]

#: The status a failed connection or an unreachable server gives a call.
UNAVAILABLE = Status.UNAVAILABLE


class CircuitState(enum.Enum):
    CLOSED = "CLOSED"
    OPEN = "OPEN"
    HALF_OPEN = "HALF_OPEN"


# The states as module globals: every call admits and records through
# them, and a global costs ~5 ns where an enum member lookup costs ~75
# (CPython 3.11, timeit).
_CLOSED = CircuitState.CLOSED
_OPEN = CircuitState.OPEN
_HALF_OPEN = CircuitState.HALF_OPEN


class CircuitOpen(GhostwireError):
    """The endpoint's circuit is open (or its half-open trials are all taken).

    ``retry_at`` is when the circuit half-opens (None while trials are in
    flight). The client reports this to callers as UNAVAILABLE.
    """

    def __init__(self, endpoint: str, retry_at: float | None) -> None:
        when = "" if retry_at is None else f"; it half-opens at t={retry_at:.3f}"
        super().__init__(f"circuit to {endpoint or 'the endpoint'} is open{when}")
        self.endpoint = endpoint
        self.retry_at = retry_at


@dataclass(frozen=True, slots=True)
class CircuitPolicy:
    """When a circuit opens, how long it stays open, how it closes again."""

    failure_threshold: int = 5
    cool_down: float = 10.0
    half_open_max_calls: int = 1
    success_threshold: int = 1
    failure_statuses: frozenset[int] = field(default_factory=lambda: frozenset({UNAVAILABLE}))

    def __post_init__(self) -> None:
        if self.failure_threshold < 1:
            raise ValueError(f"failure_threshold must be >= 1, got {self.failure_threshold}")
        if not self.cool_down >= 0:
            raise ValueError(f"cool_down must be >= 0, got {self.cool_down!r}")
        if self.half_open_max_calls < 1:
            raise ValueError(f"half_open_max_calls must be >= 1, got {self.half_open_max_calls}")
        if self.success_threshold < 1:
            raise ValueError(f"success_threshold must be >= 1, got {self.success_threshold}")

    def is_failure(self, status: int) -> bool:
        """Whether a call that ended with ``status`` counts against the endpoint."""
        return int(status) in self.failure_statuses


class Permit:
    """One admitted call. Report its outcome once, with
    :meth:`CircuitBreaker.record` (or drop it with :meth:`CircuitBreaker.release`)."""

    __slots__ = ("done", "generation", "trial")

    def __init__(self, generation: int, trial: bool) -> None:
        self.generation = generation
        self.trial = trial
        self.done = False

    def __repr__(self) -> str:
        kind = "trial" if self.trial else "call"
        return f"<Permit {kind} gen={self.generation}{' done' if self.done else ''}>"


class CircuitBreaker:
    """The circuit of one endpoint."""

    def __init__(self, policy: CircuitPolicy | None = None, *, endpoint: str = "") -> None:
        self.policy = policy if policy is not None else CircuitPolicy()
        self.endpoint = endpoint
        self._state = _CLOSED
        self._generation = 0
        self._consecutive_failures = 0
        self._opened_at = -math.inf
        self._trials_in_flight = 0
        self._trial_successes = 0
        self._times_opened = 0

    # -- reading -------------------------------------------------------------

    def state(self, now: float) -> CircuitState:
        """The state at ``now`` (an open circuit half-opens once its cool-down is over)."""
        if self._state is _OPEN and now >= self.half_open_at:
            self._move(_HALF_OPEN)
        return self._state

    @property
    def half_open_at(self) -> float:
        """When an open circuit half-opens (meaningless unless it is open)."""
        return self._opened_at + self.policy.cool_down

    @property
    def times_opened(self) -> int:
        """How often the circuit has opened (for metrics)."""
        return self._times_opened

    @property
    def consecutive_failures(self) -> int:
        return self._consecutive_failures

    def available(self, now: float) -> bool:
        """Whether :meth:`acquire` would admit a call at ``now``."""
        if self._state is _CLOSED:  # (only OPEN changes with time)
            return True
        state = self.state(now)
        if state is _OPEN:
            return False
        if state is _HALF_OPEN:
            return self._trials_in_flight < self.policy.half_open_max_calls
        return True

    # -- admitting -----------------------------------------------------------

    def acquire(self, now: float) -> Permit:
        """Admit one call at ``now`` or raise :class:`CircuitOpen` at once."""
        state = self._state
        if state is _OPEN:
            state = self.state(now)
        if state is _CLOSED:
            return Permit(self._generation, trial=False)
        if state is _HALF_OPEN:
            if self._trials_in_flight < self.policy.half_open_max_calls:
                self._trials_in_flight += 1
                return Permit(self._generation, trial=True)
            raise CircuitOpen(self.endpoint, None)
        raise CircuitOpen(self.endpoint, self.half_open_at)

    def record(self, permit: Permit, *, success: bool, now: float) -> None:
        """Report how the call behind ``permit`` went (once; later reports are ignored)."""
        if permit.done:
            return
        permit.done = True
        current = permit.generation == self._generation
        if permit.trial and current:
            self._trials_in_flight -= 1
        state = self._state
        if state is _OPEN:
            state = self.state(now)
        if success:
            if state is _CLOSED:
                self._consecutive_failures = 0
            elif state is _HALF_OPEN and permit.trial and current:
                self._trial_successes += 1
                if self._trial_successes >= self.policy.success_threshold:
                    self._move(_CLOSED)
            return
        if state is _CLOSED:
            self._consecutive_failures += 1
            if self._consecutive_failures >= self.policy.failure_threshold:
                self._open(now)
        elif state is _HALF_OPEN and permit.trial and current:
            self._open(now)

    def record_status(self, permit: Permit, status: int, *, now: float) -> None:
        """:meth:`record` with the policy deciding whether ``status`` is a failure."""
        self.record(permit, success=not self.policy.is_failure(status), now=now)

    def release(self, permit: Permit) -> None:
        """Drop ``permit`` without an outcome (the caller cancelled the call)."""
        if permit.done:
            return
        permit.done = True
        if permit.trial and permit.generation == self._generation:
            self._trials_in_flight -= 1

    def reset(self) -> None:
        """Close the circuit and forget the failures (a new connection, an operator)."""
        self._move(_CLOSED)

    # -- transitions ---------------------------------------------------------

    def _open(self, now: float) -> None:
        self._move(_OPEN)
        self._opened_at = now
        self._times_opened += 1

    def _move(self, new: CircuitState) -> None:
        self._state = new
        self._generation += 1
        self._consecutive_failures = 0
        self._trials_in_flight = 0
        self._trial_successes = 0

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self.endpoint!r} {self._state.name}>"
