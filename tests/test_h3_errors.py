"""Malformed HTTP/3 input: each case maps to its RFC 9114 / RFC 9204 error on the wire.

One side is raw QUIC writing hand-made bytes; the other runs H3Connection.
Connection errors must close QUIC with the HTTP/3 code as an application
error; stream errors must reset (and stop) only the stream, leaving the
connection usable.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from test_h3_support import (
    H3Pair,
    data_frame,
    headers_frame,
    open_raw_h3,
    open_uni,
    qpack_block,
    request_headers,
    response_headers,
    settings_frame,
)

from ghostwire.http3 import (
    ConnectionShutdown,
    DataReceived,
    H3Config,
    H3ErrorCode,
    HeadersReceived,
    StreamAborted,
)
from ghostwire.http3.frames import (
    FrameType,
    StreamType,
    encode_frame,
    encode_varint_frame,
    grease_value,
)
from ghostwire.quic.buffer import encode_varint
from ghostwire.quic.connection import QuicConnection

E = H3ErrorCode
F = FrameType
Writer = Callable[[QuicConnection], object]


def _request(quic: QuicConnection, data: bytes, end: bool = True) -> int:
    stream_id = quic.open_stream(True)
    quic.send_stream_data(stream_id, data, end)
    return stream_id


def _control(quic: QuicConnection, frames: bytes, end: bool = False) -> int:
    return open_uni(quic, StreamType.CONTROL, frames, end)


def _raw_client(write: Writer, *, standard_streams: bool = True) -> H3Pair:
    """A raw QUIC client writing ``write``'s bytes to an H3Connection server."""
    h = H3Pair(raw_client=True)
    if standard_streams:
        open_raw_h3(h.pair.client)
    h.run()
    write(h.pair.client)
    h.run()
    return h


GET = headers_frame(request_headers())

CLIENT_CONNECTION_ERRORS: dict[str, tuple[Writer, int]] = {
    "DATA before HEADERS": (lambda q: _request(q, data_frame(b"x") + GET), E.H3_FRAME_UNEXPECTED),
    "DATA after trailers": (
        lambda q: _request(q, GET + headers_frame([(b"x-t", b"1")]) + data_frame(b"x")),
        E.H3_FRAME_UNEXPECTED,
    ),
    "HEADERS after trailers": (
        lambda q: _request(q, GET + headers_frame([(b"x", b"1")]) + headers_frame([(b"y", b"2")])),
        E.H3_FRAME_UNEXPECTED,
    ),
    "SETTINGS on a request stream": (
        lambda q: _request(q, GET + settings_frame()),
        E.H3_FRAME_UNEXPECTED,
    ),
    "GOAWAY on a request stream": (
        lambda q: _request(q, encode_varint_frame(F.GOAWAY, 0)),
        E.H3_FRAME_UNEXPECTED,
    ),
    "MAX_PUSH_ID on a request stream": (
        lambda q: _request(q, GET + encode_varint_frame(F.MAX_PUSH_ID, 0)),
        E.H3_FRAME_UNEXPECTED,
    ),
    "PUSH_PROMISE from the client": (
        lambda q: _request(q, GET + encode_frame(F.PUSH_PROMISE, b"\x00\x00\x00")),
        E.H3_FRAME_UNEXPECTED,
    ),
    "HTTP/2 PRIORITY on a request stream": (
        lambda q: _request(q, encode_frame(0x02, b"\x00") + GET),
        E.H3_FRAME_UNEXPECTED,
    ),
    "frame cut short by FIN": (
        lambda q: _request(q, GET + encode_varint(F.DATA) + encode_varint(10) + b"abc"),
        E.H3_FRAME_ERROR,
    ),
    "frame header cut short by FIN": (
        lambda q: _request(q, GET + b"\x40"),
        E.H3_FRAME_ERROR,
    ),
    "second control stream": (
        lambda q: _control(q, settings_frame()),
        E.H3_STREAM_CREATION_ERROR,
    ),
    "second QPACK encoder stream": (
        lambda q: open_uni(q, StreamType.QPACK_ENCODER),
        E.H3_STREAM_CREATION_ERROR,
    ),
    "second QPACK decoder stream": (
        lambda q: open_uni(q, StreamType.QPACK_DECODER),
        E.H3_STREAM_CREATION_ERROR,
    ),
    "push stream from the client": (
        lambda q: open_uni(q, StreamType.PUSH, encode_varint(0)),
        E.H3_STREAM_CREATION_ERROR,
    ),
    "QPACK garbage field section": (
        lambda q: _request(q, encode_frame(F.HEADERS, b"\xff\xff\xff")),
        E.QPACK_DECOMPRESSION_FAILED,
    ),
    "empty field section": (
        lambda q: _request(q, encode_frame(F.HEADERS, b"")),
        E.QPACK_DECOMPRESSION_FAILED,
    ),
}

