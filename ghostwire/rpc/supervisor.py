"""One endpoint of a client pool: its connection, kept alive by a supervisor task.

Theory of operation
-------------------
:class:`EndpointSupervisor.run` runs in the client's nursery for as long as
the client is open. It loops::

    connect (with backoff) -> describe -> READY -> wait for the end -> close

* **Connecting** follows :class:`~.resilience.Backoff` (the loop of
  :func:`~.resilience.connect_with_backoff`, written out here because a QUIC
  connection is a context manager that holds a nursery): capped exponential
  backoff with full jitter between attempts, each attempt's handshake
  bounded by its connect deadline. Each attempt moves the endpoint to
  CONNECTING, each failure to TRANSIENT_FAILURE.
* **Describe**: once connected, one ``rpc.describe`` call tells which methods
  the server marks idempotent and whether it is serving (see
  docs/rpc-client.md, "Built-in services"). A server without it is served as
  usual, with nothing known.
* **The end** of a connection is any of: the connection closed (by the
  peer, or a transport error); a ping unanswered for ``ping_timeout`` while
  calls or subscriptions are open on it (a peer that vanished without a
  word; the timeout counts the loop's time to listen, see
  :func:`answers_ping`, so a starved loop is not taken for a silent peer);
  or a GOAWAY (the server refused a call because it is draining), after
  which the endpoint takes no new calls, lets the calls in flight finish,
  closes and reconnects after a backoff wait (READY -> IDLE).

* **Extra connections**: while every connection to the endpoint has used
  up its stream credit, :meth:`EndpointSupervisor.acquire` opens one more
  (up to ``max_connections_per_endpoint``), served by a task in the
  primary connection's nursery until it is idle for
  ``extra_connection_idle``, breaks, or the primary ends (see links.py).

Nothing here outlives the client: the loop and its helper tasks run in the
client's nursery and closing the client cancels them, mid-attempt or mid-wait,
closing the socket with them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Collection
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

import trio

from .. import quic
from .client import RpcConnection
from .links import Link, Links
from .resilience import (
    DEFAULT_CONNECT_BACKOFF,
    Backoff,
    BackoffPolicy,
    CircuitPolicy,
    ConnectAttempt,
    ConnectivityState,
    EndpointHandle,
    EndpointMetrics,
    RetryPolicy,
    ServingStatus,
)
from .resilience.backoff import RandomSource
from .resilience.health import parse_status
from .resilience.runners import ConnectTimeout, single_error, without_transient_errors
from .status import RpcError

log = logging.getLogger("ghostwire.rpc")

Connector = Callable[[str], AbstractAsyncContextManager[quic.Connection]]
RpcFactory = Callable[[quic.Connection], RpcConnection]

#: The built-in method a client asks right after connecting.
DESCRIBE_METHOD = "rpc.describe"
DESCRIBE_TIMEOUT = 5.0
#: The built-in event channel a client follows for the server's health.
HEALTH_WATCH_METHOD = "health.watch"
#: The longest a connection being replaced may take to close.
CLOSE_WAIT = 2.0


@dataclass(frozen=True, slots=True)
class PoolOptions:
    """How a client pool behaves; every default is in docs/rpc-client.md's table."""

    balancing: str = "least_outstanding"
    backoff: BackoffPolicy = DEFAULT_CONNECT_BACKOFF
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    retry_tokens: float = 100.0
    retry_token_ratio: float = 0.1
    circuit: CircuitPolicy = field(default_factory=CircuitPolicy)
    #: A busy connection (calls or subscriptions open) is pinged this often...
    ping_interval: float = 0.5
    #: ...and is broken if a ping is unanswered this long (noticed within ~2 s).
    ping_timeout: float = 1.5
    #: How long a call waits for a first connection while an endpoint is
    #: still connecting (its own deadline is the outer bound).
    connect_wait: float = 20.0
    #: How long, after a GOAWAY, calls in flight may take before the
    #: connection is closed anyway.
    drain_grace: float = 30.0
    #: Whether ``connect`` raises the first endpoint's error when no endpoint
    #: could be reached on the first try (False: start anyway, keep trying).
    connect_required: bool = True
    #: Whether to follow each server's ``health.watch`` (skip NOT_SERVING).
    health_watch: bool = True
    #: At most this many connections to one endpoint: more than one only
    #: while every connection's stream limit is used up (see links.py).
    max_connections_per_endpoint: int = 4
    #: An extra connection with no call for this long is closed.
    extra_connection_idle: float = 10.0

    def __post_init__(self) -> None:
        if self.max_connections_per_endpoint < 1:
            raise ValueError("max_connections_per_endpoint must be at least 1")


