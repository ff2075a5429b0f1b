"""Forwarding between workers, where the kernel cannot route by connection ID.

Without the reuseport BPF program (:mod:`.reuseport`: not attached, or
turned off), the kernel picks a worker's socket by a hash of the 4-tuple.
A connection's packets keep reaching its worker while the client's address
stays put, but after a NAT rebinding or a migration (RFC 9000 §9) the hash
may name another worker. That worker does not know the connection ID; on
its own it would answer with a stateless reset (RFC 9000 §10.3) and end the
connection.

Instead, a worker that receives a short-header packet for an unknown
connection ID whose worker byte names another worker forwards the datagram
to it, with the address it came from, and the owner processes it as if its
own socket had received it; replies leave from the owner's socket, bound to
the same port. Each worker has an *inbox*: one end of a ``socketpair``
(``AF_UNIX``, ``SOCK_DGRAM``) made by the parent; every worker holds the
other ends. A datagram socket pair keeps messages whole, and on Linux its
queue is bounded by the send buffer only (connected peers skip the
``max_dgram_qlen`` limit). A full inbox drops the datagram, like a full UDP
socket buffer would: QUIC's loss recovery resends.

Only short headers are forwarded: long-header packets of a handshake carry
a DCID the client chose (Initial, 0-RTT), and a client does not migrate
before the handshake is confirmed (RFC 9000 §9). And only those that could
be real packets (the fixed bit set, long enough to decrypt), so that junk
with random CIDs does not make every worker feed one worker's inbox. A
forwarded datagram is never forwarded again: its worker byte names the
worker that receives it.
"""

from __future__ import annotations

import logging
import socket
import struct
from collections.abc import Callable
from typing import Any

import trio

log = logging.getLogger("ghostwire.quic")

INBOX_BUFFER_BYTES = 4 << 20
_MAX_MESSAGE = 65536 + 512  # a UDP payload and its header
_HEADER = struct.Struct("!BBHII")  # tuple size, host length, port, flowinfo, scope ID
_MAX_DRAIN = 256


def open_inboxes(count: int) -> list[tuple[socket.socket, socket.socket]]:
    """(inbox, sending end) for each of ``count`` workers, non-blocking."""
    pairs: list[tuple[socket.socket, socket.socket]] = []
    try:
        for _ in range(count):
            inbox, sender = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
            pairs.append((inbox, sender))
            inbox.setblocking(False)
            sender.setblocking(False)
            for sock, option in ((inbox, socket.SO_RCVBUF), (sender, socket.SO_SNDBUF)):
                try:
                    sock.setsockopt(socket.SOL_SOCKET, option, INBOX_BUFFER_BYTES)
                except OSError:
                    pass
    except BaseException:
        for inbox, sender in pairs:
            inbox.close()
            sender.close()
        raise
    return pairs


def encode(data: bytes, addr: Any) -> bytes:
    """A datagram and its source address, (host, port) or (host, port, flowinfo, scope_id)."""
    host = str(addr[0]).encode("ascii")
    flowinfo, scope_id = (addr[2], addr[3]) if len(addr) == 4 else (0, 0)
    return _HEADER.pack(len(addr), len(host), addr[1], flowinfo, scope_id) + host + data


def decode(message: bytes) -> tuple[bytes, Any]:
    """The inverse of :func:`encode`; ValueError for a message it did not make."""
    if len(message) < _HEADER.size:
        raise ValueError("forwarded message too short")
    size, host_length, port, flowinfo, scope_id = _HEADER.unpack_from(message)
    start = _HEADER.size + host_length
    if size not in (2, 4) or len(message) < start:
        raise ValueError("malformed forwarded message")
    host = message[_HEADER.size : start].decode("ascii")
    addr: Any = (host, port) if size == 2 else (host, port, flowinfo, scope_id)
    return message[start:], addr


class Forwarder:
    """One worker's side: send misrouted datagrams on, receive the others'.

    ``senders[j]`` reaches worker ``j``'s inbox; ``cid_offset`` is where the
    worker byte sits in a connection ID (:func:`.workers.worker_cid_plan`).
    """

    def __init__(
        self,
        index: int,
        cid_offset: int,
        inbox: socket.socket,
        senders: list[socket.socket],
    ) -> None:
        self.index = index
        self._byte_at = 1 + cid_offset  # a short header's DCID starts at offset 1
        # The shortest packet the owner could accept: the DCID through the worker
        # byte, then header protection's sample, which starts 4 bytes after the
        # packet number and is 16 long (RFC 9001 §5.4.2).
        self._min_size = self._byte_at + 1 + 4 + 16
        self._inbox = inbox
        self._senders = senders
        inbox.setblocking(False)
        for sender in senders:
            sender.setblocking(False)
        self.forwarded = 0
        self.received = 0
        self.dropped = 0

    def misrouted(self, data: bytes, addr: Any) -> bool:
        """Forward ``data`` if it belongs to another worker (True), else False.

        Called by the endpoint for datagrams no local connection owns.
        """
        at = self._byte_at
        # Only what could be one of the owner's packets, so that random junk
        # cannot make every worker feed one inbox: a short header with the
        # fixed bit set (RFC 9000 §17.3.1; we never send grease_quic_bit,
        # RFC 9287, so peers must set it) and long enough to be decrypted.
        if len(data) < self._min_size or data[0] & 0xC0 != 0x40:
            return False
        owner = data[at]
        if owner == self.index or owner >= len(self._senders):
            return False
        try:
            self._senders[owner].send(encode(data, addr))
        except (BlockingIOError, InterruptedError):
            self.dropped += 1  # its inbox is full: lost, as in a full socket buffer
        except OSError as exc:
            self.dropped += 1
            log.debug("forwarding to worker %d failed: %s", owner, exc)
        else:
            self.forwarded += 1
        return True

    async def run(self, deliver: Callable[[list[tuple[bytes, Any]]], None]) -> None:
        """Hand what other workers forward here to ``deliver``, a batch per wake-up."""
        inbox = self._inbox
        while True:
            await trio.lowlevel.wait_readable(inbox)
            batch: list[tuple[bytes, Any]] = []
            for _ in range(_MAX_DRAIN):
                try:
                    message = inbox.recv(_MAX_MESSAGE)
                except (BlockingIOError, InterruptedError):
                    break
                try:
                    batch.append(decode(message))
                except ValueError:
                    log.debug("dropped a malformed forwarded datagram")
            self.received += len(batch)
            if batch:
                deliver(batch)
            await trio.lowlevel.checkpoint_if_cancelled()


__all__ = ["Forwarder", "decode", "encode", "open_inboxes"]
