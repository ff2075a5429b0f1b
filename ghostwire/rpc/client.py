"""The RPC client: calls, subscriptions and streams over one QUIC connection.

::

    config = quic.ClientConfig(alpn=["ghostwire-rpc"], cafile=...)
    async with rpc.connect("localhost:4433", config=config) as client:
        balance = await client.call("zvm.get_balance", address=b"\\x01" * 20)
        zvm = client.service("zvm")                         # stub form
        await zvm.call_contract(address=a, method="transfer", args=[to, 10**30])
        async with client.subscribe("zvm.logs", address=a, after=7) as events:
            async for event in events: ...
        async with client.open_stream("zvm.relay") as stream: ...

:class:`RpcConnection` is the per-connection machinery (what a pool of
connections reuses); :class:`Client` adds the ``name, *args, **kwargs`` calling
convention and stubs on top of one.

Deadlines: a call's deadline is ``trio.current_effective_deadline()``, made
earlier by ``timeout=``; it travels as a relative timeout. When ``timeout=``
expires the call raises ``RpcError(DEADLINE_EXCEEDED)``; when an enclosing
cancel scope expires, trio's ``Cancelled`` goes up as usual. Either way the
stream is reset (RESET_STREAM and STOP_SENDING, code 0x1) so the server
cancels the handler at once. A call costs one stream and no extra task.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

from .. import quic
from ..quic.net.exceptions import ConnectionClosed, QuicError, StreamStopped
from .bidi import BidiStream
from .codec import decode
from .events import Event
from .framing import DEFAULT_MAX_MESSAGE_SIZE, MESSAGE, TRAILERS
from .status import RpcError, Status
from .transport import RECEIVE_SIZE, FrameReader, close_ended, close_now, send_nowait
from .wire import (
    ALPN,
    CANCELLED_CODE,
    DEADLINE_CODE,
    GOAWAY_CLOSE_CODE,
    KIND_CALL,
    KIND_EVENTS,
    KIND_STREAM,
    OK_TRAILER_PAYLOAD,
    decode_event,
    encode_request,
    parse_trailer,
)

#: The longest leaving ``connect`` waits for the connections to close.
CLOSE_TIMEOUT = 5.0

if TYPE_CHECKING:
    from ..deadlines import Deadlines
    from .pool import Pool
    from .resilience import ClientSnapshot, ConnectivityState
    from .resilient import ResilientSubscription
    from .supervisor import Connector, PoolOptions

_GONE = (QuicError, trio.BrokenResourceError, trio.ClosedResourceError)


@dataclass(slots=True)
class CallInfo:
    """What a client interceptor sees (and may change: ``metadata``)."""

    method: str
    kind: str
    metadata: dict[str, str | bytes] = field(default_factory=dict)
    deadline: float = math.inf


ClientInterceptor = Any  # Callable[[CallInfo], AbstractAsyncContextManager[object]]


def _abort(stream: quic.QuicStream, deadline: float = math.inf) -> None:
    """Give up on a call: reset our side and ask the server to stop, saying
    why (DEADLINE_CODE once the deadline passed, else CANCELLED_CODE)."""
    code = DEADLINE_CODE if trio.current_time() >= deadline else CANCELLED_CODE
    stream.reset(code)
    stream.stop_sending(code)


def _deadline_exceeded(method: str) -> RpcError:
    return RpcError(Status.DEADLINE_EXCEEDED, f"{method}: deadline exceeded")


def abort_at_deadline(stream: quic.QuicStream) -> None:
    """:class:`~ghostwire.deadlines.Deadlines`' ``on_expired`` for unary calls:
    abort the call's stream with the deadline's code (this wakes its task)."""
    _abort(stream, -math.inf)


def _unavailable(exc: BaseException) -> RpcError:
    error: RpcError
    if _is_goaway_close(exc):
        # A drained server answered every call it started before closing.
        error = CallNotStarted(f"the server shut down before taking the call: {exc}", goaway=True)
    else:
        error = RpcError(Status.UNAVAILABLE, f"connection to the server failed: {exc}")
    error.__cause__ = exc
    return error


def _not_started(exc: BaseException) -> CallNotStarted:
    # No stream, so nothing was sent: the server never saw the call.
    return CallNotStarted(f"connection to the server failed: {exc}")


def _is_goaway_close(exc: BaseException) -> bool:
    return (
        isinstance(exc, ConnectionClosed)
        and exc.by_peer
        and exc.is_application
        and exc.error_code == GOAWAY_CLOSE_CODE
    )


class CallNotStarted(RpcError):
    """UNAVAILABLE for a call the server provably never started: no stream
    could be opened for it, or the server refused it unprocessed (a draining
    server's refusal, docs/rpc-client.md "Server restarts and draining"). Such a call
    is safe to send again, whatever its method. ``goaway`` is True when the
    server said it is shutting down."""

    def __init__(self, message: str, *, goaway: bool = False) -> None:
        super().__init__(Status.UNAVAILABLE, message)
        self.goaway = goaway

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message,), {"goaway": self.goaway})


#: The trailer key a server sets on a call it refused without processing it.
REFUSED_KEY = "refused"


def _trailer_error(payload: bytes) -> RpcError | None:
    """:func:`parse_trailer`, but a refusal becomes :class:`CallNotStarted`."""
    error = parse_trailer(payload)
    if error is not None and error.status is Status.UNAVAILABLE:
        trailer = decode(payload)
        if isinstance(trailer, dict) and trailer.get(REFUSED_KEY) is True:
            return CallNotStarted(error.message, goaway=True)
    return error


class Subscription:
    """The events of one subscription: ``async for event in subscription``.

    Iteration ends when the channel ends; a failed subscription raises
    :class:`RpcError` (RESOURCE_EXHAUSTED when the subscriber fell too far
    behind under the ``end`` policy, UNAVAILABLE when the server shut down).
    ``last_cursor`` is the cursor of the last event received: resubscribe with
    ``after=subscription.last_cursor`` to resume.
    """

    def __init__(self, method: str, reader: FrameReader, after: Any) -> None:
        self.method = method
        self._reader = reader
        self.last_cursor = after
        self.finished = False

    async def receive(self) -> Event:
        """The next event; :class:`trio.EndOfChannel` when the channel ended."""
        if self.finished:
            raise trio.EndOfChannel
        try:
            frame = await self._reader.receive_frame()
        except _GONE as exc:
            raise _unavailable(exc) from None
        if frame is None:
            raise RpcError(Status.INTERNAL, "the server ended the subscription without a status")
        frame_type, payload = frame
        if frame_type == MESSAGE:
            event = decode_event(payload)
            if event.cursor is not None:
                self.last_cursor = event.cursor
            return event
        self.finished = True
        if frame_type == TRAILERS:
            error = _trailer_error(payload)
            if error is not None:
                raise error
            raise trio.EndOfChannel
        raise RpcError(Status.INTERNAL, f"unexpected frame type {frame_type} in a subscription")

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Event]:
        while True:
            try:
                yield await self.receive()
            except trio.EndOfChannel:
                return


class _ClientBidiStream(BidiStream):
    _parse_trailer = staticmethod(_trailer_error)  # a refusal is CallNotStarted

    async def send(self, message: Any) -> None:
        try:
            await super().send(message)
        except StreamStopped:
            raise RpcError(
                Status.CANCELLED, "the server stopped reading this stream (receive() tells why)"
            ) from None
        except _GONE as exc:
            raise _unavailable(exc) from None

    async def send_eof(self) -> None:
        try:
            await super().send_eof()
        except _GONE as exc:
            raise _unavailable(exc) from None

    async def receive(self) -> Any:
        try:
            return await super().receive()
        except _GONE as exc:
            raise _unavailable(exc) from None


class RpcConnection:
    """Calls over one established QUIC connection (ALPN ``ghostwire-rpc``).

    Holds no tasks and no queues: each call opens a stream, writes the request
    and FIN in one write, and reads the reply to FIN in the caller's task,
    which steps once per call (when the reply arrives) while a stream is free.
    Safe to share between tasks; QUIC's stream limit makes callers wait for a
    free stream. Transport failures surface as ``RpcError(UNAVAILABLE)``.
    """

    def __init__(
        self,
        conn: quic.Connection,
        *,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        interceptors: Sequence[ClientInterceptor] = (),
    ) -> None:
        self.connection = conn
        self.max_message_size = max_message_size
        self.interceptors = tuple(interceptors)

    @property
    def is_closed(self) -> bool:
        return self.connection.is_closed

    async def aclose(self) -> None:
        await self.connection.aclose()

    # -- unary ---------------------------------------------------------------

    async def call(
        self,
        method: str,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109  (the call deadline travels on the wire)
        metadata: Mapping[str, str | bytes] | None = None,
    ) -> Any:
        """Call ``method`` and return its result, or raise :class:`RpcError`."""
        deadline = trio.current_effective_deadline()
        own_deadline = math.inf
        if timeout is not None:
            own_deadline = trio.current_time() + timeout
            if own_deadline < deadline:
                deadline = own_deadline
        return await self.call_at(method, args, kwargs, deadline, own_deadline, metadata)

    async def call_at(
        self,
        method: str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any] | None,
        deadline: float,
        own_deadline: float,
        metadata: Mapping[str, str | bytes] | None,
        deadlines: Deadlines | None = None,
    ) -> Any:
        """:meth:`call` with its deadlines worked out (by the pool, once per
        call): ``deadline`` bounds the call (it travels to the server);
        reaching ``own_deadline`` (the ``timeout=``, ``inf`` for none; not
        later than ``deadline`` unless an enclosing scope ends first) raises
        DEADLINE_EXCEEDED, where an enclosing scope's deadline raises
        ``Cancelled``. ``deadlines`` (the pool's, while it runs) keeps
        ``own_deadline`` once the stream is open, instead of a cancel scope."""
        if not self.interceptors and (own_deadline == math.inf or own_deadline > deadline):
            # The usual call (no interceptors, no timeout of its own): _call's work here.
            timeout = None if deadline == math.inf else deadline - trio.current_time()
            request = encode_request(method, args, kwargs or {}, timeout=timeout, metadata=metadata)
            return await self._unary(request, deadline)
        if self.interceptors:
            info = CallInfo(method, KIND_CALL, dict(metadata or {}), deadline)
            async with self._intercepted(info):
                return await self._call(
                    method, args, kwargs or {}, deadline, own_deadline, info.metadata, deadlines
                )
        return await self._call(
            method, args, kwargs or {}, deadline, own_deadline, metadata, deadlines
        )

    async def _call(
        self,
        method: str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        deadline: float,
        own_deadline: float,
        metadata: Mapping[str, str | bytes] | None,
        deadlines: Deadlines | None = None,
    ) -> Any:
        timeout = None if deadline == math.inf else deadline - trio.current_time()
        request = encode_request(method, args, kwargs, timeout=timeout, metadata=metadata)
        if own_deadline == math.inf or own_deadline > deadline:
            return await self._unary(request, deadline)
        if deadlines is not None and deadlines.available and timeout is not None and timeout > 0:
            # The usual timed call: a stream free now, and from there only
            # the reply to wait for (see ghostwire.deadlines). (deadline is
            # own_deadline here: the earlier of the two. One already past
            # goes to the cancel scope: it ends the call before it is sent.)
            await trio.lowlevel.checkpoint_if_cancelled()
            stream = self._open_nowait()
            if stream is not None:
                return await self._unary(request, deadline, stream, deadlines, method)
        with trio.CancelScope(deadline=own_deadline):
            return await self._unary(request, deadline)
        raise _deadline_exceeded(method)

    async def _unary(
        self,
        request: bytes,
        deadline: float,
        stream: quic.QuicStream | None = None,
        deadlines: Deadlines | None = None,
        method: str = "",
    ) -> Any:
        """One unary call; ``stream``: already opened for it (after the
        cancellation check), ``deadlines``: keeps ``deadline`` as the call's
        own (DEADLINE_EXCEEDED for ``method`` when it passes)."""
        # One task step per call, when the reply comes: the stream is opened
        # and closed without the schedule points of open_stream and aclose
        # (the wait for the reply is the call's schedule point).
        if stream is None:
            await trio.lowlevel.checkpoint_if_cancelled()
            stream = self._open_nowait() or await self._open()
        watch = None if deadlines is None else deadlines.watch(deadline, stream)
        try:
            # Request and FIN in one core write; the reply read without a
            # schedule point once it is here (see .transport).
            sent_whole = send_nowait(stream, request, end_stream=True)
            if not sent_whole:
                await _send_request(stream, request)
            reader = FrameReader(stream, self.max_message_size)
            # The one wait: the reply's first bytes (it is not here yet, we
            # just sent the request). The rest usually came with them.
            reader.feed(await stream.receive_some(RECEIVE_SIZE))
            whole = reader.at_eof or reader.receive_whole_nowait()
            # The usual reply, here whole: a result and a trailer, in one step.
            pair = reader.take_pair_now(MESSAGE, TRAILERS) if whole else None
            if pair is not None:
                result, trailer = decode(pair[0]), pair[1]
            else:
                result, trailer = await _read_reply(reader, whole)
            error = None if trailer == OK_TRAILER_PAYLOAD else _trailer_error(trailer)
        except _GONE as exc:
            _abort(stream)
            close_now(stream)
            if watch is not None and deadlines.expired(watch):  # type: ignore[union-attr]
                # aborted at its deadline
                raise _deadline_exceeded(method) from None
            raise _unavailable(exc) from None
        except BaseException:
            _abort(stream, deadline)
            close_now(stream)
            raise
        finally:
            if watch is not None:
                deadlines.done(watch)  # type: ignore[union-attr]
        # Read to its FIN; with our FIN queued too, nothing is left to close.
        if sent_whole:
            close_ended(stream)
        else:
            close_now(stream)
        if error is not None:
            raise error
        return result

    # -- subscriptions and streams -------------------------------------------

    @asynccontextmanager
    async def subscribe(
        self,
        method: str,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        after: Any = None,
        timeout: float | None = None,  # noqa: ASYNC109  (the call deadline travels on the wire)
        metadata: Mapping[str, str | bytes] | None = None,
    ) -> AsyncIterator[Subscription]:
        """Subscribe to an event channel; ``after`` resumes after that cursor."""
        async with self._opened(
            method, KIND_EVENTS, args, kwargs, timeout, metadata, after
        ) as reader:
            subscription = Subscription(method, reader, after)
            yield subscription
            if not subscription.finished:
                _abort(reader.stream)

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
        """Open a bidirectional stream to ``method``. Leaving the block before
        the server's status arrived cancels the call."""
        async with self._opened(method, KIND_STREAM, args, kwargs, timeout, metadata) as reader:
            stream = _ClientBidiStream(reader, is_client=True)
            yield stream
            if not stream.finished:
                _abort(reader.stream)

    @asynccontextmanager
    async def _opened(
        self,
        method: str,
        kind: str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any] | None,
        timeout: float | None,  # noqa: ASYNC109  (the call deadline travels on the wire)
        metadata: Mapping[str, str | bytes] | None,
        after: Any = None,
    ) -> AsyncIterator[FrameReader]:
        deadline = trio.current_effective_deadline()
        if timeout is not None:
            deadline = min(deadline, trio.current_time() + timeout)
        async with AsyncExitStack() as stack:
            if self.interceptors:
                info = CallInfo(method, kind, dict(metadata or {}), deadline)
                await stack.enter_async_context(self._intercepted(info))
                metadata = info.metadata
            relative = None if deadline == math.inf else deadline - trio.current_time()
            extra = {"after": after} if after is not None else {}
            request = encode_request(
                method, args, kwargs or {}, kind=kind, timeout=relative, metadata=metadata, **extra
            )
            stream = await self._open()
            try:
                try:
                    if kind == KIND_STREAM:
                        await stream.send_all(request)
                    else:
                        await _send_request(stream, request)
                except _GONE as exc:
                    raise _unavailable(exc) from None
                # Errors from the caller's block come out of this yield: they
                # abort the call but keep their type.
                yield FrameReader(stream, self.max_message_size)
            except BaseException:
                _abort(stream, deadline)
                raise
            finally:
                await stream.aclose()

    # -- helpers -------------------------------------------------------------

    async def _open(self) -> quic.QuicStream:
        try:
            return await self.connection.open_stream()
        except _GONE as exc:
            raise _not_started(exc) from exc

    def _open_nowait(self) -> quic.QuicStream | None:
        """A stream without a schedule point; None while the stream limit binds."""
        try:
            return self.connection.open_stream_nowait()
        except _GONE as exc:
            raise _not_started(exc) from exc

    @asynccontextmanager
    async def _intercepted(self, info: CallInfo) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            for interceptor in self.interceptors:
                await stack.enter_async_context(interceptor(info))
            yield


async def _read_reply(reader: FrameReader, whole: bool) -> tuple[Any, bytes]:
    """A unary reply frame by frame (``whole``: all of it is in ``reader``):
    its result (None without one: a failed call) and its trailer's payload."""
    frame = reader.next_frame_now() if whole else await reader.receive_frame_eager()
    result = None
    if frame is not None and frame[0] == MESSAGE:
        result = decode(frame[1])
        frame = reader.next_frame_now() if whole else await reader.receive_frame_eager()
    if frame is None or frame[0] != TRAILERS:
        raise RpcError(Status.INTERNAL, "malformed reply: no status trailer")
    if (reader.next_frame_now() if whole else await reader.receive_frame_eager()) is not None:
        raise RpcError(Status.INTERNAL, "malformed reply: data after the trailer")
    return result, frame[1]


async def _send_request(stream: quic.QuicStream, request: bytes) -> None:
    """Request and FIN (one packet when it fits). A server that refused the
    request stops our sending; its trailer, read next, says why."""
    try:
        await stream.send_all(request)
        await stream.send_eof()
    except StreamStopped:
        pass


class MethodStub:
    """``client.service("zvm").get_balance(...)``: a call, ``.subscribe(...)``
    or ``.open_stream(...)`` on one method."""

    def __init__(self, client: Client, name: str) -> None:
        self._client = client
        self.name = name

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return await self._client.call(self.name, *args, **kwargs)

    def subscribe(
        self, *args: Any, **kwargs: Any
    ) -> AbstractAsyncContextManager[ResilientSubscription]:
        return self._client.subscribe(self.name, *args, **kwargs)

    def open_stream(self, *args: Any, **kwargs: Any) -> AbstractAsyncContextManager[BidiStream]:
        return self._client.open_stream(self.name, *args, **kwargs)


class ServiceStub:
    """Attribute access gives a :class:`MethodStub` for ``service.attribute``."""

    def __init__(self, client: Client, service: str) -> None:
        self._client = client
        self._service = service

    def __getattr__(self, name: str) -> MethodStub:
        if name.startswith("_"):
            raise AttributeError(name)
        return MethodStub(self._client, f"{self._service}.{name}")


class Client:
    """What :func:`connect` yields: calls by name over a pool of connections,
    one per endpoint, more while its stream limit binds (see :mod:`ghostwire.rpc.pool`).

    Arguments after the method name are the method's, positional or keyword;
    ``timeout``, ``metadata`` and ``idempotent`` (and ``after`` and
    ``markers`` for subscriptions) are the call's own options.
    """

    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    @property
    def connection(self) -> RpcConnection:
        """The connection of the first endpoint that has one (UNAVAILABLE if none)."""
        for supervisor in self.pool.supervisors.values():
            if supervisor.rpc is not None:
                return supervisor.rpc
        raise RpcError(Status.UNAVAILABLE, "not connected to any endpoint")

    async def call(
        self,
        name: str,
        *args: Any,
        timeout: float | None = None,  # noqa: ASYNC109  (the call deadline travels on the wire)
        metadata: Mapping[str, str | bytes] | None = None,
        idempotent: bool | None = None,
        **kwargs: Any,
    ) -> Any:
        """Call ``name``; ``idempotent=True`` allows retries of a method the
        server did not mark idempotent itself."""
        return await self.pool.call(
            name, args, kwargs, timeout=timeout, metadata=metadata, idempotent=idempotent
        )

    def service(self, name: str) -> ServiceStub:
        return ServiceStub(self, name)

    @asynccontextmanager
    async def subscribe(
        self,
        name: str,
        *args: Any,
        after: Any = None,
        timeout: float | None = None,  # noqa: ASYNC109  (the first subscription's deadline)
        metadata: Mapping[str, str | bytes] | None = None,
        markers: bool = False,
        resume: bool = True,
        **kwargs: Any,
    ) -> AsyncIterator[ResilientSubscription]:
        """Subscribe; the subscription resumes by itself across reconnects
        (see :mod:`ghostwire.rpc.resilient`); ``resume=False``: the first
        UNAVAILABLE ends it instead."""
        from .resilient import ResilientSubscription

        subscription = ResilientSubscription(
            self.pool,
            name,
            args,
            kwargs,
            after=after,
            metadata=metadata,
            markers=markers,
            resume=resume,
        )
        try:
            if timeout is None:
                await subscription.open()
            else:
                with trio.fail_after(timeout):
                    await subscription.open()
            yield subscription
        finally:
            await subscription.aclose()

    def open_stream(
        self,
        name: str,
        *args: Any,
        timeout: float | None = None,
        metadata: Mapping[str, str | bytes] | None = None,
        **kwargs: Any,
    ) -> AbstractAsyncContextManager[BidiStream]:
        return self.pool.open_stream(name, args, kwargs, timeout=timeout, metadata=metadata)

    # -- the pool --------------------------------------------------------------

    def states(self) -> dict[str, ConnectivityState]:
        """Each endpoint's connectivity state."""
        return self.pool.states()

    async def wait_for_state(self, address: str, *states: ConnectivityState) -> ConnectivityState:
        """Return once endpoint ``address`` is in one of ``states``."""
        return await self.pool.supervisors[address].handle.state.wait_for(*states)

    def metrics(self) -> ClientSnapshot:
        """Per method and per endpoint figures (plain data)."""
        return self.pool.snapshot()

    async def aclose(self) -> None:
        """Close every connection now; calls then fail with UNAVAILABLE."""
        await self.pool.aclose()


def parse_address(address: str) -> tuple[str, int]:
    """``"host:port"`` or ``"[v6 address]:port"`` -> (host, port)."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"address must be 'host:port', got {address!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def rpc_client_config(config: quic.ClientConfig | None) -> quic.ClientConfig:
    """``config`` speaking ALPN ``ghostwire-rpc`` (a default config if None)."""
    if config is None:
        return quic.ClientConfig(alpn=[ALPN])
    if list(config.alpn) == [ALPN]:
        return config
    return dataclasses.replace(config, alpn=[ALPN])


@asynccontextmanager
async def connect(
    address: str | Sequence[str],
    config: quic.ClientConfig | None = None,
    *,
    options: PoolOptions | None = None,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    interceptors: Sequence[ClientInterceptor] = (),
    connector: Connector | None = None,
) -> AsyncIterator[Client]:
    """A client of the RPC servers at ``address`` (``"host:port"``, or a list
    of them): a connection per endpoint (more while one's stream limit binds),
    kept up by a supervisor task each,
    all closed on exit.

    Returns once an endpoint is READY or every endpoint tried once; calls
    made while none is up fail with UNAVAILABLE (or wait while one is still
    connecting). ``options`` tunes balancing, backoff, retries, circuits and
    pings (:class:`~ghostwire.rpc.supervisor.PoolOptions`).
    """
    from .pool import Pool

    addresses = [address] if isinstance(address, str) else list(address)
    for each in addresses:
        parse_address(each)
    quic_config = rpc_client_config(config)

    def open_connection(endpoint: str) -> AbstractAsyncContextManager[quic.Connection]:
        host, port = parse_address(endpoint)
        return quic.connect(host, port, quic_config)

    def make_rpc(conn: quic.Connection) -> RpcConnection:
        return RpcConnection(conn, max_message_size=max_message_size, interceptors=interceptors)

    pool = Pool(addresses, connector or open_connection, make_rpc, options)
    client = Client(pool)
    async with _unwrapping_nursery() as nursery:
        nursery.start_soon(pool.run, name="rpc client pool")
        try:
            await pool.wait_settled()
            pool.raise_if_unreachable()
            yield client
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_TIMEOUT):
                await pool.aclose()


@asynccontextmanager
async def _unwrapping_nursery() -> AsyncIterator[trio.Nursery]:
    """A nursery that re-raises a lone exception as itself: what the caller's
    block raised comes out of ``connect`` unchanged."""
    try:
        async with trio.open_nursery() as nursery:
            yield nursery
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1 and not isinstance(group.exceptions[0], BaseExceptionGroup):
            raise group.exceptions[0] from group.exceptions[0].__cause__
        raise


__all__ = [
    "CallInfo",
    "CallNotStarted",
    "Client",
    "ClientInterceptor",
    "MethodStub",
    "RpcConnection",
    "ServiceStub",
    "Subscription",
    "connect",
    "parse_address",
]
