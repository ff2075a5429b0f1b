"""What every command shares: exit codes, the one-line error, argument types.

Conventions (every command keeps them):

* an expected failure (bad input, certificate, timeout, unreachable peer)
  raises :class:`CliError` and ends as one line on stderr, ``command: reason``,
  never a traceback;
* exit codes: 0 success, 1 failure, 2 usage error (bad arguments, found before
  any network traffic), 130 interrupted (Ctrl-C);
* a usage error is found before anything is sent: check arguments first.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import trio

from ..errors import GhostwireError
from ..http3.errors import HttpConnectionError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class CliError(GhostwireError):
    """An expected failure, reported as one line (``command: message``)."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# -- argument types (argparse turns their ArgumentTypeError into exit 2) ------------


def port_number(text: str) -> int:
    """A UDP port, 0-65535 (0: the system picks one)."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0-65535)")
    return port


def seconds(text: str) -> float:
    """A duration in seconds, zero or more (and finite)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds (0 or more)")
    return value


def positive_seconds(text: str) -> float:
    """A duration in seconds, more than zero (and finite)."""
    value = seconds(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds (more than 0)")
    return value


# -- exceptions ----------------------------------------------------------------------


def leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups, or ``[exc]``.

    An HTTP/3 connection failure is replaced by its QUIC cause, which says more.
    """
    if isinstance(exc, HttpConnectionError) and exc.__cause__ is not None:
        return leaves(exc.__cause__)
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in leaves(sub)]
    return [exc]


def has_keyboard_interrupt(exc: BaseException) -> bool:
    return any(isinstance(leaf, KeyboardInterrupt) for leaf in leaves(exc))


def single_cli_error(exc: BaseException) -> CliError | None:
    """The :class:`CliError` that ``exc`` is (or wraps alone), if any."""
    found = leaves(exc)
    if len(found) == 1 and isinstance(found[0], CliError):
        return found[0]
    return None


# -- output --------------------------------------------------------------------------


def one_line(text: str) -> str:
    return " ".join(text.split())


def is_tty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


# A note a command adds to a KeyboardInterrupt it has already reported, so
# run_command does not print "interrupted" a second time.
INTERRUPTION_REPORTED = "ghostwire: the interruption was reported"


def run_command(prog: str, main: Callable[[], Awaitable[int]]) -> int:
    """``trio.run(main)`` for a command: its exit code; Ctrl-C is
    ``PROG: interrupted`` and exit 130; a reader that went away
    (``ghostwire ... | head``) is not an error."""
    try:
        outcome = trio.run(run_until_interrupted, main)
    except BaseException as exc:
        # Ctrl-C before the signal receiver is in place (or after it is gone).
        if has_keyboard_interrupt(exc):
            if INTERRUPTION_REPORTED not in getattr(exc, "__notes__", ()):
                sys.stderr.write(f"{prog}: interrupted\n")
            return EXIT_INTERRUPTED
        raise
    if outcome.interrupted:
        if not outcome.reported:
            sys.stderr.write(f"{prog}: interrupted\n")
        return EXIT_INTERRUPTED
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
    return outcome.code


@dataclass
class Outcome:
    """How :func:`run_until_interrupted` ended."""

    code: int = EXIT_INTERRUPTED
    interrupted: bool = False
    reported: bool = False  # the command already said what the interruption cut off


async def run_until_interrupted(main: Callable[[], Awaitable[int]]) -> Outcome:
    """``await main()``; Ctrl-C (SIGINT) cancels it rather than raising
    KeyboardInterrupt wherever the program happens to be.

    trio raises KeyboardInterrupt synchronously in whatever unprotected code
    runs when the signal arrives: under load, often one of ghostwire's
    connection tasks in the middle of a state change, which then fails in
    ways unrelated to Ctrl-C (another error, exit 1, or a hang in a
    cleanup). A cancellation reaches every task at its next checkpoint,
    where all of them know how to stop.
    """
    outcome = Outcome()
    with trio.open_signal_receiver(signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_cancel_on_signal, signals, nursery.cancel_scope, outcome)
            try:
                outcome.code = await main()
            except BaseException as exc:
                if not outcome.interrupted:
                    raise
                # What a cancelled command raises (Cancelled, or an error a
                # cut-off cleanup met) is the interruption: exit 130 all the same.
                outcome.reported = any(
                    INTERRUPTION_REPORTED in getattr(leaf, "__notes__", ())
                    for leaf in [exc, *leaves(exc)]
                )
            finally:
                nursery.cancel_scope.cancel()
    return outcome


async def _cancel_on_signal(
    signals: AsyncIterator[int], scope: trio.CancelScope, outcome: Outcome
) -> None:
    async for _ in signals:
        outcome.interrupted = True
        scope.cancel()


def _silence_stdout() -> None:
    # The reader went away: don't let Python complain about stdout at exit.
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
