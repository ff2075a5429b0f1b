"""CRYPTO stream reassembly (RFC 9000 §19.6, §7.5, §21.7)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ghostwire.quic.crypto_stream import MAX_GAPS, CryptoStream
from ghostwire.quic.errors import QuicProtocolError, TransportErrorCode


@st.composite
def fragmented(draw: st.DrawFn) -> tuple[bytes, list[tuple[int, bytes]]]:
    """A payload and frames covering it (overlapping, repeated), in any order."""
    payload = draw(st.binary(min_size=1, max_size=400))
    frames = []
    for _ in range(draw(st.integers(1, 40))):
        start = draw(st.integers(0, len(payload) - 1))
        stop = draw(st.integers(start + 1, len(payload)))
        frames.append((start, payload[start:stop]))
    # Make sure every byte is covered at least once.
    frames += [(i, payload[i : i + 50]) for i in range(0, len(payload), 50)]
    return payload, draw(st.permutations(frames))


@given(fragmented())
def test_any_order_delivers_the_bytes_once_in_order(
    case: tuple[bytes, list[tuple[int, bytes]]],
) -> None:
    payload, frames = case
    stream = CryptoStream()
    delivered = b"".join(stream.receive(offset, data) for offset, data in frames)
    assert delivered == payload
    assert stream.received_offset == len(payload)
    assert stream._recv_gaps is None  # nothing kept once the gaps closed


def test_data_too_far_ahead_is_crypto_buffer_exceeded() -> None:
    stream = CryptoStream(max_buffer=1000)
    assert stream.receive(990, b"x" * 10) == b""  # ends exactly at the limit
    with pytest.raises(QuicProtocolError) as caught:
        stream.receive(995, b"x" * 6)
    assert caught.value.error_code == TransportErrorCode.CRYPTO_BUFFER_EXCEEDED


def test_the_most_pieces_allowed_are_delivered_at_once_when_the_gap_closes() -> None:
    stream = CryptoStream()
    payload = bytes(range(256)) * (2 * MAX_GAPS // 256 + 1)
    for offset in range(2 * MAX_GAPS - 1, 0, -2):  # back to front, one byte each
        assert stream.receive(offset, payload[offset : offset + 1]) == b""
    assert stream._recv_gaps is not None and len(stream._recv_gaps.ranges) == MAX_GAPS
    with pytest.raises(QuicProtocolError) as caught:
        stream.receive(2 * MAX_GAPS + 1, b"x")  # one piece more
    assert caught.value.error_code == TransportErrorCode.CRYPTO_BUFFER_EXCEEDED


def test_filling_every_gap_hands_over_the_whole_run() -> None:
    stream = CryptoStream()
    payload = bytes(range(200))
    for offset in range(199, 0, -2):
        assert stream.receive(offset, payload[offset : offset + 1]) == b""
    delivered = b"".join(
        stream.receive(offset, payload[offset : offset + 1]) for offset in range(0, 200, 2)
    )
    assert delivered == payload
    assert stream._recv_gaps is None
