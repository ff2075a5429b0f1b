"""Connection-level flow control and the shared window / blocked-signal helpers (RFC 9000 §4)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ghostwire.quic.errors import QuicProtocolError, TransportErrorCode
from ghostwire.quic.flow import BlockedSignal, ReceiveCredit, ReceiveWindow, SendCredit

# -- sending ------------------------------------------------------------------------


def test_send_credit_counts_down() -> None:
    c = SendCredit(1000)
    assert c.available() == 1000
    c.consume(400)
    assert c.available() == 600
    c.consume(600)
    assert c.available() == 0


def test_send_credit_cannot_be_overdrawn() -> None:
    c = SendCredit(10)
    with pytest.raises(ValueError):
        c.consume(11)
    with pytest.raises(ValueError):
        c.consume(-1)
    assert c.available() == 10


def test_max_data_only_increases() -> None:
    c = SendCredit(100)
    assert c.on_max_data(50) is False
    assert c.on_max_data(100) is False
    assert c.available() == 100
    assert c.on_max_data(300) is True
    assert c.available() == 300


def test_data_blocked_once_per_limit() -> None:
    c = SendCredit(100)
    c.note_blocked()
    assert c.pending_data_blocked() is None  # not actually blocked
    c.consume(100)
    c.note_blocked()
    assert c.pending_data_blocked() == 100
    c.on_data_blocked_sent()
    assert c.pending_data_blocked() is None
    c.note_blocked()
    assert c.pending_data_blocked() is None  # already signalled for 100
    c.on_max_data(200)
    c.consume(100)
    c.note_blocked()
    assert c.pending_data_blocked() == 200


def test_data_blocked_resent_on_loss_only_while_blocked_at_that_limit() -> None:
    c = SendCredit(100)
    c.consume(100)
    c.note_blocked()
    c.on_data_blocked_sent()
    c.on_data_blocked_delivered(100, False)
    assert c.pending_data_blocked() == 100
    c.on_data_blocked_sent()
    c.on_max_data(150)
    c.on_data_blocked_delivered(100, False)
    assert c.pending_data_blocked() is None  # unblocked since: stale
    c.on_data_blocked_delivered(100, True)
    assert c.pending_data_blocked() is None


def test_raising_the_limit_cancels_a_pending_data_blocked() -> None:
    c = SendCredit(10)
    c.consume(10)
    c.note_blocked()
    c.on_max_data(20)
    assert c.pending_data_blocked() is None


# -- receiving ------------------------------------------------------------------------


def test_receive_credit_enforces_max_data() -> None:
    c = ReceiveCredit(1000)
    c.on_data(600)
    c.on_data(400)  # exactly at the limit is fine
    with pytest.raises(QuicProtocolError) as info:
        c.on_data(1)
    assert info.value.error_code == TransportErrorCode.FLOW_CONTROL_ERROR
    assert c.received == 1000


def test_max_data_due_after_half_the_window_is_consumed() -> None:
    c = ReceiveCredit(1000)
    c.on_data(1000)
    c.on_consumed(499)
    assert c.pending_max_data(0.0, 0.1) is None
    c.on_consumed(1)
    assert c.pending_max_data(0.0, 0.1) == 1500  # consumed + window
    assert c.limit == 1500  # enforced from now on
    c.on_data(500)
    assert c.pending_max_data(0.0, 0.1) == 1500  # until sent
    c.on_max_data_sent(1500)
    assert c.pending_max_data(0.0, 0.1) is None


def test_lost_max_data_is_resent_only_if_still_latest() -> None:
    c = ReceiveCredit(1000)
    c.on_consumed(600)
    first = c.pending_max_data(0.0, 0.1)
    assert first == 1600
    c.on_max_data_sent(first)
    c.on_max_data_delivered(first, False)
    assert c.pending_max_data(0.0, 0.1) == first
    c.on_max_data_sent(first)
    c.on_consumed(600)
    second = c.pending_max_data(10.0, 0.1)
    assert second is not None and second > first
    c.on_max_data_sent(second)
    c.on_max_data_delivered(first, False)  # superseded
    assert c.pending_max_data(10.0, 0.1) is None
    c.on_max_data_delivered(second, True)
    assert c.pending_max_data(10.0, 0.1) is None


def test_window_doubles_when_consumed_within_two_rtts() -> None:
    w = ReceiveWindow(1000, max_window=3000)
    w.consumed = 500
    assert w.pending(0.0, 0.1) == 1500  # first update: starts the epoch only
    w.on_sent(1500)
    w.consumed = 1000  # half a window in 0.1 s = 1 RTT: too fast
    assert w.pending(0.1, 0.1) == 1000 + 2000
    assert w.window == 2000
    w.on_sent(3000)
    w.consumed = 2000
    w.pending(0.2, 0.1)
    assert w.window == 3000  # capped at max_window
    w.on_sent(w.limit)
    w.consumed = 3500
    w.pending(0.3, 0.1)
    assert w.window == 3000


def test_window_stays_when_consumed_slowly() -> None:
    w = ReceiveWindow(1000, max_window=10_000)
    w.consumed = 500
    w.on_sent(w.pending(0.0, 0.1) or 0)
    w.consumed = 1000
    assert w.pending(0.3, 0.1) == 2000  # half a window in 3 RTTs
    assert w.window == 1000


def test_window_without_rtt_sample_does_not_grow() -> None:
    w = ReceiveWindow(1000, max_window=10_000)
    w.consumed = 500
    w.on_sent(w.pending(0.0, 0.0) or 0)
    w.consumed = 1000
    w.pending(0.0, 0.0)
    assert w.window == 1000


def test_zero_window_never_advertises() -> None:
    w = ReceiveWindow(0, max_window=0)
    assert not w.wants_update()
    assert w.pending(1.0, 0.1) is None


def test_ensure_window_is_capped() -> None:
    w = ReceiveWindow(100, max_window=1000)
    w.ensure_window(500)
    assert w.window == 500
    w.ensure_window(300)
    assert w.window == 500
    w.ensure_window(5000)
    assert w.window == 1000


@given(st.lists(st.integers(min_value=0, max_value=5000), max_size=40))
def test_advertised_limit_never_decreases(reads: list[int]) -> None:
    c = ReceiveCredit(4096, max_window=1 << 20)
    now = 0.0
    last = c.limit
    for n in reads:
        c.on_consumed(n)
        now += 0.01
        limit = c.pending_max_data(now, 0.05)
        if limit is not None:
            assert limit >= last
            c.on_max_data_sent(limit)
        assert c.limit >= last
        last = c.limit


def test_blocked_signal() -> None:
    b = BlockedSignal()
    assert b.pending() is None
    assert b.block(5) is True
    assert b.block(5) is False
    assert b.pending() == 5
    b.on_sent()
    assert b.pending() is None
    b.on_delivered(5, False, current_limit=5, blocked=True)
    assert b.pending() == 5
    b.on_sent()
    b.on_delivered(5, False, current_limit=6, blocked=True)
    assert b.pending() is None
