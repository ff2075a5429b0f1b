"""The bulk-transfer fast paths: STREAM bursts, STREAM parsing, UDP GSO/GRO."""

from __future__ import annotations

import errno
import socket
import sys

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from quic_pair import (
    CLIENT_ADDR,
    SERVER_ADDR,
    Pair,
    client_config,
    handshake,
    make_pair,
    server_config,
)

from ghostwire.quic.buffer import Reader
from ghostwire.quic.demux import Demux
from ghostwire.quic.errors import BufferReadError, FrameEncodingError
from ghostwire.quic.frame_writer import FrameWriter
from ghostwire.quic.frames import (
    AckFrame,
    StreamFrame,
    ack_fields_at,
    encode_frame,
    is_stream_frame_at,
    parse_frame,
    parse_stream_frame,
    parse_stream_frame_at,
)
from ghostwire.quic.net import gso
from ghostwire.quic.net.endpoint import Endpoint
from ghostwire.quic.recovery import Space

# -- STREAM bursts ---------------------------------------------------------------


def _pair_without_pmtud() -> Pair:
    """A pair whose datagrams stay at 1200 bytes and carry no PMTU probes."""
    return make_pair(client_config(pmtu_discovery=False), server_config(pmtu_discovery=False))


def _transfer(payload: bytes, monkeypatch: pytest.MonkeyPatch) -> tuple[list[int], int, bytes]:
    """Send ``payload`` client -> server: (datagram sizes, datagrams from bursts,
    what the server read)."""
    burst_datagrams = 0
    original = FrameWriter._stream_burst

    def counting(self: FrameWriter, now: float, limit: int, out: list[bytes]) -> None:
        nonlocal burst_datagrams
        before = len(out)
        original(self, now, limit, out)
        burst_datagrams += len(out) - before

    monkeypatch.setattr(FrameWriter, "_stream_burst", counting)
    pair = handshake(_pair_without_pmtud())
    client, server = pair.client, pair.server
    assert server is not None
    stream_id = client.open_stream()
    client.send_stream_data(stream_id, payload, end_stream=True)
    sizes: list[int] = []
    received = bytearray()
    for _ in range(10_000):
        out = client.datagrams_to_send(pair.now)
        for datagram, _addr in out:
            sizes.append(len(datagram))
            server.receive_datagram(datagram, CLIENT_ADDR, pair.now)
        received += server.read_stream(stream_id)
        if server.stream_at_eof(stream_id):
            break
        pair.now += 0.001
        for datagram, _addr in server.datagrams_to_send(pair.now):
            client.receive_datagram(datagram, SERVER_ADDR, pair.now)
        for conn in (client, server):
            timer = conn.get_timer()
            if timer is not None and timer <= pair.now:
                conn.handle_timer(pair.now)
    return sizes, burst_datagrams, bytes(received)


def test_bulk_data_goes_out_in_bursts_of_full_datagrams(monkeypatch: pytest.MonkeyPatch) -> None:
    payload = bytes(range(256)) * 1200
    sizes, burst_datagrams, received = _transfer(payload, monkeypatch)
    assert received == payload
    assert burst_datagrams > len(sizes) // 2
    # Every datagram but the last one carrying data is full (1200 bytes).
    assert sizes.count(1200) >= len(sizes) - 10


def test_burst_not_used_while_other_frames_are_due() -> None:
    pair = handshake(_pair_without_pmtud())
    client = pair.client
    stream_id = client.open_stream()
    client.send_stream_data(stream_id, b"x" * 50_000)
    writer = client.writer
    assert client.spaces[Space.APPLICATION].ack_needed  # the handshake left an ACK to send
    assert not writer._burst_allowed()
    assert writer.build_datagram(pair.now) is not None  # carries the ACK
    assert writer._burst_allowed()
    writer.ping_pending = True
    assert not writer._burst_allowed()


# -- STREAM parsing ----------------------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [
        StreamFrame(0, 0, b"hello", False),
        StreamFrame(4, 1 << 20, b"x" * 1000, True),
        StreamFrame(1 << 40, 7, b"", True),
    ],
)
def test_parse_stream_frame_matches_parse_frame(frame: StreamFrame) -> None:
    wire = encode_frame(frame)
    assert is_stream_frame_at(Reader(wire))
    fields = parse_stream_frame(Reader(wire))
    assert StreamFrame(*fields) == parse_frame(Reader(wire)) == frame


