"""HTTP/3 over the in-memory QUIC pair: requests, responses, QPACK, back-pressure."""

from __future__ import annotations

import pytest
from test_h3_support import H3Pair, data_frame, request_headers, response_headers

from ghostwire.http3 import (
    ConnectionShutdown,
    DataReceived,
    FieldSectionTooLarge,
    H3Config,
    H3ErrorCode,
    HeadersReceived,
    InvalidHeaders,
    InvalidStreamState,
    SendingStopped,
    SettingsReceived,
    StreamAborted,
    TrailersReceived,
)
from ghostwire.http3.frames import Setting
from ghostwire.quic.events import StopSendingReceived, StreamResetReceived, StreamsAvailable
from ghostwire.quic.streams import StreamLimitReached


def test_settings_exchanged_at_start() -> None:
    h = H3Pair()
    (client_sees,) = h.events("client", SettingsReceived)
    (server_sees,) = h.events("server", SettingsReceived)
    assert client_sees.settings[Setting.QPACK_MAX_TABLE_CAPACITY] == 4096
    assert client_sees.settings[Setting.QPACK_BLOCKED_STREAMS] == 16
    assert server_sees.settings[Setting.MAX_FIELD_SECTION_SIZE] == 64 << 10
    assert h.client.peer_settings == client_sees.settings
    assert h.server.peer_settings == server_sees.settings


def test_get_round_trip() -> None:
    h = H3Pair()
    sid = h.client.open_request_stream()
    h.client.send_headers(sid, request_headers("/index.html"), end_stream=True)
    h.run()
    (request,) = h.events("server", HeadersReceived)
    assert request.stream_id == sid
    assert request.stream_ended
    assert dict(request.headers)[b":path"] == b"/index.html"

    h.server.send_headers(sid, response_headers(200, content_length="5"))
    h.server.send_data(sid, b"hello", end_stream=True)
    h.run()
    (response,) = h.events("client", HeadersReceived)
    assert dict(response.headers)[b":status"] == b"200"
    assert h.body("client", sid) == b"hello"
    assert h.events("client", DataReceived)[-1].stream_ended
    assert h.client.open_stream_count == 0
    assert h.server.open_stream_count == 0


def test_post_with_bodies_and_trailers_both_ways() -> None:
    h = H3Pair()
    sid = h.client.open_request_stream()
    h.client.send_headers(sid, request_headers("/upload", "POST", content_type="text/plain"))
    h.client.send_data(sid, b"part one, ")
    h.client.send_data(sid, b"part two")
    h.client.send_trailers(sid, [(b"x-checksum", b"abc123")])
    h.run()
    assert h.body("server", sid) == b"part one, part two"
    (trailers,) = h.events("server", TrailersReceived)
    assert trailers.headers == [(b"x-checksum", b"abc123")]
    assert trailers.stream_ended

    h.server.send_headers(sid, response_headers(100))  # interim response first
    h.server.send_headers(sid, response_headers(201))
    h.server.send_data(sid, b"x" * 100_000)
    h.server.send_trailers(sid, [(b"grpc-status", b"0")])
    h.run()
    interim, final = h.events("client", HeadersReceived)
    assert dict(interim.headers)[b":status"] == b"100"
    assert dict(final.headers)[b":status"] == b"201"
    assert h.body("client", sid) == b"x" * 100_000
    (trailers,) = h.events("client", TrailersReceived)
    assert trailers.headers == [(b"grpc-status", b"0")] and trailers.stream_ended


def test_end_stream_after_data_with_empty_send_data() -> None:
    h = H3Pair()
    sid = h.client.open_request_stream()
    h.client.send_headers(sid, request_headers(method="PUT"))
    h.client.send_data(sid, b"abc")
    h.run()
    assert not any(e.stream_ended for e in h.events("server", DataReceived))
    h.client.send_data(sid, b"", end_stream=True)
    h.run()
    assert h.events("server", DataReceived)[-1].stream_ended
    assert h.body("server", sid) == b"abc"


