"""1-RTT key phases and key updates (RFC 9001 §6).

1-RTT packets carry a key phase bit. Either side may switch to the next
generation of keys (derived with "quic ku"); the other notices the flipped bit,
derives the next keys, and — if the packet decrypts with them — follows.

* Receiving: a packet whose bit matches the current receive phase uses the
  current keys. A flipped bit means either an old packet that was reordered
  (its packet number is below the first one of the current phase, and the
  previous keys are still kept) or the peer's update (try the next keys).
  A peer update also rotates our send keys, unless we started it.
* Sending: :meth:`initiate` starts an update; RFC 9001 §6.1 forbids starting
  another until a packet of the current phase has been acknowledged.
* The previous receive keys are dropped three PTOs after the switch
  (RFC 9001 §6.5), so a bit that flips back later is treated as a new update.
* AEAD limits (RFC 9001 §6.6): an update is started by itself once the send
  keys protected three quarters of the suite's confidentiality limit (2^23
  packets for AES-GCM), and is due at once when the user asks (:meth:`request`);
  either waits until §6.1 allows it. Packets that fail authentication are
  counted across all keys; past the integrity limit (2^52 for AES-GCM, 2^36
  for ChaCha20-Poly1305) the connection must close with AEAD_LIMIT_REACHED.
  Both limits can be set lower (tests, or the cautious).
"""

from __future__ import annotations

from .crypto import PacketKeys, confidentiality_limit, integrity_limit

KEY_PHASE_BIT = 0x04
# Start an update when this share of the confidentiality limit is used up:
# the update needs an acknowledgement first (RFC 9001 §6.1), so leave room.
AUTO_UPDATE_SHARE = 3 / 4


class KeyPhases:
    """Current, next and previous 1-RTT keys for both directions."""

    __slots__ = (
        "_confidentiality_override",
        "_first_pn_of_phase",
        "_integrity_override",
        "_next_recv",
        "_previous_recv",
        "_send_phase_acked",
        "_send_phase_start_pn",
        "confidentiality_limit",
        "decryption_failures",
        "discard_previous_at",
        "initiated",
        "integrity_limit",
        "recv",
        "recv_phase",
        "send",
        "send_phase",
        "update_requested",
        "updates",
    )

    def __init__(self, confidentiality: int | None = None, integrity: int | None = None) -> None:
        self._confidentiality_override = confidentiality
        self._integrity_override = integrity
        self.confidentiality_limit = confidentiality if confidentiality is not None else 1 << 23
        self.integrity_limit = integrity if integrity is not None else 1 << 36
        self.decryption_failures = 0
        self.initiated = 0  # key updates we started
        self.update_requested = False
        self.send: PacketKeys | None = None
        self.recv: PacketKeys | None = None
        self.send_phase = 0
        self.recv_phase = 0
        self._next_recv: PacketKeys | None = None
        self._previous_recv: PacketKeys | None = None
        self._first_pn_of_phase = 0
        self._send_phase_acked = False
        self._send_phase_start_pn = 0
        self.discard_previous_at: float | None = None
        self.updates = 0

    def install(self, keys: PacketKeys, is_write: bool) -> None:
        if is_write:
            self.send = keys
        else:
            self.recv = keys
        # RFC 9001 §6.6: the limits are those of the negotiated AEAD.
        suite = keys.cipher_suite
        if self._confidentiality_override is None:
            self.confidentiality_limit = confidentiality_limit(suite)
        if self._integrity_override is None:
            self.integrity_limit = integrity_limit(suite)

    # -- AEAD limits (RFC 9001 §6.6) --------------------------------------------

    def request(self) -> None:
        """The user asked for a key update: start it as soon as it is allowed."""
        self.update_requested = True

    def packets_with_send_keys(self, next_send_pn: int) -> int:
        """Packets protected by the current send keys (packet numbers used since)."""
        return next_send_pn - self._send_phase_start_pn

    def maybe_initiate(self, next_send_pn: int) -> bool:
        """Start a requested or due key update if RFC 9001 §6.1 allows it now."""
        due = self.packets_with_send_keys(next_send_pn) >= int(
            self.confidentiality_limit * AUTO_UPDATE_SHARE
        )
        if not (self.update_requested or due) or not self.can_initiate():
            return False
        self.initiate(next_send_pn)
        return True

    def confidentiality_exhausted(self, next_send_pn: int) -> bool:
        """The send keys reached the limit and no update could replace them."""
        return self.packets_with_send_keys(next_send_pn) >= self.confidentiality_limit

    def on_decryption_failed(self) -> bool:
        """Count a packet that failed authentication; True past the integrity limit."""
        self.decryption_failures += 1
        return self.decryption_failures > self.integrity_limit

    def keys_for(self, first_byte: int, pn: int) -> PacketKeys | None:
        """The keys to try for a 1-RTT packet with this (unprotected) first byte."""
        phase = 1 if first_byte & KEY_PHASE_BIT else 0
        if phase == self.recv_phase:
            return self.recv
        if self._previous_recv is not None and pn < self._first_pn_of_phase:
            return self._previous_recv
        if self.recv is None:
            return None
        if self._next_recv is None:
            self._next_recv = self.recv.next_phase()
        return self._next_recv

    def on_decrypted(
        self, keys: PacketKeys, pn: int, now: float, pto: float, next_send_pn: int
    ) -> None:
        """A packet decrypted with ``keys``; switch phases if they were the next ones."""
        if keys is not self._next_recv:
            return
        self._previous_recv = self.recv
        self.recv = keys
        self._next_recv = None
        self.recv_phase ^= 1
        self._first_pn_of_phase = pn
        self.discard_previous_at = now + 3 * pto
        if self.send_phase != self.recv_phase and self.send is not None:
            # The peer initiated: follow it (RFC 9001 §6.2).
            self.send = self.send.next_phase()
            self.send_phase = self.recv_phase
            self._send_phase_acked = False
            self._send_phase_start_pn = next_send_pn
        self.updates += 1

    def on_ack(self, largest_acked: int) -> None:
        """The peer acknowledged 1-RTT packets up to ``largest_acked``."""
        if largest_acked >= self._send_phase_start_pn:
            self._send_phase_acked = True

    def can_initiate(self) -> bool:
        return (
            self.send is not None and self._send_phase_acked and self.send_phase == self.recv_phase
        )

    def initiate(self, next_send_pn: int) -> None:
        """Start a key update (RFC 9001 §6.1); ``next_send_pn`` is the first
        packet number that will use the new keys."""
        if not self.can_initiate() or self.send is None:
            raise RuntimeError(
                "a key update needs confirmed keys and an acknowledged packet in the current phase"
            )
        self.send = self.send.next_phase()
        self.send_phase ^= 1
        self._send_phase_acked = False
        self._send_phase_start_pn = next_send_pn
        self.update_requested = False
        self.initiated += 1

    def on_timer(self, now: float) -> None:
        if self.discard_previous_at is not None and now >= self.discard_previous_at:
            self._previous_recv = None
            self.discard_previous_at = None
