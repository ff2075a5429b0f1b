"""The transport-independent dispatcher: one place where a call is run.

Both transports (our QUIC protocol in :mod:`.server`, and the HTTP/3 mapping)
decode a request their own way, build a :class:`~.context.Context`, and then
hand the call to a :class:`Dispatcher`:

    method = dispatcher.resolve("zvm.get_balance")      # RpcError(UNIMPLEMENTED)
    ctx = Context.from_timeout(method.name, timeout, metadata=..., peer=...)
    result = await dispatcher.unary(ctx, method, args, kwargs)
    await dispatcher.events(ctx, method, args, kwargs, send)   # send(Event) per event
    await dispatcher.stream(ctx, method, args, kwargs, bidi)   # a BidiStream

Each of ``unary`` / ``events`` / ``stream``:

* checks that the method is of that kind (else FAILED_PRECONDITION);
* enters the server's interceptors (async context managers, outermost first),
  so they see every outcome, errors included;
* inside a cancel scope with the call's deadline (``ctx.deadline``, capped by
  the method's ``timeout=`` option) binds the arguments (INVALID_ARGUMENT
  naming the argument; the handler does not run), runs ``authorize``
  (PERMISSION_DENIED when it says no) and then the handler;
* maps the outcome: a result is returned; ``RpcError`` passes as is; the
  deadline expiring is DEADLINE_EXCEEDED; ``ctx.cancel(status)`` (the
  transport saw the caller go away, or the server is shutting down) ends the
  call with that status; any other exception is logged here, with its
  traceback, and becomes INTERNAL with a generic message (the caller never
  sees internals).

A call whose handler has no schedule point (:mod:`ghostwire.quic.net.suspension`), no deadline
and no ``ctx.cancel`` before it starts runs without the cancel scope: it
runs to its end in one step, where nothing could cancel it anyway. A
transport may run such a call without a task at all, with
``dispatcher.unary_now`` (the same binding, deadline and error mapping)
when ``dispatcher.runs_inline(method)``: no interceptors or ``authorize``,
which may wait.

So they raise nothing but :class:`RpcError` (and ``trio.Cancelled`` when a
scope *outside* the call is cancelled). The dispatcher keeps no per-call
task of its own for unary calls and no queue: an event channel's bounded
buffer (see :mod:`.events`) is the only buffering, and ``send`` is awaited
so the transport's flow control pushes back into it.

For an event channel, ``send(event)`` is awaited for each event in order
(or, with ``send_now``, the events buffered at once are written together);
when the generator ends, ``events`` returns and the transport ends the
reply with OK. ``dispatcher.statistics()`` reports calls in flight and what
the event buffers hold (to show memory stays bounded).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, aclosing
from dataclasses import dataclass
from typing import Any, TypeVar

import trio

from ..quic.net.suspension import run_to_end
from .context import Context
from .events import Event, EventBuffer
from .service import Method, MethodKind, Service
from .status import RpcError, Status

log = logging.getLogger("ghostwire.rpc")

T = TypeVar("T")
Interceptor = Callable[[Context], AbstractAsyncContextManager[object]]
"""Server middleware: ``interceptor(ctx)`` is an async context manager around
the whole call (raise ``RpcError`` on entry to reject it)."""
SendEvent = Callable[[Event], Awaitable[None]]
SendEventsNow = Callable[[Sequence[Event]], int]
"""Queue the oldest events at once without waiting; how many (0: none)."""

INTERNAL_MESSAGE = "internal error (details are in the server's log)"


@dataclass(slots=True)
class DispatchStats:
    calls_in_flight: int = 0
    subscriptions: int = 0
    events_buffered: int = 0
    events_buffered_peak: int = 0  # the most any one subscription buffered at once
    events_dropped: int = 0


class Dispatcher:
    """Runs calls against a set of services; see the module docstring."""

    def __init__(
        self, services: Iterable[Service], *, interceptors: Sequence[Interceptor] = ()
    ) -> None:
        self.methods: dict[str, Method] = {}
        for service in services:
            for method in service.methods.values():
                if method.name in self.methods:
                    raise ValueError(f"{method.name} is defined twice")
                self.methods[method.name] = method
        self.interceptors = tuple(interceptors)
        # The unary methods unary_now may run, decided once (see runs_inline).
        self._inline = frozenset(
            name for name, method in self.methods.items() if self._may_run_inline(method)
        )
        self._in_flight = 0
        self._buffers: set[EventBuffer] = set()
        self._peak = 0
        self._dropped = 0

    def resolve(self, name: str) -> Method:
        """The method called ``name`` ("service.method"), or RpcError(UNIMPLEMENTED)."""
        method = self.methods.get(name)
        if method is None:
            raise RpcError(Status.UNIMPLEMENTED, f"no method {name!r} on this server")
        return method

    def statistics(self) -> DispatchStats:
        buffers = self._buffers
        peak = max([self._peak, *(b.peak for b in buffers)])
        dropped = self._dropped + sum(b.dropped for b in buffers)
        return DispatchStats(
            self._in_flight, len(buffers), sum(len(b) for b in buffers), peak, dropped
        )

    def _may_run_inline(self, method: Method) -> bool:
        return (
            method.kind is MethodKind.UNARY
            and not method.may_suspend
            and not self.interceptors
            and method.options.authorize is None
        )

    def runs_inline(self, method: Method) -> bool:
        """Whether :meth:`unary_now` may run a call to ``method``: a unary
        handler that cannot reach a schedule point (:mod:`ghostwire.quic.net.suspension`), on a
        dispatcher without interceptors, and without ``authorize`` (either
        may wait). Decided once per method, when the dispatcher is made."""
        return method.name in self._inline and self.methods.get(method.name) is method

    # -- the three kinds of call --------------------------------------------

    async def unary(
        self, ctx: Context, method: Method, args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> Any:
        """Run a call; returns the handler's result."""
        if method.kind is not MethodKind.UNARY:
            _expect(method, MethodKind.UNARY)
        options = method.options
        if self.interceptors or options.authorize is not None or options.timeout is not None:
            return await self._invoke(ctx, method, _unary_body, ctx, method, args, kwargs)
        # The common case in one frame: what _invoke, _within_deadline and
        # _unary_body do, without interceptors, authorize or a method timeout.
        self._in_flight += 1
        try:
            values = method.binder.bind(args, kwargs)
            deadline = ctx.deadline
            if not method.may_suspend and deadline is None and ctx._cancel_status is None:
                # A handler without a schedule point runs to its end in this
                # step: no cancellation could reach it, so no scope (which
                # would not change what it sees either: no deadline to show).
                return await method.handler(ctx, **values)
            # The scope is what ctx.cancel() cancels (the caller reset the
            # stream, the server shuts down) even without a deadline.
            scope = trio.CancelScope() if deadline is None else trio.CancelScope(deadline=deadline)
            ctx._scope = scope
            if ctx._cancel_status is not None:
                scope.cancel()
            with scope:
                return await method.handler(ctx, **values)
            ctx._scope = None
            raise _ended(ctx, deadline)
        except RpcError:
            raise
        except (Exception, BaseExceptionGroup) as exc:
            raise _failure(ctx, exc) from None
        finally:
            self._in_flight -= 1

    def unary_now(
        self, ctx: Context, method: Method, args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> Any:
        """:meth:`unary`, run to its end without a task or an ``await``, for a
        method :meth:`runs_inline` accepts (the caller checks): the same
        argument binding, deadline (the method's ``timeout=`` caps it, and a
        call with one runs in a cancel scope with it, as in :meth:`unary`),
        results and error mapping. Nothing can cancel such a handler, so it
        sees what it would see in a task."""
        self._in_flight += 1
        try:
            values = method.binder.bind(args, kwargs)
            deadline = _capped_deadline(ctx, method)
            if deadline is None:
                return run_to_end(method.handler(ctx, **values))
            scope = ctx._scope = trio.CancelScope(deadline=deadline)
            with scope:
                return run_to_end(method.handler(ctx, **values))
            ctx._scope = None
            raise _ended(ctx, deadline)
        except RpcError:
            raise
        except (Exception, BaseExceptionGroup) as exc:
            raise _failure(ctx, exc) from None
        finally:
            self._in_flight -= 1

    async def events(
        self,
        ctx: Context,
        method: Method,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        send: SendEvent,
        send_now: SendEventsNow | None = None,
    ) -> None:
        """Run a subscription, awaiting ``send(event)`` per event until the
        channel ends. With ``send_now``, the events buffered at once are first
        offered to it together (one write for a burst); ``send`` takes the
        next event when it sends none. The events stay in the buffer until
        sent, so the buffer's bound and policy see them."""
        _expect(method, MethodKind.EVENTS)

        async def body() -> None:
            values = method.binder.bind(args, kwargs)
            if method.options.authorize is not None:
                await _authorize(ctx, method)
            buffer = EventBuffer(method.options.buffer, method.options.policy)
            self._buffers.add(buffer)
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_produce, ctx, method, values, buffer)
                    while True:
                        try:
                            ready = await buffer.wait_ready()
                        except trio.EndOfChannel:
                            break
                        sent = 0 if send_now is None else send_now(ready)
                        if sent:
                            buffer.take(sent)
                        else:
                            await send(buffer.take_one())
            finally:
                buffer.close()
                self._buffers.discard(buffer)
                self._peak = max(self._peak, buffer.peak)
                self._dropped += buffer.dropped

        await self._invoke(ctx, method, body)

    async def stream(
        self,
        ctx: Context,
        method: Method,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        stream: Any,
    ) -> None:
        """Run a bidirectional handler on ``stream`` (a :class:`~.bidi.BidiStream`)."""
        _expect(method, MethodKind.STREAM)

        async def body() -> None:
            values = method.binder.bind(args, kwargs)
            if method.options.authorize is not None:
                await _authorize(ctx, method)
            await method.handler(ctx, stream, **values)

        await self._invoke(ctx, method, body)

    # -- shared machinery -----------------------------------------------------

    async def _invoke(
        self, ctx: Context, method: Method, body: Callable[..., Awaitable[T]], *body_args: Any
    ) -> T:
        self._in_flight += 1
        try:
            if self.interceptors:
                async with AsyncExitStack() as stack:
                    for interceptor in self.interceptors:
                        await stack.enter_async_context(interceptor(ctx))
                    return await _within_deadline(ctx, method, body, *body_args)
            return await _within_deadline(ctx, method, body, *body_args)
        except RpcError:
            raise
        except (Exception, BaseExceptionGroup) as exc:
            raise _failure(ctx, exc) from None
        finally:
            self._in_flight -= 1


