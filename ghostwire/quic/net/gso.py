"""UDP segmentation offloads (Linux): many datagrams per system call.

Sending (GSO): a bulk sender emits runs of same-size datagrams to one peer. With GSO the
kernel takes such a run as one buffer plus a ``UDP_SEGMENT`` control message
carrying the segment size, and cuts it into datagrams itself (the last one may
be shorter), so the per-datagram system call and most of the per-datagram
network stack work are paid once per run (DESIGN.md "Hot paths").

The stdlib has no names for the constants (``linux/udp.h``). Support is
detected by trying: an error that means "not here" (old kernel, a device
without checksum offload, another OS) turns GSO off for that socket and the
run goes out with ``sendto`` as before. EINVAL is ambiguous: Linux also returns
it when a segment is larger than the path MTU (DF set), so the endpoint takes it
as "not here" only on a socket where GSO never worked and for segments no larger
than the QUIC minimum.

Receiving (GRO): with the ``UDP_GRO`` socket option the kernel may hand over
several datagrams of one flow glued together (on loopback: a GSO send as it
was sent), with a ``UDP_GRO`` control message giving the segment size;
:func:`receive` returns it and the caller cuts the buffer up again.
"""

from __future__ import annotations

import errno
import socket
import struct
import sys
from collections.abc import Sequence
from typing import Any

SOL_UDP = 17
UDP_SEGMENT = 103
UDP_GRO = 104
_GRO_CONTROL_SIZE = socket.CMSG_SPACE(4) if hasattr(socket, "CMSG_SPACE") else 0
# The kernel's UDP_MAX_SEGMENTS; and one UDP payload is at most 65,507 bytes
# over IPv4, so a run of large datagrams is cut shorter than this.
MAX_SEGMENTS = 64
MAX_GSO_BYTES = 65000
# Errors meaning "no GSO on this socket/path" (EIO: the device cannot checksum).
_UNSUPPORTED = frozenset({errno.EINVAL, errno.ENOPROTOOPT, errno.EOPNOTSUPP, errno.EIO})

GSO_AVAILABLE = sys.platform == "linux" and hasattr(socket.socket, "sendmsg")


class GsoUnsupported(Exception):
    """GSO failed in a way that means it will keep failing: use ``sendto``.

    ``errno`` is the kernel's error; for EINVAL the caller decides (see above).
    """

    def __init__(self, error: int, message: str) -> None:
        super().__init__(message)
        self.errno = error


def run_length(datagrams: Sequence[tuple[bytes, Any]], start: int) -> int:
    """How many datagrams from ``start`` can go out as one GSO send.

    They must share the address and the size, except that the last one may be
    shorter (the kernel sends the tail of the buffer as a short segment).
    """
    data, addr = datagrams[start]
    size = len(data)
    limit = min(MAX_SEGMENTS, max(1, MAX_GSO_BYTES // size), len(datagrams) - start)
    count = 1
    while count < limit:
        next_data, next_addr = datagrams[start + count]
        if next_addr != addr:
            break
        next_size = len(next_data)
        if next_size != size:
            if next_size < size:
                count += 1  # a shorter last segment
            break
        count += 1
    return count


def send_segments(
    sock: socket.socket, datagrams: Sequence[tuple[bytes, Any]], start: int, count: int
) -> None:
    """Send ``datagrams[start:start + count]`` (a :func:`run_length` run) in one call.

    Raises :class:`GsoUnsupported` when the kernel refuses GSO; other
    ``OSError`` (including ``BlockingIOError``) propagate: nothing was sent.
    """
    data, addr = datagrams[start]
    buffer = b"".join(d for d, _ in datagrams[start : start + count])
    control = [(SOL_UDP, UDP_SEGMENT, struct.pack("=H", len(data)))]
    try:
        sock.sendmsg([buffer], control, 0, addr)
    except BlockingIOError:
        raise
    except OSError as exc:
        if exc.errno in _UNSUPPORTED:
            raise GsoUnsupported(exc.errno, str(exc)) from exc
        raise


def enable_gro(sock: socket.socket) -> bool:
    """Ask for UDP GRO on ``sock``; False where the kernel or OS lacks it."""
    if not GSO_AVAILABLE or not _GRO_CONTROL_SIZE:
        return False
    try:
        sock.setsockopt(SOL_UDP, UDP_GRO, 1)
    except OSError:
        return False
    return True


def receive(sock: socket.socket, buffer: bytearray, gro: bool) -> tuple[int, int, Any]:
    """One ``recv`` into ``buffer``: ``(size, segment size, address)``.

    The segment size is 0 unless the kernel glued datagrams together (GRO);
    then every ``segment``-byte slice of ``buffer[:size]`` is one datagram, the
    last one possibly shorter. Raises what ``recvfrom_into`` raises.
    """
    if not gro:
        size, addr = sock.recvfrom_into(buffer)
        return size, 0, addr
    size, ancdata, _flags, addr = sock.recvmsg_into([buffer], _GRO_CONTROL_SIZE)
    for level, kind, data in ancdata:
        if level == SOL_UDP and kind == UDP_GRO and len(data) >= 4:
            segment = int.from_bytes(data[:4], sys.byteorder)  # a C int
            return size, segment if 0 < segment < size else 0, addr
    return size, 0, addr
