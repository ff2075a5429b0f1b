"""NewReno congestion control as specified for QUIC (RFC 9002 §7, Appendix B).

Theory of operation
-------------------
* Slow start (§7.3.1): the window grows by the bytes acknowledged, doubling
  every round trip, while it is below ``ssthresh``.
* Congestion avoidance (§7.3.3): one maximum datagram per window of bytes
  acknowledged. Acknowledged bytes accumulate in a counter until a full
  window's worth has been acknowledged, which is App. B.5's
  ``cwnd += mds * acked / cwnd`` without rounding losses.
* Congestion event (§7.3.2): halve the window (loss reduction factor 0.5),
  never below the minimum window, and set ``ssthresh`` to the result.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import CongestionController

if TYPE_CHECKING:
    from ..recovery import RttEstimator

K_LOSS_REDUCTION_FACTOR = 0.5  # RFC 9002 §7.3.2


class NewReno(CongestionController):
    """RFC 9002 NewReno."""

    __slots__ = ("_acked_in_ca",)

    name = "newreno"

    def __init__(self, *, max_datagram_size: int = 1200) -> None:
        super().__init__(max_datagram_size=max_datagram_size)
        self._acked_in_ca = 0

    def _grow(
        self,
        acked_bytes: int,
        largest_sequence: int,
        cwnd_limited: bool,
        now: float,
        rtt: RttEstimator,
    ) -> None:
        if acked_bytes <= 0 or not cwnd_limited:
            return
        if self.in_slow_start:
            self._slow_start_growth(acked_bytes)
            return
        # RFC 9002 §7.3.3: one datagram per congestion window acknowledged.
        self._acked_in_ca += acked_bytes
        cwnd = self.congestion_window
        if self._acked_in_ca >= cwnd:
            windows, self._acked_in_ca = divmod(self._acked_in_ca, cwnd)
            self.congestion_window = cwnd + windows * self.max_datagram_size

    def _reduce(self, now: float) -> None:
        window = int(self.congestion_window * K_LOSS_REDUCTION_FACTOR)
        self.congestion_window = max(window, self.minimum_window)
        self.ssthresh = self.congestion_window
        self._acked_in_ca = 0

    def _on_window_collapse(self) -> None:
        self._acked_in_ca = 0
