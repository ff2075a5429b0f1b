"""Connection states as in gRPC, with changes a task can await.

Theory of operation
-------------------
Each endpoint of a client has one :class:`StateHolder`. The supervisor that
owns the endpoint's connection moves it through gRPC's five connectivity
states (``doc/connectivity-semantics-and-api.md``)::

    IDLE --> CONNECTING --> READY --> IDLE (GOAWAY, idle)
      ^          |            |
      |          v            v
      +--- TRANSIENT_FAILURE <+        any state --> SHUTDOWN (final)

The allowed moves are data (:data:`TRANSITIONS`); anything else is a bug in
the supervisor and raises :class:`InvalidStateTransition`.

Watchers never poll: :meth:`StateHolder.wait_for_state_change` parks on a
:class:`trio.Event` that the next change sets (then a fresh event takes its
place), like gRPC's ``WaitForStateChange(source_state)``. A timeout is the
caller's cancel scope. Setting a state is synchronous, so the supervisor can
call it from anywhere, and an ``on_change`` hook lets metrics follow along.

This module also holds :class:`ServingStatus`, the health answer of
``grpc.health.v1`` (numbered as in its ``health.proto``), since the balancer
reads it beside the connection state.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping

import trio

from ...errors import GhostwireError

__all__ = [
    "TRANSITIONS",
    "ConnectivityState",
    "InvalidStateTransition",
    "ServingStatus",
    "StateHolder",
    "StateShutdown",
]


class ConnectivityState(enum.Enum):
    """gRPC's channel connectivity states."""

    IDLE = "IDLE"
    CONNECTING = "CONNECTING"
    READY = "READY"
    TRANSIENT_FAILURE = "TRANSIENT_FAILURE"
    SHUTDOWN = "SHUTDOWN"


class ServingStatus(enum.IntEnum):
    """A health check's answer, numbered as ``grpc.health.v1.HealthCheckResponse``."""

    UNKNOWN = 0
    SERVING = 1
    NOT_SERVING = 2
    SERVICE_UNKNOWN = 3


_S = ConnectivityState

#: Allowed moves, after gRPC's connectivity-semantics table. READY -> IDLE is
#: a GOAWAY or an idle timeout; TRANSIENT_FAILURE -> CONNECTING is the end of
#: a backoff wait; TRANSIENT_FAILURE -> IDLE is a supervisor that reconnects
#: only on demand. SHUTDOWN is final.
TRANSITIONS: Mapping[ConnectivityState, frozenset[ConnectivityState]] = {
    _S.IDLE: frozenset({_S.CONNECTING, _S.SHUTDOWN}),
    _S.CONNECTING: frozenset({_S.READY, _S.TRANSIENT_FAILURE, _S.IDLE, _S.SHUTDOWN}),
    _S.READY: frozenset({_S.IDLE, _S.TRANSIENT_FAILURE, _S.SHUTDOWN}),
    _S.TRANSIENT_FAILURE: frozenset({_S.CONNECTING, _S.IDLE, _S.SHUTDOWN}),
    _S.SHUTDOWN: frozenset(),
}


class InvalidStateTransition(GhostwireError):
    """A move the state table does not allow (a bug in the code driving the states)."""

    def __init__(self, old: ConnectivityState, new: ConnectivityState) -> None:
        super().__init__(f"connectivity state cannot go from {old.name} to {new.name}")
        self.old = old
        self.new = new


class StateShutdown(GhostwireError):
    """Waiting for a change away from SHUTDOWN, which is final: it would never return."""


StateChangeHook = Callable[[ConnectivityState, ConnectivityState], None]


class _Change:
    """The next change of a holder: set once, then linked to the one after it.

    Waiters keep their own reference, so a state that comes and goes before a
    waiter runs is still seen, in order; the holder keeps only the newest.
    """

    __slots__ = ("event", "new_state", "next")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.new_state: ConnectivityState | None = None
        self.next: _Change | None = None


class StateHolder:
    """One endpoint's connectivity state; changes are awaitable.

    ``on_change(old, new)`` runs synchronously inside :meth:`set` for every
    real change (metrics, logging); it must not block.
    """

    def __init__(
        self,
        initial: ConnectivityState = ConnectivityState.IDLE,
        *,
        on_change: StateChangeHook | None = None,
    ) -> None:
        self._state = initial
        self._next_change = _Change()
        self._on_change = on_change
        self._changes = 0

    @property
    def state(self) -> ConnectivityState:
        return self._state

    @property
    def changes(self) -> int:
        """How many times the state changed (a cheap version number)."""
        return self._changes

    def set(self, new: ConnectivityState) -> bool:
        """Move to ``new``; return whether the state changed.

        Setting the current state again is a no-op (returns False), so a
        supervisor may repeat itself. A move the table forbids raises
        :class:`InvalidStateTransition`.
        """
        old = self._state
        if new is old:
            return False
        if new not in TRANSITIONS[old]:
            raise InvalidStateTransition(old, new)
        self._state = new
        self._changes += 1
        change = self._next_change
        change.new_state = new
        change.next = self._next_change = _Change()
        change.event.set()
        if self._on_change is not None:
            self._on_change(old, new)
        return True

    def shutdown(self) -> None:
        """Move to SHUTDOWN (allowed from every state; idempotent)."""
        self.set(ConnectivityState.SHUTDOWN)

    async def wait_for_state_change(self, current: ConnectivityState) -> ConnectivityState:
        """Return a state other than ``current``: at once if the state already
        differs, else the state of the next change.

        Like gRPC's ``WaitForStateChange(source_state)``; a timeout is the
        caller's cancel scope. Waiting to leave SHUTDOWN raises
        :class:`StateShutdown` rather than hang.
        """
        if self._state is not current:
            await trio.lowlevel.checkpoint()
            return self._state
        if current is ConnectivityState.SHUTDOWN:
            raise StateShutdown("the connection is shut down; its state will not change")
        change = self._next_change
        await change.event.wait()
        assert change.new_state is not None  # set() fills it before setting the event
        return change.new_state

    async def wait_for(self, *targets: ConnectivityState) -> ConnectivityState:
        """Return once the state is one of ``targets`` (at once if it already is).

        Every change after the call is seen in order, so a target state that
        is entered and left before this task runs still counts. Raises
        :class:`StateShutdown` if SHUTDOWN comes first and is not a target.
        """
        if not targets:
            raise ValueError("wait_for needs at least one target state")
        if self._state in targets:
            await trio.lowlevel.checkpoint()
            return self._state
        change = self._next_change
        state = self._state
        while True:
            if state is ConnectivityState.SHUTDOWN:
                raise StateShutdown(
                    "the connection shut down while waiting for "
                    + " or ".join(t.name for t in targets)
                )
            await change.event.wait()
            assert change.new_state is not None and change.next is not None
            state = change.new_state
            if state in targets:
                return state
            change = change.next

    def __repr__(self) -> str:
        return f"<StateHolder {self._state.name}>"