CONTROL_STREAM_ERRORS: dict[str, tuple[bytes, int]] = {
    "GOAWAY before SETTINGS": (encode_varint_frame(F.GOAWAY, 0), E.H3_MISSING_SETTINGS),
    "GREASE frame before SETTINGS": (
        encode_frame(grease_value(3), b"hi") + settings_frame(),
        E.H3_MISSING_SETTINGS,
    ),
    "second SETTINGS": (settings_frame() + settings_frame(), E.H3_FRAME_UNEXPECTED),
    "DATA on control": (settings_frame() + data_frame(b"x"), E.H3_FRAME_UNEXPECTED),
    "HEADERS on control": (settings_frame() + GET, E.H3_FRAME_UNEXPECTED),
    "PUSH_PROMISE on control": (
        settings_frame() + encode_frame(F.PUSH_PROMISE, b"\x00\x00\x00"),
        E.H3_FRAME_UNEXPECTED,
    ),
    "HTTP/2 PING on control": (
        settings_frame() + encode_frame(0x06, b"12345678"),
        E.H3_FRAME_UNEXPECTED,
    ),
    "HTTP/2 WINDOW_UPDATE": (settings_frame() + encode_frame(0x08, b"\x00"), E.H3_FRAME_UNEXPECTED),
    "HTTP/2 CONTINUATION": (settings_frame() + encode_frame(0x09, b""), E.H3_FRAME_UNEXPECTED),
    "duplicate setting": (
        encode_frame(F.SETTINGS, b"\x01\x00\x01\x00"),
        E.H3_SETTINGS_ERROR,
    ),
    "HTTP/2 ENABLE_PUSH setting": (settings_frame({0x02: 0}), E.H3_SETTINGS_ERROR),
    "HTTP/2 MAX_FRAME_SIZE setting": (settings_frame({0x05: 1 << 14}), E.H3_SETTINGS_ERROR),
    "boolean setting of 2": (settings_frame({0x08: 2}), E.H3_SETTINGS_ERROR),
    "truncated SETTINGS payload": (encode_frame(F.SETTINGS, b"\x01"), E.H3_FRAME_ERROR),
    "oversized SETTINGS": (
        encode_varint(F.SETTINGS) + encode_varint(1 << 20),
        E.H3_EXCESSIVE_LOAD,
    ),
    "GOAWAY with trailing bytes": (
        settings_frame() + encode_frame(F.GOAWAY, b"\x00\x00"),
        E.H3_FRAME_ERROR,
    ),
    "GOAWAY with a cut varint": (
        settings_frame() + encode_frame(F.GOAWAY, b"\x40"),
        E.H3_FRAME_ERROR,
    ),
    "empty MAX_PUSH_ID": (settings_frame() + encode_frame(F.MAX_PUSH_ID, b""), E.H3_FRAME_ERROR),
    "MAX_PUSH_ID going down": (
        settings_frame()
        + encode_varint_frame(F.MAX_PUSH_ID, 5)
        + encode_varint_frame(F.MAX_PUSH_ID, 3),
        E.H3_ID_ERROR,
    ),
    "CANCEL_PUSH never promised": (
        settings_frame()
        + encode_varint_frame(F.MAX_PUSH_ID, 5)
        + encode_varint_frame(F.CANCEL_PUSH, 0),
        E.H3_ID_ERROR,
    ),
    "GOAWAY push id going up": (
        settings_frame() + encode_varint_frame(F.GOAWAY, 3) + encode_varint_frame(F.GOAWAY, 4),
        E.H3_ID_ERROR,
    ),
}


