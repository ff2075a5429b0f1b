"""Exceptions of the Shroud GhostWire shim.

Every one derives from :class:`ghostwire.errors.GhostwireError` through
:class:`ShroudError`. The original's error sets (``TransportError`` with its
tags ``ConnectionFailed``, ``HandshakeFailed``, ...) become classes here, so
``except TransportError`` catches the family and a subclass names one case.
"""

from __future__ import annotations

import trio

from ..errors import GhostwireError


class ShroudError(GhostwireError):
    """Base class of the shim's errors."""


class ConfigError(ShroudError, ValueError):
    """A configuration value is invalid or contradicts another one."""


class UnsupportedFeature(ShroudError, NotImplementedError):
    """The original offered this, the shim does not (yet); the message says why."""


class HttpError(ShroudError):
    """Raise from a handler or middleware to answer with ``status`` and ``message``.

    The response body is ``message`` as ``text/plain; charset=utf-8``.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status} {message}")
        self.status = status
        self.message = message


class InvalidJson(HttpError):
    """``UnifiedRequest.parseJson`` got a body that is not the JSON asked for (400)."""

    def __init__(self, message: str) -> None:
        super().__init__(400, message)


# -- the original's TransportError set ------------------------------------------------------


class TransportError(ShroudError):
    """GhostWire's ``TransportError``: a network operation failed."""


class ConnectionFailed(TransportError):
    """Could not connect (refused, unreachable, name not resolved, timed out)."""


class HandshakeFailed(TransportError):
    """The TLS (or WebSocket) handshake failed."""


class StreamError(TransportError):
    """A stream or connection broke while a message was being exchanged."""


class NetworkError(TransportError):
    """Any other I/O failure."""


class SendTimeout(NetworkError, trio.BrokenResourceError, TimeoutError):
    """A write to an HTTP/1.1 (or WebSocket) client made no progress for
    ``send_timeout_ms``: the client stopped reading. Its connection is closed
    (a ``trio.BrokenResourceError``: the connection is gone)."""


class ProxyError(TransportError):
    """The reverse proxy failed (kept for the original's error set)."""


class ClientError(TransportError):
    """A client-side protocol error: a malformed response, too many redirects, ..."""


class GrpcError(TransportError):
    """A gRPC-style call failed (see :mod:`.grpc`)."""


class IPv6Error(TransportError):
    """Kept for the original's error set; the shim has no IPv6 stack of its own."""


__all__ = [
    "ClientError",
    "ConfigError",
    "ConnectionFailed",
    "GrpcError",
    "HandshakeFailed",
    "HttpError",
    "IPv6Error",
    "InvalidJson",
    "NetworkError",
    "ProxyError",
    "SendTimeout",
    "ShroudError",
    "StreamError",
    "TransportError",
    "UnsupportedFeature",
]
