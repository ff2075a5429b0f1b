"""Subscriptions that resume across broken connections and server restarts.

Theory of operation
-------------------
:class:`ResilientSubscription` holds one subscription on one endpoint at a
time. When it fails with UNAVAILABLE (the connection broke, a ping went
unanswered, the server shut down or restarted), it resubscribes on an
endpoint that is up (waiting for one if none is, bounded only by the
caller's cancel scope) with ``after=<cursor of the last event delivered>``,
and drops any event whose ordered cursor is not past that one
(:class:`~.resilience.ResumeTracker`). The subscriber's ``async for`` thus
sees no gap and no duplicate, provided the server honours ``after``. Events
without cursors are at-most-once across a reconnect (docs/rpc-client.md).

The subscriber need not notice a reconnect; ``reconnects`` counts them, and
``markers=True`` puts a :class:`~.resilience.Reconnected` marker in the
stream where each happened. ``resume=False`` turns all this off: the
first UNAVAILABLE ends the subscription. Any other status ends the subscription as
before (the server's answer, not a transport failure).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

import trio

from .client import CallNotStarted, RpcConnection, Subscription
from .events import Event
from .resilience import Backoff, Reconnected, ResumeTracker
from .status import RpcError, Status

if TYPE_CHECKING:
    from .pool import Pool
    from .supervisor import EndpointSupervisor


class ResilientSubscription:
    """``async for event in subscription``: see the module docstring."""

    def __init__(
        self,
        pool: Pool,
        method: str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        *,
        after: Any = None,
        metadata: Mapping[str, str | bytes] | None = None,
        markers: bool = False,
        resume: bool = True,
    ) -> None:
        self.method = method
        self.markers = markers
        self.resume = resume
        self.endpoint: str | None = None  # the endpoint it is subscribed on now
        self.finished = False
        self._pool = pool
        self._args = args
        self._kwargs = kwargs
        self._metadata = metadata
        self._tracker = ResumeTracker(after)
        self._inner: Subscription | None = None
        self._stack: AsyncExitStack | None = None
        self._supervisor: EndpointSupervisor | None = None
        self._rpc: RpcConnection | None = None
        self._backoff = Backoff(pool.options.retry.backoff)
        self._marker: Reconnected | None = None

    @property
    def last_cursor(self) -> Any:
        """The cursor of the last event delivered (resume point)."""
        return self._tracker.resume_after

    @property
    def reconnects(self) -> int:
        """How many times the subscription resumed on a new connection."""
        return self._tracker.reconnects

    # -- opening and closing ---------------------------------------------------

    async def open(self) -> None:
        """Subscribe on an endpoint that is up (waits for one)."""
        pool = self._pool
        while True:
            lease, supervisor = await pool.lease(trio.current_effective_deadline(), wait=True)
            try:
                link = await supervisor.acquire()  # a subscription holds a stream...
            finally:
                lease.release()  # ...but no circuit permit
            if link is None:  # the endpoint stopped taking calls: another one
                await trio.lowlevel.checkpoint()  # (never a loop without one)
                continue
            rpc = link.rpc
            stack = AsyncExitStack()
            stack.callback(supervisor.release, link)
            try:
                self._inner = await stack.enter_async_context(
                    rpc.subscribe(
                        self.method,
                        self._args,
                        self._kwargs,
                        after=self._tracker.resume_after,
                        metadata=self._metadata,
                    )
                )
            except RpcError as exc:
                await stack.aclose()
                if exc.status is not Status.UNAVAILABLE or not self.resume:
                    raise
                supervisor.connection_failed(rpc)
                await trio.sleep(self._backoff.next_wait())
                continue
            except BaseException:
                await stack.aclose()
                raise
            self._stack = stack
            self._supervisor = supervisor
            self._rpc = rpc
            self.endpoint = supervisor.address
            return

    async def aclose(self) -> None:
        stack, self._stack, self._inner = self._stack, None, None
        self._supervisor = None
        self._rpc = None
        if stack is not None:
            await stack.aclose()

    # -- receiving ---------------------------------------------------------------

    async def receive(self) -> Event:
        """The next event (markers are skipped here: ``async for`` yields
        them); :class:`trio.EndOfChannel` when the channel ended."""
        while True:
            item = await self._next()
            if isinstance(item, Event):
                return item

    async def _next(self) -> Event | Reconnected:
        """The next event, or a marker with ``markers=True``."""
        while True:
            if self.finished:
                raise trio.EndOfChannel
            if self._inner is None:
                await self.open()
                if self._marker is not None:
                    marker, self._marker = self._marker, None
                    if self.markers:
                        return marker
            inner = self._inner
            assert inner is not None
            try:
                event = await inner.receive()
            except trio.EndOfChannel:
                self.finished = True
                raise
            except RpcError as exc:
                if exc.status is not Status.UNAVAILABLE or not self.resume:
                    self.finished = True
                    raise
                supervisor, rpc = self._supervisor, self._rpc
                if supervisor is not None and rpc is not None:
                    if isinstance(exc, CallNotStarted) and exc.goaway:
                        supervisor.goaway(rpc)
                    else:
                        supervisor.connection_failed(rpc)
                await self._broken()
                continue
            if self._tracker.is_duplicate(event.cursor):
                continue
            self._tracker.delivered(event.cursor)
            self._backoff.reset()
            return event

    async def _broken(self) -> None:
        """The subscription's connection broke: resume elsewhere or later."""
        await self.aclose()
        self.endpoint = None
        self._marker = self._tracker.reconnecting()

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Any]:
        while True:
            try:
                yield await self._next()
            except trio.EndOfChannel:
                return


__all__ = ["ResilientSubscription"]
