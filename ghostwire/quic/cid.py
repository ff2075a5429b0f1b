"""Connection IDs: the ones we issue and the ones the peer issues (RFC 9000 §5.1).

*Local* IDs route the peer's packets to us. Sequence 0 is the Source
Connection ID of our handshake packets; once the handshake is done we issue
more with NEW_CONNECTION_ID, up to the peer's ``active_connection_id_limit``,
each with a stateless reset token. When the peer retires one
(RETIRE_CONNECTION_ID) we issue a replacement.

*Peer* IDs are what we put in the Destination Connection ID of our packets.
The peer hands them out with NEW_CONNECTION_ID; ``retire_prior_to`` makes us
retire old ones (and send RETIRE_CONNECTION_ID), and we keep no more than our
own ``active_connection_id_limit`` of them.

Every frame that must reach the peer is re-queued when the packet carrying it
is lost; the connection asks ``pending_*`` what to send.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from .errors import QuicProtocolError, TransportErrorCode
from .frames import FrameType

# RFC 9000 §5.1.2: retirements we track (queued, not yet sent, or lost in
# flight), as a multiple of our active_connection_id_limit; more from the
# peer is a CONNECTION_ID_LIMIT_ERROR. The RFC asks to allow at least twice.
MAX_PENDING_RETIREMENTS_FACTOR = 2


@dataclass(slots=True)
class LocalConnectionId:
    sequence_number: int
    cid: bytes
    stateless_reset_token: bytes
    announced: bool = False  # a NEW_CONNECTION_ID for it was acknowledged


@dataclass(slots=True)
class PeerConnectionId:
    sequence_number: int
    cid: bytes
    stateless_reset_token: bytes | None


# The IDs of one side are a short list (at most a handful) in the order they
# were issued: a list of four is 88 bytes, a dict 224.
_Entry = TypeVar("_Entry", LocalConnectionId, PeerConnectionId)


def _find(entries: list[_Entry], sequence_number: int) -> _Entry | None:
    for entry in entries:
        if entry.sequence_number == sequence_number:
            return entry
    return None


def _sequence(entry: LocalConnectionId | PeerConnectionId) -> int:
    return entry.sequence_number


class LocalConnectionIds:
    """Connection IDs we issued."""

    __slots__ = (
        "_cid_length",
        "_new_cid",
        "_next_sequence",
        "_random_bytes",
        "_reset_token_for",
        "_to_announce",
        "active",
        "issued",
        "retire_prior_to",
        "retired",
    )

    def __init__(
        self,
        initial_cid: bytes,
        cid_length: int,
        random_bytes: Callable[[int], bytes],
        reset_token_for: Callable[[bytes], bytes] | None = None,
        *,
        new_cid: Callable[[], bytes] | None = None,
    ) -> None:
        self._cid_length = cid_length
        self._random_bytes = random_bytes
        self._new_cid = new_cid  # the config's cid_generator, else random IDs
        self._reset_token_for = reset_token_for  # None: random tokens
        first = LocalConnectionId(0, initial_cid, self._reset_token(initial_cid), announced=True)
        self.active: list[LocalConnectionId] = [first]  # by sequence number
        self._next_sequence = 1
        self.retire_prior_to = 0
        # Sequence numbers with a NEW_CONNECTION_ID pending (a tuple: the
        # shared empty one while nothing is, as on an idle connection).
        self._to_announce: tuple[int, ...] = ()
        # New CIDs the endpoint must learn to route, and CIDs it must forget:
        # tuples, the shared empty one while none is waiting (an empty list
        # is 56 bytes); the connection resets them to () once published.
        self.issued: tuple[bytes, ...] = ()
        self.retired: tuple[bytes, ...] = ()

    def _reset_token(self, cid: bytes) -> bytes:
        if self._reset_token_for is not None:
            return self._reset_token_for(cid)
        return self._random_bytes(16)  # RFC 9000 §10.3: unpredictable

    @property
    def initial(self) -> LocalConnectionId:
        return self.active[0]  # the lowest sequence number still active

    def issue_up_to(self, limit: int) -> None:
        """Top up to ``limit`` active IDs (the peer's active_connection_id_limit)."""
        limit = min(limit, 8)  # no need to hand out more than a handful
        count = limit - len(self.active)
        if count <= 0:
            return
        # The random bytes of every new ID and token in one call (the OS's
        # getrandom per call costs more than the bytes: seven IDs at a handshake).
        cid_length = 0 if self._new_cid else self._cid_length
        token_length = 0 if self._reset_token_for else 16
        needed = count * (cid_length + token_length)
        pool = self._random_bytes(needed) if needed else b""
        pos = 0
        for _ in range(count):
            if self._new_cid:
                cid = self._new_cid()
            else:
                cid = pool[pos : pos + cid_length]
                pos += cid_length
            if self._reset_token_for is not None:
                token = self._reset_token_for(cid)
            else:  # RFC 9000 §10.3: unpredictable
                token = pool[pos : pos + 16]
                pos += 16
            entry = LocalConnectionId(self._next_sequence, cid, token)
            self.active.append(entry)
            self._next_sequence += 1
            self._to_announce += (entry.sequence_number,)
            self.issued += (cid,)

    def has_pending_announcements(self) -> bool:
        return bool(self._to_announce)

    def pending_announcements(self) -> list[LocalConnectionId]:
        found = (_find(self.active, s) for s in self._to_announce)
        return [entry for entry in found if entry is not None]

    def on_announcement_sent(self, sequence_number: int) -> None:
        if sequence_number in self._to_announce:
            self._to_announce = tuple(s for s in self._to_announce if s != sequence_number)

    def on_announcement_delivered(self, sequence_number: int, delivered: bool) -> None:
        entry = _find(self.active, sequence_number)
        if entry is None:
            return
        if delivered:
            entry.announced = True
        elif sequence_number not in self._to_announce:
            self._to_announce += (sequence_number,)

    def on_retire(self, sequence_number: int, packet_dcid: bytes) -> None:
        """Handle RETIRE_CONNECTION_ID from the peer (RFC 9000 §19.16)."""
        if sequence_number >= self._next_sequence:
            raise QuicProtocolError(
                TransportErrorCode.PROTOCOL_VIOLATION,
                "RETIRE_CONNECTION_ID for a sequence number never issued",
                FrameType.RETIRE_CONNECTION_ID,
            )
        entry = _find(self.active, sequence_number)
        if entry is None:
            return  # already retired
        if entry.cid == packet_dcid:
            raise QuicProtocolError(
                TransportErrorCode.PROTOCOL_VIOLATION,
                "RETIRE_CONNECTION_ID retires the connection ID the packet was sent to",
                FrameType.RETIRE_CONNECTION_ID,
            )
        self.active.remove(entry)
        self.retired += (entry.cid,)

    def all_cids(self) -> list[bytes]:
        return [entry.cid for entry in self.active]


class PeerConnectionIds:
    """Connection IDs the peer issued to us."""

    __slots__ = (
        "_limit",
        "_pending_retire",
        "_zero_length",
        "available",
        "current",
        "retire_prior_to",
    )

    def __init__(self, initial_cid: bytes, active_limit: int) -> None:
        self._limit = active_limit
        self.current = PeerConnectionId(0, initial_cid, None)
        self.available: list[PeerConnectionId] = [self.current]  # in the order received
        self.retire_prior_to = 0
        # Sequence numbers with a RETIRE_CONNECTION_ID pending (shared () when none).
        self._pending_retire: tuple[int, ...] = ()
        self._zero_length = not initial_cid

    def replace_initial(self, cid: bytes) -> None:
        """The server chose its own ID in its first Initial (RFC 9000 §7.2)."""
        entry = PeerConnectionId(0, cid, self.current.stateless_reset_token)
        self.available = [entry]
        self.current = entry
        self._zero_length = not cid

    def set_initial_reset_token(self, token: bytes) -> None:
        """The server's stateless_reset_token transport parameter (RFC 9000 §18.2)."""
        first = _find(self.available, 0)
        if first is not None:
            first.stateless_reset_token = token

    def on_new_connection_id(
        self, sequence_number: int, retire_prior_to: int, cid: bytes, token: bytes
    ) -> None:
        """Handle NEW_CONNECTION_ID (RFC 9000 §19.15)."""
        if self._zero_length:
            raise QuicProtocolError(
                TransportErrorCode.PROTOCOL_VIOLATION,
                "NEW_CONNECTION_ID from a peer using zero-length connection IDs",
                FrameType.NEW_CONNECTION_ID,
            )
        known = _find(self.available, sequence_number)
        if known is not None:
            if known.cid != cid or known.stateless_reset_token != token:
                raise QuicProtocolError(
                    TransportErrorCode.PROTOCOL_VIOLATION,
                    "NEW_CONNECTION_ID reuses a sequence number for a different ID",
                    FrameType.NEW_CONNECTION_ID,
                )
            return
        if sequence_number < self.retire_prior_to:
            # Already retired by an earlier retire_prior_to: retire it at once.
            self._queue_retirements((sequence_number,))
            return
        self.available.append(PeerConnectionId(sequence_number, cid, token))
        if retire_prior_to > self.retire_prior_to:
            self.retire_prior_to = retire_prior_to
            kept = [e for e in self.available if e.sequence_number >= retire_prior_to]
            self._queue_retirements(
                [e.sequence_number for e in self.available if e.sequence_number < retire_prior_to]
            )
            self.available = kept
            if self.current.sequence_number < retire_prior_to:
                self.current = min(self.available, key=_sequence)
        # RFC 9000 §5.1.1: more than our limit is a CONNECTION_ID_LIMIT_ERROR.
        if len(self.available) > self._limit:
            raise QuicProtocolError(
                TransportErrorCode.CONNECTION_ID_LIMIT_ERROR,
                f"peer issued more than {self._limit} active connection IDs",
                FrameType.NEW_CONNECTION_ID,
            )

    def _queue_retirements(self, sequence_numbers: Sequence[int]) -> None:
        """Queue RETIRE_CONNECTION_ID for IDs the peer's frames retired.

        RFC 9000 §5.1.2: the retirements waiting to be sent (or sent again
        after a loss) are bounded, at twice our active_connection_id_limit;
        past that the peer is closed with CONNECTION_ID_LIMIT_ERROR. Otherwise
        NEW_CONNECTION_ID frames below Retire Prior To (~29 bytes each) would
        queue retirements without end, each costing time in proportion to
        those already queued. A sequence number already queued is not queued
        again (a retransmitted frame).
        """
        pending = self._pending_retire
        fresh = tuple(s for s in sequence_numbers if s not in pending)
        if not fresh:
            return
        if len(pending) + len(fresh) > MAX_PENDING_RETIREMENTS_FACTOR * self._limit:
            raise QuicProtocolError(
                TransportErrorCode.CONNECTION_ID_LIMIT_ERROR,
                "peer made us retire too many connection IDs at once",
                FrameType.NEW_CONNECTION_ID,
            )
        self._pending_retire = pending + fresh

    def use_next(self) -> bool:
        """Switch to an unused connection ID and retire the current one.

        For a new network path (RFC 9000 §9.5: the same ID must not be used
        towards two addresses). Returns False, keeping the current ID, when
        the peer has not issued a spare one.
        """
        old = self.current
        spare = [e for e in self.available if e.sequence_number != old.sequence_number]
        if self._zero_length or not spare:
            return False
        self.available = spare
        self._pending_retire += (old.sequence_number,)
        self.current = min(spare, key=_sequence)
        return True

    def has_pending_retirements(self) -> bool:
        return bool(self._pending_retire)

    def pending_retirements(self) -> list[int]:
        return list(self._pending_retire)

    def on_retirement_sent(self, sequence_number: int) -> None:
        if sequence_number in self._pending_retire:
            self._pending_retire = tuple(s for s in self._pending_retire if s != sequence_number)

    def on_retirement_delivered(self, sequence_number: int, delivered: bool) -> None:
        if not delivered and sequence_number not in self._pending_retire:
            self._pending_retire += (sequence_number,)

    def is_stateless_reset(self, datagram: bytes) -> bool:
        """Whether the datagram ends with one of the peer's reset tokens (RFC 9000 §10.3.1)."""
        if len(datagram) < 21:
            return False
        tail = bytes(datagram[-16:])
        # RFC 9000 §10.3.1: compare without leaking the token (constant time).
        found = False
        for entry in self.available:
            token = entry.stateless_reset_token
            if token is not None and hmac.compare_digest(token, tail):
                found = True
        return found