def test_hundred_concurrent_requests() -> None:
    h = H3Pair()
    sids = []
    for i in range(100):
        sid = h.client.open_request_stream()
        h.client.send_headers(sid, request_headers(f"/item/{i}", "POST"))
        h.client.send_data(sid, f"body {i}".encode() * 50, end_stream=True)
        sids.append(sid)
    h.run()
    requests = h.events("server", HeadersReceived)
    assert sorted(e.stream_id for e in requests) == sids
    for event in requests:
        path = dict(event.headers)[b":path"]
        i = int(path.rsplit(b"/", 1)[1])
        assert h.body("server", event.stream_id) == f"body {i}".encode() * 50
        h.server.send_headers(event.stream_id, response_headers(200))
        h.server.send_data(event.stream_id, b"echo " + path, end_stream=True)
    h.run()
    for i, sid in enumerate(sids):
        assert h.body("client", sid) == f"echo /item/{i}".encode()
    assert h.client.open_stream_count == 0 and h.server.open_stream_count == 0


def _big_headers(n: int = 40) -> list[tuple[bytes, bytes]]:
    return [(f"x-custom-header-{i}".encode(), f"value-{i}-".encode() * 8) for i in range(n)]


def _headers_bytes(h: H3Pair, sid: int) -> int:
    return h.pair.client.streams.statistics(sid).bytes_written


def test_qpack_dynamic_table_shrinks_repeated_header_sections() -> None:
    h = H3Pair()
    extra = _big_headers(20)  # ~2.4 KB of entries: fits the 4 KB table
    raw_size = sum(len(k) + len(v) for k, v in extra)
    sizes = []
    for _ in range(4):
        sid = h.client.open_request_stream()
        before = h.client.encoder.encoder_bytes
        h.client.send_headers(sid, request_headers("/same") + extra)
        sizes.append((_headers_bytes(h, sid), h.client.encoder.encoder_bytes - before))
        h.client.send_data(sid, b"", end_stream=True)
        h.run()
        (request,) = h.events("server", HeadersReceived, sid)
        assert request.headers == request_headers("/same") + extra
    # The encoder stream carried the inserts, and repeats reference them.
    assert sum(inserted for _, inserted in sizes) > raw_size / 2
    assert sizes[0][0] > raw_size / 2  # first: literals
    assert sizes[3][0] < raw_size / 20  # later: dynamic references only
    assert sizes[3][1] == 0  # nothing new to insert
    assert sizes[3][0] <= sizes[1][0] <= sizes[0][0]


def test_large_header_sets_churning_the_dynamic_table() -> None:
    # 40 fields do not fit the 4 KB table: entries are evicted and re-inserted.
    h = H3Pair()
    for round_ in range(6):
        extra = [*_big_headers(40), (b"x-round", str(round_).encode() * 200)]
        sid = h.client.open_request_stream()
        h.client.send_headers(sid, request_headers(f"/r{round_}") + extra, end_stream=True)
        h.run()
        (request,) = h.events("server", HeadersReceived, sid)
        assert request.headers == request_headers(f"/r{round_}") + extra
        h.server.send_headers(sid, response_headers(200) + extra, end_stream=True)
        h.run()
        (response,) = h.events("client", HeadersReceived, sid)
        assert response.headers == response_headers(200) + extra
    assert h.client.encoder.encoder_bytes > 0 and h.server.encoder.encoder_bytes > 0
    assert h.terminated("client") is None


def test_qpack_without_dynamic_table() -> None:
    off = H3Config(qpack_max_table_capacity=0, qpack_blocked_streams=0)
    h = H3Pair(server=off)
    extra = _big_headers()
    for _ in range(3):
        sid = h.client.open_request_stream()
        h.client.send_headers(sid, request_headers() + extra, end_stream=True)
        h.run()
        assert h.events("server", HeadersReceived, sid)[0].headers[-1] == extra[-1]
        assert _headers_bytes(h, sid) > sum(len(k) + len(v) for k, v in extra) / 2
    assert h.client.encoder.encoder_bytes == 0


