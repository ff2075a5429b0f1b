"""Packet pacing (RFC 9002 §7.7).

Theory of operation
-------------------
A token bucket measured in bytes. Tokens accrue at the pacing rate
``N * cwnd / smoothed_rtt`` with ``N = 1.25`` (so a window is spread over a
bit less than a round trip) and are capped at the bucket size: a burst of
``burst_packets`` datagrams (10, about the initial window, as §7.7 suggests),
or whatever accrues in one timer granularity at high rates. Sending spends
tokens and may leave a small debt.

A datagram may go when the bucket holds a full datagram. Otherwise
:meth:`Pacer.next_send_time` says when it will, but never sooner than one
granularity (1 ms) ahead, so a fast path is served in small bursts instead of
waking the connection for every packet.
"""

from __future__ import annotations

import math

PACING_GAIN = 1.25  # RFC 9002 §7.7: N
DEFAULT_BURST_PACKETS = 10
DEFAULT_GRANULARITY = 0.001
# Rounding slack: waking at the time next_send_time() gave must allow a send.
_TOLERANCE_BYTES = 0.5


class Pacer:
    """Token-bucket pacer for one path."""

    __slots__ = (
        "_capacity",
        "_last",
        "_rate",
        "_tokens",
        "burst_packets",
        "granularity",
        "max_datagram_size",
    )

    def __init__(
        self,
        *,
        max_datagram_size: int = 1200,
        burst_packets: int = DEFAULT_BURST_PACKETS,
        granularity: float = DEFAULT_GRANULARITY,
    ) -> None:
        if max_datagram_size <= 0 or burst_packets <= 0 or granularity <= 0:
            raise ValueError("pacer parameters must be positive")
        self.max_datagram_size = max_datagram_size
        self.burst_packets = burst_packets
        self.granularity = granularity
        self._rate = math.inf  # bytes per second; infinite until update()
        self._capacity = float(burst_packets * max_datagram_size)
        self._tokens = self._capacity
        self._last: float | None = None

    @property
    def rate(self) -> float:
        """Current pacing rate in bytes per second (inf: not pacing)."""
        return self._rate

    @property
    def capacity(self) -> float:
        """Bucket size in bytes: the largest burst."""
        return self._capacity

    @property
    def tokens(self) -> float:
        """Bytes that may be sent right now (as of the last call)."""
        return self._tokens

    def update(self, congestion_window: int, smoothed_rtt: float, now: float) -> None:
        """Follow the congestion window and RTT (tokens accrued so far are kept)."""
        self._refill(now)
        if smoothed_rtt > 0 and congestion_window > 0:
            self._rate = PACING_GAIN * congestion_window / smoothed_rtt
        else:
            self._rate = math.inf
        burst = float(self.burst_packets * self.max_datagram_size)
        self._capacity = max(burst, self._rate * self.granularity)
        if self._tokens > self._capacity:
            self._tokens = self._capacity

    def next_send_time(self, now: float) -> float | None:
        """None if a datagram may be sent now, else when one may."""
        last = self._last
        if last is None or now > last:
            self._refill(now)
        needed = self.max_datagram_size - self._tokens
        if needed <= _TOLERANCE_BYTES or self._rate == math.inf:
            return None
        return now + max(needed / self._rate, self.granularity)

    def on_packet_sent(self, size: int, now: float) -> None:
        """Spend tokens for a datagram of ``size`` bytes."""
        last = self._last
        if last is None or now > last:
            self._refill(now)
        self._tokens = max(self._tokens - size, -self._capacity)

    def _refill(self, now: float) -> None:
        last = self._last
        if last is not None and now <= last:
            return
        self._last = now
        if last is None:
            return
        if self._rate == math.inf:
            self._tokens = self._capacity
            return
        tokens = self._tokens + (now - last) * self._rate
        self._tokens = tokens if tokens < self._capacity else self._capacity
