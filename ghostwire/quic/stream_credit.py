"""The stream credit we give the peer: our MAX_STREAMS for one direction (RFC 9000 §4.6).

The peer may open streams up to the limit we advertised; the limit counts
streams opened over the connection's life, so it only grows, and it may be
raised at any time. :class:`StreamCreditReturn` raises it by one for each
peer stream that is done, in batches, and remembers whether the new limit
still has to be sent (a lost MAX_STREAMS is sent again if it is still the
latest).

A stream is done when it is forgotten (both halves terminal) or, for a
bidirectional one, earlier: once it was read to its end and our side was
all sent or reset, only the peer's ACK is missing
(:meth:`StreamCreditReturn.credit_if_done`). At most the configured limit of
streams are credited early at a time, so at most twice the limit of peer
streams are ever kept.
"""

from __future__ import annotations

from .stream_states import SendState
from .stream_types import Stream

# Send states past the first transmission of everything (RFC 9000 §3.1):
# what is left is the peer's ACK (and retransmissions of what it lacks).
_ALL_SENT = frozenset({SendState.DATA_SENT, SendState.RESET_SENT})


class StreamCreditReturn:
    """Our MAX_STREAMS limit for one direction and the credit to return."""

    __slots__ = ("_closed", "early", "initial", "limit", "pending")

    def __init__(self, initial: int) -> None:
        self.initial = initial  # the configured limit (transport parameter)
        self.limit = initial  # the limit we advertised (or are about to)
        self.pending = False  # ``limit`` still has to be sent
        self._closed = 0  # peer streams whose credit was returned
        self.early = 0  # of those, credited before they were forgotten

    def credit_if_done(self, stream: Stream) -> None:
        """Return a peer bidirectional stream's credit before it is forgotten,
        once it was read to its end (or its reset told) and our side was all
        sent (Data Sent) or reset: waiting for the peer's ACK held the credit
        back a round trip and stalled a peer keeping most of the limit in
        flight. RFC 9000 §4.6: the limit counts streams opened and may be
        raised at any time."""
        sender = stream.sender
        receiver = stream.receiver
        if (
            stream.credited
            or sender is None
            or receiver is None
            or sender.state not in _ALL_SENT
            or not receiver.is_finished
            or self.early >= self.initial  # the bound on streams kept
        ):
            return
        stream.credited = True
        self.early += 1
        self._on_stream_done()

    def on_forgotten(self, credited_early: bool) -> None:
        """A peer stream was forgotten (both halves terminal)."""
        if credited_early:
            self.early -= 1
        else:
            self._on_stream_done()

    def _on_stream_done(self) -> None:
        """Batch MAX_STREAMS: send when an eighth of the configured limit can be
        returned (at least 2 streams, at most half the limit, at least 1).

        Batching by half the limit stalled a peer that keeps more than half of
        it in flight (64 requests against the default 100: the peer had 36
        streams of slack and waited for 50 to be returned).
        """
        self._closed += 1
        initial = self.initial
        target = self._closed + initial
        batch = max(1, min(initial // 2, max(2, initial // 8)))
        if target - self.limit >= batch:
            self.limit = target
            self.pending = True

    def on_sent(self, value: int) -> None:
        if value == self.limit:
            self.pending = False

    def on_delivered(self, value: int, delivered: bool) -> None:
        if not delivered and value == self.limit:
            self.pending = True  # lost, and still the latest: again
