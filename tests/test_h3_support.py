"""Test helpers: two HTTP/3 connections over the in-memory QUIC pair (no tests here)."""

from __future__ import annotations

from typing import Any, TypeVar

import pylsqpack
from quic_pair import Pair, client_config, make_pair, server_config

from ghostwire.http3 import (
    DataReceived,
    H3Config,
    H3Connection,
    H3Event,
    Headers,
)
from ghostwire.http3.errors import describe_h3_error
from ghostwire.http3.frames import FrameType, StreamType, encode_frame, encode_settings
from ghostwire.quic.buffer import encode_varint
from ghostwire.quic.connection import QuicConnection
from ghostwire.quic.events import (
    ConnectionTerminated,
    Event,
    StopSendingReceived,
    StreamResetReceived,
)

E = TypeVar("E", bound=H3Event)
QE = TypeVar("QE", bound=Event)


def request_headers(path: str = "/", method: str = "GET", **extra: str) -> Headers:
    headers = [
        (b":method", method.encode()),
        (b":scheme", b"https"),
        (b":authority", b"localhost"),
        (b":path", path.encode()),
    ]
    headers += [(k.replace("_", "-").encode(), v.encode()) for k, v in extra.items()]
    return headers


def response_headers(status: int = 200, **extra: str) -> Headers:
    headers = [(b":status", str(status).encode())]
    headers += [(k.replace("_", "-").encode(), v.encode()) for k, v in extra.items()]
    return headers


