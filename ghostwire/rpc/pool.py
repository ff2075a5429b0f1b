"""A pool of connections to several endpoints: what a multi-address client runs on.

Theory of operation
-------------------
One :class:`~.supervisor.EndpointSupervisor` per endpoint keeps a QUIC
connection up (states, backoff, pings, GOAWAY). For each call the pool

1. leases an endpoint that is up from the balancer (``least_outstanding`` by
   default): READY, circuit admitting, not NOT_SERVING. If none is up while
   some endpoint is still connecting, the call waits for a state change (up
   to ``connect_wait`` and its own deadline); otherwise it fails at once with
   UNAVAILABLE (:class:`NoEndpointAvailable`), which is never retried: an
   open circuit means "not now";
2. takes a connection of that endpoint from its supervisor (the least
   loaded with stream credit; one more, up to ``max_connections_per_endpoint``,
   when all are saturated: :mod:`.links`), runs the call on its
   :class:`~.client.RpcConnection`, and reports the outcome on the lease
   (the circuit counts UNAVAILABLE);
3. retries under :class:`~.resilience.CallRetryState`: only an idempotent
   method (learned from the servers, or ``idempotent=True`` on the call)
   failing with a retryable status, or a call the server provably never
   started (:class:`~.client.CallNotStarted`: no stream, or refused by a
   draining server), with the client's retry budget and the caller's deadline
   as bounds. A retry prefers endpoints the call has not tried yet.

Bidirectional streams follow the same steps; only their opening is retried
(the server never saw it), never a stream the caller already holds.
"""

from __future__ import annotations

import functools
import math
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import trio

from ..deadlines import Deadlines
from .bidi import BidiStream
from .client import CallNotStarted, RpcConnection, abort_at_deadline
from .links import Link
from .resilience import (
    AttemptFailure,
    CallRetryState,
    CircuitBreaker,
    ClientMetrics,
    ClientSnapshot,
    ConnectivityState,
    EndpointHandle,
    Lease,
    RetryThrottle,
    StateHolder,
    call_with_retries,
    make_balancer,
    retry_after_failure,
)
from .resilience.backoff import RandomSource
from .status import RpcError, Status
from .supervisor import Connector, EndpointSupervisor, PoolOptions, RpcFactory, remaining

_WAITING_STATES = (ConnectivityState.IDLE, ConnectivityState.CONNECTING)
# Read per call: a module global costs ~5 ns, an enum member lookup ~75.
_OK = Status.OK
_CANCELLED = Status.CANCELLED


class NoEndpointAvailable(RpcError):
    """UNAVAILABLE at once: no endpoint can take the call now (all down, or
    their circuits open) and none is connecting. Not retried."""

    def __init__(self, message: str) -> None:
        super().__init__(Status.UNAVAILABLE, message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message,))


