"""CUBIC congestion control (RFC 9438) with HyStart++ slow start (RFC 9406).

Theory of operation
-------------------
Windows are kept in bytes; the RFC's formulas are in segments, so they are
evaluated with windows divided by the maximum datagram size.

* Congestion event (§4.6, §4.7): remember the window as ``W_max`` (lowered to
  ``cwnd * (1 + beta) / 2`` by fast convergence when it is below the previous
  ``W_max``), then cut the window and ``ssthresh`` to ``beta_cubic = 0.7`` of
  it.
* Congestion avoidance starts its epoch at the first ACK that may grow the
  window after the recovery period, with ``cwnd_epoch`` = the window then and
  ``K = cbrt((W_max - cwnd_epoch) / C)`` (§4.2). Each ACK moves the window
  towards ``target = W_cubic(t + RTT)``, clamped to ``[cwnd, 1.5 cwnd]``, by
  ``(target - cwnd) / cwnd`` per segment acknowledged: concave below
  ``W_max`` (§4.4), convex above it (§4.5).
* Reno-friendly region (§4.3): ``W_est`` starts at ``cwnd_epoch`` and grows by
  ``alpha_cubic = 3 (1 - beta) / (1 + beta)`` segments per window acknowledged
  (1 once it passes the pre-loss window ``cwnd_prior``); whenever
  ``W_cubic(t) < W_est`` the window follows ``W_est``.
* Without a ``W_max`` (slow start left by HyStart++, or after persistent
  congestion) the epoch uses ``K = 0`` and ``W_max = cwnd_epoch`` (§4.8).
* Application-limited periods (§5.8): while the window is not used it does
  not grow, and the time spent so is added to the epoch start so that ``t``
  excludes it.

HyStart++ (RFC 9406) runs only during the first slow start: it watches the
minimum RTT of successive rounds and, on a rise, switches to Conservative
Slow Start (a quarter of the growth) for up to five rounds before entering
congestion avoidance; a drop of the RTT back below the baseline resumes slow
start. The sender paces, so no per-ACK burst limit ``L`` applies.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from .base import CongestionController

if TYPE_CHECKING:
    from ..recovery import RttEstimator

C = 0.4  # RFC 9438 §5.1
BETA_CUBIC = 0.7  # RFC 9438 §4.6
ALPHA_CUBIC = 3 * (1 - BETA_CUBIC) / (1 + BETA_CUBIC)  # RFC 9438 §4.3

# RFC 9406 §4.3 constants.
MIN_RTT_THRESH = 0.004
MAX_RTT_THRESH = 0.016
MIN_RTT_DIVISOR = 8
N_RTT_SAMPLE = 8
CSS_GROWTH_DIVISOR = 4
CSS_ROUNDS = 5

_INF = math.inf


def cubic_k(w_max: float, cwnd_epoch: float) -> float:
    """Seconds until ``W_cubic`` reaches ``w_max`` (RFC 9438 §4.2, eq. 2).

    Windows in segments; negative when the epoch starts above ``w_max``.
    """
    return math.cbrt((w_max - cwnd_epoch) / C)


def w_cubic(t: float, k: float, w_max: float) -> float:
    """``W_cubic(t) = C (t - K)^3 + W_max`` in segments (RFC 9438 §4.2, eq. 1)."""
    return C * (t - k) ** 3 + w_max


class HyStart:
    """HyStart++ delay-increase detection (RFC 9406 §4.2).

    Rounds are delimited by the congestion controller's send sequence: a
    round ends when a packet sent after it began is acknowledged.
    """

    __slots__ = (
        "_seen_samples",
        "css_baseline_min_rtt",
        "css_rounds",
        "current_round_min_rtt",
        "last_round_min_rtt",
        "rtt_sample_count",
        "window_end",
    )

    def __init__(self) -> None:
        self.window_end: int | None = None
        self.last_round_min_rtt = _INF
        self.current_round_min_rtt = _INF
        self.rtt_sample_count = 0
        self.css_baseline_min_rtt = _INF
        self.css_rounds = 0
        self._seen_samples = 0

    @property
    def in_css(self) -> bool:
        """In Conservative Slow Start."""
        return self.css_baseline_min_rtt != _INF

    def on_ack(
        self, acked_bytes: int, largest_sequence: int, next_sequence: int, rtt: RttEstimator
    ) -> tuple[float, bool]:
        """Returns the window increase for ``acked_bytes`` and whether slow
        start is over (``ssthresh = cwnd``)."""
        if self.window_end is None or largest_sequence >= self.window_end:
            if self.in_css:
                self.css_rounds += 1
            self._start_round(next_sequence)
        if rtt.samples != self._seen_samples:
            self._seen_samples = rtt.samples
            self.current_round_min_rtt = min(self.current_round_min_rtt, rtt.latest_rtt)
            self.rtt_sample_count += 1
        if self.rtt_sample_count >= N_RTT_SAMPLE:
            self._check_delay()
        if not self.in_css:
            return float(acked_bytes), False
        return acked_bytes / CSS_GROWTH_DIVISOR, self.css_rounds >= CSS_ROUNDS

    def _start_round(self, next_sequence: int) -> None:
        self.last_round_min_rtt = self.current_round_min_rtt
        self.current_round_min_rtt = _INF
        self.rtt_sample_count = 0
        self.window_end = next_sequence

    def _check_delay(self) -> None:
        current = self.current_round_min_rtt
        if self.in_css:
            # RFC 9406 §4.2: the RTT fell back, the exit was spurious.
            if current < self.css_baseline_min_rtt:
                self.css_baseline_min_rtt = _INF
            return
        last = self.last_round_min_rtt
        if current == _INF or last == _INF:
            return
        threshold = max(MIN_RTT_THRESH, min(last / MIN_RTT_DIVISOR, MAX_RTT_THRESH))
        if current >= last + threshold:
            self.css_baseline_min_rtt = current
            self.css_rounds = 0


class Cubic(CongestionController):
    """RFC 9438 CUBIC."""

    __slots__ = (
        "_app_limited_since",
        "_cwnd_epoch",
        "_cwnd_prior",
        "_epoch_start",
        "_frac",
        "_k",
        "_w_est",
        "_w_max",
        "fast_convergence",
        "hystart",
    )

    name = "cubic"

    def __init__(
        self,
        *,
        max_datagram_size: int = 1200,
        hystart: bool = True,
        fast_convergence: bool = True,
    ) -> None:
        super().__init__(max_datagram_size=max_datagram_size)
        self.fast_convergence = fast_convergence
        self.hystart: HyStart | None = HyStart() if hystart else None
        self._w_max: float | None = None  # bytes
        self._cwnd_prior: float | None = None  # bytes
        self._epoch_start: float | None = None
        self._cwnd_epoch = 0.0
        self._k = 0.0
        self._w_est = 0.0
        self._frac = 0.0  # sub-byte growth carried between ACKs
        self._app_limited_since: float | None = None

    # -- read-only views for diagnostics and tests --------------------------------

    @property
    def w_max(self) -> float | None:
        """Window (bytes) before the last reduction, or None."""
        return self._w_max

    @property
    def k(self) -> float:
        """Seconds from the epoch start until ``W_cubic`` reaches ``W_max``."""
        return self._k

    @property
    def epoch_start(self) -> float | None:
        """Start of the current congestion avoidance epoch (shifted by
        application-limited time), or None before it begins."""
        return self._epoch_start

    @property
    def w_est(self) -> float:
        """The Reno-friendly window estimate in bytes (RFC 9438 §4.3)."""
        return self._w_est

    def w_cubic_bytes(self, t: float) -> float:
        """``W_cubic(t)`` of the current epoch, in bytes."""
        mds = self.max_datagram_size
        w_max = self._w_max if self._w_max is not None else float(self.congestion_window)
        return w_cubic(t, self._k, w_max / mds) * mds

    # -- growth ---------------------------------------------------------------------

    def _grow(
        self,
        acked_bytes: int,
        largest_sequence: int,
        cwnd_limited: bool,
        now: float,
        rtt: RttEstimator,
    ) -> None:
        if not cwnd_limited:
            # RFC 9438 §5.8: no growth, and the clock of W_cubic stops.
            if self._app_limited_since is None:
                self._app_limited_since = now
            return
        self._end_app_limited(now)
        if acked_bytes <= 0:
            return
        if self.in_slow_start:
            self._slow_start(acked_bytes, largest_sequence, rtt)
        else:
            self._congestion_avoidance(acked_bytes, now, rtt.smoothed_rtt)

    def _end_app_limited(self, now: float) -> None:
        since = self._app_limited_since
        if since is None:
            return
        self._app_limited_since = None
        if self._epoch_start is not None:
            self._epoch_start += now - since

    def _slow_start(self, acked_bytes: int, largest_sequence: int, rtt: RttEstimator) -> None:
        hystart = self.hystart
        # RFC 9406 §4.1: HyStart++ only for the initial slow start.
        if hystart is None or self.ssthresh is not None:
            self._slow_start_growth(acked_bytes)
            return
        increase, done = hystart.on_ack(acked_bytes, largest_sequence, self._next_sequence, rtt)
        self._set_window(self.congestion_window + self._frac + increase)
        if done:
            self.ssthresh = self.congestion_window  # RFC 9406 §4.2: enter CA

    def _congestion_avoidance(self, acked_bytes: int, now: float, srtt: float) -> None:
        cwnd = self.congestion_window + self._frac
        if self._epoch_start is None:
            self._start_epoch(now, cwnd)
        epoch_start = self._epoch_start if self._epoch_start is not None else now
        t = now - epoch_start
        # RFC 9438 §4.2: aim for W_cubic one RTT ahead, within [cwnd, 1.5 cwnd].
        target = min(max(self.w_cubic_bytes(t + srtt), cwnd), 1.5 * cwnd)
        # RFC 9438 §4.3: Reno-friendly estimate.
        prior = self._cwnd_prior if self._cwnd_prior is not None else cwnd
        alpha = 1.0 if self._w_est >= prior else ALPHA_CUBIC
        self._w_est += alpha * self.max_datagram_size * acked_bytes / cwnd
        if self.w_cubic_bytes(t) < self._w_est:
            window = max(cwnd, self._w_est)
        else:
            # RFC 9438 §4.4, §4.5: (target - cwnd) / cwnd per segment acked.
            window = cwnd + (target - cwnd) * acked_bytes / cwnd
        self._set_window(window)

    def _start_epoch(self, now: float, cwnd: float) -> None:
        mds = self.max_datagram_size
        self._epoch_start = now
        self._cwnd_epoch = cwnd
        self._w_est = cwnd  # RFC 9438 §4.3
        if self._cwnd_prior is None:
            self._cwnd_prior = cwnd  # RFC 9438 §4.8
        if self._w_max is None:
            # RFC 9438 §4.8: no W_max yet -> K = 0, W_max = cwnd_epoch.
            self._w_max = cwnd
            self._k = 0.0
        else:
            self._k = cubic_k(self._w_max / mds, cwnd / mds)

    def _set_window(self, window: float) -> None:
        whole = int(window)
        self._frac = window - whole
        self.congestion_window = whole

    # -- reduction --------------------------------------------------------------------

    def _reduce(self, now: float) -> None:
        cwnd = float(self.congestion_window)
        w_max = self._w_max
        if self.fast_convergence and w_max is not None and cwnd < w_max:
            # RFC 9438 §4.7: release bandwidth to newer flows.
            self._w_max = cwnd * (1 + BETA_CUBIC) / 2
        else:
            self._w_max = cwnd
        self._cwnd_prior = cwnd
        # RFC 9438 §4.6 (with cwnd for flight_size; §5.8 guards app-limited growth).
        window = max(int(cwnd * BETA_CUBIC), self.minimum_window)
        self.ssthresh = window
        self.congestion_window = window
        self._restart_epoch()

    def _save_state(self) -> tuple[object, ...]:
        return (
            *super()._save_state(),
            (self._w_max, self._cwnd_prior, self._epoch_start, self._cwnd_epoch, self._k),
            self._w_est,
        )

    def _restore_state(self, saved: tuple[object, ...]) -> None:
        # RFC 9438 §4.9: W_max, K and the epoch of before the spurious event.
        super()._restore_state(saved)
        epoch, w_est = saved[3], saved[4]
        assert isinstance(epoch, tuple) and isinstance(w_est, float)
        self._w_max, self._cwnd_prior, self._epoch_start, self._cwnd_epoch, self._k = epoch
        self._w_est = w_est
        self._frac = 0.0
        self._app_limited_since = None

    def _on_window_collapse(self) -> None:
        # RFC 9438 §4.8: after a timeout the next epoch uses K = 0 and
        # W_max = the window at its start.
        self._w_max = None
        self._restart_epoch()

    def _restart_epoch(self) -> None:
        self._epoch_start = None
        self._app_limited_since = None
        self._frac = 0.0
