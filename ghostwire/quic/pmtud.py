"""Datagram Packetization Layer PMTU Discovery (RFC 8899, RFC 9000 §14.3), sans-IO.

Theory of operation
-------------------
Every connection starts at ``max_datagram_size`` (1200 by default: every
QUIC path carries that, RFC 9000 §14). Once the handshake is confirmed, the
frame writer asks :meth:`PathMtuDiscovery.probe_size` whether a probe is due
and sends one datagram of exactly that size: a 1-RTT packet holding PING and
PADDING (RFC 9000 §14.4). The probe's acknowledgement confirms the size and
every later datagram uses it; its loss says nothing about congestion
(RFC 8899 §4.1, RFC 9000 §14.4), so loss recovery takes it out of the bytes
in flight without a congestion response.

The search (RFC 8899 §5.3) runs between the confirmed size and a cap: the
smaller of the configured ``pmtu_max_datagram_size`` and the peer's
``max_udp_payload_size`` (RFC 9000 §18.2). The cap is tried first, since it
usually works; after that it is a binary search between the largest size
acknowledged and the smallest size that failed. A size fails after
:data:`MAX_PROBES` probes of it were lost (the cap after one). The search
stops when the two are less than :data:`SEARCH_PRECISION` bytes apart and
starts again after :data:`PMTU_RAISE_TIMER` (RFC 8899 §5.1.1) in case the
path grew. Probes piggyback on sending: an idle connection sends none.

Black holes (RFC 8899 §4.3, §5.2): a path whose MTU shrinks mid-connection
drops every full-size datagram. Two signals mean that:

* loss bursts made only of packets above the base size (a smaller packet
  would have survived them: only the big ones go) and not followed by any
  big packet that arrived (one sent later and acknowledged shows the path
  still carries the size: those losses were congestion),
  :data:`BLACK_HOLE_BURSTS` of them with no big packet acknowledged in between;
* :data:`BLACK_HOLE_PTOS` probe timeouts in a row, which is what a black
  hole looks like to a sender of full-size packets only (nothing comes back).

Either drops the size to the base of 1200 bytes (``BASE_PLPMTU``), and the
search starts again below the size that failed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .recovery import SentPacket

BASE_PLPMTU = 1200  # RFC 8899 §5.1.2 for QUIC (RFC 9000 §14)
MAX_PROBES = 3  # RFC 8899 §5.1.2: losses of a probe size before it counts as failed
PMTU_RAISE_TIMER = 600.0  # RFC 8899 §5.1.1: seconds before searching again
SEARCH_PRECISION = 16  # bytes: a search ends when it cannot gain more
BLACK_HOLE_BURSTS = 3  # suspicious loss bursts in a row
BLACK_HOLE_PTOS = 3  # consecutive probe timeouts
INF = float("inf")


def _ignore_size(size: int) -> None:
    pass


class PathMtuDiscovery:
    """The datagram size of one connection's path and the search for a larger one.

    ``apply`` is called with every new size; the connection passes it on to
    its writer and congestion controller.
    """

    __slots__ = (
        "_apply",
        "_big_acked",
        "_bursts",
        "_cap",
        "_failures",
        "_first_on_path",
        "_high",
        "_in_flight",
        "_low",
        "black_holes",
        "current",
        "enabled",
        "probe_at",
        "probes_lost",
        "probes_sent",
        "started",
    )

    def __init__(self, current: int, *, enabled: bool, apply: Callable[[int], None]) -> None:
        self._apply = apply
        self.enabled = enabled
        self.current = current  # the PLPMTU: every datagram is at most this big
        self._cap = current  # set by start()
        self._low = current  # largest size acknowledged
        self._high = current + 1  # smallest size that failed (cap + 1: none yet)
        self._failures = 0  # losses of the size probed now
        self._in_flight: int | None = None  # number of the probe in flight
        self._first_on_path = 1  # number of the first probe sent on this path
        self._bursts = 0  # suspicious loss bursts since a big packet was acknowledged
        self._big_acked = -1  # number of the latest big 1-RTT packet acknowledged
        # When the next probe may go (INF: none). 0 until start() settles it:
        # the first datagram built after the handshake is confirmed starts.
        self.probe_at = 0.0 if enabled else INF
        self.probes_sent = 0
        self.probes_lost = 0
        self.black_holes = 0
        self.started = False

    def detach(self) -> None:
        """The connection is terminated: drop ``apply`` (a method of it)."""
        self._apply = _ignore_size
        self.enabled = False

    def start(self, current: int, cap: int) -> None:
        """The handshake is confirmed: search from ``current`` up to ``cap``."""
        self.started = True
        self.current = self._low = current
        self._cap = cap
        self._high = cap + 1
        self.probe_at = 0.0 if cap > current else INF

    def probe_size(self, now: float) -> int | None:
        """The size of a probe to send now, or None."""
        if now < self.probe_at or self._in_flight is not None:
            return None
        size = self._next_size()
        if size is None:
            # RFC 8899 §5.1.1: try again later, in case the path grew.
            self.probe_at = now + PMTU_RAISE_TIMER
            self._high = self._cap + 1
            self._failures = 0
            return None
        return size

    def _next_size(self) -> int | None:
        if self._high > self._cap:  # nothing failed yet: the cap first
            return self._cap if self._cap > self._low else None
        if self._high - self._low <= SEARCH_PRECISION:
            return None
        return (self._low + self._high) // 2

    def on_probe_sent(self) -> int:
        """A probe of the size :meth:`probe_size` gave went out; returns its
        number, for :meth:`on_probe_delivered`."""
        self.probes_sent += 1
        self._in_flight = self.probes_sent
        return self.probes_sent

    def on_probe_delivered(self, delivered: bool, size: int, number: int) -> None:
        """Delivery handler of a probe packet (acknowledged or lost). A PTO may
        report a probe lost before an ACK shows it arrived: the ACK wins."""
        if number < self._first_on_path:
            return  # sent on an earlier path: no evidence about this one
        if delivered:
            if number == self._in_flight:
                self._in_flight = None
            self._failures = 0
            if size > self._low:
                self._low = size
                self._high = max(self._high, size + 1)
                self._set(size)
            return
        if number != self._in_flight:
            return  # an old probe, or one declared lost twice
        self._in_flight = None
        self.probes_lost += 1
        self._failures += 1
        if size == self._cap or self._failures >= MAX_PROBES:
            self._high = min(self._high, size)
            self._failures = 0

    # -- black holes -------------------------------------------------------

    def on_packets_lost(self, lost: Sequence[SentPacket]) -> None:
        """Packets (not probes) declared lost in one loss event."""
        if self.current <= BASE_PLPMTU or not lost:
            return
        later_than_acked = False
        for packet in lost:
            if packet.size <= BASE_PLPMTU:
                return  # a small packet was lost too: congestion, not the size
            if packet.packet_number > self._big_acked:
                later_than_acked = True
        if not later_than_acked:
            return  # big packets sent after these arrived: congestion, not the size
        self._bursts += 1
        if self._bursts >= BLACK_HOLE_BURSTS:
            self._black_hole()

    def on_big_packet_acked(self, packet_number: int) -> None:
        """1-RTT packet ``packet_number``, above the base size, arrived: the
        path carries them."""
        self._bursts = 0
        if packet_number > self._big_acked:
            self._big_acked = packet_number

    def on_pto(self, pto_count: int) -> None:
        """A probe timeout fired (``pto_count`` in a row)."""
        if pto_count >= BLACK_HOLE_PTOS and self.current > BASE_PLPMTU:
            self._black_hole()

    def _black_hole(self) -> None:
        """RFC 8899 §5.2: back to the base size, then search below the failed one."""
        failed = self.current
        self.black_holes += 1
        self._bursts = 0
        self._low = BASE_PLPMTU
        self._high = failed
        self._failures = 0
        self._in_flight = None
        self._set(BASE_PLPMTU)
        if self.enabled:
            self.probe_at = 0.0

    def on_new_path(self) -> None:
        """The peer moved (RFC 9000 §9.3): nothing is known about the new path
        but that it carries the base size (RFC 9000 §14.2.1). Even at the base
        size the search restarts: a late ACK of a probe sent on the old path
        must not raise the size on this one."""
        self._low = BASE_PLPMTU
        self._high = self._cap + 1
        self._failures = 0
        self._in_flight = None
        self._first_on_path = self.probes_sent + 1
        self._bursts = 0
        if self.current > BASE_PLPMTU:
            self._set(BASE_PLPMTU)
        if self.enabled:
            self.probe_at = 0.0

    def _set(self, size: int) -> None:
        self.current = size
        self._apply(size)
