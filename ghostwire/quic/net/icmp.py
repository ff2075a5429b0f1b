"""ICMP errors for UDP sockets: "nothing is listening there" without waiting.

A UDP datagram to a port nobody listens on comes back as an ICMP port
unreachable. On Linux, ``IP_RECVERR`` (``IPV6_RECVERR``) makes the kernel
queue such errors on the socket, even unconnected ones, with the destination
of the datagram that caused them; :func:`read_errors` drains that queue
(``MSG_ERRQUEUE``). A client handshake then ends with
``ConnectionRefused`` at once instead of after the handshake timeout.

Elsewhere this is a no-op, and a handshake to nowhere ends at its timeout.
"""

from __future__ import annotations

import errno
import socket
import struct
import sys
from typing import Any

_LINUX = sys.platform.startswith("linux")
_IP_RECVERR = 11  # <linux/in.h>
_IPV6_RECVERR = 25  # <linux/in6.h>
_MSG_ERRQUEUE = getattr(socket, "MSG_ERRQUEUE", 0x2000)
_SO_EE_ORIGIN_ICMP = 2
_SO_EE_ORIGIN_ICMP6 = 3
# struct sock_extended_err: ee_errno u32, ee_origin u8, ee_type u8, ee_code u8, ...
_EXTENDED_ERR = struct.Struct("=IBBB")
_MAX_ERRORS = 64  # per drain: the queue is bounded by the socket buffer anyway


def enable_icmp_errors(sock: socket.socket) -> bool:
    """Ask the kernel to report ICMP errors on ``sock``; True if it will."""
    if not _LINUX:
        return False
    enabled = False
    options = [(socket.IPPROTO_IP, _IP_RECVERR)]
    if sock.family == socket.AF_INET6:
        options = [(socket.IPPROTO_IPV6, _IPV6_RECVERR), *options]  # v4-mapped too
    for level, option in options:
        try:
            sock.setsockopt(level, option, 1)
            enabled = True
        except OSError:
            pass
    return enabled


def read_errors(sock: socket.socket) -> list[tuple[int, Any]]:
    """Drain the socket's error queue: (errno, destination address) for each
    ICMP error (the queue must be drained, or the socket stays readable)."""
    found: list[tuple[int, Any]] = []
    for _ in range(_MAX_ERRORS):
        try:
            _, ancillary, _, address = sock.recvmsg(1, 512, _MSG_ERRQUEUE)
        except (BlockingIOError, InterruptedError):
            break
        except OSError:
            break
        for level, kind, data in ancillary:
            if (level, kind) not in (
                (socket.IPPROTO_IP, _IP_RECVERR),
                (socket.IPPROTO_IPV6, _IPV6_RECVERR),
            ) or len(data) < _EXTENDED_ERR.size:
                continue
            code, origin, _, _ = _EXTENDED_ERR.unpack_from(data)
            if origin in (_SO_EE_ORIGIN_ICMP, _SO_EE_ORIGIN_ICMP6):
                found.append((code, address))
    return found


def is_refusal(code: int) -> bool:
    return code == errno.ECONNREFUSED


def same_address(a: Any, b: Any) -> bool:
    """Host and port equal (IPv6 addresses carry flow info and scope too)."""
    try:
        return bool(a[0] == b[0] and a[1] == b[1])
    except (TypeError, IndexError):
        return False
