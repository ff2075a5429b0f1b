"""The congestion controller interface and the bookkeeping all algorithms share.

Theory of operation
-------------------
Loss recovery reports every in-flight packet sent, acknowledged, lost or
discarded. This base class keeps ``bytes_in_flight``, the recovery period and
the "was the sender actually using its window" signal; subclasses decide only
how the window grows (:meth:`CongestionController._grow`) and how it shrinks
on a congestion event (:meth:`CongestionController._reduce`).

* Recovery period (RFC 9002 §7.3.2): a congestion event starts one at ``now``;
  losses of packets sent before that moment do not reduce the window again,
  and acknowledgments of such packets do not grow it.
* Under-utilisation (RFC 9002 §7.8): the window only grows if the sender was
  limited by it. The controller remembers the peak bytes in flight of the
  current round trip (a round starts with the first packet sent after the
  previous round's first packet was acknowledged, so a burst of ACKs handled
  before the sender refills still counts as one round). In slow start the
  window counts as used when that peak is at least half of it (a paced sender
  cannot fill a window that doubles every round trip), in congestion
  avoidance when it is within three datagrams of it.
  :meth:`CongestionController.on_app_limited` lets the sender say it ran out
  of data: the window then does not grow until sending fills it again.
* Spurious congestion events (RFC 9438 §4.9): the state before a reduction is
  kept; when every packet whose loss belongs to that recovery period turns out
  to have arrived (:meth:`CongestionController.on_spurious_loss`), it is put
  back.

Packets that are not in flight (ACK-only) are ignored everywhere.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..recovery import RttEstimator, SentPacket

MIN_MAX_DATAGRAM_SIZE = 1200  # RFC 9000 §14
# Congestion avoidance: the window counts as fully used when the peak bytes
# in flight came within this many datagrams of it.
CWND_LIMITED_SLACK_PACKETS = 3


def initial_window(max_datagram_size: int) -> int:
    """RFC 9002 §7.2: ``min(10 * mds, max(14720, 2 * mds))``."""
    return min(10 * max_datagram_size, max(14720, 2 * max_datagram_size))


def minimum_window(max_datagram_size: int) -> int:
    """RFC 9002 §7.2: two datagrams."""
    return 2 * max_datagram_size


class CongestionController(ABC):
    """A congestion control algorithm (RFC 9002 §7); sizes are in bytes."""

    __slots__ = (
        "_app_limited",
        "_max_datagram_size",
        "_next_sequence",
        "_peak_in_flight",
        "_recovery_send",
        "_round_end",
        "_round_over",
        "_undo",
        "_undo_lost",
        "bytes_in_flight",
        "congestion_window",
        "recovery_start_time",
        "ssthresh",
    )

    name = "abstract"

    def __init__(self, *, max_datagram_size: int = MIN_MAX_DATAGRAM_SIZE) -> None:
        _check_datagram_size(max_datagram_size)
        self._max_datagram_size = max_datagram_size
        self.congestion_window = initial_window(max_datagram_size)
        self.bytes_in_flight = 0
        self.ssthresh: int | None = None  # None: infinite
        # RFC 9002 §7.3.2: start of the current recovery period.
        self.recovery_start_time: float | None = None
        self._peak_in_flight = 0
        # Send sequence of the first packet of the current round; the round is
        # over once a packet at or after it is acknowledged.
        self._round_end = 0
        self._round_over = True
        self._app_limited = False
        self._next_sequence = 0
        # One packet may go out beyond the window on entering recovery.
        self._recovery_send = False
        # State before the last reduction, and the packets declared lost in
        # its recovery period not (yet) found to have arrived after all (both
        # None until a reduction: an empty set is 216 bytes per connection).
        self._undo: tuple[object, ...] | None = None
        self._undo_lost: set[SentPacket] | None = None

    # -- configuration -------------------------------------------------------

    @property
    def max_datagram_size(self) -> int:
        """Largest UDP payload we send; PMTU discovery may raise it."""
        return self._max_datagram_size

    @max_datagram_size.setter
    def max_datagram_size(self, value: int) -> None:
        _check_datagram_size(value)
        self._max_datagram_size = value
        self.congestion_window = max(self.congestion_window, minimum_window(value))

    @property
    def minimum_window(self) -> int:
        return minimum_window(self._max_datagram_size)

    @property
    def in_slow_start(self) -> bool:
        return self.ssthresh is None or self.congestion_window < self.ssthresh

    def in_recovery(self, time_sent: float) -> bool:
        """Was a packet sent at ``time_sent`` sent before the current recovery
        period began (RFC 9002 §7.3.2)?"""
        start = self.recovery_start_time
        return start is not None and time_sent <= start

    def _slow_start_growth(self, acked_bytes: int) -> None:
        """RFC 9002 §7.3.1: grow by the bytes acknowledged, stopping at
        ``ssthresh`` (a large ACK does not overshoot into congestion avoidance)."""
        window = self.congestion_window + acked_bytes
        if self.ssthresh is not None and window > self.ssthresh:
            window = max(self.ssthresh, self.congestion_window)
        self.congestion_window = window

    def available(self) -> int:
        """Bytes that may be sent now."""
        return max(0, self.congestion_window - self.bytes_in_flight)

    def can_send(self) -> bool:
        """Whether an ack-eliciting packet may be sent now.

        RFC 9002 §7.3.2: when the window is cut on entering recovery, "a single
        packet can be sent prior to reduction", so the lost data goes out at
        once. Besides speeding up recovery this breaks a handshake deadlock: a
        client whose lost Finished waits behind 1-RTT packets that fill the
        window -- which the server cannot acknowledge before it has the
        Finished, and which have no PTO before confirmation (§6.2.1).
        """
        return self._recovery_send or self.congestion_window > self.bytes_in_flight

    # -- events from loss recovery --------------------------------------------

    def on_packet_sent(self, packet: SentPacket, now: float) -> None:
        """An in-flight packet was sent."""
        if not packet.in_flight:
            return
        if self._round_over:
            self._round_over = False
            self._round_end = self._next_sequence
            self._peak_in_flight = self.bytes_in_flight
        packet.sequence = self._next_sequence
        self._next_sequence += 1
        self.bytes_in_flight += packet.size
        self._recovery_send = False
        if self.bytes_in_flight > self._peak_in_flight:
            self._peak_in_flight = self.bytes_in_flight
            if self._app_limited and self._window_used(self._peak_in_flight):
                self._app_limited = False

    def on_packets_acked(
        self, packets: Sequence[SentPacket], now: float, rtt: RttEstimator
    ) -> None:
        """Packets were newly acknowledged (one ACK frame's worth)."""
        acked_bytes = 0
        largest_sequence = -1
        start = self.recovery_start_time
        for packet in packets:
            if not packet.in_flight:
                continue
            self.bytes_in_flight -= packet.size
            if packet.sequence > largest_sequence:
                largest_sequence = packet.sequence
            # RFC 9002 §7.3.2: no growth for packets sent before recovery began.
            if start is None or packet.time_sent > start:
                acked_bytes += packet.size
        self.bytes_in_flight = max(self.bytes_in_flight, 0)
        # RFC 9002 §7.8: do not grow a window the sender was not using.
        limited = self.is_cwnd_limited()
        self._grow(acked_bytes, largest_sequence, limited, now, rtt)
        if largest_sequence >= self._round_end:
            self._round_over = True

    def on_packets_lost(self, packets: Sequence[SentPacket], now: float) -> None:
        """Packets were declared lost; at most one congestion event results."""
        latest_sent: float | None = None
        for packet in packets:
            if not packet.in_flight:
                continue
            self.bytes_in_flight -= packet.size
            if latest_sent is None or packet.time_sent > latest_sent:
                latest_sent = packet.time_sent
        self.bytes_in_flight = max(self.bytes_in_flight, 0)
        if latest_sent is not None:
            self._congestion_event(latest_sent, now)
            if self._undo_lost is not None:
                self._undo_lost.update(
                    p for p in packets if p.in_flight and self.in_recovery(p.time_sent)
                )

    def on_spurious_loss(self, packets: Sequence[SentPacket], now: float) -> None:
        """Packets declared lost were acknowledged after all. Once that holds
        for every loss of the current recovery period, the reduction it made
        was spurious and is undone (RFC 9438 §4.9)."""
        if self._undo is None or self._undo_lost is None:
            return
        self._undo_lost.difference_update(packets)
        if not self._undo_lost:
            saved, self._undo, self._undo_lost = self._undo, None, None
            self._restore_state(saved)

    def on_ecn_ce(self, now: float, sent_time: float | None = None) -> None:
        """The peer reported new ECN-CE marks (RFC 9002 §7.1); ``sent_time`` is
        when the newest acknowledged packet was sent (default: now)."""
        self._congestion_event(now if sent_time is None else sent_time, now)

    def on_persistent_congestion(self, now: float) -> None:
        """Collapse to the minimum window (RFC 9002 §7.6.2)."""
        self.congestion_window = self.minimum_window
        # App. B.8: the next loss starts a new recovery period.
        self.recovery_start_time = None
        self._recovery_send = False
        self._undo = None  # a collapse is never undone
        self._undo_lost = None
        self._on_window_collapse()

    def discard(self, packets: Sequence[SentPacket]) -> None:
        """Forget packets without a congestion signal (RFC 9002 §6.4)."""
        for packet in packets:
            if packet.in_flight:
                self.bytes_in_flight -= packet.size
        self.bytes_in_flight = max(self.bytes_in_flight, 0)

    def on_app_limited(self) -> None:
        """The sender has nothing to send although the window allows it.

        The window does not grow again until sending has filled it.
        """
        self._app_limited = True
        self._peak_in_flight = self.bytes_in_flight

    def is_cwnd_limited(self) -> bool:
        """Was the window used since the last ACK (RFC 9002 §7.8)?"""
        return not self._app_limited and self._window_used(self._peak_in_flight)

    def _window_used(self, in_flight: int) -> bool:
        if self.in_slow_start:
            return 2 * in_flight >= self.congestion_window
        slack = CWND_LIMITED_SLACK_PACKETS * self._max_datagram_size
        return in_flight + slack >= self.congestion_window

    # -- algorithm hooks ----------------------------------------------------------

    def _congestion_event(self, sent_time: float, now: float) -> None:
        # RFC 9002 §7.3.2: one reduction per recovery period.
        if self.in_recovery(sent_time):
            return
        self._undo = self._save_state()
        self._undo_lost = set()
        self.recovery_start_time = now
        self._reduce(now)
        self._recovery_send = True  # RFC 9002 §7.3.2, see can_send()

    def _save_state(self) -> tuple[object, ...]:
        """What a spurious congestion event must restore (subclasses extend)."""
        return (self.congestion_window, self.ssthresh, self.recovery_start_time)

    def _restore_state(self, saved: tuple[object, ...]) -> None:
        """RFC 9438 §4.9: the window goes back up (never down), the recovery
        period that the spurious event began ends."""
        cwnd, ssthresh, recovery_start = saved[:3]
        assert isinstance(cwnd, int)
        assert ssthresh is None or isinstance(ssthresh, int)
        assert recovery_start is None or isinstance(recovery_start, float)
        self.congestion_window = max(self.congestion_window, cwnd)
        self.ssthresh = ssthresh
        self.recovery_start_time = recovery_start

    @abstractmethod
    def _grow(
        self,
        acked_bytes: int,
        largest_sequence: int,
        cwnd_limited: bool,
        now: float,
        rtt: RttEstimator,
    ) -> None:
        """Grow the window for ``acked_bytes`` acknowledged outside recovery."""

    @abstractmethod
    def _reduce(self, now: float) -> None:
        """Shrink the window on a congestion event (a recovery period begins)."""

    def _on_window_collapse(self) -> None:  # noqa: B027 - optional hook
        """Persistent congestion collapsed the window (hook for subclasses)."""

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} cwnd={self.congestion_window} "
            f"in_flight={self.bytes_in_flight} ssthresh={self.ssthresh}>"
        )


def _check_datagram_size(value: int) -> None:
    if value < MIN_MAX_DATAGRAM_SIZE:
        raise ValueError(f"max_datagram_size must be at least {MIN_MAX_DATAGRAM_SIZE}")
