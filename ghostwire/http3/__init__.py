"""ghostwire.http3: HTTP/3 (RFC 9114) with QPACK (RFC 9204), sans-IO.

:class:`H3Connection` runs HTTP/3 over a sans-IO
:class:`~ghostwire.quic.connection.QuicConnection`: feed it QUIC events,
get HTTP/3 events back, and send requests and responses with plain method
calls. No sockets, clocks or trio in here; the trio layer drives it.
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

__all__ = [
    "MAX_REQUEST_STREAM_ID",
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
    "InvalidHeaders",
    "InvalidStreamState",
    "PushCancelled",
    "PushNotAllowed",
    "PushPromiseReceived",
    "Setting",
    "SettingsReceived",
    "StreamReset",
    "StreamStopped",
    "StreamType",
    "TrailersReceived",
]
