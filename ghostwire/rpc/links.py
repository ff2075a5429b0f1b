"""The connections of one endpoint, and how a call picks one.

Theory of operation
-------------------
An endpoint has one *primary* connection, which its
:class:`~.supervisor.EndpointSupervisor` keeps up (backoff, describe,
health, GOAWAY), and, while the primary is READY, up to
``max_connections_per_endpoint - 1`` *extra* connections, opened only when
the stream limit binds:

* A connection is **saturated** when it has no stream credit left: the
  peer's MAX_STREAMS for bidirectional streams (RFC 9000 §4.6, §19.11) is
  used up by the calls and subscriptions in flight, so a new call there
  would wait for a stream. A call takes its stream as soon as it is given a
  connection (no schedule point in between, without client interceptors),
  so the credit seen by the next call is exact.
* :meth:`~.supervisor.EndpointSupervisor.acquire` gives a call the least
  loaded connection that is not saturated (the primary wins ties, so
  extras empty first). When every connection is saturated it opens an
  extra one (one at a time, up to the bound) and waits for it, or for a
  call to end; at the bound it queues the call on the least loaded
  connection, where QUIC's MAX_STREAMS makes it wait for a stream.
* While calls wait for an extra connection, each saturated connection has
  one task waiting for its stream credit (``Connection.wait_stream_credit``):
  a MAX_STREAMS that frees a stream wakes those calls, so they take it
  instead of waiting for the new connection (a reset call's stream comes
  back a round trip after the call left).
* An extra connection is closed once it has had no call for
  ``extra_connection_idle`` seconds, or when it breaks (it is not
  reconnected: it is opened again when needed), or when the primary ends
  (a GOAWAY or a broken primary ends the whole endpoint).

This module is the bookkeeping (which connection, how loaded); the tasks
that open and close extra connections, and those waiting for credit, run in
the supervisor's nursery.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from .. import quic

if TYPE_CHECKING:
    from .client import RpcConnection


class Link:
    """One QUIC connection of an endpoint and the calls running on it."""

    def __init__(self, conn: quic.Connection, rpc: RpcConnection, key: int) -> None:
        self.conn = conn
        self.rpc = rpc
        self.key = key  # names the connection in the endpoint's metrics
        self.active = 0  # calls and subscriptions on it (running or waiting for a stream)
        self.changed = trio.lowlevel.ParkingLot()  # a call entered or left, or it ended
        self.ended = trio.Event()
        self.watching = False  # a task waits for its stream credit

    @property
    def saturated(self) -> bool:
        """No stream credit left: a new call here would wait for a stream."""
        return self.conn.core.streams.streams_available(True) == 0

    # (Each call enters and leaves: wake only when somebody waits.)
    def enter(self) -> None:
        self.active += 1
        if self.changed:
            self.changed.unpark_all()

    def leave(self) -> None:
        self.active -= 1
        if self.changed:
            self.changed.unpark_all()

    def end(self) -> None:
        self.ended.set()
        self.changed.unpark_all()


class Links:
    """The connections of one endpoint; see the module docstring."""

    def __init__(self, max_connections: int) -> None:
        if max_connections < 1:
            raise ValueError("max_connections_per_endpoint must be at least 1")
        self.max_connections = max_connections
        self.all: list[Link] = []  # the primary first
        self.opening = 0  # extra connections being opened
        self.accepting = False  # False: no new calls (not READY, or GOAWAY)
        self.grow_after = 0.0  # no extra connection before this time (after a failure)
        self.capacity_changed = trio.lowlevel.ParkingLot()
        self._next_key = 0

    def new_key(self) -> int:
        self._next_key += 1
        return self._next_key

    @property
    def active(self) -> int:
        """Calls and subscriptions on all the endpoint's connections."""
        return sum(link.active for link in self.all)

    def find(self, rpc: RpcConnection) -> Link | None:
        for link in self.all:
            if link.rpc is rpc:
                return link
        return None

    def add(self, link: Link) -> None:
        self.all.append(link)
        self.capacity_changed.unpark_all()

    def remove(self, link: Link) -> None:
        if link in self.all:
            self.all.remove(link)
        link.end()
        self.capacity_changed.unpark_all()

    def stop(self) -> None:
        """No new calls: the calls waiting for capacity (an extra connection)
        get none at once, so they fail as not started and go elsewhere."""
        self.accepting = False
        self.capacity_changed.unpark_all()

    def clear(self) -> None:
        for link in self.all:
            link.end()
        self.all.clear()
        self.stop()

    def pick(self) -> tuple[Link | None, bool]:
        """The connection for a new call and whether it has stream credit:
        the least loaded one with credit; else (all saturated) the least
        loaded one, where the call would wait for a stream. One pass, since
        every call comes here: (None, False) when there is no connection."""
        best: Link | None = None
        best_free: Link | None = None
        for link in self.all:
            if link.ended.is_set():
                continue
            active = link.active
            if best is None or active < best.active:
                best = link
            if (best_free is None or active < best_free.active) and not link.saturated:
                best_free = link
        if best_free is not None:
            return best_free, True
        return best, False

    def may_grow(self, now: float) -> bool:
        """Whether to open an extra connection now: every connection is
        saturated (the caller checked), none is being opened, the bound
        allows one more, and no recent attempt failed."""
        return (
            self.accepting
            and not self.opening
            and len(self.all) < self.max_connections
            and now >= self.grow_after
        )

    def watch_credit(self, nursery: trio.Nursery | None) -> None:
        """Calls wait for capacity: wake them when a saturated connection
        gets stream credit back (one task per connection, run by ``nursery``;
        none without one)."""
        if nursery is None:
            return
        for link in self.all:
            if not link.watching and not link.ended.is_set() and link.saturated:
                link.watching = True
                nursery.start_soon(self._watch_credit, link, name=f"rpc credit {link.key}")

    # KI-protected, as every background task of the RPC client: a Ctrl-C
    # goes to the program's main task, never mid-update into this one
    # (it failed the calls in flight beside the KeyboardInterrupt).
    @trio.lowlevel.enable_ki_protection
    async def _watch_credit(self, link: Link) -> None:
        try:
            await link.conn.wait_stream_credit()
        except quic.QuicError:
            # Closed: it is removed (which wakes the waiters), and stays
            # marked so no task is started again for it.
            return
        link.watching = False
        if self.capacity_changed:
            self.capacity_changed.unpark_all()

    def left(self, link: Link) -> None:
        link.leave()
        if self.capacity_changed:
            # A stream is (about to be) free. Every waiter looks (each one
            # checks the credit again): waking only one loses the wakeup
            # when that one is cancelled or the peer's credit (RFC 9000
            # §19.11, see watch_credit) freed more streams than one.
            self.capacity_changed.unpark_all()


__all__ = ["Link", "Links"]
