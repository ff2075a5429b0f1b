"""A server connection's handler: the part of :class:`~.connection.Connection`
that starts ``handler(conn)`` and closes the connection when it returns.

The handler's task is started when the handshake completes (or when the first
0-RTT stream of an accepted 0-RTT handshake opens), not with the connection:
a task parked on an event until then would cost a task step, a parking and
a wake-up per connection, and a task for every handshake that fails.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import trio

from .exceptions import QuicError

if TYPE_CHECKING:
    from ..connection import QuicConnection

log = logging.getLogger("ghostwire.quic")
# Seconds a connection whose handler returned waits for its sent data to be
# acknowledged before closing.
HANDLER_LINGER = 2.0

Handler = Callable[[Any], Awaitable[object]]


class HandlerRunner:
    """Starts a server connection's handler once it may run, and runs it."""

    _core: QuicConnection
    _nursery: trio.Nursery | None
    _handler_running: bool
    _error: QuicError | None
    handler_error_code: int
    # The handler not started yet (a server's connection until its
    # handshake completes), and whether it is due: class defaults, so a
    # connection without a handler (a client's) pays nothing for them.
    _handler: Handler | None = None
    _handler_due = False

    if TYPE_CHECKING:
        peer_address: Any

        def _after_input(self) -> None: ...
        async def wait_delivered(self) -> None: ...
        async def aclose(self, error_code: int = 0, reason: str = "") -> None: ...

    def _start_handler(self) -> None:
        """The handshake completed (or 0-RTT streams opened): start the
        handler in the connection's nursery, or as soon as it exists (the
        connection's task has not run yet)."""
        nursery = self._nursery
        if nursery is None:
            self._handler_due = True  # the connection's task starts it
            return
        handler = self._handler
        if handler is not None:
            self._handler = None
            nursery.start_soon(self._run_handler, handler)

    def _handler_not_started(self) -> None:
        """The connection's task ends: a handler never started means a
        handshake that never completed."""
        if self._handler is not None:
            self._handler = None
            log.debug("handshake with %r failed: %s", self.peer_address, self._error)

    async def _run_handler(self, handler: Handler) -> None:
        # A connection closed right after its handshake still reaches the
        # handler, whose calls then raise ConnectionClosed with the reason.
        if self._core.is_terminated:
            return
        self._handler_running = True
        try:
            await handler(self)
        except QuicError as exc:
            log.debug("connection handler ended: %s", exc)
        except Exception as exc:
            log.exception("unhandled error in QUIC connection handler")
            if not self._core.is_closed:
                # An application error code: the application failed, not QUIC.
                self._core.close(
                    self.handler_error_code,
                    f"handler failed: {type(exc).__name__}",
                    now=trio.current_time(),
                )
                self._after_input()
            return
        finally:
            self._handler_running = False
        if not self._core.is_closed:
            # A handler that returned is done: let what it sent arrive, then
            # close (RFC 9000 §10.2: CONNECTION_CLOSE discards unacknowledged
            # stream data), bounded by HANDLER_LINGER.
            with trio.move_on_after(HANDLER_LINGER):
                await self.wait_delivered()
            await self.aclose()
