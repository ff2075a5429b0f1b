"""Reading the peer's streams: typing, control frames, QPACK streams, messages.

Theory of operation
-------------------
:class:`Inbound` is the receive half of an
:class:`~ghostwire.http3.connection.H3Connection`. QUIC says a stream is
readable; we pull bytes from it:

* a peer unidirectional stream first yields its type (RFC 9114 §6.2):
  control, QPACK encoder or decoder (one each, H3_STREAM_CREATION_ERROR for
  a second), push (client side; then a push id) or unknown (STOP_SENDING
  with H3_STREAM_CREATION_ERROR, and ignored). Control and QPACK streams
  are critical: their end or reset is H3_CLOSED_CRITICAL_STREAM;
* control frames go through :class:`~ghostwire.http3.control.PeerControl`;
* QPACK encoder-stream bytes go to our decoder and may unblock streams
  waiting for dynamic-table entries; decoder-stream bytes go to our encoder;
* request and push streams are parsed frame by frame (:meth:`Inbound.pump`),
  reading DATA only within the stream's receive window (back-pressure) and
  stopping while a header section is blocked in QPACK.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..quic.buffer import decode_varint
from ..quic.streams import stream_is_client_initiated, stream_is_unidirectional
from .control import (
    CancelPushFrame,
    GoAwayFrame,
    MaxPushIdFrame,
    PeerControl,
    SettingsFrame,
)
from .errors import H3ErrorCode, H3ProtocolError, H3StreamError, MessageError
from .events import (
    GoAwayReceived,
    Headers,
    PushCancelled,
    PushPromiseReceived,
    SettingsReceived,
    StreamAborted,
)
from .frame_reader import FrameComplete, FrameReader, FrameStart
from .frames import FrameType, StreamType, parse_push_promise
from .headers import PUSHABLE_METHODS, validate_push_promise
from .message import MessageStream, Phase, Role

if TYPE_CHECKING:
    from .connection import H3Connection

_CRITICAL_NAMES: dict[int, str] = {
    StreamType.CONTROL: "control",
    StreamType.QPACK_ENCODER: "QPACK encoder",
    StreamType.QPACK_DECODER: "QPACK decoder",
}


class UniStream:
    """A peer unidirectional stream while its type (and push id) are read."""

    __slots__ = ("kind", "prefix", "reader", "stream_id")

    def __init__(self, stream_id: int) -> None:
        self.stream_id = stream_id
        self.kind: int | None = None
        self.prefix = bytearray()
        self.reader: FrameReader | None = None


class Inbound:
    """The receive side of an HTTP/3 connection."""

    def __init__(self, conn: H3Connection) -> None:
        self.conn = conn
        self.quic = conn.quic
        self.control = PeerControl(
            is_client=conn.is_client, max_settings_size=conn.config.max_settings_size
        )
        self.uni: dict[int, UniStream] = {}
        self.critical: dict[int, int] = {}  # stream type -> the peer's stream id

    # -- QUIC events ------------------------------------------------------------

    def on_opened(self, stream_id: int) -> None:
        if stream_is_unidirectional(stream_id):
            self.uni[stream_id] = UniStream(stream_id)
        elif stream_is_client_initiated(stream_id):
            self.conn.new_request(stream_id)
        else:
            # RFC 9114 §6.1: no server-initiated bidirectional streams.
            raise H3ProtocolError(
                H3ErrorCode.H3_STREAM_CREATION_ERROR,
                f"server-initiated bidirectional stream {stream_id}",
            )

    def on_readable(self, stream_id: int) -> None:
        stream = self.conn.streams.get(stream_id)
        if stream is not None:
            self.pump(stream)
            return
        uni = self.uni.get(stream_id)
        if uni is not None:
            self._read_uni(uni)

    def on_reset(self, stream_id: int, error_code: int) -> None:
        conn = self.conn
        stream = conn.streams.get(stream_id)
        if stream is not None:
            if not stream.receiving:
                return
            conn.decoder.cancel(stream_id)
            stream.recv_phase = Phase.DONE
            if stream.announced:
                conn.emit(StreamAborted(stream_id, error_code, stream.push_id))
            elif stream.role is Role.SERVER_REQUEST:
                # Reset before its request headers reached the application:
                # nobody will answer, so abort our side with
                # H3_REQUEST_INCOMPLETE (RFC 9114 §4.1), or the stream never
                # closes and its credit (MAX_STREAMS) never returns.
                conn.abort_stream(stream, H3ErrorCode.H3_REQUEST_INCOMPLETE, announce=False)
            conn.forget_if_finished(stream)
            return
        uni = self.uni.pop(stream_id, None)
        if uni is not None and uni.kind in _CRITICAL_NAMES:
            raise _closed_critical(uni.kind)

    # -- unidirectional streams ----------------------------------------------------

    def _read_uni(self, uni: UniStream) -> None:
        stream_id = uni.stream_id
        if uni.kind is None:
            kind = self._read_varint(uni)
            if kind is None or not self._set_kind(uni, kind):
                return
        if uni.kind == StreamType.PUSH:
            push_id = self._read_varint(uni)
            if push_id is None:
                return
            self._start_push(uni, push_id)
            return
        data = self.quic.read_stream(stream_id)
        if data:
            if uni.kind == StreamType.CONTROL:
                self._on_control_data(uni, data)
            elif uni.kind == StreamType.QPACK_ENCODER:
                self._on_encoder_data(data)
            else:
                self.conn.encoder.feed_decoder(data)
        if self.quic.stream_at_eof(stream_id):
            raise _closed_critical(uni.kind)

    def _read_varint(self, uni: UniStream) -> int | None:
        """Read a varint byte by byte (never past it); None until complete."""
        prefix = uni.prefix
        while True:
            need = 1 if not prefix else (1 << (prefix[0] >> 6)) - len(prefix)
            if need == 0:
                value = decode_varint(prefix)[0]
                prefix.clear()
                return value
            data = self.quic.read_stream(uni.stream_id, need)
            if not data:
                if self.quic.stream_at_eof(uni.stream_id):
                    # RFC 9114 §6.2: tolerate streams closed before their header.
                    self.uni.pop(uni.stream_id, None)
                return None
            prefix += data

    def _set_kind(self, uni: UniStream, kind: int) -> bool:
        """Record a stream's type; False if it is unknown (and now ignored)."""
        stream_id = uni.stream_id
        if kind in _CRITICAL_NAMES:
            if kind in self.critical:
                raise H3ProtocolError(
                    H3ErrorCode.H3_STREAM_CREATION_ERROR,
                    f"a second {_CRITICAL_NAMES[kind]} stream ({stream_id})",
                )
            self.critical[kind] = stream_id
            if kind == StreamType.CONTROL:
                uni.reader = FrameReader()
        elif kind == StreamType.PUSH:
            if not self.conn.is_client:
                raise H3ProtocolError(
                    H3ErrorCode.H3_STREAM_CREATION_ERROR, "a push stream from the client"
                )
        else:
            # RFC 9114 §6.2: unknown types (and GREASE) are read no further;
            # QUIC discards what still arrives, and we forget the stream.
            self.quic.stop_sending(stream_id, H3ErrorCode.H3_STREAM_CREATION_ERROR)
            del self.uni[stream_id]
            return False
        uni.kind = kind
        return True

    def _start_push(self, uni: UniStream, push_id: int) -> None:
        conn = self.conn
        del self.uni[uni.stream_id]
        conn.client_pushes.on_push_stream(push_id, uni.stream_id)
        stream = MessageStream(uni.stream_id, Role.CLIENT_PUSH, push_id)
        promise = conn.client_pushes.promises.get(push_id)
        if promise is not None:
            stream.request_method = _method(promise)
        conn.streams[uni.stream_id] = stream
        if push_id in conn.client_pushes.cancelled:
            conn.abort_stream(stream, H3ErrorCode.H3_REQUEST_CANCELLED, announce=False)
            return
        self.pump(stream)

    # -- control stream -----------------------------------------------------------

    def _on_control_data(self, uni: UniStream, data: bytes) -> None:
        reader = uni.reader
        assert reader is not None
        reader.feed(data)
        while (item := reader.next_item()) is not None:
            if isinstance(item, FrameStart):
                self.control.check_frame(item.frame_type, item.length)
            elif isinstance(item, FrameComplete):
                self._on_control_frame(item.frame_type, item.payload)

    def _on_control_frame(self, frame_type: int, payload: bytes) -> None:
        conn = self.conn
        frame = self.control.parse(frame_type, payload)
        if isinstance(frame, SettingsFrame):
            conn.apply_peer_settings(frame.settings)
            conn.emit(SettingsReceived(dict(frame.settings)))
        elif isinstance(frame, GoAwayFrame):
            if not conn.is_client:
                conn.server_pushes.on_goaway(frame.id)
            conn.on_goaway(frame.id)
            conn.emit(GoAwayReceived(frame.id))
        elif isinstance(frame, MaxPushIdFrame):
            conn.server_pushes.on_max_push_id(frame.push_id)
        elif isinstance(frame, CancelPushFrame):
            self._on_cancel_push(frame.push_id)

    def _on_cancel_push(self, push_id: int) -> None:
        conn = self.conn
        if conn.is_client:
            conn.client_pushes.on_cancel_push(push_id)
        else:
            push_stream_id = conn.server_pushes.on_cancel_push(push_id)
            stream = conn.streams.get(push_stream_id) if push_stream_id is not None else None
            if stream is not None:
                conn.abort_stream(stream, H3ErrorCode.H3_REQUEST_CANCELLED, announce=False)
        conn.emit(PushCancelled(push_id))

    # -- QPACK encoder stream ---------------------------------------------------------

    def _on_encoder_data(self, data: bytes) -> None:
        conn = self.conn
        for stream_id in conn.decoder.feed_encoder(data):
            stream = conn.streams.get(stream_id)
            if stream is None or stream.blocked_frame is None:
                continue
            try:
                headers = conn.decoder.resume(stream_id)
                if headers is None:
                    continue
                frame_type, push_id = stream.blocked_frame
                stream.blocked_frame = None
                self._on_header_section(stream, frame_type, push_id, headers)
            except H3StreamError as exc:
                conn.on_stream_error(stream, exc)
                continue
            self.pump(stream)

    # -- request and push streams -------------------------------------------------------

    def pump(self, stream: MessageStream) -> None:
        """Read and process a message stream as far as the window and QPACK allow."""
        try:
            self._pump(stream)
        except H3StreamError as exc:
            self.conn.on_stream_error(stream, exc)

    def _pump(self, stream: MessageStream) -> None:
        conn = self.conn
        quic = self.quic
        stream_id = stream.stream_id
        reader = stream.reader
        window = conn.config.receive_window
        drained = False  # the last read took all QUIC had: another would return b""
        while stream.receiving and stream.blocked_frame is None:
            limit = None if window is None else window - stream.unacked
            item = reader.next_item(limit)
            if item is None:
                want = reader.want()
                if limit is not None:
                    if reader.in_data:
                        if limit <= 0:
                            return  # window full: acknowledge_received_data resumes
                        want = min(want, limit)
                    else:
                        # Between DATA payloads, read as far as the window's
                        # room allows: a small message (HEADERS, DATA, end)
                        # comes in one read instead of one per frame part,
                        # and what is buffered stays within the window.
                        want = max(want, limit)
                data = b"" if drained else quic.read_stream(stream_id, want)
                if not data:
                    if quic.stream_at_eof(stream_id):
                        self._on_end(stream)
                    return
                drained = len(data) < want
                reader.feed(data)
            elif isinstance(item, bytes):
                conn.emit(stream.on_data(item))
                if window is not None:
                    stream.unacked += len(item)
            elif isinstance(item, FrameStart):
                stream.check_frame(item.frame_type)
                if (
                    item.frame_type in (FrameType.HEADERS, FrameType.PUSH_PROMISE)
                    and item.length > conn.received_headers_limit
                ):
                    raise H3StreamError(
                        H3ErrorCode.H3_EXCESSIVE_LOAD,
                        f"{item.length}-byte header section on stream {stream_id}",
                    )
            else:
                self._on_frame(stream, item)

    def _on_frame(self, stream: MessageStream, frame: FrameComplete) -> None:
        conn = self.conn
        push_id: int | None = None
        block = frame.payload
        if frame.frame_type == FrameType.PUSH_PROMISE:
            push_id, block = parse_push_promise(block)
            conn.client_pushes.check(push_id, "PUSH_PROMISE")
        headers = conn.decoder.decode(stream.stream_id, block)
        if headers is None:
            stream.blocked_frame = (frame.frame_type, push_id)
            return
        self._on_header_section(stream, frame.frame_type, push_id, headers)

    def _on_header_section(
        self, stream: MessageStream, frame_type: int, push_id: int | None, headers: Headers
    ) -> None:
        conn = self.conn
        if not conn.decoded_headers_ok(headers):
            raise H3StreamError(
                H3ErrorCode.H3_EXCESSIVE_LOAD,
                f"header section on stream {stream.stream_id} over our "
                "SETTINGS_MAX_FIELD_SECTION_SIZE",
            )
        if frame_type == FrameType.HEADERS:
            conn.emit(stream.on_headers(headers))
            return
        assert push_id is not None
        try:
            validate_push_promise(headers)
        except MessageError as exc:
            raise H3StreamError(H3ErrorCode.H3_MESSAGE_ERROR, f"PUSH_PROMISE: {exc}") from None
        if not conn.client_pushes.on_promise(push_id, headers):
            return
        push_stream_id = conn.client_pushes.streams.get(push_id)
        push_stream = conn.streams.get(push_stream_id) if push_stream_id is not None else None
        if push_stream is not None:
            push_stream.request_method = _method(headers)
        if _method(headers) not in PUSHABLE_METHODS:
            # RFC 9114 §4.6: a push of an unsafe or uncacheable request is refused.
            conn.cancel_push(push_id)
            return
        conn.emit(PushPromiseReceived(stream.stream_id, push_id, headers))

    def _on_end(self, stream: MessageStream) -> None:
        if not stream.reader.at_boundary:
            # RFC 9114 §7.1: a frame cut short by the end of the stream.
            raise H3ProtocolError(
                H3ErrorCode.H3_FRAME_ERROR, f"stream {stream.stream_id} ended inside a frame"
            )
        stream.on_end()
        self.conn.emit_end(stream)
        self.conn.forget_if_finished(stream)


def _method(headers: Headers) -> bytes | None:
    for name, value in headers:
        if name == b":method":
            return value
    return None


def _closed_critical(kind: int | None) -> H3ProtocolError:
    name = _CRITICAL_NAMES.get(kind, "critical") if kind is not None else "critical"
    return H3ProtocolError(
        H3ErrorCode.H3_CLOSED_CRITICAL_STREAM, f"the peer closed its {name} stream"
    )
