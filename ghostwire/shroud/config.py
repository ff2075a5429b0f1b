"""``UnifiedServerConfig``: the original's field names and defaults, and its documented ones.

GhostWire's code and its docs (API.md / HOWTO.md) name the same settings
differently; ZVM-era programs use the documented names. Both are accepted:

===================== ========================== =====================================
code name (default)   documented alias           what ghostwire does with it
===================== ========================== =====================================
``address`` 0.0.0.0   ``bind_address``           bind address of every listener
``port`` 8080         ``http1_port``             HTTP/1.1 over TCP (plaintext)
``tls_port`` 8443     ``http2_port``             HTTP/1.1 over TLS (``enable_tls``)
``cert_file``         ``cert_path``              PEM certificate chain (TLS and QUIC)
``key_file``          ``key_path``               PEM private key
(none)                ``http3_port``             HTTP/3 over QUIC/UDP; default: the TLS
                                                 port number (UDP and TCP do not clash)
(none)                ``grpc_port`` 50051        kept for the gRPC shim (``ghostwire.rpc``)
(none)                ``websocket_port``         accepted; WebSocket routes are served on
                                                 the HTTP/1.1 listeners
===================== ========================== =====================================

Giving both names of one setting with different values is a
:class:`~ghostwire.shroud.errors.ConfigError`. The code's defaults win where
the two disagree (``enable_tls=False``, ``max_connections=1000``): the
documented values were never what the original did.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from .errors import ConfigError


class ServerProtocol(Enum):
    """The protocol a request came in on (``UnifiedRequest.version``)."""

    http1_1 = "http1_1"
    http2 = "http2"
    http3 = "http3"
    websocket = "websocket"
    auto = "auto"


class NetworkProtocol(Enum):
    """GhostWire's ``NetworkProtocol`` (the documented ``UnifiedRequest.protocol``)."""

    http1_1 = "http1_1"
    http2 = "http2"
    http3 = "http3"
    quic = "quic"
    grpc = "grpc"
    websocket = "websocket"
    ipv6 = "ipv6"
    icmpv6 = "icmpv6"


# (alias, code name) pairs: the alias is a property over the code field.
_ALIASES = {
    "http1_port": "port",
    "bind_address": "address",
    "http2_port": "tls_port",
    "cert_path": "cert_file",
    "key_path": "key_file",
}

_DEFAULTS: dict[str, Any] = {
    "address": "0.0.0.0",
    "port": 8080,
    "tls_port": 8443,
    "max_connections": 1000,
    "request_timeout_ms": 30000,
    "keep_alive_timeout_ms": 60000,
    "send_timeout_ms": 30000,
    "max_request_body_size": 1024 * 1024,
    "enable_http1": True,
    "enable_http2": True,
    "enable_http3": False,
    "enable_websocket": True,
    "enable_tls": False,
    "cert_file": None,
    "key_file": None,
    "enable_compression": True,
    "enable_cors": False,
    "enable_security_headers": True,
    "static_files_root": None,
    # documented-only settings
    "http3_port": None,
    "grpc_port": 50051,
    "websocket_port": None,
    "enable_ipv6": False,
    "alt_svc_max_age": 86400,
}


@dataclass(init=False)
class UnifiedServerConfig:
    """Settings of a :class:`~ghostwire.shroud.UnifiedServer`; see the module docs.

    Every field is a keyword argument; the documented aliases are properties
    that read and write the code field they stand for.
    """

    address: str
    port: int
    tls_port: int
    max_connections: int
    request_timeout_ms: int
    keep_alive_timeout_ms: int
    send_timeout_ms: int
    max_request_body_size: int
    enable_http1: bool
    enable_http2: bool
    enable_http3: bool
    enable_websocket: bool
    enable_tls: bool
    cert_file: str | None
    key_file: str | None
    enable_compression: bool
    enable_cors: bool
    enable_security_headers: bool
    static_files_root: str | None
    http3_port: int | None
    grpc_port: int
    websocket_port: int | None
    enable_ipv6: bool
    alt_svc_max_age: int

    def __init__(self, **options: Any) -> None:
        for alias, name in _ALIASES.items():
            if alias in options:
                value = options.pop(alias)
                if name in options and options[name] != value:
                    raise ConfigError(
                        f"{alias}={value!r} and {name}={options[name]!r} name the same "
                        "setting with different values"
                    )
                options[name] = value
        unknown = set(options) - set(_DEFAULTS)
        if unknown:
            raise ConfigError(
                f"unknown UnifiedServerConfig option(s): {', '.join(sorted(unknown))}"
            )
        for name, default in _DEFAULTS.items():
            setattr(self, name, options.get(name, default))
        self.validate()

    def validate(self) -> None:
        """Check the values; raises :class:`ConfigError`."""
        for name in ("port", "tls_port", "http3_port", "grpc_port", "websocket_port"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or not 0 <= value <= 65535):
                raise ConfigError(f"{name} must be a port number (0-65535), got {value!r}")
        for name in (
            "max_connections",
            "request_timeout_ms",
            "keep_alive_timeout_ms",
            "send_timeout_ms",
        ):
            if not isinstance(getattr(self, name), int) or getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be a positive integer")
        if self.max_request_body_size < 0:
            raise ConfigError("max_request_body_size must not be negative")
        if (self.enable_tls or self.enable_http3) and not self.cert_file:
            which = "enable_tls" if self.enable_tls else "enable_http3 (QUIC is always TLS)"
            raise ConfigError(f"{which} needs cert_file= (cert_path=) and key_file= (key_path=)")
        if self.key_file and not self.cert_file:
            raise ConfigError("key_file= given without cert_file=")

    @property
    def effective_http3_port(self) -> int:
        """The UDP port HTTP/3 binds: ``http3_port``, else the TLS port number."""
        return self.tls_port if self.http3_port is None else self.http3_port

    # -- documented aliases -----------------------------------------------------------------

    @property
    def http1_port(self) -> int:
        return self.port

    @http1_port.setter
    def http1_port(self, value: int) -> None:
        self.port = value

    @property
    def bind_address(self) -> str:
        return self.address

    @bind_address.setter
    def bind_address(self, value: str) -> None:
        self.address = value

    @property
    def http2_port(self) -> int:
        return self.tls_port

    @http2_port.setter
    def http2_port(self, value: int) -> None:
        self.tls_port = value

    @property
    def cert_path(self) -> str | None:
        return self.cert_file

    @cert_path.setter
    def cert_path(self, value: str | None) -> None:
        self.cert_file = value

    @property
    def key_path(self) -> str | None:
        return self.key_file

    @key_path.setter
    def key_path(self, value: str | None) -> None:
        self.key_file = value


@dataclass(frozen=True)
class GhostwireCapabilities:
    """What this shim really does (the original returned all ``True``).

    ``http2``: no HTTP/2 server (HTTP/1.1 and HTTP/3 are served instead).
    ``grpc``: gRPC-style calls over ``ghostwire.rpc`` (QUIC), not gRPC's HTTP/2 wire.
    ``reverse_proxy``, ``multicast_discovery``, ``zero_config_ipv6``: not ported.
    ``ipv6``: listeners bind IPv6 addresses when given one.
    """

    http1_1: bool
    http2: bool
    http3: bool
    grpc: bool
    ipv6: bool
    websocket: bool
    reverse_proxy: bool
    multicast_discovery: bool
    zero_config_ipv6: bool
    dual_stack: bool


__all__ = [
    "GhostwireCapabilities",
    "NetworkProtocol",
    "ServerProtocol",
    "UnifiedServerConfig",
]
