"""ZVM and ghostd wire formats, as pure functions (no I/O).

So a ghostwire service can answer peers that still speak them, and a ZVM
client can be ported without changing a byte on the wire:

* **ZVM ``QuicClient`` envelope.** A JSON object, ``QuicRequest``
  ``{"message_type", "request_id", "payload", "timestamp"}`` and
  ``QuicResponse`` ``{"success", "request_id", "payload", "error_message",
  "timestamp"}``, written compactly in field order, as Zig's ``std.json``
  does. ``message_type`` is the enum's tag name (``"CONTRACT_DEPLOY"``);
  ``payload`` is itself a JSON document carried as a string.
* **ZVM stream framing.** ``[u8 message_type][u32 little-endian length]
  [JSON envelope]`` (:func:`encode_frame`, :class:`FrameDecoder`).
* **ghostd's per-stream protocol.** ``[u8 type][JSON]`` with no length:
  the JSON runs to the end of the stream, capped per type
  (:func:`encode_ghostd_message`, :func:`decode_ghostd_message`).

ZVM's and ghostd's type codes conflict (0x03/0x04 are wallet create/sign
for ZVM, VM execution/deployment for ghostd), so they are two separate
enums, :class:`MessageType` and :class:`GhostdMessageType`, never merged.

Malformed input raises a :class:`ZvmWireError` subclass, never a bare
``KeyError`` / ``json.JSONDecodeError`` / ``struct.error``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from .errors import ShroudError

U64_MAX = (1 << 64) - 1
I64_MIN, I64_MAX = -(1 << 63), (1 << 63) - 1
U32_MAX = (1 << 32) - 1
FRAME_HEADER_SIZE = 5
DEFAULT_MAX_FRAME_SIZE = 16 << 20


class ZvmWireError(ShroudError, ValueError):
    """Bytes that are not a valid ZVM / ghostd message."""


class MalformedEnvelope(ZvmWireError):
    """The JSON envelope is not valid JSON, or a field is missing or of the wrong type."""


class UnknownMessageType(ZvmWireError):
    """A message type code (or name) that the table does not have."""

    def __init__(self, code: int | str, table: str) -> None:
        shown = f"0x{code:02x}" if isinstance(code, int) else repr(code)
        super().__init__(f"unknown {table} message type {shown}")
        self.code = code


class TruncatedFrame(ZvmWireError):
    """The input ended inside a frame header or body."""


class FrameTooLarge(ZvmWireError):
    """A frame (or ghostd message) is longer than the limit allows."""


class MessageType(IntEnum):
    """ZVM ``QuicClient.MessageType`` (u8), its exact names and codes."""

    WALLET_TRANSACTION = 0x01
    BALANCE_QUERY = 0x02
    WALLET_CREATE = 0x03
    WALLET_SIGN = 0x04
    IDENTITY_VERIFY = 0x05
    CONTRACT_DEPLOY = 0x10
    CONTRACT_CALL = 0x11
    CONTRACT_QUERY = 0x12
    CONTRACT_EVENT_STREAM = 0x13
    BLOCK_SYNC = 0x20
    TX_BROADCAST = 0x21
    PEER_DISCOVERY = 0x22
    CONSENSUS_MESSAGE = 0x23
    HEALTH_CHECK = 0x30
    STATUS_QUERY = 0x31
    METRICS_REQUEST = 0x32

    @classmethod
    def parse(cls, value: object) -> MessageType:
        """From the JSON tag name (``"CONTRACT_DEPLOY"``) or the numeric code."""
        if isinstance(value, str):
            try:
                return cls[value]
            except KeyError:
                raise UnknownMessageType(value, "ZVM") from None
        if isinstance(value, int) and not isinstance(value, bool):
            try:
                return cls(value)
            except ValueError:
                raise UnknownMessageType(value, "ZVM") from None
        raise MalformedEnvelope(f"message_type must be a name or a code, got {value!r}")


class GhostdMessageType(IntEnum):
    """ghostd's per-stream type byte (``src/quic.rs``; ZVM's GHOSTD_INTEGRATION.md)."""

    WALLET_TRANSACTION = 0x01
    BALANCE_QUERY = 0x02
    VM_EXECUTION = 0x03
    VM_DEPLOYMENT = 0x04
    IDENTITY_VERIFICATION = 0x05
    P2P_BLOCK_SYNC = 0x06
    P2P_TX_BROADCAST = 0x07


# ghostd reads one message per stream with a single read capped per type.
GHOSTD_READ_LIMITS: Mapping[GhostdMessageType, int] = {
    GhostdMessageType.WALLET_TRANSACTION: 1 << 20,
    GhostdMessageType.BALANCE_QUERY: 256,
    GhostdMessageType.VM_EXECUTION: 10 << 20,
    GhostdMessageType.VM_DEPLOYMENT: 10 << 20,
    GhostdMessageType.IDENTITY_VERIFICATION: 1 << 10,
}
GHOSTD_DEFAULT_LIMIT = 1 << 20  # 0x06 / 0x07: declared only, no cap given


# -- field checks ---------------------------------------------------------------------------


def _load_object(data: bytes | str) -> dict[str, Any]:
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedEnvelope(f"not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise MalformedEnvelope(f"the envelope must be a JSON object, got {type(obj).__name__}")
    return obj


def _field(obj: Mapping[str, Any], name: str) -> Any:
    if name not in obj:
        raise MalformedEnvelope(f"missing field {name!r}")
    return obj[name]


def _int_field(obj: Mapping[str, Any], name: str, low: int, high: int) -> int:
    value = _field(obj, name)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise MalformedEnvelope(f"{name} must be an integer in [{low}, {high}], got {value!r}")
    return value


def _str_field(obj: Mapping[str, Any], name: str) -> str:
    value = _field(obj, name)
    if not isinstance(value, str):
        raise MalformedEnvelope(f"{name} must be a string, got {value!r}")
    return value


def _dumps(obj: object) -> bytes:
    # std.json.stringify: compact, UTF-8 written as is, fields in declaration order.
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


# -- the JSON envelope ----------------------------------------------------------------------


@dataclass(frozen=True)
class QuicRequest:
    """ZVM's request envelope. ``payload`` is a JSON document as a string."""

    message_type: MessageType
    request_id: int
    payload: str
    timestamp: int

    def encode(self) -> bytes:
        return _dumps(
            {
                "message_type": MessageType(self.message_type).name,
                "request_id": self.request_id,
                "payload": self.payload,
                "timestamp": self.timestamp,
            }
        )

    @classmethod
    def decode(cls, data: bytes | str) -> QuicRequest:
        obj = _load_object(data)
        return cls(
            message_type=MessageType.parse(_field(obj, "message_type")),
            request_id=_int_field(obj, "request_id", 0, U64_MAX),
            payload=_str_field(obj, "payload"),
            timestamp=_int_field(obj, "timestamp", I64_MIN, I64_MAX),
        )

    def payload_json(self) -> Any:
        """The payload document, parsed."""
        return _parse_payload(self.payload)


