"""Loss detection, RTT estimation and the PTO (RFC 9002 §5, §6, App. A)."""

from __future__ import annotations

import pytest

from ghostwire.quic.congestion import NewReno
from ghostwire.quic.errors import QuicProtocolError, TransportErrorCode
from ghostwire.quic.recovery import (
    K_GRANULARITY,
    LossRecovery,
    RttEstimator,
    SentPacket,
    Space,
    loss_delay,
    loss_time_of,
    lost_by_packet_threshold,
    lost_by_time_threshold,
    persistent_congestion_duration,
)

INITIAL_RTT = 0.333
INITIAL_PTO = INITIAL_RTT + 4 * (INITIAL_RTT / 2)


def make(*, is_client: bool = False) -> LossRecovery:
    return LossRecovery(congestion=NewReno(), initial_rtt=INITIAL_RTT, is_client=is_client)


def send(
    rec: LossRecovery,
    space: Space,
    pn: int,
    t: float,
    *,
    size: int = 1200,
    ack_eliciting: bool = True,
    in_flight: bool = True,
) -> SentPacket:
    packet = SentPacket(pn, space, t, size, ack_eliciting, in_flight, [])
    rec.on_packet_sent(packet)
    return packet


def validated(rec: LossRecovery) -> bool:
    return rec.peer_completed_address_validation


def pns(packets: list[SentPacket]) -> list[int]:
    return [p.packet_number for p in packets]


# -- RTT estimator ------------------------------------------------------------------


def test_rtt_before_any_sample_uses_initial_rtt() -> None:
    rtt = RttEstimator(0.5)
    assert not rtt.has_sample
    assert rtt.smoothed_rtt == 0.5
    assert rtt.rttvar == 0.25
    assert rtt.pto_base() == pytest.approx(0.5 + 4 * 0.25)


def test_rtt_first_sample_initialises() -> None:
    rtt = RttEstimator()
    rtt.update(0.1, 0.05, max_ack_delay=0.025, handshake_confirmed=True)
    assert rtt.has_sample
    assert rtt.latest_rtt == 0.1
    assert rtt.min_rtt == 0.1
    assert rtt.smoothed_rtt == 0.1  # the first sample ignores ack delay
    assert rtt.rttvar == 0.05


def test_rtt_ack_delay_capped_by_max_ack_delay_once_confirmed() -> None:
    rtt = RttEstimator()
    rtt.update(0.1, 0.0, max_ack_delay=0.025, handshake_confirmed=True)
    rtt.update(0.2, 0.05, max_ack_delay=0.025, handshake_confirmed=True)
    adjusted = 0.2 - 0.025
    assert rtt.smoothed_rtt == pytest.approx(0.875 * 0.1 + 0.125 * adjusted)
    assert rtt.rttvar == pytest.approx(0.75 * 0.05 + 0.25 * abs(0.1 - adjusted))
    assert rtt.min_rtt == 0.1


def test_rtt_ack_delay_not_capped_before_confirmation() -> None:
    rtt = RttEstimator()
    rtt.update(0.1, 0.0, max_ack_delay=0.025, handshake_confirmed=False)
    rtt.update(0.2, 0.05, max_ack_delay=0.025, handshake_confirmed=False)
    assert rtt.smoothed_rtt == pytest.approx(0.875 * 0.1 + 0.125 * 0.15)


def test_rtt_ack_delay_ignored_if_it_would_go_below_min_rtt() -> None:
    rtt = RttEstimator()
    rtt.update(0.1, 0.0, max_ack_delay=0.025, handshake_confirmed=True)
    rtt.update(0.12, 0.025, max_ack_delay=0.025, handshake_confirmed=True)
    # 0.12 < min_rtt + ack_delay = 0.125: the sample is used unadjusted.
    assert rtt.smoothed_rtt == pytest.approx(0.875 * 0.1 + 0.125 * 0.12)


