"""ghostwire.quic: QUIC v1 and v2 (RFC 9000/9001/9002, RFC 9369) for trio.

The sans-IO core lives in the submodules of this package (connection,
packet, frames, crypto, tls, recovery, streams, ...); the trio shell in
:mod:`ghostwire.quic.net`. The names below are the public API.

The trio shell's names (``connect``, ``serve``, ``Connection``, the
exceptions, ...) are imported on first use (PEP 562), so importing a core
module such as :mod:`ghostwire.quic.connection` never imports trio.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .config import ClientConfig, InsecureConfigurationWarning, ServerConfig
from .packet import QUIC_V1, QUIC_V2
from .tls.tickets import MemoryTicketStore, SessionTicket, TicketError, TicketStore

if TYPE_CHECKING:
    from .net.api import QuicListener, QuicServer, connect, open_listener, serve
    from .net.connection import Connection
    from .net.exceptions import (
        CertificateError,
        ConnectionClosed,
        ConnectionRefused,
        HandshakeError,
        HandshakeTimeout,
        IdleTimeout,
        QuicError,
        StreamLimitError,
        StreamReset,
        StreamSendBroken,
        StreamStopped,
        StreamTooLarge,
    )
    from .net.stream import QuicReceiveStream, QuicSendStream, QuicStream

# Public name -> the trio-shell module that defines it.
_SHELL_NAMES = {
    "QuicListener": ".net.api",
    "QuicServer": ".net.api",
    "connect": ".net.api",
    "open_listener": ".net.api",
    "serve": ".net.api",
    "Connection": ".net.connection",
    "CertificateError": ".net.exceptions",
    "ConnectionClosed": ".net.exceptions",
    "ConnectionRefused": ".net.exceptions",
    "HandshakeError": ".net.exceptions",
    "HandshakeTimeout": ".net.exceptions",
    "IdleTimeout": ".net.exceptions",
    "QuicError": ".net.exceptions",
    "StreamLimitError": ".net.exceptions",
    "StreamReset": ".net.exceptions",
    "StreamSendBroken": ".net.exceptions",
    "StreamStopped": ".net.exceptions",
    "StreamTooLarge": ".net.exceptions",
    "QuicReceiveStream": ".net.stream",
    "QuicSendStream": ".net.stream",
    "QuicStream": ".net.stream",
}


def __getattr__(name: str) -> Any:
    module = _SHELL_NAMES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_SHELL_NAMES))


__all__ = [
    "QUIC_V1",
    "QUIC_V2",
    "CertificateError",
    "ClientConfig",
    "Connection",
    "ConnectionClosed",
    "ConnectionRefused",
    "HandshakeError",
    "HandshakeTimeout",
    "IdleTimeout",
    "InsecureConfigurationWarning",
    "MemoryTicketStore",
    "QuicError",
    "QuicListener",
    "QuicReceiveStream",
    "QuicSendStream",
    "QuicServer",
    "QuicStream",
    "ServerConfig",
    "SessionTicket",
    "StreamLimitError",
    "StreamReset",
    "StreamSendBroken",
    "StreamStopped",
    "StreamTooLarge",
    "TicketError",
    "TicketStore",
    "connect",
    "open_listener",
    "serve",
]
