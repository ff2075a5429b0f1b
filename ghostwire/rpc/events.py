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

    __slots__ = ("_closed", "_error", "_events", "_lot", "dropped", "peak", "policy", "size")

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

    def __len__(self) -> int:
        return len(self._events)

    async def put(self, event: Event) -> None:
        """Add an event, applying the policy when the buffer is full."""
        events = self._events
        while len(events) >= self.size and not self._closed:
            if self.policy == "drop_oldest":
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
        self._lot.unpark_all()
        await trio.lowlevel.checkpoint()

    async def get(self) -> Event:
        """The oldest event; :class:`trio.EndOfChannel` once closed and drained,
        or the error the buffer was closed with (the buffered events are then
        discarded: the subscription failed)."""
        events = self._events
        while True:
            if self._error is not None:
                events.clear()
                raise self._error
            if events:
                event = events.popleft()
                self._lot.unpark_all()
                return event
            if self._closed:
                raise trio.EndOfChannel
            await self._lot.park()

    def close(self, error: RpcError | None = None) -> None:
        """No more events; ``error`` (if any) is what the consumer will see."""
        if not self._closed:
            self._closed = True
            self._error = error
        self._lot.unpark_all()


__all__ = ["DEFAULT_BUFFER", "POLICIES", "Event", "EventBuffer", "Policy"]
