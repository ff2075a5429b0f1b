"""The peer's control stream (RFC 9114 §6.2.1, §7.2).

The control stream starts with SETTINGS and then carries GOAWAY,
MAX_PUSH_ID (client to server) and CANCEL_PUSH. :class:`PeerControl`
checks the sequence, parses payloads and returns small values for the
connection to act on; it raises the connection errors RFC 9114 names.
"""

from __future__ import annotations

from typing import NamedTuple

from .errors import H3ErrorCode, H3ProtocolError
from .frames import (
    KNOWN_FRAME_TYPES,
    FrameType,
    frame_name,
    parse_settings,
    parse_single_varint,
)

_F = FrameType
# RFC 9114 §7.2: frames that never belong on a control stream.
_NOT_ON_CONTROL = frozenset({_F.DATA, _F.HEADERS, _F.PUSH_PROMISE})


class SettingsFrame(NamedTuple):
    settings: dict[int, int]


class GoAwayFrame(NamedTuple):
    id: int


class MaxPushIdFrame(NamedTuple):
    push_id: int


class CancelPushFrame(NamedTuple):
    push_id: int


ControlFrame = SettingsFrame | GoAwayFrame | MaxPushIdFrame | CancelPushFrame


class PeerControl:
    """Validation of the frames on the peer's control stream."""

    def __init__(self, *, is_client: bool, max_settings_size: int) -> None:
        self.is_client = is_client
        self.max_settings_size = max_settings_size
        self.settings: dict[int, int] | None = None
        self._started = False
        self.goaway_id: int | None = None

    def check_frame(self, frame_type: int, length: int) -> None:
        """A frame header arrived on the control stream."""
        if not self._started:
            self._started = True
            if frame_type != _F.SETTINGS:
                raise H3ProtocolError(
                    H3ErrorCode.H3_MISSING_SETTINGS,
                    f"control stream starts with {frame_name(frame_type)}, not SETTINGS",
                )
        elif frame_type == _F.SETTINGS:
            raise H3ProtocolError(H3ErrorCode.H3_FRAME_UNEXPECTED, "a second SETTINGS frame")
        if frame_type not in KNOWN_FRAME_TYPES:
            return
        if frame_type in _NOT_ON_CONTROL:
            raise H3ProtocolError(
                H3ErrorCode.H3_FRAME_UNEXPECTED,
                f"{frame_name(frame_type)} frame on the control stream",
            )
        if frame_type == _F.MAX_PUSH_ID and self.is_client:
            raise H3ProtocolError(H3ErrorCode.H3_FRAME_UNEXPECTED, "MAX_PUSH_ID from the server")
        if frame_type == _F.SETTINGS and length > self.max_settings_size:
            raise H3ProtocolError(
                H3ErrorCode.H3_EXCESSIVE_LOAD, f"SETTINGS frame of {length} bytes"
            )

    def parse(self, frame_type: int, payload: bytes) -> ControlFrame:
        """A whole control frame (already checked by :meth:`check_frame`)."""
        if frame_type == _F.SETTINGS:
            self.settings = parse_settings(payload)
            return SettingsFrame(self.settings)
        value = parse_single_varint(frame_type, payload)
        if frame_type == _F.GOAWAY:
            self._check_goaway(value)
            return GoAwayFrame(value)
        if frame_type == _F.MAX_PUSH_ID:
            return MaxPushIdFrame(value)
        return CancelPushFrame(value)

    def _check_goaway(self, value: int) -> None:
        # RFC 9114 §5.2: from a server, a client-initiated bidirectional
        # stream id; the id never increases.
        if self.is_client and value % 4 != 0:
            raise H3ProtocolError(
                H3ErrorCode.H3_ID_ERROR, f"GOAWAY with {value}, not a request stream id"
            )
        if self.goaway_id is not None and value > self.goaway_id:
            raise H3ProtocolError(
                H3ErrorCode.H3_ID_ERROR, f"GOAWAY id went up from {self.goaway_id} to {value}"
            )
        self.goaway_id = value
