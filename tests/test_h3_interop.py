"""HTTP/3 interoperability with aioquic's independent sans-IO H3Connection.

aioquic is a test peer only. Our QuicConnection + H3Connection talk to an
aioquic QuicConnection + aioquic.h3 H3Connection through an in-memory link
with a fake clock (aioquic paces its sends, so time moves a millisecond per
round and both sides' timers fire). GET and POST run in both directions,
with bodies large enough for flow control, repeated headers for QPACK's
dynamic table (lsqpack on both sides), trailers, and server push.
"""

from __future__ import annotations

from typing import Any

import pytest
from quic_pair import (
    CLIENT_ADDR,
    SERVER_ADDR,
    client_config,
    server_config,
    server_identity,
    test_ca,
)
from test_h3_support import request_headers, response_headers

from ghostwire.http3 import (
    DataReceived,
    H3Config,
    H3Connection,
    H3Event,
    HeadersReceived,
    PushPromiseReceived,
    TrailersReceived,
)
from ghostwire.quic.connection import QuicConnection
from ghostwire.quic.packet import parse_header

aq_config = pytest.importorskip("aioquic.quic.configuration")
aq_conn = pytest.importorskip("aioquic.quic.connection")
aq_h3 = pytest.importorskip("aioquic.h3.connection")
aq_events = pytest.importorskip("aioquic.h3.events")

pytestmark = pytest.mark.interop


class Link:
    """Ours on one end, aioquic on the other, datagrams moved in memory."""

    def __init__(self, ours_is_client: bool, config: H3Config | None = None) -> None:
        self.now = 0.0
        self.ours_is_client = ours_is_client
        self._config = config
        self.our_events: list[H3Event] = []
        self.their_events: list[Any] = []
        self.ours: QuicConnection | None = None
        self.h3: H3Connection | None = None
        self.theirs: Any = None
        self.their_h3: Any = None
        if ours_is_client:
            self.ours = QuicConnection(
                client_config(alpn=["h3"]),
                peer_address=SERVER_ADDR,
                now=0.0,
                server_name="localhost",
            )
            self.ours.connect(0.0)
            self.h3 = H3Connection(self.ours, config)
        else:
            configuration = aq_config.QuicConfiguration(
                is_client=True, alpn_protocols=["h3"], server_name="localhost"
            )
            configuration.cadata = test_ca().cert_pem()
            self.theirs = aq_conn.QuicConnection(configuration=configuration)
            self.theirs.connect(SERVER_ADDR, now=0.0)
            self.their_h3 = aq_h3.H3Connection(self.theirs)
        self.run()

    @property
    def our_h3(self) -> H3Connection:
        assert self.h3 is not None
        return self.h3

    def _accept(self, datagram: bytes) -> None:
        header = parse_header(datagram, 0, 8)
        if self.ours_is_client:
            identity = server_identity()
            configuration = aq_config.QuicConfiguration(is_client=False, alpn_protocols=["h3"])
            configuration.certificate = identity.certificate
            configuration.certificate_chain = identity.chain[1:]
            configuration.private_key = identity.private_key
            self.theirs = aq_conn.QuicConnection(
                configuration=configuration, original_destination_connection_id=header.dcid
            )
            self.their_h3 = aq_h3.H3Connection(self.theirs)
        else:
            self.ours = QuicConnection(
                server_config(alpn=["h3"]),
                peer_address=CLIENT_ADDR,
                now=self.now,
                original_dcid=header.dcid,
                client_scid=header.scid,
            )
            self.h3 = H3Connection(self.ours, self._config)

    def _step(self) -> bool:
        self.now += 0.001
        for conn in (self.ours, self.theirs):
            if conn is not None and (timer := conn.get_timer()) is not None and timer <= self.now:
                conn.handle_timer(self.now)
        moved = False
        our_addr, their_addr = (
            (CLIENT_ADDR, SERVER_ADDR) if self.ours_is_client else (SERVER_ADDR, CLIENT_ADDR)
        )
        if self.theirs is not None:
            for datagram, _ in self.theirs.datagrams_to_send(now=self.now):
                moved = True
                if self.ours is None:
                    self._accept(datagram)
                assert self.ours is not None
                self.ours.receive_datagram(datagram, their_addr, self.now)
        if self.ours is not None:
            for datagram, _ in self.ours.datagrams_to_send(self.now):
                moved = True
                if self.theirs is None:
                    self._accept(datagram)
                self.theirs.receive_datagram(datagram, our_addr, now=self.now)
        if self.ours is not None and self.h3 is not None:
            while (event := self.ours.next_event()) is not None:
                moved = True
                for h3_event in self.h3.handle_event(event, self.now):
                    self.our_events.append(h3_event)
                    if isinstance(h3_event, DataReceived) and h3_event.data:
                        self.our_events += self.h3.acknowledge_received_data(
                            h3_event.stream_id, len(h3_event.data), self.now
                        )
        if self.theirs is not None:
            while (event := self.theirs.next_event()) is not None:
                moved = True
                self.their_events += self.their_h3.handle_event(event)
        return moved

    def run(self, rounds: int = 3000) -> None:
        idle = 0
        for _ in range(rounds):
            idle = 0 if self._step() else idle + 1
            if idle > 30:
                return
        raise AssertionError("the link never went quiet")

    def our_body(self, stream_id: int) -> bytes:
        return b"".join(
            e.data
            for e in self.our_events
            if isinstance(e, DataReceived) and e.stream_id == stream_id
        )

    def their_body(self, stream_id: int) -> bytes:
        return b"".join(
            e.data
            for e in self.their_events
            if isinstance(e, aq_events.DataReceived) and e.stream_id == stream_id
        )

    def their(self, kind: type, stream_id: int | None = None) -> list[Any]:
        return [
            e
            for e in self.their_events
            if isinstance(e, kind)
            and (stream_id is None or getattr(e, "stream_id", None) == stream_id)
        ]

    def our(self, kind: type, stream_id: int | None = None) -> list[Any]:
        return [
            e
            for e in self.our_events
            if isinstance(e, kind)
            and (stream_id is None or getattr(e, "stream_id", None) == stream_id)
        ]

    def assert_open(self) -> None:
        assert self.ours is not None and not self.ours.is_closed
        assert self.theirs is not None and self.theirs._close_event is None