def test_blocked_stream_resumes_when_encoder_data_arrives() -> None:
    h = H3Pair()
    encoder_stream = h.client._encoder_id
    assert encoder_stream is not None
    held: list[tuple[bytes, bool]] = []
    quic = h.pair.client
    original = quic.send_stream_data

    def delaying(stream_id: int, data: bytes, end_stream: bool = False) -> None:
        if stream_id == encoder_stream:
            held.append((data, end_stream))
        else:
            original(stream_id, data, end_stream)

    quic.send_stream_data = delaying  # type: ignore[method-assign]
    extra = _big_headers(10)
    # The encoder inserts on a field's second use: prime, then send the blocked one.
    first = h.client.open_request_stream()
    h.client.send_headers(first, request_headers("/a") + extra, end_stream=True)
    second = h.client.open_request_stream()
    h.client.send_headers(second, request_headers("/b") + extra, end_stream=True)
    assert held, "the encoder should have inserted entries"
    h.run()
    seen = {e.stream_id for e in h.events("server", HeadersReceived)}
    assert first in seen and second not in seen
    assert h.server.decoder.blocked == {second}

    quic.send_stream_data = original  # type: ignore[method-assign]
    for data, end in held:
        original(encoder_stream, data, end)
    h.run()
    (resumed,) = h.events("server", HeadersReceived, second)
    assert resumed.headers == request_headers("/b") + extra
    assert resumed.stream_ended
    assert not h.server.decoder.blocked


def test_blocked_stream_reset_cancels_decoding() -> None:
    h = H3Pair()
    encoder_stream = h.client._encoder_id
    assert encoder_stream is not None
    quic = h.pair.client
    original = quic.send_stream_data
    held: list[bytes] = []

    def delaying(stream_id: int, data: bytes, end_stream: bool = False) -> None:
        if stream_id == encoder_stream:
            held.append(data)
        else:
            original(stream_id, data, end_stream)

    quic.send_stream_data = delaying  # type: ignore[method-assign]
    extra = _big_headers(10)
    for path in ("/a", "/b"):
        sid = h.client.open_request_stream()
        h.client.send_headers(sid, request_headers(path) + extra)
    h.run()
    assert h.server.decoder.blocked == {sid}
    h.client.cancel_request(sid)
    h.run()
    assert not h.server.decoder.blocked
    assert sid not in h.server.streams
    quic.send_stream_data = original  # type: ignore[method-assign]
    for data in held:
        original(encoder_stream, data)
    h.run()
    assert not h.events("server", HeadersReceived, sid)
    assert h.terminated("server") is None


def test_receive_window_applies_back_pressure() -> None:
    client_window = 4096
    h = H3Pair(
        client=H3Config(receive_window=client_window),
        auto_ack=False,
        quic_client={"initial_max_stream_data": 32 << 10, "max_stream_window": 32 << 10},
    )
    sid = h.client.open_request_stream()
    h.client.send_headers(sid, request_headers("/big"), end_stream=True)
    h.run()
    body = bytes(range(256)) * 800  # 200 KiB
    h.server.send_headers(sid, response_headers(200))
    h.server.send_data(sid, body, end_stream=True)
    h.run()
    assert len(h.body("client", sid)) == client_window
    stats = h.pair.client.streams.statistics(sid)
    # The rest waits unread in QUIC's buffer, holding back flow-control credit,
    # so the server is stuck with most of the body.
    assert stats.bytes_received == 32 << 10
    assert stats.bytes_read < client_window + 100
    assert h.server.stream_send_buffered(sid) > len(body) - (32 << 10)
    acked = 0
    for _ in range(500):
        if h.events("client", DataReceived)[-1].stream_ended:
            break
        delivered = len(h.body("client", sid))
        h.ack("client", sid, delivered - acked)
        acked = delivered
        h.run()
        assert len(h.body("client", sid)) - acked <= client_window
    assert h.body("client", sid) == body


def test_receive_window_none_means_unbounded() -> None:
    h = H3Pair(client=H3Config(receive_window=None), auto_ack=False)
    sid = h.client.open_request_stream()
    h.client.send_headers(sid, request_headers(), end_stream=True)
    h.run()
    h.server.send_headers(sid, response_headers())
    h.server.send_data(sid, b"z" * 300_000, end_stream=True)
    h.run()
    assert h.body("client", sid) == b"z" * 300_000


def test_cancel_request_resets_both_ways() -> None:
    h = H3Pair()
    sid = h.client.open_request_stream()
    h.client.send_headers(sid, request_headers(method="POST"))
    h.client.send_data(sid, b"partial")
    h.run()
    h.client.cancel_request(sid)
    h.run()
    (reset,) = h.events("server", StreamAborted)
    assert reset.stream_id == sid and reset.by_peer
    assert reset.error_code == H3ErrorCode.H3_REQUEST_CANCELLED
    (stopped,) = h.events("server", SendingStopped)
    assert stopped.error_code == H3ErrorCode.H3_REQUEST_CANCELLED
    assert h.server.open_stream_count == 0 and h.client.open_stream_count == 0
    with pytest.raises(InvalidStreamState):
        h.server.send_headers(sid, response_headers())


