"""Event channels: :class:`Event` and the bounded buffer of one subscription.

A channel's handler is an async generator; a task of the subscription pulls
events from it into an :class:`EventBuffer` of fixed size while the transport
drains the buffer to the subscriber (as fast as flow control allows). When
the subscriber is slower than the producer, the buffer fills and the
channel's policy decides:

* ``backpressure`` (default): the generator waits at its ``yield``;
* ``drop_oldest``: the oldest buffered event is dropped (counted);
* ``end``: the subscription ends with RESOURCE_EXHAUSTED.

Either way a subscription holds at most ``size`` events: memory stays bounded.

The producer does not yield after every event: a generator that has events
ready fills the buffer in one scheduler turn (yielding once it is full), and
the sender then writes them all in one turn, so the events of a burst share
QUIC packets instead of costing a task switch, a flush and a datagram each.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Literal

import trio

from .status import RpcError, Status

Policy = Literal["backpressure", "drop_oldest", "end"]
POLICIES: tuple[Policy, ...] = ("backpressure", "drop_oldest", "end")
DEFAULT_BUFFER = 64


@dataclass(frozen=True, slots=True)
class Event:
    """One event: ``data`` (any msgpack value) and the application's ``cursor``
    (block number, log index, ...; None if the channel has none). A
    subscriber that resubscribes ``after=cursor`` resumes after this event."""

    data: Any
    cursor: Any = None


class EventBuffer:
    """A bounded FIFO of events between one producer and one consumer."""

    __slots__ = (
        "_closed",
        "_consumer_woken",
        "_error",
        "_events",
        "_lot",
        "dropped",
        "peak",
        "policy",
        "size",
    )

    def __init__(self, size: int = DEFAULT_BUFFER, policy: Policy = "backpressure") -> None:
        if size < 1:
            raise ValueError("an event buffer holds at least one event")
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, not {policy!r}")
        self.size = size
        self.policy = policy
        self.dropped = 0
        self.peak = 0  # the most events ever buffered at once
        self._events: deque[Event] = deque()
        self._lot = trio.lowlevel.ParkingLot()  # the one side that waits
        self._closed = False
        self._error: RpcError | None = None
        # The consumer was parked in get, is woken, and has not run yet: a
        # full buffer then means "not drained yet", not "subscriber too slow".
        self._consumer_woken = False

    def __len__(self) -> int:
        return len(self._events)

    async def put(self, event: Event) -> None:
        """Add an event, applying the policy when the buffer is full.

        A schedule point only when the buffer is full (or the producer waits):
        at most ``size`` events go in between two, so a producer that never
        awaits elsewhere still lets the sender (and cancellation) in.
        """
        events = self._events
        while len(events) >= self.size and not self._closed:
            if self._consumer_woken:
                await self._lot.park()  # let the woken consumer drain first
            elif self.policy == "drop_oldest":
                events.popleft()
                self.dropped += 1
            elif self.policy == "end":
                self.close(
                    RpcError(
                        Status.RESOURCE_EXHAUSTED,
                        f"subscriber too slow: more than {self.size} events waiting",
                    )
                )
                raise self._error  # type: ignore[misc]
            else:
                await self._lot.park()
        if self._closed:
            raise trio.ClosedResourceError("the subscription has ended")
        events.append(event)
        if len(events) > self.peak:
            self.peak = len(events)
        if self._lot:  # the consumer waits in get
            self._consumer_woken = True
            self._lot.unpark_all()
        if len(events) >= self.size:
            await trio.lowlevel.checkpoint()

    async def get(self) -> Event:
        """The oldest event; :class:`trio.EndOfChannel` once closed and drained,
        or the error the buffer was closed with (the buffered events are then
        discarded: the subscription failed)."""
        await self.wait_ready()
        return self.take_one()

    def take_one(self) -> Event:
        """Remove and return the oldest event (after :meth:`wait_ready`)."""
        event = self._events.popleft()
        if self._lot:
            self._lot.unpark_all()  # a producer waiting for room
        return event

    async def wait_ready(self) -> deque[Event]:
        """The buffered events, once there is at least one, to read in place
        (oldest first) and then :meth:`take`; the end and errors as :meth:`get`."""
        events = self._events
        while True:
            if self._error is not None:
                events.clear()
                raise self._error
            if events:
                return events
            if self._closed:
                raise trio.EndOfChannel
            try:
                await self._lot.park()
            finally:
                self._consumer_woken = False

    def take(self, count: int) -> None:
        """Remove the oldest ``count`` events (the consumer has sent them)."""
        events = self._events
        if count >= len(events):
            events.clear()
        else:
            for _ in range(count):
                events.popleft()
        if self._lot:
            self._lot.unpark_all()  # a producer waiting for room

    def close(self, error: RpcError | None = None) -> None:
        """No more events; ``error`` (if any) is what the consumer will see."""
        if not self._closed:
            self._closed = True
            self._error = error
        self._lot.unpark_all()


__all__ = ["DEFAULT_BUFFER", "POLICIES", "Event", "EventBuffer", "Policy"]
