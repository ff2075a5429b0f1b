"""``UnifiedServer``: the original's route and middleware API, served over HTTP/3 and HTTP/1.1.

Under trio::

    server = UnifiedServer(UnifiedServerConfig(port=8080))
    server.get("/users/:id", handler)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)   # listening once this returns
        ...
        server.stop()                        # or cancel the nursery

From a plain script, ``server.start()`` blocks until ``server.stop()`` is
called (from a handler or another thread) or Ctrl-C.

What is served (:mod:`ghostwire.shroud.config` lists the settings):
HTTP/1.1 on ``port`` (``enable_http1``), HTTP/1.1 over TLS on ``tls_port``
(``enable_tls``), HTTP/3 on ``http3_port`` (``enable_http3``; by default the
TLS port number, on UDP). HTTP/1.1 responses advertise HTTP/3 with
``Alt-Svc``. WebSocket routes are served on the HTTP/1.1 listeners.
"""

from __future__ import annotations

import functools
import logging
import os
import ssl
import threading
from collections.abc import Callable
from typing import Any

import trio

from ..http3 import serve as h3_serve
from ..quic.config import ServerConfig
from ..quic.net.api import QuicServer
from .blocking import run_blocking
from .chain import Chain, Handler, Middleware
from .config import UnifiedServerConfig
from .errors import ConfigError, HttpError, ShroudError
from .message import TEXT, UnifiedRequest, UnifiedResponse
from .middleware import compression, cors, logging_middleware, security_headers
from .routing import Match, RouteKind, RouteTable
from .stats import Http3ServerStats, ServerStats, StatsCounter

log = logging.getLogger("ghostwire.shroud")

NOT_FOUND = "404 - Not Found"
INTERNAL_ERROR = "Internal Server Error"


class ServerAlreadyRunning(ShroudError):
    """``serve()``/``start()`` was called on a server that is running."""


