"""Several sockets on one UDP port, and a classic BPF program that picks the
socket from a byte of the packet's Destination Connection ID (Linux).

With ``SO_REUSEPORT`` the kernel spreads a port's datagrams over a group of
sockets by a hash of the 4-tuple, so a client whose address changes (NAT
rebinding, migration) lands on another socket. ``SO_ATTACH_REUSEPORT_CBPF``
(Linux 4.5+) replaces the hash with a program whose return value is the index
of the socket in the group, in the order the sockets were bound; an index past
the end falls back to the hash.

Our program reads the *worker byte* of the DCID: a short header (first bit 0)
has its DCID at offset 1; a long header has the DCID length at offset 5 and
the DCID at offset 6 (RFC 8999 §5). Classic BPF sees the UDP payload, can load
a byte at a constant offset and test bits, which is all this needs. A client's
first Initials carry a DCID the client chose: they go to whichever socket its
random byte (or the hash) names, always the same one for the same DCID and
4-tuple, and that worker then issues IDs carrying its own index.
"""

from __future__ import annotations

import ctypes
import socket
import struct

from .endpoint import set_dont_fragment

# <linux/socket.h>: not exported by Python's socket module.
SO_ATTACH_REUSEPORT_CBPF = getattr(socket, "SO_ATTACH_REUSEPORT_CBPF", 51)
REUSEPORT_AVAILABLE = hasattr(socket, "SO_REUSEPORT")

# Classic BPF opcodes (<linux/filter.h>).
_LD_B_ABS = 0x30  # A = packet[k] (one byte)
_JSET_K = 0x45  # if A & k: jump jt else jump jf
_RET_A = 0x16  # return A
_LONG_HEADER_DCID = 6  # RFC 8999 §5.1: flags (1), version (4), DCID length (1)
_SHORT_HEADER_DCID = 1  # RFC 8999 §5.2: flags (1)


def _insn(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k)


def worker_program(cid_offset: int) -> bytes:
    """The program returning the byte at ``cid_offset`` of the DCID as the socket index."""
    return b"".join(
        [
            _insn(_LD_B_ABS, 0, 0, 0),
            _insn(_JSET_K, 0, 2, 0x80),  # long header?
            _insn(_LD_B_ABS, 0, 0, _LONG_HEADER_DCID + cid_offset),
            _insn(_RET_A, 0, 0, 0),
            _insn(_LD_B_ABS, 0, 0, _SHORT_HEADER_DCID + cid_offset),
            _insn(_RET_A, 0, 0, 0),
        ]
    )


def attach_worker_program(sock: socket.socket, cid_offset: int) -> bool:
    """Attach :func:`worker_program` to ``sock``'s reuseport group; False where
    the kernel (or the platform) has no SO_ATTACH_REUSEPORT_CBPF."""
    program = worker_program(cid_offset)
    buffer = ctypes.create_string_buffer(program, len(program))
    # struct sock_fprog { unsigned short len; struct sock_filter *filter; }
    fprog = struct.pack("@HP", len(program) // 8, ctypes.addressof(buffer))
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, fprog)
    except OSError:
        return False
    return True


def open_reuseport_sockets(
    host: str | None, port: int, family: int, count: int, buffer_bytes: int
) -> list[socket.socket]:
    """``count`` non-blocking UDP sockets bound to one port, in group order."""
    if not REUSEPORT_AVAILABLE:
        raise OSError("SO_REUSEPORT is not available on this platform")
    bind_host = host if host is not None else ("::" if family == socket.AF_INET6 else "0.0.0.0")
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sockets.append(sock)
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                try:
                    sock.setsockopt(socket.SOL_SOCKET, option, buffer_bytes)
                except OSError:
                    pass
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            set_dont_fragment(sock)  # path MTU discovery (RFC 9000 §14.3)
            sock.bind((bind_host, port))
            port = sock.getsockname()[1]  # port 0: the others join the first one's port
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


__all__ = [
    "REUSEPORT_AVAILABLE",
    "attach_worker_program",
    "open_reuseport_sockets",
    "worker_program",
]
