"""ghostwire.http3: HTTP/3 (RFC 9114) with QPACK (RFC 9204).

For applications: :class:`Client` (``async with Client() as client:
await client.get(url)``) and :func:`serve` (ASGI 3 apps or native
``async def handler(request) -> Response``), in :mod:`ghostwire.http3.net`.

Underneath, :class:`H3Connection` runs HTTP/3 over a sans-IO
:class:`~ghostwire.quic.connection.QuicConnection`: feed it QUIC events,
get HTTP/3 events back, and send requests and responses with plain method
calls. No sockets, clocks or trio in the protocol modules; the trio layer
(``net/``) drives it.
"""

from .config import H3Config
from .connection import MAX_REQUEST_STREAM_ID, H3Connection
from .errors import (
    ConnectionGoingAway,
    FieldSectionTooLarge,
    H3Error,
    H3ErrorCode,
    H3ProtocolError,
    H3StreamError,
    H3UsageError,
    InvalidHeaders,
    InvalidStreamState,
    PushNotAllowed,
)
from .events import (
    ConnectionShutdown,
    DataReceived,
    GoAwayReceived,
    H3Event,
    Headers,
    HeadersReceived,
    PushCancelled,
    PushPromiseReceived,
    SettingsReceived,
    StreamReset,
    StreamStopped,
    TrailersReceived,
)
from .frames import FrameType, Setting, StreamType
from .net.client import Client, HttpError
from .net.client import Response as ClientResponse
from .net.server import Request, Response, ResponseEnd, serve
from .net.session import HttpStreamError

__all__ = [
    "MAX_REQUEST_STREAM_ID",
    "Client",
    "ClientResponse",
    "ConnectionGoingAway",
    "ConnectionShutdown",
    "DataReceived",
    "FieldSectionTooLarge",
    "FrameType",
    "GoAwayReceived",
    "H3Config",
    "H3Connection",
    "H3Error",
    "H3ErrorCode",
    "H3Event",
    "H3ProtocolError",
    "H3StreamError",
    "H3UsageError",
    "Headers",
    "HeadersReceived",
    "HttpError",
    "HttpStreamError",
    "InvalidHeaders",
    "InvalidStreamState",
    "PushCancelled",
    "PushNotAllowed",
    "PushPromiseReceived",
    "Request",
    "Response",
    "ResponseEnd",
    "Setting",
    "SettingsReceived",
    "StreamReset",
    "StreamStopped",
    "StreamType",
    "TrailersReceived",
    "serve",
]