async def _unary_body(
    ctx: Context, method: Method, args: Sequence[Any], kwargs: Mapping[str, Any]
) -> Any:
    values = method.binder.bind(args, kwargs)
    if method.options.authorize is not None:
        await _authorize(ctx, method)
    return await method.handler(ctx, **values)


def _capped_deadline(ctx: Context, method: Method) -> float | None:
    """The call's deadline, capped by the method's ``timeout=`` (``ctx.deadline`` too)."""
    deadline = ctx.deadline
    cap = method.options.timeout
    if cap is not None:
        capped = trio.current_time() + cap
        if deadline is None or capped < deadline:
            deadline = ctx.deadline = capped
    return deadline


async def _within_deadline(
    ctx: Context, method: Method, body: Callable[..., Awaitable[T]], *body_args: Any
) -> T:
    deadline = _capped_deadline(ctx, method)
    scope = trio.CancelScope() if deadline is None else trio.CancelScope(deadline=deadline)
    ctx._scope = scope
    if ctx._cancel_status is not None:
        scope.cancel()
    with scope:
        return await body(*body_args)
    ctx._scope = None
    raise _ended(ctx, deadline)


def _ended(ctx: Context, deadline: float | None) -> RpcError:
    """Why a call's scope caught a cancellation: its deadline or ``ctx.cancel``."""
    status = ctx._cancel_status
    expired = deadline is not None and trio.current_time() >= deadline
    if status is None or (status is Status.CANCELLED and expired):
        return RpcError(Status.DEADLINE_EXCEEDED, "deadline exceeded")
    return RpcError(status, ctx._cancel_message or status.name.lower().replace("_", " "))


