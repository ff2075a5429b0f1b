"""A subscription that survives server restarts, as the demo runs it.

:class:`LogFollower` follows ``vm.logs`` in a task of its own: it connects,
subscribes ``after`` the last cursor it handed on, and when the server goes
away (the subscription ends with UNAVAILABLE, or the connection cannot be
made) it waits a jittered backoff and does it again. The resume cursor and
the duplicate filter are :class:`~ghostwire.rpc.resilience.ResumeTracker`'s;
the waits are :class:`~ghostwire.rpc.resilience.Backoff`'s. Whoever drives
the demo waits for the follower to reach a log count with
:meth:`LogFollower.wait_for`, so nothing here depends on timing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import trio

from .. import rpc
from ..rpc.resilience import Backoff, BackoffPolicy, ResumeTracker
from ..rpc.resilience.runners import is_transient_connect_error

# Loopback comes back fast: retry soon, give each attempt a few seconds.
RECONNECT_POLICY = BackoffPolicy(initial=0.05, max_backoff=1.0, min_connect_timeout=5.0)

Connect = Callable[[], AbstractAsyncContextManager[rpc.Client]]


class LogFollower:
    """Follows ``vm.logs`` across reconnects; see the module docs."""

    def __init__(self, connect: Connect, say: Callable[[str], None]) -> None:
        self._connect = connect
        self._say = say
        self.tracker = ResumeTracker()
        self.backoff = Backoff(RECONNECT_POLICY)
        self.cursors: list[Any] = []  # of every log handed on, in order
        self.duplicates_dropped = 0
        self.attempts = 0  # subscriptions made, the first one included
        self._lost = False  # between losing the subscription and the next log
        self._progress = trio.Event()

    @property
    def reconnects(self) -> int:
        return self.tracker.reconnects

    async def wait_for(self, count: int) -> None:
        """Return once ``count`` logs have been handed on."""
        while len(self.cursors) < count:
            await self._progress.wait()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Follow until cancelled; ``nursery.start`` returns once subscribed."""
        while True:
            attempt = self.backoff.plan(trio.current_time())
            failure: BaseException | None = None
            with trio.move_on_at(attempt.connect_deadline) as attempt_scope:
                try:
                    async with self._connect() as client:
                        await self._follow(client, attempt_scope, task_status)
                except rpc.RpcError as exc:
                    if exc.status is not rpc.Status.UNAVAILABLE:
                        raise
                    failure = exc
                except Exception as exc:  # could not connect (yet)?
                    if not is_transient_connect_error(exc):
                        raise
                    failure = exc
            if attempt_scope.cancelled_caught:
                failure = TimeoutError("no connection in time")
            marker = self.tracker.reconnecting()
            if not self._lost:  # once per outage, however many attempts it takes
                self._say(f"subscription lost ({failure}); will resume after {marker.after}")
                self._lost = True
            await trio.sleep_until(attempt.retry_at)
            task_status = trio.TASK_STATUS_IGNORED  # started() was called once already

    async def _follow(
        self,
        client: rpc.Client,
        attempt_scope: trio.CancelScope,
        task_status: trio.TaskStatus[None],
    ) -> None:
        after = self.tracker.resume_after
        # resume=False: this follower resumes by itself (it shows how)
        async with client.subscribe("vm.logs", after=after, resume=False, follow=True) as events:
            attempt_scope.deadline = math.inf  # the attempt's deadline covers connecting only
            self.attempts += 1
            task_status.started()
            async for event in events:
                if self.tracker.is_duplicate(event.cursor):
                    self.duplicates_dropped += 1
                    continue
                if self._lost:  # a server really answers: the outage is over
                    self._say(f"resubscribed after {after}: next log {event.cursor}")
                    self._lost = False
                    self.backoff.reset()
                self.tracker.delivered(event.cursor)
                self.cursors.append(event.cursor)
                self._progress.set()
                self._progress = trio.Event()
