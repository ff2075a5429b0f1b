"""A packet number space's record of received packets stays bounded."""

from __future__ import annotations

from ghostwire.quic.packet_space import MAX_ACK_RANGES, MAX_RECEIVED_RANGES, PacketNumberSpace
from ghostwire.quic.recovery import Space


def test_gaps_after_every_packet_keep_a_bounded_record() -> None:
    # A peer may skip packet numbers (RFC 9000 §12.3 only asks them to
    # grow), and need never acknowledge our ACKs: one range per packet. The
    # oldest are forgotten past the bound and become the duplicate floor
    # (RFC 9000 §12.3), so every ACK costs at most MAX_ACK_RANGES.
    space = PacketNumberSpace(Space.APPLICATION)
    count = 10 * MAX_RECEIVED_RANGES
    for i in range(count):
        space.on_packet_received(2 * i, True, 0.0, 0.025)
        assert len(space.received) <= MAX_RECEIVED_RANGES
    newest = 2 * (count - 1)
    ranges = space.ack_ranges()
    assert len(ranges) == MAX_ACK_RANGES
    assert ranges[0] == (newest, newest)
    assert ranges == tuple((newest - 2 * i, newest - 2 * i) for i in range(MAX_ACK_RANGES))
    # Forgotten packet numbers are dropped as duplicates; the recent ones are known.
    assert space.is_duplicate(0) and space.is_duplicate(1)
    assert space.is_duplicate(newest) and not space.is_duplicate(newest - 1)
    assert not space.is_duplicate(newest + 1)


def test_in_order_packets_are_one_range() -> None:
    space = PacketNumberSpace(Space.APPLICATION)
    for pn in range(3 * MAX_RECEIVED_RANGES):
        space.on_packet_received(pn, True, 0.0, 0.025)
    assert space.ack_ranges() == ((0, 3 * MAX_RECEIVED_RANGES - 1),)
    assert space.duplicate_floor == -1
