"""ghostwire.http3: HTTP/3 (RFC 9114) with QPACK (RFC 9204).

For applications: :class:`Client` (``async with Client() as client:
await client.get(url)``) and :func:`serve` (ASGI 3 apps or native
``async def handler(request) -> Response``), in :mod:`ghostwire.http3.net`.

Underneath, :class:`H3Connection` runs HTTP/3 over a sans-IO
:class:`~ghostwire.quic.connection.QuicConnection`: feed it QUIC events,
get HTTP/3 events back, and send requests and responses with plain method
calls.

No sockets, clocks or trio in the protocol modules; the trio layer
(``net/``) drives it.

Errors: everything here derives from :class:`ghostwire.errors.GhostwireError`.
``StreamReset`` and ``StreamStopped`` are the exceptions of a reset stream, the
same classes as ``ghostwire.quic``'s. The sans-IO events about resets are
``StreamAborted`` and ``SendingStopped`` (their old names, ``StreamReset`` and
``StreamStopped``, remain importable from :mod:`ghostwire.http3.events`). A
failed ``Client`` request raises :class:`HttpError` (see its subclasses).

The trio layer's names (``Client``, ``serve``, ...) are imported on first use
(PEP 562), so importing the protocol modules never imports trio.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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
    HttpConnectionError,
    HttpError,
    InvalidHeaders,
    InvalidStreamState,
    PushNotAllowed,
    RequestTimeout,
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
    SendingStopped,
    SettingsReceived,
    StreamAborted,
    TrailersReceived,
)
from .frames import FrameType, Setting, StreamType

if TYPE_CHECKING:
    from ..quic.net.exceptions import StreamReset, StreamStopped
    from .net.client import Client
    from .net.client import Response as ClientResponse
    from .net.server import Request, Response, ResponseEnd, serve
    from .net.session import HttpStreamError

# Public name -> (trio-layer module, its name there).
_SHELL_NAMES = {
    "Client": (".net.client", "Client"),
    "StreamReset": ("..quic.net.exceptions", "StreamReset"),
    "StreamStopped": ("..quic.net.exceptions", "StreamStopped"),
    "ClientResponse": (".net.client", "Response"),
    "Request": (".net.server", "Request"),
    "Response": (".net.server", "Response"),
    "ResponseEnd": (".net.server", "ResponseEnd"),
    "serve": (".net.server", "serve"),
    "HttpStreamError": (".net.session", "HttpStreamError"),
}


def __getattr__(name: str) -> Any:
    if name not in _SHELL_NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attribute = _SHELL_NAMES[name]
    value = getattr(importlib.import_module(module, __name__), attribute)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_SHELL_NAMES))


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
    "HttpConnectionError",
    "HttpError",
    "HttpStreamError",
    "InvalidHeaders",
    "InvalidStreamState",
    "PushCancelled",
    "PushNotAllowed",
    "PushPromiseReceived",
    "Request",
    "RequestTimeout",
    "Response",
    "ResponseEnd",
    "SendingStopped",
    "Setting",
    "SettingsReceived",
    "StreamAborted",
    "StreamReset",
    "StreamStopped",
    "StreamType",
    "TrailersReceived",
    "serve",
]