def test_parse_stream_frame_truncated_is_a_frame_encoding_error() -> None:
    wire = encode_frame(StreamFrame(4, 100, b"y" * 50, False))[:-10]
    with pytest.raises(FrameEncodingError) as caught:
        parse_stream_frame(Reader(wire))
    assert caught.value.frame_type == wire[0]


def _varint(value: int, size: int) -> bytes:
    """``value`` as a varint of ``size`` bytes (longer than needed is valid, RFC 9000 §16)."""
    minimal = 1 if value < 0x40 else 2 if value < 0x4000 else 4 if value < 1 << 30 else 8
    size = max(size, minimal)
    prefix = {1: 0, 2: 1, 4: 2, 8: 3}[size]
    return (value | (prefix << (8 * size - 2))).to_bytes(size, "big")


@given(
    st.integers(0, 7),
    st.integers(0, 2**62 - 1),
    st.integers(0, 2**62 - 1) | st.integers(2**62 - 100, 2**62 - 1),
    st.binary(max_size=80),
    st.sampled_from([1, 2, 4, 8]),
)
def test_parse_stream_frame_at_agrees_with_parse_frame(
    flags: int, stream_id: int, offset: int, data: bytes, size: int
) -> None:
    """Every flag combination, varint width, offset near 2^62 and truncation:
    the inline parser returns what parse_frame does or raises what it raises."""
    wire = bytes((0x08 | flags,)) + _varint(stream_id, size)
    if flags & 0x04:
        wire += _varint(offset, size)
    if flags & 0x02:
        wire += _varint(len(data), size)
    wire += data + b"\x01"  # a PING after it: the Length bounds the data
    for end in range(1, len(wire) + 1):  # (the caller saw the type byte)
        try:
            expected: object = parse_frame(Reader(wire, 0, end))
        except FrameEncodingError as exc:
            expected = ("error", exc.frame_type)
        try:
            sid, off, chunk, fin, _next = parse_stream_frame_at(wire, 0, end)
            got: object = StreamFrame(sid, off, chunk, fin)
        except FrameEncodingError as exc:
            got = ("error", exc.frame_type)
        assert got == expected


@given(
    st.integers(0, 2**62 - 1),
    st.integers(0, 2**62 - 1),
    st.lists(st.tuples(st.integers(0, 2**20), st.integers(0, 2**20)), max_size=4),
    st.integers(0, 2**20),
    st.sampled_from([1, 2, 4, 8]),
)
@example(5, 0, [], 6, 1)  # the first range one below packet number 0
@example(5, 0, [], 5, 2)  # down to packet number 0 exactly
@example(10, 0, [(0, 9)], 0, 1)  # the second range one below 0
@example(10, 0, [(0, 8)], 0, 4)  # down to 0 exactly
def test_ack_fields_at_agrees_with_a_plain_reading(
    largest: int, delay: int, gaps: list[tuple[int, int]], first: int, size: int
) -> None:
    """ACK ranges below 0, counts larger than the frame, every varint width and
    truncation: the inline ACK parser (parse_frame's too) agrees with a plain
    reading of RFC 9000 §19.3."""
    wire = b"\x02" + _varint(largest, size) + _varint(delay, size)
    wire += _varint(len(gaps), size) + _varint(first, size)
    for gap, length in gaps:
        wire += _varint(gap, size) + _varint(length, size)
    wire += b"\x01"
    for end in range(1, len(wire) + 1):
        expected = _reference_ack(wire, end)
        try:
            ranges, ack_delay, _next = ack_fields_at(wire, 1, end)
            got: object = AckFrame(ranges, ack_delay)
        except FrameEncodingError:
            got = "error"
        assert got == expected
    if expected == "error":
        with pytest.raises(FrameEncodingError):
            parse_frame(Reader(wire))
    else:
        assert parse_frame(Reader(wire)) == expected


def _reference_ack(wire: bytes, end: int) -> object:
    """RFC 9000 §19.3 read plainly with a Reader: an AckFrame or "error"."""
    reader = Reader(wire, 1, end)
    try:
        largest, delay, count, first = (reader.pull_varint() for _ in range(4))
        ranges = [(largest - first, largest)]
        for _ in range(count):
            gap, length = reader.pull_varint(), reader.pull_varint()
            top = ranges[-1][0] - gap - 2
            ranges.append((top - length, top))
    except BufferReadError:
        return "error"
    if min(bottom for bottom, _top in ranges) < 0:
        return "error"
    return AckFrame(tuple(ranges), delay)


