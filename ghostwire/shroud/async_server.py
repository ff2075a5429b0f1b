"""The original's ``AsyncUnifiedServer`` names, on the same :class:`UnifiedServer`.

GhostWire's async server was a mock that never served (it called
``runtime.spawn``, which did not exist). Here it is the trio server under
its own names: ``AsyncUnifiedServerConfig`` (its fields and defaults),
``AsyncUnifiedServer`` (``addRoute``, ``use``, ``start``/``stop``,
``getStats``), ``AsyncServerBuilder`` and ``AsyncMiddlewares``. The
``AsyncRuntime`` argument of the original's constructors is accepted and
ignored: trio is the runtime.

The async config enabled TLS and HTTP/3 by default while never doing either;
here they need ``tls_cert_path``/``tls_key_path``, or must be switched off.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from .config import UnifiedServerConfig
from .errors import ConfigError
from .middleware import cors, logging_middleware
from .server import UnifiedServer


@dataclass
class AsyncUnifiedServerConfig:
    bind_address: str = "0.0.0.0"
    http_port: int = 8080
    https_port: int = 8443
    quic_port: int = 8443
    grpc_port: int = 9090
    websocket_port: int = 8081
    max_connections: int = 10000
    connection_timeout_ms: int = 30000
    keep_alive_timeout_ms: int = 60000
    max_request_size: int = 10 * 1024 * 1024
    enable_http1: bool = True
    enable_http2: bool = True
    enable_http3: bool = True
    enable_grpc: bool = True
    enable_websocket: bool = True
    enable_tls: bool = True
    worker_threads: int = 0
    io_threads: int = 0
    tls_cert_path: str | None = None
    tls_key_path: str | None = None

    def to_unified(self) -> UnifiedServerConfig:
        """The equivalent :class:`UnifiedServerConfig` (raises :class:`ConfigError`)."""
        if (self.enable_tls or self.enable_http3) and not self.tls_cert_path:
            raise ConfigError(
                "enable_tls and enable_http3 (both on by default here) need tls_cert_path= and "
                "tls_key_path=; pass enable_tls=False, enable_http3=False to serve plaintext only"
            )
        return UnifiedServerConfig(
            address=self.bind_address,
            port=self.http_port,
            tls_port=self.https_port,
            http3_port=self.quic_port,
            grpc_port=self.grpc_port,
            websocket_port=self.websocket_port,
            max_connections=self.max_connections,
            request_timeout_ms=self.connection_timeout_ms,
            keep_alive_timeout_ms=self.keep_alive_timeout_ms,
            max_request_body_size=self.max_request_size,
            enable_http1=self.enable_http1,
            enable_http2=self.enable_http2,
            enable_http3=self.enable_http3,
            enable_websocket=self.enable_websocket,
            enable_tls=self.enable_tls,
            cert_file=self.tls_cert_path,
            key_file=self.tls_key_path,
        )


class AsyncUnifiedServer(UnifiedServer):
    """``AsyncUnifiedServer``: a :class:`UnifiedServer` built from either config."""

    def __init__(
        self, config: AsyncUnifiedServerConfig | UnifiedServerConfig | None = None, **options: Any
    ) -> None:
        if isinstance(config, AsyncUnifiedServerConfig):
            config = config.to_unified()
        elif config is None and options:
            config = AsyncUnifiedServerConfig(**options).to_unified()
            options = {}
        super().__init__(config, **options)

    @classmethod
    def init(cls, _allocator: Any, *args: Any) -> AsyncUnifiedServer:
        """``init(alloc, runtime, config)`` as in the original (or ``init(alloc, config)``)."""
        return cls(args[-1])


class AsyncProtocol(Enum):
    http1 = "http1"
    http2 = "http2"
    http3 = "http3"
    grpc = "grpc"
    websocket = "websocket"


class AsyncServerBuilder:
    """``AsyncServerBuilder``: chainable setters, then ``build()``."""

    def __init__(self, _allocator: Any = None, _runtime: Any = None) -> None:
        self.config = AsyncUnifiedServerConfig()

    @classmethod
    def init(cls, _allocator: Any = None, _runtime: Any = None) -> AsyncServerBuilder:
        return cls()

    def bindAddress(self, address: str) -> AsyncServerBuilder:
        self.config.bind_address = address
        return self

    def port(self, port: int) -> AsyncServerBuilder:
        self.config.http_port = port
        return self

    def maxConnections(self, count: int) -> AsyncServerBuilder:
        self.config.max_connections = count
        return self

    def tls(self, cert_path: str, key_path: str | None = None) -> AsyncServerBuilder:
        """ghostwire's addition: the certificate that TLS and HTTP/3 need."""
        self.config.tls_cert_path, self.config.tls_key_path = cert_path, key_path
        return self

    def enableProtocol(self, protocol: AsyncProtocol, enabled: bool) -> AsyncServerBuilder:
        setattr(self.config, f"enable_{AsyncProtocol(protocol).value}", enabled)
        return self

    def build(self) -> AsyncUnifiedServer:
        return AsyncUnifiedServer(self.config)

    bind_address = bindAddress
    max_connections = maxConnections
    enable_protocol = enableProtocol


class AsyncMiddlewares:
    """The original's ``AsyncMiddlewares`` namespace (``rateLimit`` was a random mock: not kept)."""

    cors = staticmethod(cors)
    logging = staticmethod(logging_middleware)


def createAsyncUnifiedServer(_allocator: Any, *args: Any) -> AsyncUnifiedServer:
    """``createAsyncUnifiedServer(alloc, runtime, config)``; the runtime is ignored."""
    if not args:
        raise ConfigError("createAsyncUnifiedServer(alloc, runtime, config) needs a config")
    return AsyncUnifiedServer(args[-1])


def createAsyncServerBuilder(_allocator: Any = None, _runtime: Any = None) -> AsyncServerBuilder:
    return AsyncServerBuilder()


__all__ = [
    "AsyncMiddlewares",
    "AsyncProtocol",
    "AsyncServerBuilder",
    "AsyncUnifiedServer",
    "AsyncUnifiedServerConfig",
    "createAsyncServerBuilder",
    "createAsyncUnifiedServer",
]