def test_min_rtt_tracks_raw_samples() -> None:
    rtt = RttEstimator()
    rtt.update(0.1, 0.0, max_ack_delay=0.0, handshake_confirmed=True)
    rtt.update(0.08, 0.05, max_ack_delay=0.1, handshake_confirmed=True)
    assert rtt.min_rtt == 0.08
    rtt.update(0.3, 0.0, max_ack_delay=0.0, handshake_confirmed=True)
    assert rtt.min_rtt == 0.08
    assert rtt.samples == 3


def test_pto_base_has_granularity_floor() -> None:
    rtt = RttEstimator()
    rtt.update(0.01, 0.0, max_ack_delay=0.0, handshake_confirmed=True)
    for _ in range(50):
        rtt.update(0.01, 0.0, max_ack_delay=0.0, handshake_confirmed=True)
    assert rtt.rttvar < K_GRANULARITY / 4
    assert rtt.pto_base() == pytest.approx(rtt.smoothed_rtt + K_GRANULARITY)


def test_rtt_sample_from_ack_uses_largest_acked_send_time() -> None:
    rec = make()
    send(rec, Space.INITIAL, 0, 0.0)
    send(rec, Space.INITIAL, 1, 0.05, ack_eliciting=False, in_flight=False)
    result = rec.on_ack_received(Space.INITIAL, [(0, 1)], 0.0, 0.2)
    assert result.rtt_sample
    assert rec.rtt.latest_rtt == pytest.approx(0.15)
    assert pns(result.acked) == [0, 1]


def test_no_rtt_sample_without_new_ack_eliciting_packet() -> None:
    rec = make()
    send(rec, Space.INITIAL, 0, 0.0, ack_eliciting=False, in_flight=False)
    result = rec.on_ack_received(Space.INITIAL, [(0, 0)], 0.0, 0.2)
    assert pns(result.acked) == [0]
    assert not result.rtt_sample
    assert not rec.rtt.has_sample


def test_no_rtt_sample_when_largest_not_newly_acked() -> None:
    rec = make()
    send(rec, Space.INITIAL, 0, 0.0)
    send(rec, Space.INITIAL, 1, 0.0)
    rec.on_ack_received(Space.INITIAL, [(1, 1)], 0.0, 0.1)
    samples = rec.rtt.samples
    result = rec.on_ack_received(Space.INITIAL, [(0, 1)], 0.0, 0.5)
    assert pns(result.acked) == [0]
    assert not result.rtt_sample
    assert rec.rtt.samples == samples
    # A duplicate ACK acknowledges nothing new.
    assert rec.on_ack_received(Space.INITIAL, [(0, 1)], 0.0, 0.6).acked == []


def test_ack_delay_ignored_in_handshake_spaces_but_used_for_application() -> None:
    rec = make()
    rec.handshake_confirmed = True
    rec.peer_max_ack_delay = 0.025
    send(rec, Space.HANDSHAKE, 0, 0.0)
    send(rec, Space.HANDSHAKE, 1, 1.0)
    rec.on_ack_received(Space.HANDSHAKE, [(0, 0)], 0.0, 0.1)
    rec.on_ack_received(Space.HANDSHAKE, [(1, 1)], 0.02, 1.2)
    assert rec.rtt.smoothed_rtt == pytest.approx(0.875 * 0.1 + 0.125 * 0.2)
    srtt = rec.rtt.smoothed_rtt
    send(rec, Space.APPLICATION, 0, 2.0)
    rec.on_ack_received(Space.APPLICATION, [(0, 0)], 0.02, 2.2)
    assert rec.rtt.smoothed_rtt == pytest.approx(0.875 * srtt + 0.125 * 0.18)


# -- loss detection math --------------------------------------------------------------


