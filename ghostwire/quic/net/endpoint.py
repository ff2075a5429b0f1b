"""The UDP endpoint: one socket, one receive loop, many connections.

Hot-path rules (see docs/architecture.md):

* one task per socket waits with ``trio.lowlevel.wait_readable`` and then
  drains the socket without blocking, handing each datagram to its
  connection synchronously — never an ``await`` or a channel hop per packet;
* after a drain, each connection that received something gets one
  ``_after_datagrams`` call: it dispatches events to waiting tasks and asks
  for a flush on the next scheduler pass (so ACKs share datagrams with what
  the woken tasks write);
* sends are non-blocking ``sendto`` calls, or on Linux one GSO ``sendmsg`` per
  run of same-size datagrams (:mod:`.gso`); when the kernel buffer is full the
  rest waits in a bounded queue flushed by the same endpoint's send task.

The endpoint's nursery owns the receive loop, the flusher and every
connection task; closing the endpoint closes them all.
"""

from __future__ import annotations

import errno
import logging
import socket
import sys
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio

from ..demux import Demux
from ..pmtud import BASE_PLPMTU
from .gso import GSO_AVAILABLE, GsoUnsupported, enable_gro, receive, run_length, send_segments
from .icmp import enable_icmp_errors, is_refusal, read_errors, same_address
from .scheduling import make_key_shares_if_idle

if TYPE_CHECKING:
    from .connection import Connection

log = logging.getLogger("ghostwire.quic")

RECV_BUFFER_SIZE = 65536
SOCKET_BUFFER_BYTES = 4 << 20
# Datagrams waiting for a full socket buffer to drain; beyond this they are
# dropped (QUIC's loss recovery resends what mattered).
MAX_PENDING_SENDS = 4096
# Stop draining after this many datagrams to let other tasks run (and the
# connections answer: ACKs go out after each drain).
MAX_DRAIN = 256


