"""Exceptions a ghostwire.quic user catches.

They follow trio's conventions: a connection or stream that the peer (or the
network) broke raises a subclass of :class:`trio.BrokenResourceError`, so
generic trio stream code handles it; using a stream after ``aclose`` raises
:class:`trio.ClosedResourceError`. Each message says what happened and, where
it helps, what to do.
"""

from __future__ import annotations

import trio

from ...errors import GhostwireError
from ..errors import describe_error_code
from ..events import CloseReason, ConnectionTerminated
from ..tls import alert_name


class QuicError(GhostwireError):
    """Base class of every ghostwire.quic error."""


class HandshakeError(QuicError, ConnectionError):
    """The connection could not be established.

    ``alert`` is the TLS alert number when the handshake failed with one
    (e.g. 120 ``no_application_protocol``), ``error_code`` the QUIC error code
    that went on the wire (0x100 + alert for TLS failures), ``by_peer``
    whether the peer rejected us.
    """

    def __init__(
        self,
        message: str,
        *,
        alert: int | None = None,
        error_code: int | None = None,
        by_peer: bool = False,
    ) -> None:
        super().__init__(message)
        self.alert = alert
        self.error_code = error_code
        self.by_peer = by_peer

    @property
    def alert_name(self) -> str | None:
        return alert_name(self.alert) if self.alert is not None else None


class CertificateError(HandshakeError):
    """The peer's certificate failed verification (untrusted, wrong name, expired)."""


class HandshakeTimeout(HandshakeError, TimeoutError):
    """The peer did not complete the handshake in time (``handshake_timeout``)."""


class ConnectionRefused(HandshakeError, ConnectionRefusedError):
    """Nothing listens at the server's address (an ICMP port unreachable came back).

    Both a ghostwire error and the built-in :class:`ConnectionRefusedError`.
    """


class ConnectionClosed(QuicError, trio.BrokenResourceError):
    """The connection is closed.

    ``error_code`` and ``reason`` are what the CONNECTION_CLOSE carried,
    ``is_application`` says whether the code is the application's (rather than
    a QUIC transport error), and ``by_peer`` who closed.
    """

    def __init__(
        self,
        message: str,
        *,
        error_code: int = 0,
        reason: str = "",
        by_peer: bool = False,
        is_application: bool = True,
        frame_type: int | None = None,
    ) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.reason = reason
        self.by_peer = by_peer
        self.is_application = is_application
        self.frame_type = frame_type


class IdleTimeout(ConnectionClosed, TimeoutError):
    """Nothing was heard from the peer for the idle timeout (RFC 9000 §10.1)."""


class StreamReset(QuicError, trio.BrokenResourceError):
    """The peer reset the stream (RESET_STREAM) with ``error_code``."""

    def __init__(self, message: str, *, error_code: int) -> None:
        super().__init__(message)
        self.error_code = error_code


class StreamStopped(StreamReset):
    """The peer asked us to stop sending (STOP_SENDING) with ``error_code``."""


class StreamSendBroken(QuicError, trio.BrokenResourceError):
    """A ``send_all`` on this stream was cut off (cancelled, or interrupted)
    after part of its data was queued: the peer must not take what it got for
    a whole message, so the send side can no longer be used. Later
    ``send_all`` and ``send_eof`` raise this, and ``aclose`` resets the send
    side (RESET_STREAM with ``Connection.handler_error_code``) instead of
    sending a FIN after the partial data."""


class StreamTooLarge(QuicError, ValueError):
    """``receive_all(max_bytes)``: the stream carries more than ``limit`` bytes.

    Nothing is lost: what was read stays on the stream for ``receive_some``;
    ``aclose`` (or ``stop_sending``) tells the peer to stop.
    """

    def __init__(self, message: str, *, limit: int) -> None:
        super().__init__(message)
        self.limit = limit


class StreamLimitError(QuicError):
    """Opening a stream failed: the peer allows no more (and waiting was not wanted)."""


def error_from_termination(
    event: ConnectionTerminated, *, during_handshake: bool, is_client: bool = True
) -> QuicError:
    """The exception that explains a :class:`ConnectionTerminated` to the user."""
    code = describe_error_code(event.error_code)
    detail = f": {event.reason}" if event.reason else ""
    if event.reason_kind is CloseReason.HANDSHAKE_TIMEOUT:
        if not is_client:  # seen by a server's handler that started on 0-RTT
            return HandshakeTimeout("QUIC handshake timed out: the client did not complete it")
        return HandshakeTimeout(
            "QUIC handshake timed out: the server did not answer (is it running, and "
            "reachable over UDP?)"
        )
    if event.reason_kind is CloseReason.VERSION_NEGOTIATION:
        return HandshakeError(f"QUIC version negotiation failed{detail}")
    if event.tls_alert is not None and (during_handshake or event.certificate_error):
        name = alert_name(event.tls_alert)
        who = "peer rejected the handshake" if event.by_peer else "handshake failed"
        message = f"TLS {who}: {name} (CRYPTO_ERROR 0x{event.error_code:x}){detail}"
        cls = CertificateError if event.certificate_error else HandshakeError
        return cls(
            message, alert=event.tls_alert, error_code=event.error_code, by_peer=event.by_peer
        )
    if during_handshake:
        if event.reason_kind is CloseReason.IDLE_TIMEOUT:
            return HandshakeTimeout("QUIC handshake timed out (idle timeout)")
        who = "peer closed" if event.by_peer else "closed"
        return HandshakeError(
            f"connection {who} during the handshake with {code}{detail}",
            error_code=event.error_code,
            by_peer=event.by_peer,
        )
    if event.reason_kind is CloseReason.IDLE_TIMEOUT:
        return IdleTimeout(
            "connection closed: idle timeout (nothing heard from the peer)",
            error_code=0,
            by_peer=False,
            is_application=False,
        )
    if event.reason_kind is CloseReason.STATELESS_RESET:
        return ConnectionClosed(
            "connection reset by the peer (stateless reset: it lost the connection state)",
            by_peer=True,
            is_application=False,
        )
    who = "by the peer" if event.by_peer else "locally"
    kind = f"application error {event.error_code}" if event.is_application else code
    return ConnectionClosed(
        f"connection closed {who} with {kind}{detail}",
        error_code=event.error_code,
        reason=event.reason,
        by_peer=event.by_peer,
        is_application=event.is_application,
        frame_type=event.frame_type,
    )
