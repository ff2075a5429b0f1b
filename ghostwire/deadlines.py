"""Deadlines of many waits kept by one task, not a cancel scope each.

A trio cancel scope costs a wait about 50 Python calls to enter and leave
(the run's deadline registry, the task's cancel status), about 5.7 us: as
much as the rest of an RPC client's call, or a good part of an HTTP/3
client's GET. Where all a deadline has to do is end one known wait (an RPC
call's wait for its reply, an HTTP/3 request's wait for its response's
headers), a :class:`Deadlines` does it for all of them with one task:
a wait registers (:meth:`Deadlines.watch`, a heap push) and deregisters
(:meth:`Deadlines.done`, a flag) in a few attribute updates, and at a
deadline the task hands the wait's target to ``on_expired``, which ends it
(the RPC client aborts the call's stream; the HTTP/3 client wakes the
request's wait for headers). The waiting task sees
:meth:`Deadlines.expired` (or its own sign of it) and fails as the cancel
scope made it fail.

Deadlines come in any order: a heap, so a later wait with an earlier
deadline is ended at its own deadline, and no earlier one is disturbed.
Entries of waits that ended stay in the heap until their deadline comes up
or until the heap doubles its live entries of the last rebuild (then it is
rebuilt without them), so it holds at most about twice the waits in flight
(those of the last rebuild) and 64.

The task runs in a nursery the owner attaches (:meth:`Deadlines.attach`: the
RPC client's pool, the HTTP/3 client's), starts with the first watch (a
client that never times a wait never starts it) and ends with the nursery.

Used by ``ghostwire.rpc`` and ``ghostwire.http3``, so it sits below both and
imports only trio.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from heapq import heapify, heappop, heappush
from typing import Any

import trio

# Entries a heap may hold beyond twice its live ones (see Deadlines._rebuild_at).
_SLACK = 64

#: One wait's entry, from :meth:`Deadlines.watch` to :meth:`Deadlines.done`:
#: ``[deadline, order, target]``, a list rather than an object of a class of
#: its own (no ``__init__`` to run: 0.57 us per watch and done against 0.69,
#: a clock reading included, min of 7 x 50,000). Lists compare item by item
#: and ``order`` is unique, so the heap never compares targets. Once the
#: wait ends the target gives way to ``_ENDED``, or ``_EXPIRED`` if its
#: deadline passed first.
Watch = list[Any]

_ENDED: Any = object()
_EXPIRED: Any = object()


class Deadlines:
    """The deadlines of waits in flight, and the task that enforces them (:meth:`run`)."""

    def __init__(self, on_expired: Callable[[Any], object], name: str = "deadlines") -> None:
        self._on_expired = on_expired
        self._name = name  # the task's
        self._heap: list[Watch] = []
        self._order = itertools.count()  # ties: first registered, first expired
        # Rebuild the heap past this many entries: twice the live ones at the
        # last rebuild, and _SLACK. (No count of live waits kept on every
        # watch and done: 0.49 -> 0.43 us per watch.)
        self._rebuild_at = _SLACK
        self._sleep: trio.CancelScope | None = None  # run()'s wait for the earliest deadline
        # Its deadline (-inf while run() does not sleep): the scope's own is a
        # property of trio's, read on every watch (0.57 -> 0.49 us per watch).
        self._wake_at = -math.inf
        self._nursery: trio.Nursery | None = None  # where run() starts, on first use
        self.running = False

    @property
    def available(self) -> bool:
        """Whether :meth:`watch` may be used: a nursery is attached."""
        return self._nursery is not None

    def attach(self, nursery: trio.Nursery | None) -> None:
        """Run the task in ``nursery`` once a wait needs it (None: no more)."""
        self._nursery = nursery

    @property
    def live(self) -> int:
        """Waits registered and not ended (counted: for tests and introspection)."""
        return sum(1 for watch in self._heap if watch[2] is not _ENDED)

    @property
    def held(self) -> int:
        """Entries in the heap (live, and ended ones not dropped yet)."""
        return len(self._heap)

    def watch(self, deadline: float, target: Any) -> Watch:
        """Call ``on_expired(target)`` at ``deadline`` unless :meth:`done`
        comes first. Only while :attr:`available`."""
        if not self.running:
            assert self._nursery is not None
            self._nursery.start_soon(self.run, name=self._name)
            self.running = True  # (it picks up this deadline as it starts)
        heap = self._heap
        if len(heap) > self._rebuild_at:
            self._compact()
            heap = self._heap  # (rebuilt: a new list)
        watch = [deadline, next(self._order), target]
        heappush(heap, watch)
        if deadline < self._wake_at:  # earlier than any other: wake run() for it
            self._wake_at = deadline
            self._sleep.deadline = deadline  # type: ignore[union-attr]
        return watch

    def done(self, watch: Watch) -> None:
        """The wait ended (whether or not its deadline passed)."""
        if watch[2] is not _EXPIRED:
            watch[2] = _ENDED  # (its entry may stay a while: not the target)

    @staticmethod
    def expired(watch: Watch) -> bool:
        """Whether the wait's deadline passed first: ``on_expired`` was called."""
        return watch[2] is _EXPIRED

    @staticmethod
    def ended(watch: Watch) -> bool:
        """Whether the wait ended, or its deadline passed."""
        return watch[2] is _ENDED or watch[2] is _EXPIRED

    def _compact(self) -> None:
        self._heap = [watch for watch in self._heap if watch[2] is not _ENDED]
        heapify(self._heap)
        self._rebuild_at = 2 * len(self._heap) + _SLACK

    def _next_deadline(self) -> float:
        heap = self._heap
        while heap and heap[0][2] is _ENDED:
            heappop(heap)
        return heap[0][0] if heap else math.inf

    def _expire(self, now: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= now:
            watch = heappop(heap)
            target = watch[2]
            if target is not _ENDED:
                watch[2] = _EXPIRED
                self._on_expired(target)

    # KI-protected, as every background task of the clients: a Ctrl-C goes
    # to the program's main task, never mid-update into this one.
    @trio.lowlevel.enable_ki_protection
    async def run(self) -> None:
        """Enforce the deadlines until cancelled (its nursery closing)."""
        self.running = True
        try:
            while True:
                deadline = self._next_deadline()
                with trio.CancelScope(deadline=deadline) as sleep:
                    self._sleep = sleep
                    self._wake_at = deadline
                    await trio.sleep_forever()
                self._sleep = None
                self._wake_at = -math.inf
                self._expire(trio.current_time())
        finally:
            self._sleep = None
            self._wake_at = -math.inf
            self.running = False


__all__ = ["Deadlines", "Watch"]
