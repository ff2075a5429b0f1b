"""Retries only where safe, under a budget (sans-IO: time is passed in).

Theory of operation
-------------------
A call may be sent again only if running it twice cannot hurt:

* the method is idempotent (``@svc.call(idempotent=True)`` on the server,
  which the client learns; or ``idempotent=True`` on the call), and it
  failed with a retryable status (UNAVAILABLE by default); or
* the server provably never started it: the stream was refused, a GOAWAY
  said it was not processed, there was no connection to send it on, or an
  open circuit kept it local. Such a call is retried whatever its method
  and status (gRPC's "transparent retry", proposal A6).

Three bounds hold on top of that, so retries never multiply load during an
outage:

1. ``max_attempts`` per call (gRPC caps its ``maxAttempts`` at 5);
2. the caller's deadline: no attempt starts after it, and none is planned if
   its backoff wait would end past it (the deadline spans all attempts, A6);
3. :class:`RetryThrottle`, gRPC's ``retryThrottling`` (A6): a token bucket
   shared by every call of a client. It starts full at ``max_tokens``; each
   attempt failing with a retryable status costs 1 token, each success gives
   back ``token_ratio``; a retry is allowed only while tokens >
   ``max_tokens / 2``. When the servers are down, failures drain the bucket
   below half after ``max_tokens / 2`` net failures, after which every call
   fails on its first attempt (one request each, never ``max_attempts``),
   until successes refill it.

Waits between attempts use :class:`~.backoff.Backoff` with the retry
policy's own numbers (full jitter, as A6 specifies).

The throttle counts in thousandths of a token, since A6 specifies
``token_ratio`` to three decimal places: sums of 0.1 in floats drift.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from ..status import Status
from .backoff import Backoff, BackoffPolicy, RandomSource

__all__ = [
    "DEFAULT_RETRY_BACKOFF",
    "UNAVAILABLE",
    "CallRetryState",
    "GiveUp",
    "RetryDecision",
    "RetryPolicy",
    "RetryThrottle",
]

#: The status a failed connection or an unreachable server gives a call.
UNAVAILABLE = Status.UNAVAILABLE

#: Waits between attempts of one call (the values of gRPC's retry examples).
DEFAULT_RETRY_BACKOFF = BackoffPolicy(
    initial=0.1, multiplier=2.0, max_backoff=1.0, min_connect_timeout=0.0
)

_MILLI = 1000


class RetryThrottle:
    """gRPC's retry throttling: a token bucket shared by all calls of a client.

    gRPC has no default (throttling is off unless the service config sets
    it); its examples use 10 tokens. We default to 100: with 10, one endpoint
    of a pool dying under 6 calls in flight spends the budget and the other
    calls cannot move to a healthy endpoint; with 100, up to ~50 calls in
    flight are retried, and a real outage still stops all retries after ~50
    net failures (a bounded, one-off cost).
    """

    def __init__(self, max_tokens: float = 100.0, token_ratio: float = 0.1) -> None:
        if not 0 < max_tokens <= 1000:
            raise ValueError(f"max_tokens must be in (0, 1000], got {max_tokens!r}")
        if not token_ratio > 0:
            raise ValueError(f"token_ratio must be > 0, got {token_ratio!r}")
        self._max = round(max_tokens * _MILLI)
        self._ratio = round(token_ratio * _MILLI)
        self._tokens = self._max

    @property
    def max_tokens(self) -> float:
        return self._max / _MILLI

    @property
    def token_ratio(self) -> float:
        return self._ratio / _MILLI

    @property
    def tokens(self) -> float:
        return self._tokens / _MILLI

    def retry_allowed(self) -> bool:
        """Whether the bucket holds more than half its capacity (A6)."""
        return self._tokens * 2 > self._max

    def record_failure(self) -> None:
        """An attempt failed with a retryable status (or never reached the server)."""
        self._tokens = max(0, self._tokens - _MILLI)

    def record_success(self) -> None:
        """An attempt succeeded (status OK)."""
        tokens = self._tokens
        if tokens < self._max:  # (full: the usual case, every call comes here)
            self._tokens = min(self._max, tokens + self._ratio)

    def __repr__(self) -> str:
        return f"<RetryThrottle {self.tokens:g}/{self.max_tokens:g}>"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Which failures are retried, how often and how far apart."""

    max_attempts: int = 3
    retryable_statuses: frozenset[int] = field(default_factory=lambda: frozenset({UNAVAILABLE}))
    backoff: BackoffPolicy = DEFAULT_RETRY_BACKOFF

    def __post_init__(self) -> None:
        if not 1 <= self.max_attempts <= 5:
            # A6 caps maxAttempts at 5: more multiplies load without helping.
            raise ValueError(f"max_attempts must be in 1..5, got {self.max_attempts}")

    def retry_safe(self, status: int, *, idempotent: bool, server_started: bool) -> bool:
        """Whether a call that failed so may run again (ignoring the bounds)."""
        if not server_started:
            return True
        return idempotent and int(status) in self.retryable_statuses


