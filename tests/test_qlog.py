"""qlog: one JSON-SEQ trace per connection, named by its original destination CID.

Over loopback: a server and clients writing qlog, with junk datagrams that
never become connections; then the traces' names, count and contents (what
qvis needs to draw: packets with frames, recovery metrics, stream and
connection states). Over the sans-IO pair with losses: recovery:packet_lost.
"""

from __future__ import annotations

import io
import json
import os
from functools import partial
from pathlib import Path
from typing import Any

import trio
from quic_pair import client_config, make_pair, server_config

import ghostwire.quic as quic
from ghostwire.quic.connection import QuicConnection
from ghostwire.quic.packet import PacketType
from ghostwire.quic.qlog import QlogSink, trace_name
from ghostwire.quic.tls import MemoryTicketStore

CONNECTIONS = 3


def _records(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    assert text.startswith("\x1e")
    return [json.loads(chunk) for chunk in text.split("\x1e") if chunk.strip()]


def _initial_that_never_decrypts() -> bytes:
    """A long-header v1 Initial a server would accept as a new connection's first
    datagram, but whose payload is noise: it can never be decrypted."""
    dcid, scid = os.urandom(8), os.urandom(8)
    header = b"\xc3" + (1).to_bytes(4, "big") + b"\x08" + dcid + b"\x08" + scid + b"\x00"
    length = 1200 - len(header) - 2
    return header + (0x4000 | length).to_bytes(2, "big") + os.urandom(length)


async def _echo(conn: quic.Connection) -> None:
    async with trio.open_nursery() as nursery:
        async for stream in conn:
            nursery.start_soon(_echo_stream, stream)


async def _echo_stream(stream: Any) -> None:
    async with stream:
        while data := await stream.receive_some():
            await stream.send_all(data)


async def _run(server_dir: Path, client_dir: Path) -> list[bytes]:
    odcids = []
    config = server_config(qlog_dir=server_dir)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(partial(quic.serve, host="127.0.0.1"), _echo, 0, config)
            junk = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
            with junk:
                for datagram in (_initial_that_never_decrypts(), os.urandom(1300), b"\x40abc"):
                    await junk.sendto(datagram, ("127.0.0.1", server.port))
            for _ in range(CONNECTIONS):
                async with quic.connect(
                    "127.0.0.1", server.port, client_config(qlog_dir=client_dir)
                ) as conn:
                    odcids.append(conn._core.original_dcid)
                    for size in (10, 50_000):
                        stream = await conn.open_stream()
                        await stream.send_all(b"q" * size)
                        await stream.send_eof()
                        received = b""
                        while chunk := await stream.receive_some():
                            received += chunk
                        assert len(received) == size
            nursery.cancel_scope.cancel()
    return odcids


async def test_one_trace_per_connection_named_by_odcid(tmp_path: Path) -> None:
    server_dir, client_dir = tmp_path / "server", tmp_path / "client"
    odcids = await _run(server_dir, client_dir)
    assert len(set(odcids)) == CONNECTIONS
    # Exactly one file per connection on each side; none for the junk.
    assert sorted(p.name for p in server_dir.iterdir()) == sorted(
        trace_name(odcid, "server") for odcid in odcids
    )
    assert sorted(p.name for p in client_dir.iterdir()) == sorted(
        trace_name(odcid, "client") for odcid in odcids
    )
    for odcid in odcids:
        for side, folder in (("server", server_dir), ("client", client_dir)):
            _check_trace(_records(folder / trace_name(odcid, side)), odcid, side)


def _check_trace(records: list[dict[str, Any]], odcid: bytes, side: str) -> None:
    header, events = records[0], records[1:]
    assert header["qlog_version"] == "0.3" and header["qlog_format"] == "JSON-SEQ"
    assert header["trace"]["vantage_point"]["type"] == side
    assert header["trace"]["common_fields"]["ODCID"] == odcid.hex()
    times = [e["time"] for e in events]
    assert times == sorted(times) and times[0] >= 0
    by_name: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        by_name.setdefault(event["name"], []).append(event["data"])

    sent, received = by_name["transport:packet_sent"], by_name["transport:packet_received"]
    assert {p["header"]["packet_type"] for p in sent} >= {"initial", "handshake", "1RTT"}
    sent_frames = {f["frame_type"] for p in sent for f in p["frames"]}
    received_frames = {f["frame_type"] for p in received for f in p["frames"]}
    assert {"crypto", "stream", "ack"} <= sent_frames
    assert {"crypto", "stream", "ack"} <= received_frames
    stream_bytes = sum(
        f["length"] for p in received for f in p["frames"] if f["frame_type"] == "stream"
    )
    assert stream_bytes >= 50_010  # every byte of the echo, in one direction
    assert all(p["raw"]["length"] > 0 for p in sent + received)

    metrics = by_name["recovery:metrics_updated"]
    assert any("smoothed_rtt" in m for m in metrics)
    assert any("congestion_window" in m for m in metrics)
    assert any("bytes_in_flight" in m for m in metrics)

    streams = by_name["transport:stream_state_updated"]
    assert {s["stream_id"] for s in streams} == {0, 4}
    assert {s["new"] for s in streams} >= {"open", "closed"}

    states = [s["new"] for s in by_name["connectivity:connection_state_updated"]]
    assert "handshake_complete" in states and "handshake_confirmed" in states
    # The client closed: it sends CONNECTION_CLOSE and the server drains. (The
    # endpoints stop before the closing periods end, which closes the files.)
    assert states[-1] in ("closing", "draining", "closed")
    assert by_name["connectivity:connection_closed"][0]["owner"] == (
        "local" if side == "client" else "remote"
    )


class _MemoryTrace(io.StringIO):
    closed_at_end = False

    def close(self) -> None:
        self.closed_at_end = True  # keep the text readable


def _sink(traces: dict[str, _MemoryTrace], side: str) -> QlogSink:
    def open_trace(name: str) -> _MemoryTrace:
        traces[name] = _MemoryTrace()
        return traces[name]

    return QlogSink(open_trace, vantage_point=side, start_time=0.0)


def test_losses_and_rtt_reach_the_trace() -> None:
    traces: dict[str, _MemoryTrace] = {}
    client = QuicConnection(
        client_config(), peer_address=("127.0.0.1", 4433), now=0.0, server_name="localhost",
        qlog=_sink(traces, "client"),
    )  # fmt: skip
    client.connect(0.0)
    pair = make_pair()
    pair.client = client
    pair.exchange()
    assert client.handshake_complete
    stream_id = client.open_stream()
    client.send_stream_data(stream_id, b"x" * 30_000, end_stream=True)
    dropped = 0

    def drop_some(datagram: bytes) -> bool:
        nonlocal dropped
        dropped += 1
        return dropped % 3 == 0

    pair.drop_to_server = drop_some
    pair.advance(0.01)
    pair.drop_to_server = None
    pair.advance(5.0)
    [name] = traces
    assert name == trace_name(client.original_dcid, "client")
    records = [json.loads(r) for r in traces[name].getvalue().split("\x1e") if r.strip()]
    names = [r.get("name") for r in records[1:]]
    assert "recovery:packet_lost" in names
    lost = [r["data"] for r in records if r.get("name") == "recovery:packet_lost"]
    assert all(d["header"]["packet_type"] == "1RTT" for d in lost)


def test_a_connection_that_never_decrypts_a_packet_opens_no_trace() -> None:
    traces: dict[str, _MemoryTrace] = {}
    conn = QuicConnection(
        server_config(),
        peer_address=("127.0.0.1", 5555),
        now=0.0,
        original_dcid=os.urandom(8),
        client_scid=os.urandom(8),
        qlog=_sink(traces, "server"),
    )
    conn.receive_datagram(_initial_that_never_decrypts(), ("127.0.0.1", 5555), 0.0)
    assert conn.datagrams_to_send(0.0) == []
    conn.handle_timer(100.0)  # the handshake timeout ends it
    conn.datagrams_to_send(100.0)
    conn.handle_timer(200.0)
    assert conn.is_terminated
    assert traces == {}


def test_received_frames_are_decoded() -> None:
    traces: dict[str, _MemoryTrace] = {}
    sink = _sink(traces, "client")
    pair = make_pair()
    sink.bind(pair.client, 0.0)
    sink.packet_received(PacketType.ONE_RTT, 7, 100, 0.5, bytes([0x01, 0x00, 0x00]))
    records = [json.loads(r) for r in next(iter(traces.values())).getvalue().split("\x1e") if r]
    event = records[-1]
    assert event["name"] == "transport:packet_received"
    assert event["data"]["frames"] == [
        {"frame_type": "ping"},
        {"frame_type": "padding", "length": 2, "payload_length": 2},
    ]


def test_a_clients_0rtt_packets_are_logged_as_0rtt() -> None:
    store = MemoryTicketStore()
    client, server = (
        client_config(session_tickets=store, early_data=True),
        server_config(early_data=True),
    )
    first = make_pair(client, server)
    first.exchange()
    first.advance(0.1)  # the session ticket
    assert len(store) == 1
    traces: dict[str, _MemoryTrace] = {}
    conn = QuicConnection(
        client, peer_address=("127.0.0.1", 4433), now=0.0, server_name="localhost",
        qlog=_sink(traces, "client"),
    )  # fmt: skip
    conn.connect(0.0)
    assert conn.zero_rtt_send_keys is not None
    stream_id = conn.open_stream()
    conn.send_stream_data(stream_id, b"early request", end_stream=True)
    pair = make_pair(client, server)
    pair.client = conn
    pair.exchange()
    pair.advance(0.1)
    assert conn.early_data_accepted
    [trace] = traces.values()
    records = [json.loads(r) for r in trace.getvalue().split("\x1e") if r.strip()]
    sent = [r["data"] for r in records if r.get("name") == "transport:packet_sent"]
    early = [d for d in sent if d["header"]["packet_type"] == "0RTT"]
    assert early and all(
        any(f["frame_type"] == "stream" for f in d["frames"]) for d in early
    )  # the early request went out in 0-RTT
    assert any(d["header"]["packet_type"] == "1RTT" for d in sent)  # and 1-RTT after