class EndpointSupervisor:
    """Keeps one endpoint's connection up; see the module docstring."""

    def __init__(
        self,
        handle: EndpointHandle,
        metrics: EndpointMetrics,
        options: PoolOptions,
        connector: Connector,
        rpc_factory: RpcFactory,
        *,
        on_learned: Callable[[Collection[str]], None] = lambda names: None,
        on_change: Callable[[], None] = lambda: None,
        rng: RandomSource | None = None,
    ) -> None:
        self.handle = handle
        self.metrics = metrics
        self.options = options
        self.backoff = Backoff(options.backoff, rng)
        self.rpc: RpcConnection | None = None
        self.last_error: BaseException | None = None
        self.attempts = 0  # connection attempts made (for tests and metrics)
        self._connector = connector
        self._rpc_factory = rpc_factory
        self._on_learned = on_learned
        self._on_change = on_change  # health or connections changed
        self.links = Links(options.max_connections_per_endpoint)
        self._activity = trio.lowlevel.ParkingLot()  # a call entered or left
        self._nursery: trio.Nursery | None = None  # the primary's: extra connections run here
        self._ended = trio.Event()
        self._goaway = False
        self._connected_before = False

    @property
    def address(self) -> str:
        return self.handle.address

    @property
    def state(self) -> ConnectivityState:
        return self.handle.state.state

    @property
    def taking_calls(self) -> bool:
        """Whether a call may go here now. Not while the connection winds
        down: from the moment it ended (closed, a ping unanswered, GOAWAY)
        until its nursery closed, the endpoint is still READY but takes none."""
        return self.rpc is not None and self.links.accepting

    @property
    def coming(self) -> bool:
        """Whether the endpoint may take calls soon: connecting, not tried
        yet, or READY while its ended connection closes (a reconnect
        follows). Not after a GOAWAY (READY or IDLE): that server is going away."""
        state = self.state
        return (
            state is ConnectivityState.CONNECTING
            or (state is ConnectivityState.IDLE and not self.attempts)
            or (state is ConnectivityState.READY and not self.taking_calls and not self._goaway)
        )

    # -- what the pool tells the supervisor ------------------------------------

    async def acquire(self) -> Link | None:
        """A connection for one call, counted on it until :meth:`release`
        (links.py: the least loaded one with a free stream; an extra
        connection when all are saturated). None: the endpoint takes no
        new calls (not READY, or draining); the call never started."""
        links = self.links
        while links.accepting:
            link, free = links.pick()
            if not free:
                if links.may_grow(trio.current_time()) and self._nursery is not None:
                    links.opening += 1
                    self._nursery.start_soon(self._run_extra, name=f"rpc extra {self.address}")
                if links.opening:
                    links.watch_credit(self._nursery)  # MAX_STREAMS wakes us too
                    await links.capacity_changed.park()
                    continue
                # At the bound: the call waits on the least loaded one for a stream.
            if link is None:  # pragma: no cover - accepting implies a primary
                return None
            link.enter()
            if self._activity:
                self._activity.unpark_all()
            return link
        return None

    def release(self, link: Link) -> None:
        """The call :meth:`acquire` counted on ``link`` ended."""
        self.links.left(link)
        if self._activity:
            self._activity.unpark_all()

    def goaway(self, rpc: RpcConnection) -> None:
        """The server of ``rpc`` said it is shutting down: no new calls
        here; reconnect once the calls in flight are done."""
        if self.links.find(rpc) is not None and not self._goaway:
            log.info("endpoint %s is draining (GOAWAY); moving new calls elsewhere", self.address)
            self._goaway = True
            self.links.stop()
            self.handle.serving = ServingStatus.NOT_SERVING
            self._ended.set()
            self._on_change()  # calls waiting for an endpoint look again now

    def connection_failed(self, rpc: RpcConnection) -> None:
        """A call saw ``rpc`` fail at the transport level: check it now."""
        link = self.links.find(rpc)
        if link is None or not rpc.is_closed:
            return
        if rpc is self.rpc:
            self._ended.set()
        else:  # an extra connection: only it ends
            self.links.remove(link)

    # -- the loop ----------------------------------------------------------------

    # KI-protected, as every background task of the RPC client: a Ctrl-C
    # goes to the program's main task, never mid-update into this one
    # (it failed the calls in flight beside the KeyboardInterrupt).
    @trio.lowlevel.enable_ki_protection
    async def run(self) -> None:
        """Connect, serve, reconnect, until cancelled (the client closing)."""
        try:
            while True:
                attempt = self.backoff.plan(trio.current_time())
                self._on_attempt(attempt)
                try:
                    connected = await self._connect_and_serve(attempt)
                except BaseException as exc:
                    rest = without_transient_errors(exc)
                    if rest is exc:
                        raise
                    if rest is not None:
                        raise rest from None  # the Cancelled of a client closing
                    assert isinstance(exc, Exception)  # only transient errors were in it
                    connected, error = False, single_error(exc)
                else:
                    error = ConnectTimeout(
                        f"connection attempt timed out after "
                        f"{attempt.connect_deadline - attempt.start:.3g} s"
                    )
                if not connected:
                    self._on_failure(attempt, error)
                    await trio.sleep_until(attempt.retry_at)
                elif self._goaway:
                    self._goaway = False
                    # The server is going down: let it, rather than reconnect at once.
                    await trio.sleep(self.backoff.next_wait())
        finally:
            self.rpc = None
            self.handle.state.shutdown()

    async def _connect_and_serve(self, attempt: ConnectAttempt) -> bool:
        """One attempt: connect under its deadline, then serve the connection
        until it ends. Returns whether it connected (False: the deadline)."""
        # The deadline bounds the handshake only: it is lifted once connected.
        # (The connector is a context manager holding a nursery, so the
        # attempt and the connection's life share one scope.)
        with trio.CancelScope(deadline=attempt.connect_deadline) as scope:
            async with self._connector(self.address) as conn:
                scope.deadline = math.inf
                self.backoff.reset()
                try:
                    await self._serve(conn)
                finally:
                    with trio.move_on_after(CLOSE_WAIT) as closing:
                        closing.shield = True
                        await conn.aclose()
                return True
        return False

    def _on_attempt(self, attempt: ConnectAttempt) -> None:
        self.attempts += 1
        self.handle.state.set(ConnectivityState.CONNECTING)

    def _on_failure(self, attempt: ConnectAttempt, error: Exception) -> None:
        self.last_error = error
        log.debug("connecting to %s failed: %s", self.address, error)
        if self.state is not ConnectivityState.IDLE:  # IDLE: a GOAWAY already said why
            self.handle.state.set(ConnectivityState.TRANSIENT_FAILURE)

    async def _serve(self, conn: quic.Connection) -> None:
        rpc = self._rpc_factory(conn)
        self._ended = trio.Event()
        self._goaway = False
        # After a 0-RTT connect, calls go at once, in 0-RTT, beside the
        # description (whose reply comes with the handshake's completion).
        early = not conn.handshake_complete
        if not early:
            await self._describe(rpc)
        self.handle.breaker.reset()  # a new connection starts with a closed circuit
        if self._connected_before:
            self.metrics.reconnected()
        self._connected_before = True
        primary = Link(conn, rpc, self.links.new_key())
        links = self.links
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self.rpc = rpc
                links.add(primary)
                links.accepting = True
                self.handle.state.set(ConnectivityState.READY)
                nursery.start_soon(self._watch_closed, conn)
                nursery.start_soon(self._ping_while_busy, primary, self._silent)
                if early:
                    nursery.start_soon(self._describe, rpc)
                if self.options.health_watch:
                    nursery.start_soon(self._watch_health, rpc)
                await self._ended.wait()
                links.stop()
                if self._goaway:
                    # Calls in flight finish (on every connection); new ones go elsewhere.
                    self.handle.state.set(ConnectivityState.IDLE)
                    with trio.move_on_after(self.options.drain_grace):
                        while links.active and not conn.is_closed:
                            await self._activity.park()
                nursery.cancel_scope.cancel()
        finally:
            self._nursery = None
            self.rpc = None
            links.clear()
            self._closed(primary)
        # (A GOAWAY may also arrive while the nursery winds down.)
        if self.state is ConnectivityState.READY:
            lost = ConnectivityState.IDLE if self._goaway else ConnectivityState.TRANSIENT_FAILURE
            self.handle.state.set(lost)

    def _silent(self) -> None:
        """The primary connection's peer did not answer a ping."""
        self.last_error = TimeoutError("ping unanswered")
        self._ended.set()

    def _closed(self, link: Link) -> None:
        """Keep the figures of a connection that ends (metrics never go back)."""
        try:
            self.metrics.observe_transport(link.conn.statistics(), key=link.key)
        except Exception:  # statistics of a torn-down core: keep what we had
            log.debug("no statistics from the old connection to %s", self.address)
        self.metrics.connection_replaced(key=link.key)
        self._on_change()

    # -- extra connections (links.py) ------------------------------------------

    @trio.lowlevel.enable_ki_protection
    async def _run_extra(self) -> None:
        """Open one more connection to the endpoint and serve calls on it
        until it has been idle ``extra_connection_idle`` s, breaks, or the
        primary ends (this task runs in the primary's nursery)."""
        links = self.links
        link: Link | None = None
        try:
            with trio.move_on_after(self.options.backoff.min_connect_timeout) as scope:
                async with self._connector(self.address) as conn:
                    scope.deadline = math.inf
                    link = Link(conn, self._rpc_factory(conn), links.new_key())
                    links.opening -= 1
                    if not links.accepting:  # the primary ended meanwhile
                        links.capacity_changed.unpark_all()
                        return
                    links.add(link)
                    self._on_change()
                    try:
                        async with trio.open_nursery() as nursery:
                            nursery.start_soon(self._watch_link, link)
                            nursery.start_soon(self._ping_while_busy, link, link.end)
                            await self._until_idle(link)
                            nursery.cancel_scope.cancel()
                    finally:
                        links.remove(link)
                        self._closed(link)
                        with trio.move_on_after(CLOSE_WAIT) as closing:
                            closing.shield = True
                            await conn.aclose()
        except BaseException as exc:
            rest = without_transient_errors(exc)
            if rest is exc:
                raise
            if rest is not None:
                raise rest from None  # the Cancelled of a client closing
            log.debug("an extra connection to %s failed: %s", self.address, exc)
        finally:
            if link is None:  # not connected: no other try for a while
                links.opening -= 1
                links.grow_after = trio.current_time() + self.options.backoff.initial
                links.capacity_changed.unpark_all()

    async def _until_idle(self, link: Link) -> None:
        """Return once ``link`` ended, or had no call for ``extra_connection_idle``
        s (then it is taken out of the pool at once, so no call picks it)."""
        while not link.ended.is_set():
            if link.active:
                await link.changed.park()
                continue
            with trio.move_on_after(self.options.extra_connection_idle) as idle:
                await link.changed.park()
            if idle.cancelled_caught and not link.active:
                self.links.remove(link)
                return

    @trio.lowlevel.enable_ki_protection
    async def _watch_link(self, link: Link) -> None:
        await link.conn.wait_closed()
        self.links.remove(link)

    @trio.lowlevel.enable_ki_protection
    async def _describe(self, rpc: RpcConnection) -> None:
        """Learn the idempotent methods and the serving status (best effort)."""
        self.handle.serving = ServingStatus.UNKNOWN
        try:
            with trio.move_on_after(DESCRIBE_TIMEOUT):
                reply: Any = await rpc.call(DESCRIBE_METHOD, timeout=DESCRIBE_TIMEOUT)
                if isinstance(reply, dict):
                    names = reply.get("idempotent")
                    if isinstance(names, list):
                        self._on_learned([n for n in names if isinstance(n, str)])
                    self.handle.serving = parse_status(reply.get("health"))
        except RpcError as exc:  # an older server, or an interceptor said no
            log.debug("%s did not describe itself: %s", self.address, exc)

    @trio.lowlevel.enable_ki_protection
    async def _watch_health(self, rpc: RpcConnection) -> None:
        """Follow ``health.watch``: an endpoint saying NOT_SERVING gets no new
        calls (a draining server says so before it starts refusing)."""
        try:
            async with rpc.subscribe(HEALTH_WATCH_METHOD) as events:
                async for event in events:
                    self.handle.serving = parse_status(event.data)
                    self._on_change()
        except (RpcError, quic.QuicError, trio.BrokenResourceError, trio.ClosedResourceError):
            # An older server without it, or the connection ending: the
            # serving status stays as rpc.describe left it.
            pass

    @trio.lowlevel.enable_ki_protection
    async def _watch_closed(self, conn: quic.Connection) -> None:
        await conn.wait_closed()
        self._ended.set()

    @trio.lowlevel.enable_ki_protection
    async def _ping_while_busy(self, link: Link, on_silent: Callable[[], None]) -> None:
        """Ping while calls or subscriptions are open on ``link``; an
        unanswered ping calls ``on_silent`` (a peer that vanished sends no
        CONNECTION_CLOSE)."""
        options = self.options
        while True:
            while not link.active:
                await link.changed.park()
            await trio.sleep(options.ping_interval)
            if not link.active:
                continue
            if not await answers_ping(link.conn, options.ping_timeout):
                log.info(
                    "%s did not answer a ping within %g s; reconnecting",
                    self.address,
                    options.ping_timeout,
                )
                on_silent()
                return