@pytest.mark.parametrize("case", list(CLIENT_CONNECTION_ERRORS))
def test_client_connection_errors(case: str) -> None:
    write, code = CLIENT_CONNECTION_ERRORS[case]
    h = _raw_client(write)
    h.assert_closed_by("server", code)
    (shutdown,) = h.events("server", ConnectionShutdown)
    assert shutdown.error_code == code and not shutdown.by_peer


@pytest.mark.parametrize("case", list(CONTROL_STREAM_ERRORS))
def test_control_stream_errors(case: str) -> None:
    frames, code = CONTROL_STREAM_ERRORS[case]

    def write(q: QuicConnection) -> None:
        _control(q, frames)
        open_uni(q, StreamType.QPACK_ENCODER)
        open_uni(q, StreamType.QPACK_DECODER)

    h = _raw_client(write, standard_streams=False)
    h.assert_closed_by("server", code)


@pytest.mark.parametrize("which", ["control", "encoder", "decoder"])
@pytest.mark.parametrize("how", ["fin", "reset"])
def test_closing_a_critical_stream(which: str, how: str) -> None:
    h = H3Pair(raw_client=True)
    streams = open_raw_h3(h.pair.client)
    h.run()
    assert h.terminated("server") is None
    if how == "fin":
        h.pair.client.send_stream_data(streams[which], b"", end_stream=True)
    else:
        h.pair.client.reset_stream(streams[which], E.H3_NO_ERROR)
    h.run()
    h.assert_closed_by("server", E.H3_CLOSED_CRITICAL_STREAM)


def test_stop_sending_on_our_control_stream() -> None:
    h = H3Pair(raw_client=True)
    open_raw_h3(h.pair.client)
    h.run()
    server_control = 3  # the server's first unidirectional stream
    h.pair.client.stop_sending(server_control, E.H3_NO_ERROR)
    h.run()
    h.assert_closed_by("server", E.H3_CLOSED_CRITICAL_STREAM)


@pytest.mark.parametrize(
    ("stream", "data", "code"),
    [
        ("encoder", b"\x3f\xff\xff\xff\x0f", E.QPACK_ENCODER_STREAM_ERROR),  # capacity > max
        ("encoder", b"\x00", E.QPACK_ENCODER_STREAM_ERROR),  # duplicate of no entry
        ("decoder", b"\x81", E.QPACK_DECODER_STREAM_ERROR),  # ack of nothing
        ("decoder", b"\x01", E.QPACK_DECODER_STREAM_ERROR),  # increment past inserts
    ],
)
def test_qpack_stream_errors(stream: str, data: bytes, code: int) -> None:
    h = H3Pair(raw_client=True)
    streams = open_raw_h3(h.pair.client)
    h.run()
    h.pair.client.send_stream_data(streams[stream], data)
    h.run()
    h.assert_closed_by("server", code)


# -- the client's side: a raw server -------------------------------------------------


def _raw_server(config: H3Config | None = None) -> tuple[H3Pair, int]:
    """A client H3Connection with one GET sent, and a raw QUIC server."""
    h = H3Pair(client=config, raw_server=True)
    assert h.pair.server is not None
    open_raw_h3(h.pair.server)
    sid = h.client.open_request_stream()
    h.client.send_headers(sid, request_headers(), end_stream=True)
    h.run()
    return h, sid


def test_max_push_id_from_the_server() -> None:
    h, _ = _raw_server()
    assert h.pair.server is not None
    h.pair.server.send_stream_data(3, encode_varint_frame(F.MAX_PUSH_ID, 1))
    h.run()
    h.assert_closed_by("client", E.H3_FRAME_UNEXPECTED)


