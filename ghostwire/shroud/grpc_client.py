"""``GrpcClient``: GhostWire's gRPC-style client, calling over ``ghostwire.rpc`` (QUIC).

::

    config = ghostwire.GrpcClientConfig(ca_file="ca.pem")
    client = ghostwire.GrpcClient.init(None, "localhost:9090", config)
    call = await client.call("bank.Bank", "Balance", b"...", ghostwire.CallOptions())  # GrpcCall
    data = await client.call("bank.Bank", "Balance", b"...")      # documented form -> bytes
    data = await client.unaryCall("bank.Bank", "Balance", {"address": "ab" * 20})  # JSON-encoded

Calls are ``async`` (the network runs under trio). ``async with client:``
keeps one QUIC connection for every call made inside the block; outside
one, each call opens its own connection (as the shim's ``HttpClient``
does). ``client.subscribe(service, method, request)`` reads an event
channel (``GrpcService.addEvents`` or a native ``@svc.events``).

Retries follow :class:`~.grpc_types.RetryPolicy` (the original's defaults),
mapped onto ``ghostwire.rpc``'s retry machinery: a call is sent again when
it failed with a retryable status *and* is idempotent (``CallOptions(
idempotent=True)``, or a method the server registered so), or when it
provably never reached the server (no connection). Running a
non-idempotent call twice is what the original would have done; it is not
done here. When retries are exhausted the call ends UNAVAILABLE with
``grpc-message`` ``All retry attempts failed``, as in the original.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import trio

from .. import quic, rpc
from ..rpc import client as rpc_client_module
from ..rpc.resilience.retry import CallRetryState, RetryThrottle
from ..rpc.resilience.runners import AttemptFailure, call_with_retries
from .errors import ConfigError, UnsupportedFeature
from .grpc_types import (
    DEFAULT_PORT,
    CallOptions,
    ClientConfig,
    GrpcCall,
    GrpcCallFailed,
    GrpcMetadata,
    GrpcStatus,
    NoResponseData,
    RetryPolicy,
)

ALL_RETRIES_FAILED = "All retry attempts failed"
_DOCUMENTED = object()  # call() without options: the documented form, returning bytes


class _NotSent(rpc.RpcError):
    """No connection could be made: the server never saw the call."""

    server_started = False


def parse_target(target: str) -> tuple[str, int]:
    """``"host[:port]"`` (default port 9090) or ``"[v6]:port"`` -> (host, port)."""
    if target.startswith("["):
        host, _, rest = target[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif target.count(":") == 1:
        host, _, port = target.partition(":")
    else:
        host, port = target, ""
    if not host or (port and not port.isdigit()):
        raise ConfigError(f"target must be 'host[:port]', got {target!r}")
    return host, int(port) if port else DEFAULT_PORT


def encode_request(request: Any) -> bytes:
    """What ``unaryCall`` sends: bytes as they are, anything else as JSON (the
    original's "protobuf" was JSON)."""
    if isinstance(request, bytes | bytearray | memoryview):
        return bytes(request)
    return json.dumps(request, separators=(",", ":")).encode()


def _as_bytes(value: Any) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    return json.dumps(value, separators=(",", ":"), default=_json_default).encode()


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class GrpcClient:
    """See the module docstring."""

    Config = ClientConfig

    def __init__(
        self,
        target: str,
        config: ClientConfig | None = None,
        *,
        quic_config: quic.ClientConfig | None = None,
    ) -> None:
        self.target = target
        self.host, self.port = parse_target(target)
        self.config = config if config is not None else ClientConfig()
        self._quic_config = quic_config
        self._throttle = RetryThrottle()
        self._shared: rpc.RpcConnection | None = None
        self._stack: AsyncExitStack | None = None
        self._next_call_id = 1

    @classmethod
    def init(cls, _allocator: Any, target: str, config: ClientConfig | None = None) -> GrpcClient:
        """``init(alloc, target, config)`` (code) or ``init(alloc, endpoint)`` (docs)."""
        return cls(target, config)

    def quic_client_config(self) -> quic.ClientConfig:
        if self._quic_config is not None:
            return self._quic_config
        cfg = self.config
        return quic.ClientConfig(
            alpn=[rpc.ALPN],
            cafile=cfg.ca_file,
            verify=cfg.verify_tls,
            server_name=cfg.server_name,
            idle_timeout=cfg.keepalive_timeout_ms / 1000,
        )

    # -- one connection for a block of calls ------------------------------------------

    async def __aenter__(self) -> GrpcClient:
        if self._stack is not None:
            raise RuntimeError("this GrpcClient is already connected")
        stack = AsyncExitStack()
        try:
            self._shared = await stack.enter_async_context(self._connect())
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.cleanup()

    async def cleanup(self) -> None:
        """Close the shared connection (if any)."""
        stack, self._stack, self._shared = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    aclose = cleanup

    @asynccontextmanager
    async def _connect(self) -> AsyncIterator[rpc.RpcConnection]:
        # One QUIC connection, no pool and no retries below ours: the retry
        # policy here is the only one, and a failed connect is known unsent.
        config = self.quic_client_config()
        entered = False
        try:
            async with quic.connect(self.host, self.port, config) as conn:
                entered = True
                yield rpc.RpcConnection(conn, max_message_size=self.config.max_message_size)
        except (quic.QuicError, OSError) as exc:
            if entered:
                raise
            message = f"cannot connect to {self.target}: {exc}"
            raise _NotSent(rpc.Status.UNAVAILABLE, message) from exc

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[rpc.RpcConnection]:
        """The shared connection inside ``async with client:``, else a new one for
        the block. Connecting failures are ``RpcError(UNAVAILABLE)``."""
        shared = self._shared
        if shared is not None and not shared.is_closed:
            yield shared
            return
        async with self._connect() as conn:
            yield conn

    # -- calls -------------------------------------------------------------------------

    async def call(
        self, service: str, method: str, data: Any = b"", options: Any = _DOCUMENTED
    ) -> Any:
        """``call(service, method, data, options)`` -> :class:`GrpcCall` (never raises
        for a call status); the documented ``call(service, method, request)`` ->
        the response bytes, raising :class:`GrpcCallFailed` on a status other than OK."""
        documented = options is _DOCUMENTED
        opts = CallOptions() if documented or options is None else options
        message = None if data is None else encode_request(data)
        result = await self._call(service, method, message, opts)
        if not documented:
            return result
        if not result.isSuccess():
            raise GrpcCallFailed(result.status, result.error_message)
        return result.response_data or b""

    async def unaryCall(self, service: str, method: str, request: Any) -> bytes:
        """JSON-encode ``request``, call, return the response bytes (as the original)."""
        result = await self._call(service, method, encode_request(request), CallOptions())
        if not result.isSuccess():
            raise GrpcCallFailed(result.status, result.error_message)
        if result.response_data is None:
            raise NoResponseData(f"/{service}/{method} sent no response data")
        return result.response_data

    async def unaryCallJson(self, service: str, method: str, request: Any) -> Any:
        """ghostwire's: :meth:`unaryCall` with the response parsed as JSON."""
        return json.loads(await self.unaryCall(service, method, request))

    async def checkHealth(self, service: str = "") -> str:
        """ghostwire's: ``grpc.health.v1.Health/Check`` -> ``"SERVING"`` etc."""
        request = {"service": service} if service else {}
        reply = await self.unaryCallJson("grpc.health.v1.Health", "Check", request)
        return str(reply.get("status", "UNKNOWN"))

    def streamingCall(self, service: str, method: str) -> Any:
        raise UnsupportedFeature(
            "streamingCall was a stub in the original; use subscribe() for server streaming"
        )

    unary_call = unaryCall
    unary_call_json = unaryCallJson
    check_health = checkHealth
    streaming_call = streamingCall

    @asynccontextmanager
    async def subscribe(
        self,
        service: str,
        method: str,
        request: Any = None,
        *,
        after: Any = None,
        metadata: Mapping[str, str | bytes] | None = None,
    ) -> AsyncIterator[rpc.Subscription]:
        """Subscribe to the event channel ``service/method``: ``async for event in sub``
        (``event.data``, ``event.cursor``); ``after`` resumes after a cursor."""
        args = () if request is None else (encode_request(request),)
        async with self.connection() as conn:
            name = f"{service}.{method}"
            async with conn.subscribe(name, args, {}, after=after, metadata=metadata) as sub:
                yield sub

    async def _call(
        self, service: str, method: str, data: bytes | None, options: CallOptions
    ) -> GrpcCall:
        call = GrpcCall(service, method, data or b"", call_id=self._next_call_id)
        self._next_call_id += 1
        policy: RetryPolicy = options.retry_policy or self.config.retry_policy()
        state = CallRetryState(policy.to_rpc(), self._throttle, idempotent=options.idempotent)
        metadata = _metadata(options.metadata)
        timeout_ms = (
            options.timeout_ms if options.timeout_ms is not None else self.config.timeout_ms
        )
        name = f"{service}.{method}"

        async def attempt(number: int) -> Any:
            call.attempts = number
            return await self._attempt(name, data, metadata, timeout_ms / 1000)

        try:
            reply = await call_with_retries(attempt, state, _classify)
        except rpc.RpcError as exc:
            _fill_error(call, exc)
            retryable = {int(GrpcStatus.of(s)) for s in policy.retryable_status_codes}
            if int(exc.status) in retryable and state.attempts >= policy.max_attempts > 1:
                call.status = GrpcStatus.unavailable
                call.trailers.set("grpc-message", ALL_RETRIES_FAILED)
            return call
        call.status = GrpcStatus.ok
        if isinstance(reply, dict) and "message" in reply and "trailers" in reply:
            call.response_data = _as_bytes(reply.get("message"))
            call.metadata = GrpcMetadata(reply.get("metadata") or {})
            call.trailers = GrpcMetadata(reply.get("trailers") or {})
        else:
            call.response_data = _as_bytes(reply)
        call.trailers.set("grpc-status", "0")
        return call

    async def _attempt(
        self, name: str, data: bytes | None, metadata: dict[str, str | bytes], seconds: float
    ) -> Any:
        args = () if data is None else (data,)
        with trio.move_on_after(seconds) as scope:
            async with self.connection() as conn:
                return await conn.call(name, args, {}, timeout=seconds, metadata=metadata)
        assert scope.cancelled_caught
        raise rpc.RpcError(rpc.Status.DEADLINE_EXCEEDED, "deadline exceeded")


# A refusal by a draining server (where ghostwire.rpc has it): never started.
_REFUSED: Any = getattr(rpc_client_module, "CallNotStarted", ())


def _classify(exc: Exception) -> AttemptFailure | None:
    if isinstance(exc, rpc.RpcError):
        started = getattr(exc, "server_started", True) and not isinstance(exc, _REFUSED)
        return AttemptFailure(int(exc.status), started)
    return None


def _fill_error(call: GrpcCall, exc: rpc.RpcError) -> None:
    call.status = GrpcStatus(int(exc.status))
    if isinstance(exc.details, dict):
        call.trailers = GrpcMetadata(
            {k: v for k, v in exc.details.items() if isinstance(v, str | bytes)}
        )
    call.trailers.set("grpc-status", str(int(exc.status)))
    call.trailers.set("grpc-message", exc.message)


def _metadata(value: GrpcMetadata | Mapping[str, str | bytes] | None) -> dict[str, str | bytes]:
    if value is None:
        return {}
    if isinstance(value, GrpcMetadata):
        return value.to_dict()
    return GrpcMetadata(value).to_dict()


class BlockingGrpcClient:
    """:class:`GrpcClient` for scripts without trio: the same calls, each blocking
    (and each on its own connection)."""

    Config = ClientConfig

    def __init__(self, target: str, config: ClientConfig | None = None, **options: Any) -> None:
        self._client = GrpcClient(target, config, **options)
        self.config = self._client.config

    @classmethod
    def init(
        cls, _allocator: Any, target: str, config: ClientConfig | None = None
    ) -> BlockingGrpcClient:
        return cls(target, config)

    def call(self, service: str, method: str, data: Any = b"", options: Any = _DOCUMENTED) -> Any:
        return trio.run(self._client.call, service, method, data, options)

    def unaryCall(self, service: str, method: str, request: Any) -> bytes:
        return trio.run(self._client.unaryCall, service, method, request)

    def checkHealth(self, service: str = "") -> str:
        return trio.run(self._client.checkHealth, service)

    def cleanup(self) -> None:
        pass

    unary_call = unaryCall
    check_health = checkHealth


def createGrpcClient(*args: Any, **kwargs: Any) -> GrpcClient:
    """``createGrpcClient(target[, config])``; a leading allocator is accepted and ignored."""
    if args and not isinstance(args[0], str):
        args = args[1:]
    return GrpcClient(*args, **kwargs)


GrpcConnection = GrpcClient
"""What ``GrpcServer.createConnection`` returns."""

__all__ = [
    "ALL_RETRIES_FAILED",
    "BlockingGrpcClient",
    "GrpcClient",
    "GrpcConnection",
    "createGrpcClient",
    "encode_request",
    "parse_target",
]