def test_loss_math_helpers() -> None:
    assert loss_delay(0.1, 0.2) == pytest.approx(9 / 8 * 0.2)
    assert loss_delay(0.3, 0.2) == pytest.approx(9 / 8 * 0.3)
    assert loss_delay(0.0, 0.0) == K_GRANULARITY
    assert lost_by_packet_threshold(4, 7)
    assert not lost_by_packet_threshold(5, 7)
    assert lost_by_time_threshold(1.0, 1.5, 0.5)
    assert not lost_by_time_threshold(1.0, 1.4, 0.5)
    assert loss_time_of(1.0, 0.5) == 1.5
    assert persistent_congestion_duration(0.1, 0.05, 0.025) == pytest.approx(3 * 0.325)
    assert persistent_congestion_duration(0.1, 0.0, 0.0) == pytest.approx(3 * 0.101)


def test_packet_threshold_loss_and_loss_timer() -> None:
    rec = make()
    packets = [send(rec, Space.INITIAL, pn, pn * 0.01) for pn in range(5)]
    result = rec.on_ack_received(Space.INITIAL, [(3, 3)], 0.0, 0.2)
    assert pns(result.acked) == [3]
    assert pns(result.lost) == [0]  # 3 >= 0 + kPacketThreshold
    delay = 9 / 8 * max(rec.rtt.latest_rtt, rec.rtt.smoothed_rtt)
    assert rec.loss_detection_timer() == pytest.approx(packets[1].time_sent + delay)
    assert rec.bytes_in_flight == 3 * 1200  # 1, 2 and 4 remain


def test_time_threshold_loss_on_timer() -> None:
    rec = make()
    send(rec, Space.INITIAL, 0, 0.0)
    send(rec, Space.INITIAL, 1, 0.005)
    send(rec, Space.INITIAL, 2, 0.01)
    result = rec.on_ack_received(Space.INITIAL, [(2, 2)], 0.0, 0.11)  # rtt sample 0.1
    assert result.lost == []  # both were sent less than 9/8 RTT ago
    timer = rec.loss_detection_timer()
    assert timer is not None
    assert timer == pytest.approx(0.0 + 9 / 8 * 0.1)
    early = rec.on_loss_detection_timeout(timer - 0.001)
    assert early.lost == [] and early.probe_space is None
    fired = rec.on_loss_detection_timeout(timer)
    assert pns(fired.lost) == [0]
    assert fired.probe_space is None
    assert rec.pto_count == 0
    assert rec.loss_detection_timer() == pytest.approx(0.005 + 9 / 8 * 0.1)
    fired = rec.on_loss_detection_timeout(0.005 + 9 / 8 * 0.1)
    assert pns(fired.lost) == [1]
    assert rec.bytes_in_flight == 0


def test_time_threshold_loss_on_ack() -> None:
    rec = make()
    send(rec, Space.INITIAL, 0, 0.0)
    send(rec, Space.INITIAL, 1, 0.5)
    result = rec.on_ack_received(Space.INITIAL, [(1, 1)], 0.0, 0.6)
    # loss_delay = 9/8 * 0.1 and packet 0 went out 0.6 s ago.
    assert pns(result.lost) == [0]


def test_acknowledging_a_hole_below_the_largest() -> None:
    rec = make()
    for pn in range(6):
        send(rec, Space.INITIAL, pn, 0.0)
    result = rec.on_ack_received(Space.INITIAL, [(4, 5), (0, 1)], 0.0, 0.01)
    assert pns(result.acked) == [0, 1, 4, 5]
    assert pns(result.lost) == [2]
    result = rec.on_ack_received(Space.INITIAL, [(3, 5), (0, 1)], 0.0, 0.02)
    assert pns(result.acked) == [3]
    assert rec.bytes_in_flight == 0
    assert rec.loss_detection_timer() is None


def test_non_in_flight_packets_do_not_count_in_bytes_in_flight() -> None:
    rec = make()
    send(rec, Space.INITIAL, 0, 0.0, size=50, ack_eliciting=False, in_flight=False)
    send(rec, Space.INITIAL, 1, 0.0, size=1200)
    assert rec.bytes_in_flight == 1200
    rec.on_ack_received(Space.INITIAL, [(0, 0)], 0.0, 0.1)
    assert rec.bytes_in_flight == 1200


