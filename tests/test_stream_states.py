"""The RFC 9000 §3.1 / §3.2 stream state machines, as tables and as driven by the streams."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import TypeVar

import pytest

from ghostwire.quic.errors import QuicProtocolError
from ghostwire.quic.stream_recv import StreamReceiver
from ghostwire.quic.stream_send import StreamSender
from ghostwire.quic.stream_states import (
    OPTIONAL_RECV_TRANSITIONS,
    RECV_TERMINAL_STATES,
    RECV_TRANSITIONS,
    SEND_TERMINAL_STATES,
    SEND_TRANSITIONS,
    RecvEvent,
    RecvState,
    SendEvent,
    SendState,
    StreamStateError,
    recv_transition,
    send_transition,
)

T = TypeVar("T")
V = TypeVar("V")

S, SE = SendState, SendEvent
R, RE = RecvState, RecvEvent

# The arrows of RFC 9000 Figure 2, written out independently of the module.
FIGURE_2 = {
    (S.READY, SE.SEND_STREAM): S.SEND,
    (S.READY, SE.SEND_STREAM_DATA_BLOCKED): S.SEND,
    (S.READY, SE.SEND_RESET): S.RESET_SENT,
    (S.SEND, SE.SEND_FIN): S.DATA_SENT,
    (S.SEND, SE.SEND_RESET): S.RESET_SENT,
    (S.DATA_SENT, SE.SEND_RESET): S.RESET_SENT,
    (S.DATA_SENT, SE.RECV_ALL_ACKS): S.DATA_RECVD,
    (S.RESET_SENT, SE.RECV_RESET_ACK): S.RESET_RECVD,
}

# The arrows of RFC 9000 Figure 3.
FIGURE_3 = {
    (R.RECV, RE.RECV_FIN): R.SIZE_KNOWN,
    (R.RECV, RE.RECV_RESET): R.RESET_RECVD,
    (R.SIZE_KNOWN, RE.RECV_ALL_DATA): R.DATA_RECVD,
    (R.SIZE_KNOWN, RE.RECV_RESET): R.RESET_RECVD,
    (R.DATA_RECVD, RE.RECV_RESET): R.RESET_RECVD,
    (R.RESET_RECVD, RE.RECV_ALL_DATA): R.DATA_RECVD,
    (R.DATA_RECVD, RE.APP_READ_ALL_DATA): R.DATA_READ,
    (R.RESET_RECVD, RE.APP_READ_RESET): R.RESET_READ,
}


# -- the tables ------------------------------------------------------------------


def test_send_table_is_figure_2() -> None:
    assert dict(SEND_TRANSITIONS) == FIGURE_2


def test_recv_table_is_figure_3() -> None:
    assert dict(RECV_TRANSITIONS) == FIGURE_3


@pytest.mark.parametrize(("key", "target"), list(FIGURE_2.items()))
def test_each_legal_send_transition(key: tuple[SendState, SendEvent], target: SendState) -> None:
    assert send_transition(*key) is target


@pytest.mark.parametrize(("key", "target"), list(FIGURE_3.items()))
def test_each_legal_recv_transition(key: tuple[RecvState, RecvEvent], target: RecvState) -> None:
    assert recv_transition(*key) is target


def test_every_other_send_pair_is_rejected() -> None:
    illegal = [k for k in itertools.product(SendState, SendEvent) if k not in FIGURE_2]
    assert len(illegal) == len(SendState) * len(SendEvent) - len(FIGURE_2)
    for state, event in illegal:
        with pytest.raises(StreamStateError):
            send_transition(state, event)


def test_every_other_recv_pair_is_rejected() -> None:
    illegal = [k for k in itertools.product(RecvState, RecvEvent) if k not in FIGURE_3]
    for state, event in illegal:
        with pytest.raises(StreamStateError):
            recv_transition(state, event)


def test_terminal_states_have_no_way_out() -> None:
    assert {S.DATA_RECVD, S.RESET_RECVD} == SEND_TERMINAL_STATES
    assert {R.DATA_READ, R.RESET_READ} == RECV_TERMINAL_STATES
    assert not [k for k in SEND_TRANSITIONS if k[0] in SEND_TERMINAL_STATES]
    assert not [k for k in RECV_TRANSITIONS if k[0] in RECV_TERMINAL_STATES]


def test_optional_transitions_are_the_two_dashed_arrows() -> None:
    assert {(R.DATA_RECVD, RE.RECV_RESET), (R.RESET_RECVD, RE.RECV_ALL_DATA)} == (
        OPTIONAL_RECV_TRANSITIONS
    )
    assert set(RECV_TRANSITIONS) >= OPTIONAL_RECV_TRANSITIONS


def state(obj: StreamSender | StreamReceiver) -> SendState | RecvState:
    """The current state (a call, so mypy does not keep an earlier narrowing)."""
    return obj.state


def _reachable(table: Mapping[tuple[T, V], T], start: T) -> set[T]:
    seen = {start}
    todo = [start]
    while todo:
        state = todo.pop()
        for (src, _event), dst in table.items():
            if src == state and dst not in seen:
                seen.add(dst)
                todo.append(dst)
    return seen


def test_every_state_is_reachable() -> None:
    assert _reachable(SEND_TRANSITIONS, S.READY) == set(SendState)
    assert _reachable(RECV_TRANSITIONS, R.RECV) == set(RecvState)


def test_state_error_is_not_a_protocol_error() -> None:
    assert not issubclass(StreamStateError, QuicProtocolError)


# -- the sender follows Figure 2 ----------------------------------------------------


def test_sender_ready_send_data_sent_data_recvd() -> None:
    s = StreamSender(max_stream_data=100)
    assert state(s) is S.READY
    s.write(b"abcdef")
    assert state(s) is S.READY  # writing alone sends nothing
    s.next_frame(3, 100)
    assert state(s) is S.SEND
    s.write(b"", end_stream=True)
    assert state(s) is S.SEND
    assert s.next_frame(10, 100) == (3, b"def", True)
    assert state(s) is S.DATA_SENT
    s.on_frame_delivered(3, 3, True, True)
    assert state(s) is S.DATA_SENT  # bytes 0-3 still unacked
    s.on_frame_delivered(0, 3, False, True)
    assert state(s) is S.DATA_RECVD
    assert s.is_finished


def test_sender_fin_only_first_frame_goes_through_send() -> None:
    s = StreamSender(max_stream_data=0)
    s.write(b"", end_stream=True)
    assert s.next_frame(10, 0) == (0, b"", True)
    assert state(s) is S.DATA_SENT


def test_sender_data_blocked_moves_ready_to_send() -> None:
    s = StreamSender(max_stream_data=0)
    s.write(b"x")
    assert s.next_frame(10, 10) is None
    assert s.pending_data_blocked() == 0
    s.on_data_blocked_sent()
    assert state(s) is S.SEND


@pytest.mark.parametrize("sent", ["ready", "send", "data_sent"])
def test_sender_reset_from_each_open_state(sent: str) -> None:
    s = StreamSender(max_stream_data=100)
    s.write(b"abc", end_stream=sent == "data_sent")
    if sent != "ready":
        s.next_frame(10 if sent == "data_sent" else 1, 100)
    s.reset(7)
    assert state(s) is S.RESET_SENT
    s.on_reset_delivered(False)
    assert state(s) is S.RESET_SENT
    s.on_reset_delivered(True)
    assert state(s) is S.RESET_RECVD
    assert s.is_finished


def test_sender_reset_is_a_no_op_in_terminal_states() -> None:
    s = StreamSender(max_stream_data=100)
    s.write(b"a", end_stream=True)
    s.next_frame(10, 100)
    s.on_frame_delivered(0, 1, True, True)
    assert state(s) is S.DATA_RECVD
    assert s.reset(1) is False
    assert state(s) is S.DATA_RECVD
    assert s.pending_reset() is None


# -- the receiver follows Figure 3 ---------------------------------------------------


def test_receiver_recv_size_known_data_recvd_data_read() -> None:
    r = StreamReceiver(initial_window=100)
    r.handle_stream_frame(3, b"def", True)
    assert state(r) is R.SIZE_KNOWN
    r.handle_stream_frame(0, b"abc", False)
    assert state(r) is R.DATA_RECVD
    assert r.read(4) == b"abcd"
    assert state(r) is R.DATA_RECVD
    assert r.read() == b"ef"
    assert state(r) is R.DATA_RECVD
    assert r.at_eof
    assert r.read() == b""  # the application sees the EOF
    assert state(r) is R.DATA_READ
    assert r.is_finished


def test_receiver_reset_from_recv_and_size_known() -> None:
    r = StreamReceiver(initial_window=100)
    r.handle_reset(5, 10)
    assert state(r) is R.RESET_RECVD
    assert r.read() == b""
    assert state(r) is R.RESET_READ

    r2 = StreamReceiver(initial_window=100)
    r2.handle_stream_frame(5, b"ab", True)
    assert state(r2) is R.SIZE_KNOWN
    r2.handle_reset(5, 7)
    assert state(r2) is R.RESET_RECVD
    r2.acknowledge_reset()
    assert state(r2) is R.RESET_READ


def test_receiver_does_not_take_the_optional_reset_arrow() -> None:
    r = StreamReceiver(initial_window=100)
    r.handle_stream_frame(0, b"all", True)
    assert state(r) is R.DATA_RECVD
    r.handle_reset(9, 3)
    assert state(r) is R.DATA_RECVD  # policy: the complete data wins
    assert r.reset_error_code is None
    assert r.read() == b"all"
