"""Round-trip time estimation (RFC 9002 §5). :mod:`.recovery` re-exports it."""

from __future__ import annotations

K_GRANULARITY = 0.001  # RFC 9002 §6.1.2: 1 ms timer granularity
DEFAULT_INITIAL_RTT = 0.333  # RFC 9002 §6.2.2


class RttEstimator:
    """Round-trip time estimation (RFC 9002 §5)."""

    __slots__ = ("has_sample", "latest_rtt", "min_rtt", "rttvar", "samples", "smoothed_rtt")

    def __init__(self, initial_rtt: float = DEFAULT_INITIAL_RTT) -> None:
        if not initial_rtt > 0:
            raise ValueError("initial_rtt must be positive")
        # RFC 9002 §5.3 / App. A.4: estimates before the first sample.
        self.latest_rtt = 0.0
        self.min_rtt = 0.0
        self.smoothed_rtt = initial_rtt
        self.rttvar = initial_rtt / 2
        self.has_sample = False
        self.samples = 0  # number of samples taken (lets observers spot new ones)

    def update(
        self,
        latest_rtt: float,
        ack_delay: float,
        *,
        max_ack_delay: float,
        handshake_confirmed: bool,
    ) -> None:
        """Fold in one RTT sample; ``ack_delay`` is the peer-reported delay (§5.3)."""
        latest_rtt = max(latest_rtt, 0.0)
        self.latest_rtt = latest_rtt
        self.samples += 1
        if not self.has_sample:
            # RFC 9002 §5.3: the first sample initialises the estimator.
            self.has_sample = True
            self.min_rtt = latest_rtt
            self.smoothed_rtt = latest_rtt
            self.rttvar = latest_rtt / 2
            return
        # RFC 9002 §5.2: min_rtt ignores the acknowledgment delay.
        if latest_rtt < self.min_rtt:
            self.min_rtt = latest_rtt
        ack_delay = max(ack_delay, 0.0)
        if handshake_confirmed:
            # RFC 9002 §5.3: MUST use the lesser of ack_delay and max_ack_delay.
            ack_delay = min(ack_delay, max_ack_delay)
        adjusted = latest_rtt
        # RFC 9002 §5.3: never subtract the delay below min_rtt.
        if latest_rtt >= self.min_rtt + ack_delay:
            adjusted = latest_rtt - ack_delay
        self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.smoothed_rtt - adjusted)
        self.smoothed_rtt = 0.875 * self.smoothed_rtt + 0.125 * adjusted

    def pto_base(self) -> float:
        """``smoothed_rtt + max(4 * rttvar, kGranularity)`` (§6.2.1)."""
        return self.smoothed_rtt + max(4 * self.rttvar, K_GRANULARITY)
