"""Loss detection arithmetic and per-space bookkeeping (RFC 9002 §6.1, App. A).

The threshold tests of §6.1, the per-space record of packets in flight
(:class:`SpaceState`), packets remembered after being declared lost, and the
checks and lookups on an ACK frame's ranges. :class:`.recovery.LossRecovery`
drives them; :mod:`.recovery` re-exports the public names.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, NoReturn

from .errors import QuicProtocolError, TransportErrorCode
from .rtt import K_GRANULARITY
from .sent_packet import SentPacket

K_PACKET_THRESHOLD = 3  # RFC 9002 §6.1.1
K_TIME_THRESHOLD = 9 / 8  # RFC 9002 §6.1.2
K_PERSISTENT_CONGESTION_THRESHOLD = 3  # RFC 9002 §7.6.1
# Adaptive reordering thresholds (RFC 9002 §6.1.1, §6.1.2 allow them): the
# largest values a spurious loss may raise them to.
MAX_PACKET_THRESHOLD = 256
MAX_TIME_THRESHOLD = 2.0
# Packets declared lost that are remembered to spot a late ACK of one (a
# spurious loss), per space; each is kept for this many PTOs at most.
MAX_LOST_REMEMBERED = 512
LOST_MEMORY_PTOS = 3


# -- loss detection math (RFC 9002 §6.1) ---------------------------------------


def loss_delay(
    latest_rtt: float, smoothed_rtt: float, time_threshold: float = K_TIME_THRESHOLD
) -> float:
    """Time after which a packet sent before an acknowledged one is lost (§6.1.2)."""
    return max(time_threshold * max(latest_rtt, smoothed_rtt), K_GRANULARITY)


def lost_by_packet_threshold(packet_number: int, largest_acked: int) -> bool:
    """Packet threshold test: 3 newer packets were acknowledged (§6.1.1)."""
    return largest_acked >= packet_number + K_PACKET_THRESHOLD


def lost_by_time_threshold(time_sent: float, now: float, delay: float) -> bool:
    """Time threshold test for a packet below the largest acknowledged (§6.1.2).

    Written as ``loss_time_of(...) <= now`` so that a timer armed at
    :func:`loss_time_of` always declares the packet lost when it fires
    (``now - delay`` can round below ``time_sent`` and re-arm the same time).
    """
    return loss_time_of(time_sent, delay) <= now


def loss_time_of(time_sent: float, delay: float) -> float:
    """When a not-yet-lost packet becomes lost by the time threshold (§6.1.2)."""
    return time_sent + delay


def persistent_congestion_duration(
    smoothed_rtt: float, rttvar: float, max_ack_delay: float
) -> float:
    """Span of losses that establishes persistent congestion (§7.6.1).

    Unlike the PTO it always includes ``max_ack_delay``.
    """
    pto = smoothed_rtt + max(4 * rttvar, K_GRANULARITY) + max_ack_delay
    return pto * K_PERSISTENT_CONGESTION_THRESHOLD


# -- per-space state -------------------------------------------------------------


class SpaceState:
    """Sent packets and loss state of one packet number space."""

    __slots__ = (
        "ack_eliciting_in_flight",
        "largest_acked",
        "largest_sent",
        "last_ack_eliciting_time",
        "loss_time",
        "lost",
        "run_end",
        "run_start",
        "sent",
    )

    def __init__(self) -> None:
        self.sent: dict[int, SentPacket] = {}
        self.largest_acked = -1
        self.largest_sent = -1
        self.loss_time: float | None = None
        self.last_ack_eliciting_time: float | None = None
        self.ack_eliciting_in_flight = 0
        # Current run of consecutively lost packets (persistent congestion):
        # packet number of its last packet, send time of its first eligible one.
        self.run_end: int | None = None
        self.run_start: float | None = None
        # Packets declared lost, by packet number, in the order declared.
        self.lost: dict[int, LostRecord] = {}

    def reset_loss_state(self) -> None:
        self.sent = {}
        self.lost = {}
        self.loss_time = None
        self.last_ack_eliciting_time = None
        self.ack_eliciting_in_flight = 0
        self.run_end = None
        self.run_start = None

    def forget(self, packets: list[SentPacket]) -> None:
        """Remove acknowledged or lost packets from the tracked set."""
        sent = self.sent
        for packet in packets:
            del sent[packet.packet_number]
            if packet.ack_eliciting and packet.in_flight:
                self.ack_eliciting_in_flight -= 1

    def follows_run(self, packet_number: int) -> bool:
        """``packet_number`` comes right after the current run: no packet
        between them can have been acked."""
        end = self.run_end
        return end is not None and packet_number == end + 1


@dataclass(slots=True)
class LostRecord:
    """A packet declared lost, remembered in case an ACK shows it arrived."""

    packet: SentPacket
    declared_at: float
    # Which thresholds declared it lost (§6.1.1, §6.1.2).
    by_packet: bool
    by_time: bool


# -- ACK frame helpers -------------------------------------------------------------


def lost_in_ranges(records: dict[int, LostRecord], ranges: Sequence[tuple[int, int]]) -> list[int]:
    """Packet numbers of ``records`` that descending inclusive ``ranges`` cover, ascending.

    Records are kept in ascending packet number order (each loss detection
    declares the oldest packets outstanding, all newer than those declared
    before), so each range's records are found by bisection in a copy of
    the keys: an ACK costs O(ranges * log records) steps (plus one C-speed
    copy of at most MAX_LOST_REMEMBERED keys), not a Python step per
    record. A peer repeating a tiny ACK frame that spans the records
    without acknowledging any (~8 bytes) made each frame walk all 512.
    """
    numbers = list(records)
    hits: list[int] = []
    for smallest, largest in reversed(ranges):
        low = bisect_left(numbers, smallest)
        high = bisect_right(numbers, largest, low)
        if low < high:
            hits += numbers[low:high]
    return hits


def _violation(reason: str) -> QuicProtocolError:
    return QuicProtocolError(TransportErrorCode.PROTOCOL_VIOLATION, reason)


def check_ranges(state: SpaceState, ranges: Sequence[tuple[int, int]]) -> None:
    """RFC 9000 §13.1: an ACK of a packet never sent is a PROTOCOL_VIOLATION."""
    if ranges[0][1] > state.largest_sent:
        raise _violation(f"ACK of unsent packet {ranges[0][1]}")
    previous_smallest = ranges[0][1] + 1
    for smallest, largest in ranges:
        # Descending and disjoint, as the ACK frame encoding guarantees.
        if smallest < 0 or smallest > largest or largest >= previous_smallest:
            raise _violation("malformed ACK ranges")
        previous_smallest = smallest


def newly_acked(
    state: SpaceState, ranges: Sequence[tuple[int, int]], previous_largest: int
) -> list[SentPacket]:
    """Outstanding packets covered by ``ranges``, in packet number order.

    Below ``previous_largest`` only the (few) still-outstanding packets are
    looked at; above it each range is walked, which touches each packet
    number once over the life of the connection.
    """
    sent = state.sent
    acked: list[SentPacket] = []
    if previous_largest >= 0 and sent:
        index = len(ranges) - 1  # ranges ascending from the end
        for pn, packet in sent.items():
            if pn > previous_largest:
                break
            while index >= 0 and ranges[index][1] < pn:
                index -= 1
            if index < 0:
                break
            if ranges[index][0] <= pn:
                acked.append(packet)
    for smallest, largest in reversed(ranges):
        if largest <= previous_largest:
            continue
        for pn in range(max(smallest, previous_largest + 1), largest + 1):
            found = sent.get(pn)
            if found is not None:
                acked.append(found)
    return acked


class _DiscardedSpace(SpaceState):
    """The state of a discarded Initial or Handshake space: no packets, no
    timers. One instance serves every connection (saving each two states of
    ~230 B); it refuses writes, so a stray one fails loudly rather than
    reaching other connections."""

    __slots__ = ()

    def __init__(self) -> None:
        fresh = SpaceState()
        for name in SpaceState.__slots__:
            object.__setattr__(self, name, getattr(fresh, name))
        object.__setattr__(self, "sent", MappingProxyType({}))
        object.__setattr__(self, "lost", MappingProxyType({}))

    def __setattr__(self, name: str, value: Any) -> NoReturn:
        raise AttributeError(f"a discarded packet number space is read-only ({name})")


DISCARDED_SPACE: SpaceState = _DiscardedSpace()
