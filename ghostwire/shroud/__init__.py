"""ghostwire.shroud: Shroud GhostWire's API on ghostwire, so its programs move over unchanged.

Replace ``ghostwire`` (Shroud's) with ``ghostwire.shroud`` and the routes,
middleware and handlers keep working, now really served: over HTTP/3 and,
for clients not on QUIC yet, over HTTP/1.1 (TLS when configured) with
``Alt-Svc`` pointing at HTTP/3. docs/migrating-from-shroud.md lists every
difference from the original and maps old calls to new ones.

Modules:

* :mod:`.config`      ``UnifiedServerConfig`` (code and documented names)
* :mod:`.message`     ``UnifiedRequest`` / ``UnifiedResponse`` / ``Cookie``
* :mod:`.routing`     ``:name`` / ``*`` route patterns (pure)
* :mod:`.chain`       middleware with a working ``next`` (plain or async)
* :mod:`.server`      ``UnifiedServer`` (``serve`` under trio, blocking ``start``)
* :mod:`.async_server` the ``AsyncUnifiedServer`` names on the same server
* :mod:`.listeners`, :mod:`.http1`, :mod:`.http3`, :mod:`.websocket`  the transports
  (:mod:`.sending`: the HTTP/1.1 side's bounded writes)
* :mod:`.client`      ``HttpClient`` / ``BlockingHttpClient``
* :mod:`.zvm_wire`    ZVM / ghostd wire codecs (pure)
* :mod:`.zvm_serve`   answering ZVM-framed requests on a stream (QUIC or TCP)
* :mod:`.zvm_service` the ZVM-style RPC services (ghostd / walletd) and a toy chain
* :mod:`.zvm_client`  ``ZvmClient`` (ZVM's ``QuicClient`` operations) over ``ghostwire.rpc``
* :mod:`.ws_events`   WebSocket routes backed by RPC event channels
* :mod:`.grpc`        ``GrpcServer`` / ``GrpcClient`` over ``ghostwire.rpc`` (the
  original's ``grpc`` namespace; :mod:`.grpc_types`, :mod:`.grpc_server`,
  :mod:`.grpc_client`)

The HTTP/1.1 and WebSocket side needs the ``shroud`` extra (h11, wsproto);
the rest of ghostwire does not.
"""

from __future__ import annotations

import importlib.util
import socket
from typing import Any

from . import grpc
from .async_server import (
    AsyncMiddlewares,
    AsyncProtocol,
    AsyncServerBuilder,
    AsyncUnifiedServer,
    AsyncUnifiedServerConfig,
    createAsyncServerBuilder,
    createAsyncUnifiedServer,
)
from .client import (
    BlockingHttpClient,
    ClientConfig,
    ClientRequest,
    ClientResponse,
    HttpClient,
    HttpResponse,
    HttpVersion,
)
from .config import GhostwireCapabilities, NetworkProtocol, ServerProtocol, UnifiedServerConfig
from .errors import (
    ClientError,
    ConfigError,
    ConnectionFailed,
    GrpcError,
    HandshakeFailed,
    HttpError,
    InvalidJson,
    IPv6Error,
    NetworkError,
    ProxyError,
    SendTimeout,
    ShroudError,
    StreamError,
    TransportError,
    UnsupportedFeature,
)
from .grpc import (
    BlockingGrpcClient,
    CallOptions,
    EchoService,
    GrpcCall,
    GrpcCallFailed,
    GrpcClient,
    GrpcConfig,
    GrpcMessage,
    GrpcMetadata,
    GrpcRequest,
    GrpcResponse,
    GrpcServer,
    GrpcService,
    GrpcStatus,
    NoResponseData,
    RetryPolicy,
    createGrpcClient,
    createGrpcServer,
)
from .grpc import ClientConfig as GrpcClientConfig
from .grpc import ServerStats as GrpcServerStats
from .message import Cookie, Headers, Method, SameSite, UnifiedRequest, UnifiedResponse
from .server import ServerAlreadyRunning, UnifiedServer, createUnifiedServer
from .stats import Http3ServerStats, ServerStats
from .ws_events import eventSource, grpcEvents, rpcEvents
from .zvm_client import ZvmClient, ZvmClientConfig, ZvmError

