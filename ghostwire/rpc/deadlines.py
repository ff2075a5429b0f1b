"""Calls' own deadlines (``timeout=``) kept by one task, not a cancel scope each.

A trio cancel scope costs a call about 50 Python calls to enter and leave
(the run's deadline registry, the task's cancel status): as much as the rest
of the client's pool. Once a unary call's stream is open, all it waits for
is its reply (and, rarely, room to send its request), and the only thing a
deadline has to do there is end the call. So a :class:`CallDeadlines`, one
per pool with its task in the pool's nursery, keeps those calls' deadlines
in a heap (its task started by the first such call): a call registers
(:meth:`CallDeadlines.watch`) and deregisters
(:meth:`CallDeadlines.done`) in a few attribute updates, and at a deadline
the task hands the call's target (its stream) to ``on_expired``, which
aborts it (RESET_STREAM and STOP_SENDING: the waiting task wakes and fails).
The call sees :attr:`Watch.expired` and raises DEADLINE_EXCEEDED, as the
cancel scope made it.

Entries of calls that ended stay in the heap until their deadline comes up
or until they outnumber the live ones (then the heap is rebuilt), so it holds
at most about twice the calls in flight.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import Any

import trio

# Rebuild the heap once finished entries exceed the live ones by this much.
_SLACK = 64


class Watch:
    """One call's deadline, from :meth:`CallDeadlines.watch` to :meth:`CallDeadlines.done`."""

    __slots__ = ("deadline", "done", "expired", "target")

    def __init__(self, deadline: float, target: Any) -> None:
        self.deadline = deadline
        self.target = target
        self.done = False  # the call ended, or its deadline passed
        self.expired = False  # its deadline passed first: on_expired(target) was called


class CallDeadlines:
    """The deadlines of calls in flight, and the task that enforces them (:meth:`run`)."""

    def __init__(self, on_expired: Callable[[Any], object]) -> None:
        self._on_expired = on_expired
        self._heap: list[tuple[float, int, Watch]] = []
        self._order = itertools.count()  # ties: first registered, first expired
        self._live = 0
        self._sleep: trio.CancelScope | None = None  # run()'s wait for the earliest deadline
        self._nursery: trio.Nursery | None = None  # where run() starts, on first use
        self.running = False

    @property
    def available(self) -> bool:
        """Whether :meth:`watch` may be used: a nursery is attached (the pool runs)."""
        return self._nursery is not None

    def attach(self, nursery: trio.Nursery | None) -> None:
        """Run the task in ``nursery`` once a call needs it (None: no more).
        A client that makes no timed call never starts it."""
        self._nursery = nursery

    @property
    def live(self) -> int:
        """Calls registered and not ended."""
        return self._live

    @property
    def held(self) -> int:
        """Entries in the heap (live, and ended ones not dropped yet)."""
        return len(self._heap)

    def watch(self, deadline: float, target: Any) -> Watch:
        """Call ``on_expired(target)`` at ``deadline`` unless :meth:`done`
        comes first. Only while :attr:`available`."""
        if not self.running:
            assert self._nursery is not None
            self._nursery.start_soon(self.run, name="rpc call deadlines")
            self.running = True  # (it picks up this deadline as it starts)
        heap = self._heap
        if len(heap) > 2 * self._live + _SLACK:
            self._compact()
        watch = Watch(deadline, target)
        heapq.heappush(heap, (deadline, next(self._order), watch))
        self._live += 1
        sleep = self._sleep
        if sleep is not None and deadline < sleep.deadline:
            sleep.deadline = deadline  # earlier than any other: wake run() for it
        return watch

    def done(self, watch: Watch) -> None:
        """The call ended (whether or not its deadline passed)."""
        if not watch.done:
            watch.done = True
            watch.target = None  # (its entry may stay a while: not the stream)
            self._live -= 1

    def _compact(self) -> None:
        self._heap = [entry for entry in self._heap if not entry[2].done]
        heapq.heapify(self._heap)

    def _next_deadline(self) -> float:
        heap = self._heap
        while heap and heap[0][2].done:
            heapq.heappop(heap)
        return heap[0][0] if heap else float("inf")

    def _expire(self, now: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= now:
            watch = heapq.heappop(heap)[2]
            if not watch.done:
                watch.done = watch.expired = True
                self._live -= 1
                self._on_expired(watch.target)

    # KI-protected, as every background task of the RPC client: a Ctrl-C
    # goes to the program's main task, never mid-update into this one.
    @trio.lowlevel.enable_ki_protection
    async def run(self) -> None:
        """Enforce the deadlines until cancelled (the pool closing)."""
        self.running = True
        try:
            while True:
                with trio.CancelScope(deadline=self._next_deadline()) as sleep:
                    self._sleep = sleep
                    await trio.sleep_forever()
                self._sleep = None
                self._expire(trio.current_time())
        finally:
            self._sleep = None
            self.running = False


__all__ = ["CallDeadlines", "Watch"]
