"""Per packet-number-space state: keys, packet numbers and the ACK policy.

QUIC has three packet number spaces (RFC 9000 §12.3): Initial, Handshake
and application data (0-RTT and 1-RTT share it). Each keeps its own packet
numbers, its own record of what it received, and decides on its own when an
ACK is due:

* Initial and Handshake packets that elicit an ACK are acknowledged at once
  (RFC 9000 §13.2.1).
* 1-RTT packets are acknowledged after every second ack-eliciting packet or
  when ``max_ack_delay`` runs out, whichever comes first; a packet that
  arrives out of order (a gap, or below the largest) is acknowledged at once so
  the peer's loss detection reacts quickly (RFC 9000 §13.2.1, §13.2.2).

Received packet numbers are remembered as ranges; ranges the peer has seen
acknowledged (an ACK of an ACK) are forgotten so the set stays small
(RFC 9000 §13.2.4), and so are the oldest past ``MAX_RECEIVED_RANGES``
(RFC 9000 §12.3).
"""

from __future__ import annotations

from typing import NoReturn

from .crypto import PacketKeys
from .rangeset import RELEASED_RANGES, RangeSet
from .recovery import Space

# Send an ACK after this many ack-eliciting packets (RFC 9000 §13.2.2 recommends 2).
ACK_ELICITING_THRESHOLD = 2
# Largest number of ranges in one ACK frame; older ranges are dropped first.
MAX_ACK_RANGES = 64
# Most ranges of received packet numbers remembered (RFC 9000 §12.3): past
# it the older half is forgotten and becomes the duplicate floor. A peer
# leaving a gap after every packet and never acknowledging our ACKs would
# otherwise grow the set by one range per packet, each ACK costing time in
# proportion to all of them.
MAX_RECEIVED_RANGES = 4 * MAX_ACK_RANGES
_APPLICATION = Space.APPLICATION  # a global: enum member lookups are slow on CPython 3.11


