"""HTTP/3 and QPACK error codes, and the exceptions of the HTTP/3 layer.

Failures are kept in three families (the h11 lesson, as in the QUIC core):

* :class:`H3ProtocolError` -- *the peer* broke HTTP/3 in a way that ends the
  connection. The connection catches it and closes QUIC with the carried
  application error code (RFC 9114 §8). It never escapes the layer.
* :class:`H3StreamError` -- *the peer* broke the rules of one message or
  stream (RFC 9114 §4.1.2: malformed messages, ...). Only that stream is
  reset (RESET_STREAM and STOP_SENDING with the code).
* :class:`H3UsageError` and subclasses -- *we* (the application) asked for
  something the protocol does not allow: send DATA before HEADERS, invalid
  headers, a request after GOAWAY. Raised to the caller; nothing is sent.
"""

from __future__ import annotations

from enum import IntEnum

from ..errors import GhostwireError


class H3ErrorCode(IntEnum):
    """HTTP/3 error codes (RFC 9114 §8.1) and QPACK error codes (RFC 9204 §6)."""

    H3_DATAGRAM_ERROR = 0x33  # RFC 9297 §5.2
    H3_NO_ERROR = 0x0100
    H3_GENERAL_PROTOCOL_ERROR = 0x0101
    H3_INTERNAL_ERROR = 0x0102
    H3_STREAM_CREATION_ERROR = 0x0103
    H3_CLOSED_CRITICAL_STREAM = 0x0104
    H3_FRAME_UNEXPECTED = 0x0105
    H3_FRAME_ERROR = 0x0106
    H3_EXCESSIVE_LOAD = 0x0107
    H3_ID_ERROR = 0x0108
    H3_SETTINGS_ERROR = 0x0109
    H3_MISSING_SETTINGS = 0x010A
    H3_REQUEST_REJECTED = 0x010B
    H3_REQUEST_CANCELLED = 0x010C
    H3_REQUEST_INCOMPLETE = 0x010D
    H3_MESSAGE_ERROR = 0x010E
    H3_CONNECT_ERROR = 0x010F
    H3_VERSION_FALLBACK = 0x0110
    QPACK_DECOMPRESSION_FAILED = 0x0200
    QPACK_ENCODER_STREAM_ERROR = 0x0201
    QPACK_DECODER_STREAM_ERROR = 0x0202


def is_reserved_error_code(code: int) -> bool:
    """Reserved (GREASE) error codes 0x1f * N + 0x21 (RFC 9114 §8.1)."""
    return code >= 0x21 and (code - 0x21) % 0x1F == 0


def describe_h3_error(code: int) -> str:
    """A readable name for an HTTP/3 or QPACK error code, e.g. ``H3_FRAME_ERROR``."""
    try:
        return H3ErrorCode(code).name
    except ValueError:
        if is_reserved_error_code(code):
            return f"reserved(0x{code:x})"
        return f"0x{code:x}"


class H3Error(GhostwireError):
    """Base class of every exception of the HTTP/3 layer."""


class _PeerError(H3Error):
    def __init__(self, error_code: int, reason: str = "") -> None:
        super().__init__(reason or describe_h3_error(error_code))
        self.error_code = int(error_code)
        self.reason = reason or describe_h3_error(error_code)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({describe_h3_error(self.error_code)}, {self.reason!r})"


class H3ProtocolError(_PeerError):
    """The peer violated HTTP/3: close the connection with ``error_code``."""


class H3StreamError(_PeerError):
    """The peer violated the rules of one stream: reset only that stream."""


class H3UsageError(H3Error, RuntimeError):
    """The application asked for something HTTP/3 does not allow here."""


class InvalidHeaders(H3UsageError, ValueError):
    """Headers we were asked to send break RFC 9114 §4.2-4.3."""


class FieldSectionTooLarge(H3UsageError, ValueError):
    """A field section exceeds the peer's SETTINGS_MAX_FIELD_SECTION_SIZE."""


class InvalidStreamState(H3UsageError):
    """The call does not fit the stream's state (e.g. DATA before HEADERS)."""


class ConnectionGoingAway(H3UsageError):
    """No new requests: GOAWAY was received (or sent), or the connection is closed."""


class PushNotAllowed(H3UsageError):
    """The client has not allowed (another) server push (MAX_PUSH_ID)."""


class HttpError(H3Error):
    """A request made with :class:`ghostwire.http3.Client` failed.

    The one family ``Client`` raises for a failed request:

    * :class:`HttpConnectionError` -- no connection to the origin, or it broke
      (the QUIC exception, e.g. ``ConnectionRefused`` or ``CertificateError``,
      is the ``__cause__``);
    * ``HttpStreamError`` -- the server reset or stopped the request stream
      (also a ``StreamReset``, with its ``error_code``);
    * :class:`RequestTimeout` -- no response headers within ``Client.timeout``.
    """


class HttpConnectionError(HttpError, ConnectionError):
    """No connection to the origin, or the connection failed during the request."""


class RequestTimeout(HttpError, TimeoutError):
    """The response headers did not arrive within the client's timeout."""


class MessageError(Exception):
    """Internal: a header section breaks RFC 9114 §4.2-4.3 (see headers.py).

    The receive path turns it into :class:`H3StreamError` (H3_MESSAGE_ERROR),
    the send path into :class:`InvalidHeaders`.
    """