@dataclass(frozen=True)
class QuicResponse:
    """ZVM's response envelope; ``error_message`` is ``null`` on success."""

    success: bool
    request_id: int
    payload: str
    error_message: str | None
    timestamp: int

    def encode(self) -> bytes:
        return _dumps(
            {
                "success": self.success,
                "request_id": self.request_id,
                "payload": self.payload,
                "error_message": self.error_message,
                "timestamp": self.timestamp,
            }
        )

    @classmethod
    def decode(cls, data: bytes | str) -> QuicResponse:
        obj = _load_object(data)
        success = _field(obj, "success")
        if not isinstance(success, bool):
            raise MalformedEnvelope(f"success must be true or false, got {success!r}")
        error = obj.get("error_message")  # an optional field may be left out
        if error is not None and not isinstance(error, str):
            raise MalformedEnvelope(f"error_message must be a string or null, got {error!r}")
        return cls(
            success=success,
            request_id=_int_field(obj, "request_id", 0, U64_MAX),
            payload=_str_field(obj, "payload"),
            error_message=error,
            timestamp=_int_field(obj, "timestamp", I64_MIN, I64_MAX),
        )

    def payload_json(self) -> Any:
        return _parse_payload(self.payload)


def _parse_payload(payload: str) -> Any:
    try:
        return json.loads(payload)
    except json.JSONDecodeError as exc:
        raise MalformedEnvelope(f"payload is not a JSON document: {exc}") from None