def test_server_stops_request_body_and_still_responds() -> None:
    # RFC 9114 §4.1.1: STOP_SENDING with H3_NO_ERROR, then a complete response.
    h = H3Pair()
    sid = h.client.open_request_stream()
    h.client.send_headers(sid, request_headers(method="POST"))
    h.client.send_data(sid, b"a" * 1000)
    h.run()
    assert h.pair.server is not None
    h.pair.server.stop_sending(sid, H3ErrorCode.H3_NO_ERROR)
    h.server.send_headers(sid, response_headers(413))
    h.server.send_data(sid, b"too big", end_stream=True)
    h.run()
    (stopped,) = h.events("client", SendingStopped)
    assert stopped.error_code == H3ErrorCode.H3_NO_ERROR
    assert h.body("client", sid) == b"too big"
    with pytest.raises(InvalidStreamState):
        h.client.send_data(sid, b"more")


def test_a_stopped_request_body_cut_short_is_not_a_frame_error() -> None:
    # The server stops reading (stop_receiving) while the client is still in
    # the middle of a DATA frame; the client then ends the stream inside that
    # frame. What arrives after STOP_SENDING is never parsed: no H3_FRAME_ERROR,
    # the connection lives on and the response arrives whole.
    h = H3Pair()
    sid = h.client.open_request_stream()
    h.client.send_headers(sid, request_headers(method="POST"))
    h.run()
    assert h.pair.client is not None
    h.pair.client.send_stream_data(sid, data_frame(b"a" * 1000)[:500])
    h.run()
    h.server.stop_receiving(sid)
    h.server.send_headers(sid, response_headers(413))
    h.server.send_data(sid, b"too big", end_stream=True)
    h.pair.client.send_stream_data(sid, b"a" * 100, end_stream=True)  # ends inside the frame
    h.run()
    assert h.terminated("server") is None and h.terminated("client") is None
    assert h.body("client", sid) == b"too big"
    assert h.server.open_stream_count == 0
    sid2 = h.client.open_request_stream()  # the connection still serves requests
    h.client.send_headers(sid2, request_headers(), end_stream=True)
    h.run()
    h.server.send_headers(sid2, response_headers(), end_stream=True)
    h.run()
    assert h.events("client", HeadersReceived, sid2)


def test_send_side_misuse_raises_locally() -> None:
    h = H3Pair()
    sid = h.client.open_request_stream()
    with pytest.raises(InvalidStreamState):
        h.client.send_data(sid, b"body before headers")
    with pytest.raises(InvalidStreamState):
        h.client.send_trailers(sid, [(b"x", b"y")])
    with pytest.raises(InvalidHeaders):
        h.client.send_headers(sid, [(b":method", b"GET")])
    with pytest.raises(InvalidHeaders):
        h.client.send_headers(sid, [*request_headers(), (b"Upper", b"x")])
    h.client.send_headers(sid, request_headers(), end_stream=True)
    with pytest.raises(InvalidStreamState):
        h.client.send_data(sid, b"after the end")
    h.run()
    with pytest.raises(InvalidHeaders):
        h.server.send_headers(sid, [(b":status", b"2000")])
    with pytest.raises(InvalidStreamState):
        h.server.send_headers(sid, response_headers(103), end_stream=True)
    h.server.send_headers(sid, response_headers(200))
    with pytest.raises(InvalidHeaders):
        h.server.send_trailers(sid, [(b":status", b"200")])


def test_peer_max_field_section_size_is_enforced_on_send() -> None:
    h = H3Pair(server=H3Config(max_field_section_size=1000))
    sid = h.client.open_request_stream()
    with pytest.raises(FieldSectionTooLarge):
        h.client.send_headers(sid, [*request_headers(), (b"x-big", b"v" * 1000)])
    h.client.send_headers(sid, request_headers(), end_stream=True)
    h.run()
    assert h.events("server", HeadersReceived)