def test_an_ack_range_count_beyond_the_frame_is_an_encoding_error() -> None:
    with pytest.raises(FrameEncodingError):
        ack_fields_at(b"\x02\x05\x00\x3f\x00", 1, 5)


def test_non_stream_frames_are_not_taken_for_stream_frames() -> None:
    assert not is_stream_frame_at(Reader(b"\x01"))  # PING
    assert not is_stream_frame_at(Reader(b"\x40\x08"))  # type 8 in two bytes


# -- UDP GSO / GRO -----------------------------------------------------------------


def test_run_length_groups_same_size_datagrams_to_one_address() -> None:
    a, b = ("127.0.0.1", 1), ("127.0.0.1", 2)
    full, short = b"x" * 1200, b"y" * 300
    assert gso.run_length([(full, a)] * 5, 0) == 5
    assert gso.run_length([(full, a), (full, a), (short, a), (full, a)], 0) == 3
    assert gso.run_length([(full, a), (full, b)], 0) == 1
    assert gso.run_length([(short, a), (full, a)], 0) == 1  # only the last may be shorter
    assert gso.run_length([(full, a)] * 200, 0) == gso.MAX_GSO_BYTES // 1200
    assert gso.run_length([(b"z" * 100, a)] * 200, 0) == gso.MAX_SEGMENTS


@pytest.mark.skipif(not gso.GSO_AVAILABLE, reason="UDP GSO is Linux-only")
@pytest.mark.parametrize("gro", [False, True])
def test_gso_send_arrives_as_separate_datagrams(gro: bool) -> None:
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver,
    ):
        receiver.bind(("127.0.0.1", 0))
        receiver.settimeout(2)
        gro_on = gro and gso.enable_gro(receiver)
        addr = receiver.getsockname()
        datagrams = [(bytes([i]) * 1200, addr) for i in range(7)] + [(b"tail", addr)]
        try:
            gso.send_segments(sender, datagrams, 0, len(datagrams))
        except gso.GsoUnsupported:
            pytest.skip("this kernel has no UDP GSO")
        buffer = bytearray(65536)
        got: list[bytes] = []
        while len(got) < len(datagrams):
            size, segment, _ = gso.receive(receiver, buffer, gro_on)
            step = segment or size
            got.extend(bytes(buffer[i : min(i + step, size)]) for i in range(0, size, step))
        assert got == [data for data, _ in datagrams]


def test_gso_is_reported_unavailable_off_linux() -> None:
    assert (sys.platform == "linux") == gso.GSO_AVAILABLE


# -- routing ------------------------------------------------------------------------


def test_existing_connection_routes_only_known_short_header_datagrams() -> None:
    pair = handshake(make_pair())
    demux = Demux(None, cid_length=8)
    cid = b"\x11" * 8
    demux.add_route(cid, pair.client)
    short = bytes([0x40]) + cid + bytes(30)
    assert demux.existing_connection(short) is pair.client
    assert demux.receive(short, CLIENT_ADDR, 0.0).connection is pair.client  # the same answer
    assert demux.existing_connection(bytes([0x40]) + b"\x22" * 8 + bytes(30)) is None
    assert demux.existing_connection(bytes([0xC0]) + bytes(40)) is None  # long header
    assert demux.existing_connection(b"") is None


class _NoGsoSocket:
    """A socket whose kernel refuses UDP_SEGMENT (as an old kernel would)."""

    def __init__(self) -> None:
        self.sendmsg_calls = 0
        self.sent: list[tuple[bytes, object]] = []

    def setsockopt(self, *args: object) -> None:
        raise OSError(errno.ENOPROTOOPT, "no GRO")

    def sendmsg(self, *args: object) -> int:
        self.sendmsg_calls += 1
        raise OSError(errno.EINVAL, "no GSO")

    def sendto(self, data: bytes, addr: object) -> int:
        self.sent.append((data, addr))
        return len(data)


def test_endpoint_falls_back_to_sendto_once_gso_fails() -> None:
    sock = _NoGsoSocket()
    endpoint = Endpoint(sock, Demux(None, cid_length=8), None)  # type: ignore[arg-type]
    addr = ("127.0.0.1", 9)
    datagrams = [(bytes([i]) * 1200, addr) for i in range(5)]
    endpoint.send_datagrams(datagrams)
    endpoint.send_datagrams(datagrams)
    assert sock.sent == datagrams + datagrams  # nothing lost, order kept
    assert sock.sendmsg_calls == (1 if gso.GSO_AVAILABLE else 0)  # tried once per socket