#: An unanswered ping's wait is cut into this many steps (see answers_ping).
PING_STEPS = 10


async def answers_ping(conn: quic.Connection, within: float) -> bool:
    """Whether ``conn``'s peer is heard from after a PING within ``within``
    seconds of this loop's attention (False also when the connection closes).

    The wait is cut into ``PING_STEPS`` steps that each count as their
    nominal length however late they end: a loop starved by its own work
    (ten thousand calls in flight on a loaded machine) overruns them, and a
    reply sitting unread in the socket meanwhile is our delay, not the
    peer's silence. Each step takes at least a scheduler pass, so the peer's
    answer always gets several to come in. A vanished peer is still found:
    after ``within`` seconds on a loop with time to spare, later on a starved one
    (the QUIC idle timeout bounds it in any case).
    """
    outcome: list[bool] = []
    done = trio.Event()

    @trio.lowlevel.enable_ki_protection
    async def ping() -> None:
        try:
            await conn.ping()
            outcome.append(True)
        except quic.QuicError:
            outcome.append(False)  # closed: the connection's watcher ends it
        done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ping)
        step = within / PING_STEPS
        for _ in range(PING_STEPS):
            with trio.move_on_after(step):
                await done.wait()
            if done.is_set():
                break
        nursery.cancel_scope.cancel()
    return outcome == [True]


def remaining(deadline: float) -> float | None:
    """Seconds left before ``deadline`` (None for no deadline)."""
    return None if deadline == math.inf else max(0.0, deadline - trio.current_time())