EXTRA = [(f"x-interop-{i}".encode(), (f"value {i} " * 6).strip().encode()) for i in range(12)]


def test_our_client_gets_from_aioquic() -> None:
    link = Link(ours_is_client=True)
    h3 = link.our_h3
    for round_ in range(3):  # repeated fields: QPACK dynamic table both ways
        sid = h3.open_request_stream()
        h3.send_headers(sid, request_headers(f"/get/{round_}") + EXTRA, end_stream=True)
        link.run()
        (request,) = link.their(aq_events.HeadersReceived, sid)
        assert request.headers == request_headers(f"/get/{round_}") + EXTRA
        assert request.stream_ended
        body = bytes(range(256)) * 400  # 100 KiB
        link.their_h3.send_headers(sid, response_headers(200) + EXTRA)
        link.their_h3.send_data(sid, body, end_stream=True)
        link.run()
        (response,) = link.our(HeadersReceived, sid)
        assert response.headers == response_headers(200) + EXTRA
        assert link.our_body(sid) == body
        assert link.our(DataReceived, sid)[-1].stream_ended
    assert h3.encoder.encoder_bytes > 0
    link.assert_open()


def test_our_client_posts_to_aioquic_with_trailers() -> None:
    link = Link(ours_is_client=True)
    h3 = link.our_h3
    sid = h3.open_request_stream()
    upload = b"u" * 70_000
    h3.send_headers(sid, request_headers("/upload", "POST", content_length=str(len(upload))))
    h3.send_data(sid, upload[:1000])
    h3.send_data(sid, upload[1000:])
    h3.send_trailers(sid, [(b"x-sum", b"42")])
    link.run()
    assert link.their_body(sid) == upload
    trailer_events = link.their(aq_events.HeadersReceived, sid)
    assert trailer_events[-1].headers == [(b"x-sum", b"42")] and trailer_events[-1].stream_ended
    link.their_h3.send_headers(sid, response_headers(201))
    link.their_h3.send_headers(sid, [(b"x-done", b"yes")], end_stream=True)
    link.run()
    assert link.our(HeadersReceived, sid)[0].headers == response_headers(201)
    (trailers,) = link.our(TrailersReceived, sid)
    assert trailers.headers == [(b"x-done", b"yes")] and trailers.stream_ended
    link.assert_open()