async def _authorize(ctx: Context, method: Method) -> None:
    verdict = method.options.authorize(ctx)  # type: ignore[misc]
    if isinstance(verdict, Awaitable):
        verdict = await verdict
    if not verdict:
        raise RpcError(Status.PERMISSION_DENIED, f"not allowed to call {method.name}")


async def _produce(
    ctx: Context, method: Method, values: dict[str, Any], buffer: EventBuffer
) -> None:
    """Pull the channel's generator into the buffer (the subscription's one extra task)."""
    error: RpcError | None = None
    try:
        async with aclosing(method.handler(ctx, **values)) as events:
            async for item in events:
                await buffer.put(item if isinstance(item, Event) else Event(item))
    except RpcError as exc:
        error = exc
    except trio.ClosedResourceError:
        return  # the subscription already ended
    except Exception:
        log.exception("event channel %s failed", ctx.method)
        error = RpcError(Status.INTERNAL, INTERNAL_MESSAGE)
    buffer.close(error)


def _expect(method: Method, kind: MethodKind) -> None:
    if method.kind is not kind:
        hint = {
            MethodKind.UNARY: "call it",
            MethodKind.EVENTS: "subscribe to it",
            MethodKind.STREAM: "open a stream to it",
        }[method.kind]
        raise RpcError(
            Status.FAILED_PRECONDITION,
            f"{method.name} is {_KIND_NAMES[method.kind]}: {hint}",
        )


_KIND_NAMES = {
    MethodKind.UNARY: "a call",
    MethodKind.EVENTS: "an event channel",
    MethodKind.STREAM: "a bidirectional stream",
}


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out


def _failure(ctx: Context, exc: BaseException) -> BaseException:
    """What a handler's exception other than an RpcError means for the caller:
    a group's as :func:`_from_group` says; anything else INTERNAL, logged here
    with its traceback and never sent (the caller may not see internals)."""
    if isinstance(exc, BaseExceptionGroup):
        return _from_group(ctx, exc)
    log.error("%s failed", ctx.method, exc_info=exc)
    return RpcError(Status.INTERNAL, INTERNAL_MESSAGE)


def _from_group(ctx: Context, group: BaseExceptionGroup[BaseException]) -> BaseException:
    """What a group escaping a handler means for the caller."""
    leaves = _leaves(group)
    if any(isinstance(leaf, trio.Cancelled) for leaf in leaves):
        return group  # cancellation from outside the call: let trio see it
    errors = [leaf for leaf in leaves if isinstance(leaf, RpcError)]
    if len(leaves) == 1 and errors:
        return errors[0]
    log.error("%s failed", ctx.method, exc_info=group)
    return RpcError(Status.INTERNAL, INTERNAL_MESSAGE)


__all__ = [
    "INTERNAL_MESSAGE",
    "DispatchStats",
    "Dispatcher",
    "Interceptor",
    "SendEvent",
    "SendEventsNow",
]
