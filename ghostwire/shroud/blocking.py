"""``start()`` for the shim's servers: serve, blocking, until ``stop()`` or Ctrl-C.

trio would raise KeyboardInterrupt in whatever code runs when the signal
arrives (under load, often a connection's task mid-update), which can
leave the shutdown stuck; a signal receiver turns the first Ctrl-C into an
ordinary graceful ``stop()``, and a second one stops at once.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import AsyncIterator, Awaitable, Callable

import trio

from ..program import consists_of
from .errors import ShroudError


def run_blocking(
    serve: Callable[[], Awaitable[None]], stop: Callable[[], None], log: logging.Logger
) -> None:
    """``trio.run(serve)`` with Ctrl-C as ``stop()``; what ``start()`` does."""
    try:
        trio.lowlevel.current_trio_token()
    except RuntimeError:
        pass
    else:
        raise ShroudError("start() blocks; under trio use nursery.start(server.serve)")
    try:
        trio.run(_serve_until_ctrl_c, serve, stop)
    except BaseException as exc:
        if not consists_of(KeyboardInterrupt, exc):  # Ctrl-C comes inside the nursery's group
            raise
        log.info("interrupted; server stopped")


async def _serve_until_ctrl_c(
    serve: Callable[[], Awaitable[None]], stop: Callable[[], None]
) -> None:
    if threading.current_thread() is not threading.main_thread():
        await serve()  # signals are received on the main thread only
        return
    with trio.open_signal_receiver(signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_stop_on_signals, signals, stop)
            await serve()
            nursery.cancel_scope.cancel()


async def _stop_on_signals(signals: AsyncIterator[int], stop: Callable[[], None]) -> None:
    stopping = False
    async for _ in signals:
        if stopping:
            raise KeyboardInterrupt  # a second Ctrl-C: stop at once
        stopping = True
        stop()
