"""Pacing (RFC 9002 §7.7)."""

from __future__ import annotations

import pytest

from ghostwire.quic.congestion import Pacer
from ghostwire.quic.congestion.pacer import PACING_GAIN

MDS = 1200


def burst(pacer: Pacer, now: float) -> int:
    """Send datagrams while the pacer allows; returns how many went."""
    sent = 0
    while pacer.next_send_time(now) is None:
        pacer.on_packet_sent(MDS, now)
        sent += 1
        if sent > 10_000:
            raise AssertionError("pacer never blocked")
    return sent


def test_rate_follows_cwnd_over_srtt() -> None:
    pacer = Pacer()
    pacer.update(12000, 0.1, 0.0)
    assert PACING_GAIN == 1.25
    assert pacer.rate == pytest.approx(1.25 * 12000 / 0.1)
    pacer.update(48000, 0.05, 0.0)
    assert pacer.rate == pytest.approx(1.25 * 48000 / 0.05)


def test_no_pacing_without_rate() -> None:
    pacer = Pacer()
    for _ in range(100):
        assert pacer.next_send_time(0.0) is None
        pacer.on_packet_sent(MDS, 0.0)
    pacer.update(12000, 0.0, 0.0)  # no RTT estimate: no pacing
    assert pacer.next_send_time(0.0) is None


def test_burst_then_spacing() -> None:
    pacer = Pacer(max_datagram_size=MDS)
    pacer.update(12000, 0.1, 0.0)  # 150 kB/s: one datagram per 8 ms
    interval = MDS / pacer.rate
    assert interval == pytest.approx(0.008)
    assert burst(pacer, 0.0) == 10
    wake = pacer.next_send_time(0.0)
    assert wake == pytest.approx(interval)
    assert pacer.next_send_time(interval * 0.9) is not None
    # From then on, one datagram per interval.
    now = interval
    for _ in range(20):
        assert burst(pacer, now) == 1
        nxt = pacer.next_send_time(now)
        assert nxt == pytest.approx(now + interval)
        now = nxt or now


def test_bucket_is_capped_after_idle() -> None:
    pacer = Pacer(burst_packets=4)
    pacer.update(12000, 0.1, 0.0)
    assert pacer.capacity == 4 * MDS
    assert burst(pacer, 0.0) == 4
    assert burst(pacer, 100.0) == 4  # a long idle period does not bank more


def test_high_rate_wakes_at_most_once_per_granularity() -> None:
    pacer = Pacer(granularity=0.001)
    pacer.update(1_200_000, 0.01, 0.0)  # 150 MB/s: 8 microseconds per datagram
    now = 0.0
    wakeups = 0
    sent = 0
    while now < 0.1:
        sent += burst(pacer, now)
        nxt = pacer.next_send_time(now)
        assert nxt is not None
        assert nxt - now >= 0.001 - 1e-12
        now = nxt
        wakeups += 1
    assert wakeups <= 101
    # Nothing is lost by the coarse timer: the average rate is kept.
    assert sent * MDS == pytest.approx(pacer.rate * 0.1, rel=0.05)


def test_rate_change_keeps_accrued_tokens() -> None:
    pacer = Pacer()
    pacer.update(12000, 0.1, 0.0)
    burst(pacer, 0.0)
    pacer.update(12000, 0.1, 0.004)  # half a datagram accrued at the old rate
    pacer.update(24000, 0.1, 0.004)  # twice the rate from now on
    assert pacer.tokens == pytest.approx(MDS / 2, abs=1)
    assert pacer.next_send_time(0.004) == pytest.approx(0.004 + (MDS / 2) / pacer.rate)


def test_invalid_parameters() -> None:
    with pytest.raises(ValueError):
        Pacer(burst_packets=0)
    with pytest.raises(ValueError):
        Pacer(granularity=0.0)