class UnifiedServer:
    """Routes, middleware and the listeners that serve them; see the module docs."""

    def __init__(self, config: UnifiedServerConfig | None = None, **options: Any) -> None:
        if config is not None and options:
            raise ConfigError("pass a UnifiedServerConfig or keyword options, not both")
        self.config = config if config is not None else UnifiedServerConfig(**options)
        self.routes = RouteTable()
        self.middlewares: list[Middleware] = []
        self.stats_counter = StatsCounter()
        self.websocket_max_message_size = 1 << 20
        self.http1_address: tuple[str, int] | None = None
        self.tls_address: tuple[str, int] | None = None
        self.http3_address: tuple[str, int] | None = None
        self._quic_server: QuicServer | None = None
        self._http3_scope: trio.CancelScope | None = None  # HTTP/3's, set by listeners.py
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop_event = trio.Event()
        self.shutdown_timeout = 5.0
        """Seconds :meth:`stop` gives requests in progress before cutting them off."""
        self._running = False
        self._stop_requested = False
        self._ready = threading.Event()
        self._stop_lock = threading.Lock()
        if self.config.static_files_root:
            self.static("/", self.config.static_files_root)

    @classmethod
    def init(cls, _allocator: Any, config: UnifiedServerConfig) -> UnifiedServer:
        """The original's ``init(alloc, config)``; the allocator is ignored."""
        return cls(config)

    def deinit(self) -> None:
        self.stop()

    # -- routes -------------------------------------------------------------------------

    def addRoute(self, method: str, path: str, handler: Handler) -> None:
        self.routes.add(method, path, handler)

    def get(self, path: str, handler: Handler) -> None:
        self.routes.add("GET", path, handler)

    def post(self, path: str, handler: Handler) -> None:
        self.routes.add("POST", path, handler)

    def put(self, path: str, handler: Handler) -> None:
        self.routes.add("PUT", path, handler)

    def delete(self, path: str, handler: Handler) -> None:
        self.routes.add("DELETE", path, handler)

    def patch(self, path: str, handler: Handler) -> None:
        self.routes.add("PATCH", path, handler)

    def options(self, path: str, handler: Handler) -> None:
        self.routes.add("OPTIONS", path, handler)

    def head(self, path: str, handler: Handler) -> None:
        self.routes.add("HEAD", path, handler)

    def addHandler(self, path: str, handler: Handler) -> None:
        """The documented ``addHandler``: ``handler`` answers every method on ``path``."""
        self.routes.add(None, path, handler)

    def websocket(self, path: str, handler: Callable[..., Any]) -> None:
        """A WebSocket route (see :mod:`ghostwire.shroud.websocket` for the handler forms).

        A plain ``(req, res)`` function registers a GET route, as in the original.
        """
        from .websocket import is_websocket_handler

        if is_websocket_handler(handler):
            if not self.config.enable_websocket:
                raise ConfigError("enable_websocket=False: WebSocket routes are off")
            self.routes.add("GET", path, handler, RouteKind.websocket)
        else:
            self.routes.add("GET", path, handler)

    def static(self, url_prefix: str, directory: str | os.PathLike[str]) -> None:
        """Serve the files under ``directory`` at ``url_prefix`` (GET), never outside it."""
        root = os.path.realpath(directory)
        prefix = url_prefix.rstrip("/")

        def serve_file(req: UnifiedRequest, res: UnifiedResponse) -> None:
            relative = req.getParam("*") or "index.html"
            target = os.path.realpath(os.path.join(root, relative))
            if os.path.commonpath([root, target]) != root:
                raise HttpError(404, NOT_FOUND)  # .. or a symlink out of the root
            res.file(target)

        self.routes.add("GET", f"{prefix}/*", serve_file)

    def use(self, middleware: Middleware) -> None:
        if not callable(middleware):
            raise ConfigError(f"middleware must be callable, got {middleware!r}")
        self.middlewares.append(middleware)

    def addMiddleware(self, middleware: Middleware) -> None:
        self.use(middleware)

    def corsMiddleware(self) -> Middleware:
        return cors

    def loggingMiddleware(self) -> Middleware:
        return logging_middleware

    def compressionMiddleware(self) -> Middleware:
        return compression

    add_route = addRoute
    add_handler = addHandler
    add_middleware = addMiddleware
    cors_middleware = corsMiddleware
    logging_middleware = loggingMiddleware
    compression_middleware = compressionMiddleware

    # -- answering a request ------------------------------------------------------------

    async def handleRequest(self, req: UnifiedRequest, res: UnifiedResponse) -> None:
        """Route ``req`` and run the middleware and the handler on ``res``.

        Errors propagate (:meth:`respond` turns them into responses).
        """
        match = self.routes.find(str(req.method), req.raw_path or req.path, RouteKind.http)
        handler: Handler
        if match is not None:
            req.path_params = match.params
            handler = match.route.handler
        else:
            handler = functools.partial(_not_routed, self.routes.allowed_methods(req.raw_path))
        builtins: list[Middleware] = []
        if self.config.enable_security_headers:
            builtins.append(security_headers)
        if self.config.enable_cors:
            builtins.append(cors)
        await Chain([*builtins, *self.middlewares], handler).run(req, res)

    handle_request = handleRequest

    async def respond(self, req: UnifiedRequest) -> UnifiedResponse:
        """The response to ``req``; a handler's error becomes its status (or a 500)."""
        res = UnifiedResponse()
        try:
            await self.handleRequest(req, res)
        except HttpError as error:
            res = _text_response(error.status, error.message)
        except Exception:
            log.exception("unhandled error in handler for %s %s", req.method, req.path)
            res = _text_response(500, INTERNAL_ERROR)
        self.stats_counter.request_done(req.version.value, res.status)
        return res

    def find_websocket(self, req: UnifiedRequest) -> Match | None:
        if not self.config.enable_websocket:
            return None
        return self.routes.find(str(req.method), req.raw_path, RouteKind.websocket)

    # -- running ------------------------------------------------------------------------

    async def serve(
        self, *, task_status: trio.TaskStatus[UnifiedServer] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve until :meth:`stop` or cancellation; ``nursery.start`` returns once listening.

        :meth:`stop` is graceful: new connections are refused, requests in
        progress get ``shutdown_timeout`` seconds to finish, HTTP/3 clients
        are sent GOAWAY at once (RFC 9114 §5.2: new requests go elsewhere).
        Cancelling ``serve`` stops at once.
        """
        if self._running:
            raise ServerAlreadyRunning("this server is already running")
        # Certificates are loaded before anything binds: a bad path is a ConfigError here.
        tls_context = self.tls_context() if self.config.enable_tls else None
        quic_config = self.quic_config() if self.config.enable_http3 else None
        self._running = True
        with self._stop_lock:  # stop() from another thread sees the token, or sets the flag
            self._stop_event = trio.Event()
            self._token = trio.lowlevel.current_trio_token()
            if self._stop_requested:
                self._stop_event.set()
        try:
            async with trio.open_nursery() as nursery:
                from .listeners import start_listeners

                accepting = trio.CancelScope()
                await start_listeners(self, nursery, accepting, tls_context, quic_config)
                self.stats_counter.started()
                self._ready.set()
                task_status.started(self)
                await self._stop_event.wait()
                accepting.cancel()
                if self._http3_scope is not None:
                    self._http3_scope.cancel()  # GOAWAY, then its requests finish
                with trio.move_on_after(self.shutdown_timeout):
                    await self.stats_counter.wait_no_requests()
                nursery.cancel_scope.cancel()
        finally:
            with self._stop_lock:
                self._running = False
                self._stop_requested = False
                self._token = self._quic_server = self._http3_scope = None
            self._ready.clear()

    def start(self) -> None:
        """Serve, blocking, until :meth:`stop` (from a handler or another thread) or Ctrl-C
        (a graceful :meth:`stop`; a second Ctrl-C stops at once)."""
        run_blocking(self.serve, self.stop, log)

    def stop(self) -> None:
        """Stop serving (gracefully); safe from a handler, another thread, or before it started."""
        with self._stop_lock:
            token = self._token
            if token is None:
                self._stop_requested = True  # serve() stops as soon as it has started
                return
        try:
            if trio.lowlevel.current_trio_token() is token:
                self._stop_event.set()
                return
        except RuntimeError:
            pass
        try:
            token.run_sync_soon(self._stop_event.set)
        except trio.RunFinishedError:
            pass

    def waitUntilReady(self, timeout: float | None = None) -> bool:
        """For code on another thread than ``start()``'s: block until listening."""
        return self._ready.wait(timeout)

    def isRunning(self) -> bool:
        return self._ready.is_set()

    wait_until_ready = waitUntilReady
    is_running = isRunning

    def alt_svc(self) -> str | None:
        """The ``Alt-Svc`` value advertising HTTP/3, if it is being served."""
        if self.http3_address is None:
            return None
        return f'h3=":{self.http3_address[1]}"; ma={self.config.alt_svc_max_age}'

    # -- stats --------------------------------------------------------------------------

    def getStats(self) -> ServerStats:
        counter = self.stats_counter
        h3_active = self._quic_server.connection_count if self._quic_server else 0
        counter.http3_connections(h3_active)
        return ServerStats(
            active_connections=counter.http1_active + h3_active,
            total_connections=counter.http1_total + counter.h3_peak_connections,
            routes_registered=len(self.routes.routes),
            middlewares_registered=len(self.middlewares),
            uptime_ms=int(counter.uptime() * 1000),
            requests_handled=sum(counter.requests.values()),
            errors_count=sum(counter.errors.values()),
        )

    def getHttp3Stats(self) -> Http3ServerStats:
        """The vendored HTTP/3 server's stats shape; ``connections_total`` is the peak
        number of concurrent connections seen (the QUIC layer does not count closed ones)."""
        counter = self.stats_counter
        active = self._quic_server.connection_count if self._quic_server else 0
        counter.http3_connections(active)
        uptime = counter.uptime()
        handled = counter.requests.get("http3", 0)
        return Http3ServerStats(
            connections_active=active,
            connections_total=counter.h3_peak_connections,
            requests_handled=handled,
            requests_per_second=handled / uptime if uptime > 0 else 0.0,
            bytes_sent=counter.h3_bytes_sent,
            bytes_received=counter.h3_bytes_received,
            errors_count=counter.errors.get("http3", 0),
            start_time=counter.started_unix,
        )

    get_stats = getStats
    get_http3_stats = getHttp3Stats

    # -- for the listeners --------------------------------------------------------------

    def quic_config(self) -> ServerConfig:
        cfg = self.config
        try:
            return ServerConfig(
                alpn=["h3"],
                certfile=cfg.cert_file,
                keyfile=cfg.key_file,
                idle_timeout=cfg.keep_alive_timeout_ms / 1000,
                max_connections=cfg.max_connections,
            )
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot load cert_file/key_file for HTTP/3: {exc}") from exc

    def tls_context(self) -> ssl.SSLContext:
        cfg = self.config
        assert cfg.cert_file is not None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(cfg.cert_file, cfg.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot load cert_file/key_file for TLS: {exc}") from exc
        context.set_alpn_protocols(["http/1.1"])
        return context

    def _set_quic_server(self, server: QuicServer) -> None:
        self._quic_server = server
        self.http3_address = server.address


def _not_routed(allowed: list[str], req: UnifiedRequest, res: UnifiedResponse) -> None:
    if allowed:
        res.setStatus(405)
        res.setHeader("Allow", ", ".join(allowed))
        res.text("405 - Method Not Allowed")
    else:
        res.setStatus(404)
        res.text(NOT_FOUND)


def _text_response(status: int, message: str) -> UnifiedResponse:
    res = UnifiedResponse()
    res.setStatus(status)
    res.setHeader("Content-Type", TEXT)
    res.body = message
    return res


def createUnifiedServer(*args: Any) -> UnifiedServer:
    """``createUnifiedServer(config)``, or ``(allocator, config)`` as in the original."""
    if len(args) == 2:
        args = args[1:]
    if len(args) != 1 or not isinstance(args[0], UnifiedServerConfig):
        raise ConfigError("createUnifiedServer(config) takes a UnifiedServerConfig")
    return UnifiedServer(args[0])


__all__ = ["ServerAlreadyRunning", "UnifiedServer", "createUnifiedServer", "h3_serve"]
