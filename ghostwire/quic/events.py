"""Events the sans-IO connection hands to whoever drives it.

Events are small frozen dataclasses; don't subclass them. Stream data is not
carried in events: it stays in the stream's receive buffer until the
application reads it (so receive credit flows back only as it is consumed),
and :class:`StreamReadable` just says there is something to read.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Event:
    """Base class of every connection event."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class HandshakeCompleted(Event):
    """The TLS handshake finished on our side (RFC 9001 §4.1.1)."""

    alpn: str
    version: int
    cipher_suite: str
    session_resumed: bool = False


class CloseReason(Enum):
    """Why a connection ended."""

    LOCAL = "closed locally"
    PEER = "closed by the peer"
    IDLE_TIMEOUT = "idle timeout"
    STATELESS_RESET = "stateless reset"
    HANDSHAKE_TIMEOUT = "handshake timeout"
    VERSION_NEGOTIATION = "no common QUIC version"


@dataclass(frozen=True, slots=True)
class ConnectionTerminated(Event):
    """The connection is over; no more events follow.

    ``error_code`` is the transport error code (``is_application`` False) or
    the application's code (``is_application`` True). ``tls_alert`` is set when
    the handshake failed with a TLS alert, and ``certificate_error`` when that
    failure was our own certificate check.
    """

    reason_kind: CloseReason
    error_code: int = 0
    frame_type: int | None = None
    reason: str = ""
    is_application: bool = False
    tls_alert: int | None = None
    certificate_error: bool = False

    @property
    def by_peer(self) -> bool:
        return self.reason_kind in (CloseReason.PEER, CloseReason.STATELESS_RESET)


@dataclass(frozen=True, slots=True)
class StreamOpened(Event):
    """The peer opened a stream (implicitly or with its first frame)."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamReadable(Event):
    """A stream has data (or its end) ready to read."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamWritable(Event):
    """Data on a stream was acknowledged: room in its send buffer again."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamResetReceived(Event):
    """The peer reset its sending side of a stream (RESET_STREAM)."""

    stream_id: int
    error_code: int


@dataclass(frozen=True, slots=True)
class StopSendingReceived(Event):
    """The peer asked us to stop sending on a stream (STOP_SENDING)."""

    stream_id: int
    error_code: int


@dataclass(frozen=True, slots=True)
class StreamsAvailable(Event):
    """The peer raised its stream limit (MAX_STREAMS): new streams can open."""

    bidirectional: bool


@dataclass(frozen=True, slots=True)
class ConnectionIdIssued(Event):
    """We issued a connection ID: packets with it belong to this connection."""

    connection_id: bytes


@dataclass(frozen=True, slots=True)
class ConnectionIdRetired(Event):
    """A connection ID of ours is no longer in use."""

    connection_id: bytes


@dataclass(frozen=True, slots=True)
class DatagramReceived(Event):
    """An unreliable DATAGRAM frame arrived (RFC 9221)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class PingAcknowledged(Event):
    """A PING sent with :meth:`QuicConnection.send_ping` was acknowledged."""

    uid: int
