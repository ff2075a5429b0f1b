"""ACK frames on the send side (RFC 9000 §13.2, §19.3).

:func:`write_ack` appends an ACK frame to the open packet when one is needed;
:func:`settle_ack` decides, once the packet is filled, whether it stays.
"""

from __future__ import annotations

from .buffer import encode_varint, varint_size
from .packet_builder import PacketBuilder
from .packet_space import PacketNumberSpace
from .transport_setup import ACK_DELAY_EXPONENT

# Room an ACK frame with a few ranges needs; smaller packets skip the ACK.
_ACK_FRAME_MIN = 8


def write_ack_frame(
    payload: bytearray, room: int, ranges: tuple[tuple[int, int], ...], delay: int
) -> int | None:
    """Append an ACK frame with as many ranges as fit in ``room``.

    Returns the largest packet number acknowledged, or None if nothing fit.
    """
    largest = ranges[0][1]
    if len(ranges) == 1:  # the usual case: no gap
        single = (
            b"\x02"
            + encode_varint(largest)
            + encode_varint(delay)
            + b"\x00"
            + encode_varint(largest - ranges[0][0])
        )
        if len(single) > room:
            return None
        payload += single
        return largest
    head = bytearray(b"\x02")
    head += encode_varint(largest)
    head += encode_varint(delay)
    body = bytearray(encode_varint(largest - ranges[0][0]))
    count = 0
    previous_smallest = ranges[0][0]
    for smallest, top in ranges[1:]:
        entry = encode_varint(previous_smallest - top - 2) + encode_varint(top - smallest)
        if len(head) + varint_size(count + 1) + len(body) + len(entry) > room:
            break
        body += entry
        count += 1
        previous_smallest = smallest
    frame = head + encode_varint(count) + body
    if len(frame) > room:
        return None
    payload += frame
    return largest


def write_ack(
    builder: PacketBuilder, space: PacketNumberSpace, now: float
) -> tuple[int, int, int] | None:
    """Append an ACK frame if one is needed; :func:`settle_ack` decides
    once the packet is filled whether it stays. Returns (start, end,
    largest acknowledged) or None."""
    if not space.ack_needed or builder.remaining < _ACK_FRAME_MIN:
        return None
    ranges = space.ack_ranges()
    if not ranges:
        space.on_ack_sent()
        return None
    delay_us = max(0, int((now - space.largest_received_time) * 1_000_000))
    start = len(builder.payload)
    largest = write_ack_frame(
        builder.payload, builder.remaining, ranges, delay_us >> ACK_DELAY_EXPONENT
    )
    if largest is None:
        return None
    return start, len(builder.payload), largest


def settle_ack(
    builder: PacketBuilder,
    space: PacketNumberSpace,
    ack: tuple[int, int, int] | None,
    due: bool,
) -> None:
    """Keep the ACK if it was due or rides on an ack-eliciting packet.

    Otherwise it is taken out again and waits for the next ack-eliciting
    packet (or its own timer): an ACK that is merely needed -- e.g. for
    ACK-only packets received -- must not go out on its own, or two
    congestion-blocked senders bounce ACK-only packets forever
    (RFC 9000 §13.2.1: no non-ack-eliciting packet in response to a
    non-ack-eliciting packet).
    """
    if ack is None:
        return
    start, end, largest = ack
    if due or builder.has_current_ack_eliciting:
        space.on_ack_sent()
        builder.add_handler(_on_ack_delivered, space, largest)
    else:
        del builder.payload[start:end]


def _on_ack_delivered(delivered: bool, space: PacketNumberSpace, largest: int) -> None:
    if delivered:
        space.on_ack_acknowledged(largest)