def test_oversized_header_section_is_a_stream_error() -> None:
    # The client ignores the server's limit (it has none of its own checks here).
    h = H3Pair(server=H3Config(max_field_section_size=1000))
    h.client.peer_max_field_section_size = None
    sid = h.client.open_request_stream()
    h.client.send_headers(sid, [*request_headers(), (b"x-big", b"v" * 2000)])
    h.run()
    assert not h.events("server", HeadersReceived)
    stops = [e for e in h.client_quic_events if isinstance(e, StopSendingReceived)]
    assert [e.error_code for e in stops] == [H3ErrorCode.H3_EXCESSIVE_LOAD]
    resets = [e for e in h.client_quic_events if isinstance(e, StreamResetReceived)]
    assert [e.error_code for e in resets] == [H3ErrorCode.H3_EXCESSIVE_LOAD]
    assert h.terminated("client") is None


def test_close_reports_shutdown_on_both_sides() -> None:
    h = H3Pair()
    h.client.close(h.now, H3ErrorCode.H3_NO_ERROR, "bye")
    h.run()
    (mine,) = h.events("client", ConnectionShutdown)
    (theirs,) = h.events("server", ConnectionShutdown)
    assert not mine.by_peer and theirs.by_peer
    assert theirs.error_code == H3ErrorCode.H3_NO_ERROR and theirs.is_application
    assert theirs.reason == "bye"


def test_request_streams_wait_for_the_peers_stream_limit() -> None:
    h = H3Pair(quic_server={"max_streams_bidi": 2})
    first, second = (h.client.open_request_stream() for _ in range(2))
    with pytest.raises(StreamLimitReached):
        h.client.open_request_stream()
    for sid in (first, second):
        h.client.send_headers(sid, request_headers(), end_stream=True)
    h.run()
    for sid in (first, second):
        h.server.send_headers(sid, response_headers(204), end_stream=True)
    h.run()
    # Finished streams return credit (MAX_STREAMS): QUIC says StreamsAvailable.
    raised = [e for e in h.quic_events("client", StreamsAvailable) if e.bidirectional]
    assert len(raised) == 2  # the handshake's limit, then the raise
    third = h.client.open_request_stream()
    h.client.send_headers(third, request_headers(), end_stream=True)
    h.run()
    assert h.events("server", HeadersReceived, third)


def test_request_reset_before_its_headers_is_aborted_and_frees_stream_credit() -> None:
    # RFC 9114 §4.1: the server aborts a request the client abandoned before
    # its headers were complete (H3_REQUEST_INCOMPLETE); without that the
    # stream never closes and its MAX_STREAMS credit never comes back.
    from test_h3_support import open_raw_h3

    from ghostwire.http3 import H3ErrorCode

    pair = H3Pair(raw_client=True, quic_server={"max_streams_bidi": 2})
    quic = pair.pair.client
    open_raw_h3(quic)
    for _ in range(6):  # three times the server's stream limit
        stream_id = quic.open_stream(True)
        quic.send_stream_data(stream_id, b"\x01")  # the first byte of a HEADERS frame
        pair.run()
        quic.reset_stream(stream_id, H3ErrorCode.H3_REQUEST_CANCELLED)
        pair.run()
        assert H3ErrorCode.H3_REQUEST_INCOMPLETE in pair.stream_codes("client", stream_id)
    assert pair.terminated("server") is None


def test_held_decoder_acknowledgments_wait_for_the_next_field_section_sent() -> None:
    """With ``hold_decoder_acks`` (a client's trio shell sets it), the
    decoder's Section Acknowledgments (RFC 9204 §4.4.1) stay in
    ``decoder.pending`` after a received event -- a StreamsAvailable among
    them -- and leave with the next field section we send."""
    h = H3Pair()
    h.client.hold_decoder_acks = True
    # The server's encoder inserts the custom field, then references it.
    served_by = [(b"x-served-by", b"node-seven")]

    def get() -> None:
        sid = h.client.open_request_stream()
        h.client.send_headers(sid, request_headers("/"), end_stream=True)
        h.run()
        h.server.send_headers(sid, response_headers(200) + served_by)
        h.server.send_data(sid, b"ok", end_stream=True)
        h.run()

    def decoder_stream_bytes() -> int:
        return h.pair.client.streams.statistics(10).bytes_written  # our decoder stream

    get()
    get()
    written = decoder_stream_bytes()
    assert h.client.decoder.pending  # held
    h.client.handle_event(StreamsAvailable(bidirectional=True), h.now)
    assert h.client.decoder.pending  # still held
    assert decoder_stream_bytes() == written
    sid = h.client.open_request_stream()
    h.client.send_headers(sid, request_headers("/"), end_stream=True)
    assert not h.client.decoder.pending
    assert decoder_stream_bytes() > written
