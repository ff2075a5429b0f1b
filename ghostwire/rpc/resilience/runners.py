"""The trio side of backoff and retries: two small loops on trio's clock.

The decisions live in the sans-IO modules (``backoff.py``, ``retry.py``);
these loops only sleep and run attempts, with ``trio.current_time()`` so that
``trio.testing.MockClock`` drives them in tests. Neither starts a task: they
run in the caller's task, so cancelling the caller (closing the client)
stops them at once, mid-attempt or mid-wait.

* :func:`connect_with_backoff`: an endpoint supervisor's reconnect loop.
  Each attempt runs under its own connect deadline
  (``max(wait, min_connect_timeout)``); a failed attempt is followed by the
  next no earlier than its planned ``retry_at``. Hooks report each attempt
  and failure, so the supervisor can move the endpoint's state
  (CONNECTING, TRANSIENT_FAILURE) and count reconnects.
* :func:`call_with_retries`: one call's attempts under a
  :class:`~.retry.CallRetryState` (safety, max attempts, throttle, deadline).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import trio

from ...errors import GhostwireError
from .backoff import Backoff, ConnectAttempt
from .retry import CallRetryState, RetryDecision

__all__ = [
    "AttemptFailure",
    "ConnectTimeout",
    "call_with_retries",
    "connect_with_backoff",
    "is_transient_connect_error",
    "retry_after_failure",
    "single_error",
    "without_transient_errors",
]

T = TypeVar("T")


class ConnectTimeout(GhostwireError, TimeoutError):
    """A connection attempt did not finish before its connect deadline."""


def is_transient_connect_error(exc: BaseException) -> bool:
    """The default test for "try again later": network errors, ghostwire's own
    errors (handshake failures, closed connections), broken trio resources and
    timeouts. Anything else (a bug, a bad configuration) propagates.

    A group counts when every exception in it does: a connect deadline that
    cancels a handshake as its refusal arrives leaves the refusal in a group
    once the deadline's scope has taken its Cancelled out."""
    if isinstance(exc, BaseExceptionGroup):
        return all(is_transient_connect_error(e) for e in exc.exceptions)
    return isinstance(exc, OSError | GhostwireError | trio.BrokenResourceError | trio.TooSlowError)


def without_transient_errors(
    exc: BaseException,
    is_transient: Callable[[BaseException], bool] = is_transient_connect_error,
) -> BaseException | None:
    """``exc`` less its transient connect errors, or None when nothing else is
    left. A connect that fails as its caller is cancelled (the client closing,
    or an attempt's deadline) raises a group of the Cancelled and the failure:
    the Cancelled must go on to its scope, the failure is only a failed attempt."""
    if isinstance(exc, BaseExceptionGroup):
        return exc.split(is_transient)[1]
    return None if is_transient(exc) else exc


def single_error(exc: Exception) -> Exception:
    """The one exception inside nested single-exception groups (else ``exc``),
    so a caller sees the refusal, not a group around it."""
    while isinstance(exc, ExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


AttemptHook = Callable[[ConnectAttempt], None]
FailureHook = Callable[[ConnectAttempt, Exception], None]


async def connect_with_backoff(
    connect: Callable[[], Awaitable[T]],
    backoff: Backoff,
    *,
    is_transient: Callable[[BaseException], bool] = is_transient_connect_error,
    on_attempt: AttemptHook | None = None,
    on_failure: FailureHook | None = None,
) -> T:
    """Call ``connect()`` until it succeeds; return its result.

    A transient error or the attempt's connect deadline counts as a failure
    (``on_failure`` sees it, a :class:`ConnectTimeout` for the deadline); any
    other exception propagates. On success the backoff is reset. Runs until
    it succeeds or the caller's cancel scope ends it.
    """
    while True:
        attempt = backoff.plan(trio.current_time())
        if on_attempt is not None:
            on_attempt(attempt)
        error: Exception | None = None
        with trio.move_on_at(attempt.connect_deadline) as scope:
            try:
                result = await connect()
            except BaseException as exc:
                rest = without_transient_errors(exc, is_transient)
                if rest is exc:
                    raise
                if rest is not None:
                    raise rest from None
                assert isinstance(exc, Exception)  # only transient errors were in it
                error = single_error(exc)
            else:
                backoff.reset()
                return result
        if error is None:
            assert scope.cancelled_caught  # the only way out of the block without a result
            error = ConnectTimeout(
                f"connection attempt timed out after "
                f"{attempt.connect_deadline - attempt.start:.3g} s"
            )
        if on_failure is not None:
            on_failure(attempt, error)
        await trio.sleep_until(attempt.retry_at)


@dataclass(frozen=True, slots=True)
class AttemptFailure:
    """How a failed attempt looks to the retry logic.

    ``status``: the RPC status it failed with; ``server_started``: False only
    when the server provably never began the call (refused stream, GOAWAY
    before it was processed, no connection, open circuit).
    """

    status: int
    server_started: bool = True


Classifier = Callable[[Exception], AttemptFailure | None]
RetryHook = Callable[[int, Exception, RetryDecision], None]


async def call_with_retries(
    attempt: Callable[[int], Awaitable[T]],
    state: CallRetryState,
    classify: Classifier,
    *,
    on_retry: RetryHook | None = None,
) -> T:
    """Run ``attempt(n)`` (n = 1, 2, ...) until one succeeds or a retry is not allowed.

    ``classify`` turns an exception into an :class:`AttemptFailure`, or None
    for an exception that is not a call failure (it propagates at once). When
    the call gives up, the last attempt's exception propagates unchanged.
    ``on_retry(n, exc, decision)`` is told before each wait (logging, metrics).
    The deadline in ``state`` bounds the attempts (when it is None, the
    caller's effective deadline is taken, so ``trio.move_on_after`` around
    the call bounds the retries too); the caller's cancel scope still ends
    everything at once.
    """
    if state.deadline is None:
        effective = trio.current_effective_deadline()
        if math.isfinite(effective):
            state.deadline = effective
    number = state.begin_attempt()
    try:
        result = await attempt(number)
    except Exception as exc:
        return await retry_after_failure(attempt, state, classify, exc, on_retry=on_retry)
    state.on_success()
    return result


async def retry_after_failure(
    attempt: Callable[[int], Awaitable[T]],
    state: CallRetryState,
    classify: Classifier,
    failed: Exception,
    *,
    on_retry: RetryHook | None = None,
) -> T:
    """:func:`call_with_retries` from the point where attempt number
    ``state.attempts`` failed with ``failed``: what a caller that ran its
    first attempt itself (without the retry machinery: the usual success
    costs nothing more) calls when it fails. ``state.deadline`` is taken as
    it is (None: no deadline)."""
    error = failed
    while True:
        failure = classify(error)
        if failure is None:
            raise error
        decision = state.on_failure(
            failure.status, server_started=failure.server_started, now=trio.current_time()
        )
        if decision.retry_at is None:
            raise error
        if on_retry is not None:
            on_retry(state.attempts, error, decision)
        await trio.sleep_until(decision.retry_at)
        number = state.begin_attempt()
        try:
            result = await attempt(number)
        except Exception as exc:
            error = exc
            continue
        state.on_success()
        return result
