"""Run a trio program whose Ctrl-C stops it cleanly: :func:`run`.

trio raises KeyboardInterrupt synchronously in whatever unprotected code
runs when SIGINT arrives: under load that is often a task of the program's
own, or of the HTTP/3 or RPC layers, in the middle of a state change, and
the program then fails in ways unrelated to Ctrl-C (another error beside
it, or a cleanup that never ends). :func:`run` receives SIGINT with a
signal receiver instead and cancels the program, which every task handles
at its next checkpoint; once it has unwound, KeyboardInterrupt is raised
from ``run``, where a top-level ``except KeyboardInterrupt`` catches it::

    try:
        ghostwire.program.run(main, args)
    except KeyboardInterrupt:
        sys.exit(130)
"""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import trio

T = TypeVar("T")


class _Outcome:
    __slots__ = ("error", "interrupted", "value")

    def __init__(self) -> None:
        self.interrupted = False
        self.value: Any = None
        self.error: BaseException | None = None


def run(main: Callable[..., Awaitable[T]], *args: Any) -> T:
    """``trio.run(main, *args)``, with Ctrl-C (SIGINT) as a cancellation.

    Returns what ``main`` returns. After a Ctrl-C, ``main`` is cancelled and,
    once it has unwound, KeyboardInterrupt is raised; an exception ``main``
    met while cut off is its ``__cause__``. A Ctrl-C before the signal
    receiver is in place (as trio starts) is a KeyboardInterrupt too, never
    a group of them.
    """
    try:
        outcome = trio.run(_until_interrupted, main, args)
    except BaseException as exc:
        if consists_of(KeyboardInterrupt, exc) and not isinstance(exc, KeyboardInterrupt):
            raise KeyboardInterrupt from exc
        raise
    if outcome.interrupted:
        raise KeyboardInterrupt from outcome.error
    return outcome.value  # type: ignore[no-any-return]


async def _until_interrupted(
    main: Callable[..., Awaitable[Any]], args: tuple[Any, ...]
) -> _Outcome:
    outcome = _Outcome()
    with trio.open_signal_receiver(signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:

            async def cancel_on_ctrl_c() -> None:
                async for _ in signals:
                    outcome.interrupted = True
                    nursery.cancel_scope.cancel()

            nursery.start_soon(cancel_on_ctrl_c)
            try:
                outcome.value = await main(*args)
            except BaseException as exc:  # kept: raised below, outside the nursery's group
                outcome.error = exc
            finally:
                nursery.cancel_scope.cancel()
    error = outcome.error
    if error is not None:
        if not outcome.interrupted:
            raise error  # as trio.run would raise it
        if consists_of(trio.Cancelled, error):
            outcome.error = None  # the cancellation itself, nothing else met
    return outcome


def consists_of(kind: type[BaseException], exc: BaseException) -> bool:
    """Whether ``exc`` is ``kind``, or a group of nothing else."""
    if isinstance(exc, BaseExceptionGroup):
        return all(consists_of(kind, inner) for inner in exc.exceptions)
    return isinstance(exc, kind)


__all__ = ["run"]
