"""Loss detection, RTT estimation and the probe timeout (RFC 9002 §5, §6, App. A).

Theory of operation
-------------------
Every packet the connection sends is recorded as a :class:`SentPacket` in the
state of its packet number space; the records are kept in a dict keyed by
packet number, so iteration order is send order. When an ACK frame arrives,
:meth:`LossRecovery.on_ack_received`

1. checks that it acknowledges only packets we sent (RFC 9000 §13.1),
2. removes the newly acknowledged packets (only the few outstanding packets
   below the previous largest acknowledged are scanned, plus the new ranges
   above it, so the cost is amortised O(1) per packet),
3. takes an RTT sample when the largest acknowledged packet is new (§5.1),
4. declares packets lost by packet threshold (3 at first) or time threshold
   (9/8 RTT at first) (§6.1) -- since send times grow with packet numbers the scan stops at the
   first packet that is not lost, whose deadline becomes the loss time,
5. tells the congestion controller what was lost (and whether that amounts to
   persistent congestion, §7.6) and then what was acknowledged.

Packets declared lost are remembered for a few PTOs. An ACK that covers one
shows the loss was spurious (the packet was only reordered or delayed): the
threshold that declared it lost is raised to what would have waited for it
(bounded; RFC 9002 §6.1.1 and §6.1.2 allow adaptive thresholds), the
connection is told its frames arrived, and the congestion controller may undo
the reduction (RFC 9438 §4.9).

A single timer drives the rest: :meth:`LossRecovery.loss_detection_timer` is
the earliest time-threshold loss time, else the probe timeout (§6.2), else
nothing (App. A.8). :meth:`LossRecovery.on_loss_detection_timeout` either
declares time-threshold losses or asks the connection for probe packets and
doubles the PTO backoff. Probes cover every space with data in flight
(RFC 9002 §6.2.4); the connection's writer fills them with data.

Time is always passed in as ``now`` (seconds); this module reads no clock.
Bytes in flight are accounted by the congestion controller.

Modules: :mod:`.sent_packet` (the records), :mod:`.rtt` (the estimator),
:mod:`.loss_detection` (threshold arithmetic, per-space state, ACK range
checks) and this one (the algorithm and the timer), which re-exports the others'
public names.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .loss_detection import (
    DISCARDED_SPACE,
    K_PACKET_THRESHOLD,
    K_PERSISTENT_CONGESTION_THRESHOLD,
    K_TIME_THRESHOLD,
    LOST_MEMORY_PTOS,
    MAX_LOST_REMEMBERED,
    MAX_PACKET_THRESHOLD,
    MAX_TIME_THRESHOLD,
    LostRecord,
    SpaceState,
    check_ranges,
    loss_delay,
    loss_time_of,
    lost_by_packet_threshold,
    lost_by_time_threshold,
    lost_in_ranges,
    newly_acked,
    persistent_congestion_duration,
)
from .pmtud import BASE_PLPMTU
from .rtt import DEFAULT_INITIAL_RTT, K_GRANULARITY, RttEstimator
from .sent_packet import AckResult, SentPacket, Space, TimeoutResult

if TYPE_CHECKING:
    from .congestion.base import CongestionController
    from .pmtud import PathMtuDiscovery

__all__ = [
    "DEFAULT_INITIAL_RTT",
    "K_GRANULARITY",
    "K_PACKET_THRESHOLD",
    "K_PERSISTENT_CONGESTION_THRESHOLD",
    "K_TIME_THRESHOLD",
    "LOST_MEMORY_PTOS",
    "MAX_LOST_REMEMBERED",
    "MAX_PACKET_THRESHOLD",
    "MAX_TIME_THRESHOLD",
    "AckResult",
    "LossRecovery",
    "RttEstimator",
    "SentPacket",
    "Space",
    "TimeoutResult",
    "loss_delay",
    "loss_time_of",
    "lost_by_packet_threshold",
    "lost_by_time_threshold",
    "persistent_congestion_duration",
]


_SPACES = tuple(Space)  # iterating the enum class costs a generator per use

# Enum members read per packet or per handshake, as globals: on CPython 3.11
# ``Enum.MEMBER`` takes EnumType.__getattr__'s slow path (~1 K instructions
# a read, against ~10 for a global).
_APPLICATION = Space.APPLICATION
_HANDSHAKE_SPACE = Space.HANDSHAKE


class LossRecovery:
    """Loss detection and the loss detection timer for one connection (RFC 9002 App. A).

    The connection reports every sent packet (:meth:`on_packet_sent`) and every
    ACK frame (:meth:`on_ack_received`), arms a timer at
    :meth:`loss_detection_timer` and calls :meth:`on_loss_detection_timeout`
    when it fires.
    """

    __slots__ = (
        "_first_rtt_sample_time",
        "_peer_validated",
        "_spaces",
        "_timer_anchor",
        "amplification_blocked",
        "congestion",
        "handshake_confirmed",
        "has_handshake_keys",
        "is_client",
        "packet_threshold",
        "peer_max_ack_delay",
        "pmtud",
        "pto_count",
        "rtt",
        "spurious_losses",
        "time_threshold",
    )

    def __init__(
        self,
        *,
        congestion: CongestionController,
        initial_rtt: float = DEFAULT_INITIAL_RTT,
        is_client: bool,
    ) -> None:
        self.congestion = congestion
        self.rtt = RttEstimator(initial_rtt)
        self.is_client = is_client
        self.pto_count = 0
        # Seconds; from the peer's transport parameters (0 until they arrive).
        self.peer_max_ack_delay = 0.0
        self.handshake_confirmed = False
        # Server: at the anti-amplification limit, so no timer (App. A.8).
        self.amplification_blocked = False
        # Client: Handshake keys installed (anti-deadlock probes go there, §6.2.2.1).
        self.has_handshake_keys = False
        self._peer_validated = False
        self._spaces = (SpaceState(), SpaceState(), SpaceState())
        self._first_rtt_sample_time: float | None = None
        # Time of the last event that (re)armed the timer; the anti-deadlock
        # PTO counts from it (App. A.8 uses "now" at arming time). None until
        # the first packet in flight: App. A.5 and A.7 arm the timer only on
        # sending one or on an ACK, so nothing is armed before the first send.
        self._timer_anchor: float | None = None
        # Reordering thresholds (§6.1.1, §6.1.2), raised by spurious losses.
        self.packet_threshold = K_PACKET_THRESHOLD
        self.time_threshold = K_TIME_THRESHOLD
        self.spurious_losses = 0
        # Told of losses, timeouts and big packets acknowledged (black holes).
        self.pmtud: PathMtuDiscovery | None = None

    # -- state the connection sets ---------------------------------------------

    @property
    def peer_completed_address_validation(self) -> bool:
        """App. A.6: always true for a server; a client learns it from a
        Handshake ACK or handshake confirmation."""
        return not self.is_client or self._peer_validated

    @peer_completed_address_validation.setter
    def peer_completed_address_validation(self, value: bool) -> None:
        self._peer_validated = value

    @property
    def bytes_in_flight(self) -> int:
        """Bytes of in-flight packets not yet acknowledged, lost or discarded."""
        return self.congestion.bytes_in_flight

    def largest_acked(self, space: Space) -> int | None:
        """Largest packet number the peer acknowledged in ``space``."""
        largest = self._spaces[space].largest_acked
        return None if largest < 0 else largest

    # -- sending ---------------------------------------------------------------

    def on_packet_sent(self, packet: SentPacket) -> None:
        """Track a packet just sent (App. A.5)."""
        state = self._spaces[packet.space]
        pn = packet.packet_number
        if pn <= state.largest_sent:
            raise ValueError(f"packet number {pn} reused or out of order in {packet.space.name}")
        state.largest_sent = pn
        state.sent[pn] = packet
        if packet.in_flight:
            now = packet.time_sent
            if packet.ack_eliciting:
                state.last_ack_eliciting_time = now
                state.ack_eliciting_in_flight += 1
            self.congestion.on_packet_sent(packet, now)
            self._timer_anchor = now

    # -- acknowledgments ---------------------------------------------------------

    def on_ack_received(
        self, space: Space, ranges: Sequence[tuple[int, int]], ack_delay: float, now: float
    ) -> AckResult:
        """Process one ACK frame (App. A.7).

        ``ranges`` are inclusive ``(smallest, largest)`` pairs in descending
        order; ``ack_delay`` is in seconds. Raises :class:`QuicProtocolError`
        (PROTOCOL_VIOLATION) when it acknowledges a packet we never sent.
        """
        if not ranges:
            return AckResult([], [], False)
        state = self._spaces[space]
        check_ranges(state, ranges)
        if space is _HANDSHAKE_SPACE:
            # App. A.6: a Handshake ACK shows the server validated our address.
            self._peer_validated = True
        previous_largest = state.largest_acked
        largest = ranges[0][1]
        if largest > previous_largest:
            state.largest_acked = largest
        spurious = self._spurious_losses(state, ranges, previous_largest, now) if state.lost else []
        acked = newly_acked(state, ranges, previous_largest)
        if not acked:
            return AckResult([], [], False, spurious=spurious)
        ack_eliciting = False
        for packet in acked:
            if packet.ack_eliciting:
                ack_eliciting = True
                break
        state.forget(acked)
        rtt_sample = False
        newest = acked[-1]
        pmtud = self.pmtud
        if pmtud is not None and newest.size > BASE_PLPMTU and space is _APPLICATION:
            pmtud.on_big_packet_acked(newest.packet_number)
        # RFC 9002 §5.1: sample only when the largest acknowledged is new and
        # something ack-eliciting was newly acknowledged.
        if newest.packet_number == largest and ack_eliciting:
            self._take_rtt_sample(space, now - newest.time_sent, ack_delay, now)
            rtt_sample = True
        lost = self._detect_lost(state, now)
        persistent = self._on_lost(state, lost, now) if lost else False
        self.congestion.on_packets_acked(acked, now, self.rtt)
        # RFC 9002 §6.2.1 / App. A.7: reset the backoff, except for a client
        # not yet sure the server validated its address.
        if not self.is_client or self._peer_validated:  # peer_completed_address_validation
            self.pto_count = 0
        self._timer_anchor = now
        return AckResult(acked, lost, rtt_sample, persistent, spurious)

    def _take_rtt_sample(self, space: Space, latest: float, ack_delay: float, now: float) -> None:
        if space is not _APPLICATION and not self.rtt.has_sample:
            # Initial and Handshake ACKs are not delayed on purpose (RFC 9000
            # §13.2.1), but under loss the peer may acknowledge an old packet in
            # a retransmission sent long after: take out the delay it reports
            # (RFC 9002 §5.3 lets us use it) so the first sample, which sets
            # the estimate, is not seconds long.
            if 0.0 < ack_delay < latest:
                latest -= ack_delay
        if space is not _APPLICATION:
            ack_delay = 0.0  # RFC 9002 §5.3: MAY be ignored; later samples do
        self.rtt.update(
            latest,
            ack_delay,
            max_ack_delay=self.peer_max_ack_delay,
            handshake_confirmed=self.handshake_confirmed,
        )
        if self._first_rtt_sample_time is None:
            self._first_rtt_sample_time = now

    # -- loss ----------------------------------------------------------------------

    def _detect_lost(self, state: SpaceState, now: float) -> list[SentPacket]:
        """DetectAndRemoveLostPackets (App. A.10); also sets the space's loss time."""
        state.loss_time = None
        largest_acked = state.largest_acked
        lost: list[SentPacket] = []
        sent = state.sent
        if largest_acked < 0 or not sent:
            return lost
        for first in sent:  # noqa: B007 -- the oldest packet outstanding
            break
        if first > largest_acked:
            return lost  # nothing outstanding below the largest acknowledged
        delay = loss_delay(self.rtt.latest_rtt, self.rtt.smoothed_rtt, self.time_threshold)
        packet_threshold = self.packet_threshold
        records = state.lost
        for pn, packet in state.sent.items():
            if pn > largest_acked:
                break
            # The same float expression as the loss time the timer is armed
            # with: comparing against ``now - delay`` instead can round the
            # other way, so the timer would fire forever without a loss.
            loss_time = packet.time_sent + delay
            by_time = loss_time <= now
            by_packet = largest_acked >= pn + packet_threshold
            if by_time or by_packet:
                lost.append(packet)
                records[pn] = LostRecord(packet, now, by_packet, by_time)
                continue
            # Send times grow with packet numbers: nothing later is lost yet,
            # and this packet has the earliest deadline.
            state.loss_time = loss_time
            break
        if lost:
            state.forget(lost)
            self._prune_lost_records(state, now)
        return lost

    # -- spurious losses (adaptive reordering thresholds) ----------------------------

    def _spurious_losses(
        self,
        state: SpaceState,
        ranges: Sequence[tuple[int, int]],
        previous_largest: int,
        now: float,
    ) -> list[SentPacket]:
        """Packets declared lost that ``ranges`` acknowledge: they were only
        reordered (or delayed). Each one raises the threshold that declared it
        lost to what would have waited for it, within bounds -- the adaptive
        thresholds RFC 9002 §6.1.1 and §6.1.2 allow -- so heavy reordering
        without loss stops triggering retransmissions and window reductions."""
        found: list[SentPacket] = []
        records = state.lost
        if not records or next(reversed(records)) < ranges[-1][0]:
            return found
        for pn in lost_in_ranges(records, ranges):
            record = records.pop(pn)
            found.append(record.packet)
            if record.by_packet:
                # This many later packets were acknowledged before it arrived.
                distance = previous_largest - pn
                self.packet_threshold = min(
                    max(self.packet_threshold, distance + 1), MAX_PACKET_THRESHOLD
                )
            if record.by_time:
                # The factor of the RTT that would have covered this packet.
                waited = (now - record.packet.time_sent) / max(
                    self.rtt.latest_rtt, self.rtt.smoothed_rtt, K_GRANULARITY
                )
                self.time_threshold = min(
                    max(self.time_threshold, waited * K_TIME_THRESHOLD), MAX_TIME_THRESHOLD
                )
        if found:
            self.spurious_losses += len(found)
            self.congestion.on_spurious_loss(found, now)
        return found

    def _prune_lost_records(self, state: SpaceState, now: float) -> None:
        """Forget lost packets too old for a late ACK to matter (or too many)."""
        records = state.lost
        horizon = now - LOST_MEMORY_PTOS * self.pto_period(_APPLICATION)
        excess = len(records) - MAX_LOST_REMEMBERED
        for pn in list(records):
            record = records[pn]
            if excess <= 0 and record.declared_at >= horizon:
                break
            del records[pn]
            excess -= 1

    def _on_lost(self, state: SpaceState, lost: list[SentPacket], now: float) -> bool:
        """Report losses to congestion control; True on persistent congestion."""
        if any(packet.pmtu_probe for packet in lost):
            # RFC 9000 §14.4, RFC 8899 §4.1: a lost PMTU probe says the path is
            # too narrow for it, not that it is congested.
            self.congestion.discard([p for p in lost if p.pmtu_probe])
            lost = [p for p in lost if not p.pmtu_probe]
            if not lost:
                return False
        if self.pmtud is not None and lost[0].space is _APPLICATION:
            self.pmtud.on_packets_lost(lost)
        persistent = self._persistent_congestion(state, lost)
        self.congestion.on_packets_lost(lost, now)
        if persistent:
            self.congestion.on_persistent_congestion(now)
        return persistent

    def _persistent_congestion(self, state: SpaceState, lost: list[SentPacket]) -> bool:
        """RFC 9002 §7.6.2: two ack-eliciting packets, sent after the first RTT
        sample, lost with nothing acknowledged in between, further apart than
        the persistent congestion duration. Tracked per space (allowed by
        §7.6.2) as a run of consecutive lost packet numbers."""
        first_sample = self._first_rtt_sample_time
        rtt = self.rtt
        duration = persistent_congestion_duration(
            rtt.smoothed_rtt, rtt.rttvar, self.peer_max_ack_delay
        )
        found = False
        for packet in lost:
            if not state.follows_run(packet.packet_number):
                state.run_start = None
            state.run_end = packet.packet_number
            if not packet.ack_eliciting or first_sample is None:
                continue
            if packet.time_sent <= first_sample:
                continue
            if state.run_start is None:
                state.run_start = packet.time_sent
            elif packet.time_sent - state.run_start > duration:
                found = True
        if found:
            state.run_end = None
            state.run_start = None
        return found

    # -- timer ---------------------------------------------------------------------

    def pto_duration(self, space: Space) -> float:
        """The probe timeout with backoff; ``max_ack_delay`` counts only for
        application data (RFC 9002 §6.2.1)."""
        return self.pto_period(space) * (1 << self.pto_count)

    def pto_period(self, space: Space) -> float:
        """The current probe timeout, without backoff (RFC 9002 §6.2.1): what
        RFC 9000 §10.2 means by "the current PTO" for the closing period."""
        duration = self.rtt.pto_base()
        if space is _APPLICATION:
            duration += self.peer_max_ack_delay
        return duration

    def set_amplification_blocked(self, blocked: bool) -> None:
        """A server at its anti-amplification limit (RFC 9000 §8.1) arms no
        timer: it could not send a probe anyway (App. A.8)."""
        self.amplification_blocked = blocked

    def start_new_path(self, congestion: CongestionController, initial_rtt: float) -> None:
        """RFC 9000 §9.4: the peer moved to a new IP address: a fresh congestion
        controller and RTT estimator. The bytes in flight stay accounted (they
        leave when acknowledged or lost)."""
        congestion.bytes_in_flight = self.congestion.bytes_in_flight
        self.congestion = congestion
        self.rtt = RttEstimator(initial_rtt)

    def loss_detection_timer(self) -> float | None:
        """Absolute time the loss detection timer fires, or None (App. A.8)."""
        # Asked whenever the shell re-arms its timer: one pass, no helpers.
        loss_time: float | None = None
        in_flight = False
        for state in self._spaces:
            t = state.loss_time
            if t is not None and (loss_time is None or t < loss_time):
                loss_time = t
            if state.ack_eliciting_in_flight:
                in_flight = True
        if loss_time is not None:
            return loss_time
        if self.amplification_blocked:
            return None  # the server could not send a probe anyway
        if not in_flight and (not self.is_client or self._peer_validated):
            return None  # (the second test: peer_completed_address_validation)
        return self._pto_time_and_space()[0]

    def on_loss_detection_timeout(self, now: float) -> TimeoutResult:
        """Handle the expiry of the loss detection timer (App. A.9)."""
        timer = self.loss_detection_timer()
        if timer is None or now < timer:
            return TimeoutResult([], None, 0)
        self._timer_anchor = now
        loss_time, space = self._earliest_loss_time()
        if loss_time is not None and space is not None:
            state = self._spaces[space]
            lost = self._detect_lost(state, now)
            if lost:
                self._on_lost(state, lost, now)
            return TimeoutResult(lost, None, 0)
        if not self._ack_eliciting_in_flight():
            # RFC 9002 §6.2.2.1: anti-deadlock probe from a client.
            probe_space, probes = self._anti_deadlock_space(), 1
        else:
            # RFC 9002 §6.2.4: one or two ack-eliciting probes.
            probe_space, probes = self._pto_time_and_space()[1], 2
        self.pto_count += 1
        if self.pmtud is not None:
            # Before the probes are built: they go at the base size in a black hole.
            self.pmtud.on_pto(self.pto_count)
        # RFC 9002 §6.2.4: probes also go in the other spaces with ack-eliciting
        # data in flight. That includes 1-RTT data before the handshake is
        # confirmed (only its timer waits, §6.2.1): a server that has discarded
        # its Handshake keys acknowledges only those, and that acknowledgment
        # confirms the handshake for a client whose HANDSHAKE_DONE was lost.
        also = tuple(
            space
            for space, state in zip(_SPACES, self._spaces, strict=True)
            if space is not probe_space and state.ack_eliciting_in_flight
        )
        return TimeoutResult([], probe_space, probes, also)

    def oldest_in_flight(self, space: Space, count: int) -> list[SentPacket]:
        """Up to ``count`` of the oldest ack-eliciting packets in flight in
        ``space``: what a probe resends when no new data waits (RFC 9002 §6.2.4)."""
        out: list[SentPacket] = []
        for packet in self._spaces[space].sent.values():
            if len(out) >= count:
                break
            if packet.ack_eliciting and packet.in_flight:
                out.append(packet)
        return out

    def _earliest_loss_time(self) -> tuple[float | None, Space | None]:
        best: float | None = None
        best_space: Space | None = None
        for space, state in zip(_SPACES, self._spaces, strict=True):
            t = state.loss_time
            if t is not None and (best is None or t < best):
                best, best_space = t, space
        return best, best_space

    def _ack_eliciting_in_flight(self) -> bool:
        initial, handshake, application = self._spaces  # no generator: a hot check
        return bool(
            initial.ack_eliciting_in_flight
            or handshake.ack_eliciting_in_flight
            or application.ack_eliciting_in_flight
        )

    def _anti_deadlock_space(self) -> Space:
        return _HANDSHAKE_SPACE if self.has_handshake_keys else Space.INITIAL

    def _pto_time_and_space(self) -> tuple[float | None, Space]:
        """GetPtoTimeAndSpace (App. A.8)."""
        backoff = 1 << self.pto_count
        duration = self.rtt.pto_base() * backoff
        if not self._ack_eliciting_in_flight():
            anchor = self._timer_anchor
            if anchor is None:
                return None, self._anti_deadlock_space()  # nothing sent yet
            return anchor + duration, self._anti_deadlock_space()
        best: float | None = None
        best_space = Space.INITIAL
        for space, state in zip(_SPACES, self._spaces, strict=True):
            if state.ack_eliciting_in_flight == 0 or state.last_ack_eliciting_time is None:
                continue
            if space is _APPLICATION:
                # RFC 9002 §6.2.1: no application PTO before confirmation.
                if not self.handshake_confirmed:
                    break
                duration += self.peer_max_ack_delay * backoff
            t = state.last_ack_eliciting_time + duration
            if best is None or t < best:
                best, best_space = t, space
        return best, best_space

    # -- discarding ------------------------------------------------------------------

    def discard_space(self, space: Space) -> list[SentPacket]:
        """Forget every packet of ``space`` (RFC 9002 §6.4, App. A.11).

        They leave bytes in flight without a congestion signal and are returned
        so the caller may run their handlers; the loss and PTO timers of the
        space are reset, as is the PTO backoff. Packet numbers keep counting.
        """
        state = self._spaces[space]
        packets = list(state.sent.values())
        self.congestion.discard(packets)
        if state is not DISCARDED_SPACE:
            state.reset_loss_state()
        self.pto_count = 0
        return packets

    def release_space(self, space: Space) -> list[SentPacket]:
        """:meth:`discard_space` for good: an Initial or Handshake space whose
        keys are gone (RFC 9001 §4.9) is never used again, so its state becomes
        the one empty, read-only state all connections share."""
        packets = self.discard_space(space)
        spaces = list(self._spaces)
        spaces[space] = DISCARDED_SPACE
        self._spaces = (spaces[0], spaces[1], spaces[2])
        return packets
