"""Error codes and the exceptions the sans-IO core uses internally.

Two kinds of failure are kept apart (the h11 lesson):

* :class:`QuicProtocolError` -- *the peer* broke the protocol. Parsers and state
  machines raise it; the connection catches it and closes with the carried
  transport error code (RFC 9000 §20.1). It never escapes the core.
* :class:`PacketDropped` -- bytes that the RFC says to drop silently (garbage,
  undecryptable, truncated headers). The connection just ignores the packet.

Anything else raised inside the core is *our* bug. The public exceptions a
user catches live in :mod:`ghostwire.quic.net.exceptions`.
"""

from __future__ import annotations

from enum import IntEnum


class TransportErrorCode(IntEnum):
    """Transport error codes, RFC 9000 §20.1."""

    NO_ERROR = 0x0
    INTERNAL_ERROR = 0x1
    CONNECTION_REFUSED = 0x2
    FLOW_CONTROL_ERROR = 0x3
    STREAM_LIMIT_ERROR = 0x4
    STREAM_STATE_ERROR = 0x5
    FINAL_SIZE_ERROR = 0x6
    FRAME_ENCODING_ERROR = 0x7
    TRANSPORT_PARAMETER_ERROR = 0x8
    CONNECTION_ID_LIMIT_ERROR = 0x9
    PROTOCOL_VIOLATION = 0xA
    INVALID_TOKEN = 0xB
    APPLICATION_ERROR = 0xC
    CRYPTO_BUFFER_EXCEEDED = 0xD
    KEY_UPDATE_ERROR = 0xE
    AEAD_LIMIT_REACHED = 0xF
    NO_VIABLE_PATH = 0x10
    VERSION_NEGOTIATION_ERROR = 0x11  # RFC 9368 §4
    CRYPTO_ERROR = 0x100  # 0x100-0x1ff: CRYPTO_ERROR + TLS alert (RFC 9001 §4.8)


def crypto_error_code(alert: int) -> int:
    """The transport error code carrying TLS alert ``alert`` (RFC 9001 §4.8)."""
    return TransportErrorCode.CRYPTO_ERROR + (alert & 0xFF)


def describe_error_code(code: int) -> str:
    """A readable name for a transport error code, e.g. ``CRYPTO_ERROR(0x178)``."""
    if TransportErrorCode.CRYPTO_ERROR <= code <= 0x1FF:
        return f"CRYPTO_ERROR(0x{code:x})"
    try:
        return TransportErrorCode(code).name
    except ValueError:
        return f"0x{code:x}"


class QuicProtocolError(Exception):
    """The peer violated the protocol; close the connection with ``error_code``.

    ``frame_type`` is the type of the frame that triggered the error, when
    known (it goes into the CONNECTION_CLOSE frame, RFC 9000 §19.19).
    """

    def __init__(self, error_code: int, reason: str = "", frame_type: int | None = None) -> None:
        super().__init__(reason or describe_error_code(error_code))
        self.error_code = int(error_code)
        self.frame_type = frame_type
        self.reason = reason

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({describe_error_code(self.error_code)}, "
            f"{self.reason!r}, frame_type={self.frame_type!r})"
        )


class FrameEncodingError(QuicProtocolError):
    """A frame could not be parsed (RFC 9000 §12.4: FRAME_ENCODING_ERROR)."""

    def __init__(self, reason: str = "", frame_type: int | None = None) -> None:
        super().__init__(TransportErrorCode.FRAME_ENCODING_ERROR, reason, frame_type)


class PacketDropped(Exception):
    """A datagram or packet to drop silently (RFC 9000 §5.2, §12.2)."""


class BufferReadError(PacketDropped):
    """A read ran past the end of the input. Frame parsers turn it into
    :class:`FrameEncodingError`; header parsers let it drop the packet."""
