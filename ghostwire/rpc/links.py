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
  extra one (one at a time, up to the bound) and waits for it, for a call
  to end, or for the peer's MAX_STREAMS to free a stream on a connection it
  has (one task per saturated connection waits for that credit while calls
  wait: :meth:`Links.wait_for_capacity`), whichever comes first. At the
  bound it queues the call on the least loaded connection, where QUIC's
  MAX_STREAMS makes it wait for a stream.
* An extra connection is closed once it has had no call for
  ``extra_connection_idle`` seconds, or when it breaks (it is not
  reconnected: it is opened again when needed), or when the primary ends
  (a GOAWAY or a broken primary ends the whole endpoint).

This module is the bookkeeping (which connection, how loaded); the tasks
that open and close extra connections run in the supervisor.
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
        self.watching = False  # a task waits for its stream credit (Links.wait_for_capacity)

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

    async def wait_for_capacity(self, nursery: trio.Nursery | None) -> None:
        """Wait (every connection saturated, an extra one opening) until
        capacity may have changed: a connection came or went, a call ended,
        no new calls are taken, or stream credit arrived on a connection
        (the peer's MAX_STREAMS, RFC 9000 §19.11: when a call's stream was
        reset, its credit comes back a round trip after the call left). The
        credit is waited for by one task per connection, in ``nursery``
        (the endpoint's), while somebody waits here."""
        if nursery is not None:
            for link in self.all:
                if not link.watching and not link.ended.is_set():
                    link.watching = True
                    nursery.start_soon(self._watch_credit, link)
        await self.capacity_changed.park()

    async def _watch_credit(self, link: Link) -> None:
        """While calls wait for capacity: wake them when ``link`` has a free stream."""
        try:
            while self.capacity_changed and not link.ended.is_set() and not link.conn.is_closed:
                if link.saturated:
                    await _stream_credit(link.conn)
                else:
                    self.capacity_changed.unpark_all()
        finally:
            link.watching = False

    def left(self, link: Link) -> None:
        link.leave()
        if self.capacity_changed:
            # A stream is (about to be) free. Every waiter looks (each one
            # checks the credit again): waking only one loses the wakeup
            # when that one is cancelled or the peer's credit (RFC 9000
            # §19.11, which wakes nobody) freed more streams than one.
            self.capacity_changed.unpark_all()


async def _stream_credit(conn: quic.Connection) -> None:
    """Return when the peer may have raised our stream limit, or ``conn`` closed.

    quic.Connection has no public wait for stream credit: its ``open_stream``
    waits in a parking lot that MAX_STREAMS unparks, as many tasks as there
    are new streams (and all of them when the connection closes). We wait
    among those openers; woken, we pass the wakeup on (one more unpark), so
    an opener queued behind us still gets its turn.
    """
    lot = conn._opener_lot(True)
    await lot.park()
    lot.unpark()


__all__ = ["Link", "Links"]
