"""``GrpcServer``: GhostWire's gRPC-style server, served by ``ghostwire.rpc`` over QUIC.

::

    svc = ghostwire.GrpcService.init(None, "bank.Bank")
    svc.addMethod("Balance", balance)            # balance(req, res), plain or async
    config = ghostwire.GrpcConfig(port=9090, cert_file="cert.pem", key_file="key.pem")
    server = ghostwire.createGrpcServer(None, config)
    server.addService(svc)
    server.addService(ghostwire.EchoService.createService())
    server.start()                               # or: await nursery.start(server.serve)

Each gRPC method ``Service/Method`` becomes the RPC method
``Service.Method`` (so ``POST /bank.Bank/Balance`` on the HTTP/3 mapping
reaches it too). A handler gets a :class:`GrpcRequest` (``message`` bytes,
``metadata``) and fills a :class:`GrpcResponse`; a status other than OK,
``setError``, or raising :class:`GrpcCallFailed` ends the call with that
status and ``grpc-message``. The original's routing answers are kept: an
unknown service is NOT_FOUND ``Service not found``, an unknown method of a
known one UNIMPLEMENTED ``Method not implemented``, a handler's exception
INTERNAL with the exception's name as the message.

Built in (as the original): ``grpc.health.v1.Health/Check`` answering
``{"status": "SERVING"}`` (``enable_health_check``), ``echo.EchoService``
when added. ``Health/Watch`` is an event channel here (the original's was
unimplemented). ``GrpcService.addEvents`` (ghostwire's) adds an event
channel that ``GrpcClient.subscribe`` reads.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import trio

from .. import quic, rpc
from ..rpc.dispatch import Dispatcher
from ..rpc.resilience.health import HealthStatus as HealthRegistry
from ..rpc.resilience.health import health_service
from ..rpc.resilience.states import ServingStatus
from .blocking import run_blocking
from .errors import ConfigError, ShroudError
from .grpc_types import (
    GrpcCallFailed,
    GrpcConfig,
    GrpcMetadata,
    GrpcRequest,
    GrpcResponse,
    GrpcStatus,
    HealthStatus,
    RegisteredService,
    ServerStats,
    ServiceType,
)

log = logging.getLogger("ghostwire.shroud")

GrpcServiceHandler = Callable[[GrpcRequest, GrpcResponse], Any]
"""``fn(req, res)``, plain or ``async def``."""
EventsHandler = Callable[[GrpcRequest], AsyncIterator[Any]]
"""``async def fn(req)`` yielding events (bytes, str, or any msgpack value)."""

HEALTH_SERVICE = "grpc.health.v1.Health"
REFLECTION_SERVICE = "grpc.reflection.v1alpha.ServerReflection"
SERVICE_NOT_FOUND = "Service not found"
METHOD_NOT_IMPLEMENTED = "Method not implemented"


class GrpcService:
    """A named service: ``addMethod(name, handler)``, ``getHandler(name)``."""

    def __init__(self, name: str) -> None:
        if not name or "/" in name:
            raise ConfigError(f"a gRPC service name is non-empty without '/': {name!r}")
        self.name = name
        self.methods: dict[str, GrpcServiceHandler] = {}
        self.event_methods: dict[str, EventsHandler] = {}
        self.idempotent: set[str] = set()

    @classmethod
    def init(cls, _allocator: Any, name: str) -> GrpcService:
        return cls(name)

    def addMethod(
        self, name: str, handler: GrpcServiceHandler, *, idempotent: bool = False
    ) -> None:
        """Register ``handler`` for ``name``; ``idempotent`` (ghostwire's) lets
        clients retry it after the server may have run it."""
        self._check_name(name)
        self.methods[name] = handler
        if idempotent:
            self.idempotent.add(name)

    def addEvents(self, name: str, handler: EventsHandler) -> None:
        """ghostwire's: an event channel ``name`` (an async generator ``fn(req)``)."""
        self._check_name(name)
        if not inspect.isasyncgenfunction(handler):
            raise ConfigError(f"{name}: an event channel is an async generator function")
        self.event_methods[name] = handler

    def getHandler(self, name: str) -> GrpcServiceHandler | None:
        return self.methods.get(name)

    def _check_name(self, name: str) -> None:
        if not name or "/" in name or "." in name:
            raise ConfigError(f"a method name is non-empty without '/' or '.': {name!r}")
        if name in self.methods or name in self.event_methods:
            raise ConfigError(f"{self.name}/{name} is already registered")

    add_method = addMethod
    add_events = addEvents
    get_handler = getHandler


class EchoService:
    """The original's example service ``echo.EchoService``: ``Echo`` echoes the request."""

    NAME = "echo.EchoService"

    @staticmethod
    def createService(_allocator: Any = None) -> GrpcService:
        service = GrpcService(EchoService.NAME)
        service.addMethod("Echo", EchoService.echo, idempotent=True)
        return service

    @staticmethod
    def echo(req: GrpcRequest, res: GrpcResponse) -> None:
        if req.message is None:
            res.setError(GrpcStatus.invalid_argument, "No message provided")
            return
        res.setMessage(req.message)

    create_service = createService


def as_service(service: Any) -> GrpcService:
    """``addService``'s argument: a :class:`GrpcService`, something with
    ``createService()``, or (the documented ``addService(anytype)``) any object
    with a ``name`` whose public callables are its methods."""
    if isinstance(service, GrpcService):
        return service
    if hasattr(service, "createService"):
        return as_service(service.createService())
    name = getattr(service, "name", None) or getattr(service, "service_name", None)
    if not isinstance(name, str):
        raise ConfigError("addService needs a GrpcService or an object with a 'name'")
    result = GrpcService(name)
    for attr in dir(service):
        if attr.startswith("_") or attr in ("name", "service_name"):
            continue
        value = getattr(service, attr)
        if callable(value) and not isinstance(value, type):
            if inspect.isasyncgenfunction(value):
                result.addEvents(attr, value)
            else:
                result.addMethod(attr, value)
    return result


# -- the RPC side: each gRPC method as an RPC method -----------------------------------------


def _request(service: str, method: str, ctx: rpc.Context, message: Any) -> GrpcRequest:
    if isinstance(message, str):
        message = message.encode()
    elif message is not None and not isinstance(message, bytes | bytearray):
        raise rpc.RpcError(rpc.Status.INVALID_ARGUMENT, "the message must be bytes")
    return GrpcRequest(
        service,
        method,
        GrpcMetadata(ctx.metadata),
        None if message is None else bytes(message),
        peer=ctx.peer.address,
    )


def _reply(res: GrpcResponse) -> Any:
    """Bytes (or None) alone, or a map with the response metadata and trailers."""
    trailers = {k: v for k, v in res.trailers.items() if k != "grpc-message"}
    if res.status is not GrpcStatus.ok:
        message = res.trailers.get("grpc-message") or ""
        text = message.decode(errors="replace") if isinstance(message, bytes) else message
        raise rpc.RpcError(res.status.to_rpc(), text, trailers or None)
    if not len(res.metadata) and not trailers:
        return res.message
    return {"message": res.message, "metadata": res.metadata.to_dict(), "trailers": trailers}


def _unary(service: str, method: str, handler: GrpcServiceHandler) -> Callable[..., Any]:
    async def call(ctx: rpc.Context, message: Any = None) -> Any:
        req = _request(service, method, ctx, message)
        res = GrpcResponse()
        try:
            result = handler(req, res)
            if inspect.isawaitable(result):
                await result
        except GrpcCallFailed as exc:
            raise rpc.RpcError(exc.status.to_rpc(), exc.message) from None
        except rpc.RpcError:
            raise
        except Exception as exc:
            log.exception("gRPC handler /%s/%s failed", service, method)
            # the original: INTERNAL with grpc-message set to the error's name
            raise rpc.RpcError(rpc.Status.INTERNAL, type(exc).__name__) from None
        return _reply(res)

    return call


def _events(service: str, method: str, handler: EventsHandler) -> Callable[..., Any]:
    async def channel(ctx: rpc.Context, message: Any = None) -> AsyncIterator[Any]:
        req = _request(service, method, ctx, message)
        req.resume_after = ctx.resume_after
        async for item in handler(req):
            yield item

    return channel


def _rpc_service(service: GrpcService) -> rpc.Service:
    """The gRPC service as an RPC service whose methods are named ``Service.Method``."""
    holder = rpc.Service("grpc")
    for name, handler in service.methods.items():
        holder.call(name=name, idempotent=name in service.idempotent)(
            _unary(service.name, name, handler)
        )
    for name, events in service.event_methods.items():
        holder.events(name=name)(_events(service.name, name, events))
    holder.methods = {
        name: dataclasses.replace(m, name=f"{service.name}.{name}")
        for name, m in holder.methods.items()
    }
    holder.name = service.name  # may hold dots, unlike native service names
    return holder


class _GrpcDispatcher(Dispatcher):
    """The RPC dispatcher, answering unknown names as the original did."""

    def __init__(self, server: GrpcServer, services: Iterable[rpc.Service], **kw: Any) -> None:
        super().__init__(services, **kw)
        self._grpc = server

    def resolve(self, name: str) -> rpc.Method:
        method = self.methods.get(name)
        if method is not None:
            return method
        self._grpc._count(ok=False)
        service = name.rpartition(".")[0]
        if service in self._grpc.known_services():
            raise rpc.RpcError(rpc.Status.UNIMPLEMENTED, METHOD_NOT_IMPLEMENTED)
        raise rpc.RpcError(rpc.Status.NOT_FOUND, SERVICE_NOT_FOUND)


class GrpcServer:
    """See the module docstring. ``stats`` has the original's fields."""

    def __init__(
        self,
        config: GrpcConfig | None = None,
        *,
        quic_config: quic.ServerConfig | None = None,
        rpc_services: Sequence[rpc.Service] = (),
    ) -> None:
        self.config = config if config is not None else GrpcConfig()
        self.services: dict[str, GrpcService] = {}
        self.rpc_services = list(rpc_services)  # ghostwire's: native services beside
        self.registered: dict[str, RegisteredService] = {}
        self.stats = ServerStats()
        self.health: HealthRegistry | None = None
        self.rpc_server: rpc.Server | None = None
        self.port: int | None = None
        self.shutdown_timeout = 5.0
        self._quic_config = quic_config
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop_event: trio.Event | None = None
        self._stop_requested = False
        self._lock = threading.Lock()
        self._ready = threading.Event()

    @classmethod
    def init(cls, _allocator: Any, config: GrpcConfig) -> GrpcServer:
        return cls(config)

    def deinit(self) -> None:
        self.stop()

    # -- services ----------------------------------------------------------------------

    def addService(self, service: Any) -> None:
        svc = as_service(service)
        if svc.name in self.services or svc.name == HEALTH_SERVICE:
            raise ConfigError(f"service {svc.name!r} is already registered")
        self.services[svc.name] = svc

    def addRpcService(self, service: rpc.Service) -> None:
        """ghostwire's: a native ``ghostwire.rpc`` service on the same server."""
        self.rpc_services.append(service)

    def known_services(self) -> set[str]:
        names = set(self.services) | {s.name for s in self.rpc_services}
        if self.config.enable_health_check:
            names.add(HEALTH_SERVICE)
        if self.config.enable_reflection:
            names.add(REFLECTION_SERVICE)  # its one method is unimplemented, as the original
        return names

    def registerService(
        self, name: str, endpoint: str, service_type: ServiceType = ServiceType.other
    ) -> None:
        """The FFI-style registry of remote services (``createConnection`` dials them)."""
        self.registered[name] = RegisteredService(name, endpoint, service_type)

    def unregisterService(self, name: str) -> None:
        self.registered.pop(name, None)

    def getServices(self) -> list[RegisteredService]:
        return list(self.registered.values())

    def checkServiceHealth(self, name: str) -> HealthStatus:
        """A remote service's last known health, or a local one's from the health registry."""
        if name in self.registered:
            return self.registered[name].health_status
        if name not in self.services or self.health is None:
            return HealthStatus.unknown
        status = self.health.get(name)
        if status is ServingStatus.SERVING:
            return HealthStatus.healthy
        return HealthStatus.maintenance if self.health.draining else HealthStatus.unhealthy

    def createConnection(self, service_name: str) -> Any:
        """A :class:`~.grpc_client.GrpcClient` to a registered service's endpoint."""
        from .grpc_client import GrpcClient

        entry = self.registered.get(service_name)
        if entry is None:
            raise ShroudError(f"service {service_name!r} is not registered")
        return GrpcClient(entry.endpoint)

    def updateStats(self) -> None:
        if self.rpc_server is None:
            self.stats.active_connections = 0
            return
        active = self.rpc_server.statistics().get("connections", 0)
        self.stats.active_connections = active
        self.stats.total_connections = max(self.stats.total_connections, active)

    def setServing(self, service: str, serving: bool) -> None:
        """ghostwire's: what the health service says about ``service`` ("" = the server)."""
        if self.health is None:
            raise ShroudError("the server is not running")
        self.health.set(service, ServingStatus.SERVING if serving else ServingStatus.NOT_SERVING)

    add_service = addService
    add_rpc_service = addRpcService
    register_service = registerService
    unregister_service = unregisterService
    get_services = getServices
    check_service_health = checkServiceHealth
    create_connection = createConnection
    update_stats = updateStats
    set_serving = setServing

    def _count(self, *, ok: bool) -> None:
        self.updateStats()  # keeps total_connections' peak current
        self.stats.requests_handled += 1
        if not ok:
            self.stats.errors += 1

    @asynccontextmanager
    async def _counting(self, ctx: rpc.Context) -> AsyncIterator[None]:
        try:
            yield
        except rpc.RpcError:
            self._count(ok=False)
            raise
        self._count(ok=True)

    # -- running -----------------------------------------------------------------------

    def quic_server_config(self) -> quic.ServerConfig:
        if self._quic_config is not None:
            return dataclasses.replace(self._quic_config, alpn=[rpc.ALPN])
        cfg = self.config
        if cfg.cert_file is None or cfg.key_file is None:
            raise ConfigError("GrpcServer needs cert_file and key_file: QUIC always runs TLS 1.3")
        try:
            return quic.ServerConfig(
                alpn=[rpc.ALPN],
                certfile=cfg.cert_file,
                keyfile=cfg.key_file,
                max_connections=cfg.max_connections,
            )
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot load cert_file/key_file: {exc}") from exc

    def build_rpc_server(self) -> rpc.Server:
        """The ``ghostwire.rpc`` server carrying these services (built by :meth:`serve`)."""
        cfg = self.config
        services = [_rpc_service(s) for s in self.services.values()] + self.rpc_services
        limits = rpc.Limits(max_message_size=cfg.max_message_size)
        server = rpc.Server(
            services,
            config=self.quic_server_config(),
            limits=limits,
            interceptors=[self._counting],
        )
        registry = getattr(server, "health", None)
        if not isinstance(registry, HealthRegistry):
            # this rpc.Server has no built-in health service: add ours
            registry = HealthRegistry(s.name for s in services)
            if not any(s.name == "health" for s in services):
                services = [*services, health_service(registry)]
                server = rpc.Server(
                    services, config=server.config, limits=limits, interceptors=[self._counting]
                )
        self.health = registry
        if cfg.enable_health_check:
            services = [*services, _grpc_health_service(registry)]
        server.dispatcher = _GrpcDispatcher(self, services, interceptors=[self._counting])
        return server

    async def serve(
        self, *, task_status: trio.TaskStatus[GrpcServer] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve until :meth:`stop` (graceful) or cancellation; ``nursery.start``
        returns once listening (``self.port`` holds the bound port)."""
        server = self.build_rpc_server()
        with self._lock:
            if self._token is not None:
                raise ShroudError("this server is already running")
            self._token = trio.lowlevel.current_trio_token()
            self._stop_event = stop = trio.Event()
            if self._stop_requested:
                stop.set()
        self.rpc_server = server
        try:
            async with trio.open_nursery() as nursery:
                start = functools.partial(server.serve, self.config.port, host=self.config.address)
                listener: rpc.RpcListener = await nursery.start(start)
                self.port = listener.port
                self._ready.set()
                task_status.started(self)
                await stop.wait()
                await server.shutdown(grace=self.shutdown_timeout)
                nursery.cancel_scope.cancel()
        finally:
            with self._lock:
                self._token = None
                self._stop_requested = False
            self._ready.clear()
            self.updateStats()
            self.rpc_server = None

    def start(self) -> None:
        """Serve, blocking, until :meth:`stop` (from a handler or another thread) or Ctrl-C
        (a graceful :meth:`stop`; a second Ctrl-C stops at once)."""
        run_blocking(self.serve, self.stop, log)

    def stop(self) -> None:
        """Stop gracefully; safe from a handler, another thread, or before it started."""
        with self._lock:
            token, event = self._token, self._stop_event
            if token is None or event is None:
                self._stop_requested = True
                return
        try:
            if trio.lowlevel.current_trio_token() is token:
                event.set()
                return
        except RuntimeError:
            pass
        try:
            token.run_sync_soon(event.set)
        except trio.RunFinishedError:
            pass

    def waitUntilReady(self, timeout: float | None = None) -> bool:
        return self._ready.wait(timeout)

    def isRunning(self) -> bool:
        return self._ready.is_set()

    wait_until_ready = waitUntilReady
    is_running = isRunning


def _grpc_health_service(registry: HealthRegistry) -> rpc.Service:
    """``grpc.health.v1.Health``: ``Check`` answers ``{"status": "SERVING"}`` (JSON bytes,
    as the original) for the server or the service named by ``{"service": name}``."""
    health = GrpcService(HEALTH_SERVICE)

    def check(req: GrpcRequest, res: GrpcResponse) -> None:
        res.setMessage(json.dumps({"status": registry.get(_health_target(req)).name}))

    async def watch(req: GrpcRequest) -> AsyncIterator[bytes]:
        async for status in registry.watch(_health_target(req)):
            yield json.dumps({"status": status.name}).encode()

    health.addMethod("Check", check, idempotent=True)
    health.addEvents("Watch", watch)
    return _rpc_service(health)


def _health_target(req: GrpcRequest) -> str:
    if not req.message:
        return ""
    try:
        value = json.loads(req.message)
    except ValueError:
        return ""
    name = value.get("service", "") if isinstance(value, dict) else ""
    return name if isinstance(name, str) else ""


def createGrpcServer(*args: Any, **kwargs: Any) -> GrpcServer:
    """``createGrpcServer(config)`` or ``createGrpcServer(allocator, config)``."""
    if len(args) == 2:
        args = args[1:]
    if len(args) > 1:
        raise TypeError("createGrpcServer([allocator,] config)")
    return GrpcServer(*args, **kwargs)


__all__ = [
    "HEALTH_SERVICE",
    "METHOD_NOT_IMPLEMENTED",
    "SERVICE_NOT_FOUND",
    "EchoService",
    "EventsHandler",
    "GrpcServer",
    "GrpcService",
    "GrpcServiceHandler",
    "createGrpcServer",
]