class Endpoint:
    """A UDP socket multiplexed into QUIC connections."""

    def __init__(self, sock: socket.socket, demux: Demux, nursery: trio.Nursery) -> None:
        self.socket = sock
        self.demux = demux
        self.nursery = nursery
        self._recv_buffer = bytearray(RECV_BUFFER_SIZE)
        self._recv_view = memoryview(self._recv_buffer)
        self._pending: deque[tuple[bytes, Any]] = deque()
        self._send_wakeup = trio.Event()
        self._dirty: list[Connection] = []
        self.connections: dict[Any, Connection] = {}  # core connection -> wrapper
        self.on_new_connection: Callable[[Any, Any], None] | None = None
        self.datagrams_dropped_on_send = 0
        self._gso = GSO_AVAILABLE  # turned off by the first send that shows no support
        self._gso_worked = False  # a GSO send succeeded on this socket
        self._gro = enable_gro(sock)
        self._icmp_errors = False  # see enable_icmp_errors()
        # serve(workers=N) without kernel routing: takes a datagram no local
        # connection owns and returns True if it sent it to its worker (.forwarding).
        self.misrouted: Callable[[bytes, Any], bool] | None = None

    @property
    def local_address(self) -> tuple[str, int]:
        host, port = self.socket.getsockname()[:2]
        return host, port

    # -- sending -----------------------------------------------------------

    def send_datagrams(self, datagrams: list[tuple[bytes, Any]]) -> None:
        """Send now without blocking; queue what the kernel won't take yet."""
        sock = self.socket
        pending = self._pending
        if pending:
            pending.extend(datagrams)
            self._trim_pending()
            return
        index = 0
        total = len(datagrams)
        one_by_one_until = 0  # after a run failed for its size: its datagrams singly
        while index < total:
            # Runs of same-size datagrams to one peer go out in one GSO send.
            gso = self._gso and index + 1 < total and index >= one_by_one_until
            count = run_length(datagrams, index) if gso else 1
            try:
                if count > 1:
                    send_segments(sock, datagrams, index, count)
                    self._gso_worked = True
                else:
                    sock.sendto(*datagrams[index])
            except GsoUnsupported as exc:
                if exc.errno == errno.EINVAL and (
                    self._gso_worked or len(datagrams[index][0]) > BASE_PLPMTU
                ):
                    # Linux also says EINVAL for a segment above the path MTU
                    # (DF set; a path that shrank under PMTUD's size): this run
                    # goes out singly, GSO stays on for the others.
                    one_by_one_until = index + count
                    continue
                log.debug("UDP GSO unavailable, sending datagrams one by one: %s", exc)
                self._gso = False
                continue  # the same run again, with sendto
            except BlockingIOError:
                pending.extend(datagrams[index:])
                self._trim_pending()
                self._send_wakeup.set()
                return
            except OSError as exc:
                if count > 1 and exc.errno == errno.EMSGSIZE:
                    # One datagram of the run is too big for the path (DF is
                    # set: a PMTU probe): the others must not be lost with it.
                    one_by_one_until = index + count
                    continue
                # ICMP errors surface here (e.g. ECONNREFUSED on Linux): the
                # connection learns of it through its timers, like any loss.
                if exc.errno not in (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH):
                    log.debug("sendto %r failed: %s", datagrams[index][1], exc)
            index += count

    def send_now(self, datagrams: list[tuple[bytes, Any]]) -> None:
        """Send without queueing (e.g. CONNECTION_CLOSE while shutting down):
        what the kernel won't take at once is dropped."""
        for data, addr in datagrams:
            try:
                self.socket.sendto(data, addr)
            except OSError as exc:
                log.debug("sendto %r failed: %s", addr, exc)

    def _trim_pending(self) -> None:
        while len(self._pending) > MAX_PENDING_SENDS:
            self._pending.popleft()
            self.datagrams_dropped_on_send += 1

    # KI protection: library bookkeeping; a Ctrl-C goes to the main task (see Connection._run).
    @trio.lowlevel.enable_ki_protection
    async def _flush_loop(self) -> None:
        while True:
            await self._send_wakeup.wait()
            self._send_wakeup = trio.Event()
            while self._pending:
                await trio.lowlevel.wait_writable(self.socket)
                data, addr = self._pending[0]
                try:
                    self.socket.sendto(data, addr)
                except BlockingIOError:
                    continue
                except OSError:
                    pass
                self._pending.popleft()

    # -- receiving ---------------------------------------------------------

    # KI protection: library bookkeeping; a Ctrl-C goes to the main task (see Connection._run).
    @trio.lowlevel.enable_ki_protection
    async def _receive_loop(self) -> None:
        sock = self.socket
        view = self._recv_view
        while True:
            make_key_shares_if_idle()
            await trio.lowlevel.wait_readable(sock)
            now = trio.current_time()
            budget = MAX_DRAIN
            # Read the ICMP error queue only when there may be something in it
            # (an error reported, or woken with no datagram): no extra syscall
            # per batch of a busy connection.
            check_errors = True
            while budget > 0:
                budget -= 1
                try:
                    size, segment, addr = receive(sock, self._recv_buffer, self._gro)
                except BlockingIOError:
                    break
                except OSError as exc:
                    # E.g. ECONNREFUSED from an earlier send's ICMP error.
                    log.debug("recvfrom failed: %s", exc)
                    check_errors = True
                    continue
                check_errors = False
                if segment:  # several datagrams glued together by GRO
                    budget -= size // segment
                else:
                    segment = size or 1
                for start in range(0, size, segment):
                    self._dispatch(bytes(view[start : min(start + segment, size)]), addr, now)
            if check_errors and self._icmp_errors:
                self._read_icmp_errors()
            self._after_drain()
            await trio.lowlevel.checkpoint_if_cancelled()

    def _after_drain(self) -> None:
        """Each connection that received datagrams acts on them."""
        dirty = self._dirty
        self._dirty = []
        for conn in dirty:
            conn._dirty = False
            try:
                conn._after_datagrams()
            except Exception as exc:
                conn._fail(exc)  # that connection alone closes

    def deliver(self, datagrams: list[tuple[bytes, Any]]) -> None:
        """Datagrams another socket received for this endpoint (a worker's
        forwarded ones), processed as if read from this socket."""
        now = trio.current_time()
        for data, addr in datagrams:
            self._dispatch(data, addr, now)
        self._after_drain()

    def _dispatch(self, data: bytes, addr: Any, now: float) -> None:
        core = self.demux.existing_connection(data)
        if core is None:
            if self.misrouted is not None and self.misrouted(data, addr):
                return
            try:
                received = self.demux.receive(data, addr, now, **self._connection_kwargs())
            except Exception:
                # A datagram no connection owns must never stop the endpoint.
                log.exception("internal error routing a datagram from %r; dropped", addr)
                self.demux.stats.datagrams_dropped += 1
                return
            if received.replies:
                self.send_datagrams(received.replies)
            core = received.connection
            if core is None:
                return
            if received.new_connection and self.on_new_connection is not None:
                self.on_new_connection(core, addr)
        wrapper = self.connections.get(core)
        try:
            core.receive_datagram(data, addr, now)
        except Exception as exc:
            # One connection's failure never reaches another (or the endpoint).
            if wrapper is not None:
                wrapper._fail(exc)
            else:
                log.exception("internal error in a QUIC connection with %r", addr)
                self.demux.forget(core)
            return
        if wrapper is not None and not wrapper._dirty:
            wrapper._dirty = True
            self._dirty.append(wrapper)

    def enable_icmp_errors(self) -> None:
        """Report ICMP port unreachable to the connections still handshaking
        (client endpoints: a server's clients must not be able to stop it)."""
        self._icmp_errors = enable_icmp_errors(self.socket)

    def _read_icmp_errors(self) -> None:
        for code, address in read_errors(self.socket):
            if not is_refusal(code):
                continue
            for conn in list(self.connections.values()):
                if same_address(conn.peer_address, address):
                    conn._refused(address)

    def _connection_kwargs(self) -> dict[str, Any]:
        return {}

    def mark_dirty(self, conn: Connection) -> None:
        if not conn._dirty:
            conn._dirty = True
            self._dirty.append(conn)

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        self.nursery.start_soon(self._receive_loop)
        self.nursery.start_soon(self._flush_loop)


