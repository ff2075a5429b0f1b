"""Server push (RFC 9114 §4.6): off by default, on when the client allows it."""

from __future__ import annotations

import pytest
from test_h3_support import H3Pair, request_headers, response_headers

from ghostwire.http3 import (
    DataReceived,
    H3Config,
    H3ErrorCode,
    HeadersReceived,
    InvalidHeaders,
    PushCancelled,
    PushNotAllowed,
    PushPromiseReceived,
    StreamAborted,
)


def _get(h: H3Pair, path: str = "/") -> int:
    sid = h.client.open_request_stream()
    h.client.send_headers(sid, request_headers(path), end_stream=True)
    h.run()
    return sid


def test_push_is_off_by_default() -> None:
    h = H3Pair()
    sid = _get(h)
    with pytest.raises(PushNotAllowed):
        h.server.send_push_promise(sid, request_headers("/style.css"))


def test_push_round_trip() -> None:
    h = H3Pair(client=H3Config(max_push_id=8))
    sid = _get(h, "/index.html")
    push_stream = h.server.send_push_promise(sid, request_headers("/style.css"))
    h.server.send_headers(sid, response_headers(200))
    h.server.send_data(sid, b"<html>", end_stream=True)
    h.server.send_headers(push_stream, response_headers(200, content_type="text/css"))
    h.server.send_data(push_stream, b"body {}", end_stream=True)
    h.run()

    (promise,) = h.events("client", PushPromiseReceived)
    assert promise.stream_id == sid and promise.push_id == 0
    assert dict(promise.headers)[b":path"] == b"/style.css"
    pushed = [e for e in h.events("client", HeadersReceived) if e.push_id == 0]
    assert len(pushed) == 1 and pushed[0].stream_id == push_stream
    assert dict(pushed[0].headers)[b"content-type"] == b"text/css"
    data = [e for e in h.events("client", DataReceived) if e.push_id == 0]
    assert b"".join(e.data for e in data) == b"body {}" and data[-1].stream_ended
    assert h.body("client", sid) == b"<html>"
    assert h.client.open_stream_count == 0 and h.server.open_stream_count == 0


def test_push_ids_run_out_at_max_push_id() -> None:
    h = H3Pair(client=H3Config(max_push_id=1))
    sid = _get(h)
    h.server.send_push_promise(sid, request_headers("/a"))
    h.server.send_push_promise(sid, request_headers("/b"))
    with pytest.raises(PushNotAllowed):
        h.server.send_push_promise(sid, request_headers("/c"))
    h.client.send_max_push_id(2)
    h.run()
    h.server.send_push_promise(sid, request_headers("/c"))
    h.run()
    assert [e.push_id for e in h.events("client", PushPromiseReceived)] == [0, 1, 2]


def test_client_cancels_a_push() -> None:
    h = H3Pair(client=H3Config(max_push_id=4))
    sid = _get(h)
    push_stream = h.server.send_push_promise(sid, request_headers("/big"))
    h.server.send_headers(push_stream, response_headers(200))
    h.server.send_data(push_stream, b"x" * 1000)
    h.run()
    (promise,) = h.events("client", PushPromiseReceived)
    h.client.cancel_push(promise.push_id)
    h.run()
    (cancelled,) = h.events("server", PushCancelled)
    assert cancelled.push_id == promise.push_id
    assert push_stream not in h.server.streams
    assert h.terminated("client") is None and h.terminated("server") is None


def test_server_cancels_a_push() -> None:
    h = H3Pair(client=H3Config(max_push_id=4))
    sid = _get(h)
    push_stream = h.server.send_push_promise(sid, request_headers("/gone"))
    h.server.cancel_push(0)
    h.run()
    (cancelled,) = h.events("client", PushCancelled)
    assert cancelled.push_id == 0
    assert h.stream_codes("client", push_stream) == {H3ErrorCode.H3_REQUEST_CANCELLED}
    assert push_stream not in h.client.streams
    assert not h.events("client", StreamAborted)  # never announced: nothing to tell
    assert h.terminated("client") is None


def test_only_safe_cacheable_requests_are_pushed() -> None:
    h = H3Pair(client=H3Config(max_push_id=4))
    sid = _get(h)
    with pytest.raises(InvalidHeaders):
        h.server.send_push_promise(sid, request_headers("/form", "POST"))


def test_pushed_response_stream_reset() -> None:
    h = H3Pair(client=H3Config(max_push_id=4))
    sid = _get(h)
    push_stream = h.server.send_push_promise(sid, request_headers("/x"))
    h.server.send_headers(push_stream, response_headers(200))
    h.run()
    h.server.cancel_request(push_stream)
    h.run()
    (reset,) = h.events("client", StreamAborted)
    assert reset.stream_id == push_stream and reset.push_id == 0 and reset.by_peer