class Pool:
    """Endpoints, their supervisors and the balancer; see the module docstring."""

    def __init__(
        self,
        addresses: Sequence[str],
        connector: Connector,
        rpc_factory: RpcFactory,
        options: PoolOptions | None = None,
        *,
        rng: RandomSource | None = None,
    ) -> None:
        if not addresses:
            raise ValueError("a client needs at least one address")
        if len(set(addresses)) != len(addresses):
            raise ValueError(f"duplicate addresses in {list(addresses)}")
        self.options = options if options is not None else PoolOptions()
        self.metrics_record = ClientMetrics(addresses)
        self.throttle = RetryThrottle(self.options.retry_tokens, self.options.retry_token_ratio)
        self.idempotent_methods: set[str] = set()
        self._changed = trio.lowlevel.ParkingLot()  # any endpoint changed state
        self._closed = False
        self._scope = trio.CancelScope()
        self._stopped = trio.Event()
        self._rng = rng
        # The run's clock, read three times per call: trio.current_time()
        # reaches the same clock through two more calls (~55 ns). Set by run().
        self._clock_time: Callable[[], float] = trio.current_time
        self.deadlines = Deadlines(abort_at_deadline, "rpc call deadlines")  # calls' timeout=
        self.supervisors: dict[str, EndpointSupervisor] = {}
        for address in addresses:
            record = self.metrics_record.endpoint(address)
            holder = StateHolder(on_change=functools.partial(self._on_state, record))
            breaker = CircuitBreaker(self.options.circuit, endpoint=address)
            handle = EndpointHandle(address, state=holder, breaker=breaker)
            self.supervisors[address] = EndpointSupervisor(
                handle,
                record,
                self.options,
                connector,
                rpc_factory,
                on_learned=self.idempotent_methods.update,
                on_change=self._serving_changed,
                rng=rng,
            )
        self.balancer = make_balancer(
            self.options.balancing, [s.handle for s in self.supervisors.values()]
        )

    def _serving_changed(self) -> None:
        self._changed.unpark_all()

    async def wait_for_change(self) -> None:
        """Return at the next change of any endpoint's state or health."""
        await self._changed.park()

    def _on_state(self, record: Any, old: ConnectivityState, new: ConnectivityState) -> None:
        record.state = new.name
        self._changed.unpark_all()

    # -- life ----------------------------------------------------------------------

    # KI-protected, as every background task of the RPC client: a Ctrl-C
    # goes to the program's main task, never mid-update into this one
    # (it failed the calls in flight beside the KeyboardInterrupt).
    @trio.lowlevel.enable_ki_protection
    async def run(self) -> None:
        """Run the supervisors until :meth:`aclose` (or the caller's cancellation)."""
        self._clock_time = trio.lowlevel.current_clock().current_time
        try:
            with self._scope:
                async with trio.open_nursery() as nursery:
                    self.deadlines.attach(nursery)
                    for supervisor in self.supervisors.values():
                        nursery.start_soon(
                            supervisor.run, name=f"rpc supervisor {supervisor.address}"
                        )
        finally:
            self.deadlines.attach(None)
            self._closed = True
            self._stopped.set()
            self._changed.unpark_all()

    async def aclose(self) -> None:
        """No new calls; close every connection and wait until they are closed."""
        self._closed = True
        self._changed.unpark_all()
        self._scope.cancel()
        await self._stopped.wait()

    @property
    def closed(self) -> bool:
        return self._closed

    async def wait_settled(self) -> None:
        """Return once an endpoint is READY or every endpoint has tried once."""
        while not self._closed:
            supervisors = self.supervisors.values()
            if any(s.state is ConnectivityState.READY for s in supervisors):
                return
            if all(s.attempts and s.state not in _WAITING_STATES for s in supervisors):
                return
            await self._changed.park()

    def raise_if_unreachable(self) -> None:
        """After :meth:`wait_settled`: with ``connect_required``, raise the
        first endpoint's error when none is READY (the caller sees why, as
        with one connection: a refused connection, a bad certificate)."""
        if not self.options.connect_required:
            return
        supervisors = list(self.supervisors.values())
        if any(s.state is ConnectivityState.READY for s in supervisors):
            return
        for supervisor in supervisors:
            if supervisor.last_error is not None:
                raise supervisor.last_error
        raise self._no_endpoint()

    # -- states and metrics ------------------------------------------------------

    def states(self) -> dict[str, ConnectivityState]:
        return {a: s.state for a, s in self.supervisors.items()}

    def snapshot(self) -> ClientSnapshot:
        now = trio.current_time()
        for supervisor in self.supervisors.values():
            record = supervisor.metrics
            handle = supervisor.handle
            record.state = handle.state.state.name
            record.circuit_state = handle.breaker.state(now).name
            record.circuit_opened = handle.breaker.times_opened
            record.outstanding = handle.outstanding
            record.connections = len(supervisor.links.all)
            for link in supervisor.links.all:
                try:
                    record.observe_transport(link.conn.statistics(), key=link.key)
                except Exception:  # pragma: no cover - a core being torn down
                    pass
        return self.metrics_record.snapshot()

    # -- leasing ---------------------------------------------------------------------

    async def lease(
        self, deadline: float, *, avoid: Collection[str] = (), wait: bool = False
    ) -> tuple[Lease, EndpointSupervisor]:
        """An endpoint for one call (see the module docstring, step 1).

        ``wait=True`` (resumable subscriptions) waits for an endpoint however
        long it takes; the caller's cancel scope bounds it.
        """
        wait_until = min(deadline, trio.current_time() + self.options.connect_wait)
        while True:
            if self._closed:
                raise NoEndpointAvailable("the client is closed")
            picked = self._pick(avoid)
            if picked is not None:
                return picked
            connecting = any(s.coming for s in self.supervisors.values())
            if not wait and (not connecting or trio.current_time() >= wait_until):
                raise self._no_endpoint()
            with trio.move_on_at(deadline if wait else wait_until):
                await self._changed.park()

    def _pick(
        self, avoid: Collection[str], now: float | None = None
    ) -> tuple[Lease, EndpointSupervisor] | None:
        """The balancer's pick among the endpoints taking calls (None: none).

        A READY endpoint whose connection ended takes no call until it is
        closed (``taking_calls``); the balancer does not know that, so such a
        pick is put back and the others are tried (still preferring those
        not in ``avoid``). Handing it out would fail the call without a
        schedule point, and a caller that loops on that would freeze the run.
        ``now``: the caller's clock reading, if it has one from this step.
        """
        if now is None:
            now = trio.current_time()
        lease = self.balancer.pick(now, avoid=avoid)
        if lease is None:
            return None
        supervisor = self.supervisors[lease.endpoint.address]
        if supervisor.taking_calls:
            return lease, supervisor
        lease.release()
        closing = {a for a, s in self.supervisors.items() if not s.taking_calls}
        for skip in (closing.union(avoid), closing):  # ``avoid`` only prefers
            lease = self.balancer.pick(now, avoid=skip)
            if lease is None:  # pragma: no cover - the first pick found one up
                return None
            supervisor = self.supervisors[lease.endpoint.address]
            if supervisor.taking_calls:
                return lease, supervisor
            lease.release()
        return None

    async def _lease_link(
        self, deadline: float, tried: list[str], now: float | None = None
    ) -> tuple[Lease, EndpointSupervisor, Link]:
        """Steps 1 and 2 for one attempt: an endpoint (preferring those not in
        ``tried``, which it joins) and a connection of it. Without one, the
        lease is released and :class:`CallNotStarted` raised (retried)."""
        picked = None if self._closed else self._pick(tried, now)
        lease, supervisor = picked or await self.lease(deadline, avoid=tried)
        tried.append(lease.endpoint.address)
        try:
            link = await supervisor.acquire()
        except BaseException:
            lease.release()
            raise
        if link is None:
            lease.release()
            raise CallNotStarted(f"{supervisor.address} takes no new calls (it is going away)")
        return lease, supervisor, link

    def _no_endpoint(self) -> NoEndpointAvailable:
        now = trio.current_time()
        parts = []
        cause: BaseException | None = None
        for supervisor in self.supervisors.values():
            handle = supervisor.handle
            text = f"{supervisor.address} {handle.state.state.name}"
            circuit = handle.breaker.state(now)
            if circuit.name != "CLOSED":
                text += f" (circuit {circuit.name})"
            if handle.serving.name == "NOT_SERVING":
                text += " (not serving)"
            parts.append(text)
            cause = cause or supervisor.last_error
        error = NoEndpointAvailable("no endpoint available: " + ", ".join(parts))
        error.__cause__ = cause
        return error

    # -- calls -------------------------------------------------------------------------

    async def call(
        self,
        method: str,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109  (the call deadline travels on the wire)
        metadata: Mapping[str, str | bytes] | None = None,
        idempotent: bool | None = None,
    ) -> Any:
        """Call ``method`` on an endpoint that is up, retrying where safe.

        The first attempt runs without the retry machinery (the usual case:
        it succeeds); a failed one hands over to :func:`retry_after_failure`."""
        # One clock reading for the timeout, the latency and the first pick
        # (no schedule point between them).
        started = self._clock_time()
        deadline = trio.current_effective_deadline()
        own_deadline = math.inf  # the timeout's: DEADLINE_EXCEEDED, not Cancelled
        if timeout is not None:
            own_deadline = started + timeout
            if own_deadline < deadline:
                deadline = own_deadline
        if idempotent is None:
            idempotent = method in self.idempotent_methods
        if kwargs is None:
            kwargs = {}
        tried: list[str] = []
        record = self.metrics_record.method(method)
        record.started()
        status: int = _CANCELLED
        try:
            try:
                result = await self._attempt(
                    method, args, kwargs, deadline, own_deadline, metadata, tried, 1, now=started
                )
            except Exception as exc:
                state = CallRetryState(
                    self.options.retry,
                    self.throttle,
                    idempotent=idempotent,
                    deadline=deadline if math.isfinite(deadline) else None,
                    rng=self._rng,
                )
                state.begin_attempt()  # the first, which failed
                attempt = functools.partial(
                    self._attempt, method, args, kwargs, deadline, own_deadline, metadata, tried
                )
                result = await retry_after_failure(attempt, state, _classify, exc)
            else:
                self.throttle.record_success()
            status = _OK
            return result
        except RpcError as exc:
            status = exc.status
            raise
        finally:
            record.finished(status, self._clock_time() - started)

    async def _attempt(
        self,
        method: str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        deadline: float,
        own_deadline: float,
        metadata: Mapping[str, str | bytes] | None,
        tried: list[str],
        number: int,
        now: float | None = None,
    ) -> Any:
        lease, supervisor, link = await self._lease_link(deadline, tried, now)
        rpc = link.rpc
        try:
            result = await rpc.call_at(
                method, args, kwargs, deadline, own_deadline, metadata, self.deadlines
            )
        except CallNotStarted as exc:
            lease.release()  # never reached the handler: says nothing of the endpoint
            if exc.goaway:
                supervisor.goaway(rpc)
            else:
                supervisor.connection_failed(rpc)
            raise
        except RpcError as exc:
            lease.record_status(exc.status, now=trio.current_time())
            if exc.status is Status.UNAVAILABLE:
                supervisor.connection_failed(rpc)
            raise
        except BaseException:
            lease.release()
            raise
        finally:
            supervisor.release(link)
        lease.record(success=True, now=self._clock_time())
        return result

    # -- streams -------------------------------------------------------------------------

    @asynccontextmanager
    async def open_stream(
        self,
        method: str,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109  (the call deadline travels on the wire)
        metadata: Mapping[str, str | bytes] | None = None,
    ) -> AsyncIterator[BidiStream]:
        """A bidirectional stream on one endpoint. Opening it is retried
        elsewhere when the server provably never saw it (no stream could be
        opened, or the connection was closed with GOAWAY first), within the
        attempts, the retry budget and the deadline; once the stream is the
        caller's it is not retried (docs/rpc-client.md, "Streams")."""
        deadline = trio.current_effective_deadline()
        if timeout is not None:
            deadline = min(deadline, trio.current_time() + timeout)
        state = CallRetryState(
            self.options.retry,
            self.throttle,
            idempotent=False,
            deadline=deadline if math.isfinite(deadline) else None,
            rng=self._rng,
        )
        async with AsyncExitStack() as stack:
            attempt = functools.partial(
                self._open_stream_attempt,
                stack,
                method,
                args,
                kwargs or {},
                deadline,
                metadata,
                [],
            )
            stream, supervisor, rpc = await call_with_retries(attempt, state, _classify)
            try:
                yield stream
            except RpcError as exc:
                if isinstance(exc, CallNotStarted) and exc.goaway:
                    supervisor.goaway(rpc)  # refused by a draining server
                elif exc.status is Status.UNAVAILABLE:
                    supervisor.connection_failed(rpc)
                raise

    async def _open_stream_attempt(
        self,
        stack: AsyncExitStack,
        method: str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        deadline: float,
        metadata: Mapping[str, str | bytes] | None,
        tried: list[str],
        number: int,
    ) -> tuple[BidiStream, EndpointSupervisor, RpcConnection]:
        lease, supervisor, link = await self._lease_link(deadline, tried)
        rpc = link.rpc
        inner = AsyncExitStack()
        inner.callback(supervisor.release, link)
        inner.enter_context(lease)  # a stream's outcome is not the circuit's
        try:
            stream = await inner.enter_async_context(
                rpc.open_stream(
                    method, args, kwargs, timeout=remaining(deadline), metadata=metadata
                )
            )
        except CallNotStarted as exc:
            await inner.aclose()
            if exc.goaway:
                supervisor.goaway(rpc)
            else:
                supervisor.connection_failed(rpc)
            raise
        except BaseException:
            await inner.aclose()
            raise
        stack.push_async_exit(inner)
        return stream, supervisor, rpc


def _classify(exc: Exception) -> AttemptFailure | None:
    """How the retry logic sees a failed attempt (None: not retried, propagates)."""
    if isinstance(exc, NoEndpointAvailable) or not isinstance(exc, RpcError):
        return None
    return AttemptFailure(exc.status, server_started=not isinstance(exc, CallNotStarted))


__all__ = ["NoEndpointAvailable", "Pool", "PoolOptions"]
