"""Stream state machines of RFC 9000 §3 as transition tables.

Theory of operation: each half of a stream has its own state machine. The
sending half follows RFC 9000 §3.1 (Figure 2), the receiving half §3.2
(Figure 3). Both are plain data: ``SEND_TRANSITIONS`` / ``RECV_TRANSITIONS``
map ``(state, event) -> new state`` for exactly the arrows of the RFC
diagrams, and :func:`send_transition` / :func:`recv_transition` look them up.
A pair that is not in a table is an illegal transition; it raises
:class:`StreamStateError` (a bug in our caller, never a peer error: peer
input is validated before any transition is taken).

Events fire only when the state changes. Self-loops the RFC describes in
prose (more STREAM frames in "Send", retransmissions in "Data Sent", more
data in "Size Known") are not events.

The receive diagram has two optional arrows between "Data Recvd" and
"Reset Recvd" (``OPTIONAL_RECV_TRANSITIONS``). They are legal in the table;
ghostwire's receiver does not take them (see ``stream_recv``).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from types import MappingProxyType


class StreamStateError(Exception):
    """A stream operation that is not allowed in the stream's current state.

    Raised for *local* misuse (writing after FIN or after a reset, an
    impossible state transition, using a stream that is closed). It is not a
    :class:`~ghostwire.quic.errors.QuicProtocolError`: the peer did nothing
    wrong.
    """


class SendState(Enum):
    """Sending-part states, RFC 9000 §3.1."""

    # Tested for set membership per packet: identity hashing runs in C, Enum's
    # own __hash__ in Python. Members are singletons, so it is equally correct.
    __hash__ = object.__hash__

    READY = "Ready"
    SEND = "Send"
    DATA_SENT = "Data Sent"
    DATA_RECVD = "Data Recvd"
    RESET_SENT = "Reset Sent"
    RESET_RECVD = "Reset Recvd"


class SendEvent(Enum):
    """Labels of the arrows in RFC 9000 Figure 2."""

    __hash__ = object.__hash__  # a transition's lookup key: see SendState

    SEND_STREAM = "Send STREAM"
    SEND_STREAM_DATA_BLOCKED = "Send STREAM_DATA_BLOCKED"
    SEND_FIN = "Send STREAM + FIN"
    SEND_RESET = "Send RESET_STREAM"
    RECV_ALL_ACKS = "Recv All ACKs"
    RECV_RESET_ACK = "Recv ACK (of RESET_STREAM)"


class RecvState(Enum):
    """Receiving-part states, RFC 9000 §3.2."""

    # Tested for set membership per packet: identity hashing runs in C, Enum's
    # own __hash__ in Python. Members are singletons, so it is equally correct.
    __hash__ = object.__hash__

    RECV = "Recv"
    SIZE_KNOWN = "Size Known"
    DATA_RECVD = "Data Recvd"
    DATA_READ = "Data Read"
    RESET_RECVD = "Reset Recvd"
    RESET_READ = "Reset Read"


class RecvEvent(Enum):
    """Labels of the arrows in RFC 9000 Figure 3."""

    __hash__ = object.__hash__  # a transition's lookup key: see SendState

    RECV_FIN = "Recv STREAM + FIN"
    RECV_ALL_DATA = "Recv All Data"
    RECV_RESET = "Recv RESET_STREAM"
    APP_READ_ALL_DATA = "App Read All Data"
    APP_READ_RESET = "App Read Reset"


_S, _SE = SendState, SendEvent
SEND_TRANSITIONS: Mapping[tuple[SendState, SendEvent], SendState] = MappingProxyType(
    {
        (_S.READY, _SE.SEND_STREAM): _S.SEND,
        (_S.READY, _SE.SEND_STREAM_DATA_BLOCKED): _S.SEND,
        (_S.READY, _SE.SEND_RESET): _S.RESET_SENT,
        (_S.SEND, _SE.SEND_FIN): _S.DATA_SENT,
        (_S.SEND, _SE.SEND_RESET): _S.RESET_SENT,
        (_S.DATA_SENT, _SE.SEND_RESET): _S.RESET_SENT,
        (_S.DATA_SENT, _SE.RECV_ALL_ACKS): _S.DATA_RECVD,
        (_S.RESET_SENT, _SE.RECV_RESET_ACK): _S.RESET_RECVD,
    }
)

_R, _RE = RecvState, RecvEvent
RECV_TRANSITIONS: Mapping[tuple[RecvState, RecvEvent], RecvState] = MappingProxyType(
    {
        (_R.RECV, _RE.RECV_FIN): _R.SIZE_KNOWN,
        (_R.RECV, _RE.RECV_RESET): _R.RESET_RECVD,
        (_R.SIZE_KNOWN, _RE.RECV_ALL_DATA): _R.DATA_RECVD,
        (_R.SIZE_KNOWN, _RE.RECV_RESET): _R.RESET_RECVD,
        (_R.DATA_RECVD, _RE.RECV_RESET): _R.RESET_RECVD,  # optional
        (_R.RESET_RECVD, _RE.RECV_ALL_DATA): _R.DATA_RECVD,  # optional
        (_R.DATA_RECVD, _RE.APP_READ_ALL_DATA): _R.DATA_READ,
        (_R.RESET_RECVD, _RE.APP_READ_RESET): _R.RESET_READ,
    }
)

OPTIONAL_RECV_TRANSITIONS: frozenset[tuple[RecvState, RecvEvent]] = frozenset(
    {(_R.DATA_RECVD, _RE.RECV_RESET), (_R.RESET_RECVD, _RE.RECV_ALL_DATA)}
)

SEND_TERMINAL_STATES: frozenset[SendState] = frozenset({_S.DATA_RECVD, _S.RESET_RECVD})
RECV_TERMINAL_STATES: frozenset[RecvState] = frozenset({_R.DATA_READ, _R.RESET_READ})


def send_transition(state: SendState, event: SendEvent) -> SendState:
    """The sending-part state after ``event``; raises StreamStateError if illegal."""
    try:
        return SEND_TRANSITIONS[state, event]
    except KeyError:
        raise StreamStateError(f"send stream: {event.value!r} in state {state.value!r}") from None


def recv_transition(state: RecvState, event: RecvEvent) -> RecvState:
    """The receiving-part state after ``event``; raises StreamStateError if illegal."""
    try:
        return RECV_TRANSITIONS[state, event]
    except KeyError:
        raise StreamStateError(f"recv stream: {event.value!r} in state {state.value!r}") from None