def test_aioquic_client_gets_and_posts_to_our_server() -> None:
    link = Link(ours_is_client=False)
    client = link.their_h3
    get = link.theirs.get_next_available_stream_id()
    client.send_headers(get, request_headers("/hello") + EXTRA, end_stream=True)
    post = link.theirs.get_next_available_stream_id()
    client.send_headers(post, request_headers("/echo", "POST") + EXTRA)
    client.send_data(post, b"p" * 50_000, end_stream=True)
    link.run()
    server = link.our_h3
    requests = {e.stream_id: e for e in link.our(HeadersReceived)}
    assert set(requests) == {get, post}
    assert requests[get].headers == request_headers("/hello") + EXTRA and requests[get].stream_ended
    assert link.our_body(post) == b"p" * 50_000

    server.send_headers(get, response_headers(200) + EXTRA)
    server.send_data(get, b"hello from ghostwire", end_stream=True)
    server.send_headers(post, response_headers(200) + EXTRA)
    server.send_data(post, link.our_body(post)[::-1])
    server.send_trailers(post, [(b"x-len", b"50000")])
    link.run()
    assert link.their_body(get) == b"hello from ghostwire"
    assert link.their_body(post) == b"p" * 50_000
    responses = link.their(aq_events.HeadersReceived, post)
    assert responses[0].headers == response_headers(200) + EXTRA
    assert responses[-1].headers == [(b"x-len", b"50000")] and responses[-1].stream_ended
    assert server.encoder.encoder_bytes > 0
    link.assert_open()


def test_our_server_pushes_to_aioquic() -> None:
    # aioquic clients send MAX_PUSH_ID 8 at start.
    link = Link(ours_is_client=False)
    sid = link.theirs.get_next_available_stream_id()
    link.their_h3.send_headers(sid, request_headers("/page"), end_stream=True)
    link.run()
    server = link.our_h3
    push_stream = server.send_push_promise(sid, request_headers("/app.js"))
    server.send_headers(sid, response_headers(200))
    server.send_data(sid, b"<script src=app.js>", end_stream=True)
    server.send_headers(push_stream, response_headers(200))
    server.send_data(push_stream, b"console.log(1)", end_stream=True)
    link.run()
    (promise,) = link.their(aq_events.PushPromiseReceived)
    assert promise.push_id == 0 and dict(promise.headers)[b":path"] == b"/app.js"
    pushed = [e for e in link.their(aq_events.DataReceived) if e.push_id == 0]
    assert b"".join(e.data for e in pushed) == b"console.log(1)"
    link.assert_open()


def test_aioquic_server_pushes_to_our_client() -> None:
    link = Link(ours_is_client=True, config=H3Config(max_push_id=4))
    h3 = link.our_h3
    sid = h3.open_request_stream()
    h3.send_headers(sid, request_headers("/page"), end_stream=True)
    link.run()
    push_stream = link.their_h3.send_push_promise(sid, request_headers("/style.css"))
    link.their_h3.send_headers(sid, response_headers(200), end_stream=True)
    link.their_h3.send_headers(push_stream, response_headers(200))
    link.their_h3.send_data(push_stream, b"p {}", end_stream=True)
    link.run()
    (promise,) = link.our(PushPromiseReceived)
    assert promise.stream_id == sid and promise.push_id == 0
    assert link.our_body(push_stream) == b"p {}"
    assert [e.push_id for e in link.our(HeadersReceived, push_stream)] == [0]
    link.assert_open()
