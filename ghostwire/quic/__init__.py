"""ghostwire.quic: QUIC v1 (RFC 9000/9001/9002) for trio.

The sans-IO core lives in the submodules of this package (connection,
packet, frames, crypto, tls, recovery, streams, ...); the trio shell in
:mod:`ghostwire.quic.net`. The names below are the public API.
"""

from .config import ClientConfig, InsecureConfigurationWarning, ServerConfig
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
    StreamStopped,
)
from .net.stream import QuicReceiveStream, QuicSendStream, QuicStream
from .packet import QUIC_V1, QUIC_V2

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
    "QuicError",
    "QuicListener",
    "QuicReceiveStream",
    "QuicSendStream",
    "QuicServer",
    "QuicStream",
    "ServerConfig",
    "StreamLimitError",
    "StreamReset",
    "StreamStopped",
    "connect",
    "open_listener",
    "serve",
]
