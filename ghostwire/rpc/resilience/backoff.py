"""Capped exponential backoff with full jitter (sans-IO: time is passed in).

Theory of operation
-------------------
A client that lost its connection must reconnect without hammering a server
that is down, and a thousand clients that lost the same server at the same
moment must not come back in lockstep. gRPC's answer (``doc/connection-
backoff.md``) is an exponentially growing wait with a cap and a minimum time
to let one connection attempt finish; we keep its numbers and use *full
jitter* for the wait::

    ceiling(n) = min(initial * multiplier ** n, max_backoff)     n = 0, 1, 2, ...
    wait(n)    = uniform(0, ceiling(n))

gRPC's connection backoff jitters by +-20 % around the ceiling; its retry
backoff (proposal A6) already uses ``random(0, min(initial * mult^(n-1), max))``,
which is what we use for both. Full jitter spreads a crowd of clients over the
whole window, so a restarted server sees a ramp, not a wall.

One connection attempt is planned at a time with :meth:`Backoff.plan`: it
gives the attempt's connect deadline and the earliest time the next attempt
may start. As in gRPC, the attempt may run for
``max(wait, min_connect_timeout)`` so a slow handshake is not cut short just
because the backoff happens to be small, and a failed attempt is followed by
the next one no earlier than ``start + wait``. :meth:`Backoff.reset` starts
over after a connection succeeded.

The random source is injectable (any object with ``uniform(a, b)``, such as
:class:`random.Random`) so tests see a reproducible schedule.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "DEFAULT_CONNECT_BACKOFF",
    "Backoff",
    "BackoffPolicy",
    "ConnectAttempt",
    "RandomSource",
]


class RandomSource(Protocol):
    """What the backoff needs from a random generator (``random.Random`` fits)."""

    def uniform(self, a: float, b: float) -> float: ...


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    """The numbers behind a backoff schedule. All times are in seconds.

    The defaults are gRPC's connection-backoff defaults
    (``doc/connection-backoff.md``): INITIAL_BACKOFF 1 s, MULTIPLIER 1.6,
    MAX_BACKOFF 120 s, MIN_CONNECT_TIMEOUT 20 s. gRPC jitters by +-20 %; we use
    full jitter (see the module docstring).
    """

    initial: float = 1.0
    multiplier: float = 1.6
    max_backoff: float = 120.0
    min_connect_timeout: float = 20.0

    def __post_init__(self) -> None:
        if not self.initial > 0:
            raise ValueError(f"initial backoff must be > 0, got {self.initial!r}")
        if not self.multiplier >= 1:
            raise ValueError(f"backoff multiplier must be >= 1, got {self.multiplier!r}")
        if not self.max_backoff >= self.initial:
            raise ValueError(
                f"max_backoff ({self.max_backoff!r}) must be >= initial ({self.initial!r})"
            )
        if not self.min_connect_timeout >= 0:
            raise ValueError(f"min_connect_timeout must be >= 0, got {self.min_connect_timeout!r}")

    def ceiling(self, failures: int) -> float:
        """The largest wait after ``failures`` consecutive failures (0-based)."""
        if failures < 0:
            raise ValueError(f"failures must be >= 0, got {failures}")
        # Compare exponents rather than compute a huge power: after a few
        # hundred failures multiplier ** n overflows a float.
        wait = self.initial
        for _ in range(failures):
            wait *= self.multiplier
            if wait >= self.max_backoff:
                return self.max_backoff
        return min(wait, self.max_backoff)


DEFAULT_CONNECT_BACKOFF = BackoffPolicy()


@dataclass(frozen=True, slots=True)
class ConnectAttempt:
    """One planned connection attempt.

    ``start``: when it begins; ``connect_deadline``: give up on it then
    (``start + max(wait, min_connect_timeout)``); ``retry_at``: the earliest
    start of the next attempt if this one fails (``start + wait``);
    ``failures``: consecutive failures before this attempt.
    """

    start: float
    connect_deadline: float
    retry_at: float
    failures: int


# One generator for every Backoff without its own: a call's retry runner makes
# a Backoff per call, and seeding a new random.Random from the OS each time
# cost about 14-25 us per call (timeit, loaded machine).
_SHARED_RNG = random.Random()


class Backoff:
    """The backoff state of one endpoint (or one call's retries).

    Sans-IO: :meth:`plan` takes the current time and returns when to give up
    and when to try again; nothing here sleeps.
    """

    def __init__(
        self, policy: BackoffPolicy = DEFAULT_CONNECT_BACKOFF, rng: RandomSource | None = None
    ) -> None:
        self.policy = policy
        self._rng: RandomSource = rng if rng is not None else _SHARED_RNG
        self._failures = 0

    @property
    def failures(self) -> int:
        """Consecutive failures since the last :meth:`reset`."""
        return self._failures

    def next_wait(self) -> float:
        """Draw the next full-jitter wait and count one more failure."""
        wait = self._rng.uniform(0.0, self.policy.ceiling(self._failures))
        self._failures += 1
        return wait

    def plan(self, now: float) -> ConnectAttempt:
        """Plan an attempt starting at ``now`` (and count it as a failure
        until :meth:`reset` says it succeeded)."""
        failures = self._failures
        wait = self.next_wait()
        return ConnectAttempt(
            start=now,
            connect_deadline=now + max(wait, self.policy.min_connect_timeout),
            retry_at=now + wait,
            failures=failures,
        )

    def reset(self) -> None:
        """A connection (or call) succeeded: the next failure starts from ``initial``."""
        self._failures = 0
