"""Graceful shutdown with GOAWAY (RFC 9114 §5.2)."""

from __future__ import annotations

import pytest
from test_h3_support import H3Pair, open_raw_h3, request_headers, response_headers

from ghostwire.http3 import (
    MAX_REQUEST_STREAM_ID,
    ConnectionGoingAway,
    ConnectionShutdown,
    GoAwayReceived,
    H3ErrorCode,
    H3UsageError,
    HeadersReceived,
    StreamAborted,
)
from ghostwire.http3.frames import FrameType, encode_varint_frame


def _requests(h: H3Pair, n: int) -> list[int]:
    sids = []
    for i in range(n):
        sid = h.client.open_request_stream()
        h.client.send_headers(sid, request_headers(f"/{i}"), end_stream=True)
        sids.append(sid)
    return sids


def test_graceful_shutdown_finishes_accepted_requests() -> None:
    h = H3Pair()
    sids = _requests(h, 3)
    h.run()
    assert len(h.events("server", HeadersReceived)) == 3
    sent = h.server.send_goaway()
    assert sent == sids[-1] + 4  # the next request stream id nobody has used
    h.run()
    (goaway,) = h.events("client", GoAwayReceived)
    assert goaway.id == sent
    assert h.client.goaway_received == sent
    with pytest.raises(ConnectionGoingAway):
        h.client.open_request_stream()

    # Requests below the id are still answered.
    for sid in sids:
        h.server.send_headers(sid, response_headers(200))
        h.server.send_data(sid, b"done", end_stream=True)
    h.run()
    assert all(h.body("client", sid) == b"done" for sid in sids)
    assert h.server.open_stream_count == 0

    h.server.close(h.now)
    h.run()
    (shutdown,) = h.events("client", ConnectionShutdown)
    assert shutdown.by_peer and shutdown.is_application
    assert shutdown.error_code == H3ErrorCode.H3_NO_ERROR


def test_request_racing_the_goaway_is_rejected() -> None:
    h = H3Pair()
    (first,) = _requests(h, 1)
    h.run()
    h.server.send_goaway()
    (late,) = _requests(h, 1)  # sent before the GOAWAY arrives
    h.run()
    assert [e.stream_id for e in h.events("server", HeadersReceived)] == [first]
    # The server refuses the stream, the client drops it on GOAWAY: whichever
    # comes first, the application hears once that it was not processed.
    (reset,) = h.events("client", StreamAborted)
    assert reset.stream_id == late
    assert reset.error_code == H3ErrorCode.H3_REQUEST_REJECTED
    assert late not in h.client.streams and late not in h.server.streams
    assert h.terminated("client") is None


def test_client_drops_requests_the_goaway_excludes() -> None:
    # A server that neither answers nor resets: the GOAWAY alone tells the client.
    h = H3Pair(raw_server=True)
    assert h.pair.server is not None
    open_raw_h3(h.pair.server)
    kept, dropped = _requests(h, 2)
    h.run()
    h.pair.server.send_stream_data(3, encode_varint_frame(FrameType.GOAWAY, dropped))
    h.run()
    (reset,) = h.events("client", StreamAborted)
    assert reset.stream_id == dropped and not reset.by_peer
    assert reset.error_code == H3ErrorCode.H3_REQUEST_REJECTED
    assert h.stream_codes("server", dropped) == {H3ErrorCode.H3_REQUEST_CANCELLED}
    assert list(h.client.streams) == [kept]


def test_two_step_shutdown() -> None:
    h = H3Pair()
    _requests(h, 2)
    h.run()
    assert h.server.send_goaway(MAX_REQUEST_STREAM_ID) == MAX_REQUEST_STREAM_ID
    (in_flight,) = _requests(h, 1)  # crosses the first GOAWAY: still accepted
    h.run()
    assert h.events("client", GoAwayReceived)[0].id == MAX_REQUEST_STREAM_ID
    assert h.events("server", HeadersReceived, in_flight)
    final = h.server.send_goaway()
    assert final == in_flight + 4
    h.run()
    assert [e.id for e in h.events("client", GoAwayReceived)] == [MAX_REQUEST_STREAM_ID, final]
    with pytest.raises(H3UsageError):
        h.server.send_goaway(MAX_REQUEST_STREAM_ID)  # ids never go up
    assert h.terminated("client") is None


def test_goaway_ids_must_not_abandon_accepted_requests() -> None:
    h = H3Pair()
    _requests(h, 3)
    h.run()
    with pytest.raises(H3UsageError):
        h.server.send_goaway(4)
    with pytest.raises(H3UsageError):
        h.server.send_goaway(h.server.max_request_stream_seen + 6)  # not a request stream id


def test_client_goaway() -> None:
    h = H3Pair()
    assert h.client.send_goaway() == 0  # no pushes promised: refuse all
    h.run()
    (goaway,) = h.events("server", GoAwayReceived)
    assert goaway.id == 0
    with pytest.raises(ConnectionGoingAway):
        h.client.open_request_stream()