class H3Pair:
    """A client and a server H3Connection over :class:`quic_pair.Pair`.

    ``run()`` moves datagrams and feeds every QUIC event to the HTTP/3
    layer until both sides are quiet. With ``auto_ack`` every DataReceived
    is acknowledged at once (no back-pressure); otherwise tests call
    ``ack()`` themselves.
    """

    def __init__(
        self,
        client: H3Config | None = None,
        server: H3Config | None = None,
        *,
        auto_ack: bool = True,
        quic_client: dict[str, Any] | None = None,
        quic_server: dict[str, Any] | None = None,
        raw_client: bool = False,
        raw_server: bool = False,
        start: bool = True,
    ) -> None:
        self.pair: Pair = make_pair(
            client_config(alpn=["h3"], **(quic_client or {})),
            server_config(alpn=["h3"], **(quic_server or {})),
        )
        self.client_h3 = None if raw_client else H3Connection(self.pair.client, client)
        self._server_config = server
        self._raw_server = raw_server
        self.server_h3: H3Connection | None = None
        self.auto_ack = auto_ack
        self.client_events: list[H3Event] = []
        self.server_events: list[H3Event] = []
        self.client_quic_events: list[Event] = []
        self.server_quic_events: list[Event] = []
        self._seen = {"client": 0, "server": 0}
        if start:
            self.run()

    @property
    def client(self) -> H3Connection:
        assert self.client_h3 is not None, "the client is raw QUIC in this test"
        return self.client_h3

    @property
    def server(self) -> H3Connection:
        assert self.server_h3 is not None, "the server connection does not exist yet"
        return self.server_h3

    @property
    def now(self) -> float:
        return self.pair.now

    def run(self, rounds: int = 200) -> None:
        for _ in range(rounds):
            self.pair.exchange()
            if self.server_h3 is None and self.pair.server is not None and not self._raw_server:
                self.server_h3 = H3Connection(self.pair.server, self._server_config)
            moved = self._feed("client") | self._feed("server")
            if not moved:
                return
        raise AssertionError("the connections never went quiet")

    def _feed(self, side: str) -> bool:
        quic_events = self.pair.client_events if side == "client" else self.pair.server_events
        h3 = self.client_h3 if side == "client" else self.server_h3
        sink = self.client_events if side == "client" else self.server_events
        raw = self.client_quic_events if side == "client" else self.server_quic_events
        start = self._seen[side]
        new = quic_events[start:]
        self._seen[side] = len(quic_events)
        for event in new:
            raw.append(event)
            if h3 is not None:
                self._deliver(h3, sink, h3.handle_event(event, self.now))
        return bool(new)

    def _deliver(self, h3: H3Connection, sink: list[H3Event], events: list[H3Event]) -> None:
        for event in events:
            sink.append(event)
            if self.auto_ack and isinstance(event, DataReceived) and event.data:
                more = h3.acknowledge_received_data(event.stream_id, len(event.data), self.now)
                self._deliver(h3, sink, more)

    def ack(self, side: str, stream_id: int, nbytes: int) -> list[H3Event]:
        h3 = self.client if side == "client" else self.server
        sink = self.client_events if side == "client" else self.server_events
        events = h3.acknowledge_received_data(stream_id, nbytes, self.now)
        sink.extend(events)
        return events

    def events(self, side: str, kind: type[E], stream_id: int | None = None) -> list[E]:
        sink = self.client_events if side == "client" else self.server_events
        return [
            e
            for e in sink
            if isinstance(e, kind)
            and (stream_id is None or getattr(e, "stream_id", None) == stream_id)
        ]

    def body(self, side: str, stream_id: int) -> bytes:
        return b"".join(e.data for e in self.events(side, DataReceived, stream_id))

    def quic_events(self, side: str, kind: type[QE]) -> list[QE]:
        raw = self.client_quic_events if side == "client" else self.server_quic_events
        return [e for e in raw if isinstance(e, kind)]

    def terminated(self, side: str) -> ConnectionTerminated | None:
        found = self.quic_events(side, ConnectionTerminated)
        return found[0] if found else None

    def assert_closed_by(self, side: str, code: int) -> None:
        """``side`` closed the connection with HTTP/3 ``code``; the other side saw it."""
        other = "server" if side == "client" else "client"
        mine, theirs = self.terminated(side), self.terminated(other)
        assert mine is not None and not mine.by_peer, f"{side} did not close"
        assert mine.error_code == code, describe_h3_error(mine.error_code)
        assert theirs is not None and theirs.by_peer
        assert theirs.is_application and theirs.error_code == code, (
            f"{describe_h3_error(theirs.error_code)}: {theirs.reason}"
        )

    def stream_codes(self, side: str, stream_id: int) -> set[int]:
        """Codes of RESET_STREAM / STOP_SENDING that ``side`` received for a stream."""
        raw = self.client_quic_events if side == "client" else self.server_quic_events
        return {
            e.error_code
            for e in raw
            if isinstance(e, StreamResetReceived | StopSendingReceived) and e.stream_id == stream_id
        }


# -- raw HTTP/3 bytes, for a peer that breaks the rules on purpose ---------------


def qpack_block(headers: Headers, stream_id: int = 0) -> bytes:
    """A field section using the static table and literals only."""
    return bytes(pylsqpack.Encoder().encode(stream_id, list(headers))[1])


def headers_frame(headers: Headers) -> bytes:
    return encode_frame(FrameType.HEADERS, qpack_block(headers))


def data_frame(data: bytes) -> bytes:
    return encode_frame(FrameType.DATA, data)


def settings_frame(settings: dict[int, int] | None = None) -> bytes:
    return encode_frame(FrameType.SETTINGS, encode_settings(settings or {}))


def open_uni(quic: QuicConnection, stream_type: int, data: bytes = b"", end: bool = False) -> int:
    stream_id = quic.open_stream(False)
    quic.send_stream_data(stream_id, encode_varint(stream_type) + data, end)
    return stream_id


def open_raw_h3(quic: QuicConnection, settings: dict[int, int] | None = None) -> dict[str, int]:
    """The three unidirectional streams a well-behaved peer opens, written by hand."""
    return {
        "control": open_uni(quic, StreamType.CONTROL, settings_frame(settings)),
        "encoder": open_uni(quic, StreamType.QPACK_ENCODER),
        "decoder": open_uni(quic, StreamType.QPACK_DECODER),
    }