class GiveUp(enum.Enum):
    """Why a failed call is not retried."""

    NOT_RETRY_SAFE = "the call may have run and is not idempotent, or its status is final"
    MAX_ATTEMPTS = "it used all its attempts"
    THROTTLED = "the client's retry budget is spent (the servers are failing)"
    DEADLINE = "the caller's deadline would pass before the next attempt"


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """What to do after a failed attempt: retry at ``retry_at``, or give up (``give_up``)."""

    retry_at: float | None
    give_up: GiveUp | None

    @property
    def retry(self) -> bool:
        return self.give_up is None


class CallRetryState:
    """The retry bookkeeping of one call, across its attempts.

    Use: ``begin_attempt()`` before each attempt, then ``on_success()`` or
    ``on_failure(...)`` after it; wait until the decision's ``retry_at``.
    """

    def __init__(
        self,
        policy: RetryPolicy,
        throttle: RetryThrottle | None,
        *,
        idempotent: bool,
        deadline: float | None = None,
        rng: RandomSource | None = None,
    ) -> None:
        self.policy = policy
        self.throttle = throttle
        self.idempotent = idempotent
        self.deadline = deadline
        self._backoff = Backoff(policy.backoff, rng)
        self._attempts = 0

    @property
    def attempts(self) -> int:
        """Attempts begun so far."""
        return self._attempts

    def begin_attempt(self) -> int:
        """Count an attempt about to start; return its number (1 for the first).

        The first attempt always runs (the caller's cancel scope ends it if
        the deadline is already over); later ones exist only because
        :meth:`on_failure` planned them before the deadline.
        """
        self._attempts += 1
        return self._attempts

    def on_success(self) -> None:
        if self.throttle is not None:
            self.throttle.record_success()

    def on_failure(self, status: int, *, server_started: bool, now: float) -> RetryDecision:
        """Account for a failed attempt and decide whether to try again."""
        retryable = int(status) in self.policy.retryable_statuses or not server_started
        if self.throttle is not None and retryable:
            # A6: only failures with a retryable status drain the bucket; other
            # statuses (the application's answer) leave it as it is.
            self.throttle.record_failure()
        if not self.policy.retry_safe(
            status, idempotent=self.idempotent, server_started=server_started
        ):
            return RetryDecision(None, GiveUp.NOT_RETRY_SAFE)
        if self._attempts >= self.policy.max_attempts:
            return RetryDecision(None, GiveUp.MAX_ATTEMPTS)
        if self.throttle is not None and not self.throttle.retry_allowed():
            return RetryDecision(None, GiveUp.THROTTLED)
        retry_at = now + self._backoff.next_wait()
        if self.deadline is not None and retry_at >= self.deadline:
            return RetryDecision(None, GiveUp.DEADLINE)
        return RetryDecision(retry_at, None)
