"""TLS alerts and the exceptions that carry them.

Theory of operation: TLS over QUIC never sends alert records. A fatal alert
becomes a QUIC CONNECTION_CLOSE with the error code ``0x100 + alert``
(RFC 9001 §4.8). The handshake engine therefore *raises* :class:`TlsAlert`,
a :class:`~ghostwire.quic.errors.QuicProtocolError`, and the connection turns
it into the close frame. Reasons say what went wrong in words; they travel to
the peer in the CONNECTION_CLOSE reason phrase, so they never contain secrets.
"""

from __future__ import annotations

from enum import IntEnum

from ..errors import QuicProtocolError, crypto_error_code


class AlertDescription(IntEnum):
    """TLS 1.3 AlertDescription values (RFC 8446 §6, RFC 7301 §3.2)."""

    CLOSE_NOTIFY = 0
    UNEXPECTED_MESSAGE = 10
    BAD_RECORD_MAC = 20
    RECORD_OVERFLOW = 22
    HANDSHAKE_FAILURE = 40
    BAD_CERTIFICATE = 42
    UNSUPPORTED_CERTIFICATE = 43
    CERTIFICATE_REVOKED = 44
    CERTIFICATE_EXPIRED = 45
    CERTIFICATE_UNKNOWN = 46
    ILLEGAL_PARAMETER = 47
    UNKNOWN_CA = 48
    ACCESS_DENIED = 49
    DECODE_ERROR = 50
    DECRYPT_ERROR = 51
    PROTOCOL_VERSION = 70
    INSUFFICIENT_SECURITY = 71
    INTERNAL_ERROR = 80
    INAPPROPRIATE_FALLBACK = 86
    USER_CANCELED = 90
    MISSING_EXTENSION = 109
    UNSUPPORTED_EXTENSION = 110
    UNRECOGNIZED_NAME = 112
    BAD_CERTIFICATE_STATUS_RESPONSE = 113
    UNKNOWN_PSK_IDENTITY = 115
    CERTIFICATE_REQUIRED = 116
    NO_APPLICATION_PROTOCOL = 120


def alert_name(alert: int) -> str:
    """The RFC name of a TLS alert, e.g. ``alert_name(120) == "no_application_protocol"``."""
    try:
        return AlertDescription(alert).name.lower()
    except ValueError:
        return f"alert_{alert}"


class TlsAlert(QuicProtocolError):
    """The TLS handshake failed with fatal alert ``alert``.

    ``error_code`` is the QUIC CRYPTO_ERROR code ``0x100 + alert``
    (RFC 9001 §4.8); ``reason`` says what happened.
    """

    def __init__(self, alert: int, reason: str = "") -> None:
        super().__init__(crypto_error_code(alert), reason or alert_name(alert))
        self.alert = int(alert)

    @property
    def alert_name(self) -> str:
        """Readable name of the alert, e.g. ``"no_application_protocol"``."""
        return alert_name(self.alert)

    def __str__(self) -> str:
        return f"{self.alert_name}: {self.reason}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.alert_name}, {self.reason!r})"


class CertificateVerificationError(TlsAlert):
    """The peer's certificate chain or name did not verify.

    ``alert`` is one of bad_certificate (42, e.g. a name mismatch),
    certificate_expired (45), unknown_ca (48) or certificate_required (116).
    """


def unexpected_message(reason: str) -> TlsAlert:
    return TlsAlert(AlertDescription.UNEXPECTED_MESSAGE, reason)


def decode_error(reason: str) -> TlsAlert:
    return TlsAlert(AlertDescription.DECODE_ERROR, reason)


def illegal_parameter(reason: str) -> TlsAlert:
    return TlsAlert(AlertDescription.ILLEGAL_PARAMETER, reason)


def handshake_failure(reason: str) -> TlsAlert:
    return TlsAlert(AlertDescription.HANDSHAKE_FAILURE, reason)


def missing_extension(reason: str) -> TlsAlert:
    return TlsAlert(AlertDescription.MISSING_EXTENSION, reason)
