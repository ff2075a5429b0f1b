"""State of one request or push stream: which frames may come and go next.

Theory of operation
-------------------
A request stream carries one message each way (RFC 9114 §4.1): a header
section, content in DATA frames, an optional trailer section. A response
may be preceded by interim (1xx) header sections, and the server may
interleave PUSH_PROMISE frames into a response. A push stream carries a
response only.

Both directions are plain state machines over :class:`Phase`, written as
tables. The receive side raises the peer's errors (H3_FRAME_UNEXPECTED for
a bad frame sequence, H3_MESSAGE_ERROR for a malformed message, ...); the
send side raises :class:`~ghostwire.http3.errors.H3UsageError` for our own
mistakes. Nothing here touches QUIC: the connection feeds frames in and
writes frames out.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum

from .errors import (
    H3ErrorCode,
    H3ProtocolError,
    H3StreamError,
    InvalidHeaders,
    InvalidStreamState,
    MessageError,
)
from .events import DataReceived, H3Event, Headers, HeadersReceived, TrailersReceived
from .frame_reader import FrameReader
from .frames import KNOWN_FRAME_TYPES, FrameType, frame_name
from .headers import (
    MessageInfo,
    is_interim,
    validate_request,
    validate_response,
    validate_trailers,
)


class Role(Enum):
    """What a stream carries, seen from our side."""

    CLIENT_REQUEST = "client request"  # we send a request, receive the response
    SERVER_REQUEST = "server request"  # we receive a request, send the response
    CLIENT_PUSH = "client push"  # we receive a pushed response
    SERVER_PUSH = "server push"  # we send a pushed response


class Phase(Enum):
    HEADERS = "headers"  # the (next) header section
    BODY = "body"  # DATA, or the trailer section
    TRAILERS = "trailers"  # trailers done: only the end may follow
    DONE = "done"  # ended or reset


_F = FrameType
# Frames the peer may send in each receive phase (PUSH_PROMISE handled apart).
_RECEIVE_ALLOWED = {
    Phase.HEADERS: frozenset({_F.HEADERS}),
    Phase.BODY: frozenset({_F.HEADERS, _F.DATA}),
    Phase.TRAILERS: frozenset[int](),
    Phase.DONE: frozenset[int](),
}
_RECEIVES = frozenset({Role.CLIENT_REQUEST, Role.SERVER_REQUEST, Role.CLIENT_PUSH})
_SENDS = frozenset({Role.CLIENT_REQUEST, Role.SERVER_REQUEST, Role.SERVER_PUSH})
# Responses that carry no content whatever content-length says (RFC 9110 §8.6).
_NO_CONTENT_STATUS = frozenset({b"204", b"304"})


class MessageStream:
    """One request or push stream's HTTP/3 state, both directions."""

    __slots__ = (
        "announced",
        "blocked_frame",
        "expected_length",
        "push_id",
        "reader",
        "received_length",
        "recv_phase",
        "request_method",
        "role",
        "send_phase",
        "stream_id",
        "unacked",
    )

    def __init__(self, stream_id: int, role: Role, push_id: int | None = None) -> None:
        self.stream_id = stream_id
        self.role = role
        self.push_id = push_id
        self.reader = FrameReader()
        self.recv_phase = Phase.HEADERS if role in _RECEIVES else Phase.DONE
        self.send_phase = Phase.HEADERS if role in _SENDS else Phase.DONE
        self.expected_length: int | None = None
        self.received_length = 0
        self.request_method: bytes | None = None
        # A HEADERS or PUSH_PROMISE frame waiting for QPACK: (frame type, push id).
        self.blocked_frame: tuple[int, int | None] | None = None
        self.unacked = 0  # DATA bytes handed out and not acknowledged
        # Whether the application knows the stream (so it must hear of its end).
        self.announced = role in (Role.CLIENT_REQUEST, Role.SERVER_PUSH)

    def __repr__(self) -> str:
        return (
            f"<MessageStream {self.stream_id} {self.role.value} "
            f"recv={self.recv_phase.value} send={self.send_phase.value}>"
        )

    @property
    def finished(self) -> bool:
        """Both directions are over: the connection can forget the stream."""
        return self.recv_phase is Phase.DONE and self.send_phase is Phase.DONE

    @property
    def receiving(self) -> bool:
        return self.recv_phase is not Phase.DONE

    # -- receiving -------------------------------------------------------------

    def check_frame(self, frame_type: int) -> None:
        """A frame header arrived: is this frame allowed now? (RFC 9114 §4.1)"""
        if frame_type not in KNOWN_FRAME_TYPES:
            return  # RFC 9114 §9: unknown frames are allowed anywhere
        if frame_type == _F.PUSH_PROMISE:
            if self.role is not Role.CLIENT_REQUEST:
                raise H3ProtocolError(
                    H3ErrorCode.H3_FRAME_UNEXPECTED,
                    f"PUSH_PROMISE on {self.role.value} stream {self.stream_id}",
                )
            return
        if frame_type not in _RECEIVE_ALLOWED[self.recv_phase]:
            raise H3ProtocolError(
                H3ErrorCode.H3_FRAME_UNEXPECTED,
                f"{frame_name(frame_type)} frame on stream {self.stream_id} "
                f"while expecting {self.recv_phase.value}",
            )

    def on_headers(self, headers: Headers) -> H3Event:
        """A decoded header section: validate it and move on (H3_MESSAGE_ERROR if malformed)."""
        try:
            if self.recv_phase is Phase.BODY:
                validate_trailers(headers)
                self.recv_phase = Phase.TRAILERS
                return TrailersReceived(self.stream_id, headers, push_id=self.push_id)
            if self.role is Role.SERVER_REQUEST:
                info = validate_request(headers)
                self.recv_phase = Phase.BODY
                self._expect_content(info)
            else:
                info = validate_response(headers)
                if not is_interim(info):
                    self.recv_phase = Phase.BODY
                    self._expect_content(info)
        except MessageError as exc:
            raise H3StreamError(H3ErrorCode.H3_MESSAGE_ERROR, str(exc)) from None
        self.announced = True
        return HeadersReceived(self.stream_id, headers, push_id=self.push_id)

    def _expect_content(self, info: MessageInfo) -> None:
        status = info.pseudo.get(b":status")
        if self.request_method == b"HEAD" or status in _NO_CONTENT_STATUS:
            self.expected_length = None  # content-length describes what a GET would return
        else:
            self.expected_length = info.content_length

    def on_data(self, chunk: bytes) -> DataReceived:
        """DATA payload; more than content-length is malformed (RFC 9114 §4.1.2)."""
        self.received_length += len(chunk)
        expected = self.expected_length
        if expected is not None and self.received_length > expected:
            raise H3StreamError(
                H3ErrorCode.H3_MESSAGE_ERROR,
                f"more content than content-length {expected} on stream {self.stream_id}",
            )
        return DataReceived(self.stream_id, chunk, push_id=self.push_id)

    def on_end(self) -> None:
        """The peer ended the stream: is the message complete?"""
        if self.recv_phase is Phase.HEADERS:
            raise H3StreamError(
                H3ErrorCode.H3_REQUEST_INCOMPLETE,
                f"stream {self.stream_id} ended before a complete header section",
            )
        expected = self.expected_length
        if expected is not None and self.received_length != expected:
            raise H3StreamError(
                H3ErrorCode.H3_MESSAGE_ERROR,
                f"{self.received_length} bytes of content, content-length says {expected}",
            )
        self.recv_phase = Phase.DONE

    # -- sending -------------------------------------------------------------------

    def before_send_headers(self, headers: Sequence[tuple[bytes, bytes]], end_stream: bool) -> None:
        """Validate our header section and advance (raises H3UsageError)."""
        if self.send_phase is not Phase.HEADERS:
            raise InvalidStreamState(
                f"stream {self.stream_id}: header section already sent "
                "(use send_trailers for a trailer section)"
            )
        try:
            if self.role is Role.CLIENT_REQUEST:
                info = validate_request(headers)
                self.request_method = info.pseudo.get(b":method")
                interim = False
            else:
                info = validate_response(headers)
                interim = is_interim(info)
        except MessageError as exc:
            raise InvalidHeaders(str(exc)) from None
        if interim:
            if end_stream:
                raise InvalidStreamState("an interim (1xx) response cannot end the stream")
            return
        self.send_phase = Phase.DONE if end_stream else Phase.BODY

    def before_send_trailers(self, headers: Sequence[tuple[bytes, bytes]]) -> None:
        if self.send_phase is not Phase.BODY:
            raise InvalidStreamState(
                f"stream {self.stream_id}: trailers need a header section first and no end yet"
            )
        try:
            validate_trailers(headers)
        except MessageError as exc:
            raise InvalidHeaders(str(exc)) from None
        self.send_phase = Phase.DONE

    def before_send_data(self, end_stream: bool) -> None:
        if self.send_phase is not Phase.BODY:
            detail = (
                "before its header section" if self.send_phase is Phase.HEADERS else "after its end"
            )
            raise InvalidStreamState(f"DATA on stream {self.stream_id} {detail}")
        if end_stream:
            self.send_phase = Phase.DONE