@pytest.mark.parametrize(
    ("goaways", "code"),
    [((1,), E.H3_ID_ERROR), ((2,), E.H3_ID_ERROR), ((8, 12), E.H3_ID_ERROR)],
)
def test_bad_goaway_from_the_server(goaways: tuple[int, ...], code: int) -> None:
    h, _ = _raw_server()
    assert h.pair.server is not None
    for value in goaways:
        h.pair.server.send_stream_data(3, encode_varint_frame(F.GOAWAY, value))
    h.run()
    h.assert_closed_by("client", code)


def test_push_promise_without_max_push_id() -> None:
    h, sid = _raw_server()
    assert h.pair.server is not None
    promise = encode_frame(F.PUSH_PROMISE, encode_varint(0) + qpack_block(request_headers()))
    h.pair.server.send_stream_data(sid, promise)
    h.run()
    h.assert_closed_by("client", E.H3_ID_ERROR)


def test_push_stream_beyond_max_push_id() -> None:
    h, _ = _raw_server(H3Config(max_push_id=2))
    assert h.pair.server is not None
    open_uni(h.pair.server, StreamType.PUSH, encode_varint(3))
    h.run()
    h.assert_closed_by("client", E.H3_ID_ERROR)


def test_duplicate_push_stream() -> None:
    h, _ = _raw_server(H3Config(max_push_id=2))
    assert h.pair.server is not None
    open_uni(h.pair.server, StreamType.PUSH, encode_varint(1))
    open_uni(h.pair.server, StreamType.PUSH, encode_varint(1))
    h.run()
    h.assert_closed_by("client", E.H3_ID_ERROR)


def test_same_push_id_promised_with_different_requests() -> None:
    h, sid = _raw_server(H3Config(max_push_id=2))
    assert h.pair.server is not None
    for path in ("/a", "/b"):
        block = qpack_block(request_headers(path))
        h.pair.server.send_stream_data(sid, encode_frame(F.PUSH_PROMISE, encode_varint(0) + block))
    h.run()
    h.assert_closed_by("client", E.H3_GENERAL_PROTOCOL_ERROR)


def test_server_initiated_bidirectional_stream() -> None:
    h, _ = _raw_server()
    assert h.pair.server is not None
    bidi = h.pair.server.open_stream(True)
    h.pair.server.send_stream_data(bidi, GET)
    h.run()
    h.assert_closed_by("client", E.H3_STREAM_CREATION_ERROR)


def test_cancel_push_beyond_max_push_id() -> None:
    h, _ = _raw_server()
    assert h.pair.server is not None
    h.pair.server.send_stream_data(3, encode_varint_frame(F.CANCEL_PUSH, 0))
    h.run()
    h.assert_closed_by("client", E.H3_ID_ERROR)


# -- stream errors: only the stream is reset ---------------------------------------

MALFORMED_REQUESTS: dict[str, list[tuple[bytes, bytes]]] = {
    "uppercase name": [*request_headers(), (b"X-Upper", b"1")],
    "space in name": [*request_headers(), (b"x bad", b"1")],
    "colon inside name": [*request_headers(), (b"x:y", b"1")],
    "CR in value": [*request_headers(), (b"x", b"a\rb")],
    "NUL in value": [*request_headers(), (b"x", b"a\x00b")],
    "leading whitespace": [*request_headers(), (b"x", b" a")],
    "connection field": [*request_headers(), (b"connection", b"close")],
    "transfer-encoding": [*request_headers(), (b"transfer-encoding", b"chunked")],
    "upgrade": [*request_headers(), (b"upgrade", b"websocket")],
    "te not trailers": [*request_headers(), (b"te", b"gzip")],
    "no :method": [h for h in request_headers() if h[0] != b":method"],
    "no :scheme": [h for h in request_headers() if h[0] != b":scheme"],
    "no :path": [h for h in request_headers() if h[0] != b":path"],
    "empty :path": [(k, b"" if k == b":path" else v) for k, v in request_headers()],
    "no :authority or host": [h for h in request_headers() if h[0] != b":authority"],
    ":authority and host differ": [*request_headers(), (b"host", b"elsewhere")],
    "pseudo after regular": [(b"x", b"1"), *request_headers()],
    "duplicate pseudo": [*request_headers(), (b":path", b"/again")],
    "unknown pseudo": [(b":foo", b"bar"), *request_headers()],
    "response pseudo in request": [(b":status", b"200"), *request_headers()],
    "CONNECT with :path": [
        (b":method", b"CONNECT"),
        (b":authority", b"example.com:443"),
        (b":path", b"/"),
    ],
    "CONNECT without :authority": [(b":method", b"CONNECT")],
    ":protocol without CONNECT": [*request_headers(), (b":protocol", b"websocket")],
    "bad content-length": [*request_headers(), (b"content-length", b"-1")],
    "conflicting content-length": [
        *request_headers(),
        (b"content-length", b"1"),
        (b"content-length", b"2"),
    ],
}