# -- PTO --------------------------------------------------------------------------------


def test_pto_fires_and_backs_off() -> None:
    rec = make()
    send(rec, Space.INITIAL, 0, 0.0)
    assert rec.loss_detection_timer() == pytest.approx(INITIAL_PTO)
    assert rec.pto_duration(Space.INITIAL) == pytest.approx(INITIAL_PTO)
    result = rec.on_loss_detection_timeout(INITIAL_PTO)
    assert result.lost == []
    assert result.probe_space is Space.INITIAL
    assert result.probes == 2
    assert rec.pto_count == 1
    assert rec.loss_detection_timer() == pytest.approx(2 * INITIAL_PTO)
    assert rec.pto_duration(Space.INITIAL) == pytest.approx(2 * INITIAL_PTO)
    rec.on_loss_detection_timeout(2 * INITIAL_PTO)
    assert rec.pto_count == 2
    assert rec.loss_detection_timer() == pytest.approx(4 * INITIAL_PTO)


def test_pto_picks_earliest_space() -> None:
    rec = make()
    send(rec, Space.INITIAL, 0, 0.0)
    send(rec, Space.HANDSHAKE, 0, 0.1)
    result = rec.on_loss_detection_timeout(INITIAL_PTO)
    assert result.probe_space is Space.INITIAL


def test_application_pto_waits_for_confirmation_and_adds_max_ack_delay() -> None:
    rec = make()
    rec.peer_max_ack_delay = 0.025
    send(rec, Space.APPLICATION, 0, 1.0)
    assert rec.loss_detection_timer() is None  # RFC 9002 §6.2.1
    rec.handshake_confirmed = True
    assert rec.loss_detection_timer() == pytest.approx(1.0 + INITIAL_PTO + 0.025)
    assert rec.pto_duration(Space.APPLICATION) == pytest.approx(INITIAL_PTO + 0.025)
    result = rec.on_loss_detection_timeout(1.0 + INITIAL_PTO + 0.025)
    assert result.probe_space is Space.APPLICATION
    assert rec.loss_detection_timer() == pytest.approx(1.0 + 2 * (INITIAL_PTO + 0.025))


def test_pto_count_reset_on_ack_for_server() -> None:
    rec = make()
    send(rec, Space.INITIAL, 0, 0.0)
    send(rec, Space.INITIAL, 1, 0.0)
    rec.on_loss_detection_timeout(INITIAL_PTO)
    assert rec.pto_count == 1
    rec.on_ack_received(Space.INITIAL, [(0, 0)], 0.0, 1.1)
    assert rec.pto_count == 0


def test_client_keeps_pto_count_on_initial_ack_until_handshake_ack() -> None:
    rec = make(is_client=True)
    send(rec, Space.INITIAL, 0, 0.0)
    send(rec, Space.INITIAL, 1, 0.0)
    rec.on_loss_detection_timeout(INITIAL_PTO)
    rec.on_ack_received(Space.INITIAL, [(0, 0)], 0.0, 1.1)
    assert rec.pto_count == 1  # App. A.7: address validation not yet known
    assert not validated(rec)
    send(rec, Space.HANDSHAKE, 0, 1.2)
    rec.on_ack_received(Space.HANDSHAKE, [(0, 0)], 0.0, 1.3)
    assert validated(rec)
    assert rec.pto_count == 0


def test_client_pto_count_reset_once_validation_is_known() -> None:
    rec = make(is_client=True)
    send(rec, Space.APPLICATION, 0, 0.0)
    send(rec, Space.APPLICATION, 1, 0.0)
    rec.handshake_confirmed = True
    rec.peer_completed_address_validation = True
    rec.on_loss_detection_timeout(INITIAL_PTO)
    assert rec.pto_count == 1
    rec.on_ack_received(Space.APPLICATION, [(0, 0)], 0.0, 1.1)
    assert rec.pto_count == 0