class PacketNumberSpace:
    """State for one packet number space."""

    __slots__ = (
        "ack_deadline",
        "ack_eliciting_since_ack",
        "ack_immediately",
        "ack_needed",
        "discarded",
        "duplicate_floor",
        "largest_acked_by_peer",
        "largest_received",
        "largest_received_time",
        "next_pn",
        "received",
        "recv_keys",
        "send_keys",
        "space",
    )

    def __init__(self, space: Space) -> None:
        self.space = space
        self.next_pn = 0
        self.send_keys: PacketKeys | None = None
        self.recv_keys: PacketKeys | None = None
        self.discarded = False
        # Sending side: largest packet number the peer acknowledged (for
        # packet number truncation, RFC 9000 §17.1).
        self.largest_acked_by_peer: int | None = None
        # Receiving side.
        self.received = RangeSet()
        self.largest_received = -1
        self.largest_received_time = 0.0
        self.duplicate_floor = -1  # packet numbers <= this were pruned: treat as duplicates
        self.ack_needed = False  # something new to acknowledge
        self.ack_eliciting_since_ack = 0
        self.ack_immediately = False
        self.ack_deadline: float | None = None

    def is_duplicate(self, pn: int) -> bool:
        return pn <= self.duplicate_floor or pn in self.received

    def on_packet_received(
        self, pn: int, ack_eliciting: bool, now: float, max_ack_delay: float
    ) -> None:
        """Record a successfully processed packet and update the ACK schedule."""
        in_order = pn == self.largest_received + 1
        self.received.add(pn, pn + 1)
        # Only a packet out of order can open a range (an in-order one extends the last).
        if not in_order and len(self.received.starts) > MAX_RECEIVED_RANGES:
            self._forget_oldest_ranges()
        if pn > self.largest_received:
            self.largest_received = pn
            self.largest_received_time = now
        self.ack_needed = True
        if not ack_eliciting:
            return
        self.ack_eliciting_since_ack += 1
        if self.space is not _APPLICATION or not in_order:
            # RFC 9000 §13.2.1: Initial/Handshake at once; reordering at once.
            self.ack_immediately = True
        elif self.ack_eliciting_since_ack >= ACK_ELICITING_THRESHOLD:
            self.ack_immediately = True
        elif self.ack_deadline is None:
            self.ack_deadline = now + max_ack_delay

    def _forget_oldest_ranges(self) -> None:
        """Keep the newest half of the ranges; the rest are never acknowledged
        again (RFC 9000 §13.2.3 lets ACK frames omit old ranges) and packets
        at or below the newest forgotten one are dropped as duplicates
        (RFC 9000 §12.3: a minimum packet number bounds duplicate detection)."""
        received = self.received
        cut = len(received.starts) - MAX_RECEIVED_RANGES // 2
        floor = received.ends[cut - 1] - 1
        received.subtract(0, floor + 1)
        self.duplicate_floor = max(self.duplicate_floor, floor)

    def ack_due(self, now: float) -> bool:
        """Whether an ACK must go out now (not merely may piggyback)."""
        if not self.ack_needed:
            return False
        return self.ack_immediately or (self.ack_deadline is not None and now >= self.ack_deadline)

    def ack_timer(self) -> float | None:
        if not self.ack_needed or self.ack_immediately:
            return None
        return self.ack_deadline

    def ack_ranges(self) -> tuple[tuple[int, int], ...]:
        """(smallest, largest) inclusive ranges, largest first, for an ACK frame."""
        received = self.received
        if len(received.starts) == 1:  # the usual case: no packet missing
            return ((received.starts[0], received.ends[0] - 1),)
        newest = zip(
            received.starts[-MAX_ACK_RANGES:], received.ends[-MAX_ACK_RANGES:], strict=True
        )
        ranges = [(start, stop - 1) for start, stop in newest]
        ranges.reverse()
        return tuple(ranges)

    def on_ack_sent(self) -> None:
        self.ack_needed = False
        self.ack_immediately = False
        self.ack_eliciting_since_ack = 0
        self.ack_deadline = None

    def on_ack_acknowledged(self, largest_acked_in_ack: int) -> None:
        """The peer received our ACK covering up to ``largest_acked_in_ack``:
        older ranges need not be repeated (RFC 9000 §13.2.4)."""
        if largest_acked_in_ack <= self.duplicate_floor:
            return
        self.received.subtract(0, largest_acked_in_ack + 1)
        self.duplicate_floor = largest_acked_in_ack
        if not self.received:
            self.ack_needed = False

    def discard(self) -> None:
        """Drop keys and ACK state (RFC 9001 §4.9)."""
        self.discarded = True
        self.send_keys = None
        self.recv_keys = None
        self.received = RELEASED_RANGES  # shared and always empty
        self.ack_needed = False
        self.ack_immediately = False
        self.ack_deadline = None


class _DiscardedPacketSpace(PacketNumberSpace):
    """A discarded Initial or Handshake space (RFC 9001 §4.9): no keys, nothing
    to acknowledge. One instance per space serves every connection (saving
    each two spaces of ~140 B); it refuses writes, so a stray one fails loudly
    rather than reaching other connections. Its ``next_pn`` and
    ``largest_received`` are not the connection's: nothing reads them once a
    space is discarded."""

    __slots__ = ()

    def __init__(self, space: Space) -> None:
        fresh = PacketNumberSpace(space)
        fresh.discard()
        for name in PacketNumberSpace.__slots__:
            object.__setattr__(self, name, getattr(fresh, name))

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError(f"a discarded packet number space is read-only ({name})")


# By Space; the application space is never discarded.
DISCARDED_PACKET_SPACES: dict[Space, PacketNumberSpace] = {
    Space.INITIAL: _DiscardedPacketSpace(Space.INITIAL),
    Space.HANDSHAKE: _DiscardedPacketSpace(Space.HANDSHAKE),
}
