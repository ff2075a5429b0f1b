"""Streams after a rejected 0-RTT: the server's new limits, and nothing sent.

Theory of operation
-------------------
A client sends 0-RTT within the limits the ticket remembers (RFC 9000
§7.4.1). When the server rejects 0-RTT it has seen none of it, and its new
transport parameters, which may be lower than the remembered ones, are the
only limits (RFC 9001 §4.6.2: the client must reset the state of its streams
and may not assume the old values). The connection then resends what 0-RTT
carried in 1-RTT, transparently to the application, so
:meth:`StreamRewindMixin.forget_peer_limits` puts every stream back to
"nothing sent" under no limits at all, and ``apply_peer_limits`` grants the
new ones as if they had just arrived:

* each sender is replaced by a :class:`HeldSender` holding the same written
  bytes (and FIN, or reset) with none of it sent: flow control is charged
  anew, against the new MAX_DATA and stream limits;
* a stream whose index the new MAX_STREAMS does not cover was never heard of
  by the server and may not be yet (RFC 9000 §4.6: STREAM_LIMIT_ERROR): it
  stays *held*, buffering what the application writes but sending no frame
  at all (no STREAM, RESET_STREAM, STREAM_DATA_BLOCKED or STOP_SENDING), and
  STREAMS_BLOCKED says so; MAX_STREAMS releases held streams in id order
  (``on_max_streams`` calls :meth:`StreamRewindMixin._release_held`).

A mixin of :class:`~ghostwire.quic.streams.StreamManager`; it works on the
manager's state, whose names are declared below for the type checker.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .flow import BlockedSignal, SendCredit
from .stream_recv import StreamReceiver
from .stream_send import MAX_STREAM_OFFSET, PoppedFrame, StreamFrameData, StreamSender

_NOTHING: PoppedFrame = (0, 0, None, False, 0)  # pop_frame without a frame

if TYPE_CHECKING:
    from .stream_types import Stream


class HeldSender(StreamSender):
    """A sending half that sends nothing while ``held`` (then it is a plain one)."""

    __slots__ = ("held",)

    def __init__(self, max_stream_data: int = 0) -> None:
        super().__init__(max_stream_data)
        self.held = True

    def has_pending(self, max_offset: int | None = None) -> bool:
        return not self.held and super().has_pending(max_offset)

    def wants_credit(self) -> bool:
        return not self.held and super().wants_credit()

    def next_frame(self, max_data: int, max_offset: int) -> StreamFrameData | None:
        return None if self.held else super().next_frame(max_data, max_offset)

    def pop_frame(self, room: int, credit: int) -> PoppedFrame:
        return _NOTHING if self.held else super().pop_frame(room, credit)

    def pending_data_blocked(self) -> int | None:
        return None if self.held else super().pending_data_blocked()

    def pending_reset(self) -> tuple[int, int] | None:
        return None if self.held else super().pending_reset()


class HeldReceiver(StreamReceiver):
    """A receiving half that sends no STOP_SENDING or MAX_STREAM_DATA while ``held``."""

    __slots__ = ("held",)

    def __init__(self, initial_window: int, max_window: int) -> None:
        super().__init__(initial_window, max_window)
        self.held = True

    def pending_stop_sending(self) -> int | None:
        return None if self.held else super().pending_stop_sending()

    def pending_max_stream_data(self, now: float, rtt: float) -> int | None:
        return None if self.held else super().pending_max_stream_data(now, rtt)


def unsent_copy(old: StreamSender) -> HeldSender:
    """A held sender with what ``old`` was given (bytes, FIN, or a reset), none
    of it sent. ``old`` had nothing acknowledged (the server read no 0-RTT), so
    after the 0-RTT packets were declared lost its frames come out whole and in
    order: everything sent as one lost range, then what was never sent."""
    new = HeldSender()
    if old.reset_error_code is not None:
        new.reset(old.reset_error_code)  # final size 0: the server saw no byte
        return new
    old.max_stream_data = MAX_STREAM_OFFSET
    while (frame := old.next_frame(MAX_STREAM_OFFSET, MAX_STREAM_OFFSET)) is not None:
        offset, data, fin = frame
        if offset != new.bytes_written:
            raise RuntimeError(f"0-RTT stream data not all lost: a gap at {new.bytes_written}")
        new.write(data, fin)
    return new


class StreamRewindMixin:
    """Rejected 0-RTT, for :class:`~ghostwire.quic.streams.StreamManager`."""

    # Held streams, by id (None until a rejection holds some).
    _held_streams: dict[int, None] | None = None

    if TYPE_CHECKING:
        _streams: dict[int, Stream]
        _send_queue: dict[int, None]
        _conn_blocked: dict[int, None]
        _control: dict[int, None]
        _peer_max_streams: list[int]
        _streams_blocked: list[BlockedSignal] | None
        _send_bidi_local: int
        _send_bidi_remote: int
        _send_uni: int
        _max_stream_window: int
        send_credit: SendCredit

        def _is_local(self, stream_id: int) -> bool: ...
        def _blocked_signals(self) -> list[BlockedSignal]: ...

        _recv_bidi_local: int
        _recv_bidi_remote: int
        _recv_uni: int

    def _recv_window(self, stream_id: int) -> int:
        """Our initial receive window for ``stream_id`` (RFC 9000 §18.2)."""
        if stream_id & 2:
            return self._recv_uni
        return self._recv_bidi_local if self._is_local(stream_id) else self._recv_bidi_remote

    def forget_peer_limits(self) -> None:
        """0-RTT was rejected (RFC 9001 §4.6.2): back to no limits from the peer,
        every stream of ours rewound to nothing sent, and held; then
        ``apply_peer_limits`` grants the server's new limits."""
        self._send_bidi_local = self._send_bidi_remote = self._send_uni = 0
        self.send_credit = SendCredit(0)
        self._peer_max_streams = [0, 0]
        self._streams_blocked = None
        held = self._held_streams = {}
        for stream_id in sorted(self._streams):
            if not self._is_local(stream_id):
                continue  # (none yet: the server could not send before 1-RTT)
            stream = self._streams[stream_id]
            for pending in (self._send_queue, self._conn_blocked, self._control):
                pending.pop(stream_id, None)
            if stream.sender is not None:
                stream.sender = unsent_copy(stream.sender)
            old = stream.receiver
            if old is not None:  # nothing received: only a STOP_SENDING to keep
                receiver = HeldReceiver(self._recv_window(stream_id), self._max_stream_window)
                if old.stop_sending_code is not None:
                    receiver.stop_sending(old.stop_sending_code)
                stream.receiver = receiver
            held[stream_id] = None

    def _release_held(self, uni: int) -> None:
        """MAX_STREAMS grew: held streams it now covers may send (in id order)."""
        held = self._held_streams
        if not held:
            return
        limit = self._peer_max_streams[uni]
        waiting = False
        for stream_id in list(held):
            if (stream_id >> 1) & 1 != uni:
                continue
            if stream_id >> 2 >= limit:
                waiting = True
                continue
            del held[stream_id]
            stream = self._streams.get(stream_id)
            if stream is None:
                continue
            if isinstance(stream.sender, HeldSender):
                stream.sender.held = False
            if isinstance(stream.receiver, HeldReceiver):
                stream.receiver.held = False
            self._send_queue[stream_id] = None
            self._control[stream_id] = None
        if waiting:
            self._blocked_signals()[uni].block(limit)  # RFC 9000 §4.6
