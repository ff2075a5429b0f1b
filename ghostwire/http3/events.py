"""Events the sans-IO HTTP/3 connection hands to whoever drives it.

Small frozen dataclasses; don't subclass them. ``stream_id`` is the QUIC
stream the event is about; ``push_id`` is set for events on a push stream
(client side). ``headers`` are lists of ``(name, value)`` byte pairs as
QPACK delivered them.
"""

from __future__ import annotations

from dataclasses import dataclass

Headers = list[tuple[bytes, bytes]]


class H3Event:
    """Base class of every HTTP/3 event."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class HeadersReceived(H3Event):
    """A request's, an interim (1xx) or a final response's header section."""

    stream_id: int
    headers: Headers
    stream_ended: bool = False
    push_id: int | None = None


@dataclass(frozen=True, slots=True)
class DataReceived(H3Event):
    """Message content. ``data`` may be empty when only the end of the stream is news.

    With a bounded ``receive_window``, the bytes count against the stream's
    window until :meth:`H3Connection.acknowledge_received_data` returns them.
    """

    stream_id: int
    data: bytes
    stream_ended: bool = False
    push_id: int | None = None


@dataclass(frozen=True, slots=True)
class TrailersReceived(H3Event):
    """The trailer section; nothing but the end of the stream can follow it."""

    stream_id: int
    headers: Headers
    stream_ended: bool = False
    push_id: int | None = None


@dataclass(frozen=True, slots=True)
class StreamAborted(H3Event):
    """A request or push stream ended abruptly; no more events follow for it.

    ``by_peer`` is True when the peer reset it (RESET_STREAM); False when
    we aborted it because the peer broke the rules of the stream (the code
    is the one we sent, e.g. H3_MESSAGE_ERROR).
    """

    stream_id: int
    error_code: int
    push_id: int | None = None
    by_peer: bool = True


@dataclass(frozen=True, slots=True)
class SendingStopped(H3Event):
    """The peer no longer reads what we send on a stream (STOP_SENDING).

    Our sending side is reset; receiving continues (RFC 9114 §4.1.1: a
    server may stop a request body with H3_NO_ERROR and still respond).
    """

    stream_id: int
    error_code: int


@dataclass(frozen=True, slots=True)
class SettingsReceived(H3Event):
    """The peer's SETTINGS (identifier -> value; unknown identifiers included)."""

    settings: dict[int, int]


@dataclass(frozen=True, slots=True)
class GoAwayReceived(H3Event):
    """The peer is shutting down (RFC 9114 §5.2).

    Client side: ``id`` is the first request stream id the server will not
    process; requests on streams ``>= id`` can be retried on a new
    connection, and no new requests may be opened. Server side: ``id`` is
    the first push id the client will refuse.
    """

    id: int


@dataclass(frozen=True, slots=True)
class PushPromiseReceived(H3Event):
    """Client: the server promised a push on request stream ``stream_id``."""

    stream_id: int
    push_id: int
    headers: Headers


@dataclass(frozen=True, slots=True)
class PushCancelled(H3Event):
    """A push was cancelled (CANCEL_PUSH) by the peer."""

    push_id: int


@dataclass(frozen=True, slots=True)
class ConnectionShutdown(H3Event):
    """The QUIC connection is over; no more events follow.

    ``error_code`` is the HTTP/3 code when ``is_application`` is True,
    else a QUIC transport error code.
    """

    error_code: int
    reason: str
    by_peer: bool
    is_application: bool


# The names these events had before ``StreamReset`` / ``StreamStopped`` became
# the exceptions of a reset stream everywhere (``ghostwire.http3.StreamReset``
# is the exception); kept here for code that imports them from this module.
StreamReset = StreamAborted
StreamStopped = SendingStopped
