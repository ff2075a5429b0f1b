"""Congestion control: NewReno (RFC 9002 §7) and CUBIC (RFC 9438, RFC 9406)."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable

import pytest

from ghostwire.quic.congestion import (
    CongestionController,
    Cubic,
    NewReno,
    create_congestion_controller,
    initial_window,
    minimum_window,
)
from ghostwire.quic.congestion.cubic import ALPHA_CUBIC, C, HyStart, cubic_k, w_cubic
from ghostwire.quic.recovery import RttEstimator, SentPacket, Space

MDS = 1200
ALGORITHMS = ["newreno", "cubic"]


def pkt(t: float, size: int = MDS, *, in_flight: bool = True) -> SentPacket:
    return SentPacket(0, Space.APPLICATION, t, size, in_flight, in_flight, [])


def rtt_of(value: float) -> RttEstimator:
    rtt = RttEstimator()
    rtt.update(value, 0.0, max_ack_delay=0.0, handshake_confirmed=True)
    return rtt


def send(cc: CongestionController, t: float, count: int, size: int = MDS) -> list[SentPacket]:
    packets = [pkt(t, size) for _ in range(count)]
    for packet in packets:
        cc.on_packet_sent(packet, t)
    return packets


def lose_one(cc: CongestionController, t_sent: float, t_lost: float) -> None:
    packet = send(cc, t_sent, 1)[0]
    cc.on_packets_lost([packet], t_lost)


# -- shared behaviour ---------------------------------------------------------------


def test_initial_and_minimum_window() -> None:
    assert initial_window(1200) == 12000
    assert initial_window(1500) == 14720
    assert initial_window(9000) == 18000
    assert minimum_window(1500) == 3000
    for name in ALGORITHMS:
        cc = create_congestion_controller(name, max_datagram_size=1500)
        assert cc.congestion_window == 14720
        assert cc.ssthresh is None
        assert cc.available() == 14720
        assert cc.minimum_window == 3000


def test_factory_names_and_errors() -> None:
    assert isinstance(create_congestion_controller(), Cubic)
    assert isinstance(create_congestion_controller("newreno"), NewReno)
    with pytest.raises(ValueError, match="cubic") as info:
        create_congestion_controller("bbr")
    assert "newreno" in str(info.value)
    with pytest.raises(ValueError):
        create_congestion_controller("cubic", max_datagram_size=1000)


@pytest.mark.parametrize("name", ALGORITHMS)
def test_slow_start_doubles_per_round_trip(name: str) -> None:
    cc = create_congestion_controller(name)
    rtt = rtt_of(0.1)
    packets = send(cc, 0.0, 10)
    assert cc.bytes_in_flight == 12000
    assert cc.available() == 0
    cc.on_packets_acked(packets, 0.1, rtt)
    assert cc.congestion_window == 24000
    assert cc.bytes_in_flight == 0
    packets = send(cc, 0.1, 20)
    cc.on_packets_acked(packets[:10], 0.2, rtt)
    cc.on_packets_acked(packets[10:], 0.2, rtt)
    assert cc.congestion_window == 48000
    assert cc.in_slow_start


@pytest.mark.parametrize("name", ALGORITHMS)
def test_one_reduction_per_recovery_period(name: str) -> None:
    cc = create_congestion_controller(name)
    factor = 0.5 if name == "newreno" else 0.7
    rtt = rtt_of(0.1)
    packets = send(cc, 0.0, 10)
    cc.on_packets_lost(packets[:1], 0.2)
    reduced = int(12000 * factor)
    assert cc.congestion_window == reduced
    assert cc.ssthresh == reduced
    assert cc.recovery_start_time == 0.2
    # More losses of packets sent before the recovery period: no new cut.
    cc.on_packets_lost(packets[1:3], 0.25)
    assert cc.congestion_window == reduced
    # Acknowledgments of packets sent before it do not grow the window.
    cc.on_packets_acked(packets[3:], 0.3, rtt)
    assert cc.congestion_window == reduced
    assert cc.bytes_in_flight == 0
    # A loss of a packet sent after the recovery period began is a new event.
    lose_one(cc, 0.3, 0.5)
    assert cc.congestion_window == max(int(reduced * factor), 2 * MDS)
    assert cc.recovery_start_time == 0.5


@pytest.mark.parametrize("name", ALGORITHMS)
def test_reduction_never_below_minimum_window(name: str) -> None:
    cc = create_congestion_controller(name)
    for i in range(10):
        lose_one(cc, float(i), i + 0.5)
    assert cc.congestion_window == 2 * MDS
    assert cc.ssthresh == 2 * MDS


@pytest.mark.parametrize("name", ALGORITHMS)
def test_no_growth_when_app_limited(name: str) -> None:
    cc = create_congestion_controller(name)
    rtt = rtt_of(0.1)
    packets = send(cc, 0.0, 2)  # 2400 of 12000: far from using the window
    cc.on_packets_acked(packets, 0.1, rtt)
    assert cc.congestion_window == 12000
    # The same in congestion avoidance.
    lose_one(cc, 0.1, 0.2)
    window = cc.congestion_window
    for i in range(20):
        packets = send(cc, 0.3 + i, 1)
        cc.on_packets_acked(packets, 0.4 + i, rtt)
    assert cc.congestion_window == window


@pytest.mark.parametrize("name", ALGORITHMS)
def test_on_app_limited_stops_growth_until_window_is_filled(name: str) -> None:
    cc = create_congestion_controller(name)
    rtt = rtt_of(0.1)
    packets = send(cc, 0.0, 10)
    cc.on_packets_acked(packets[:2], 0.1, rtt)
    assert cc.congestion_window == 14400
    # Nothing more to send: the rest of the window's ACKs must not grow it,
    # although 8 of 12 packets are still in flight.
    cc.on_app_limited()
    cc.on_packets_acked(packets[2:4], 0.1, rtt)
    assert cc.congestion_window == 14400
    assert not cc.is_cwnd_limited()
    # Filling the window again ends the application-limited period.
    more = send(cc, 0.1, cc.available() // MDS)
    assert cc.is_cwnd_limited()
    cc.on_packets_acked(packets[4:5], 0.2, rtt)
    assert cc.congestion_window == 15600
    assert more


@pytest.mark.parametrize("name", ALGORITHMS)
def test_persistent_congestion_collapses_window(name: str) -> None:
    cc = create_congestion_controller(name)
    packets = send(cc, 0.0, 10)
    cc.on_packets_lost(packets[:5], 1.0)
    cc.on_persistent_congestion(1.0)
    assert cc.congestion_window == 2 * MDS
    assert cc.bytes_in_flight == 5 * MDS
    assert cc.available() == 0
    assert cc.recovery_start_time is None
    # The window then regrows in slow start, up to ssthresh and no further.
    assert cc.in_slow_start
    rtt = rtt_of(0.1)
    more = send(cc, 1.1, 20)
    cc.on_packets_acked(packets[5:] + more, 1.2, rtt)
    assert cc.ssthresh is not None
    assert cc.congestion_window == cc.ssthresh
    assert not cc.in_slow_start


@pytest.mark.parametrize("name", ALGORITHMS)
def test_discard_and_non_in_flight_packets(name: str) -> None:
    cc = create_congestion_controller(name)
    packets = send(cc, 0.0, 3)
    ack_only = pkt(0.0, 50, in_flight=False)
    cc.on_packet_sent(ack_only, 0.0)
    assert cc.bytes_in_flight == 3 * MDS
    cc.discard([*packets[:2], ack_only])
    assert cc.bytes_in_flight == MDS
    assert cc.congestion_window == 12000
    cc.on_packets_lost([ack_only], 1.0)  # not in flight: no congestion event
    assert cc.congestion_window == 12000
    assert cc.recovery_start_time is None


@pytest.mark.parametrize("name", ALGORITHMS)
def test_ecn_ce_is_a_congestion_event(name: str) -> None:
    cc = create_congestion_controller(name)
    cc.on_ecn_ce(1.0)
    assert cc.congestion_window < 12000
    window = cc.congestion_window
    cc.on_ecn_ce(1.1, sent_time=0.9)  # a packet sent before recovery began
    assert cc.congestion_window == window


@pytest.mark.parametrize("name", ALGORITHMS)
def test_max_datagram_size_change(name: str) -> None:
    cc = create_congestion_controller(name)
    for i in range(10):
        lose_one(cc, float(i), i + 0.5)
    cc.max_datagram_size = 1500
    assert cc.max_datagram_size == 1500
    assert cc.congestion_window == 3000
    with pytest.raises(ValueError):
        cc.max_datagram_size = 500


# -- NewReno --------------------------------------------------------------------------


def test_newreno_congestion_avoidance_one_datagram_per_window() -> None:
    cc = NewReno()
    rtt = rtt_of(0.1)
    lose_one(cc, 0.0, 0.1)
    assert cc.congestion_window == 6000
    assert not cc.in_slow_start
    packets = send(cc, 0.2, 5)
    cc.on_packets_acked(packets[:3], 0.3, rtt)
    assert cc.congestion_window == 6000
    cc.on_packets_acked(packets[3:], 0.3, rtt)
    assert cc.congestion_window == 7200
    # Growth is linear: ~one datagram per round trip.
    for i in range(10):
        window = cc.congestion_window
        packets = send(cc, 1.0 + i, window // MDS)
        cc.on_packets_acked(packets, 1.1 + i, rtt)
        assert cc.congestion_window == window + MDS


# -- CUBIC ------------------------------------------------------------------------------


def cubic_after_loss(w_max_segments: int, **kwargs: bool) -> Cubic:
    """A CUBIC controller that just lost a packet at t=1 with cwnd = W_max."""
    cc = Cubic(**kwargs)
    cc.congestion_window = w_max_segments * MDS
    lose_one(cc, 0.5, 1.0)
    return cc


def w_max_of(cc: Cubic) -> float | None:
    return cc.w_max


def in_css(hystart: HyStart) -> bool:
    return hystart.in_css


def ca_round(cc: Cubic, now: float, rtt: RttEstimator) -> float:
    """Send a full window (as one packet) at ``now``; ACK it one RTT later."""
    packet = pkt(now, cc.available())
    cc.on_packet_sent(packet, now)
    cc.on_packets_acked([packet], now + rtt.smoothed_rtt, rtt)
    return now + rtt.smoothed_rtt


def test_cubic_formulas() -> None:
    k = cubic_k(100, 70)
    assert k == pytest.approx((30 / 0.4) ** (1 / 3))
    assert w_cubic(0.0, k, 100) == pytest.approx(70)
    assert w_cubic(k, k, 100) == pytest.approx(100)
    assert w_cubic(k + 2, k, 100) == pytest.approx(100 + C * 8)
    assert w_cubic(k - 1, k, 100) == pytest.approx(100 - C)
    assert cubic_k(100, 120) < 0  # epoch starting above W_max: already convex
    assert abs(ALPHA_CUBIC - 3 * 0.3 / 1.7) < 1e-12


def test_cubic_window_after_loss_is_beta_times_w_max() -> None:
    cc = cubic_after_loss(100)
    assert cc.w_max == 100 * MDS
    assert cc.congestion_window == 70 * MDS
    assert cc.ssthresh == 70 * MDS


def test_cubic_epoch_starts_at_first_growing_ack_with_k() -> None:
    cc = cubic_after_loss(100)
    rtt = rtt_of(0.2)
    assert cc.epoch_start is None
    # ACKs of packets sent before the loss do not start the epoch.
    ca_round(cc, 0.9, rtt)
    assert cc.epoch_start is None
    ca_round(cc, 1.1, rtt)
    assert cc.epoch_start == pytest.approx(1.3)
    assert cc.k == pytest.approx(math.cbrt((100 - 70) / 0.4))


def test_cubic_growth_follows_w_cubic() -> None:
    cc = cubic_after_loss(100)
    rtt = rtt_of(0.2)
    now = 1.1
    below = above = False
    cubic_rounds = 0
    for _ in range(40):
        now = ca_round(cc, now, rtt)
        start = cc.epoch_start
        assert start is not None
        t = now - start
        if w_cubic(t, cc.k, 100) * MDS < cc.w_est:
            # Reno-friendly region (only at the very start of the epoch,
            # where W_cubic(0) = cwnd_epoch = the initial W_est).
            assert t < 0.5
            assert cc.congestion_window == pytest.approx(cc.w_est, abs=1)
            continue
        cubic_rounds += 1
        # One full window per ACK: the window reaches W_cubic(t + RTT).
        expected = w_cubic(t + 0.2, cc.k, 100) * MDS
        assert cc.congestion_window == pytest.approx(expected, abs=2)
        if t + 0.2 < cc.k - 0.5:
            below = True
            assert cc.congestion_window < 100 * MDS  # concave
        if t + 0.2 > cc.k + 0.5:
            above = True
            assert cc.congestion_window > 100 * MDS  # convex
    assert cubic_rounds >= 38
    assert below and above


def test_cubic_growth_is_capped_at_one_and_a_half_per_rtt() -> None:
    cc = cubic_after_loss(100)
    rtt = rtt_of(5.0)  # W_cubic(t + RTT) is far above the window
    now = ca_round(cc, 1.1, rtt)
    for _ in range(2):
        window = cc.congestion_window
        now = ca_round(cc, now, rtt)
        assert cc.congestion_window == pytest.approx(window * 1.5, abs=2)


def test_cubic_reno_friendly_region_dominates_for_short_rtt() -> None:
    cc = cubic_after_loss(100)
    rtt = rtt_of(0.001)
    now = 1.1
    previous = cc.congestion_window
    for _ in range(100):
        now = ca_round(cc, now, rtt)
        start = cc.epoch_start
        assert start is not None
        assert w_cubic(now - start, cc.k, 100) * MDS < cc.w_est
        assert cc.congestion_window == pytest.approx(cc.w_est, abs=1)
        growth = cc.congestion_window - previous
        # RFC 9438 §4.3: alpha_cubic per RTT until W_est reaches cwnd_prior, then 1.
        expected = MDS * (1.0 if previous >= 100 * MDS else ALPHA_CUBIC)
        assert growth == pytest.approx(expected, abs=2)
        previous = cc.congestion_window
    assert cc.congestion_window > 100 * MDS


def test_cubic_fast_convergence_lowers_w_max() -> None:
    cc = cubic_after_loss(100)
    cc.congestion_window = 80 * MDS
    lose_one(cc, 2.0, 3.0)
    assert cc.w_max == pytest.approx(80 * MDS * (1 + 0.7) / 2)
    assert cc.congestion_window == 56 * MDS

    plain = cubic_after_loss(100, fast_convergence=False)
    plain.congestion_window = 80 * MDS
    lose_one(plain, 2.0, 3.0)
    assert plain.w_max == 80 * MDS

    # A loss above the old W_max just records the new maximum.
    higher = cubic_after_loss(100)
    higher.congestion_window = 120 * MDS
    lose_one(higher, 2.0, 3.0)
    assert higher.w_max == 120 * MDS


def test_cubic_epoch_does_not_advance_while_app_limited() -> None:
    cc = cubic_after_loss(100)
    rtt = rtt_of(0.2)
    now = ca_round(cc, 1.1, rtt)  # epoch starts at 1.3
    assert cc.epoch_start == pytest.approx(1.3)
    window = cc.congestion_window
    # Application-limited from 1.5 to 10: one small packet per round trip.
    t = 1.3
    while t < 10.0:
        small = send(cc, t, 1)
        cc.on_packets_acked(small, t + 0.2, rtt)
        t += 0.2
    assert cc.congestion_window == window
    app_limited_from = 1.5
    now = ca_round(cc, t, rtt)
    assert cc.epoch_start == pytest.approx(1.3 + (now - app_limited_from))
    # The window continues as if only the cwnd-limited time had passed.
    assert cc.congestion_window == pytest.approx(w_cubic(0.2 + 0.2, cc.k, 100) * MDS, abs=2)


def test_cubic_after_persistent_congestion_restarts_with_k_zero() -> None:
    cc = cubic_after_loss(100)
    cc.on_persistent_congestion(2.0)
    assert cc.congestion_window == 2 * MDS
    assert w_max_of(cc) is None
    rtt = rtt_of(0.1)
    now = 2.0
    while cc.in_slow_start:
        now = ca_round(cc, now, rtt)
    ca_round(cc, now, rtt)
    assert cc.k == 0.0
    # W_max = the window when congestion avoidance began: ssthresh, 70 segments.
    assert w_max_of(cc) == pytest.approx(70 * MDS, abs=1)


# -- HyStart++ (RFC 9406) -------------------------------------------------------------


class AckClock:
    """Keeps the window full and acknowledges the oldest packet, one at a time."""

    def __init__(self, cc: Cubic, sample: Callable[[int], float]) -> None:
        self.cc = cc
        self.sample = sample
        self.rtt = RttEstimator()
        self.in_flight: deque[SentPacket] = deque()
        self.now = 0.0
        self._refill()

    def _refill(self) -> None:
        while self.cc.available() >= MDS:
            packet = pkt(self.now)
            self.cc.on_packet_sent(packet, self.now)
            self.in_flight.append(packet)

    def step(self) -> int:
        """ACK one packet; returns the window growth it caused."""
        packet = self.in_flight.popleft()
        self.now += 0.001
        self.rtt.update(
            self.sample(packet.sequence), 0.0, max_ack_delay=0.0, handshake_confirmed=True
        )
        before = self.cc.congestion_window
        self.cc.on_packets_acked([packet], self.now, self.rtt)
        self._refill()
        return self.cc.congestion_window - before


def test_hystart_stays_in_slow_start_while_rtt_is_flat() -> None:
    cc = Cubic()
    clock = AckClock(cc, lambda seq: 0.1)
    for _ in range(300):
        assert clock.step() == MDS
    assert cc.ssthresh is None
    assert cc.hystart is not None and not cc.hystart.in_css


def test_hystart_delay_increase_enters_css_then_congestion_avoidance() -> None:
    cc = Cubic()
    hystart = cc.hystart
    assert hystart is not None
    # Rounds: seq 0-9, 10-29, 30-69, ... The third round sees RTT rise 30 ms,
    # above the threshold max(4 ms, min(100 ms / 8, 16 ms)) = 12.5 ms.
    clock = AckClock(cc, lambda seq: 0.1 if seq < 30 else 0.13)
    steps = 0
    while True:
        growth = clock.step()
        steps += 1
        if hystart.in_css:
            break
        assert growth == MDS
    assert steps == 30 + 8  # the 8th sample of the third round
    assert hystart.css_baseline_min_rtt == pytest.approx(0.13)
    css_growth = [clock.step() for _ in range(20)]
    assert sum(css_growth) == pytest.approx(20 * MDS / 4, abs=1)  # CSS_GROWTH_DIVISOR
    while cc.ssthresh is None:
        clock.step()
        steps += 1
        assert steps < 2000
    assert hystart.css_rounds == 5
    assert cc.ssthresh == cc.congestion_window
    assert not cc.in_slow_start


def test_hystart_spurious_exit_resumes_slow_start() -> None:
    cc = Cubic()
    hystart = cc.hystart
    assert hystart is not None
    clock = AckClock(cc, lambda seq: 0.13 if 30 <= seq < 75 else 0.1)
    while not in_css(hystart):
        clock.step()
    while in_css(hystart):
        clock.step()
    assert cc.ssthresh is None
    assert clock.step() == MDS  # full slow start growth again


def test_hystart_only_in_first_slow_start() -> None:
    cc = Cubic()
    lose_one(cc, 0.0, 0.1)
    cc.on_persistent_congestion(0.2)
    clock = AckClock(cc, lambda seq: 0.1 if seq < 30 else 0.5)
    for _ in range(4):
        assert clock.step() == MDS
    assert cc.hystart is not None and not cc.hystart.in_css
