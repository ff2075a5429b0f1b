"""Ephemeral (EC)DHE key exchange for the key_share extension (RFC 8446 §4.2.8).

Theory of operation: each side makes one :class:`KeyShare` per offered group,
sends ``public_bytes`` and feeds the peer's share to :meth:`KeyShare.exchange`
to get the shared secret that enters the key schedule. Peer shares are
validated as RFC 8446 §4.2.8.2 and §7.4 require; a bad share is an
illegal_parameter alert. Private keys come from ``cryptography`` (the OS
random source); they never leave this object. :func:`want_key_share` asks
for the pair of a later handshake ahead of it, off that handshake's path;
the trio shell makes it (:func:`make_wanted_key_shares`) once nothing else
waits to run.
"""

from __future__ import annotations

import os
from enum import IntEnum

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519

from .alerts import illegal_parameter


class Group(IntEnum):
    """Named groups for key exchange (RFC 8446 §4.2.7)."""

    SECP256R1 = 0x0017
    SECP384R1 = 0x0018
    X25519 = 0x001D


DEFAULT_GROUPS = (Group.X25519, Group.SECP256R1)

_CURVES: dict[Group, ec.EllipticCurve] = {
    Group.SECP256R1: ec.SECP256R1(),
    Group.SECP384R1: ec.SECP384R1(),
}
# Uncompressed point sizes: 0x04 || X || Y (RFC 8446 §4.2.8.2).
_POINT_SIZES = {Group.SECP256R1: 65, Group.SECP384R1: 97}


_PrivateKey = x25519.X25519PrivateKey | ec.EllipticCurvePrivateKey

# Key pairs made ahead of the handshake that takes them (prepare_key_share):
# (group, for a client) -> [(process id, private key, public bytes)], each
# taken once. Per side, so that a process that is both (tests, benches)
# keeps one for each side's next handshake.
_READY: dict[tuple[Group, bool], list[tuple[int, _PrivateKey, bytes]]] = {}
_READY_MAX = 1
# Pairs asked for with want_key_share, not made yet.
_WANTED: set[tuple[Group, bool]] = set()


def _forget_prepared() -> None:
    # The parent and every child would hold the same keys.
    _READY.clear()
    _WANTED.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_prepared)


def _generate(group: Group) -> tuple[_PrivateKey, bytes]:
    if group is Group.X25519:
        x_private = x25519.X25519PrivateKey.generate()
        return x_private, x_private.public_key().public_bytes_raw()
    ec_private = ec.generate_private_key(_CURVES[group])
    return ec_private, ec_private.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


def want_key_share(group: Group, *, client: bool) -> None:
    """Ask for the key pair of a later handshake in ``group``.

    Called once a handshake is over (a server at the client's Finished, a
    client given a ticket): the next connect then skips the key generation
    (an X25519 key is ~470 K instructions, 35-60 us) on its critical path.
    The pair is not made here, on the path of the datagram that ended the
    handshake (and of the first request or reply that came with it), but by
    :func:`make_wanted_key_shares`, which the trio shell calls once nothing
    else waits to run. The work is the same, done earlier; without that call
    the next handshake makes its pair as it always did.
    """
    if len(_READY.get((group, client), ())) < _READY_MAX:
        _WANTED.add((group, client))


def key_shares_wanted() -> bool:
    """Whether :func:`want_key_share` asked for pairs not made yet."""
    return bool(_WANTED)


def make_wanted_key_shares() -> None:
    """Make the pairs :func:`want_key_share` asked for."""
    while _WANTED:
        group, client = _WANTED.pop()
        prepare_key_share(group, client=client)


def prepare_key_share(group: Group, *, client: bool) -> None:
    """Make the key pair of a later handshake in ``group`` now. Each pair is
    used by one handshake only (it is removed when taken), and a pair made in
    another process (before a fork) is never used."""
    ready = _READY.setdefault((group, client), [])
    if len(ready) < _READY_MAX:
        ready.append((os.getpid(), *_generate(group)))


def _take_ready(group: Group, client: bool) -> tuple[_PrivateKey, bytes] | None:
    ready = _READY.get((group, client))
    if not ready:
        return None
    try:
        pid, private, public = ready.pop()
    except IndexError:  # taken by another thread since the check
        return None
    if pid != os.getpid():
        # Made before a fork (and the fork hook did not run: os.fork is not
        # the only way): the parent and every child hold the same keys.
        _forget_prepared()
        return None
    return private, public


class KeyShare:
    """Our ephemeral key pair for one group (one made ahead, see
    :func:`want_key_share`, when there is one, else a new one)."""

    __slots__ = ("_private", "group", "public_bytes")

    def __init__(self, group: Group, *, client: bool = False) -> None:
        self.group = group
        self._private: _PrivateKey
        pair = _take_ready(group, client) or _generate(group)
        self._private, self.public_bytes = pair

    def exchange(self, peer_share: bytes) -> bytes:
        """The shared secret with the peer's ``key_exchange`` bytes."""
        private = self._private
        if isinstance(private, x25519.X25519PrivateKey):
            if len(peer_share) != 32:
                raise illegal_parameter("X25519 key share is not 32 bytes")
            try:
                # OpenSSL refuses an all-zero result (RFC 8446 §7.4.2).
                return private.exchange(x25519.X25519PublicKey.from_public_bytes(peer_share))
            except ValueError:
                raise illegal_parameter("invalid X25519 key share") from None
        group = self.group
        if len(peer_share) != _POINT_SIZES[group] or peer_share[0] != 4:
            # RFC 8446 §4.2.8.2: only the uncompressed point form is allowed.
            raise illegal_parameter(f"{group.name} key share is not an uncompressed point")
        try:
            public = ec.EllipticCurvePublicKey.from_encoded_point(_CURVES[group], peer_share)
            return private.exchange(ec.ECDH(), public)
        except ValueError:
            raise illegal_parameter(f"invalid {group.name} key share") from None

    def __repr__(self) -> str:
        return f"KeyShare({self.group.name})"