def _assert_stream_error(h: H3Pair, side: str, stream_id: int, code: int) -> None:
    codes = h.stream_codes(side, stream_id)
    assert codes == {code}, codes
    assert (
        h.terminated(side) is None
        and h.terminated("server" if side == "client" else "client") is None
    )


def _assert_still_usable(h: H3Pair) -> None:
    """The raw client can still get a response on a new stream."""
    sid = _request(h.pair.client, GET)
    h.run()
    assert h.events("server", HeadersReceived, sid)


@pytest.mark.parametrize("case", list(MALFORMED_REQUESTS))
def test_malformed_request_is_a_stream_error(case: str) -> None:
    holder: list[int] = []
    h = _raw_client(
        lambda q: holder.append(_request(q, headers_frame(MALFORMED_REQUESTS[case]), end=False))
    )
    assert not h.events("server", HeadersReceived)
    _assert_stream_error(h, "client", holder[0], E.H3_MESSAGE_ERROR)
    _assert_still_usable(h)


@pytest.mark.parametrize(
    ("frames", "code"),
    [
        (
            headers_frame(request_headers(content_length="10")) + data_frame(b"12345"),
            E.H3_MESSAGE_ERROR,
        ),
        (
            headers_frame(request_headers(content_length="3")) + data_frame(b"12345"),
            E.H3_MESSAGE_ERROR,
        ),
        (GET + headers_frame([(b":path", b"/trailer")]), E.H3_MESSAGE_ERROR),
        (b"", E.H3_REQUEST_INCOMPLETE),
        (encode_frame(grease_value(1), b"grease only"), E.H3_REQUEST_INCOMPLETE),
    ],
    ids=[
        "content-length short",
        "content-length exceeded",
        "pseudo in trailers",
        "empty",
        "no HEADERS",
    ],
)
def test_request_stream_errors(frames: bytes, code: int) -> None:
    holder: list[int] = []
    h = _raw_client(lambda q: holder.append(_request(q, frames)))
    _assert_stream_error(h, "client", holder[0], code)
    _assert_still_usable(h)


def test_stream_error_after_headers_reaches_the_application() -> None:
    holder: list[int] = []
    frames = headers_frame(request_headers(content_length="3")) + data_frame(b"12345")
    h = _raw_client(lambda q: holder.append(_request(q, frames, end=False)))
    (reset,) = h.events("server", StreamAborted)
    assert reset.stream_id == holder[0] and not reset.by_peer
    assert reset.error_code == E.H3_MESSAGE_ERROR


@pytest.mark.parametrize(
    "response",
    [
        [(b":status", b"20")],
        [(b":status", b"abc")],
        [(b":status", b"101")],
        [(b"content-type", b"text/plain")],
        [(b"x", b"1"), (b":status", b"200")],
        [(b":status", b"200"), (b":method", b"GET")],
    ],
    ids=["2 digits", "letters", "101", "no status", "pseudo after regular", "request pseudo"],
)
def test_malformed_response_is_a_stream_error(response: list[tuple[bytes, bytes]]) -> None:
    h, sid = _raw_server()
    assert h.pair.server is not None
    h.pair.server.send_stream_data(sid, headers_frame(response), end_stream=False)
    h.run()
    assert not h.events("client", HeadersReceived)
    (reset,) = h.events("client", StreamAborted)
    assert reset.error_code == E.H3_MESSAGE_ERROR and not reset.by_peer
    _assert_stream_error(h, "server", sid, E.H3_MESSAGE_ERROR)


