"""What loss recovery records and reports (RFC 9002 App. A.1).

Packet number spaces, the record kept for each packet sent
(:class:`SentPacket`), and the outcomes of an ACK frame and of a loss
detection timeout. :mod:`.recovery` re-exports every name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any


class Space(IntEnum):
    """Packet number spaces (RFC 9000 §12.3)."""

    INITIAL = 0
    HANDSHAKE = 1
    APPLICATION = 2


@dataclass(slots=True, eq=False)
class SentPacket:
    """What loss recovery remembers about one sent packet.

    ``handlers`` are ``(callback, args)`` pairs; the connection calls
    ``callback(delivered, *args)`` once the packet is acknowledged (``True``)
    or declared lost (``False``). A lost ``pmtu_probe`` leaves the bytes in
    flight without a congestion response. ``sequence`` is a send counter across all
    spaces stamped by the congestion controller (for HyStart++ rounds).
    """

    packet_number: int
    space: Space
    time_sent: float
    size: int
    ack_eliciting: bool
    in_flight: bool
    handlers: list[tuple[Callable[..., None], tuple[Any, ...]]] = field(default_factory=list)
    sequence: int = 0
    # A PMTU probe (RFC 9000 §14.4): its loss is no congestion signal.
    pmtu_probe: bool = False
    zero_rtt: bool = False  # a client's 0-RTT packet (application space): for qlog


@dataclass(slots=True)
class AckResult:
    """Outcome of one ACK frame: newly acknowledged and newly lost packets."""

    acked: list[SentPacket]
    lost: list[SentPacket]
    rtt_sample: bool
    persistent_congestion: bool = False
    # Packets declared lost earlier that this ACK shows arrived after all:
    # their frames need not be sent again.
    spurious: list[SentPacket] = field(default_factory=list)


@dataclass(slots=True)
class TimeoutResult:
    """Outcome of a loss detection timeout.

    Either ``lost`` holds time-threshold losses, or ``probe_space`` names the
    space in which the connection must send ``probes`` ack-eliciting packets;
    ``also_probe`` are other spaces with ack-eliciting data in flight, which
    the probes should cover too (RFC 9002 §6.2.4: coalesced when possible).
    """

    lost: list[SentPacket]
    probe_space: Space | None
    probes: int
    also_probe: tuple[Space, ...] = ()