def test_client_anti_deadlock_pto() -> None:
    rec = make(is_client=True)
    send(rec, Space.INITIAL, 0, 0.0)
    rec.on_ack_received(Space.INITIAL, [(0, 0)], 0.0, 0.1)
    # Nothing ack-eliciting in flight, but the server may be blocked by the
    # amplification limit: the client must keep a timer (RFC 9002 §6.2.2.1).
    pto = 0.1 + 4 * 0.05
    assert rec.loss_detection_timer() == pytest.approx(0.1 + pto)
    result = rec.on_loss_detection_timeout(0.1 + pto)
    assert result.probe_space is Space.INITIAL
    assert result.probes == 1
    assert rec.pto_count == 1
    assert rec.loss_detection_timer() == pytest.approx(0.1 + pto + 2 * pto)
    rec.has_handshake_keys = True
    result = rec.on_loss_detection_timeout(0.1 + 3 * pto)
    assert result.probe_space is Space.HANDSHAKE


def test_client_timer_is_unset_until_a_packet_is_sent() -> None:
    # RFC 9002 §6.2, App. A.5/A.8: the timer is armed when a packet goes in
    # flight, not at time 0 (which would fire a probe for a packet never sent).
    rec = make(is_client=True)
    assert rec.loss_detection_timer() is None
    result = rec.on_loss_detection_timeout(50.0)
    assert result.probe_space is None and result.probes == 0
    assert rec.pto_count == 0
    send(rec, Space.INITIAL, 0, 100.0)
    assert rec.loss_detection_timer() == pytest.approx(100.0 + INITIAL_PTO)


def test_server_has_no_anti_deadlock_timer() -> None:
    rec = make(is_client=False)
    send(rec, Space.INITIAL, 0, 0.0)
    rec.on_ack_received(Space.INITIAL, [(0, 0)], 0.0, 0.1)
    assert rec.loss_detection_timer() is None
    assert rec.on_loss_detection_timeout(10.0).probe_space is None


def test_client_timer_stops_once_validated_and_idle() -> None:
    rec = make(is_client=True)
    send(rec, Space.HANDSHAKE, 0, 0.0)
    rec.on_ack_received(Space.HANDSHAKE, [(0, 0)], 0.0, 0.1)
    assert rec.loss_detection_timer() is None


def test_server_arms_no_timer_while_amplification_blocked() -> None:
    rec = make(is_client=False)
    send(rec, Space.INITIAL, 0, 0.0)
    rec.amplification_blocked = True
    assert rec.loss_detection_timer() is None
    assert rec.on_loss_detection_timeout(5.0).probe_space is None
    rec.amplification_blocked = False
    assert rec.loss_detection_timer() == pytest.approx(INITIAL_PTO)


# -- persistent congestion ---------------------------------------------------------------


def _with_rtt_sample(rec: LossRecovery) -> None:
    send(rec, Space.APPLICATION, 0, 0.0)
    rec.on_ack_received(Space.APPLICATION, [(0, 0)], 0.0, 0.1)  # srtt 0.1, rttvar 0.05


def test_persistent_congestion_collapses_window() -> None:
    rec = make()
    _with_rtt_sample(rec)
    for pn, t in ((1, 0.2), (2, 0.5), (3, 0.8), (4, 1.15)):
        send(rec, Space.APPLICATION, pn, t)
    send(rec, Space.APPLICATION, 5, 1.2)
    result = rec.on_ack_received(Space.APPLICATION, [(5, 5)], 0.0, 1.3)
    assert pns(result.lost) == [1, 2, 3, 4]
    # After this ACK's sample: srtt 0.1, rttvar 0.0375 -> duration 0.75 < 0.95.
    assert result.persistent_congestion
    # Collapsed to the minimum window (2400); App. B.8 also ends the recovery
    # period, so the ACK of packet 5 then grows it in slow start.
    assert rec.congestion.congestion_window == 2 * 1200 + 1200
    assert rec.congestion.ssthresh == 6000