def test_response_ending_after_interim_only() -> None:
    h, sid = _raw_server()
    assert h.pair.server is not None
    h.pair.server.send_stream_data(sid, headers_frame(response_headers(103)), end_stream=True)
    h.run()
    assert len(h.events("client", HeadersReceived)) == 1
    (reset,) = h.events("client", StreamAborted)
    assert reset.error_code == E.H3_REQUEST_INCOMPLETE


def test_head_response_content_length_is_not_checked() -> None:
    h = H3Pair(raw_server=True)
    assert h.pair.server is not None
    open_raw_h3(h.pair.server)
    sid = h.client.open_request_stream()
    h.client.send_headers(sid, request_headers(method="HEAD"), end_stream=True)
    h.run()
    h.pair.server.send_stream_data(
        sid, headers_frame(response_headers(200, content_length="1234")), end_stream=True
    )
    h.run()
    (response,) = h.events("client", HeadersReceived)
    assert response.stream_ended
    assert not h.events("client", StreamAborted)


# -- things to ignore -------------------------------------------------------------------


def test_grease_and_unknown_frames_are_ignored() -> None:
    grease = encode_frame(grease_value(7), b"ignore me")
    unknown = encode_frame(0x2F, b"\x00" * 300)
    holder: list[int] = []

    def write(q: QuicConnection) -> None:
        open_uni(q, StreamType.CONTROL, settings_frame({grease_value(2): 7}) + grease + unknown)
        open_uni(q, StreamType.QPACK_ENCODER)
        open_uni(q, StreamType.QPACK_DECODER)
        body = grease + GET + unknown + data_frame(b"abc") + grease + data_frame(b"def") + unknown
        holder.append(_request(q, body))

    h = _raw_client(write, standard_streams=False)
    assert h.terminated("server") is None
    (request,) = h.events("server", HeadersReceived)
    assert h.body("server", holder[0]) == b"abcdef"
    assert h.events("server", DataReceived)[-1].stream_ended
    assert request.headers == request_headers()


@pytest.mark.parametrize("stream_type", [grease_value(0), grease_value(5), 0x54, 0x3FFF])
def test_unknown_unidirectional_stream_is_stopped_and_ignored(stream_type: int) -> None:
    holder: list[int] = []
    h = _raw_client(lambda q: holder.append(open_uni(q, stream_type, b"whatever " * 100)))
    assert h.stream_codes("client", holder[0]) == {E.H3_STREAM_CREATION_ERROR}
    assert h.terminated("server") is None
    _assert_still_usable(h)


def test_unidirectional_stream_closed_before_its_type_is_tolerated() -> None:
    def write(q: QuicConnection) -> None:
        stream_id = q.open_stream(False)
        q.send_stream_data(stream_id, b"", end_stream=True)
        stream_id = q.open_stream(False)
        q.send_stream_data(stream_id, b"\x40", end_stream=True)  # half a varint

    h = _raw_client(write)
    assert h.terminated("server") is None
    _assert_still_usable(h)


def test_client_ignores_grease_on_its_side() -> None:
    h, sid = _raw_server()
    assert h.pair.server is not None
    grease = encode_frame(grease_value(9), b"x" * 40)
    h.pair.server.send_stream_data(3, grease)
    open_uni(h.pair.server, grease_value(4), b"data")
    h.pair.server.send_stream_data(
        sid,
        grease + headers_frame(response_headers()) + grease + data_frame(b"ok"),
        end_stream=True,
    )
    h.run()
    assert h.terminated("client") is None
    assert h.body("client", sid) == b"ok"