def payload_string(document: object) -> str:
    """A payload document as the string the envelope carries."""
    return _dumps(document).decode()


# -- [u8 type][u32 LE length][body] framing -------------------------------------------------


@dataclass(frozen=True)
class Frame:
    """One framed message: its type byte and its body (the JSON envelope)."""

    message_type: MessageType
    body: bytes

    def request(self) -> QuicRequest:
        """The body as a request; its ``message_type`` must agree with the frame's."""
        request = QuicRequest.decode(self.body)
        if request.message_type != self.message_type:
            raise MalformedEnvelope(
                f"frame type {self.message_type.name} but envelope says {request.message_type.name}"
            )
        return request

    def response(self) -> QuicResponse:
        return QuicResponse.decode(self.body)


def encode_frame(message_type: int, body: bytes) -> bytes:
    """``[type][u32 LE len(body)][body]``."""
    code = MessageType.parse(int(message_type))
    if len(body) > U32_MAX:
        raise FrameTooLarge(f"a frame body is at most {U32_MAX} bytes")
    return bytes([code]) + len(body).to_bytes(4, "little") + body


def encode_request_frame(request: QuicRequest) -> bytes:
    return encode_frame(request.message_type, request.encode())


def encode_response_frame(message_type: int, response: QuicResponse) -> bytes:
    """A response goes back framed with the type of the request it answers."""
    return encode_frame(message_type, response.encode())