def test_short_loss_span_is_not_persistent_congestion() -> None:
    rec = make()
    _with_rtt_sample(rec)
    for pn, t in ((1, 0.2), (2, 0.5), (3, 0.9)):
        send(rec, Space.APPLICATION, pn, t)
    send(rec, Space.APPLICATION, 4, 1.0)
    result = rec.on_ack_received(Space.APPLICATION, [(4, 4)], 0.0, 1.1)
    assert pns(result.lost) == [1, 2, 3]  # span 0.7 < 0.75
    assert not result.persistent_congestion
    assert rec.congestion.congestion_window == 12000 // 2


def test_persistent_congestion_includes_max_ack_delay() -> None:
    rec = make()
    rec.peer_max_ack_delay = 0.1  # duration (0.1 + 0.15 + 0.1) * 3 = 1.05
    _with_rtt_sample(rec)
    for pn, t in ((1, 0.2), (2, 0.5), (3, 0.8), (4, 1.15)):
        send(rec, Space.APPLICATION, pn, t)
    send(rec, Space.APPLICATION, 5, 1.2)
    result = rec.on_ack_received(Space.APPLICATION, [(5, 5)], 0.0, 1.3)
    assert len(result.lost) == 4
    assert not result.persistent_congestion


def test_no_persistent_congestion_from_packets_sent_before_first_rtt_sample() -> None:
    rec = make()
    for pn, t in ((0, 0.0), (1, 0.5), (2, 1.0), (3, 1.5)):
        send(rec, Space.APPLICATION, pn, t)
    send(rec, Space.APPLICATION, 4, 1.6)
    result = rec.on_ack_received(Space.APPLICATION, [(4, 4)], 0.0, 1.7)
    assert pns(result.lost) == [0, 1, 2, 3]
    assert not result.persistent_congestion
    assert rec.congestion.congestion_window == 12000 // 2


def test_acknowledged_packet_in_between_breaks_persistent_congestion() -> None:
    rec = make()
    _with_rtt_sample(rec)
    send(rec, Space.APPLICATION, 1, 0.2)
    send(rec, Space.APPLICATION, 2, 0.5)
    send(rec, Space.APPLICATION, 3, 0.6)
    rec.on_ack_received(Space.APPLICATION, [(2, 2)], 0.0, 0.6)
    for pn, t in ((4, 0.8), (5, 1.15)):
        send(rec, Space.APPLICATION, pn, t)
    send(rec, Space.APPLICATION, 6, 1.2)
    result = rec.on_ack_received(Space.APPLICATION, [(6, 6), (2, 2)], 0.0, 1.3)
    # Packet 1 was lost on the first ACK; packet 2, acknowledged, separates
    # it from 3..5, whose own span (0.55 s) is too short.
    assert pns(result.lost) == [3, 4, 5]
    assert not result.persistent_congestion


def test_persistent_congestion_spans_detections() -> None:
    rec = make()
    _with_rtt_sample(rec)
    for pn, t in ((1, 0.2), (2, 0.5), (3, 0.8), (4, 1.14)):
        send(rec, Space.APPLICATION, pn, t)
    send(rec, Space.APPLICATION, 5, 1.15)
    result = rec.on_ack_received(Space.APPLICATION, [(5, 5)], 0.0, 1.25)
    assert pns(result.lost) == [1, 2, 3]  # span 0.6 s: not yet
    assert not result.persistent_congestion
    assert rec.congestion.congestion_window == 6000
    # Packet 4 goes on the timer; nothing was acknowledged between 1 and 4.
    timer = rec.loss_detection_timer()
    assert timer == pytest.approx(1.14 + 9 / 8 * 0.1)
    assert pns(rec.on_loss_detection_timeout(timer or 0.0).lost) == [4]
    assert rec.congestion.congestion_window == 2 * 1200


