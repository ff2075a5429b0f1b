"""Following the peer to a new address (RFC 9000 §8.2, §9.3), sans-IO.

Theory of operation
-------------------
Only clients move (RFC 9000 §9: servers never migrate, and ghostwire offers
no preferred_address), so only a server follows. A NAT rebinding or a
client migration shows up the same way: an authenticated 1-RTT packet from
a new address. The rules, all from RFC 9000:

* Only a packet with a *non-probing* frame (anything but PADDING,
  PATH_CHALLENGE, PATH_RESPONSE, NEW_CONNECTION_ID; §9.1) that is the
  *highest-numbered* so far moves us (§9.3); older or probing packets from
  elsewhere are processed but change nothing. Not before the handshake is
  confirmed (§9).
* We then send to the new address at once, but treat it as unvalidated:
  the anti-amplification limit applies again, three times what arrived from
  it (§8.1, §9.3.1), and a PATH_CHALLENGE goes out, in a datagram padded to
  1200 bytes when the limit allows (§8.2.1). A lost challenge is replaced
  by a new one.
* A PATH_RESPONSE echoing any challenge we sent validates the address. If
  the IP address changed (not only the port, which is what NAT rebindings
  do), the congestion controller and RTT estimator restart from their
  initial values (§9.4).
* If validation does not succeed within max(3 PTO, 6 kInitialRtt) (§8.2.4),
  we go back to the last validated address (§9.3.2); likewise when packets
  with higher numbers arrive from that address again, without a new
  validation (§9.3 allows skipping it for an address seen recently).
* A client that changed the connection ID it sends to was migrating on
  purpose: we switch to an unused connection ID of its own too, so the new
  path cannot be linked to the old one (§9.5). A NAT rebinding keeps the ID.

The path manager owns the peer's address (:attr:`PathManager.address`,
which the connection shows as ``peer_address``) and its validation and
anti-amplification counters (:class:`AntiAmplification`); nobody else assigns
them. The connection calls :meth:`PathManager.on_packet` for every 1-RTT
packet from an address other than ``address``; the frame writer asks
:meth:`challenge_to_send` and ``amplification.room()``; the frame receiver
hands PATH_RESPONSE data to :meth:`on_path_response`. Packets a client
receives from an unknown server address are dropped by the connection before
decryption (§9).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .congestion import create_congestion_controller
from .recovery import Space

if TYPE_CHECKING:
    from .connection import QuicConnection

K_INITIAL_RTT = 0.333  # RFC 9002 §6.2.2
# Challenges kept for matching responses (each loss adds one).
MAX_CHALLENGES = 8


def same_address(a: Any, b: Any) -> bool:
    """Whether two socket addresses are equal in host and port (IPv6 flow info ignored)."""
    return a is b or tuple(a[:2]) == tuple(b[:2])


class AntiAmplification:
    """RFC 9000 §8.1: until the peer's address is validated, a server sends at
    most three times the bytes it received from that address."""

    __slots__ = ("_received", "_sent", "validated")

    def __init__(self, validated: bool) -> None:
        self.validated = validated
        self._received = 0  # bytes from the address being validated
        self._sent = 0  # bytes sent to it

    def on_received(self, size: int) -> None:
        if not self.validated:
            self._received += size

    def on_sent(self, size: int) -> None:
        if not self.validated:
            self._sent += size

    def room(self) -> int | None:
        """Bytes we may still send (None: the address is validated, no limit)."""
        if self.validated:
            return None
        return max(0, 3 * self._received - self._sent)

    def has_room(self) -> bool:
        """The counters allow sending more (whether or not validation ended)."""
        return 3 * self._received > self._sent

    def validate(self) -> None:
        self.validated = True

    def restart(self, received: int) -> None:
        """A new, unvalidated address from which ``received`` bytes came (§9.3.1)."""
        self.validated = False
        self._received = received
        self._sent = 0


class PathManager:
    """Where the peer is, and whether its address is validated; for a server,
    following the client (see the module docstring)."""

    __slots__ = (
        "_challenges",
        "_conn",
        "_dcid",
        "_previous",
        "_random",
        "address",
        "amplification",
        "challenge_pending",
        "deadline",
        "migrations",
    )

    def __init__(
        self,
        conn: QuicConnection,
        random_bytes: Callable[[int], bytes],
        address: Any,
        *,
        validated: bool,
    ) -> None:
        self._conn = conn
        self._random = random_bytes
        self.address: Any = address  # where we send
        self.amplification = AntiAmplification(validated)
        # Outstanding PATH_CHALLENGE data (a tuple: the shared () when none).
        self._challenges: tuple[bytes, ...] = ()
        self._previous: Any = None  # last validated address while validating another
        self._dcid: bytes | None = None  # our connection ID the client used last
        self.challenge_pending = False  # a (new) PATH_CHALLENGE must go out
        self.deadline: float | None = None  # validation is abandoned then (§8.2.4)
        self.migrations = 0  # addresses the server followed the client to

    def detach(self) -> None:
        """The connection is terminated: drop the reference back to it."""
        del self._conn

    @property
    def validating(self) -> bool:
        return self.deadline is not None

    def on_packet_from_current(self, dcid: bytes) -> None:
        """A 1-RTT packet from the current address used our connection ID ``dcid``."""
        self._dcid = dcid

    def on_packet(
        self, addr: Any, non_probing: bool, highest: bool, size: int, dcid: bytes, now: float
    ) -> None:
        """An authenticated 1-RTT packet of ``size`` bytes arrived from ``addr``,
        which is not the current peer address."""
        conn = self._conn
        if conn.is_client or not conn.handshake_confirmed or not non_probing or not highest:
            return
        previous = self._previous
        if previous is not None and same_address(addr, previous):
            # Back to the last validated address (the other was spurious, §9.3.2).
            self._finish()
            self.address = previous
            self.amplification.validate()
            return
        if not self.validating:
            self._previous = self.address
        self.address = addr
        conn.pmtud.on_new_path()  # RFC 9000 §14.2.1: only the base size is known there
        self.amplification.restart(received=size)
        conn.recovery.set_amplification_blocked(False)
        self._challenges = ()
        self._new_challenge()
        self.deadline = now + max(
            3 * conn.recovery.pto_duration(Space.APPLICATION), 6 * K_INITIAL_RTT
        )
        self.migrations += 1
        if self._dcid is not None and dcid != self._dcid:
            conn.peer_cids.use_next()  # §9.5: no linkable connection ID on the new path
        self._dcid = dcid

    def _new_challenge(self) -> None:
        # RFC 9000 §8.2.1: unpredictable data in every PATH_CHALLENGE.
        self._challenges = (*self._challenges, self._random(8))[-MAX_CHALLENGES:]
        self.challenge_pending = True

    def challenge_to_send(self) -> bytes | None:
        if not self.challenge_pending or not self._challenges:
            return None
        self.challenge_pending = False
        return self._challenges[-1]

    def on_challenge_delivered(self, delivered: bool, data: bytes) -> None:
        """The packet carrying the challenge ``data`` was acknowledged or lost."""
        if not delivered and self.validating and self._challenges[-1:] == (data,):
            self._new_challenge()

    def on_path_response(self, data: bytes) -> None:
        """RFC 9000 §8.2.3: a PATH_RESPONSE echoing one of our challenges validates."""
        if not self.validating or data not in self._challenges:
            return
        conn = self._conn
        previous = self._previous
        self._finish()
        self.amplification.validate()
        conn.recovery.set_amplification_blocked(False)
        if previous is not None and previous[0] != self.address[0]:
            self._reset_congestion()

    def _reset_congestion(self) -> None:
        """RFC 9000 §9.4: a new IP address means a new path: start afresh."""
        config = self._conn.config
        recovery = self._conn.recovery
        fresh = create_congestion_controller(
            config.congestion_control, max_datagram_size=recovery.congestion.max_datagram_size
        )
        recovery.start_new_path(fresh, config.initial_rtt)

    def on_timer(self, now: float) -> None:
        """Validation timed out: return to the last validated address (§9.3.2)."""
        if self.deadline is None or now < self.deadline:
            return
        previous = self._previous
        self._finish()
        if previous is not None:
            self.address = previous
            self.amplification.validate()

    def _finish(self) -> None:
        self._challenges = ()
        self._previous = None
        self.challenge_pending = False
        self.deadline = None
