"""The sans-IO HTTP/3 connection (RFC 9114) on top of a sans-IO QUIC connection.

Theory of operation
-------------------
:class:`H3Connection` wraps a :class:`~ghostwire.quic.connection.QuicConnection`
and never does I/O or reads a clock. Whoever drives the QUIC connection
hands every QUIC event to :meth:`H3Connection.handle_event` and gets HTTP/3
events back; the application side is a set of plain methods
(:meth:`~H3Connection.send_headers`, :meth:`~H3Connection.send_data`, ...)
that write frames into QUIC streams. Calls that may close the connection
take ``now`` (QUIC's CONNECTION_CLOSE needs it).

At start (or as soon as the peer's stream limits allow) we open our three
unidirectional streams: control (SETTINGS first), QPACK encoder and QPACK
decoder. Peer unidirectional streams are typed by their first varint
(:mod:`ghostwire.http3.inbound`); request and push streams are parsed
frame by frame with the state machine of :mod:`ghostwire.http3.message`.

Back-pressure
-------------
QUIC keeps received stream data in its receive buffer until it is read, and
returns flow-control credit only as it is read. This layer reads a request
or push stream lazily: header sections whole (bounded by
SETTINGS_MAX_FIELD_SECTION_SIZE), but DATA only while the stream has
room in its ``receive_window``: the bytes handed out in
:class:`~ghostwire.http3.events.DataReceived` and not yet returned with
:meth:`H3Connection.acknowledge_received_data`. A full window leaves the
rest in QUIC's buffer, so the peer runs out of credit instead of us
running out of memory. Acknowledging reads more and returns the new
events. The control and QPACK streams are always read in full.

Errors
------
The peer's connection errors (:class:`~ghostwire.http3.errors.H3ProtocolError`)
close QUIC with the HTTP/3 code as an application error; its stream errors
(:class:`~ghostwire.http3.errors.H3StreamError`) reset and stop only that
stream. The QUIC ``ConnectionTerminated`` event that follows a close
becomes :class:`~ghostwire.http3.events.ConnectionShutdown`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from ..quic.buffer import encode_varint
from ..quic.connection import QuicConnection
from ..quic.events import (
    ConnectionTerminated,
    Event,
    HandshakeCompleted,
    StopSendingReceived,
    StreamOpened,
    StreamReadable,
    StreamResetReceived,
    StreamsAvailable,
)
from ..quic.stream_states import StreamStateError
from ..quic.streams import StreamLimitReached
from .config import H3Config
from .errors import (
    ConnectionGoingAway,
    FieldSectionTooLarge,
    H3ErrorCode,
    H3ProtocolError,
    H3StreamError,
    H3UsageError,
    InvalidHeaders,
    InvalidStreamState,
    MessageError,
)
from .events import (
    ConnectionShutdown,
    DataReceived,
    H3Event,
    Headers,
    HeadersReceived,
    SendingStopped,
    StreamAborted,
    TrailersReceived,
)
from .frames import (
    FrameType,
    Setting,
    StreamType,
    encode_frame,
    encode_settings,
    encode_varint_frame,
    frame_header,
    grease_value,
)
from .headers import PUSHABLE_METHODS, validate_push_promise
from .inbound import Inbound
from .message import MessageStream, Phase, Role
from .push import ClientPushes, ServerPushes
from .qpack import QpackDecoder, QpackEncoder, field_section_size


def _ended(
    event: HeadersReceived | DataReceived | TrailersReceived,
) -> HeadersReceived | DataReceived | TrailersReceived:
    """``event`` marked as the stream's last: built directly, as
    ``dataclasses.replace`` costs several times as much (once per message)."""
    if isinstance(event, DataReceived):
        return DataReceived(event.stream_id, event.data, True, event.push_id)
    return type(event)(event.stream_id, event.headers, True, event.push_id)


# The largest GOAWAY stream id: the first step of a graceful shutdown (RFC 9114 §5.2).
MAX_REQUEST_STREAM_ID = (1 << 62) - 4


class H3Connection:
    """HTTP/3 over one QUIC connection, client or server side."""

    def __init__(self, quic: QuicConnection, config: H3Config | None = None) -> None:
        self._quic = quic
        self.config = config or H3Config()
        self.is_client = quic.is_client
        self.encoder = QpackEncoder()
        self.decoder = QpackDecoder(
            self.config.qpack_max_table_capacity, self.config.qpack_blocked_streams
        )
        self.streams: dict[int, MessageStream] = {}
        self.client_pushes = ClientPushes()
        self.server_pushes = ServerPushes()
        self.sent_settings = self.config.local_settings(grease_n=os.urandom(1)[0])
        self.peer_max_field_section_size: int | None = None
        self.goaway_sent: int | None = None
        self.goaway_received: int | None = None
        self.closed = False
        self._shutdown_reported = False
        self._control_id: int | None = None
        self._encoder_id: int | None = None
        self._decoder_id: int | None = None
        self._control_pending = bytearray()
        self._peer_qpack: tuple[int, int] | None = None  # peer's QPACK settings, not yet applied
        self._max_request_seen = -4  # server: highest request stream id received
        self._events: list[H3Event] = []
        # Set by a client's trio shell: the decoder stream's acknowledgements
        # stay in ``decoder.pending`` after a received event (the shell places
        # them, H3Session.place_acks), and any field section we send takes
        # them along (flush_qpack).
        self.hold_decoder_acks = False
        self.inbound = Inbound(self)
        if self.is_client and self.config.max_push_id is not None:
            self.client_pushes.set_max_push_id(self.config.max_push_id)
            self._send_control(encode_varint_frame(FrameType.MAX_PUSH_ID, self.config.max_push_id))
        self._open_local_streams()

    # ------------------------------------------------------------------
    # Driving
    # ------------------------------------------------------------------

    @property
    def quic(self) -> QuicConnection:
        return self._quic

    def handle_event(self, event: Event, now: float) -> list[H3Event]:
        """Process one QUIC event; returns the HTTP/3 events it produced."""
        out = self._events = []
        if isinstance(event, ConnectionTerminated):
            self.closed = True
            if not self._shutdown_reported:
                self._shutdown_reported = True
                out.append(
                    ConnectionShutdown(
                        event.error_code, event.reason, event.by_peer, event.is_application
                    )
                )
            return out
        if self.closed or self._quic.is_closed:
            return out
        try:
            if isinstance(event, StreamReadable):
                self.inbound.on_readable(event.stream_id)
            elif isinstance(event, StreamOpened):
                self.inbound.on_opened(event.stream_id)
            elif isinstance(event, StreamResetReceived):
                self.inbound.on_reset(event.stream_id, event.error_code)
            elif isinstance(event, StopSendingReceived):
                self._on_stop_sending(event.stream_id, event.error_code)
            elif isinstance(event, HandshakeCompleted | StreamsAvailable):
                self._open_local_streams()
        except H3ProtocolError as exc:
            self._fail(exc, now)
        return self._finish()

    def acknowledge_received_data(self, stream_id: int, nbytes: int, now: float) -> list[H3Event]:
        """The application consumed ``nbytes`` of a stream's DATA: read on, return new events."""
        self._events = []
        stream = self.streams.get(stream_id)
        if stream is None or self.config.receive_window is None or self.closed:
            return []
        stream.unacked = max(0, stream.unacked - nbytes)
        try:
            self.inbound.pump(stream)
        except H3ProtocolError as exc:
            self._fail(exc, now)
        return self._finish()

    def _finish(self) -> list[H3Event]:
        self.flush_qpack(decoder=not self.hold_decoder_acks)
        out = self._events
        self._events = []
        return out

    def emit(self, event: H3Event) -> None:
        self._events.append(event)

    def emit_end(self, stream: MessageStream) -> None:
        """The peer ended ``stream``: mark the last event, or add an empty DataReceived."""
        out = self._events
        last = out[-1] if out else None
        if (
            isinstance(last, HeadersReceived | DataReceived | TrailersReceived)
            and last.stream_id == stream.stream_id
            and not last.stream_ended
        ):
            out[-1] = _ended(last)
        else:
            out.append(DataReceived(stream.stream_id, b"", True, stream.push_id))

    # ------------------------------------------------------------------
    # Requests, responses, pushes (the application side)
    # ------------------------------------------------------------------

    def open_request_stream(self) -> int:
        """Client: open a stream for a new request.

        Raises ConnectionGoingAway after GOAWAY (either way) or close, and
        QUIC's StreamLimitReached while the server's MAX_STREAMS is used up
        (wait for the QUIC ``StreamsAvailable`` event).
        """
        if not self.is_client:
            raise H3UsageError("only clients open request streams")
        if self.closed or self._quic.is_closed:
            raise ConnectionGoingAway("the connection is closed")
        if self.goaway_received is not None or self.goaway_sent is not None:
            raise ConnectionGoingAway("GOAWAY: no new requests on this connection")
        stream_id = self._quic.open_stream(True)
        self.streams[stream_id] = MessageStream(stream_id, Role.CLIENT_REQUEST)
        return stream_id

    def send_headers(
        self, stream_id: int, headers: Sequence[tuple[bytes, bytes]], end_stream: bool = False
    ) -> None:
        """Send a header section: the request, an interim or the final response.

        Raises InvalidHeaders (RFC 9114 §4.2-4.3), FieldSectionTooLarge
        (the peer's SETTINGS_MAX_FIELD_SECTION_SIZE) or InvalidStreamState.
        """
        stream = self._sending(stream_id)
        self._check_size(headers)
        stream.before_send_headers(headers, end_stream)
        self._write(
            stream, encode_frame(FrameType.HEADERS, self._encode(stream_id, headers)), end_stream
        )

    def send_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        """Send content in a DATA frame (an empty ``data`` with ``end_stream`` just ends)."""
        stream = self._sending(stream_id)
        stream.before_send_data(end_stream)
        if data:
            self._write(stream, frame_header(FrameType.DATA, len(data)), False)
        if data or end_stream:
            self._write(stream, data, end_stream)

    def send_trailers(self, stream_id: int, headers: Sequence[tuple[bytes, bytes]]) -> None:
        """Send the trailer section and end the stream."""
        stream = self._sending(stream_id)
        self._check_size(headers)
        stream.before_send_trailers(headers)
        self._write(stream, encode_frame(FrameType.HEADERS, self._encode(stream_id, headers)), True)

    def stream_send_buffered(self, stream_id: int) -> int:
        """Bytes written on a stream and not yet acknowledged by the peer (send back-pressure)."""
        return self._quic.stream_send_buffered(stream_id)

    def cancel_request(
        self, stream_id: int, error_code: int = H3ErrorCode.H3_REQUEST_CANCELLED
    ) -> None:
        """Abandon a request or push stream both ways (RESET_STREAM + STOP_SENDING).

        Clients cancel with H3_REQUEST_CANCELLED; servers refuse unprocessed
        requests with H3_REQUEST_REJECTED (RFC 9114 §4.1.1). No event follows.
        """
        stream = self.streams.get(stream_id)
        if stream is None:
            return
        self.abort_stream(stream, error_code, announce=False)
        self.flush_qpack()

    def stop_receiving(self, stream_id: int, error_code: int = H3ErrorCode.H3_NO_ERROR) -> None:
        """Server: stop reading a request body the response does not need
        (STOP_SENDING, H3_NO_ERROR by default: RFC 9114 §4.1). Whatever still
        arrives on the stream, the end of a frame cut short included, is
        discarded and never parsed. A no-op once the request ended."""
        stream = self.streams.get(stream_id)
        if stream is None or not stream.receiving:
            return
        self._quic.stop_sending(stream_id, error_code)
        self.decoder.cancel(stream_id)
        stream.recv_phase = Phase.DONE
        self.forget_if_finished(stream)

    def send_push_promise(self, stream_id: int, headers: Sequence[tuple[bytes, bytes]]) -> int:
        """Server: promise a push on request stream ``stream_id``; returns the push stream id.

        Send the pushed response with :meth:`send_headers` / :meth:`send_data`
        on the returned stream. Raises PushNotAllowed unless the client's
        MAX_PUSH_ID allows another push.
        """
        if self.is_client:
            raise H3UsageError("only servers push")
        stream = self._sending(stream_id)
        if stream.role is not Role.SERVER_REQUEST:
            raise InvalidStreamState(f"stream {stream_id} is not a request stream")
        try:
            info = validate_push_promise(headers)
        except MessageError as exc:
            raise InvalidHeaders(str(exc)) from None
        if info.pseudo.get(b":method") not in PUSHABLE_METHODS:
            raise InvalidHeaders("only safe, cacheable requests (GET, HEAD) can be pushed")
        self._check_size(headers)
        pushes = self.server_pushes
        if not pushes.available:
            pushes.allocate()  # raises PushNotAllowed with the reason
        push_stream_id = self._quic.open_stream(False)
        push_id = pushes.allocate()
        block = self._encode(stream_id, headers)
        self._write(
            stream, encode_frame(FrameType.PUSH_PROMISE, encode_varint(push_id) + block), False
        )
        self._quic.send_stream_data(
            push_stream_id, encode_varint(StreamType.PUSH) + encode_varint(push_id)
        )
        self.streams[push_stream_id] = MessageStream(push_stream_id, Role.SERVER_PUSH, push_id)
        pushes.streams[push_id] = push_stream_id
        return push_stream_id

    def cancel_push(self, push_id: int) -> None:
        """Cancel a push (CANCEL_PUSH), and stop its push stream if it is open."""
        if self.is_client:
            push_stream_id = self.client_pushes.cancel(push_id)
        else:
            if push_id >= self.server_pushes.next_push_id:
                raise H3UsageError(f"push id {push_id} was never promised")
            push_stream_id = self.server_pushes.streams.pop(push_id, None)
        self._send_control(encode_varint_frame(FrameType.CANCEL_PUSH, push_id))
        stream = self.streams.get(push_stream_id) if push_stream_id is not None else None
        if stream is not None:
            self.abort_stream(stream, H3ErrorCode.H3_REQUEST_CANCELLED, announce=False)
        self.flush_qpack()

    def send_max_push_id(self, max_push_id: int) -> None:
        """Client: allow server pushes with push ids up to ``max_push_id`` (MAX_PUSH_ID)."""
        if not self.is_client:
            raise H3UsageError("only clients send MAX_PUSH_ID")
        self.client_pushes.set_max_push_id(max_push_id)
        self._send_control(encode_varint_frame(FrameType.MAX_PUSH_ID, max_push_id))

    def send_goaway(self, id: int | None = None) -> int:
        """Start a graceful shutdown with GOAWAY (RFC 9114 §5.2); returns the id sent.

        Server: ``id`` is the first request stream id that will not be
        processed; by default the next one after every request received so
        far. Pass :data:`MAX_REQUEST_STREAM_ID` first for a two-step shutdown.
        Later requests are refused with H3_REQUEST_REJECTED. Client: ``id``
        is the first push id it refuses (default: the next unpromised one).
        Close the connection once the remaining streams are done
        (:attr:`open_stream_count`).
        """
        if self.is_client:
            promised = self.client_pushes.promises
            default = max(promised) + 1 if promised else 0
        else:
            default = self._max_request_seen + 4
        if id is None:
            id = default
        if id < default or (not self.is_client and id % 4):
            raise H3UsageError(f"GOAWAY id {id} would abandon work already accepted")
        if self.goaway_sent is not None and id > self.goaway_sent:
            raise H3UsageError("a GOAWAY id cannot increase (RFC 9114 §5.2)")
        self.goaway_sent = id
        self._send_control(encode_varint_frame(FrameType.GOAWAY, id))
        return id

    def close(
        self, now: float, error_code: int = H3ErrorCode.H3_NO_ERROR, reason: str = ""
    ) -> None:
        """Close the QUIC connection with an HTTP/3 error code (H3_NO_ERROR by default)."""
        self.closed = True
        self._quic.close(error_code, reason, is_application=True, now=now)

    # ------------------------------------------------------------------
    # State the driver may look at
    # ------------------------------------------------------------------

    @property
    def peer_settings(self) -> dict[int, int] | None:
        """The peer's SETTINGS, once received."""
        return self.inbound.control.settings

    @property
    def open_stream_count(self) -> int:
        """Request and push streams not yet finished both ways."""
        return len(self.streams)

    @property
    def max_request_stream_seen(self) -> int:
        """Server: the highest request stream id received (-4 if none)."""
        return self._max_request_seen

    # ------------------------------------------------------------------
    # Internals shared with the inbound side
    # ------------------------------------------------------------------

    def new_request(self, stream_id: int) -> None:
        """Server: the client opened request stream ``stream_id``."""
        if self.goaway_sent is not None and stream_id >= self.goaway_sent:
            code = H3ErrorCode.H3_REQUEST_REJECTED
            self._quic.stop_sending(stream_id, code)
            self._quic.reset_stream(stream_id, code)
            return
        self._max_request_seen = max(self._max_request_seen, stream_id)
        self.streams[stream_id] = MessageStream(stream_id, Role.SERVER_REQUEST)

    def on_goaway(self, id: int) -> None:
        """The peer's GOAWAY. Client: requests at or above ``id`` will not be processed.

        They are cancelled here and reported as StreamAborted with
        H3_REQUEST_REJECTED (safe to retry elsewhere, RFC 9114 §5.2).
        """
        self.goaway_received = id
        if not self.is_client:
            return
        for stream in list(self.streams.values()):
            if stream.role is Role.CLIENT_REQUEST and stream.stream_id >= id:
                self.abort_stream(stream, H3ErrorCode.H3_REQUEST_CANCELLED, announce=False)
                self.emit(
                    StreamAborted(stream.stream_id, H3ErrorCode.H3_REQUEST_REJECTED, by_peer=False)
                )

    def abort_stream(self, stream: MessageStream, error_code: int, *, announce: bool) -> None:
        """Reset a stream both ways with ``error_code`` and forget it."""
        stream_id = stream.stream_id
        if stream.receiving:
            self._quic.stop_sending(stream_id, error_code)
            self.decoder.cancel(stream_id)
        if stream.send_phase is not Phase.DONE:
            self._quic.reset_stream(stream_id, error_code)
        stream.recv_phase = stream.send_phase = Phase.DONE
        self.streams.pop(stream_id, None)
        if announce and stream.announced:
            self.emit(StreamAborted(stream_id, error_code, stream.push_id, by_peer=False))

    def forget_if_finished(self, stream: MessageStream) -> None:
        if stream.finished:
            self.streams.pop(stream.stream_id, None)

    def on_stream_error(self, stream: MessageStream, exc: H3StreamError) -> None:
        self.abort_stream(stream, exc.error_code, announce=True)

    def apply_peer_settings(self, settings: dict[int, int]) -> None:
        capacity = settings.get(Setting.QPACK_MAX_TABLE_CAPACITY, 0)
        blocked = settings.get(Setting.QPACK_BLOCKED_STREAMS, 0)
        if capacity > MAX_ENCODER_TABLE:
            capacity = blocked = 0  # see MAX_ENCODER_TABLE
        self._peer_qpack = (capacity, min(blocked, 0xFFFF))
        self.peer_max_field_section_size = settings.get(Setting.MAX_FIELD_SECTION_SIZE)
        self._enable_dynamic_table()

    def _enable_dynamic_table(self) -> None:
        """Let the encoder use the peer's dynamic table, once our encoder stream exists
        (entries it references must be deliverable)."""
        if self._peer_qpack is not None and self._encoder_id is not None:
            self.encoder.apply_settings(*self._peer_qpack)
            self._peer_qpack = None

    def flush_qpack(self, *, decoder: bool = True) -> None:
        """Write what the QPACK encoder (and, with ``decoder``, the decoder)
        have for their streams."""
        if self._quic.is_closed:
            return
        pending = self.encoder.pending
        if pending and self._encoder_id is not None:
            self._write_critical(self._encoder_id, bytes(pending))
            pending.clear()
        pending = self.decoder.pending
        if decoder and pending and self._decoder_id is not None:
            self._write_critical(self._decoder_id, bytes(pending))
            pending.clear()

    # ------------------------------------------------------------------
    # Internals
    # ------------------------------------------------------------------

    def _fail(self, exc: H3ProtocolError, now: float) -> None:
        """A connection error: close QUIC with the HTTP/3 code (RFC 9114 §8)."""
        if not self.closed:
            self.closed = True
            self._quic.close(exc.error_code, exc.reason, is_application=True, now=now)

    def _on_stop_sending(self, stream_id: int, error_code: int) -> None:
        if stream_id in (self._control_id, self._encoder_id, self._decoder_id):
            raise H3ProtocolError(
                H3ErrorCode.H3_CLOSED_CRITICAL_STREAM,
                f"STOP_SENDING on our critical stream {stream_id}",
            )
        stream = self.streams.get(stream_id)
        if stream is None or stream.send_phase is Phase.DONE:
            return
        stream.send_phase = Phase.DONE  # QUIC has reset our sending side in reply
        self.emit(SendingStopped(stream_id, error_code))
        self.forget_if_finished(stream)

    def _open_local_streams(self) -> None:
        """Open control, QPACK encoder and decoder streams as the peer's limits allow."""
        quic = self._quic
        if quic.is_closed:
            return
        try:
            if self._control_id is None:
                self._control_id = quic.open_stream(False)
                quic.send_stream_data(self._control_id, self._control_preamble())
                if self._control_pending:
                    quic.send_stream_data(self._control_id, bytes(self._control_pending))
                    self._control_pending.clear()
            if self._encoder_id is None:
                self._encoder_id = quic.open_stream(False)
                quic.send_stream_data(self._encoder_id, encode_varint(StreamType.QPACK_ENCODER))
            if self._decoder_id is None:
                self._decoder_id = quic.open_stream(False)
                quic.send_stream_data(self._decoder_id, encode_varint(StreamType.QPACK_DECODER))
        except StreamLimitReached:
            pass  # retried on HandshakeCompleted / StreamsAvailable
        self._enable_dynamic_table()
        self.flush_qpack(decoder=not self.hold_decoder_acks)  # (held ones: see _finish)

    def _control_preamble(self) -> bytes:
        parts = [
            encode_varint(StreamType.CONTROL),
            encode_frame(FrameType.SETTINGS, encode_settings(self.sent_settings)),
        ]
        if self.config.grease:
            # RFC 9114 §7.2.9: a reserved frame type, to be ignored by the peer.
            parts.append(encode_frame(grease_value(len(self.sent_settings)), b"\x00"))
        return b"".join(parts)

    def _send_control(self, frame: bytes) -> None:
        if self._control_id is None:
            self._control_pending += frame
        elif not self._quic.is_closed:
            self._write_critical(self._control_id, frame)

    def _write_critical(self, stream_id: int, data: bytes) -> None:
        try:
            self._quic.send_stream_data(stream_id, data)
        except StreamStateError:
            # The peer stopped a critical stream; its StopSendingReceived,
            # still queued in QUIC, closes the connection.
            pass

    def _sending(self, stream_id: int) -> MessageStream:
        if self.closed or self._quic.is_closed:
            raise InvalidStreamState("the connection is closed")
        stream = self.streams.get(stream_id)
        if stream is None or stream.send_phase is Phase.DONE:
            raise InvalidStreamState(f"stream {stream_id} is not open for sending")
        return stream

    def _check_size(self, headers: Sequence[tuple[bytes, bytes]]) -> None:
        limit = self.peer_max_field_section_size
        if limit is not None and field_section_size(headers) > limit:
            raise FieldSectionTooLarge(
                f"header section of {field_section_size(headers)} bytes; the peer accepts {limit}"
            )

    def _encode(self, stream_id: int, headers: Sequence[tuple[bytes, bytes]]) -> bytes:
        block = self.encoder.encode(stream_id, headers)
        self.flush_qpack()  # encoder-stream inserts go out first
        return block

    def _write(self, stream: MessageStream, data: bytes, end_stream: bool) -> None:
        try:
            self._quic.send_stream_data(stream.stream_id, data, end_stream)
        except StreamStateError as exc:
            # The peer's STOP_SENDING reached QUIC before its event reached us.
            stream.send_phase = Phase.DONE
            self.forget_if_finished(stream)
            raise InvalidStreamState(f"stream {stream.stream_id}: {exc}") from exc
        self.forget_if_finished(stream)

    @property
    def received_headers_limit(self) -> int:
        """The largest encoded header section we buffer (HEADERS / PUSH_PROMISE payload)."""
        limit = self.config.max_field_section_size
        return HARD_FIELD_SECTION_LIMIT if limit is None else limit

    def decoded_headers_ok(self, headers: Headers) -> bool:
        limit = self.config.max_field_section_size
        return limit is None or field_section_size(headers) <= limit


# The encoder's dynamic table lives in memory we pay for; a peer may
# advertise up to 2^62. Above this we stay with the static table.
MAX_ENCODER_TABLE = 1 << 20
# Without SETTINGS_MAX_FIELD_SECTION_SIZE we still refuse larger encoded sections.
HARD_FIELD_SECTION_LIMIT = 1 << 20