def test_a_packet_number_gap_ends_the_loss_run() -> None:
    """Only consecutive packet numbers make a run: of a number we never sent
    nothing is known, so the lost packets around it are two runs, neither
    long enough for persistent congestion (RFC 9002 §7.6.2)."""
    rec = make()
    _with_rtt_sample(rec)
    send(rec, Space.APPLICATION, 1, 0.2)
    send(rec, Space.APPLICATION, 3, 0.6)  # 2 is never sent
    send(rec, Space.APPLICATION, 4, 1.15)
    send(rec, Space.APPLICATION, 5, 1.2)
    result = rec.on_ack_received(Space.APPLICATION, [(5, 5)], 0.0, 1.3)
    assert pns(result.lost) == [1, 3, 4]
    assert not result.persistent_congestion


# -- discarding -------------------------------------------------------------------------


def test_discard_space_removes_bytes_in_flight_without_congestion_signal() -> None:
    rec = make()
    send(rec, Space.INITIAL, 0, 0.0)
    send(rec, Space.INITIAL, 1, 0.05)
    send(rec, Space.INITIAL, 2, 0.06)
    result = rec.on_ack_received(Space.INITIAL, [(2, 2)], 0.0, 0.16)
    assert pns(result.lost) == [0]
    send(rec, Space.HANDSHAKE, 0, 0.2)
    cwnd = rec.congestion.congestion_window
    assert rec.bytes_in_flight == 2 * 1200  # Initial 1 and Handshake 0
    dropped = rec.discard_space(Space.INITIAL)
    assert pns(dropped) == [1]
    assert rec.bytes_in_flight == 1200
    assert rec.congestion.congestion_window == cwnd
    assert rec.pto_count == 0
    # The Initial loss time is gone; only the Handshake packet's PTO is left.
    assert rec.loss_detection_timer() == pytest.approx(0.2 + rec.pto_duration(Space.HANDSHAKE))
    assert rec.discard_space(Space.HANDSHAKE)[0].space is Space.HANDSHAKE
    assert rec.bytes_in_flight == 0
    assert rec.loss_detection_timer() is None


def test_discard_space_resets_loss_time() -> None:
    rec = make()
    send(rec, Space.INITIAL, 0, 0.0)
    send(rec, Space.INITIAL, 1, 0.015)
    send(rec, Space.INITIAL, 2, 0.02)
    rec.on_ack_received(Space.INITIAL, [(2, 2)], 0.0, 0.1)
    assert rec.loss_detection_timer() == pytest.approx(0.015 + 9 / 8 * 0.08)
    rec.discard_space(Space.INITIAL)
    assert rec.loss_detection_timer() is None
    # Packet numbers keep counting after a discard (Retry).
    send(rec, Space.INITIAL, 3, 0.2)
    with pytest.raises(ValueError):
        send(rec, Space.INITIAL, 3, 0.3)


# -- ACK validation ----------------------------------------------------------------------


def _violation(rec: LossRecovery, ranges: list[tuple[int, int]]) -> None:
    with pytest.raises(QuicProtocolError) as info:
        rec.on_ack_received(Space.APPLICATION, ranges, 0.0, 1.0)
    assert info.value.error_code == TransportErrorCode.PROTOCOL_VIOLATION


def test_ack_of_unsent_packet_is_protocol_violation() -> None:
    rec = make()
    send(rec, Space.APPLICATION, 0, 0.0)
    _violation(rec, [(0, 1)])
    _violation(make(), [(0, 0)])  # nothing sent at all


def test_malformed_ranges_are_protocol_violation() -> None:
    rec = make()
    for pn in range(10):
        send(rec, Space.APPLICATION, pn, 0.0)
    _violation(rec, [(5, 4)])
    _violation(rec, [(2, 4), (3, 5)])  # not descending
    _violation(rec, [(4, 8), (1, 6)])  # overlapping


def test_spaces_are_independent() -> None:
    rec = make()
    send(rec, Space.INITIAL, 0, 0.0)
    _violation(rec, [(0, 0)])  # application space sent nothing
    assert rec.largest_acked(Space.INITIAL) is None
    rec.on_ack_received(Space.INITIAL, [(0, 0)], 0.0, 0.1)
    assert rec.largest_acked(Space.INITIAL) == 0