def decode_frame(data: bytes, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> tuple[Frame, bytes]:
    """The first frame of ``data`` and the bytes after it.

    Raises :class:`TruncatedFrame` if ``data`` ends inside the frame.
    """
    if len(data) < FRAME_HEADER_SIZE:
        raise TruncatedFrame(f"{len(data)} bytes, a frame header is {FRAME_HEADER_SIZE}")
    message_type, length = _parse_header(data, max_frame_size)
    end = FRAME_HEADER_SIZE + length
    if len(data) < end:
        raise TruncatedFrame(f"frame body is {length} bytes, only {len(data) - 5} present")
    return Frame(message_type, bytes(data[FRAME_HEADER_SIZE:end])), bytes(data[end:])


def _parse_header(data: bytes | bytearray, max_frame_size: int) -> tuple[MessageType, int]:
    message_type = MessageType.parse(data[0])
    length = int.from_bytes(data[1:FRAME_HEADER_SIZE], "little")
    if length > max_frame_size:
        raise FrameTooLarge(f"frame of {length} bytes exceeds the limit of {max_frame_size}")
    return message_type, length


class FrameDecoder:
    """Incremental (sans-IO) decoder: ``feed`` stream bytes, get complete frames.

    The type and length are checked as soon as the 5-byte header is in, so an
    unknown type or an oversized length fails before its body is buffered.
    """

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        self.max_frame_size = max_frame_size
        self._buffer = bytearray()

    def receive_data(self, data: bytes | bytearray) -> None:
        """Buffer stream bytes; take frames out with :meth:`next_frame`."""
        self._buffer += data

    def next_frame(self) -> Frame | None:
        """The next complete frame, or ``None`` until more bytes arrive.

        Raises when the next header is bad; the frames before it have been
        returned by then, so a peer gets its good requests answered first.
        """
        if len(self._buffer) < FRAME_HEADER_SIZE:
            return None
        message_type, length = _parse_header(self._buffer, self.max_frame_size)
        end = FRAME_HEADER_SIZE + length
        if len(self._buffer) < end:
            return None
        frame = Frame(message_type, bytes(self._buffer[FRAME_HEADER_SIZE:end]))
        del self._buffer[:end]
        return frame

    def feed(self, data: bytes | bytearray) -> list[Frame]:
        """Buffer ``data`` and return every complete frame (raises on a bad header)."""
        self.receive_data(data)
        frames: list[Frame] = []
        while (frame := self.next_frame()) is not None:
            frames.append(frame)
        return frames

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def close(self) -> None:
        """The stream ended: raise :class:`TruncatedFrame` if a frame was cut off."""
        if self._buffer:
            raise TruncatedFrame(f"the stream ended {len(self._buffer)} bytes into a frame")


# -- ghostd: [u8 type][JSON to end of stream] -----------------------------------------------


def encode_ghostd_message(message_type: int, document: object) -> bytes:
    """``[type][JSON]``; ``document`` may already be JSON bytes."""
    code = _ghostd_type(message_type)
    body = document if isinstance(document, bytes) else _dumps(document)
    limit = GHOSTD_READ_LIMITS.get(code, GHOSTD_DEFAULT_LIMIT)
    if len(body) > limit:
        raise FrameTooLarge(f"ghostd reads at most {limit} bytes for {code.name}")
    return bytes([code]) + body


def decode_ghostd_message(data: bytes) -> tuple[GhostdMessageType, Any]:
    """A whole ghostd stream (read to FIN): its type and parsed JSON document."""
    if not data:
        raise TruncatedFrame("an empty ghostd message has no type byte")
    code = _ghostd_type(data[0])
    limit = GHOSTD_READ_LIMITS.get(code, GHOSTD_DEFAULT_LIMIT)
    if len(data) - 1 > limit:
        raise FrameTooLarge(f"{len(data) - 1} bytes for {code.name}, ghostd reads at most {limit}")
    try:
        return code, json.loads(data[1:])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedEnvelope(f"ghostd message body is not JSON: {exc}") from None


def _ghostd_type(value: int) -> GhostdMessageType:
    try:
        return GhostdMessageType(value)
    except ValueError:
        raise UnknownMessageType(value, "ghostd") from None


# -- addresses ------------------------------------------------------------------------------


def address_to_hex(address: bytes) -> str:
    """ZVM's form of a 20-byte address: 40 lowercase hex digits, no ``0x``."""
    if len(address) != 20:
        raise MalformedEnvelope(f"an address is 20 bytes, got {len(address)}")
    return address.hex()


def address_from_hex(text: str) -> bytes:
    """Parse a 40-hex-digit address (a ``0x`` prefix is accepted)."""
    digits = text[2:] if text[:2] in ("0x", "0X") else text
    try:
        raw = bytes.fromhex(digits)
    except ValueError:
        raise MalformedEnvelope(f"not a hex address: {text!r}") from None
    if len(raw) != 20 or len(digits) != 40:
        raise MalformedEnvelope(f"an address is 40 hex digits, got {text!r}")
    return raw


def address_to_ghostd(address: bytes) -> list[int]:
    """ghostd's form of an address: a JSON array of byte values."""
    return list(address)


__all__ = [
    "DEFAULT_MAX_FRAME_SIZE",
    "FRAME_HEADER_SIZE",
    "GHOSTD_READ_LIMITS",
    "Frame",
    "FrameDecoder",
    "FrameTooLarge",
    "GhostdMessageType",
    "MalformedEnvelope",
    "MessageType",
    "QuicRequest",
    "QuicResponse",
    "TruncatedFrame",
    "UnknownMessageType",
    "ZvmWireError",
    "address_from_hex",
    "address_to_ghostd",
    "address_to_hex",
    "decode_frame",
    "decode_ghostd_message",
    "encode_frame",
    "encode_ghostd_message",
    "encode_request_frame",
    "encode_response_frame",
    "payload_string",
]