def open_udp_socket(host: str | None, port: int, family: int = socket.AF_INET) -> socket.socket:
    """A non-blocking UDP socket bound to (host, port), with large buffers."""
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            try:
                sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER_BYTES)
            except OSError:
                pass
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        set_dont_fragment(sock)
        bind_host = host if host is not None else ("::" if family == socket.AF_INET6 else "0.0.0.0")
        sock.bind((bind_host, port))
    except BaseException:
        sock.close()
        raise
    return sock


# <linux/in.h>, <linux/in6.h>: the stdlib has no names for these.
_IP_MTU_DISCOVER = 10
_IP_PMTUDISC_PROBE = 3
_IPV6_MTU_DISCOVER = 23
_IPV6_PMTUDISC_PROBE = 3


def set_dont_fragment(sock: socket.socket) -> bool:
    """Send with the don't-fragment bit, ignoring the kernel's cached path MTU
    (Linux ``IP_PMTUDISC_PROBE``): path MTU discovery (RFC 9000 §14.3) needs a
    too-big datagram dropped rather than fragmented, and needs its probes sent
    even above what the kernel believes the path carries. A datagram above
    the interface MTU fails with EMSGSIZE, which counts as a loss. True if set;
    elsewhere datagrams go as the OS sends them (probes still find the size,
    unless a router fragments them)."""
    if sys.platform != "linux":
        return False
    options = [(socket.IPPROTO_IP, _IP_MTU_DISCOVER, _IP_PMTUDISC_PROBE)]
    if sock.family == socket.AF_INET6:  # and IPv4-mapped addresses on the same socket
        options.insert(0, (socket.IPPROTO_IPV6, _IPV6_MTU_DISCOVER, _IPV6_PMTUDISC_PROBE))
    done = False
    for level, option, value in options:
        try:
            sock.setsockopt(level, option, value)
            done = True
        except OSError:
            pass
    return done