AsyncHttpRequest = UnifiedRequest
AsyncHttpResponse = UnifiedResponse
AsyncRequestHandler = Any
AsyncMiddleware = Any
HandlerFn = Any
"""``fn(req, res)``, plain or ``async def``."""
MiddlewareFn = Any
"""``fn(req, res, next)``, plain or ``async def``; ``next()`` or ``next(req, res)``."""

API_VERSION = "1.0.0"


def version() -> str:
    """The GhostWire API version this shim provides (the original's ``"1.0.0"``).

    ghostwire's own version is ``ghostwire.__version__``.
    """
    return API_VERSION


def capabilities() -> GhostwireCapabilities:
    """What is really available here and now (the original said ``True`` to everything)."""
    has_h11 = importlib.util.find_spec("h11") is not None
    has_wsproto = importlib.util.find_spec("wsproto") is not None
    return GhostwireCapabilities(
        http1_1=has_h11,
        http2=False,
        http3=True,
        grpc=True,  # gRPC-style calls over ghostwire.rpc (QUIC), not gRPC's HTTP/2 wire
        ipv6=socket.has_ipv6,
        websocket=has_h11 and has_wsproto,
        reverse_proxy=False,
        multicast_discovery=False,
        zero_config_ipv6=False,
        dual_stack=socket.has_dualstack_ipv6(),
    )


def _not_yet(name: str, reason: str) -> Any:
    def factory(*_args: Any, **_kwargs: Any) -> Any:
        raise UnsupportedFeature(f"{name}: {reason}")

    factory.__name__ = name
    factory.__doc__ = f"Not available yet: {reason}."
    return factory


createWebSocketServer = _not_yet(
    "createWebSocketServer", "use UnifiedServer.websocket(path, handler) routes"
)
createWebSocketClient = _not_yet(
    "createWebSocketClient", "not ported; any RFC 6455 client (e.g. wsproto) works"
)
createReverseProxy = _not_yet("createReverseProxy", "the reverse proxy is not ported")
createIPv6Stack = _not_yet("createIPv6Stack", "not ported; bind_address='::' serves IPv6")

__all__ = [
    "API_VERSION",
    "AsyncHttpRequest",
    "AsyncHttpResponse",
    "AsyncMiddleware",
    "AsyncMiddlewares",
    "AsyncProtocol",
    "AsyncRequestHandler",
    "AsyncServerBuilder",
    "AsyncUnifiedServer",
    "AsyncUnifiedServerConfig",
    "BlockingGrpcClient",
    "BlockingHttpClient",
    "CallOptions",
    "ClientConfig",
    "ClientError",
    "ClientRequest",
    "ClientResponse",
    "ConfigError",
    "ConnectionFailed",
    "Cookie",
    "EchoService",
    "GhostwireCapabilities",
    "GrpcCall",
    "GrpcCallFailed",
    "GrpcClient",
    "GrpcClientConfig",
    "GrpcConfig",
    "GrpcError",
    "GrpcMessage",
    "GrpcMetadata",
    "GrpcRequest",
    "GrpcResponse",
    "GrpcServer",
    "GrpcServerStats",
    "GrpcService",
    "GrpcStatus",
    "HandlerFn",
    "HandshakeFailed",
    "Headers",
    "Http3ServerStats",
    "HttpClient",
    "HttpError",
    "HttpResponse",
    "HttpVersion",
    "IPv6Error",
    "InvalidJson",
    "Method",
    "MiddlewareFn",
    "NetworkError",
    "NetworkProtocol",
    "NoResponseData",
    "ProxyError",
    "RetryPolicy",
    "SameSite",
    "SendTimeout",
    "ServerAlreadyRunning",
    "ServerProtocol",
    "ServerStats",
    "ShroudError",
    "StreamError",
    "TransportError",
    "UnifiedRequest",
    "UnifiedResponse",
    "UnifiedServer",
    "UnifiedServerConfig",
    "UnsupportedFeature",
    "ZvmClient",
    "ZvmClientConfig",
    "ZvmError",
    "capabilities",
    "createAsyncServerBuilder",
    "createAsyncUnifiedServer",
    "createGrpcClient",
    "createGrpcServer",
    "createIPv6Stack",
    "createReverseProxy",
    "createUnifiedServer",
    "createWebSocketClient",
    "createWebSocketServer",
    "eventSource",
    "grpc",
    "grpcEvents",
    "rpcEvents",
    "version",
]
